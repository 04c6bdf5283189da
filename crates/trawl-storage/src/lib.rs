//! The storage contract of a Trawl shard and everything about it that needs no database:
//! the [`Storage`]/[`Appender`]/[`Querier`] traits, the append rules, the Gorilla chunk codec
//! ([`chunk`]), the in-memory [`head::Head`] of open chunks, the postings algorithm that turns
//! matchers into series ids ([`postings`]), an in-memory reference implementation
//! ([`mem::MemStorage`]) and the conformance suite every implementation must pass
//! ([`testsuite`], [`storage_testsuite!`]).
//!
//! Invariants:
//! - A [`SeriesRef`] handed out by an appender stays valid for the life of the store and
//!   across restarts, head GC included: ids are never reused for another label set, and
//!   appending to the ref of a series the head dropped brings it back under the same ref.
//!   Callers cache refs per (target, series) so steady-state appends do no label hashing.
//! - Head GC ([`Storage::gc_head`], also run by every checkpoint/flush) drops the in-memory
//!   state of series whose newest sample is older than the head's newest timestamp minus
//!   `max(head_gc_after_ms, too_old_window_ms)`; their data stays readable. Because the
//!   cutoff is never later than the too-old bound, a dropped series cannot come back and
//!   accept a sample older than its stored ones.
//! - Within a series, stored timestamps strictly increase. The append rules (out of order,
//!   too old, duplicate timestamp with different value bits, too far in the future) are
//!   checked at commit, in batch order, and rejections are counted per reason.
//! - Values are stored and compared as bit patterns: the staleness NaN and every other NaN
//!   payload, ±Inf and -0.0 come back exactly as written.
//! - Sealed chunks are re-encoded as decimal chunks ([`decimal`]) only when that reproduces
//!   every value bit for bit; otherwise they stay Gorilla XOR.
//! - A chunk never spans two time partitions, so retention can drop whole partitions.
//! - After `apply_retention`, no read returns a sample older than the retention watermark,
//!   even where the physical delete is partition-granular.
//! - Nothing here panics on stored or user data: decoding failures are
//!   [`StorageError::Corrupt`].
//!
//! Native histograms are out of scope; [`ChunkEncoding`] keeps room for them.
//!
//! Differences from Prometheus's TSDB: there is no out-of-order ingestion window (every
//! sample older than its series' newest is rejected, as with Prometheus's default
//! `out_of_order_time_window: 0`); "too old" is the head's newest timestamp minus
//! [`StorageOptions::too_old_window_ms`] or the retention watermark; and samples more than
//! [`StorageOptions::max_future_ms`] ahead of the clock are rejected, which Prometheus's head
//! does not do on its own.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use trawl_model::{Labels, Matcher, Sample};

mod bits;
pub mod chunk;
pub mod decimal;
mod error;
pub mod head;
pub mod mem;
pub mod postings;
pub mod testsuite;

pub use bits::{unzigzag, zigzag};
pub use error::{RejectReason, StorageError};

/// A handle to one series, cheap to copy and cache. Only meaningful to the store that issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u64);

/// How a chunk's bytes are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkEncoding {
    /// Gorilla float chunk ([`chunk::XorAppender`]).
    Xor,
    /// Scaled-integer chunk for exact short decimals ([`decimal`]).
    Decimal,
}

impl ChunkEncoding {
    /// Stable one-byte tag for storage.
    pub fn tag(self) -> u8 {
        match self {
            ChunkEncoding::Xor => 1,
            ChunkEncoding::Decimal => 2,
        }
    }

    /// Inverse of [`ChunkEncoding::tag`].
    pub fn from_tag(t: u8) -> Option<Self> {
        match t {
            1 => Some(ChunkEncoding::Xor),
            2 => Some(ChunkEncoding::Decimal),
            _ => None,
        }
    }
}

