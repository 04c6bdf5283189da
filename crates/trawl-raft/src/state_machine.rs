//! openraft's state machine over a [`StateMachine`] `S`, and its snapshot file.
//!
//! The state lives in memory behind one lock together with the id of the last applied entry
//! and the last membership, so a snapshot (built on another task while entries keep being
//! applied) always pairs a state with the log position it reflects. Durability comes from the
//! log plus `snapshot.bin` (`u32` little-endian length of the JSON [`SnapshotMeta`], the meta,
//! then `S::snapshot()` bytes), written to a temporary file, `fsync`ed and renamed: on start
//! the state is restored from it and openraft re-applies the committed entries after it.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde_json::Value;

use crate::log_store::write_atomic;
use crate::{Applied, BasicNode, StateMachine, TypeConfig};

pub(crate) const SNAPSHOT_FILE: &str = "snapshot.bin";

type Meta = SnapshotMeta<u64, BasicNode>;

/// The applied state and the log position it reflects.
#[derive(Debug)]
pub(crate) struct Applying<S> {
    pub(crate) state: S,
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) last_membership: StoredMembership<u64, BasicNode>,
}

/// State shared between the state machine, its snapshot builders and [`crate::RaftNode`].
#[derive(Debug)]
pub(crate) struct Shared<S> {
    pub(crate) applying: RwLock<Applying<S>>,
    dir: PathBuf,
    current: Mutex<Option<(Meta, Vec<u8>)>>,
    built: AtomicU64,
}

impl<S> Shared<S> {
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Applying<S>> {
        self.applying.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applying<S>> {
        self.applying.write().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<(Meta, Vec<u8>)>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn encode_snapshot(meta: &Meta, data: &[u8]) -> io::Result<Vec<u8>> {
    let m = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let len = u32::try_from(m.len()).map_err(|_| io::Error::other("snapshot meta over 4 GiB"))?;
    let mut out = Vec::with_capacity(4 + m.len() + data.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(data);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<(Meta, Vec<u8>)> {
    let bad = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{SNAPSHOT_FILE}: {why}"),
        )
    };
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("shorter than its header".into()))?;
    let meta = bytes
        .get(4..4 + len)
        .ok_or_else(|| bad("meta cut short".into()))?;
    let meta: Meta = serde_json::from_slice(meta).map_err(|e| bad(e.to_string()))?;
    Ok((meta, bytes[4 + len..].to_vec()))
}

/// Reads `dir/snapshot.bin`, when one was written.
pub(crate) fn read_snapshot_file(dir: &Path) -> io::Result<Option<(Meta, Vec<u8>)>> {
    match std::fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(b) => decode_snapshot(&b).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// openraft's state machine; cloning shares it.
#[derive(Debug)]
pub(crate) struct SmStore<S> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S> Clone for SmStore<S> {
    fn clone(&self) -> Self {
        SmStore {
            shared: self.shared.clone(),
        }
    }
}

impl<S: StateMachine> SmStore<S> {
    /// The state of `dir`'s snapshot, or `initial` when there is none.
    pub(crate) fn open(dir: &Path, mut initial: S) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut last_applied = None;
        let mut last_membership = StoredMembership::default();
        let current = match read_snapshot_file(dir)? {
            Some((meta, data)) => {
                initial.restore(&data).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{SNAPSHOT_FILE}: restore: {e}"),
                    )
                })?;
                last_applied = meta.last_log_id;
                last_membership = meta.last_membership.clone();
                Some((meta, data))
            }
            None => None,
        };
        Ok(SmStore {
            shared: Arc::new(Shared {
                applying: RwLock::new(Applying {
                    state: initial,
                    last_applied,
                    last_membership,
                }),
                dir: dir.to_path_buf(),
                current: Mutex::new(current),
                built: AtomicU64::new(0),
            }),
        })
    }
}

