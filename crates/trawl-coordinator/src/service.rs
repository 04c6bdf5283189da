//! The `trawl.v1.Coordinator` gRPC service over the replicated state.
//!
//! Writes (Register, Heartbeat, ReportScrapes) run on the leader: a follower forwards them
//! to the leader's gRPC address, marking the call so that two replicas that each believe the
//! other leads cannot bounce it forever. Reads (WatchAssignment, GetCluster) are served from
//! the local replicated state, which on a follower may lag the leader by a few entries.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use trawl_proto::v1;
use trawl_proto::v1::coordinator_client::CoordinatorClient;
use trawl_raft::{ReplicaError, SharedReplicator, read_with};

use crate::leader::{FailureDetector, LeaderCounters, lock, now_ms, propose};
use crate::state::{ClusterState, Op, Response as SmResponse, WorkerLoad};

/// Metadata key set on forwarded calls.
const FORWARDED: &str = "x-trawl-forwarded";

/// A client to the leader, with the address it was made for.
type LeaderClient = (String, CoordinatorClient<Channel>);

/// The Coordinator service of one replica.
#[derive(Clone)]
pub struct CoordinatorService {
    replicator: SharedReplicator<ClusterState>,
    detector: Arc<Mutex<FailureDetector>>,
    counters: Arc<LeaderCounters>,
    heartbeat_interval: Duration,
    web_address: String,
    leader_client: Arc<Mutex<Option<LeaderClient>>>,
    /// Ends the assignment streams (a graceful server shutdown waits for open streams).
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// TLS of the forwarding client (`--grpc.tls-*`).
    client_tls: Option<trawl_proto::tls::ClientTls>,
}

impl std::fmt::Debug for CoordinatorService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorService")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish_non_exhaustive()
    }
}

/// The heartbeat interval workers are told: a quarter of the timeout, at least 200 ms.
pub fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(200))
}

fn replica_status(e: ReplicaError) -> Status {
    match e {
        ReplicaError::NotLeader { .. } => Status::unavailable(format!("{e}, retry")),
        ReplicaError::Unavailable(m) => Status::unavailable(m),
        ReplicaError::Fatal(m) => Status::internal(m),
    }
}

fn rejected(r: SmResponse) -> Result<(), Status> {
    match r {
        SmResponse::Applied { .. } => Ok(()),
        SmResponse::Rejected(m) if m.starts_with("unknown worker") => Err(Status::not_found(m)),
        SmResponse::Rejected(m) => Err(Status::invalid_argument(m)),
    }
}

fn require_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("worker_id must not be empty"));
    }
    Ok(())
}

enum Route {
    Local,
    Forward(CoordinatorClient<Channel>),
}

impl CoordinatorService {
    /// A service over `replicator`, sharing the leader loop's failure detector and counters.
    pub fn new(
        replicator: SharedReplicator<ClusterState>,
        detector: Arc<Mutex<FailureDetector>>,
        counters: Arc<LeaderCounters>,
        heartbeat_timeout: Duration,
        web_address: String,
    ) -> Self {
        CoordinatorService {
            replicator,
            detector,
            counters,
            heartbeat_interval: heartbeat_interval(heartbeat_timeout),
            web_address,
            leader_client: Arc::new(Mutex::new(None)),
            stop: None,
            client_tls: None,
        }
    }

    /// Forwards to the leader over TLS (`--grpc.tls-*`); `None` (the default) dials plaintext.
    pub fn with_client_tls(mut self, tls: Option<trawl_proto::tls::ClientTls>) -> Self {
        self.client_tls = tls;
        self
    }

