//! The durable Raft log and vote in `data_dir`, behind openraft's [`RaftLogStorage`].
//!
//! Files:
//! - `raft.log`: length-prefixed, checksummed records (`u32` little-endian payload length,
//!   `u64` xxh64 of the payload, serde_json payload). A record is either an entry or, only as
//!   the first record, the id of the last purged entry. Appends are `fsync`ed before openraft
//!   is told they are flushed; truncating a conflicting suffix cuts the file at that entry's
//!   offset (then `fsync`); purging rewrites the file (purge marker plus the kept entries) to
//!   `raft.log.tmp`, `fsync`s it and renames it over `raft.log`, so a crash leaves the old or
//!   the new log, never a mix.
//! - `vote.json`: the vote, written to a temporary file, `fsync`ed and renamed.
//! - `committed.json`: the last known committed log id, renamed into place *without* `fsync`:
//!   any value that survives was committed, so an old or missing one only means a restarted
//!   replica re-applies less before it hears from the leader; it lets a replica serve its
//!   committed state right after a restart instead of only its snapshot.
//!
//! Recovery: a final record cut short (or whose checksum fails and that ends the file: a torn
//! append) is dropped and the file is cut back to the last whole record; a bad record followed
//! by more data is corruption and fails the open, because an acknowledged entry would be lost.
//!
//! The log stays small (it is purged after every snapshot), so the entries are also kept in
//! memory and reads never touch the file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use serde::{Deserialize, Serialize};

use crate::TypeConfig;

pub(crate) const LOG_FILE: &str = "raft.log";
pub(crate) const VOTE_FILE: &str = "vote.json";
pub(crate) const COMMITTED_FILE: &str = "committed.json";
const HEADER: usize = 4 + 8;

#[derive(Serialize, Deserialize)]
enum Record {
    Purged(LogId<u64>),
    Entry(Entry<TypeConfig>),
}

