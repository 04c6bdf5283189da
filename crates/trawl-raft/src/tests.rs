//! Groups of real replicas on loopback: each replica's `trawl.v1.Raft` service on its own
//! tonic server bound to 127.0.0.1:0, timings as in production.

// Proto messages end in `..Default::default()` even where every field is set today.
#![allow(clippy::needless_update)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{
    RaftConfig, RaftNode, ReplicaError, ReplicaStatus, Replicator, StateMachine, read_with,
};

/// Appends each command once (a retried proposal that did commit is not applied twice),
/// answering the new length.
#[derive(Debug, Default)]
struct Seq(Vec<u64>);

impl StateMachine for Seq {
    type Command = u64;
    type Response = usize;

    fn apply(&mut self, cmd: &u64) -> usize {
        if !self.0.contains(cmd) {
            self.0.push(*cmd);
        }
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

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it answers, failing the test at the deadline.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn serve(node: &RaftNode<Seq>, listener: TcpListener) -> Server {
    let (stop, rx) = oneshot::channel::<()>();
    let svc = node.grpc_service();
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let res = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "test raft server failed");
        }
    });
    Server { stop, task }
}

impl Server {
    /// Stops accepting and closes the connections (peers reconnect to a restarted server).
    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(DEADLINE, self.task).await.is_err() {
            abort.abort();
        }
    }
}

struct Replica {
    cfg: RaftConfig,
    node: Arc<RaftNode<Seq>>,
    server: Option<Server>,
}

impl Replica {
    fn status(&self) -> ReplicaStatus {
        self.node.status().borrow().clone()
    }

    fn state(&self) -> Vec<u64> {
        read_with(&*self.node, |s: &Seq| s.0.clone())
    }

    /// Stops the replica and its server, as if its process died.
    async fn kill(&mut self) {
        self.node.shutdown().await;
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// Starts the replica again from its data dir, serving on its old address.
    async fn restart(&mut self) {
        self.node = Arc::new(
            RaftNode::start(self.cfg.clone(), Seq::default())
                .await
                .unwrap(),
        );
        self.serve_again().await;
    }

    async fn serve_again(&mut self) {
        let addr: SocketAddr = self.cfg.peers[&self.cfg.id].parse().unwrap();
        let listener = TcpListener::bind(addr).await.unwrap();
        self.server = Some(serve(&self.node, listener));
    }
}

struct Group {
    _dirs: Vec<tempfile::TempDir>,
    replicas: Vec<Replica>,
}

/// Starts `n` replicas at once, ids 1..=n.
async fn group(n: u64, snapshot_every: u64) -> Group {
    group_with(n, snapshot_every, |_| {}).await
}

async fn group_with(n: u64, snapshot_every: u64, tweak: impl Fn(&mut RaftConfig)) -> Group {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let starts = (1..=n).zip(&dirs).map(|(id, d)| {
        let mut cfg = RaftConfig::new(id, peers.clone(), d.path().join("raft"));
        cfg.snapshot_every = snapshot_every;
        tweak(&mut cfg);
        async move {
            let node = RaftNode::start(cfg.clone(), Seq::default()).await.unwrap();
            (cfg, node)
        }
    });
    let started = futures_util::future::join_all(starts).await;
    let replicas = started
        .into_iter()
        .zip(listeners)
        .map(|((cfg, node), l)| {
            let server = Some(serve(&node, l));
            Replica {
                cfg,
                node: Arc::new(node),
                server,
            }
        })
        .collect();
    Group {
        _dirs: dirs,
        replicas,
    }
}

impl Group {
    fn live(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.iter().filter(|r| r.server.is_some())
    }

