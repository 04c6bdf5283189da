//! `trawl-raft`: a replicated, deterministic state machine for the coordinator replicas.
//!
//! Job: let the coordinator write its cluster state (workers, assignment epochs, handoffs) as
//! a sequence of commands that every replica applies in the same order, and read that state
//! locally on any replica. The coordinator is written against the [`Replicator`] trait only;
//! two implementations satisfy it:
//! - [`Local`]: one replica in one process (no peers), commands applied under a lock and the
//!   state persisted as a snapshot file so a restart resumes the same epoch;
//! - [`RaftNode`] (openraft 0.9): a static group of replicas from `--raft.peers`, Raft
//!   traffic on the `trawl.v1.Raft` gRPC service that shares each replica's gRPC port
//!   ([`RaftNode::grpc_service`]); with `RaftConfig::tls` (the `--grpc.tls-*` flags) peers
//!   are dialled over TLS, presenting the replica's certificate.
//!
//! Invariants every implementation keeps:
//! - [`StateMachine::apply`] is called exactly once per committed command, in log order, on
//!   every replica; it must be deterministic (no clock, no randomness: time travels inside the
//!   command).
//! - [`Replicator::propose`] succeeds only on the leader, after the command is committed and
//!   applied locally; elsewhere it fails with [`ReplicaError::NotLeader`] naming the leader
//!   when known, so the caller can forward.
//! - [`Replicator::status`] changes whenever the term, the leader or the applied index
//!   changes, so watchers (assignment streams) wake on every new state.
//!
//! # `RaftNode` design
//!
//! Membership is static: on a pristine data dir every replica initialises the group with all
//! of `peers` as voters. openraft documents initialising several nodes with the *identical*
//! membership as safe (each writes the same first entry, then an ordinary election picks
//! one leader), so replicas may start in any order or all at once; a data dir that holds a
//! log or a vote is never initialised again, and a membership in it that differs from the
//! flags is kept (with a warning): changing the replica set needs fresh data dirs.
//!
//! Files in `data_dir`, each `fsync`ed before openraft is told the write is durable:
//! - `raft.log`: the log, append-only records `[u32 len][u64 xxh64][serde_json]`; `fsync`
//!   after each append batch; a conflicting suffix is cut off in place (`set_len`, `fsync`);
//!   after a snapshot the purged prefix is dropped by rewriting the kept entries to a
//!   temporary file that is `fsync`ed and renamed over the log (then the directory is
//!   `fsync`ed). On start a torn final record is dropped; damage before the end fails the
//!   start, since it would lose acknowledged entries.
//! - `vote.json`: the vote, temporary file + `fsync` + rename + directory `fsync`.
//! - `committed.json`: the last committed log id, renamed into place without `fsync` (any
//!   surviving value was committed; it only lets a restarted replica apply its log at once).
//! - `snapshot.bin`: `[u32 meta len][SnapshotMeta json][S::snapshot()]`, written the same way
//!   every `snapshot_every` applied entries and when a snapshot is installed from the leader.
//!   The state machine itself lives in memory: a restart restores the snapshot and openraft
//!   re-applies the log entries after it up to the saved committed id (the rest once the
//!   leader is heard from), so apply never waits on the disk.
//!
//! No RocksDB: the log is small (purged after each snapshot), written sequentially and read
//! back only at start, so a plain file with checksummed records does the job, keeps the
//! coordinator free of the C++ dependency, and only `trawl-storage-rocks` names RocksDB.
//!
//! Timings (defaults in [`RaftConfig::new`]): heartbeat every 250 ms, election timeout
//! random in 1–2 s, so followers notice a dead leader within 2 s and a new one is normally
//! elected within 3 s, well within the 5 s the coordinator tolerates; an AppendEntries round
//! trip must finish within one heartbeat interval, a vote within the minimum election timeout.
//! Unreachable peers are retried every 500 ms.
//!
//! Commands travel as the serde_json of `S::Command` (log, network and storage are not generic
//! over `S`); a command that does not decode on a replica is skipped on every replica and its
//! proposer gets [`ReplicaError::Fatal`]. [`ReplicaStatus::applied`] is the Raft log index of
//! the last applied entry (blank and membership entries count), not a command count.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