/// Frames one record: length, checksum, payload.
fn encode(rec: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(rec).map_err(io::Error::other)?;
    let len =
        u32::try_from(payload.len()).map_err(|_| io::Error::other("log record over 4 GiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh64::xxh64(&payload, 0).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// What reading one record from the front of `buf` found.
enum Parsed {
    Record(Record, usize),
    /// An incomplete or damaged record that ends the buffer: an append cut short.
    Torn,
    Corrupt(String),
}

fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < HEADER {
        return Parsed::Torn;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&buf[4..HEADER]);
    let sum = u64::from_le_bytes(sum);
    let end = HEADER + len;
    if end > buf.len() {
        return Parsed::Torn;
    }
    let payload = &buf[HEADER..end];
    if xxhash_rust::xxh64::xxh64(payload, 0) != sum {
        return if end == buf.len() {
            Parsed::Torn
        } else {
            Parsed::Corrupt("checksum mismatch".into())
        };
    }
    match serde_json::from_slice(payload) {
        Ok(r) => Parsed::Record(r, end),
        Err(e) => Parsed::Corrupt(format!("undecodable record: {e}")),
    }
}

/// Writes `bytes` to `dir/name` atomically: temporary file, `fsync`, rename, `fsync` of the
/// directory so the rename itself survives a crash.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The log file and its in-memory mirror; synchronous, so it is tested without a runtime.
#[derive(Debug)]
pub(crate) struct LogFile {
    dir: PathBuf,
    file: File,
    /// Bytes of whole records in the file.
    len: u64,
    /// Log index -> offset of its record, for truncation.
    offsets: BTreeMap<u64, u64>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<u64>>,
}

impl LogFile {
    /// Opens (or creates) `dir/raft.log`, recovering from a torn final record.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut offsets = BTreeMap::new();
        let mut entries = BTreeMap::new();
        let mut purged: Option<LogId<u64>> = None;
        let mut pos = 0usize;
        while pos < data.len() {
            match parse(&data[pos..]) {
                Parsed::Record(Record::Purged(id), n) => {
                    entries.retain(|i, _| *i > id.index);
                    offsets.retain(|i, _| *i > id.index);
                    purged = Some(id);
                    pos += n;
                }
                Parsed::Record(Record::Entry(e), n) => {
                    let index = e.get_log_id().index;
                    // Truncation is physical, so a record never follows a later index; be
                    // defensive anyway and let the newest record win, as a truncate would.
                    entries.retain(|i, _| *i < index);
                    offsets.retain(|i, _| *i < index);
                    if purged.is_none_or(|p| index > p.index) {
                        offsets.insert(index, pos as u64);
                        entries.insert(index, e);
                    }
                    pos += n;
                }
                Parsed::Torn => {
                    tracing::warn!(
                        path = %path.display(),
                        offset = pos,
                        dropped_bytes = data.len() - pos,
                        "raft log ends in a torn record, dropping it"
                    );
                    break;
                }
                Parsed::Corrupt(why) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: corrupt record at offset {pos}: {why}", path.display()),
                    ));
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if pos < data.len() {
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok(LogFile {
            dir: dir.to_path_buf(),
            file,
            len: pos as u64,
            offsets,
            entries,
            purged,
        })
    }

    pub(crate) fn purged(&self) -> Option<LogId<u64>> {
        self.purged
    }

    pub(crate) fn last_log_id(&self) -> Option<LogId<u64>> {
        self.entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(self.purged)
    }

    pub(crate) fn range(&self, range: impl RangeBounds<u64>) -> Vec<Entry<TypeConfig>> {
        self.entries.range(range).map(|(_, e)| e.clone()).collect()
    }

    /// Appends `entries` and `fsync`s them; on failure the file is cut back to what it held.
    pub(crate) fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut starts = Vec::with_capacity(entries.len());
        for e in &entries {
            starts.push(self.len + buf.len() as u64);
            encode(&Record::Entry(e.clone()), &mut buf)?;
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave no partial record behind for the next append to follow.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        for (e, start) in entries.into_iter().zip(starts) {
            let index = e.get_log_id().index;
            self.offsets.insert(index, start);
            self.entries.insert(index, e);
        }
        Ok(())
    }

    /// Deletes the entries at `since` and after (a conflicting suffix).
    pub(crate) fn truncate(&mut self, since: u64) -> io::Result<()> {
        let Some((_, &offset)) = self.offsets.range(since..).next() else {
            return Ok(());
        };
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.len = offset;
        self.offsets.split_off(&since);
        self.entries.split_off(&since);
        Ok(())
    }

    /// Deletes the entries up to and including `upto` (covered by a snapshot) and compacts
    /// the file.
    pub(crate) fn purge(&mut self, upto: LogId<u64>) -> io::Result<()> {
        if self.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        let kept: BTreeMap<u64, Entry<TypeConfig>> = self
            .entries
            .range(upto.index + 1..)
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let mut buf = Vec::new();
        encode(&Record::Purged(upto), &mut buf)?;
        let mut offsets = BTreeMap::new();
        for (i, e) in &kept {
            offsets.insert(*i, buf.len() as u64);
            encode(&Record::Entry(e.clone()), &mut buf)?;
        }
        // On failure the file and this mirror are both unchanged.
        write_atomic(&self.dir, LOG_FILE, &buf)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.len = buf.len() as u64;
        self.offsets = offsets;
        self.entries = kept;
        self.purged = Some(upto);
        Ok(())
    }
}

/// The committed log id saved by the last run; unreadable counts as none (see the module docs).
fn read_committed(dir: &Path) -> Option<LogId<u64>> {
    let b = std::fs::read(dir.join(COMMITTED_FILE)).ok()?;
    serde_json::from_slice(&b).ok()
}

pub(crate) fn read_vote(dir: &Path) -> io::Result<Option<Vote<u64>>> {
    match std::fs::read(dir.join(VOTE_FILE)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{VOTE_FILE}: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug)]
struct Inner {
    log: LogFile,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
}

/// openraft's log storage over [`LogFile`]; cloning shares it (the clone is the log reader).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

impl LogStore {
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        let log = LogFile::open(dir)?;
        let vote = read_vote(dir)?;
        // Never beyond the log: a committed id past it would make openraft apply entries
        // this replica does not hold.
        let committed =
            read_committed(dir).filter(|c| log.last_log_id().is_some_and(|l| c.index <= l.index));
        Ok(LogStore {
            dir: dir.to_path_buf(),
            inner: Arc::new(Mutex::new(Inner {
                log,
                vote,
                committed,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs blocking file I/O off the async worker threads, in call order (openraft awaits
    /// each storage call before the next).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner, &Path) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.inner.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g, &dir)
        })
        .await
        .map_err(|e| io::Error::other(format!("log i/o task failed: {e}")))?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let range = (
            clone_bound(range.start_bound()),
            clone_bound(range.end_bound()),
        );
        Ok(self.lock().log.range(range))
    }
}

fn clone_bound(b: Bound<&u64>) -> Bound<u64> {
    match b {
        Bound::Included(x) => Bound::Included(*x),
        Bound::Excluded(x) => Bound::Excluded(*x),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let g = self.lock();
        Ok(LogState {
            last_purged_log_id: g.log.purged(),
            last_log_id: g.log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.blocking(move |g, dir| {
            let bytes = serde_json::to_vec(&vote).map_err(io::Error::other)?;
            write_atomic(dir, VOTE_FILE, &bytes)?;
            g.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        if committed.is_none() || committed == self.lock().committed {
            return Ok(());
        }
        self.blocking(move |g, dir| {
            let bytes = serde_json::to_vec(&committed).map_err(io::Error::other)?;
            let tmp = dir.join(format!("{COMMITTED_FILE}.tmp"));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, dir.join(COMMITTED_FILE))?;
            g.committed = committed;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write(AnyError::new(&e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let res = self.blocking(move |g, _| g.log.append(entries)).await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(AnyError::new(&e)).into();
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.blocking(move |g, _| g.log.truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.blocking(move |g, _| g.log.purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(term: u64, index: u64, v: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(serde_json::json!(v)),
        }
    }

    fn values(log: &LogFile) -> Vec<(u64, u64)> {
        log.range(..)
            .into_iter()
            .map(|e| {
                let v = match &e.payload {
                    EntryPayload::Normal(v) => v.as_u64().unwrap_or(u64::MAX),
                    _ => u64::MAX,
                };
                (e.log_id.index, v)
            })
            .collect()
    }

    #[test]
    fn entries_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path()).unwrap();
        log.append(vec![entry(1, 1, 10), entry(1, 2, 20)]).unwrap();
        log.append(vec![entry(2, 3, 30)]).unwrap();
        drop(log);
        let log = LogFile::open(dir.path()).unwrap();
        assert_eq!(values(&log), vec![(1, 10), (2, 20), (3, 30)]);
        assert_eq!(
            log.last_log_id(),
            Some(LogId::new(CommittedLeaderId::new(2, 1), 3))
        );
        assert_eq!(log.purged(), None);
    }

    #[test]
    fn torn_final_record_is_dropped_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path()).unwrap();
        log.append(vec![entry(1, 1, 10), entry(1, 2, 20), entry(1, 3, 30)])
            .unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        // Cut the last record in the middle of its payload, as a crash mid-append does.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();

        let mut log = LogFile::open(dir.path()).unwrap();
        assert_eq!(values(&log), vec![(1, 10), (2, 20)]);
        log.append(vec![entry(1, 3, 33)]).unwrap();
        drop(log);
        let log = LogFile::open(dir.path()).unwrap();
        assert_eq!(values(&log), vec![(1, 10), (2, 20), (3, 33)]);
    }

    #[test]
    fn torn_header_and_garbled_tail_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path()).unwrap();
        log.append(vec![entry(1, 1, 10)]).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        // Half a header.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[7, 0])
            .unwrap();
        let log = LogFile::open(dir.path()).unwrap();
        assert_eq!(values(&log), vec![(1, 10)]);
        drop(log);

        // A whole-length final record whose payload did not reach the disk intact.
        let mut buf = Vec::new();
        encode(&Record::Entry(entry(1, 2, 20)), &mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&buf)
            .unwrap();
        let log = LogFile::open(dir.path()).unwrap();
        assert_eq!(values(&log), vec![(1, 10)]);
    }

    #[test]
    fn corruption_before_the_end_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path()).unwrap();
        log.append(vec![entry(1, 1, 10), entry(1, 2, 20)]).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut data = std::fs::read(&path).unwrap();
        data[HEADER + 2] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let err = LogFile::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncate_cuts_the_conflicting_suffix_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path()).unwrap();
        log.append(vec![entry(1, 1, 10), entry(1, 2, 20), entry(1, 3, 30)])
            .unwrap();
        log.truncate(2).unwrap();
        assert_eq!(values(&log), vec![(1, 10)]);
        log.append(vec![entry(2, 2, 21)]).unwrap();
        drop(log);
        let log = LogFile::open(dir.path()).unwrap();
        assert_eq!(values(&log), vec![(1, 10), (2, 21)]);
    }

    #[test]
    fn purge_compacts_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path()).unwrap();
        log.append((1..=10).map(|i| entry(1, i, i * 10)).collect())
            .unwrap();
        let before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        let upto = LogId::new(CommittedLeaderId::new(1, 1), 7);
        log.purge(upto).unwrap();
        assert_eq!(values(&log), vec![(8, 80), (9, 90), (10, 100)]);
        assert!(std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len() < before);
        log.append(vec![entry(1, 11, 110)]).unwrap();
        // Truncation after a compaction uses the rewritten offsets.
        log.truncate(10).unwrap();
        drop(log);
        let mut log = LogFile::open(dir.path()).unwrap();
        assert_eq!(log.purged(), Some(upto));
        assert_eq!(values(&log), vec![(8, 80), (9, 90)]);
        assert_eq!(log.last_log_id().map(|l| l.index), Some(9));

        // Purging everything leaves the purged id as the last log id.
        let all = LogId::new(CommittedLeaderId::new(1, 1), 9);
        log.purge(all).unwrap();
        drop(log);
        let log = LogFile::open(dir.path()).unwrap();
        assert!(values(&log).is_empty());
        assert_eq!(log.last_log_id(), Some(all));
    }

    #[tokio::test]
    async fn committed_survives_reopen_but_never_beyond_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
        store
            .lock()
            .log
            .append(vec![entry(1, 1, 10), entry(1, 2, 20)])
            .unwrap();
        let c = LogId::new(CommittedLeaderId::new(1, 1), 2);
        store.save_committed(Some(c)).await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), Some(c));
        store.lock().log.truncate(2).unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);

        std::fs::write(dir.path().join(COMMITTED_FILE), b"{torn").unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
    }

    #[tokio::test]
    async fn vote_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), None);
        let vote = Vote::new(3, 2);
        store.save_vote(&vote).await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    }
}
