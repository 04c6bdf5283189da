//! Side-by-side storage benchmark (issue 3): the same node_exporter-like workload
//! ([`trawl_benches::storage_workload`]: counters, noisy gauges, histograms; default 10k
//! series at a 15 s interval over 24 h) written to a Trawl shard and, through an OpenMetrics
//! file and `promtool tsdb create-blocks-from openmetrics`, to Prometheus's TSDB. Both are
//! compacted (Trawl: a full RocksDB compaction; Prometheus: blocks built with
//! `--max-block-duration=24h`, i.e. the 18 h blocks its compactor makes under the default
//! 15 d retention; the 2 h blocks of a plain import are measured too), then it prints bytes
//! per sample of each and the ratio, append throughput (one appending thread: wall clock and
//! that thread's CPU time), select latency (1 series × 24 h; `{job="node"}` over every
//! series × 1 h) and resident memory per active head series at several head sizes, each
//! measured in a fresh child process. Not a pass/fail test.
//!
//! ```text
//! CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo bench --profile dev -p trawl-benches --bench storage_compare
//! ```
//!
//! Environment: `TRAWL_BENCH_SERIES` (default 10000, rounded down to whole hosts of 100
//! series), `TRAWL_BENCH_HOURS` (default 24), `TRAWL_BENCH_MEM_SERIES` (comma-separated head
//! sizes for the memory phase, default `10000,50000,200000`), `TRAWL_BENCH_DIR` (scratch,
//! default `/var/cache/trawl/storage-bench`; the OpenMetrics file of the full run is ~6 GB and
//! is deleted after the import), `TRAWL_BENCH_SKIP_PROM=1` to skip promtool,
//! `TRAWL_BENCH_CHUNK_COMPRESSION=none` to store Trawl's chunks without the default ZSTD. A quick check:
//! `TRAWL_BENCH_SERIES=1000 TRAWL_BENCH_HOURS=4 TRAWL_BENCH_MEM_SERIES=10000`.

use std::error::Error;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use trawl_benches::storage_workload::{SERIES_PER_HOST, Workload, write_series_name};
use trawl_model::{MatchOp, Matcher};
use trawl_storage::{Clock, SelectHints, SeriesRef, Storage, StorageOptions};
use trawl_storage_rocks::{ChunkCompression, RocksOptions, RocksStorage};

type Res<T> = Result<T, Box<dyn Error>>;

const T0: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;
const MEM_CHILD: &str = "TRAWL_BENCH_MEM_CHILD";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// RocksDB files by kind: (sst, wal logs, everything else: MANIFEST, OPTIONS, info LOG).
fn rocks_sizes(p: &Path) -> (u64, u64, u64) {
    let mut out = (0, 0, 0);
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let len = e.metadata().map_or(0, |m| m.len());
        if name.ends_with(".sst") {
            out.0 += len;
        } else if name.ends_with(".log") && !name.starts_with("LOG") {
            out.1 += len;
        } else {
            out.2 += len;
        }
    }
    out
}

/// Prometheus block files by kind: (chunks, index, other), and the number of blocks.
fn prom_sizes(p: &Path) -> ((u64, u64, u64), usize) {
    let mut out = (0, 0, 0);
    let mut blocks = 0;
    for b in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let bp = b.path();
        if !bp.is_dir() {
            out.2 += b.metadata().map_or(0, |m| m.len());
            continue;
        }
        blocks += 1;
        for e in std::fs::read_dir(&bp).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                out.0 += dir_size(&path);
            } else if path.file_name().is_some_and(|n| n == "index") {
                out.1 += e.metadata().map_or(0, |m| m.len());
            } else {
                out.2 += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    (out, blocks)
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

/// Resident bytes of the main heap (`[heap]`: the main thread's malloc arena) and of every
/// other anonymous mapping (other threads' malloc arenas, large allocations).
fn rss_split() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut heap, mut anon) = (0, 0);
    let mut kind = 0; // 1 = [heap], 2 = anonymous
    for l in s.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let fields: Vec<&str> = l.split_whitespace().collect();
            kind = match fields.get(5) {
                Some(&"[heap]") => 1,
                None => 2,
                Some(_) => 0,
            };
        } else if let Some(v) = l.strip_prefix("Rss:") {
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            match kind {
                1 => heap += kb * 1024,
                2 => anon += kb * 1024,
                _ => {}
            }
        }
    }
    (heap, anon)
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // The kernel reports clock ticks; USER_HZ is 100 on Linux.
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn opts_at(end: i64) -> StorageOptions {
    StorageOptions {
        clock: Clock::from_fn(move || end),
        retention_ms: i64::MAX / 4,
        ..StorageOptions::default()
    }
}

