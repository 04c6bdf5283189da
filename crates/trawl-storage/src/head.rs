//! The head: every active series with its open (appendable) chunk.
//!
//! Memory per series is what this module is built around (the goal is ≤ 1 KiB resident per
//! active series, open chunk included):
//! - Label names and values are interned once per head in a reference-counted symbol table
//!   (as Prometheus's head does); a series' `(name, value)` symbol ids sit in one arena shared
//!   by all series, so a series costs no allocation besides its open chunk (small per-series
//!   allocations between the chunk buffers also kept freed buffers from merging).
//!   [`Labels`] are built on demand for reads.
//! - Series live in a dense slab whose freed slots are reused; a [`SeriesRef`] (the series
//!   id) maps to its slot through a `u32` per id, so appending by reference costs no hashing.
//! - The open chunk keeps no copy of what it can decode (its first timestamp); its buffer
//!   grows in fixed steps from a minimum above glibc's fastbin sizes, so buffers freed while
//!   chunks grow in lockstep can merge and be reused ([`crate::chunk::MIN_CAPACITY`]).
//!
//! Label sets are found by their stable hash (with an overflow list for the rare collision).
//! The head applies the append rules; sealing a chunk hands it to the caller, which stores it
//! (on disk, or in memory for the reference store).
//!
//! Head GC ([`Head::gc`]) drops series whose newest sample is older than a cutoff, handing
//! their open chunk to the caller as a sealed chunk. Series ids are never reused, so a cached
//! [`SeriesRef`] of a dropped series still names the same label set; stores re-insert such a
//! series ([`Head::insert`] with its old id) when it is appended to again. The caller picks a
//! cutoff no later than the too-old bound, so a re-inserted series (which starts with an
//! empty open chunk) cannot accept a sample older than the ones it had.

use std::collections::HashMap;
use std::sync::Arc;

use trawl_model::{Label, Labels};

use crate::chunk::{MAX_CHUNK_SAMPLES, XorAppender};
use crate::{ChunkData, ChunkEncoding, RejectReason, SeriesRef, StorageError, partition_of};

/// Limits the head checks an append against (absent during log replay, which re-applies
/// only samples that were accepted before).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Newest acceptable timestamp.
    pub max_t: i64,
    /// Oldest acceptable timestamp regardless of the head's newest sample (retention watermark).
    pub watermark: i64,
    /// How far behind the head's newest sample a sample may be.
    pub too_old_window_ms: i64,
}

/// What happened to one appended sample.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored; `Some` when the previous open chunk was sealed to make room.
    Stored(Option<SealedChunk>),
    /// Same timestamp and value bits as the newest sample: ignored.
    Duplicate,
}

/// A chunk sealed by the head.
#[derive(Debug, PartialEq, Eq)]
pub struct SealedChunk {
    /// Its series.
    pub series: SeriesRef,
    /// Its partition.
    pub partition: i64,
    /// The chunk.
    pub chunk: ChunkData,
}

/// Size of the glibc malloc chunk serving a request of `n` bytes (8 bytes of header, 16-byte
/// granularity, 32 bytes minimum), so the head's accounting matches resident memory.
fn alloc_size(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).div_ceil(16).max(2) * 16
    }
}

/// Heap bytes of a `std` hash map with `cap` capacity and entries of `entry` bytes
/// (hashbrown: buckets = capacity * 8 / 7 rounded to a power of two, one control byte each).
fn map_bytes(cap: usize, entry: usize) -> usize {
    if cap == 0 {
        return 0;
    }
    let buckets = (cap * 8 / 7).next_power_of_two();
    alloc_size(buckets * (entry + 1) + 16)
}

