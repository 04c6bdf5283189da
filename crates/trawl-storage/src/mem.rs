//! The in-memory reference implementation: a [`Head`] for the open chunks and the append
//! rules, plus what a disk store keeps on disk, here in memory (every series' labels, a
//! label-hash index, [`MemPostings`] and the sealed chunks), behind one mutex. It defines
//! the expected behaviour the disk implementation is tested against, head GC included; it is
//! not built for scale.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use trawl_model::{Labels, Matcher};

use crate::head::{Appended, Head, HeadOptions, Limits, SealedChunk};
use crate::postings::{MemPostings, select_ids};
use crate::testsuite::Factory;
use crate::{
    Appender, ChunkData, CommitReport, Counters, HeadGcReport, Querier, RetentionReport,
    SelectHints, Series, SeriesRef, SeriesSet, Storage, StorageError, StorageMetrics,
    StorageOptions,
};

#[derive(Debug)]
struct State {
    head: Head,
    postings: MemPostings,
    /// Series id − 1 → labels; ids are never reused.
    labels: Vec<Labels>,
    by_hash: HashMap<u64, Vec<u64>>,
    /// Sealed chunks per series id, in time order.
    chunks: HashMap<u64, Vec<ChunkData>>,
    watermark: i64,
}

impl State {
    fn store_sealed(&mut self, c: SealedChunk) {
        self.chunks.entry(c.series.0).or_default().push(c.chunk);
    }

    /// Brings a series dropped by head GC back into the head under its id.
    fn revive(&mut self, r: SeriesRef) -> Result<(), StorageError> {
        let l =
            r.0.checked_sub(1)
                .and_then(|i| self.labels.get(i as usize))
                .cloned()
                .ok_or(StorageError::UnknownSeries(r.0))?;
        self.head.insert(r.0, l)?;
        Ok(())
    }

    fn lookup_stored(&self, labels: &Labels) -> Option<SeriesRef> {
        self.by_hash
            .get(&labels.stable_hash())?
            .iter()
            .copied()
            .find(|&id| self.labels.get(id as usize - 1) == Some(labels))
            .map(SeriesRef)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    series: AtomicU64,
    counters: Counters,
}

/// The in-memory store.
#[derive(Debug, Clone)]
pub struct MemStorage {
    shared: Arc<Shared>,
    opts: StorageOptions,
}

impl MemStorage {
    /// An empty store.
    pub fn new(opts: StorageOptions) -> Self {
        let head = Head::new(HeadOptions {
            chunk_samples: opts.chunk_samples,
            partition_ms: opts.partition_ms,
        });
        let state = State {
            head,
            postings: MemPostings::default(),
            labels: Vec::new(),
            by_hash: HashMap::new(),
            chunks: HashMap::new(),
            watermark: i64::MIN,
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                series: AtomicU64::new(0),
                counters: Counters::default(),
            }),
            opts,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the head half-updated in a way that
        // matters for readers, so poisoning is ignored.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Chunks (sorted, in range) and whether any sample falls in `[mint, maxt]`.
pub fn has_sample_in(chunks: &[ChunkData], mint: i64, maxt: i64) -> Result<bool, StorageError> {
    for c in chunks {
        if (mint..=maxt).contains(&c.min_t) || (mint..=maxt).contains(&c.max_t) {
            return Ok(true);
        }
        for s in c.samples()? {
            let s = s?;
            if s.t > maxt {
                break;
            }
            if s.t >= mint {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl Storage for MemStorage {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(MemAppender {
            s: self,
            pending: Vec::new(),
        })
    }

    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(MemQuerier { s: self }))
    }

    fn apply_retention(&self) -> Result<RetentionReport, StorageError> {
        let cutoff = self
            .opts
            .clock
            .now_ms()
            .saturating_sub(self.opts.retention_ms);
        let mut st = self.lock();
        st.watermark = st.watermark.max(cutoff);
        let mut dropped = 0;
        for v in st.chunks.values_mut() {
            let before = v.len();
            v.retain(|c| c.max_t >= cutoff);
            dropped += (before - v.len()) as u64;
        }
        if let Some(limit) = self.opts.retention_bytes {
            // Size retention, as the disk store does it: the sealed chunks stand for the
            // bytes on disk; drop the oldest partition until under the limit or only the
            // head's newest partition is left.
            let pms = self.opts.partition_ms.max(1);
            let newest = crate::partition_of(st.head.max_t(), pms);
            loop {
                let size: usize = st.chunks.values().flatten().map(|c| c.bytes.len()).sum();
                let oldest = st
                    .chunks
                    .values()
                    .flatten()
                    .map(|c| crate::partition_of(c.min_t, pms))
                    .min();
                let Some(oldest) = oldest else { break };
                if size as u64 <= limit || oldest >= newest {
                    break;
                }
                for v in st.chunks.values_mut() {
                    let before = v.len();
                    v.retain(|c| crate::partition_of(c.min_t, pms) > oldest);
                    dropped += (before - v.len()) as u64;
                }
                st.watermark = st.watermark.max((oldest + 1).saturating_mul(pms));
            }
        }
        self.shared
            .counters
            .retention_runs
            .fetch_add(1, Ordering::Relaxed);
        Ok(RetentionReport {
            watermark: st.watermark,
            dropped,
        })
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.gc_head().map(|_| ())
    }

    fn gc_head(&self) -> Result<HeadGcReport, StorageError> {
        let mut st = self.lock();
        let cutoff = self.opts.head_gc_cutoff(st.head.max_t());
        let (removed, sealed) = st.head.gc(cutoff);
        for c in sealed {
            st.store_sealed(c);
        }
        let remaining = st.head.series_count();
        drop(st);
        self.shared
            .counters
            .head_series_removed
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        Ok(HeadGcReport {
            cutoff,
            removed: removed.len() as u64,
            remaining,
        })
    }

    fn metrics(&self) -> StorageMetrics {
        let st = self.lock();
        let mut m = StorageMetrics {
            head_series: st.head.series_count(),
            head_chunks: st.head.chunk_count(),
            head_bytes: st.head.heap_bytes(),
            ..Default::default()
        };
        drop(st);
        self.shared.counters.fill(&mut m);
        m
    }
}

struct MemAppender<'a> {
    s: &'a MemStorage,
    pending: Vec<(SeriesRef, i64, f64)>,
}

impl Appender for MemAppender<'_> {
    fn series_ref(&mut self, labels: &Labels) -> Result<SeriesRef, StorageError> {
        if labels.is_empty() {
            return Err(StorageError::InvalidSeries("empty label set".into()));
        }
        let mut st = self.s.lock();
        if let Some(r) = st.head.lookup(labels) {
            return Ok(r);
        }
        if let Some(r) = st.lookup_stored(labels) {
            st.revive(r)?;
            return Ok(r);
        }
        let id = st.labels.len() as u64 + 1;
        let r = st.head.insert(id, labels.clone())?;
        st.labels.push(labels.clone());
        st.by_hash.entry(labels.stable_hash()).or_default().push(id);
        st.postings.add(id, labels);
        self.s.shared.series.store(id, Ordering::Release);
        Ok(r)
    }