mod local;
mod log_store;
mod network;
mod node;
mod state_machine;
#[cfg(test)]
mod tests;

pub use local::Local;
pub use network::RaftService;
pub use node::{
    DEFAULT_ELECTION_TIMEOUT_MAX, DEFAULT_ELECTION_TIMEOUT_MIN, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_SNAPSHOT_EVERY, RaftConfig, RaftError, RaftNode,
};

use openraft::BasicNode;

openraft::declare_raft_types!(
    /// openraft's types for every Trawl group. Commands travel as JSON values (the serde_json
    /// of `S::Command`) so the log, the network and the storage are not generic over `S`;
    /// only the state machine adaptor decodes them.
    pub(crate) TypeConfig:
        D = serde_json::Value,
        R = Applied,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// What applying one log entry answered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Applied {
    /// The serde_json of the command's `S::Response`.
    Response(serde_json::Value),
    /// Blank and membership entries change no state.
    Nothing,
    /// The command was skipped on every replica (it did not decode, or its response did not
    /// encode).
    Failed(String),
}

/// A deterministic state machine replicated by a [`Replicator`].
pub trait StateMachine: Send + Sync + 'static {
    /// A state change, serialised into the replicated log.
    type Command: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static;
    /// What applying a command answers to its proposer.
    type Response: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static;

    /// Applies one committed command. Deterministic: the same state and command give the
    /// same new state and response on every replica.
    fn apply(&mut self, cmd: &Self::Command) -> Self::Response;
    /// The whole state, for snapshots and for replicas that fall behind the log.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot taken by [`StateMachine::snapshot`].
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String>;
}

/// Who leads and how far the local state has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// This replica's id (`--raft.id`; 1 for a single replica).
    pub id: u64,
    /// The current term (0 before any election; 1 for a [`Local`] replica).
    pub term: u64,
    /// The leader's id, when known.
    pub leader: Option<u64>,
    /// Index of the last command applied to the local state.
    pub applied: u64,
    /// Every replica of the group: id and gRPC address.
    pub members: Vec<(u64, String)>,
}

impl ReplicaStatus {
    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.id)
    }

    /// The leader's gRPC address, when known.
    pub fn leader_address(&self) -> Option<&str> {
        let l = self.leader?;
        self.members
            .iter()
            .find(|(id, _)| *id == l)
            .map(|(_, a)| a.as_str())
    }
}

/// Failures of [`Replicator::propose`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// This replica does not lead; forward to the leader when one is known.
    #[error("not the leader (leader: {leader:?} at {address:?})")]
    NotLeader {
        leader: Option<u64>,
        address: Option<String>,
    },
    /// No quorum or the group is shutting down: retry later.
    #[error("replication unavailable: {0}")]
    Unavailable(String),
    /// Storage or encoding failure of the log or snapshot.
    #[error("replication failed: {0}")]
    Fatal(String),
}

/// A replicated state machine `S`, read locally and written through the leader.
pub trait Replicator<S: StateMachine>: Send + Sync + 'static {
    /// Replicates `cmd`; resolves once it is committed and applied here, with its response.
    fn propose(&self, cmd: S::Command) -> BoxFuture<'_, Result<S::Response, ReplicaError>>;
    /// Runs `f` over the local applied state (a follower's may lag the leader's).
    fn read(&self, f: &mut dyn FnMut(&S));
    /// Current status; the receiver wakes on every term, leader or applied-index change.
    fn status(&self) -> watch::Receiver<ReplicaStatus>;
}

/// Reads a value out of the replicated state.
pub fn read_with<S: StateMachine, T>(
    r: &(impl Replicator<S> + ?Sized),
    f: impl FnOnce(&S) -> T,
) -> T {
    let mut f = Some(f);
    let mut out = None;
    r.read(&mut |s| {
        if let Some(f) = f.take() {
            out = Some(f(s));
        }
    });
    // `read` calls its closure exactly once.
    out.unwrap_or_else(|| unreachable!("Replicator::read did not call its closure"))
}

/// Shared handle type the coordinator holds.
pub type SharedReplicator<S> = Arc<dyn Replicator<S>>;
