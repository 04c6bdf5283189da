//! The RocksDB-backed storage shard: implements the `trawl-storage` traits. This is the
//! only crate that names `rocksdb`.
//!
//! Layout (one column family each):
//! - `series`: `id` → encoded labels. Ids are dense from 1; a [`SeriesRef`] is the id.
//! - `hash`: `stable_hash ‖ id` → ∅, the on-disk lookup of a label set by hash.
//! - `postings`: `len name ‖ len value ‖ id` → ∅; the postings of one pair are one prefix scan,
//!   all values of a name another.
//! - `chunks`: `partition ‖ id ‖ first timestamp` → `encoding ‖ uvarint(max_t - min_t) ‖ chunk`. A series'
//!   chunks within a time partition are adjacent, so a range read is one seek per partition
//!   plus a short scan, and retention range-deletes whole partitions.
//! - `wal`: `seq` → the samples one commit accepted; `headchunks`: `id` → the open chunk as
//!   of the last checkpoint; `meta`: watermark.
//!
//! Durability: each commit is ONE RocksDB write batch through RocksDB's WAL holding the
//! commit's accepted samples (a compact record, ~10 bytes per sample) plus any chunk the
//! commit sealed. A write batch is atomic, so after `kill -9` the store holds exactly the
//! acknowledged commits: reopening loads the open chunks of the last checkpoint and replays
//! the `wal` records after it, which rebuilds the head bit for bit (sealing is a pure
//! function of the samples, so replay re-seals the same chunks under the same keys). A
//! checkpoint, taken when the records since the last one exceed
//! [`RocksOptions::checkpoint_bytes`] or 256 bytes per head series (whichever is larger), writes every open chunk and range-deletes the replayed
//! records in one batch. We chose RocksDB's WAL over a log of our own: one atomic write
//! covers samples, sealed chunks and the checkpoint together, so there is no second file to
//! keep consistent with the database. Measured (`benches/benches/storage_compare.rs`, 2 shared cores): an
//! unsynced 100-sample commit costs 15-35 µs including head work (3-6.6 M samples/s), an
//! fsynced one 0.14-3.7 ms depending on disk load; a private log could not be cheaper than one `write()` per commit, which is
//! what RocksDB's WAL already does. WAL writes are not fsynced unless [`RocksOptions::sync`]
//! is set: that survives a killed process (tests/crash.rs), not a power cut.
//!
//! Tuning: one shared LRU block cache; bloom filters on `series` and `hash` (point reads);
//! LZ4 on the index column families; a small DB-wide memtable budget
//! ([`RocksOptions::memtable_bytes`], 16 MiB) so RocksDB's buffers neither grow with the series
//! count nor dwarf a small head (log records between checkpoints spill to SST files instead of
//! staying in memory). Chunks are already encoded, yet ZSTD on the chunk column family
//! ([`ChunkCompression::Zstd`], the default) still takes about 10 % off Gorilla/decimal
//! chunks on the node_exporter-like workload, at no cost to the appending thread (it runs in
//! background flushes and compactions); reads pay one block decompression per seek.
//! Compressing only the bottommost level does not work for this key layout: chunk keys are
//! partition-major, so flushed files rarely overlap and reach the last level by trivial
//! moves, never rewritten.
//!
//! The head (every active series' interned labels and open chunk) is kept in memory; sealed
//! chunks live only in RocksDB.
//!
//! Head GC runs with every checkpoint (and [`Storage::gc_head`]): series idle past the
//! cutoff get their open chunk written as a sealed chunk and leave the head, in the same
//! write batch as the checkpoint, so the log never holds samples of a series that is no
//! longer in the head. On open, the head is rebuilt from the checkpointed open chunks plus
//! the series the log touches; every other series stays on disk only. A series outside the
//! head comes back on demand: `series_ref` finds it through the `hash` column family, and
//! `append` by a cached ref re-reads its labels from `series`; ids are never reused, so a
//! cached ref never reaches another series.
//!
//! Limits: a write failure after the head changed makes the store refuse writes until
//! reopened ([`StorageError::Poisoned`]) rather than diverge from its log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    IteratorMode, Options, WriteBatch, WriteOptions,
};
use trawl_model::{Labels, Matcher};
use trawl_storage::head::{Appended, Head, HeadOptions, Limits, SealedChunk};
use trawl_storage::postings::{IndexReader, select_ids};
use trawl_storage::testsuite::Factory;
use trawl_storage::{
    Appender, ChunkData, ChunkEncoding, CommitReport, Counters, HeadGcReport, Querier,
    RetentionReport, SelectHints, Series, SeriesRef, SeriesSet, Storage, StorageError,
    StorageMetrics, StorageOptions, partition_of, unzigzag, zigzag,
};

pub mod keys;

use keys::*;

const CF_SERIES: &str = "series";
const CF_HASH: &str = "hash";
const CF_POSTINGS: &str = "postings";
const CF_CHUNKS: &str = "chunks";
const CF_WAL: &str = "wal";
const CF_HEADCHUNKS: &str = "headchunks";
const CF_META: &str = "meta";
const META_WATERMARK: &[u8] = b"watermark";
/// The head's newest timestamp at the last checkpoint: after a restart the too-old bound and
/// the read path must not depend on which series happen to be in the head.
const META_MAX_T: &[u8] = b"max_t";
/// The encoding of the `wal` records ([`WalCursor`]); absent means 1. Only read while the
/// log is replayed: recovery always leaves the log empty and then records the current one.
const META_WAL_FORMAT: &[u8] = b"wal_format";
const WAL_FORMAT: u8 = 2;