    /// Waits until every live replica names the same leader, which leads itself; answers
    /// its position in `replicas`.
    async fn agreed_leader(&self) -> usize {
        until("one agreed leader", || {
            let statuses: Vec<_> = self.live().map(|r| r.status()).collect();
            let leader = statuses.first()?.leader?;
            if !statuses.iter().all(|s| s.leader == Some(leader)) {
                return None;
            }
            let leaders = statuses.iter().filter(|s| s.is_leader()).count();
            assert!(leaders <= 1, "two replicas lead at once: {statuses:?}");
            (leaders == 1).then(|| self.replicas.iter().position(|r| r.cfg.id == leader))?
        })
        .await
    }

    /// Proposes `cmd` through whichever replica leads, following `NotLeader` answers and
    /// retrying while no leader is known.
    async fn propose(&self, cmd: u64) -> usize {
        let end = Instant::now() + DEADLINE;
        let mut at = 0;
        loop {
            assert!(Instant::now() < end, "proposal {cmd} did not commit");
            let r = &self.replicas[at];
            if r.server.is_none() {
                at = (at + 1) % self.replicas.len();
                continue;
            }
            match r.node.propose(cmd).await {
                Ok(n) => return n,
                Err(ReplicaError::NotLeader {
                    leader: Some(l), ..
                }) => {
                    at = self
                        .replicas
                        .iter()
                        .position(|r| r.cfg.id == l)
                        .unwrap_or(0);
                }
                Err(ReplicaError::NotLeader { leader: None, .. })
                | Err(ReplicaError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("proposal {cmd} failed: {e}"),
            }
        }
    }

    async fn converged(&self, want: &[u64]) {
        until("every live replica applies the same commands", || {
            self.live().all(|r| r.state() == want).then_some(())
        })
        .await;
    }

    async fn shutdown(mut self) {
        for r in &mut self.replicas {
            r.kill().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_one_leader_and_apply_in_order() {
    let g = group(3, 1000).await;
    g.agreed_leader().await;

    let want: Vec<u64> = (1..=20).collect();
    for (i, v) in want.iter().enumerate() {
        assert_eq!(
            g.propose(*v).await,
            i + 1,
            "the proposer gets the state machine's answer"
        );
    }
    g.converged(&want).await;

    // A follower refuses and names the leader and its gRPC address.
    let leader = g.agreed_leader().await;
    let leader_id = g.replicas[leader].cfg.id;
    let follower = g.replicas.iter().find(|r| r.cfg.id != leader_id).unwrap();
    match follower.node.propose(99).await {
        Err(ReplicaError::NotLeader { leader, address }) => {
            assert_eq!(leader, Some(leader_id));
            assert_eq!(
                address.as_deref(),
                Some(follower.cfg.peers[&leader_id].as_str())
            );
        }
        other => panic!("follower answered {other:?}"),
    }
    let st = follower.status();
    assert_eq!(st.members.len(), 3);
    assert_eq!(
        st.leader_address(),
        Some(follower.cfg.peers[&leader_id].as_str())
    );
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_when_the_leader_dies() {
    let mut g = group(3, 1000).await;
    let old = g.agreed_leader().await;
    let mut want: Vec<u64> = (1..=10).collect();
    for v in &want {
        g.propose(*v).await;
    }
    g.converged(&want).await;
    let old_term = g.replicas[old].status().term;
    let old_id = g.replicas[old].cfg.id;

    g.replicas[old].kill().await;
    assert!(
        !g.replicas[old].status().is_leader(),
        "a stopped replica does not claim to lead"
    );
    assert!(matches!(
        g.replicas[old].node.propose(1000).await,
        Err(ReplicaError::Unavailable(_))
    ));

    let new = g.agreed_leader().await;
    assert_ne!(g.replicas[new].cfg.id, old_id);
    assert!(g.replicas[new].status().term > old_term);
    g.converged(&want).await;

    want.extend(11..=20);
    for v in 11..=20 {
        g.propose(v).await;
    }
    g.converged(&want).await;
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_resumes_from_its_snapshot_and_catches_up() {
    let mut g = group(3, 10).await;
    let leader = g.agreed_leader().await;
    let mut want: Vec<u64> = (1..=35).collect();
    for v in &want {
        g.propose(*v).await;
    }
    g.converged(&want).await;

    let f = (leader + 1) % 3;
    // The follower snapshotted and purged its log on its own.
    until("the follower snapshots and purges", || {
        let m = g.replicas[f].node.raft.metrics().borrow().clone();
        (m.snapshot.is_some() && m.purged.is_some()).then_some(())
    })
    .await;
    let term = g.replicas[f].status().term;
    g.replicas[f].kill().await;
    let dir = g.replicas[f].cfg.data_dir.clone();
    assert!(
        crate::log_store::LogFile::open(&dir)
            .unwrap()
            .purged()
            .is_some()
    );
    let (meta, _) = crate::state_machine::read_snapshot_file(&dir)
        .unwrap()
        .unwrap();
    let snap_at = meta.last_log_id.unwrap().index;

    // The group goes on without it.
    want.extend(36..=60);
    for v in 36..=60 {
        g.propose(v).await;
    }

    // Back from its data dir: the snapshot's state is there before any peer is heard from.
    let cfg = g.replicas[f].cfg.clone();
    let node = RaftNode::start(cfg, Seq::default()).await.unwrap();
    let restored = read_with(&node, |s: &Seq| s.0.clone());
    assert!(
        restored.len() >= 10 && want.starts_with(&restored),
        "restored {restored:?}"
    );
    let st = node.status().borrow().clone();
    assert!(
        st.term >= term,
        "the vote survives: term {} < {term}",
        st.term
    );
    assert!(st.applied >= snap_at);
    g.replicas[f].node = Arc::new(node);
    g.replicas[f].serve_again().await;

    g.converged(&want).await;
    g.propose(61).await;
    want.push(61);
    g.converged(&want).await;
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_group_leads_itself_and_survives_restart() {
    let mut g = group(1, 5).await;
    g.agreed_leader().await;
    let want: Vec<u64> = (1..=12).collect();
    for v in &want {
        g.propose(*v).await;
    }
    assert_eq!(g.replicas[0].state(), want);

    g.replicas[0].kill().await;
    g.replicas[0].restart().await;
    g.agreed_leader().await;
    // Entries after the last snapshot are applied again once the restarted leader commits.
    g.converged(&want).await;
    assert_eq!(g.propose(13).await, 13);
    g.shutdown().await;
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = [(1, "127.0.0.1:1".to_string())].into();
    let path: PathBuf = dir.path().into();

    let not_member = RaftConfig::new(2, peers.clone(), &path);
    assert!(matches!(
        not_member.openraft_config(),
        Err(ReplicaError::Fatal(_))
    ));

    let mut inverted = RaftConfig::new(1, peers.clone(), &path);
    inverted.election_timeout_min = Duration::from_millis(100);
    inverted.heartbeat_interval = Duration::from_millis(200);
    assert!(inverted.openraft_config().is_err());

    let mut no_snapshots = RaftConfig::new(1, peers.clone(), &path);
    no_snapshots.snapshot_every = 0;
    assert!(no_snapshots.openraft_config().is_err());

    let ok = RaftConfig::new(1, peers, &path).openraft_config().unwrap();
    assert_eq!(ok.heartbeat_interval, 250);
    assert_eq!(
        (ok.election_timeout_min, ok.election_timeout_max),
        (1000, 2000)
    );
    assert!(RaftNode::start(not_member, Seq::default()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wakes_watchers_on_every_applied_command() {
    let g = group(1, 1000).await;
    g.agreed_leader().await;
    let mut rx = g.replicas[0].node.status();
    let before = rx.borrow_and_update().applied;
    g.propose(1).await;
    tokio::time::timeout(DEADLINE, rx.changed())
        .await
        .expect("status did not change")
        .unwrap();
    until("the applied index to move", || {
        (g.replicas[0].status().applied > before).then_some(())
    })
    .await;
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refuses_garbage_and_a_stopped_node_looks_dead() {
    use trawl_proto::v1::RaftMessage;
    use trawl_proto::v1::raft_server::Raft as _;

    let mut g = group(1, 1000).await;
    g.agreed_leader().await;
    let svc = crate::RaftService {
        raft: g.replicas[0].node.raft.clone(),
    };
    let garbage = || {
        tonic::Request::new(RaftMessage {
            payload: b"{not json".to_vec(),
            ..Default::default()
        })
    };
    assert_eq!(
        svc.vote(garbage()).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        svc.append_entries(garbage()).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        svc.install_snapshot(garbage()).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1, 9), None);
    let msg = || {
        tonic::Request::new(RaftMessage {
            payload: serde_json::to_vec(&vote).unwrap(),
            ..Default::default()
        })
    };
    // A live node answers with openraft's result (here: a stale term, refused).
    let answer = svc.vote(msg()).await.unwrap().into_inner();
    let res: Result<openraft::raft::VoteResponse<u64>, openraft::error::RaftError<u64>> =
        serde_json::from_slice(&answer.payload).unwrap();
    assert!(!res.unwrap().vote_granted);

    g.replicas[0].kill().await;
    assert_eq!(
        svc.vote(msg()).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
}

#[tokio::test]
async fn an_unreachable_peer_is_reported_as_unreachable() {
    use openraft::RaftNetworkFactory as _;
    use openraft::network::{RPCOption, RaftNetwork as _};

    // A loopback port nobody listens on any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut net = crate::network::Network::new(Duration::from_millis(500), None);
    let mut client = net.new_client(2, &crate::BasicNode::new(addr)).await;
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1, 1), None);
    let err = client
        .vote(vote, RPCOption::new(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, openraft::error::RPCError::Unreachable(_)),
        "{err:?}"
    );

    let mut bad = net.new_client(3, &crate::BasicNode::new("not a uri")).await;
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1, 1), None);
    let err = bad
        .vote(vote, RPCOption::new(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, openraft::error::RPCError::Unreachable(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_a_proposal_fails_instead_of_hanging() {
    let mut g = group_with(3, 1000, |c| c.propose_timeout = Duration::from_secs(1)).await;
    let leader = g.agreed_leader().await;
    g.propose(1).await;
    for i in 0..3 {
        if i != leader {
            g.replicas[i].kill().await;
        }
    }
    let lone = |r: &Replica| match r.state() {
        s if s == [1] => {}
        s => panic!("nothing commits without a majority, yet the state is {s:?}"),
    };
    match g.replicas[leader].node.propose(2).await {
        Err(ReplicaError::Unavailable(_)) | Err(ReplicaError::NotLeader { .. }) => {}
        other => panic!("a leader without followers answered {other:?}"),
    }
    lone(&g.replicas[leader]);

    // Restarted alone, it applies what it knows was committed without hearing from anyone.
    g.replicas[leader].kill().await;
    g.replicas[leader].restart().await;
    lone(&g.replicas[leader]);
    match g.replicas[leader].node.propose(3).await {
        Err(ReplicaError::Unavailable(_)) | Err(ReplicaError::NotLeader { .. }) => {}
        other => panic!("a lone replica of three answered {other:?}"),
    }
    lone(&g.replicas[leader]);
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_group_restarts_from_its_data_dirs() {
    let mut g = group(3, 7).await;
    g.agreed_leader().await;
    let mut want: Vec<u64> = (1..=20).collect();
    for v in &want {
        g.propose(*v).await;
    }
    g.converged(&want).await;
    for r in &mut g.replicas {
        r.kill().await;
    }
    let restarts = g
        .replicas
        .iter()
        .map(|r| RaftNode::start(r.cfg.clone(), Seq::default()));
    let nodes = futures_util::future::join_all(restarts).await;
    for (r, node) in g.replicas.iter_mut().zip(nodes) {
        r.node = Arc::new(node.unwrap());
        r.serve_again().await;
    }
    g.agreed_leader().await;
    g.converged(&want).await;
    want.push(21);
    g.propose(21).await;
    g.converged(&want).await;
    g.shutdown().await;
}