/// Applies one command: a command that does not decode (a replica of another version wrote
/// it) is skipped identically on every replica and reported to its proposer.
fn apply_one<S: StateMachine>(state: &mut S, cmd: &Value) -> Applied {
    match serde_json::from_value::<S::Command>(cmd.clone()) {
        Ok(c) => match serde_json::to_value(state.apply(&c)) {
            Ok(v) => Applied::Response(v),
            Err(e) => Applied::Failed(format!("encoding the response: {e}")),
        },
        Err(e) => {
            tracing::error!(error = %e, "skipping a replicated command that does not decode");
            Applied::Failed(format!("decoding the command: {e}"))
        }
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SmStore<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (meta, data) = {
            let g = self.shared.read();
            let n = self.shared.built.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match g.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, n),
                None => format!("--{n}"),
            };
            let meta = Meta {
                last_log_id: g.last_applied,
                last_membership: g.last_membership.clone(),
                snapshot_id,
            };
            (meta, g.state.snapshot())
        };
        persist(&self.shared, &meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

async fn persist<S: Send + Sync + 'static>(
    shared: &Arc<Shared<S>>,
    meta: &Meta,
    data: &[u8],
) -> Result<(), StorageError<u64>> {
    let err =
        |e: &io::Error| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(e));
    let bytes = encode_snapshot(meta, data).map_err(|e| err(&e))?;
    let dir = shared.dir.clone();
    tokio::task::spawn_blocking(move || write_atomic(&dir, SNAPSHOT_FILE, &bytes))
        .await
        .map_err(|e| err(&io::Error::other(e.to_string())))?
        .map_err(|e| err(&e))?;
    let mut cur = shared.current();
    // Two builds can race; keep the newer one as the current snapshot.
    if cur
        .as_ref()
        .is_none_or(|(m, _)| m.last_log_id <= meta.last_log_id)
    {
        *cur = Some((meta.clone(), data.to_vec()));
    }
    Ok(())
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for SmStore<S> {
    type SnapshotBuilder = SmStore<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let g = self.shared.read();
        Ok((g.last_applied, g.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = self.shared.write();
        let mut out = Vec::new();
        for e in entries {
            g.last_applied = Some(e.log_id);
            out.push(match &e.payload {
                EntryPayload::Blank => Applied::Nothing,
                EntryPayload::Normal(cmd) => apply_one(&mut g.state, cmd),
                EntryPayload::Membership(m) => {
                    g.last_membership = StoredMembership::new(Some(e.log_id), m.clone());
                    Applied::Nothing
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        // Durable first: if the process dies after the restore, the restart must find it.
        persist(&self.shared, meta, &data).await?;
        let mut g = self.shared.write();
        g.state.restore(&data).map_err(|e| {
            StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(format!("restore: {e}")),
            )
        })?;
        g.last_applied = meta.last_log_id;
        g.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.shared.current().as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Membership};

    use super::*;

    #[derive(Debug, Default)]
    struct Seq(Vec<u64>);

    impl StateMachine for Seq {
        type Command = u64;
        type Response = usize;

        fn apply(&mut self, cmd: &u64) -> usize {
            self.0.push(*cmd);
            self.0.len()
        }

        fn snapshot(&self) -> Vec<u8> {
            serde_json::to_vec(&self.0).unwrap_or_default()
        }

        fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
            self.0 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            Ok(())
        }
    }

    fn id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: id(index),
            payload,
        }
    }

    #[tokio::test]
    async fn applies_in_order_and_snapshots_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = SmStore::open(dir.path(), Seq::default()).unwrap();
        let members = Membership::new(vec![[1u64].into()], None);
        let out = sm
            .apply(vec![
                entry(0, EntryPayload::Membership(members.clone())),
                entry(1, EntryPayload::Blank),
                entry(2, EntryPayload::Normal(serde_json::json!(7))),
                entry(3, EntryPayload::Normal(serde_json::json!("not a u64"))),
                entry(4, EntryPayload::Normal(serde_json::json!(9))),
            ])
            .await
            .unwrap();
        assert!(matches!(out[0], Applied::Nothing));
        assert!(matches!(out[1], Applied::Nothing));
        assert!(matches!(&out[2], Applied::Response(v) if *v == serde_json::json!(1)));
        assert!(
            matches!(out[3], Applied::Failed(_)),
            "an undecodable command is skipped"
        );
        assert!(matches!(&out[4], Applied::Response(v) if *v == serde_json::json!(2)));

        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(id(4)));
        assert_eq!(membership.log_id(), &Some(id(0)));

        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(id(4)));
        assert_eq!(
            sm.get_current_snapshot()
                .await
                .unwrap()
                .map(|s| s.meta.snapshot_id),
            Some(snap.meta.snapshot_id.clone())
        );

        let mut again = SmStore::open(dir.path(), Seq::default()).unwrap();
        assert_eq!(again.shared.read().state.0, vec![7, 9]);
        let (applied, membership) = again.applied_state().await.unwrap();
        assert_eq!(applied, Some(id(4)));
        assert_eq!(
            membership.membership().voter_ids().collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[tokio::test]
    async fn installing_a_snapshot_replaces_the_state_durably() {
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = SmStore::open(leader_dir.path(), Seq::default()).unwrap();
        leader
            .apply((1..=3).map(|i| entry(i, EntryPayload::Normal(serde_json::json!(i * 10)))))
            .await
            .unwrap();
        let snap = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut follower = SmStore::open(dir.path(), Seq(vec![1])).unwrap();
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(follower.shared.read().state.0, vec![10, 20, 30]);
        assert_eq!(follower.applied_state().await.unwrap().0, Some(id(3)));

        let again = SmStore::open(dir.path(), Seq::default()).unwrap();
        assert_eq!(again.shared.read().state.0, vec![10, 20, 30]);
    }

    #[test]
    fn a_cut_snapshot_file_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), [200, 0, 0, 0, b'{']).unwrap();
        assert!(SmStore::open(dir.path(), Seq::default()).is_err());
    }
}