/// See [`Inner::checkpoint_threshold`].
const CHECKPOINT_LOG_BYTES_PER_SERIES: u64 = 256;

/// RocksDB-specific options.
#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// Shared block cache size in bytes.
    pub block_cache_bytes: usize,
    /// Checkpoint the head when this many WAL-record bytes accumulated since the last one.
    pub checkpoint_bytes: u64,
    /// fsync the WAL on every commit (survives power loss, costs a disk flush per commit).
    pub sync: bool,
    /// Compression of the chunks column family.
    pub chunk_compression: ChunkCompression,
    /// Memory for memtables across all column families.
    pub memtable_bytes: usize,
    /// Chunks per write batch when a checkpoint persists the head.
    pub checkpoint_batch_chunks: usize,
}

/// Compression for sealed chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkCompression {
    /// Store Gorilla chunks as they are.
    None,
    /// ZSTD on every level (the default).
    Zstd,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 64 << 20,
            checkpoint_bytes: 32 << 20,
            sync: false,
            chunk_compression: ChunkCompression::Zstd,
            memtable_bytes: 8 << 20,
            checkpoint_batch_chunks: 2048,
        }
    }
}

#[derive(Debug)]
struct State {
    head: Head,
    seq: u64,
    wal_bytes: u64,
    watermark: i64,
    /// Oldest partition that may hold sealed chunks.
    min_partition: Option<i64>,
    poisoned: Option<String>,
}

struct Inner {
    db: DB,
    state: Mutex<State>,
    series: AtomicU64,
    /// Maintenance steps (checkpoints, retention) running now; see `Storage::busy`.
    maintenance: AtomicUsize,
    counters: Counters,
    opts: StorageOptions,
    ropts: RocksOptions,
    dir: PathBuf,
}

/// The RocksDB storage shard.
pub struct RocksStorage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