/// One encoded chunk with its time bounds (inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkData {
    /// Timestamp of the first sample.
    pub min_t: i64,
    /// Timestamp of the last sample.
    pub max_t: i64,
    /// Encoding of `bytes`.
    pub encoding: ChunkEncoding,
    /// The encoded chunk.
    pub bytes: Arc<[u8]>,
}

impl ChunkData {
    /// Decodes every sample of the chunk.
    pub fn samples(&self) -> Result<chunk::ChunkIter<'_>, StorageError> {
        chunk::iter(self.encoding, &self.bytes)
    }
}

/// Optional hints for `select`; implementations may ignore them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectHints {
    /// Query step in milliseconds (0 = instant / unknown).
    pub step_ms: i64,
    /// The PromQL function wrapping the selector, if any.
    pub func: Option<String>,
    /// Return at most this many series.
    pub limit: Option<usize>,
}

/// A selected series: labels plus the encoded chunks overlapping the query range.
/// Samples decode lazily, chunk by chunk, as [`Series::samples`] is iterated.
#[derive(Clone, Debug)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    chunks: Vec<ChunkData>,
    mint: i64,
    maxt: i64,
}

impl Series {
    /// A series over `chunks` (sorted by time, not overlapping) restricted to `[mint, maxt]`.
    pub fn new(labels: Labels, chunks: Vec<ChunkData>, mint: i64, maxt: i64) -> Self {
        Self {
            labels,
            chunks,
            mint,
            maxt,
        }
    }

    /// The raw encoded chunks overlapping the query range, for streaming without decoding.
    /// They may hold samples outside the range.
    pub fn chunks(&self) -> &[ChunkData] {
        &self.chunks
    }

    /// The samples within the query range, decoded lazily.
    pub fn samples(&self) -> SeriesSamples<'_> {
        SeriesSamples {
            chunks: &self.chunks,
            next_chunk: 0,
            cur: None,
            mint: self.mint,
            maxt: self.maxt,
            done: false,
        }
    }
}

/// Iterator over a [`Series`]' samples.
#[derive(Debug)]
pub struct SeriesSamples<'a> {
    chunks: &'a [ChunkData],
    next_chunk: usize,
    cur: Option<chunk::ChunkIter<'a>>,
    mint: i64,
    maxt: i64,
    done: bool,
}

impl Iterator for SeriesSamples<'_> {
    type Item = Result<Sample, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(it) = self.cur.as_mut() {
                match it.next() {
                    Some(Ok(s)) if s.t < self.mint => continue,
                    Some(Ok(s)) if s.t > self.maxt => {
                        self.done = true;
                        return None;
                    }
                    Some(Ok(s)) => return Some(Ok(s)),
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    None => self.cur = None,
                }
            }
            let Some(c) = self.chunks.get(self.next_chunk) else {
                self.done = true;
                return None;
            };
            self.next_chunk += 1;
            if c.max_t < self.mint {
                continue;
            }
            if c.min_t > self.maxt {
                self.done = true;
                return None;
            }
            match c.samples() {
                Ok(it) => self.cur = Some(it),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// A lazily produced sequence of series, sorted by labels.
pub type SeriesSet<'a> = Box<dyn Iterator<Item = Result<Series, StorageError>> + 'a>;

/// Outcome of one [`Appender::commit`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Samples stored.
    pub appended: u64,
    /// Samples identical to the newest one of their series (same timestamp and value bits),
    /// accepted and ignored as Prometheus does.
    pub duplicates_ignored: u64,
    /// Rejected samples per reason, indexed like [`RejectReason::ALL`].
    pub rejected: [u64; 4],
    /// The first rejection: series, timestamp, reason.
    pub first_rejection: Option<(SeriesRef, i64, RejectReason)>,
}

impl CommitReport {
    /// Rejections for one reason.
    pub fn rejected(&self, r: RejectReason) -> u64 {
        self.rejected[r.index()]
    }

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Counts a rejection (implementations call this from `commit`).
    pub fn reject(&mut self, r: SeriesRef, t: i64, why: RejectReason) {
        self.rejected[why.index()] += 1;
        if self.first_rejection.is_none() {
            self.first_rejection = Some((r, t, why));
        }
    }
}