fn main() -> Res<()> {
    if let Ok(n) = std::env::var(MEM_CHILD) {
        return mem_child(n.parse()?);
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench binaries without
    // it, and this one takes many minutes and needs promtool.
    if !std::env::args().any(|a| a == "--bench") {
        println!("storage_compare: run with `cargo bench`; skipped");
        return Ok(());
    }
    let hosts = (env_num("TRAWL_BENCH_SERIES", 10_000) / SERIES_PER_HOST).max(1);
    let hours = env_num("TRAWL_BENCH_HOURS", 24).max(1);
    let base = PathBuf::from(
        std::env::var("TRAWL_BENCH_DIR")
            .unwrap_or_else(|_| "/var/cache/trawl/storage-bench".into()),
    );
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let steps = hours * 3600 * 1000 / STEP_MS as usize;
    let mut w = Workload::new(hosts, 42);
    let n = w.series.len();
    let total = (n * steps) as u64;
    println!(
        "workload: {n} node_exporter-like series x {steps} scrapes ({hours} h at 15 s) = {total} samples"
    );

    // Generate once, outside the timed loop; both stores get exactly these values.
    let mut values = vec![0f64; n * steps];
    for s in 0..steps {
        w.step(15.0, |i, v| values[s * n + i] = v);
    }

    let end = T0 + steps as i64 * STEP_MS;
    trawl(&base, &w, &values, hosts, steps, end, total, hours)?;
    if std::env::var("TRAWL_BENCH_SKIP_PROM").is_err() {
        let om = base.join("data.om");
        write_openmetrics(&om, &w, &values, steps)?;
        drop(values);
        prometheus(&base, &om, total)?;
        let _ = std::fs::remove_file(&om);
    } else {
        drop(values);
    }
    memory(&base)?;
    durability(&base, &w)?;
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn trawl(
    base: &Path,
    w: &Workload,
    values: &[f64],
    hosts: usize,
    steps: usize,
    end: i64,
    total: u64,
    hours: usize,
) -> Res<()> {
    let n = w.series.len();
    let chunk_compression = match std::env::var("TRAWL_BENCH_CHUNK_COMPRESSION").as_deref() {
        Ok("none") => ChunkCompression::None,
        _ => ChunkCompression::Zstd,
    };
    let tdir = base.join("trawl");
    let store = RocksStorage::open(
        &tdir,
        opts_at(end),
        RocksOptions {
            chunk_compression,
            ..RocksOptions::default()
        },
    )?;
    let mut app = store.appender();
    let refs: Vec<SeriesRef> = w
        .series
        .iter()
        .map(|s| app.series_ref(&s.labels))
        .collect::<Result<_, _>>()?;
    let cpu0 = thread_cpu();
    let start = Instant::now();
    for s in 0..steps {
        let t = T0 + s as i64 * STEP_MS;
        // One commit per host per scrape: a scrape is one batch.
        for h in 0..hosts {
            for i in h * SERIES_PER_HOST..(h + 1) * SERIES_PER_HOST {
                app.append(refs[i], t, values[s * n + i])?;
            }
            let rep = app.commit()?;
            if rep.rejected_total() != 0 {
                return Err(format!("rejected {:?}", rep.first_rejection).into());
            }
        }
    }
    let append_s = start.elapsed().as_secs_f64();
    let cpu_s = (thread_cpu() - cpu0).as_secs_f64();
    drop(app);
    let t_compact = Instant::now();
    store.compact()?;
    let compact_s = t_compact.elapsed().as_secs_f64();
    let bytes = store.bytes_on_disk();
    let (sst, wal, other) = rocks_sizes(&tdir);
    let m = store.metrics();
    println!(
        "trawl: appended {} samples in {append_s:.2} s wall = {:.0} samples/s; appending thread CPU {cpu_s:.2} s = {:.0} samples/s per core (one commit per 100-sample scrape, WAL on, chunk CF compression {chunk_compression:?})",
        m.appended_samples,
        total as f64 / append_s,
        total as f64 / cpu_s.max(1e-9),
    );
    println!(
        "trawl: {bytes} bytes on disk after full compaction ({compact_s:.1} s) = {:.3} bytes/sample (sst {sst}, wal {wal}, manifest/options/info log {other})",
        bytes as f64 / total as f64
    );
    std::fs::write(base.join("trawl.bytes"), bytes.to_string())?;

    let q = store.querier()?;
    let one = [
        Matcher::equal("__name__", "node_cpu_seconds_total"),
        Matcher::equal("instance", "host-00000:9100"),
        Matcher::equal("cpu", "0"),
        Matcher::equal("mode", "user"),
    ];
    let mut lat = Vec::new();
    let mut got = 0;
    for _ in 0..50 {
        let t = Instant::now();
        got = 0;
        for s in q.select(&one, T0, end, &SelectHints::default())? {
            got += s?.samples().filter(|x| x.is_ok()).count();
        }
        lat.push(t.elapsed().as_secs_f64());
    }
    println!(
        "trawl: select 1 series x {hours} h ({got} samples decoded): median of 50 {:.3} ms",
        median(lat) * 1e3
    );
    let job = [Matcher::new(MatchOp::Equal, "job", "node")?];
    let mut lat = Vec::new();
    let (mut ns, mut nsamp) = (0, 0);
    for _ in 0..7 {
        let t = Instant::now();
        ns = 0;
        nsamp = 0;
        for s in q.select(&job, end - 3_600_000, end, &SelectHints::default())? {
            ns += 1;
            nsamp += s?.samples().filter(|x| x.is_ok()).count();
        }
        lat.push(t.elapsed().as_secs_f64());
    }
    println!(
        "trawl: select {{job=\"node\"}} x 1 h ({ns} series, {nsamp} samples decoded): median of 7 {:.1} ms",
        median(lat) * 1e3
    );
    Ok(())
}

/// Streams the workload to an OpenMetrics file, scrape by scrape.
fn write_openmetrics(om: &Path, w: &Workload, values: &[f64], steps: usize) -> Res<()> {
    let n = w.series.len();
    let t = Instant::now();
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(om)?);
    let names: Vec<Vec<u8>> = w
        .series
        .iter()
        .map(|s| {
            let mut b = Vec::new();
            write_series_name(&mut b, &s.labels).map(|_| b)
        })
        .collect::<Result<_, _>>()?;
    for s in 0..steps {
        let ts = (T0 + s as i64 * STEP_MS) / 1000;
        for (i, name) in names.iter().enumerate() {
            f.write_all(name)?;
            // `{:?}` prints the shortest round-tripping decimal, so values parse back to the
            // same bits.
            writeln!(f, " {:?} {ts}", values[s * n + i])?;
        }
    }
    f.write_all(b"# EOF\n")?;
    f.flush()?;
    drop(f);
    println!(
        "prometheus: OpenMetrics file {} bytes written in {:.1} s",
        std::fs::metadata(om)?.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn prometheus(base: &Path, om: &Path, total: u64) -> Res<()> {
    let trawl_bytes: u64 = std::fs::read_to_string(base.join("trawl.bytes"))?.parse()?;
    // 2 h blocks as a plain import makes them, then the blocks compaction would make.
    for (label, extra) in [
        ("2 h blocks (plain import)", None),
        (
            "compacted (--max-block-duration=24h)",
            Some("--max-block-duration=24h"),
        ),
    ] {
        let pdir = base.join("prom");
        let _ = std::fs::remove_dir_all(&pdir);
        let t = Instant::now();
        let mut cmd = Command::new("promtool");
        cmd.args(["tsdb", "create-blocks-from", "openmetrics", "-q"]);
        if let Some(e) = extra {
            cmd.arg(e);
        }
        let out = cmd.arg(om).arg(&pdir).output()?;
        if !out.status.success() {
            return Err(
                format!("promtool failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
            );
        }
        let ((chunks, index, other), blocks) = prom_sizes(&pdir);
        let prom_total = chunks + index + other;
        println!(
            "prometheus {label}: promtool import {:.1} s; {blocks} blocks, {prom_total} bytes (chunks {chunks}, index {index}, other {other}) = {:.3} bytes/sample ({:.3} chunks only)",
            t.elapsed().as_secs_f64(),
            prom_total as f64 / total as f64,
            chunks as f64 / total as f64
        );
        println!(
            "ratio trawl/prometheus {label}: {:.3} of total bytes ({:.3} of chunk bytes only)",
            trawl_bytes as f64 / prom_total as f64,
            trawl_bytes as f64 / chunks as f64
        );
        let _ = std::fs::remove_dir_all(&pdir);
    }
    Ok(())
}

/// Runs the memory phase once per head size, each in a fresh child process so nothing
/// allocated (or cached by the allocator) by earlier phases is counted.
fn memory(base: &Path) -> Res<()> {
    let sizes: Vec<usize> = std::env::var("TRAWL_BENCH_MEM_SERIES")
        .unwrap_or_else(|_| "10000,50000,200000".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let exe = std::env::current_exe()?;
    let mut points = Vec::new();
    for n in sizes {
        let out = Command::new(&exe)
            .env(MEM_CHILD, n.to_string())
            .env("TRAWL_BENCH_DIR", base.join(format!("mem-{n}")))
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "memory child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        // Last line: "<series> <rss delta> <head bytes>".
        if let Some(nums) = text.lines().last().map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse::<f64>().ok())
                .collect::<Vec<_>>()
        }) && nums.len() == 3
        {
            points.push((nums[0], nums[1]));
        }
    }
    for w in points.windows(2) {
        let ((n0, r0), (n1, r1)) = (w[0], w[1]);
        println!(
            "memory: marginal RSS per series from {n0} to {n1} series: {:.0} bytes",
            (r1 - r0) / (n1 - n0)
        );
    }
    Ok(())
}

/// Scrapes per series in the memory phase: a chunk and a half, so the head is in its steady
/// state (second chunks, sized from the first) with open chunks half full on average.
const SCRAPES: i64 = 180;

/// One memory measurement: open a shard, create `n` series and append [`SCRAPES`] scrapes,
/// report RSS growth.
fn mem_child(n: usize) -> Res<()> {
    let dir = PathBuf::from(std::env::var("TRAWL_BENCH_DIR")?);
    let _ = std::fs::remove_dir_all(&dir);
    let hosts = n.div_ceil(SERIES_PER_HOST);
    let mut w = Workload::new(hosts, 7);
    let n = w.series.len();
    let labels: Vec<_> = w.series.iter().map(|s| s.labels.clone()).collect();
    let end = T0 + (SCRAPES + 1) * STEP_MS;
    let before = rss_bytes();
    let mut ropts = RocksOptions::default();
    if let Ok(v) = std::env::var("TRAWL_BENCH_CHECKPOINT_BYTES") {
        ropts.checkpoint_bytes = v.parse()?;
    }
    let store = RocksStorage::open(&dir, opts_at(end), ropts)?;
    let opened = rss_bytes();
    let mut app = store.appender();
    let refs: Vec<SeriesRef> = labels
        .iter()
        .map(|l| app.series_ref(l))
        .collect::<Result<_, _>>()?;
    drop(labels);
    let created = rss_bytes();
    let head_created = store.metrics().head_bytes;
    let mut buf = Vec::with_capacity(n);
    for s in 0..SCRAPES {
        let t = T0 + s * STEP_MS;
        buf.clear();
        w.step(15.0, |i, v| buf.push((i, v)));
        for chunk in buf.chunks(SERIES_PER_HOST) {
            for &(i, v) in chunk {
                app.append(refs[i], t, v)?;
            }
            app.commit()?;
        }
    }
    drop(app);
    drop(buf);
    drop(refs);
    let after = rss_bytes();
    let m = store.metrics();
    let delta = after.saturating_sub(before);
    println!(
        "memory: {n} active series, {SCRAPES} scrapes: RSS +{delta} bytes = {:.0} bytes/series (RocksDB memtables included); head accounting {:.0} bytes/series",
        delta as f64 / n as f64,
        m.head_bytes as f64 / n as f64
    );
    println!(
        "memory: {n} series: RSS +{} bytes at open, +{} more after creating the series (head accounting {head_created}), +{} more after {SCRAPES} scrapes",
        opened.saturating_sub(before),
        created.saturating_sub(opened),
        after.saturating_sub(created)
    );
    let (heap, anon) = rss_split();
    println!(
        "memory: {n} series: resident main heap {heap} bytes, other anonymous mappings {anon} bytes"
    );
    println!("{n} {delta} {}", m.head_bytes);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The cost of durability: one 100-sample commit through the RocksDB WAL, unsynced
/// (survives kill -9) and fsynced (survives power loss).
fn durability(base: &Path, w: &Workload) -> Res<()> {
    for sync in [false, true] {
        let ddir = base.join(format!("dur-{sync}"));
        let st = RocksStorage::open(
            &ddir,
            StorageOptions::default(),
            RocksOptions {
                sync,
                ..RocksOptions::default()
            },
        )?;
        let mut app = st.appender();
        let refs: Vec<SeriesRef> = w
            .series
            .iter()
            .take(100)
            .map(|s| app.series_ref(&s.labels))
            .collect::<Result<_, _>>()?;
        let commits = if sync { 300 } else { 3000 };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let t = Instant::now();
        for c in 0..commits {
            for (k, r) in refs.iter().enumerate() {
                app.append(*r, now - 3_000_000 + c * 1000, (c * 100 + k as i64) as f64)?;
            }
            app.commit()?;
        }
        let per = t.elapsed().as_secs_f64() / commits as f64;
        println!(
            "durability: sync={sync}: {:.1} us per 100-sample commit ({:.0} samples/s)",
            per * 1e6,
            100.0 / per
        );
    }
    Ok(())
}