fn be(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

fn cf_options(
    cache: &Cache,
    bloom: bool,
    compression: DBCompressionType,
    write_buffer: usize,
) -> Options {
    let mut bb = BlockBasedOptions::default();
    bb.set_block_cache(cache);
    bb.set_cache_index_and_filter_blocks(true);
    if bloom {
        bb.set_bloom_filter(10.0, false);
    }
    let mut o = Options::default();
    o.set_block_based_table_factory(&bb);
    o.set_compression_type(compression);
    // Per column family memtables well under the DB-wide budget: RocksDB's memtable arena
    // allocates in blocks of an eighth of this.
    o.set_write_buffer_size(write_buffer);
    o
}

impl RocksStorage {
    /// Opens (creating if needed) the store in `dir`, recovering the head.
    pub fn open(
        dir: &Path,
        opts: StorageOptions,
        ropts: RocksOptions,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let cache = Cache::new_lru_cache(ropts.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_total_wal_size(256 << 20);
        // Bound memtable memory across all column families so the per-series cost stays the
        // head's, not RocksDB's buffers.
        db_opts.set_db_write_buffer_size(ropts.memtable_bytes);
        let wb = (ropts.memtable_bytes / 2).max(1 << 20);
        let chunk_comp = match ropts.chunk_compression {
            ChunkCompression::None => DBCompressionType::None,
            ChunkCompression::Zstd => DBCompressionType::Zstd,
        };
        let chunks_cf = cf_options(&cache, false, chunk_comp, wb);
        let wal_cf = cf_options(&cache, false, DBCompressionType::None, wb);
        let cfs = vec![
            ColumnFamilyDescriptor::new(
                CF_SERIES,
                cf_options(&cache, true, DBCompressionType::Lz4, wb),
            ),
            ColumnFamilyDescriptor::new(
                CF_HASH,
                cf_options(&cache, true, DBCompressionType::Lz4, wb),
            ),
            ColumnFamilyDescriptor::new(
                CF_POSTINGS,
                cf_options(&cache, false, DBCompressionType::Lz4, wb),
            ),
            ColumnFamilyDescriptor::new(CF_CHUNKS, chunks_cf),
            ColumnFamilyDescriptor::new(CF_WAL, wal_cf),
            ColumnFamilyDescriptor::new(
                CF_HEADCHUNKS,
                cf_options(&cache, false, DBCompressionType::None, wb),
            ),
            ColumnFamilyDescriptor::new(
                CF_META,
                cf_options(&cache, false, DBCompressionType::None, wb),
            ),
        ];
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs).map_err(be)?;
        let head = Head::new(HeadOptions {
            chunk_samples: opts.chunk_samples,
            partition_ms: opts.partition_ms,
        });
        let state = State {
            head,
            seq: 1,
            wal_bytes: 0,
            watermark: i64::MIN,
            min_partition: None,
            poisoned: None,
        };
        let inner = Inner {
            db,
            state: Mutex::new(state),
            series: AtomicU64::new(0),
            maintenance: AtomicUsize::new(0),
            counters: Counters::default(),
            opts,
            ropts,
            dir: dir.to_path_buf(),
        };
        let s = Self {
            inner: Arc::new(inner),
        };
        s.recover()?;
        Ok(s)
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.inner.cf(name)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock()
    }

    fn recover(&self) -> Result<(), StorageError> {
        let db = &self.inner.db;
        let mut st = self.lock();
        if let Some(w) = db.get_cf(self.cf(CF_META)?, META_WATERMARK).map_err(be)? {
            st.watermark =
                dec_i64(&w).ok_or_else(|| StorageError::Corrupt("bad watermark".into()))?;
        }
        if let Some(w) = db.get_cf(self.cf(CF_META)?, META_MAX_T).map_err(be)? {
            st.head
                .raise_max_t(dec_i64(&w).ok_or_else(|| StorageError::Corrupt("bad max_t".into()))?);
        }
        // Ids are dense and keys big-endian: the last key is the largest id.
        let mut it = db.raw_iterator_cf(self.cf(CF_SERIES)?);
        it.seek_to_last();
        let max_id = match it.key() {
            Some(k) => dec_u64(k).ok_or_else(|| StorageError::Corrupt("bad series key".into()))?,
            None => 0,
        };
        it.status().map_err(be)?;
        drop(it);
        self.inner.series.store(max_id, Ordering::Release);
        // The head holds the series with an open chunk at the last checkpoint, plus those
        // the log touches (loaded as replay meets them).
        for kv in db.iterator_cf(self.cf(CF_HEADCHUNKS)?, IteratorMode::Start) {
            let (k, v) = kv.map_err(be)?;
            let id =
                dec_u64(&k).ok_or_else(|| StorageError::Corrupt("bad head chunk key".into()))?;
            if v.len() < 8 {
                return Err(StorageError::Corrupt("bad head chunk".into()));
            }
            self.inner.revive(&mut st, SeriesRef(id))?;
            st.head.restore_open(SeriesRef(id), &v[8..])?;
        }
        let mut it = db.raw_iterator_cf(self.cf(CF_CHUNKS)?);
        it.seek_to_first();
        if let Some(k) = it.key() {
            st.min_partition = dec_i64(k);
        }
        it.status().map_err(be)?;
        drop(it);
        // Replay the commits since the last checkpoint, re-sealing chunks exactly as before.
        let wal_format = match db.get_cf(self.cf(CF_META)?, META_WAL_FORMAT).map_err(be)? {
            None => 1,
            Some(f) if f.len() == 1 && (1..=WAL_FORMAT).contains(&f[0]) => f[0],
            Some(f) => {
                return Err(StorageError::Corrupt(format!(
                    "unknown wal format {f:?} (this build writes {WAL_FORMAT})"
                )));
            }
        };
        let mut replayed = 0u64;
        let mut batch = WriteBatch::default();
        for kv in db.iterator_cf(self.cf(CF_WAL)?, IteratorMode::Start) {
            let (k, v) = kv.map_err(be)?;
            let seq = dec_u64(&k).ok_or_else(|| StorageError::Corrupt("bad wal key".into()))?;
            st.seq = st.seq.max(seq + 1);
            let mut pos = 0;
            let mut cur = WalCursor::default();
            while pos < v.len() {
                let (id, t, val) = cur
                    .decode(wal_format, &v, &mut pos)
                    .ok_or_else(|| StorageError::Corrupt(format!("bad wal record {seq}")))?;
                if !st.head.contains(SeriesRef(id)) {
                    self.inner.revive(&mut st, SeriesRef(id))?;
                }
                match st.head.append(SeriesRef(id), t, val, None) {
                    Ok(Appended::Stored(Some(sealed))) => {
                        if sealed.chunk.max_t >= st.watermark {
                            put_chunk(&mut batch, self.cf(CF_CHUNKS)?, &sealed);
                            st.min_partition = Some(
                                st.min_partition
                                    .map_or(sealed.partition, |m| m.min(sealed.partition)),
                            );
                        }
                    }
                    Ok(_) => {}
                    Err(Ok(_)) => {}
                    Err(Err(e)) => return Err(e),
                }
                replayed += 1;
            }
        }
        if replayed > 0 {
            db.write(batch).map_err(be)?;
            self.inner.checkpoint(&mut st)?;
        }
        // The log is empty now, so from here on it holds only records in this build's format.
        if wal_format != WAL_FORMAT {
            db.put_cf_opt(
                self.cf(CF_META)?,
                META_WAL_FORMAT,
                [WAL_FORMAT],
                &self.inner.write_opts(),
            )
            .map_err(be)?;
        }
        Ok(())
    }

    /// Head GC now, with a checkpoint (see the crate docs).
    fn gc_now(&self) -> Result<HeadGcReport, StorageError> {
        let mut st = self.lock();
        self.inner.checkpoint(&mut st)
    }

    /// Runs a manual compaction of every column family (reclaims space; used by benchmarks
    /// before measuring bytes on disk).
    pub fn compact(&self) -> Result<(), StorageError> {
        {
            let mut st = self.lock();
            self.inner.checkpoint(&mut st)?;
        }
        for name in [
            CF_SERIES,
            CF_HASH,
            CF_POSTINGS,
            CF_CHUNKS,
            CF_WAL,
            CF_HEADCHUNKS,
            CF_META,
        ] {
            self.inner
                .db
                .compact_range_cf(self.cf(name)?, None::<&[u8]>, None::<&[u8]>);
        }
        self.inner
            .counters
            .compactions
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes of the store's files on disk.
    pub fn bytes_on_disk(&self) -> u64 {
        dir_size(&self.inner.dir)
    }

    /// Looks a label set up through the on-disk hash index (not the head).
    pub fn lookup_on_disk(&self, labels: &Labels) -> Result<Option<SeriesRef>, StorageError> {
        let db = &self.inner.db;
        let prefix = labels.stable_hash().to_be_bytes();
        let mut it = db.raw_iterator_cf(self.cf(CF_HASH)?);
        it.seek(prefix);
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            let id =
                dec_u64(&k[8..]).ok_or_else(|| StorageError::Corrupt("bad hash key".into()))?;
            if let Some(v) = db
                .get_cf(self.cf(CF_SERIES)?, id.to_be_bytes())
                .map_err(be)?
                && dec_labels(&v)? == *labels
            {
                return Ok(Some(SeriesRef(id)));
            }
            it.next();
        }
        it.status().map_err(be)?;
        Ok(None)
    }
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

fn put_chunk(batch: &mut WriteBatch, cf: &ColumnFamily, s: &SealedChunk) {
    let mut v = Vec::with_capacity(s.chunk.bytes.len() + 5);
    v.push(s.chunk.encoding.tag());
    put_uvarint(&mut v, s.chunk.max_t.wrapping_sub(s.chunk.min_t) as u64);
    v.extend_from_slice(&s.chunk.bytes);
    batch.put_cf(cf, chunk_key(s.partition, s.series.0, s.chunk.min_t), v);
}

/// The state a `wal` record's samples are delta-encoded against, reset per record. A sample
/// is `zigzag(id - previous id)` (format 2; format 1 had the id itself), `zigzag(t - previous
/// t)` as uvarints, then the value's 8 bytes. A scrape appends its series in exposition
/// order, which is their id order once they exist, so both deltas are one byte and a
/// sample ~10 bytes; format 1 spent three on the id of a shard with a few hundred thousand
/// series.
#[derive(Default)]
struct WalCursor {
    id: u64,
    t: i64,
}

impl WalCursor {
    #[inline]
    fn encode(&mut self, out: &mut Vec<u8>, id: u64, t: i64, v: f64) {
        put_uvarint(out, zigzag(id.wrapping_sub(self.id) as i64));
        put_uvarint(out, zigzag(t.wrapping_sub(self.t)));
        out.extend_from_slice(&v.to_bits().to_le_bytes());
        self.id = id;
        self.t = t;
    }

    fn decode(&mut self, format: u8, b: &[u8], pos: &mut usize) -> Option<(u64, i64, f64)> {
        let raw = get_uvarint(b, pos)?;
        let id = if format == 1 {
            raw
        } else {
            self.id.wrapping_add(unzigzag(raw) as u64)
        };
        let t = self.t.wrapping_add(unzigzag(get_uvarint(b, pos)?));
        let bits: [u8; 8] = b.get(*pos..*pos + 8)?.try_into().ok()?;
        *pos += 8;
        self.id = id;
        self.t = t;
        Some((id, t, f64::from_bits(u64::from_le_bytes(bits))))
    }
}

impl Inner {
    fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Backend(format!("missing column family {name}")))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only mutated together with a successful write or marked poisoned, so a
        // panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_opts(&self) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(self.ropts.sync);
        w
    }

    /// Loads a series that is on disk but not in the head into the head, under its id.
    fn revive(&self, st: &mut State, r: SeriesRef) -> Result<(), StorageError> {
        let v = self
            .db
            .get_cf(self.cf(CF_SERIES)?, r.0.to_be_bytes())
            .map_err(be)?
            .ok_or(StorageError::UnknownSeries(r.0))?;
        st.head.insert(r.0, dec_labels(&v)?)?;
        Ok(())
    }

    /// Head GC plus checkpoint: idle series leave the head with their open chunk written as
    /// a sealed chunk, every remaining open chunk is persisted, and the WAL records they
    /// cover are dropped. If a write fails the store is poisoned (the head already dropped
    /// the series).
    ///
    /// The chunks go out in batches of [`RocksOptions::checkpoint_batch_chunks`] so a large
    /// head never needs one huge allocation (glibc keeps such transients resident); only the
    /// last batch, which deletes the GC'd series' checkpoint entries and the WAL records, has
    /// to be atomic. A crash between batches is harmless: replay skips every logged sample
    /// that a newer checkpointed chunk already holds (it is out of order or a duplicate
    /// there), and a GC'd series keeps its old checkpoint entry until the last batch, so it
    /// is rebuilt exactly as before and its GC-sealed chunk is rewritten under the same key.
    /// Log bytes that trigger a checkpoint: the configured floor, or more with a large head.
    /// A checkpoint rewrites every open chunk (~100 bytes per head series), so a fixed
    /// threshold makes its cost grow with the head: at 500k series and 100k samples/s a
    /// 32 MiB threshold rewrote the whole head every ~30 s. Scaling with the series count
    /// keeps the checkpoint's share of the write volume fixed (the log since the last one
    /// holds about 25 samples per series at ~10 bytes each, against one open chunk each),
    /// and bounds replay on open to about that many samples per series.
    fn checkpoint_threshold(&self, st: &State) -> u64 {
        let per_series = CHECKPOINT_LOG_BYTES_PER_SERIES.saturating_mul(st.head.series_count());
        self.ropts.checkpoint_bytes.max(per_series)
    }

    fn checkpoint(&self, st: &mut State) -> Result<HeadGcReport, StorageError> {
        let _busy = Busy::new(&self.maintenance);
        if let Some(p) = &st.poisoned {
            return Err(StorageError::Poisoned(p.clone()));
        }
        let hc = self.cf(CF_HEADCHUNKS)?;
        let chunks = self.cf(CF_CHUNKS)?;
        let wal = self.cf(CF_WAL)?;
        let cutoff = self.opts.head_gc_cutoff(st.head.max_t());
        let (removed, sealed) = st.head.gc(cutoff);
        let part = self.ropts.checkpoint_batch_chunks.max(1);
        let wo = self.write_opts();
        let mut batch = WriteBatch::default();
        let mut res: Result<(), rocksdb::Error> = Ok(());
        let mut pending = 0usize;
        let mut flush_part = |batch: &mut WriteBatch, res: &mut Result<(), rocksdb::Error>| {
            pending += 1;
            if pending >= part && res.is_ok() {
                *res = self.db.write_opt(std::mem::take(batch), &wo);
                pending = 0;
            }
        };
        for c in &sealed {
            put_chunk(&mut batch, chunks, c);
            flush_part(&mut batch, &mut res);
        }
        for (r, p, chunk) in st.head.open_chunks() {
            let mut v = Vec::with_capacity(8 + chunk.encoded_len());
            v.extend_from_slice(&enc_i64(p));
            chunk.write_to(&mut v);
            batch.put_cf(hc, r.0.to_be_bytes(), v);
            flush_part(&mut batch, &mut res);
        }
        for c in &sealed {
            st.min_partition = Some(st.min_partition.map_or(c.partition, |m| m.min(c.partition)));
        }
        for r in &removed {
            batch.delete_cf(hc, r.0.to_be_bytes());
        }
        batch.delete_range_cf(wal, 0u64.to_be_bytes(), st.seq.to_be_bytes());
        batch.put_cf(self.cf(CF_META)?, META_MAX_T, enc_i64(st.head.max_t()));
        if let Err(e) = res.and_then(|()| self.db.write_opt(batch, &wo)) {
            let msg = e.to_string();
            st.poisoned = Some(msg.clone());
            return Err(StorageError::Poisoned(msg));
        }
        st.wal_bytes = 0;
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .head_series_removed
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        Ok(HeadGcReport {
            cutoff,
            removed: removed.len() as u64,
            remaining: st.head.series_count(),
        })
    }
}

