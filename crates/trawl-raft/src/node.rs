//! [`RaftNode`]: a replica of a static openraft group, as a [`Replicator`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use openraft::error::{ClientWriteError, Fatal, InitializeError};
use openraft::{Raft, RaftMetrics, SnapshotPolicy};
use tokio::sync::watch;
use trawl_proto::v1::raft_server::RaftServer;

use crate::log_store::LogStore;
use crate::network::{MAX_MESSAGE, Network, RaftService};
use crate::state_machine::{Shared, SmStore};
use crate::{
    Applied, BasicNode, ReplicaError, ReplicaStatus, Replicator, StateMachine, TypeConfig,
};

/// Errors of [`RaftNode::start`]: the crate's one error enum, [`ReplicaError`] (a bad
/// configuration or an unreadable data directory is [`ReplicaError::Fatal`]).
pub type RaftError = ReplicaError;

/// Default interval between the leader's heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// Default lower bound of the randomised election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(1000);
/// Default upper bound of the randomised election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(2000);
/// Default number of applied entries between snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;

/// How one replica of a static group runs.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This replica's id (`--raft.id`); must be a key of `peers`.
    pub id: u64,
    /// Every replica, this one included: id -> gRPC `host:port` (`--raft.peers`). The group's
    /// membership is exactly this map, fixed when the group first starts.
    pub peers: BTreeMap<u64, String>,
    /// Where the log (`raft.log`), the vote (`vote.json`) and the snapshot (`snapshot.bin`)
    /// live.
    pub data_dir: PathBuf,
    /// Interval of the leader's heartbeats; also the deadline of one AppendEntries round trip.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in
    /// `[election_timeout_min, election_timeout_max)` starts an election.
    pub election_timeout_min: Duration,
    /// See [`RaftConfig::election_timeout_min`].
    pub election_timeout_max: Duration,
    /// Applied entries between snapshots; the log before a snapshot is purged, keeping the
    /// last quarter of this many entries for followers that lag slightly.
    pub snapshot_every: u64,
    /// How long [`Replicator::propose`] waits for its command to commit before answering
    /// [`ReplicaError::Unavailable`] (the command may still commit later).
    pub propose_timeout: Duration,
    /// Deadline to open a connection to a peer.
    pub connect_timeout: Duration,
    /// TLS of the connections to peers (`--grpc.tls-*`); `None` dials plaintext.
    pub tls: Option<trawl_proto::tls::ClientTls>,
}

impl RaftConfig {
    /// A configuration with the default timings.
    pub fn new(id: u64, peers: BTreeMap<u64, String>, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            id,
            peers,
            data_dir: data_dir.into(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            election_timeout_min: DEFAULT_ELECTION_TIMEOUT_MIN,
            election_timeout_max: DEFAULT_ELECTION_TIMEOUT_MAX,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            propose_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            tls: None,
        }
    }

    /// The openraft configuration, or why this one cannot run.
    pub(crate) fn openraft_config(&self) -> Result<openraft::Config, ReplicaError> {
        let bad = |why: String| ReplicaError::Fatal(format!("raft config: {why}"));
        if !self.peers.contains_key(&self.id) {
            return Err(bad(format!(
                "id {} is not one of the peers {:?}",
                self.id,
                self.peers.keys()
            )));
        }
        if let Some((id, _)) = self.peers.iter().find(|(_, a)| a.trim().is_empty()) {
            return Err(bad(format!("peer {id} has an empty address")));
        }
        if self.snapshot_every == 0 {
            return Err(bad("snapshot_every must be at least 1".into()));
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let cfg = openraft::Config {
            cluster_name: "trawl".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            // One snapshot chunk, JSON-framed (up to 4 bytes per byte), stays far below the
            // gRPC message limit.
            snapshot_max_chunk_size: 1 << 20,
            install_snapshot_timeout: ms(self.election_timeout_min).max(1000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.snapshot_every / 4,
            ..Default::default()
        };
        cfg.validate().map_err(|e| bad(e.to_string()))
    }
}

/// The [`ReplicaStatus`] that openraft's metrics describe; `peers` stands in for the
/// membership until the node has loaded one.
pub(crate) fn status_from_metrics(
    m: &RaftMetrics<u64, BasicNode>,
    peers: &BTreeMap<u64, String>,
) -> ReplicaStatus {
    let mut members: Vec<(u64, String)> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    if members.is_empty() {
        members = peers.iter().map(|(id, a)| (*id, a.clone())).collect();
    }
    ReplicaStatus {
        id: m.id,
        term: m.current_term,
        leader: m.current_leader,
        applied: m.last_applied.map_or(0, |l| l.index),
        members,
    }
}

/// One replica of a static Raft group replicating `S`.
pub struct RaftNode<S: StateMachine> {
    id: u64,
    peers: BTreeMap<u64, String>,
    pub(crate) raft: Raft<TypeConfig>,
    shared: Arc<Shared<S>>,
    status: Arc<watch::Sender<ReplicaStatus>>,
    stopped: Arc<AtomicBool>,
    propose_timeout: Duration,
}

impl<S: StateMachine> std::fmt::Debug for RaftNode<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.id)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

fn fatal(what: &str) -> impl Fn(std::io::Error) -> ReplicaError + '_ {
    move |e| ReplicaError::Fatal(format!("{what}: {e}"))
}