/// Interned label names and values, reference counted so GC'd series release theirs.
#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strs: Vec<(Option<Arc<str>>, u32)>,
    free: Vec<u32>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            self.strs[id as usize].1 += 1;
            return id;
        }
        let a: Arc<str> = Arc::from(s);
        let id = match self.free.pop() {
            Some(id) => {
                self.strs[id as usize] = (Some(a.clone()), 1);
                id
            }
            None => {
                self.strs.push((Some(a.clone()), 1));
                (self.strs.len() - 1) as u32
            }
        };
        self.ids.insert(a, id);
        id
    }

    fn release(&mut self, id: u32) {
        let Some(e) = self.strs.get_mut(id as usize) else {
            return;
        };
        e.1 = e.1.saturating_sub(1);
        if e.1 == 0
            && let Some(a) = e.0.take()
        {
            self.ids.remove(&*a);
            self.free.push(id);
        }
    }

    fn get(&self, id: u32) -> &str {
        self.strs
            .get(id as usize)
            .and_then(|e| e.0.as_deref())
            .unwrap_or("")
    }

    fn heap_bytes(&self) -> usize {
        let strings: usize = self
            .strs
            .iter()
            .filter_map(|e| e.0.as_ref())
            .map(|a| alloc_size(16 + a.len()))
            .sum();
        map_bytes(self.ids.capacity(), 16 + 4)
            + alloc_size(self.strs.capacity() * 24)
            + alloc_size(self.free.capacity() * 4)
            + strings
    }
}

/// One series in the head.
#[derive(Debug)]
pub struct HeadSeries {
    id: u32,
    /// Offset of the `name, value` symbol pairs (in label order) in the head's arena.
    syms_at: u32,
    /// Number of symbols (twice the number of labels).
    syms_len: u16,
    open: XorAppender,
}

impl HeadSeries {
    /// The open chunk as chunk data (a copy), if it has samples.
    pub fn open_chunk(&self) -> Option<ChunkData> {
        if self.open.is_empty() {
            return None;
        }
        Some(ChunkData {
            min_t: self.open.min_t(),
            max_t: self.open.max_t(),
            encoding: ChunkEncoding::Xor,
            bytes: self.open.to_shared(),
        })
    }

    /// Timestamp of the newest sample, if it has any.
    pub fn last_t(&self) -> Option<i64> {
        (!self.open.is_empty()).then(|| self.open.max_t())
    }
}

/// Head configuration.
#[derive(Clone, Copy, Debug)]
pub struct HeadOptions {
    /// Samples per chunk before sealing.
    pub chunk_samples: usize,
    /// Partition width in ms.
    pub partition_ms: i64,
}

/// The in-memory head.
#[derive(Debug)]
pub struct Head {
    opts: HeadOptions,
    symbols: Symbols,
    /// Symbol ids of every series' labels, back to back; holes left by GC'd series are
    /// squeezed out when they exceed the live part.
    arena: Vec<u32>,
    arena_live: usize,
    /// Series id − 1 → slot + 1 (0: not in the head).
    index: Vec<u32>,
    slots: Vec<Option<HeadSeries>>,
    free_slots: Vec<u32>,
    by_hash: HashMap<u64, u32>,
    collisions: HashMap<u64, Vec<u32>>,
    max_t: i64,
    live: u64,
    max_id: u64,
    /// The partition most appends fall in, so the common append skips two divisions.
    part: PartitionCache,
}

/// One partition's number and its `[lo, hi)` time range.
#[derive(Debug, Clone, Copy)]
struct PartitionCache {
    lo: i64,
    hi: i64,
    p: i64,
}

impl PartitionCache {
    const EMPTY: PartitionCache = PartitionCache { lo: 0, hi: 0, p: 0 };

    fn of(&mut self, t: i64, partition_ms: i64) -> i64 {
        if t >= self.lo && t < self.hi {
            return self.p;
        }
        let p = partition_of(t, partition_ms);
        // Near the ends of the time range the bounds do not fit: cache nothing there.
        *self = match p
            .checked_mul(partition_ms)
            .and_then(|lo| Some((lo, lo.checked_add(partition_ms)?)))
        {
            Some((lo, hi)) => PartitionCache { lo, hi, p },
            None => PartitionCache::EMPTY,
        };
        p
    }
}

impl Head {
    /// An empty head.
    pub fn new(mut opts: HeadOptions) -> Self {
        opts.chunk_samples = opts.chunk_samples.clamp(1, MAX_CHUNK_SAMPLES);
        opts.partition_ms = opts.partition_ms.max(1);
        Self {
            opts,
            symbols: Symbols::default(),
            arena: Vec::new(),
            arena_live: 0,
            index: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_hash: HashMap::new(),
            collisions: HashMap::new(),
            max_t: i64::MIN,
            live: 0,
            max_id: 0,
            part: PartitionCache::EMPTY,
        }
    }

    /// The largest id ever inserted (0 when none); the next new series gets this + 1.
    pub fn max_id(&self) -> u64 {
        self.max_id
    }