    /// Ends every assignment stream once `stop` turns true.
    pub fn with_shutdown(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> v1::coordinator_server::CoordinatorServer<Self> {
        v1::coordinator_server::CoordinatorServer::new(self)
    }

    fn route<T>(&self, req: &Request<T>) -> Result<Route, Status> {
        let st = self.replicator.status().borrow().clone();
        if st.is_leader() {
            return Ok(Route::Local);
        }
        if req.metadata().get(FORWARDED).is_some() {
            return Err(Status::unavailable("not the leader (forwarded call)"));
        }
        let Some(addr) = st.leader_address() else {
            return Err(Status::unavailable("no leader elected, retry"));
        };
        let mut cached = lock(&self.leader_client);
        if let Some((a, c)) = &*cached
            && a == addr
        {
            return Ok(Route::Forward(c.clone()));
        }
        let ch = trawl_proto::tls::endpoint(addr, self.client_tls.as_ref())
            .map_err(|e| Status::internal(format!("leader {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        let c = CoordinatorClient::new(ch);
        *cached = Some((addr.to_string(), c.clone()));
        Ok(Route::Forward(c))
    }

    fn state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        read_with(&*self.replicator, f)
    }

    async fn propose(&self, op: Op) -> Result<SmResponse, Status> {
        propose(&self.replicator, &self.counters, op)
            .await
            .map_err(replica_status)
    }

    /// Register on the leader.
    async fn register_local(&self, r: v1::RegisterRequest) -> Result<v1::RegisterResponse, Status> {
        require_id(&r.worker_id)?;
        let unchanged = self.state(|s| {
            s.workers.get(&r.worker_id).is_some_and(|w| {
                w.up && w.grpc_address == r.grpc_address
                    && w.web_address == r.web_address
                    && w.zone == r.zone
            })
        });
        let now = now_ms();
        lock(&self.detector).seen(&r.worker_id, now);
        if !unchanged {
            let resp = self
                .propose(Op::RegisterWorker {
                    id: r.worker_id.clone(),
                    grpc_address: r.grpc_address,
                    web_address: r.web_address,
                    zone: r.zone,
                    now_ms: now,
                })
                .await?;
            rejected(resp)?;
            tracing::info!(worker = %r.worker_id, version = %r.version, "worker registered");
        }
        Ok(v1::RegisterResponse {
            epoch: Some(self.state(|s| s.epoch_proto())),
            heartbeat_interval_ms: i64::try_from(self.heartbeat_interval.as_millis())
                .unwrap_or(i64::MAX),
            ..Default::default()
        })
    }

    async fn heartbeat_local(
        &self,
        r: v1::HeartbeatRequest,
    ) -> Result<v1::HeartbeatResponse, Status> {
        require_id(&r.worker_id)?;
        let known = self.state(|s| s.workers.get(&r.worker_id).cloned());
        let Some(w) = known else {
            return Err(Status::not_found(format!(
                "unknown worker {:?}: register first",
                r.worker_id
            )));
        };
        let now = now_ms();
        {
            let mut d = lock(&self.detector);
            d.seen(&r.worker_id, now);
            d.report(
                &r.worker_id,
                r.series_per_target.into_iter().collect::<BTreeMap<_, _>>(),
                WorkerLoad {
                    head_series: r.head_series,
                    samples_per_second: r.samples_per_second,
                },
            );
        }
        if !w.up {
            // A worker marked down that is alive again comes back with what it registered.
            tracing::info!(worker = %w.id, "down worker heartbeats again, marking it up");
            let resp = self
                .propose(Op::RegisterWorker {
                    id: w.id,
                    grpc_address: w.grpc_address,
                    web_address: w.web_address,
                    zone: w.zone,
                    now_ms: now,
                })
                .await?;
            rejected(resp)?;
        }
        let held = r.held_epoch.as_ref().map_or(0, |e| e.epoch);
        if held > self.state(|s| s.epoch) {
            tracing::warn!(
                worker = %r.worker_id,
                held,
                "worker holds a newer epoch than the coordinator, moving past it"
            );
            rejected(self.propose(Op::PassEpoch { held }).await?)?;
        }
        Ok(v1::HeartbeatResponse {
            current_epoch: Some(self.state(|s| s.epoch_proto())),
            ..Default::default()
        })
    }

    async fn report_local(&self, r: v1::ScrapeReport) -> Result<v1::ScrapeReportResponse, Status> {
        require_id(&r.worker_id)?;
        lock(&self.detector).seen(&r.worker_id, now_ms());
        // Only confirmations that change something reach the log: workers re-send while
        // a target stays INCOMING.
        let hashes: Vec<u64> = self.state(|s| {
            r.first_successful_scrapes
                .iter()
                .copied()
                .filter(|h| {
                    s.handoffs.get(h).is_some_and(|ho| {
                        ho.to.contains(&r.worker_id) && !ho.confirmed.contains(&r.worker_id)
                    })
                })
                .collect()
        });
        if !hashes.is_empty() {
            let resp = self
                .propose(Op::ConfirmScrapes {
                    worker: r.worker_id.clone(),
                    hashes,
                })
                .await?;
            rejected(resp)?;
        }
        Ok(v1::ScrapeReportResponse::default())
    }

    /// `GetCluster` from the local state and replica status.
    pub fn cluster(&self) -> v1::ClusterState {
        let st = self.replicator.status().borrow().clone();
        let (mut c, webs) = self.state(|s| (s.cluster(), s.replica_web.clone()));
        c.replicas = st
            .members
            .iter()
            .map(|(id, addr)| v1::ReplicaInfo {
                id: *id,
                address: addr.clone(),
                leader: st.leader == Some(*id),
                term: st.term,
                web_address: if *id == st.id {
                    self.web_address.clone()
                } else {
                    webs.get(id).cloned().unwrap_or_default()
                },
                ..Default::default()
            })
            .collect();
        c
    }
}

/// Deadline of a unary call forwarded to the leader: a leader that stops answering must
/// not hold the worker's call (and this replica's concurrency slot) open indefinitely.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// A unary call forwarded to the leader, marked so the leader never forwards it again.
fn forwarded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(FORWARD_TIMEOUT);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<v1::Assignment, Status>> + Send>>;

#[tonic::async_trait]
impl v1::coordinator_server::Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        match self.route(&request)? {
            Route::Local => Ok(Response::new(
                self.register_local(request.into_inner()).await?,
            )),
            Route::Forward(mut c) => c.register(forwarded(request.into_inner())).await,
        }
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        match self.route(&request)? {
            Route::Local => Ok(Response::new(
                self.heartbeat_local(request.into_inner()).await?,
            )),
            Route::Forward(mut c) => c.heartbeat(forwarded(request.into_inner())).await,
        }
    }

    type WatchAssignmentStream = AssignmentStream;

    async fn watch_assignment(
        &self,
        request: Request<v1::WatchAssignmentRequest>,
    ) -> Result<Response<Self::WatchAssignmentStream>, Status> {
        let r = request.into_inner();
        require_id(&r.worker_id)?;
        let (tx, rx) = mpsc::channel(4);
        let replicator = self.replicator.clone();
        let worker = r.worker_id;
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let mut status = replicator.status();
            let mut sent: Option<u64> = None;
            loop {
                status.borrow_and_update();
                let a = read_with(&*replicator, |s: &ClusterState| {
                    (sent != Some(s.epoch)).then(|| s.assignment_for(&worker))
                });
                if let Some(a) = a {
                    sent = a.epoch.as_ref().map(|e| e.epoch);
                    if tx.send(Ok(a)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    r = status.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                    _ = async {
                        match stop.as_mut() {
                            Some(s) => { let _ = s.wait_for(|v| *v).await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn report_scrapes(
        &self,
        request: Request<v1::ScrapeReport>,
    ) -> Result<Response<v1::ScrapeReportResponse>, Status> {
        match self.route(&request)? {
            Route::Local => Ok(Response::new(
                self.report_local(request.into_inner()).await?,
            )),
            Route::Forward(mut c) => c.report_scrapes(forwarded(request.into_inner())).await,
        }
    }

    async fn get_cluster(
        &self,
        _request: Request<v1::GetClusterRequest>,
    ) -> Result<Response<v1::ClusterState>, Status> {
        Ok(Response::new(self.cluster()))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use futures_util::future::BoxFuture;
    use tonic::Code;
    use trawl_raft::{ReplicaStatus, Replicator};
    use v1::coordinator_server::Coordinator as _;

    use super::*;
    use crate::state::{JobSpec, TargetSpec};

    fn service(r: SharedReplicator<ClusterState>) -> CoordinatorService {
        CoordinatorService::new(
            r,
            Arc::new(Mutex::new(FailureDetector::default())),
            Arc::new(LeaderCounters::default()),
            Duration::from_secs(10),
            "127.0.0.1:9091".into(),
        )
    }

    fn local() -> SharedReplicator<ClusterState> {
        Arc::new(
            trawl_raft::Local::open(None, ClusterState::new(1), "127.0.0.1:9191".into())
                .expect("local"),
        )
    }

    fn register(id: &str) -> Request<v1::RegisterRequest> {
        Request::new(v1::RegisterRequest {
            worker_id: id.into(),
            grpc_address: format!("{id}:1"),
            web_address: format!("{id}:2"),
            ..Default::default()
        })
    }

    /// A follower that knows no leader (an election in progress).
    struct Leaderless(tokio::sync::watch::Sender<ReplicaStatus>, ClusterState);

    impl Replicator<ClusterState> for Leaderless {
        fn propose(
            &self,
            _cmd: crate::state::Command,
        ) -> BoxFuture<'_, Result<SmResponse, ReplicaError>> {
            Box::pin(async {
                Err(ReplicaError::NotLeader {
                    leader: None,
                    address: None,
                })
            })
        }
        fn read(&self, f: &mut dyn FnMut(&ClusterState)) {
            f(&self.1)
        }
        fn status(&self) -> tokio::sync::watch::Receiver<ReplicaStatus> {
            self.0.subscribe()
        }
    }

    #[test]
    fn heartbeat_interval_is_a_quarter_of_the_timeout_at_least_200ms() {
        assert_eq!(
            heartbeat_interval(Duration::from_secs(10)),
            Duration::from_millis(2500)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_millis(400)),
            Duration::from_millis(200)
        );
    }

    #[tokio::test]
    async fn register_validates_and_answers_the_interval() {
        let s = service(local());
        let e = s.register(register("")).await.expect_err("empty id");
        assert_eq!(e.code(), Code::InvalidArgument);
        let r = s
            .register(register("w1"))
            .await
            .expect("register")
            .into_inner();
        assert_eq!(r.heartbeat_interval_ms, 2500);
        assert_eq!(r.epoch.map(|e| e.epoch), Some(0));
        let c = s.cluster();
        assert_eq!(c.workers.len(), 1);
        assert_eq!(c.workers[0].grpc_address, "w1:1");
        assert_eq!(c.workers[0].web_address, "w1:2");
        assert_eq!(c.replicas[0].web_address, "127.0.0.1:9091");
        assert!(c.replicas[0].leader);
    }

    #[tokio::test]
    async fn a_worker_holding_a_newer_epoch_is_passed() {
        let r = local();
        let s = service(r.clone());
        s.register(register("w1")).await.expect("register");
        let resp = s
            .heartbeat(Request::new(v1::HeartbeatRequest {
                worker_id: "w1".into(),
                held_epoch: Some(v1::Epoch {
                    epoch: 57,
                    term: 9,
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .await
            .expect("heartbeat")
            .into_inner();
        assert_eq!(resp.current_epoch.map(|e| e.epoch), Some(58));
        // An older held epoch is just a worker catching up.
        let resp = s
            .heartbeat(Request::new(v1::HeartbeatRequest {
                worker_id: "w1".into(),
                held_epoch: Some(v1::Epoch {
                    epoch: 3,
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .await
            .expect("heartbeat")
            .into_inner();
        assert_eq!(resp.current_epoch.map(|e| e.epoch), Some(58));
    }

    #[tokio::test]
    async fn heartbeat_of_an_unknown_worker_asks_to_register() {
        let s = service(local());
        let e = s
            .heartbeat(Request::new(v1::HeartbeatRequest {
                worker_id: "nobody".into(),
                ..Default::default()
            }))
            .await
            .expect_err("unknown");
        assert_eq!(e.code(), Code::NotFound);
    }

    #[tokio::test]
    async fn a_down_worker_that_heartbeats_comes_back_up() {
        let r = local();
        let s = service(r.clone());
        s.register(register("w1")).await.expect("register");
        propose(
            &r,
            &LeaderCounters::default(),
            Op::SetWorkerDown { id: "w1".into() },
        )
        .await
        .expect("down");
        assert!(!read_with(&*r, |s: &ClusterState| s.workers["w1"].up));
        s.heartbeat(Request::new(v1::HeartbeatRequest {
            worker_id: "w1".into(),
            ..Default::default()
        }))
        .await
        .expect("heartbeat");
        assert!(read_with(&*r, |s: &ClusterState| s.workers["w1"].up));
    }

    #[tokio::test]
    async fn writes_without_a_leader_are_unavailable() {
        let (tx, _) = tokio::sync::watch::channel(ReplicaStatus {
            id: 2,
            term: 3,
            leader: None,
            applied: 0,
            members: vec![(1, "127.0.0.1:1".into()), (2, "127.0.0.1:2".into())],
        });
        let s = service(Arc::new(Leaderless(tx, ClusterState::new(1))));
        let e = s.register(register("w1")).await.expect_err("no leader");
        assert_eq!(e.code(), Code::Unavailable);
        // Reads still work from the local state.
        let c = s
            .get_cluster(Request::new(v1::GetClusterRequest::default()))
            .await
            .expect("cluster")
            .into_inner();
        assert_eq!(c.replicas.len(), 2);
        assert!(c.replicas.iter().all(|r| !r.leader));
    }

    #[tokio::test]
    async fn a_forwarded_call_is_not_forwarded_again() {
        let (tx, _) = tokio::sync::watch::channel(ReplicaStatus {
            id: 2,
            term: 3,
            leader: Some(1),
            applied: 0,
            members: vec![(1, "127.0.0.1:1".into()), (2, "127.0.0.1:2".into())],
        });
        let s = service(Arc::new(Leaderless(tx, ClusterState::new(1))));
        let e = s
            .register(forwarded(register("w1").into_inner()))
            .await
            .expect_err("loop");
        assert_eq!(e.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn watch_sends_the_current_assignment_then_every_new_epoch() {
        let r = local();
        let s = service(r.clone());
        let mut stream = s
            .watch_assignment(Request::new(v1::WatchAssignmentRequest {
                worker_id: "w1".into(),
                ..Default::default()
            }))
            .await
            .expect("watch")
            .into_inner();
        let first = stream.next().await.expect("first").expect("ok");
        assert_eq!(first.epoch.map(|e| e.epoch), Some(0));
        assert!(first.targets.is_empty());

        s.register(register("w1")).await.expect("register");
        let t = TargetSpec::new(
            "node",
            trawl_model::Labels::from_pairs([("__address__", "a:1"), ("job", "node")]),
            trawl_model::Labels::empty(),
        );
        let yaml = "scrape_configs:\n- job_name: node\n".to_string();
        propose(
            &r,
            &LeaderCounters::default(),
            Op::SetTargets {
                jobs: vec![JobSpec {
                    name: "node".into(),
                    config_hash: xxhash_rust::xxh64::xxh64(yaml.as_bytes(), 0),
                    yaml,
                }],
                targets: vec![t.clone()],
            },
        )
        .await
        .expect("targets");
        let next = stream.next().await.expect("second").expect("ok");
        assert_eq!(next.epoch.map(|e| e.epoch), Some(1));
        assert_eq!(next.targets.len(), 1);
        assert_eq!(next.targets[0].target_hash, t.hash);
        assert_eq!(next.jobs.len(), 1);
    }

    #[tokio::test]
    async fn repeated_scrape_reports_do_not_grow_the_log() {
        let r = local();
        let s = service(r.clone());
        s.register(register("w1")).await.expect("register");
        let applied = r.status().borrow().applied;
        for _ in 0..3 {
            s.report_scrapes(Request::new(v1::ScrapeReport {
                worker_id: "w1".into(),
                first_successful_scrapes: vec![1, 2, 3],
                ..Default::default()
            }))
            .await
            .expect("report");
        }
        assert_eq!(r.status().borrow().applied, applied);
    }
}