/// What one retention run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Samples older than this are no longer readable.
    pub watermark: i64,
    /// Whole time partitions (or in-memory chunks) physically removed.
    pub dropped: u64,
}

/// What one head GC run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadGcReport {
    /// Series whose newest sample is older than this were dropped from the head.
    pub cutoff: i64,
    /// Series dropped.
    pub removed: u64,
    /// Series left in the head.
    pub remaining: u64,
}

/// Self-metrics of a store, as plain numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageMetrics {
    /// Series held in the head.
    pub head_series: u64,
    /// Open chunks with samples held in the head.
    pub head_chunks: u64,
    /// Heap bytes of the head (symbols, series, open chunks, index), as allocated.
    pub head_bytes: u64,
    /// Samples stored since open.
    pub appended_samples: u64,
    /// Rejected samples since open, indexed like [`RejectReason::ALL`].
    pub rejected_samples: [u64; 4],
    /// Bytes the store occupies on disk (0 for in-memory stores).
    pub bytes_on_disk: u64,
    /// Compactions run (for RocksDB: manual compactions plus head checkpoints).
    pub compactions: u64,
    /// Retention runs.
    pub retention_runs: u64,
    /// Series dropped from the head by GC since open.
    pub head_series_removed: u64,
}

impl StorageMetrics {
    /// Rejections for one reason.
    pub fn rejected(&self, r: RejectReason) -> u64 {
        self.rejected_samples[r.index()]
    }
}

/// Lock-free counters behind [`StorageMetrics`], shared by implementations.
#[derive(Debug, Default)]
pub struct Counters {
    /// Samples stored.
    pub appended: AtomicU64,
    /// Rejections per reason.
    pub rejected: [AtomicU64; 4],
    /// Compactions / checkpoints.
    pub compactions: AtomicU64,
    /// Retention runs.
    pub retention_runs: AtomicU64,
    /// Series dropped from the head by GC.
    pub head_series_removed: AtomicU64,
}

impl Counters {
    /// Adds a commit's outcome.
    pub fn record(&self, r: &CommitReport) {
        self.appended.fetch_add(r.appended, Ordering::Relaxed);
        for (c, n) in self.rejected.iter().zip(r.rejected) {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Fills the counter fields of `m`.
    pub fn fill(&self, m: &mut StorageMetrics) {
        m.appended_samples = self.appended.load(Ordering::Relaxed);
        for (i, c) in self.rejected.iter().enumerate() {
            m.rejected_samples[i] = c.load(Ordering::Relaxed);
        }
        m.compactions = self.compactions.load(Ordering::Relaxed);
        m.retention_runs = self.retention_runs.load(Ordering::Relaxed);
        m.head_series_removed = self.head_series_removed.load(Ordering::Relaxed);
    }
}

/// Source of "now" in milliseconds since the epoch (replaceable in tests).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        }))
    }

    /// A clock reading whatever `f` returns.
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The current time in milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// Options shared by every implementation.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// `--storage.tsdb.retention.time` in milliseconds (default 15 days).
    pub retention_ms: i64,
    /// `--storage.tsdb.retention.size` in bytes (`None` = unlimited).
    pub retention_bytes: Option<u64>,
    /// Samples later than now + this are rejected as too far in the future (default 10 min).
    pub max_future_ms: i64,
    /// Samples older than the newest sample in the store minus this are rejected as too old
    /// (default 1 h, half of Prometheus's 2 h head block range).
    pub too_old_window_ms: i64,
    /// Samples per chunk before it is sealed (default 120, as in Prometheus).
    pub chunk_samples: usize,
    /// Width of a time partition (default 2 h); chunks never cross a partition boundary.
    pub partition_ms: i64,
    /// Head GC drops series without a sample for this long, measured back from the head's
    /// newest timestamp (default 2 h, Prometheus's head chunk range). Never less than
    /// `too_old_window_ms` in effect.
    pub head_gc_after_ms: i64,
    /// The clock used for the future check and retention.
    pub clock: Clock,
}