/// Counts one running maintenance step for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Storage for RocksStorage {
    fn busy(&self) -> bool {
        self.inner.maintenance.load(Ordering::Acquire) > 0
    }

    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(RocksAppender {
            s: self,
            pending: Vec::new(),
            wal: Vec::new(),
        })
    }

    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(RocksQuerier { s: self }))
    }

    fn apply_retention(&self) -> Result<RetentionReport, StorageError> {
        let o = &self.inner.opts;
        let cutoff = o.clock.now_ms().saturating_sub(o.retention_ms);
        let chunks = self.cf(CF_CHUNKS)?;
        let _busy = Busy::new(&self.inner.maintenance);
        let mut st = self.lock();
        let mut watermark = st.watermark.max(cutoff);
        let mut dropped = 0u64;
        let drop_below = |st: &mut State, p_cut: i64| -> Result<u64, StorageError> {
            let Some(minp) = st.min_partition else {
                return Ok(0);
            };
            if minp >= p_cut {
                return Ok(0);
            }
            let from = chunk_key(minp, 0, i64::MIN);
            let to = chunk_key(p_cut, 0, i64::MIN);
            let mut b = WriteBatch::default();
            b.delete_range_cf(chunks, from, to);
            self.inner
                .db
                .write_opt(b, &self.inner.write_opts())
                .map_err(be)?;
            self.inner
                .db
                .compact_range_cf(chunks, Some(&from[..]), Some(&to[..]));
            st.min_partition = Some(p_cut);
            Ok((p_cut - minp) as u64)
        };
        dropped += drop_below(&mut st, partition_of(watermark, o.partition_ms))?;
        if let Some(limit) = o.retention_bytes {
            // Size retention: drop the oldest partition until under the limit or only the
            // newest partition is left.
            let newest = partition_of(st.head.max_t(), o.partition_ms);
            while dir_size(&self.inner.dir) > limit {
                let Some(minp) = st.min_partition else { break };
                if minp >= newest {
                    break;
                }
                dropped += drop_below(&mut st, minp + 1)?;
                watermark = watermark.max((minp + 1).saturating_mul(o.partition_ms));
            }
        }
        self.inner
            .db
            .put_cf(self.cf(CF_META)?, META_WATERMARK, enc_i64(watermark))
            .map_err(be)?;
        st.watermark = watermark;
        self.inner
            .counters
            .retention_runs
            .fetch_add(1, Ordering::Relaxed);
        Ok(RetentionReport { watermark, dropped })
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.gc_now().map(|_| ())
    }

    fn gc_head(&self) -> Result<HeadGcReport, StorageError> {
        self.gc_now()
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
        m.bytes_on_disk = self.bytes_on_disk();
        self.inner.counters.fill(&mut m);
        m
    }
}