    fn append(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), StorageError> {
        if series.0 == 0 || series.0 > self.s.shared.series.load(Ordering::Acquire) {
            return Err(StorageError::UnknownSeries(series.0));
        }
        self.pending.push((series, t, v));
        Ok(())
    }

    fn commit(&mut self) -> Result<CommitReport, StorageError> {
        let now = self.s.opts.clock.now_ms();
        let mut rep = CommitReport::default();
        let mut st = self.s.lock();
        let limits = Limits {
            max_t: now.saturating_add(self.s.opts.max_future_ms),
            watermark: st.watermark,
            too_old_window_ms: self.s.opts.too_old_window_ms,
        };
        for (r, t, v) in self.pending.drain(..) {
            let mut res = st.head.append(r, t, v, Some(&limits));
            if let Err(Err(StorageError::UnknownSeries(_))) = res {
                st.revive(r)?;
                res = st.head.append(r, t, v, Some(&limits));
            }
            match res {
                Ok(Appended::Stored(sealed)) => {
                    rep.appended += 1;
                    if let Some(c) = sealed {
                        st.store_sealed(c);
                    }
                }
                Ok(Appended::Duplicate) => rep.duplicates_ignored += 1,
                Err(Ok(why)) => rep.reject(r, t, why),
                Err(Err(e)) => return Err(e),
            }
        }
        drop(st);
        self.s.shared.counters.record(&rep);
        Ok(rep)
    }

    fn rollback(&mut self) {
        self.pending.clear();
    }
}

struct MemQuerier<'a> {
    s: &'a MemStorage,
}

impl MemQuerier<'_> {
    fn matching(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError> {
        let st = self.s.lock();
        let mint = mint.max(st.watermark);
        let mut out = Vec::new();
        if mint > maxt {
            return Ok(out);
        }
        for id in select_ids(&st.postings, matchers)? {
            let r = SeriesRef(id);
            let mut chunks: Vec<ChunkData> = st
                .chunks
                .get(&id)
                .into_iter()
                .flatten()
                .filter(|c| c.max_t >= mint && c.min_t <= maxt)
                .cloned()
                .collect();
            chunks.extend(st.head.open_in(r, mint, maxt));
            if !has_sample_in(&chunks, mint, maxt)? {
                continue;
            }
            let Some(l) = st.labels.get(id as usize - 1) else {
                continue;
            };
            out.push(Series::new(l.clone(), chunks, mint, maxt));
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

impl Querier for MemQuerier<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesSet<'_>, StorageError> {
        let mut v = self.matching(matchers, mint, maxt)?;
        if let Some(l) = hints.limit {
            v.truncate(l);
        }
        Ok(Box::new(v.into_iter().map(Ok)))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        for s in self.matching(matchers, mint, maxt)? {
            names.extend(s.labels.iter().map(|l| l.name.clone()));
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut vals = BTreeSet::new();
        for s in self.matching(matchers, mint, maxt)? {
            if let Some(v) = s.labels.get(name) {
                vals.insert(v.to_string());
            }
        }
        Ok(vals.into_iter().collect())
    }
}

/// Opens [`MemStorage`]s keyed by directory: reopening a directory returns the same
/// contents, which is how the shared suite's restart cases run against the reference.
#[derive(Debug, Default)]
pub struct MemFactory {
    stores: Mutex<HashMap<PathBuf, Arc<Shared>>>,
}

impl Factory for MemFactory {
    fn open(&self, dir: &Path, opts: StorageOptions) -> Result<Box<dyn Storage>, StorageError> {
        let mut m = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = m.get(dir) {
            return Ok(Box::new(MemStorage {
                shared: shared.clone(),
                opts,
            }));
        }
        let s = MemStorage::new(opts);
        m.insert(dir.to_path_buf(), s.shared.clone());
        Ok(Box::new(s))
    }
}