impl StorageOptions {
    /// The head GC cutoff for a head whose newest timestamp is `head_max_t`.
    pub fn head_gc_cutoff(&self, head_max_t: i64) -> i64 {
        head_max_t.saturating_sub(self.head_gc_after_ms.max(self.too_old_window_ms).max(0))
    }
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            retention_ms: 15 * 24 * 3600 * 1000,
            retention_bytes: None,
            max_future_ms: 10 * 60 * 1000,
            too_old_window_ms: 3600 * 1000,
            chunk_samples: 120,
            partition_ms: 2 * 3600 * 1000,
            head_gc_after_ms: 2 * 3600 * 1000,
            clock: Clock::system(),
        }
    }
}

/// A storage shard.
pub trait Storage: Send + Sync {
    /// A new appender; it buffers samples until [`Appender::commit`].
    fn appender(&self) -> Box<dyn Appender + '_>;
    /// A reader over the current contents (head included).
    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError>;
    /// Applies time (and, where supported, size) retention relative to the clock's now.
    fn apply_retention(&self) -> Result<RetentionReport, StorageError>;
    /// Makes the current state cheap to recover (checkpoint); durability never depends on it.
    /// Implementations also run head GC here.
    fn flush(&self) -> Result<(), StorageError>;
    /// Self-metrics.
    fn metrics(&self) -> StorageMetrics;
    /// Drops the in-memory state of idle series (see the crate docs for the cutoff and the
    /// contract on their refs). Their data stays readable. The default does nothing.
    fn gc_head(&self) -> Result<HeadGcReport, StorageError> {
        Ok(HeadGcReport::default())
    }
    /// Whether a long maintenance step (a checkpoint, retention) holds the write path now,
    /// so a caller that must not block (an async worker) should hand its commit to a thread
    /// that may. A hint: it can change right after it is read. The default says never.
    fn busy(&self) -> bool {
        false
    }
}

/// Writes one batch of samples (one scrape) atomically.
pub trait Appender: Send {
    /// The reference of the series with these labels, creating the series if needed.
    /// Cache the result: appending by reference skips hashing and lookups.
    fn series_ref(&mut self, labels: &Labels) -> Result<SeriesRef, StorageError>;
    /// Buffers a sample. Fails only for a reference this store never issued (a reference of
    /// a series dropped by head GC is still valid); the append rules are applied at commit.
    fn append(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), StorageError>;
    /// Buffers many samples.
    fn append_batch(&mut self, samples: &[(SeriesRef, Sample)]) -> Result<(), StorageError> {
        for (r, s) in samples {
            self.append(*r, s.t, s.v)?;
        }
        Ok(())
    }
    /// Applies the rules and stores the accepted samples. When it returns `Ok`, every
    /// accepted sample survives a crash of the process.
    fn commit(&mut self) -> Result<CommitReport, StorageError>;
    /// Discards the buffered samples.
    fn rollback(&mut self);
}

/// Reads a store. Ranges are inclusive milliseconds.
pub trait Querier {
    /// Series matching all `matchers` with at least one sample in `[mint, maxt]`, sorted by
    /// labels, each yielding its samples in the range lazily.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesSet<'_>, StorageError>;
    /// Sorted label names of series matching `matchers` (all series if empty) with data in range.
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;
    /// Sorted values of label `name` over series matching `matchers` with data in range.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;
    /// Label sets of series matching `matchers` with data in range, sorted.
    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let set = self.select(matchers, mint, maxt, &SelectHints::default())?;
        set.map(|s| s.map(|s| s.labels)).collect()
    }
}

/// Partition index of a timestamp.
#[inline]
pub fn partition_of(t: i64, partition_ms: i64) -> i64 {
    t.div_euclid(partition_ms.max(1))
}