struct RocksAppender<'a> {
    s: &'a RocksStorage,
    pending: Vec<(SeriesRef, i64, f64)>,
    wal: Vec<u8>,
}

impl Appender for RocksAppender<'_> {
    fn series_ref(&mut self, labels: &Labels) -> Result<SeriesRef, StorageError> {
        if labels.is_empty() {
            return Err(StorageError::InvalidSeries("empty label set".into()));
        }
        let inner = &self.s.inner;
        let mut st = inner.lock();
        if let Some(r) = st.head.lookup(labels) {
            return Ok(r);
        }
        if let Some(p) = &st.poisoned {
            return Err(StorageError::Poisoned(p.clone()));
        }
        // Not in the head: a series dropped by head GC (or not loaded since a restart)
        // comes back under its id.
        if let Some(r) = self.s.lookup_on_disk(labels)? {
            st.head.insert(r.0, labels.clone())?;
            return Ok(r);
        }
        let id = inner.series.load(Ordering::Acquire) + 1;
        let mut b = WriteBatch::default();
        b.put_cf(inner.cf(CF_SERIES)?, id.to_be_bytes(), enc_labels(labels));
        let mut hk = labels.stable_hash().to_be_bytes().to_vec();
        hk.extend_from_slice(&id.to_be_bytes());
        b.put_cf(inner.cf(CF_HASH)?, hk, b"");
        let pc = inner.cf(CF_POSTINGS)?;
        for l in labels {
            let mut k = pair_prefix(&l.name, &l.value);
            k.extend_from_slice(&id.to_be_bytes());
            b.put_cf(pc, k, b"");
        }
        inner.db.write_opt(b, &inner.write_opts()).map_err(be)?;
        let r = st.head.insert(id, labels.clone())?;
        inner.series.store(id, Ordering::Release);
        Ok(r)
    }

    fn append(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), StorageError> {
        if series.0 == 0 || series.0 > self.s.inner.series.load(Ordering::Acquire) {
            return Err(StorageError::UnknownSeries(series.0));
        }
        if self.pending.capacity() == 0 {
            // One scrape is typically hundreds to thousands of samples: skip the first
            // dozen doublings (each a copy) of a fresh appender's buffer.
            self.pending.reserve(1024);
        }
        self.pending.push((series, t, v));
        Ok(())
    }

    fn commit(&mut self) -> Result<CommitReport, StorageError> {
        let inner = &self.s.inner;
        let now = inner.opts.clock.now_ms();
        let chunks = inner.cf(CF_CHUNKS)?;
        let mut rep = CommitReport::default();
        let mut batch = WriteBatch::default();
        self.wal.clear();
        // A sample's log record is at most 10 (id delta) + 10 (time delta) + 8 (value)
        // bytes, typically 10.
        self.wal.reserve(self.pending.len() * 12);
        let mut st = inner.lock();
        if let Some(p) = &st.poisoned {
            self.pending.clear();
            return Err(StorageError::Poisoned(p.clone()));
        }
        let limits = Limits {
            max_t: now.saturating_add(inner.opts.max_future_ms),
            watermark: st.watermark,
            too_old_window_ms: inner.opts.too_old_window_ms,
        };
        let mut cur = WalCursor::default();
        let mut min_sealed: Option<i64> = None;
        let mut failure = None;
        for &(r, t, v) in &self.pending {
            let mut res = st.head.append(r, t, v, Some(&limits));
            if let Err(Err(StorageError::UnknownSeries(_))) = res {
                // A valid ref (checked in `append`) of a series outside the head.
                res = match inner.revive(&mut st, r) {
                    Ok(()) => st.head.append(r, t, v, Some(&limits)),
                    Err(e) => Err(Err(e)),
                };
            }
            match res {
                Ok(Appended::Stored(sealed)) => {
                    rep.appended += 1;
                    cur.encode(&mut self.wal, r.0, t, v);
                    if let Some(sealed) = sealed {
                        put_chunk(&mut batch, chunks, &sealed);
                        min_sealed =
                            Some(min_sealed.map_or(sealed.partition, |m| m.min(sealed.partition)));
                    }
                }
                Ok(Appended::Duplicate) => rep.duplicates_ignored += 1,
                Err(Ok(why)) => rep.reject(r, t, why),
                Err(Err(e)) => {
                    // Unreachable for refs checked in `append`; refuse further writes rather
                    // than leave the head ahead of the log.
                    st.poisoned = Some(e.to_string());
                    failure = Some(e);
                    break;
                }
            }
        }
        self.pending.clear();
        if let Some(e) = failure {
            return Err(e);
        }
        if !self.wal.is_empty() {
            let seq = st.seq;
            batch.put_cf(inner.cf(CF_WAL)?, seq.to_be_bytes(), &self.wal);
            if let Err(e) = inner.db.write_opt(batch, &inner.write_opts()) {
                // The head already holds these samples; refuse further writes so it never
                // serves (or builds on) samples the log does not have.
                let msg = e.to_string();
                st.poisoned = Some(msg.clone());
                return Err(StorageError::Poisoned(msg));
            }
            st.seq += 1;
            st.wal_bytes += self.wal.len() as u64;
            if let Some(p) = min_sealed {
                st.min_partition = Some(st.min_partition.map_or(p, |m| m.min(p)));
            }
            if st.wal_bytes >= inner.checkpoint_threshold(&st) {
                inner.checkpoint(&mut st)?;
            }
        }
        drop(st);
        inner.counters.record(&rep);
        Ok(rep)
    }

    fn rollback(&mut self) {
        self.pending.clear();
    }
}

