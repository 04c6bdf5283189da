//! Child process for `tests/crash.rs`: appends deterministic batches to a
//! RocksDB storage shard and prints `ack <batch>` after every commit that returned `Ok`.
//! The test kills it with SIGKILL at random points and checks that every acknowledged
//! batch survived.
//!
//! Data (the test recomputes it): batch `b` has timestamp `T0 + b * 15s` and writes series
//! `s` for `s < min(50, 5 + b / 10)`, labels `{__name__="crash", s="<s>"}`, value
//! [`value`]`(s, b)`. On start the child resumes after the newest batch of series 0.

use std::io::Write;

use anyhow::Context;
use trawl_model::{Labels, Matcher, STALE_NAN};
use trawl_storage::{SelectHints, SeriesRef, Storage, StorageOptions};
use trawl_storage_rocks::{RocksOptions, RocksStorage};

const T0: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;

fn value(s: u64, b: u64) -> f64 {
    if (s + b).is_multiple_of(97) {
        STALE_NAN
    } else {
        (s * 1000 + b) as f64 * 0.5
    }
}

fn series_in(b: u64) -> u64 {
    (5 + b / 10).min(50)
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: trawl-storage-crashtest <dir>")?;
    let opts = StorageOptions {
        chunk_samples: 30,
        partition_ms: 600_000,
        ..StorageOptions::default()
    };
    // A tiny checkpoint threshold so kills also land inside checkpoints.
    let ropts = RocksOptions {
        checkpoint_bytes: 16 << 10,
        // Checkpoints in several batches, so kills also land between them.
        checkpoint_batch_chunks: 7,
        ..RocksOptions::default()
    };
    let store = RocksStorage::open(std::path::Path::new(&dir), opts, ropts)?;
    let mut next = {
        let q = store.querier()?;
        let mut set = q.select(
            &[Matcher::equal("s", "0")],
            i64::MIN,
            i64::MAX,
            &SelectHints::default(),
        )?;
        match set.next() {
            Some(series) => {
                let series = series?;
                let last = series
                    .samples()
                    .last()
                    .transpose()?
                    .context("series without samples")?;
                ((last.t - T0) / STEP) as u64 + 1
            }
            None => 0,
        }
    };
    let mut app = store.appender();
    let mut refs: Vec<SeriesRef> = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let end = next + 1_000_000;
    while next < end {
        let n = series_in(next);
        while (refs.len() as u64) < n {
            let s = refs.len().to_string();
            refs.push(app.series_ref(&Labels::from_pairs([
                ("__name__", "crash"),
                ("s", s.as_str()),
            ]))?);
        }
        for (s, r) in refs.iter().enumerate() {
            app.append(*r, T0 + next as i64 * STEP, value(s as u64, next))?;
        }
        let rep = app.commit()?;
        anyhow::ensure!(
            rep.rejected_total() == 0,
            "rejected: {:?}",
            rep.first_rejection
        );
        writeln!(out, "ack {next}")?;
        out.flush()?;
        next += 1;
    }
    Ok(())
}