impl<S: StateMachine> RaftNode<S> {
    /// Opens `cfg.data_dir` (state from its snapshot, else `initial`), starts the replica
    /// and, on a pristine data dir, initialises the group with every peer as a voter.
    ///
    /// Every replica initialises with the same membership, which openraft documents as safe
    /// (the identical first entry on each, then an ordinary election), so replicas may start
    /// in any order or all at once. A replica whose data dir holds a log or a vote is already
    /// part of the group and never initialises again.
    pub async fn start(cfg: RaftConfig, initial: S) -> Result<Self, RaftError> {
        let rcfg = cfg.openraft_config()?;
        let dir = &cfg.data_dir;
        let log = LogStore::open(dir).map_err(fatal(&dir.display().to_string()))?;
        let sm = SmStore::open(dir, initial).map_err(fatal(&dir.display().to_string()))?;
        let shared = sm.shared.clone();
        let raft = Raft::new(
            cfg.id,
            Arc::new(rcfg),
            Network::new(cfg.connect_timeout, cfg.tls.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| ReplicaError::Fatal(format!("starting raft: {e}")))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ReplicaError::Fatal(format!("starting raft: {e}")))?;
        if initialized {
            let stored: BTreeMap<u64, String> = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect();
            if stored != cfg.peers {
                tracing::warn!(
                    stored = ?stored,
                    flags = ?cfg.peers,
                    "raft membership in the data dir differs from --raft.peers; keeping the stored one"
                );
            }
            tracing::info!(id = cfg.id, dir = %dir.display(), "raft replica resumed from its data dir");
        } else {
            let members: BTreeMap<u64, BasicNode> = cfg
                .peers
                .iter()
                .map(|(id, a)| (*id, BasicNode::new(a)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(id = cfg.id, peers = ?cfg.peers, "raft group initialised"),
                // A peer's first entry or vote reached us first: the group already exists.
                Err(openraft::error::RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    let _ = raft.shutdown().await;
                    return Err(ReplicaError::Fatal(format!("initialising raft: {e}")));
                }
            }
        }

        let mut metrics = raft.metrics();
        let first = status_from_metrics(&metrics.borrow_and_update(), &cfg.peers);
        let status = Arc::new(watch::channel(first).0);
        let stopped = Arc::new(AtomicBool::new(false));
        {
            let (status, stopped, peers) = (status.clone(), stopped.clone(), cfg.peers.clone());
            tokio::spawn(async move {
                // Ends when the node stops and openraft drops its metrics sender.
                while metrics.changed().await.is_ok() {
                    let next = status_from_metrics(&metrics.borrow_and_update(), &peers);
                    status.send_if_modified(|cur| {
                        if stopped.load(Ordering::SeqCst) || *cur == next {
                            return false;
                        }
                        *cur = next;
                        true
                    });
                }
            });
        }
        Ok(RaftNode {
            id: cfg.id,
            peers: cfg.peers,
            raft,
            shared,
            status,
            stopped,
            propose_timeout: cfg.propose_timeout,
        })
    }

    /// This replica's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The `trawl.v1.Raft` gRPC service, to mount on the replica's tonic server (the port in
    /// `peers`). Its message limit fits a batch of entries or a snapshot chunk.
    pub fn grpc_service(&self) -> RaftServer<RaftService> {
        RaftServer::new(RaftService {
            raft: self.raft.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Stops the replica: it stops voting, leading and applying, its gRPC service answers
    /// `UNAVAILABLE` and its status reports no leader. The applied state stays readable.
    pub async fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(id = self.id, error = %e, "raft core task ended abnormally");
        }
        self.status.send_modify(|s| s.leader = None);
    }

    fn not_leader(&self, leader: Option<u64>, node: Option<BasicNode>) -> ReplicaError {
        let address = leader
            .and_then(|l| self.peers.get(&l).cloned())
            .or_else(|| node.map(|n| n.addr));
        ReplicaError::NotLeader { leader, address }
    }
}

impl<S: StateMachine> Replicator<S> for RaftNode<S> {
    fn propose(&self, cmd: S::Command) -> BoxFuture<'_, Result<S::Response, ReplicaError>> {
        Box::pin(async move {
            if self.stopped.load(Ordering::SeqCst) {
                return Err(ReplicaError::Unavailable("raft node stopped".into()));
            }
            let value = serde_json::to_value(&cmd)
                .map_err(|e| ReplicaError::Fatal(format!("encoding the command: {e}")))?;
            let res = tokio::time::timeout(self.propose_timeout, self.raft.client_write(value))
                .await
                .map_err(|_| {
                    ReplicaError::Unavailable(format!(
                        "not committed within {:?}",
                        self.propose_timeout
                    ))
                })?;
            match res {
                Ok(resp) => match resp.data {
                    Applied::Response(v) => serde_json::from_value(v)
                        .map_err(|e| ReplicaError::Fatal(format!("decoding the response: {e}"))),
                    Applied::Failed(e) => Err(ReplicaError::Fatal(e)),
                    Applied::Nothing => Err(ReplicaError::Fatal(
                        "the command entry answered nothing".into(),
                    )),
                },
                Err(openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    Err(self.not_leader(f.leader_id, f.leader_node))
                }
                Err(openraft::error::RaftError::APIError(
                    ClientWriteError::ChangeMembershipError(e),
                )) => Err(ReplicaError::Unavailable(e.to_string())),
                Err(openraft::error::RaftError::Fatal(Fatal::Stopped)) => {
                    Err(ReplicaError::Unavailable("raft node stopped".into()))
                }
                Err(openraft::error::RaftError::Fatal(e)) => {
                    Err(ReplicaError::Fatal(e.to_string()))
                }
            }
        })
    }

    fn read(&self, f: &mut dyn FnMut(&S)) {
        f(&self.shared.read().state);
    }

    fn status(&self) -> watch::Receiver<ReplicaStatus> {
        self.status.subscribe()
    }
}