struct RocksIndex<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    all: &'a dyn Fn() -> Vec<u64>,
}

impl IndexReader for RocksIndex<'_> {
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>, StorageError> {
        let prefix = pair_prefix(name, value);
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf);
        it.seek(&prefix);
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(
                dec_u64(&k[prefix.len()..])
                    .ok_or_else(|| StorageError::Corrupt("bad postings key".into()))?,
            );
            it.next();
        }
        it.status().map_err(be)?;
        // Keys order ids numerically within one pair.
        Ok(out)
    }

    fn values(&self, name: &str) -> Result<Vec<String>, StorageError> {
        let prefix = name_prefix(name);
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf);
        it.seek(&prefix);
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            let (v, _) = split_posting(&k[prefix.len()..])
                .ok_or_else(|| StorageError::Corrupt("bad postings key".into()))?;
            out.push(v.to_string());
            // Skip the rest of this value's ids: seek just past `pair ‖ ff..ff`.
            let mut next = pair_prefix(name, v);
            next.extend_from_slice(&[0xff; 9]);
            it.seek(&next);
        }
        it.status().map_err(be)?;
        out.sort();
        Ok(out)
    }

    fn all(&self) -> Result<Vec<u64>, StorageError> {
        Ok((self.all)())
    }
}

struct RocksQuerier<'a> {
    s: &'a RocksStorage,
}

/// One candidate series before its chunks are read.
struct Candidate {
    id: u64,
    labels: Labels,
    open: Option<ChunkData>,
}