    /// Whether `r` names a series currently in the head.
    pub fn contains(&self, r: SeriesRef) -> bool {
        self.get(r).is_some()
    }

    fn slot_of(&self, r: SeriesRef) -> Option<usize> {
        let i = usize::try_from(r.0.checked_sub(1)?).ok()?;
        let s = *self.index.get(i)?;
        (s != 0).then(|| s as usize - 1)
    }

    /// The series for a reference.
    pub fn get(&self, r: SeriesRef) -> Option<&HeadSeries> {
        self.slots.get(self.slot_of(r)?)?.as_ref()
    }

    fn get_mut(&mut self, r: SeriesRef) -> Option<&mut HeadSeries> {
        let s = self.slot_of(r)?;
        self.slots.get_mut(s)?.as_mut()
    }

    fn syms(&self, s: &HeadSeries) -> &[u32] {
        let at = s.syms_at as usize;
        self.arena.get(at..at + s.syms_len as usize).unwrap_or(&[])
    }

    /// The labels of a head series, built from the symbol table.
    pub fn labels_of(&self, s: &HeadSeries) -> Labels {
        Labels::from_sorted(
            self.syms(s)
                .chunks_exact(2)
                .map(|p| Label::new(self.symbols.get(p[0]), self.symbols.get(p[1])))
                .collect(),
        )
    }

    /// The labels of a series in the head.
    pub fn labels(&self, r: SeriesRef) -> Option<Labels> {
        self.get(r).map(|s| self.labels_of(s))
    }

    fn same_labels(&self, s: &HeadSeries, labels: &Labels) -> bool {
        let syms = self.syms(s);
        syms.len() == labels.len() * 2
            && syms
                .chunks_exact(2)
                .zip(labels)
                .all(|(p, l)| self.symbols.get(p[0]) == l.name && self.symbols.get(p[1]) == l.value)
    }

    /// Finds a series by labels.
    pub fn lookup(&self, labels: &Labels) -> Option<SeriesRef> {
        let h = labels.stable_hash();
        let id = *self.by_hash.get(&h)?;
        let hit = |id: u32| {
            self.get(SeriesRef(id.into()))
                .is_some_and(|s| self.same_labels(s, labels))
        };
        if hit(id) {
            return Some(SeriesRef(id.into()));
        }
        self.collisions
            .get(&h)?
            .iter()
            .copied()
            .find(|&id| hit(id))
            .map(|id| SeriesRef(id.into()))
    }