impl RocksQuerier<'_> {
    /// Matching series sorted by labels, plus the watermark, the oldest partition with sealed
    /// chunks and the newest timestamp (no sealed chunk can be newer).
    fn candidates(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<Candidate>, i64, Option<i64>, i64), StorageError> {
        let inner = &self.s.inner;
        let all = || -> Vec<u64> { (1..=inner.series.load(Ordering::Acquire)).collect() };
        let ix = RocksIndex {
            db: &inner.db,
            cf: inner.cf(CF_POSTINGS)?,
            all: &all,
        };
        let ids = select_ids(&ix, matchers)?;
        let st = inner.lock();
        let mut out = Vec::with_capacity(ids.len());
        let mut cold = Vec::new();
        for id in ids {
            match st.head.get(SeriesRef(id)) {
                Some(s) => out.push(Candidate {
                    id,
                    labels: st.head.labels_of(s),
                    open: s.open_chunk(),
                }),
                None => cold.push(id),
            }
        }
        let (watermark, minp, head_max) = (st.watermark, st.min_partition, st.head.max_t());
        drop(st);
        // Series outside the head: labels from disk, chunks only on disk.
        if !cold.is_empty() {
            let scf = inner.cf(CF_SERIES)?;
            let keys: Vec<[u8; 8]> = cold.iter().map(|id| id.to_be_bytes()).collect();
            for (id, v) in cold
                .iter()
                .zip(inner.db.batched_multi_get_cf(scf, &keys, false))
            {
                if let Some(v) = v.map_err(be)? {
                    out.push(Candidate {
                        id: *id,
                        labels: dec_labels(&v)?,
                        open: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok((out, watermark, minp, head_max))
    }

    fn series_iter(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<SeriesSet<'_>, StorageError> {
        let (cands, watermark, minp, head_max) = self.candidates(matchers)?;
        let mint = mint.max(watermark);
        if mint > maxt {
            return Ok(Box::new(std::iter::empty()));
        }
        let inner = &self.s.inner;
        let pms = inner.opts.partition_ms;
        let chunks_cf = inner.cf(CF_CHUNKS)?;
        let p_hi = partition_of(maxt.min(head_max), pms);
        let p_lo = partition_of(mint, pms).max(minp.unwrap_or(i64::MAX));
        // One iterator for every series: creating one per series costs more than the seek.
        let mut it = inner.db.raw_iterator_cf(chunks_cf);
        let iter = cands.into_iter().filter_map(move |c| {
            let res = (|| -> Result<Option<Series>, StorageError> {
                let mut chunks = Vec::new();
                let open_min = c.open.as_ref().map(|o| o.min_t);
                // Sealed chunks all end before the open one starts: when the open chunk
                // already covers `mint` (an instant query's lookback, usually), RocksDB holds
                // nothing for this read and the seeks are skipped.
                let head_covers = open_min.is_some_and(|o| o <= mint);
                if p_lo <= p_hi && !head_covers {
                    for p in p_lo..=p_hi {
                        let prefix = chunk_key(p, c.id, i64::MIN);
                        it.seek(prefix);
                        while let (Some(k), Some(v)) = (it.key(), it.value()) {
                            if k.len() != 24 || k[..16] != prefix[..16] {
                                break;
                            }
                            let min_t = dec_i64(&k[16..])
                                .ok_or_else(|| StorageError::Corrupt("bad chunk key".into()))?;
                            if min_t > maxt {
                                break;
                            }
                            let encoding = v
                                .first()
                                .and_then(|&t| ChunkEncoding::from_tag(t))
                                .ok_or_else(|| {
                                    StorageError::Corrupt("bad chunk encoding".into())
                                })?;
                            let mut pos = 1;
                            let span = get_uvarint(v, &mut pos)
                                .ok_or_else(|| StorageError::Corrupt("bad chunk value".into()))?;
                            let max_t = min_t.wrapping_add(span as i64);
                            // Sealed chunks always precede the open one; the guard keeps a
                            // damaged store from serving overlapping chunks.
                            if max_t >= mint && open_min.is_none_or(|o| min_t < o) {
                                chunks.push(ChunkData {
                                    min_t,
                                    max_t,
                                    encoding,
                                    bytes: Arc::from(&v[pos..]),
                                });
                            }
                            it.next();
                        }
                        it.status().map_err(be)?;
                    }
                }
                if let Some(o) = c.open
                    && o.max_t >= mint
                    && o.min_t <= maxt
                {
                    chunks.push(o);
                }
                if !trawl_storage::mem::has_sample_in(&chunks, mint, maxt)? {
                    return Ok(None);
                }
                Ok(Some(Series::new(c.labels, chunks, mint, maxt)))
            })();
            res.transpose()
        });
        Ok(Box::new(iter))
    }
}

impl Querier for RocksQuerier<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesSet<'_>, StorageError> {
        let it = self.series_iter(matchers, mint, maxt)?;
        Ok(match hints.limit {
            Some(l) => Box::new(it.take(l)),
            None => it,
        })
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = std::collections::BTreeSet::new();
        for s in self.series_iter(matchers, mint, maxt)? {
            names.extend(s?.labels.iter().map(|l| l.name.clone()));
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
        let mut ms = matchers.to_vec();
        // Only series that have the label can contribute a value.
        ms.push(
            Matcher::new(trawl_model::MatchOp::NotEqual, name, "")
                .map_err(|e| StorageError::InvalidSeries(e.to_string()))?,
        );
        let mut vals = std::collections::BTreeSet::new();
        for s in self.series_iter(&ms, mint, maxt)? {
            if let Some(v) = s?.labels.get(name) {
                vals.insert(v.to_string());
            }
        }
        Ok(vals.into_iter().collect())
    }
}

/// Opens [`RocksStorage`] with default RocksDB options (for the shared suite).
#[derive(Debug, Default, Clone)]
pub struct RocksFactory {
    /// RocksDB options used for every open.
    pub ropts: Option<RocksOptions>,
}

impl Factory for RocksFactory {
    fn open(&self, dir: &Path, opts: StorageOptions) -> Result<Box<dyn Storage>, StorageError> {
        Ok(Box::new(RocksStorage::open(
            dir,
            opts,
            self.ropts.clone().unwrap_or_default(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::{Labels, Matcher};

    #[test]
    fn wal_cursor_roundtrips_any_ids_and_times() {
        let samples = [
            (7u64, 1_000i64, 1.5f64),
            (8, 1_000, -0.0),
            (3, 1_000, f64::INFINITY),
            (u64::MAX, i64::MIN, 2.0),
            (1, i64::MAX, f64::from_bits(trawl_model::STALE_NAN_BITS)),
            (1, i64::MAX, 3.0),
        ];
        let mut out = Vec::new();
        let mut enc = WalCursor::default();
        for &(id, t, v) in &samples {
            enc.encode(&mut out, id, t, v);
        }
        let mut dec = WalCursor::default();
        let mut pos = 0;
        for &(id, t, v) in &samples {
            let (i, tt, vv) = dec.decode(WAL_FORMAT, &out, &mut pos).expect("decodes");
            assert_eq!((i, tt, vv.to_bits()), (id, t, v.to_bits()));
        }
        assert_eq!(pos, out.len());
        // A truncated sample is an error, not a panic: the first one is 1 + 2 + 8 bytes.
        assert!(
            WalCursor::default()
                .decode(WAL_FORMAT, &out[..11], &mut 0)
                .is_some()
        );
        for cut in 0..11 {
            assert!(
                WalCursor::default()
                    .decode(WAL_FORMAT, &out[..cut], &mut 0)
                    .is_none()
            );
        }
    }

    #[test]
    fn consecutive_ids_cost_one_byte_each() {
        let mut out = Vec::new();
        let mut c = WalCursor::default();
        c.encode(&mut out, 400_000, 1_700_000_000_000, 1.0);
        let first = out.len();
        for id in 400_001..401_000 {
            c.encode(&mut out, id, 1_700_000_000_000, 1.0);
        }
        assert_eq!((out.len() - first) / 999, 10);
    }

    /// A store whose log was written by a build with format 1 (the id itself, not a delta)
    /// replays it, and records format 2 once the log is empty.
    #[test]
    fn format_1_log_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StorageOptions::default();
        let t0 = 1_700_000_000_000i64;
        let series: Vec<Labels> = (0..5)
            .map(|i| Labels::from_pairs([("__name__", "m"), ("i", i.to_string().as_str())]))
            .collect();
        {
            let s = RocksStorage::open(dir.path(), opts.clone(), RocksOptions::default())
                .expect("open");
            let mut a = s.appender();
            for step in 0..3 {
                for l in &series {
                    let r = a.series_ref(l).expect("ref");
                    a.append(r, t0 + step * 15_000, r.0 as f64 + step as f64)
                        .expect("append");
                }
                a.commit().expect("commit");
            }
            drop(a);
            // Rewrite every record as format 1 would have written it.
            let db = &s.inner.db;
            let wal = s.cf(CF_WAL).expect("wal cf");
            let records: Vec<_> = db
                .iterator_cf(wal, IteratorMode::Start)
                .map(|kv| kv.expect("read"))
                .collect();
            assert_eq!(records.len(), 3, "three commits, no checkpoint yet");
            for (k, v) in records {
                let (mut cur, mut pos, mut old) = (WalCursor::default(), 0, Vec::new());
                let mut prev_t = 0i64;
                while pos < v.len() {
                    let (id, t, val) = cur.decode(WAL_FORMAT, &v, &mut pos).expect("decode");
                    put_uvarint(&mut old, id);
                    put_uvarint(&mut old, zigzag(t - prev_t));
                    old.extend_from_slice(&val.to_bits().to_le_bytes());
                    prev_t = t;
                }
                db.put_cf(wal, k, old).expect("put");
            }
            db.delete_cf(s.cf(CF_META).expect("meta cf"), META_WAL_FORMAT)
                .expect("delete");
        }
        let s = RocksStorage::open(dir.path(), opts, RocksOptions::default()).expect("reopen");
        let q = s.querier().expect("querier");
        let got: Vec<_> = q
            .select(
                &[Matcher::equal("__name__", "m")],
                i64::MIN,
                i64::MAX,
                &trawl_storage::SelectHints::default(),
            )
            .expect("select")
            .map(|x| {
                let x = x.expect("series");
                let v: Vec<(i64, f64)> = x
                    .samples()
                    .map(|p| p.map(|p| (p.t, p.v)))
                    .collect::<Result<_, _>>()
                    .expect("samples");
                (x.labels.get("i").expect("i").to_string(), v)
            })
            .collect();
        assert_eq!(got.len(), 5);
        for (i, v) in &got {
            let id: f64 = i.parse::<f64>().expect("numeric") + 1.0;
            let want: Vec<(i64, f64)> = (0..3)
                .map(|step| (t0 + step * 15_000, id + step as f64))
                .collect();
            assert_eq!(v, &want, "series i={i}");
        }
        drop(q);
        let meta = s.cf(CF_META).expect("meta cf");
        assert_eq!(
            s.inner
                .db
                .get_cf(meta, META_WAL_FORMAT)
                .expect("get")
                .as_deref(),
            Some(&[WAL_FORMAT][..])
        );
    }
}