    /// Adds a series under `id`, which must not be in the head. Ids are the caller's (dense
    /// from 1, never reused for another label set); a series removed by [`Head::gc`] is
    /// re-inserted under its old id.
    pub fn insert(&mut self, id: u64, labels: Labels) -> Result<SeriesRef, StorageError> {
        let id32 = match u32::try_from(id) {
            Ok(v) if v > 0 => v,
            _ => {
                return Err(StorageError::Corrupt(format!(
                    "series id {id} out of range"
                )));
            }
        };
        let i = id32 as usize - 1;
        if self.index.len() <= i {
            self.index.resize(i + 1, 0);
        }
        if self.index[i] != 0 {
            return Err(StorageError::Corrupt(format!("series id {id} used twice")));
        }
        let syms_len = u16::try_from(labels.len() * 2)
            .map_err(|_| StorageError::InvalidSeries("too many labels".into()))?;
        let syms_at = u32::try_from(self.arena.len())
            .ok()
            .filter(|at| at.checked_add(u32::from(syms_len)).is_some())
            .ok_or_else(|| StorageError::InvalidSeries("head label arena full".into()))?;
        let h = labels.stable_hash();
        match self.by_hash.get(&h) {
            None => {
                self.by_hash.insert(h, id32);
            }
            Some(_) => self.collisions.entry(h).or_default().push(id32),
        }
        for l in &labels {
            let n = self.symbols.intern(&l.name);
            let v = self.symbols.intern(&l.value);
            self.arena.extend_from_slice(&[n, v]);
        }
        self.arena_live += syms_len as usize;
        let series = HeadSeries {
            id: id32,
            syms_at,
            syms_len,
            open: XorAppender::new(),
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(series);
                s
            }
            None => {
                self.slots.push(Some(series));
                (self.slots.len() - 1) as u32
            }
        };
        self.index[i] = slot + 1;
        self.live += 1;
        self.max_id = self.max_id.max(id);
        Ok(SeriesRef(id))
    }

    /// Removes a series from the head, returning its open chunk sealed (if it had samples).
    fn remove(&mut self, r: SeriesRef) -> Option<SealedChunk> {
        let slot = self.slot_of(r)?;
        let s = self.slots.get_mut(slot)?.take()?;
        self.index[r.0 as usize - 1] = 0;
        self.free_slots.push(slot as u32);
        self.live -= 1;
        let labels = self.labels_of(&s);
        let h = labels.stable_hash();
        let id = s.id;
        if self.by_hash.get(&h) == Some(&id) {
            // Promote a colliding series, if any, into the primary map.
            match self.collisions.get_mut(&h).and_then(|v| v.pop()) {
                Some(other) => {
                    self.by_hash.insert(h, other);
                }
                None => {
                    self.by_hash.remove(&h);
                }
            }
        } else if let Some(v) = self.collisions.get_mut(&h) {
            v.retain(|&x| x != id);
        }
        if self.collisions.get(&h).is_some_and(Vec::is_empty) {
            self.collisions.remove(&h);
        }
        let at = s.syms_at as usize;
        for i in at..at + s.syms_len as usize {
            if let Some(&sym) = self.arena.get(i) {
                self.symbols.release(sym);
            }
        }
        self.arena_live -= s.syms_len as usize;
        if s.open.is_empty() {
            return None;
        }
        let partition = partition_of(s.open.min_t(), self.opts.partition_ms);
        Some(SealedChunk {
            series: r,
            partition,
            chunk: crate::chunk::seal(s.open),
        })
    }

    /// Head GC: removes every series whose newest sample is older than `cutoff`, and every
    /// series without samples. Returns the removed references and the open chunks they had,
    /// sealed, which the caller must store to keep the data readable.
    pub fn gc(&mut self, cutoff: i64) -> (Vec<SeriesRef>, Vec<SealedChunk>) {
        let victims: Vec<SeriesRef> = self
            .iter()
            .filter(|(_, s)| s.last_t().is_none_or(|t| t < cutoff))
            .map(|(r, _)| r)
            .collect();
        let mut sealed = Vec::new();
        for &r in &victims {
            sealed.extend(self.remove(r));
        }
        if self.free_slots.len() > self.slots.len() / 2 {
            // Mostly holes: repack the slab so a mass GC gives its memory back.
            let old = std::mem::take(&mut self.slots);
            self.free_slots = Vec::new();
            for s in old.into_iter().flatten() {
                self.index[s.id as usize - 1] = self.slots.len() as u32 + 1;
                self.slots.push(Some(s));
            }
            self.slots.shrink_to_fit();
        }
        if self.arena.len() > 2 * self.arena_live + 1024 {
            let mut packed = Vec::with_capacity(self.arena_live);
            for s in self.slots.iter_mut().flatten() {
                let at = s.syms_at as usize;
                let new_at = packed.len() as u32;
                packed.extend_from_slice(&self.arena[at..at + s.syms_len as usize]);
                s.syms_at = new_at;
            }
            self.arena = packed;
        }
        if !victims.is_empty() {
            self.by_hash.shrink_to_fit();
            self.collisions.shrink_to_fit();
            self.symbols.ids.shrink_to_fit();
        }
        (victims, sealed)
    }

    /// Restores an open chunk from a checkpoint.
    pub fn restore_open(&mut self, r: SeriesRef, bytes: &[u8]) -> Result<(), StorageError> {
        let open = XorAppender::from_bytes(bytes)?;
        let max = open.max_t();
        let nonempty = !open.is_empty();
        let s = self.get_mut(r).ok_or(StorageError::UnknownSeries(r.0))?;
        s.open = open;
        if nonempty {
            self.max_t = self.max_t.max(max);
        }
        Ok(())
    }

    /// Appends one sample, applying the rules when `limits` is given. A reference not in
    /// the head yields `Err(Err(StorageError::UnknownSeries))`.
    pub fn append(
        &mut self,
        r: SeriesRef,
        t: i64,
        v: f64,
        limits: Option<&Limits>,
    ) -> Result<Appended, Result<RejectReason, StorageError>> {
        let head_max = self.max_t;
        let opts = self.opts;
        let mut part = self.part;
        let s = self
            .get_mut(r)
            .ok_or(Err(StorageError::UnknownSeries(r.0)))?;
        if let Some(l) = limits {
            if t > l.max_t {
                return Err(Ok(RejectReason::TooFarInFuture));
            }
            let min_valid = l
                .watermark
                .max(head_max.saturating_sub(l.too_old_window_ms));
            if t < min_valid {
                return Err(Ok(RejectReason::TooOld));
            }
        }
        if !s.open.is_empty() {
            let last = s.open.max_t();
            if t < last {
                return Err(Ok(RejectReason::OutOfOrder));
            }
            if t == last {
                // The newest sample is always in the open chunk: sealing happens only when
                // the next sample arrives.
                return if s.open.last_bits() == v.to_bits() {
                    Ok(Appended::Duplicate)
                } else {
                    Err(Ok(RejectReason::DuplicateSample))
                };
            }
        }
        let p = part.of(t, opts.partition_ms);
        let mut sealed = None;
        if !s.open.is_empty() {
            // An open chunk never spans partitions (it is sealed at the boundary), so its
            // newest timestamp, kept unencoded, names the partition as well as its first,
            // which would be decoded from the chunk's cache-cold first bytes per append.
            let open_p = part.of(s.open.max_t(), opts.partition_ms);
            if s.open.len() >= opts.chunk_samples || p != open_p {
                // Growing from the minimum wastes less than preallocating the previous
                // chunk's size (measured: 467 vs 677 head bytes per node_exporter series,
                // and less RSS); see `chunk::MIN_CAPACITY` for why growth does not fragment.
                let next = XorAppender::new();
                sealed = Some(SealedChunk {
                    series: r,
                    partition: open_p,
                    chunk: crate::chunk::seal(std::mem::replace(&mut s.open, next)),
                });
            }
        }
        s.open.append(t, v);
        self.part = part;
        if t > self.max_t {
            self.max_t = t;
        }
        Ok(Appended::Stored(sealed))
    }

    /// Raises the newest timestamp the too-old bound is measured from (recovery: the store's
    /// newest sample may belong to a series no longer in the head).
    pub fn raise_max_t(&mut self, t: i64) {
        self.max_t = self.max_t.max(t);
    }

    /// Newest timestamp in the head (`i64::MIN` when empty).
    pub fn max_t(&self) -> i64 {
        self.max_t
    }

    /// All series with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesRef, &HeadSeries)> {
        self.slots
            .iter()
            .flatten()
            .map(|s| (SeriesRef(s.id.into()), s))
    }

    /// Every non-empty open chunk as (series, partition, chunk), for checkpoints.
    pub fn open_chunks(&self) -> impl Iterator<Item = (SeriesRef, i64, &XorAppender)> {
        let pms = self.opts.partition_ms;
        self.iter()
            .filter(|(_, s)| !s.open.is_empty())
            .map(move |(r, s)| (r, partition_of(s.open.min_t(), pms), &s.open))
    }

    /// Number of series.
    pub fn series_count(&self) -> u64 {
        self.live
    }

    /// Open chunks with samples.
    pub fn chunk_count(&self) -> u64 {
        self.iter().filter(|(_, s)| !s.open.is_empty()).count() as u64
    }

    /// Heap bytes, counted as the allocator serves them (see `alloc_size`).
    pub fn heap_bytes(&self) -> u64 {
        let fixed = alloc_size(self.index.capacity() * 4)
            + alloc_size(self.slots.capacity() * std::mem::size_of::<Option<HeadSeries>>())
            + alloc_size(self.free_slots.capacity() * 4)
            + map_bytes(self.by_hash.capacity(), 12)
            + map_bytes(self.collisions.capacity(), 32)
            + alloc_size(self.arena.capacity() * 4)
            + self.symbols.heap_bytes();
        let per_series: usize = self
            .iter()
            .map(|(_, s)| alloc_size(s.open.capacity()))
            .sum();
        (fixed + per_series) as u64
    }

    /// The open chunk of a series if it overlaps `[mint, maxt]`.
    pub fn open_in(&self, r: SeriesRef, mint: i64, maxt: i64) -> Option<ChunkData> {
        let s = self.get(r)?;
        if !s.open.is_empty() && s.open.max_t() >= mint && s.open.min_t() <= maxt {
            s.open_chunk()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head::new(HeadOptions {
            chunk_samples: 4,
            partition_ms: 1_000_000,
        })
    }

    #[test]
    fn labels_are_interned_and_rebuilt() {
        let mut h = head();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "y")]);
        let ra = h.insert(1, a.clone()).unwrap();
        let rb = h.insert(2, b.clone()).unwrap();
        assert_eq!(h.labels(ra), Some(a.clone()));
        assert_eq!(h.labels(rb), Some(b.clone()));
        assert_eq!(h.lookup(&a), Some(ra));
        assert_eq!(h.lookup(&b), Some(rb));
        // "__name__", "up", "job", "x", "y"
        assert_eq!(h.symbols.ids.len(), 5);
        assert!(h.insert(1, a.clone()).is_err());
        assert!(h.insert(0, a).is_err());
    }

    #[test]
    fn gc_removes_idle_series_and_releases_symbols() {
        let mut h = head();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "y")]);
        let ra = h.insert(1, a.clone()).unwrap();
        let rb = h.insert(2, b.clone()).unwrap();
        for t in 0..10 {
            h.append(ra, t, t as f64, None).unwrap();
        }
        h.append(rb, 100, 1.0, None).unwrap();
        let (gone, sealed) = h.gc(50);
        assert_eq!(gone, vec![ra]);
        assert_eq!(sealed.len(), 1);
        let c = &sealed[0].chunk;
        assert_eq!((c.min_t, c.max_t), (8, 9));
        assert!(!h.contains(ra));
        assert_eq!(h.lookup(&a), None);
        assert_eq!(h.lookup(&b), Some(rb));
        assert_eq!(h.series_count(), 1);
        // "x" is gone; the others are still used by b.
        assert_eq!(h.symbols.ids.len(), 4);
        assert!(matches!(
            h.append(ra, 200, 1.0, None),
            Err(Err(StorageError::UnknownSeries(1)))
        ));
        // Re-inserting under the old id reuses the freed slot.
        let slots = h.slots.len();
        assert_eq!(h.insert(1, a.clone()).unwrap(), ra);
        assert_eq!(h.slots.len(), slots);
        assert_eq!(h.labels(ra), Some(a));
        assert_eq!(h.max_id(), 2);
    }

    #[test]
    fn chunks_seal_at_partition_boundaries_whatever_the_cached_partition() {
        let mut h = Head::new(HeadOptions {
            chunk_samples: 1000,
            partition_ms: 10,
        });
        let a = h.insert(1, Labels::from_pairs([("a", "1")])).unwrap();
        let b = h.insert(2, Labels::from_pairs([("a", "2")])).unwrap();
        let mut sealed = Vec::new();
        // Two series interleaved so the cached partition keeps changing hands, across
        // negative times, boundaries and the ends of the time range.
        let ts = [
            -25i64,
            -21,
            -20,
            -11,
            -1,
            0,
            9,
            10,
            19,
            20,
            35,
            i64::MAX - 5,
            i64::MAX,
        ];
        for (i, &t) in ts.iter().enumerate() {
            for r in [a, b] {
                if let Ok(Appended::Stored(Some(c))) = h.append(r, t, i as f64, None) {
                    sealed.push(c);
                }
            }
        }
        assert!(!sealed.is_empty());
        for c in &sealed {
            let (lo, hi) = (c.chunk.min_t, c.chunk.max_t);
            assert_eq!(c.partition, partition_of(lo, 10), "chunk {lo}..{hi}");
            assert_eq!(
                partition_of(hi, 10),
                c.partition,
                "chunk {lo}..{hi} spans partitions"
            );
        }
        // Every boundary crossed seals once per series: partitions -3, -2, -1, 0, 1, 2, 3.
        assert_eq!(sealed.len(), 2 * 7);
    }

    #[test]
    fn min_t_is_decoded() {
        let mut h = head();
        let r = h.insert(1, Labels::from_pairs([("a", "b")])).unwrap();
        for t in [-5_000_000_000i64, -4_999_999_000, -4_999_998_000] {
            h.append(r, t, 1.0, None).unwrap();
        }
        let c = h.open_in(r, i64::MIN, i64::MAX).unwrap();
        assert_eq!((c.min_t, c.max_t), (-5_000_000_000, -4_999_998_000));
    }
}
