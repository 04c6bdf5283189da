//! The worker against an in-test fake Coordinator and a loopback exporter: it scrapes its
//! assignment, reports the INCOMING target, keeps scraping without a coordinator, and a
//! restart resumes the persisted assignment. Plus the Store API over a real socket.

#![allow(clippy::needless_update)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{oneshot, watch};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};
use trawl_model::{Labels, STALE_NAN, STALE_NAN_BITS};
use trawl_proto::v1::assigned_target::Role;
use trawl_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use trawl_proto::v1::store_client::StoreClient;
use trawl_proto::v1::{self, matcher::Type};
use trawl_worker::WorkerArgs;

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns `Some`, failing the test after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Default)]
struct Recorded {
    registers: Vec<v1::RegisterRequest>,
    heartbeats: Vec<v1::HeartbeatRequest>,
    reports: Vec<u64>,
    failed_reports: u32,
}

/// A scripted coordinator: streams whatever `assignment` holds (nothing while `None`).
struct FakeCoordinator {
    assignment: watch::Sender<Option<v1::Assignment>>,
    /// Flipped to end every watch stream, so the server can shut down.
    kill: watch::Receiver<bool>,
    rec: Arc<Mutex<Recorded>>,
    /// Answer every call with UNAVAILABLE, as a replica that is not the leader may.
    refuse: bool,
    /// ReportScrapes calls to fail before accepting one.
    report_failures: Arc<std::sync::atomic::AtomicU32>,
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<v1::Assignment, Status>> + Send>>;

#[tonic::async_trait]
impl Coordinator for FakeCoordinator {
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        self.rec.lock().unwrap().registers.push(req.into_inner());
        if self.refuse {
            return Err(Status::unavailable("not leader"));
        }
        Ok(Response::new(v1::RegisterResponse {
            epoch: self.assignment.borrow().as_ref().and_then(|a| a.epoch),
            heartbeat_interval_ms: 200,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        self.rec.lock().unwrap().heartbeats.push(req.into_inner());
        Ok(Response::new(v1::HeartbeatResponse::default()))
    }

    type WatchAssignmentStream = AssignmentStream;

    async fn watch_assignment(
        &self,
        _req: Request<v1::WatchAssignmentRequest>,
    ) -> Result<Response<AssignmentStream>, Status> {
        let mut rx = self.assignment.subscribe();
        let mut kill = self.kill.clone();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            rx.mark_changed();
            loop {
                tokio::select! {
                    _ = async { let _ = kill.wait_for(|k| *k).await; } => return,
                    r = rx.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let a = rx.borrow_and_update().clone();
                        if let Some(a) = a
                            && tx.send(Ok(a)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn report_scrapes(
        &self,
        req: Request<v1::ScrapeReport>,
    ) -> Result<Response<v1::ScrapeReportResponse>, Status> {
        use std::sync::atomic::Ordering;
        if self
            .report_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.rec.lock().unwrap().failed_reports += 1;
            return Err(Status::unavailable("leader changing"));
        }
        self.rec
            .lock()
            .unwrap()
            .reports
            .extend(req.into_inner().first_successful_scrapes);
        Ok(Response::new(v1::ScrapeReportResponse {}))
    }

    async fn get_cluster(
        &self,
        _req: Request<v1::GetClusterRequest>,
    ) -> Result<Response<v1::ClusterState>, Status> {
        Ok(Response::new(v1::ClusterState::default()))
    }
}

struct RunningCoordinator {
    addr: SocketAddr,
    assignment: watch::Sender<Option<v1::Assignment>>,
    rec: Arc<Mutex<Recorded>>,
    kill: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_coordinator(first: Option<v1::Assignment>) -> RunningCoordinator {
    start_coordinator_with(first, false).await
}

async fn start_coordinator_with(first: Option<v1::Assignment>, refuse: bool) -> RunningCoordinator {
    start_coordinator_full(first, refuse, 0).await
}

async fn start_coordinator_full(
    first: Option<v1::Assignment>,
    refuse: bool,
    report_failures: u32,
) -> RunningCoordinator {
    let report_failures = Arc::new(std::sync::atomic::AtomicU32::new(report_failures));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (assignment, _) = watch::channel(first);
    let (kill, kill_rx) = watch::channel(false);
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let svc = FakeCoordinator {
        assignment: assignment.clone(),
        kill: kill_rx.clone(),
        rec: rec.clone(),
        refuse,
        report_failures: report_failures.clone(),
    };
    let mut stop = kill_rx;
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(CoordinatorServer::new(svc))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = stop.wait_for(|k| *k).await;
                },
            )
            .await
            .unwrap();
    });
    RunningCoordinator {
        addr,
        assignment,
        rec,
        kill,
        task,
    }
}

impl RunningCoordinator {
    async fn stop(self) {
        let _ = self.kill.send(true);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("coordinator stops")
            .expect("coordinator task");
    }
}

async fn start_exporter() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { "# TYPE test_metric gauge\ntest_metric 42\n" }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

fn assignment(epoch: u64, exporter: SocketAddr, role: Role) -> (v1::Assignment, u64) {
    let instance = exporter.to_string();
    let (a, hashes) = assignment_of(epoch, exporter, &[(instance.as_str(), role)]);
    (a, hashes[0])
}

/// An assignment of targets on `exporter`, told apart by their `instance` label.
fn assignment_of(
    epoch: u64,
    exporter: SocketAddr,
    targets: &[(&str, Role)],
) -> (v1::Assignment, Vec<u64>) {
    let yaml = "scrape_configs:\n  - job_name: exp\n    scrape_interval: 250ms\n    scrape_timeout: 200ms\n";
    let addr = exporter.to_string();
    let mut hashes = Vec::new();
    let targets = targets
        .iter()
        .map(|(instance, role)| {
            let labels = Labels::from_pairs([
                ("__address__", addr.as_str()),
                ("__metrics_path__", "/metrics"),
                ("__scheme__", "http"),
                ("instance", instance),
                ("job", "exp"),
            ]);
            hashes.push(labels.stable_hash());
            v1::AssignedTarget {
                target_hash: labels.stable_hash(),
                labels: trawl_proto::labels_to_proto(&labels),
                discovered_labels: trawl_proto::labels_to_proto(&Labels::from_pairs([(
                    "__address__",
                    addr.as_str(),
                )])),
                job_name: "exp".into(),
                role: *role as i32,
                ..Default::default()
            }
        })
        .collect();
    let a = v1::Assignment {
        epoch: Some(v1::Epoch {
            epoch,
            term: 1,
            ..Default::default()
        }),
        jobs: vec![v1::ScrapeJob {
            job_name: "exp".into(),
            config_hash: 1,
            scrape_config_yaml: yaml.into(),
            ..Default::default()
        }],
        targets,
        ..Default::default()
    };
    (a, hashes)
}

fn args(coordinator: &str, dir: &std::path::Path) -> WorkerArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        w: WorkerArgs,
    }
    Cli::parse_from([
        "trawl-worker",
        "--coordinator.address",
        coordinator,
        "--grpc.listen-address=127.0.0.1:0",
        "--web.listen-address=127.0.0.1:0",
        "--storage.tsdb.path",
        dir.to_str().unwrap(),
    ])
    .w
}

struct RunningWorker {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), trawl_worker::WorkerError>>,
}

fn start_worker(a: WorkerArgs) -> RunningWorker {
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(a.serve(async move {
        let _ = rx.await;
    }));
    RunningWorker { stop, task }
}

impl RunningWorker {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("worker stops")
            .expect("worker task")
            .expect("worker ends cleanly");
    }
}

/// Timestamps of `test_metric` samples in the worker's shard, via Store.Select.
async fn scraped_times(grpc: &str) -> Vec<i64> {
    let Ok(mut c) = StoreClient::connect(format!("http://{grpc}")).await else {
        return Vec::new();
    };
    let req = v1::SelectRequest {
        matchers: vec![v1::Matcher {
            r#type: Type::Eq as i32,
            name: "__name__".into(),
            value: "test_metric".into(),
        }],
        min_time_ms: 0,
        max_time_ms: i64::MAX,
        ..Default::default()
    };
    let Ok(resp) = c.select(req).await else {
        return Vec::new();
    };
    let mut stream = resp.into_inner();
    let mut out = Vec::new();
    while let Some(Ok(b)) = stream.next().await {
        for s in b.series {
            let l = trawl_proto::labels_from_proto(s.labels);
            assert_eq!(l.get("job"), Some("exp"));
            for c in s.chunks {
                let c = trawl_proto::chunk_from_proto(c).unwrap();
                for smp in c.samples().unwrap() {
                    let smp = smp.unwrap();
                    if smp.v == 42.0 {
                        out.push(smp.t);
                    }
                }
            }
        }
    }
    out
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    Some(buf)
}

fn registered(c: &RunningCoordinator) -> Option<v1::RegisterRequest> {
    c.rec.lock().unwrap().registers.last().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_follows_reports_survives_coordinator_loss_and_resumes_after_restart() {
    let exporter = start_exporter().await;
    let (a1, hash) = assignment(1, exporter, Role::Incoming);
    let coord = start_coordinator(Some(a1)).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = start_worker(args(&coord.addr.to_string(), dir.path()));

    let c = &coord;
    let reg = eventually("register", move || async move { registered(c) }).await;
    assert!(reg.worker_id.starts_with("w-"), "{}", reg.worker_id);
    assert!(reg.grpc_address.starts_with("127.0.0.1:"));
    assert!(reg.web_address.starts_with("127.0.0.1:"));
    assert_eq!(reg.version, env!("CARGO_PKG_VERSION"));
    let grpc = reg.grpc_address.as_str();
    let web = reg.web_address.as_str();

    // The INCOMING target is scraped and reported.
    eventually("report of the incoming target", move || async move {
        c.rec.lock().unwrap().reports.contains(&hash).then_some(())
    })
    .await;
    eventually("scraped samples", move || async move {
        (!scraped_times(grpc).await.is_empty()).then_some(())
    })
    .await;
    let hb = eventually("heartbeat with the held epoch", move || async move {
        c.rec
            .lock()
            .unwrap()
            .heartbeats
            .iter()
            .rev()
            .find(|h| h.active_targets == 1 && h.series_per_target.contains_key(&hash))
            .cloned()
    })
    .await;
    assert_eq!(hb.worker_id, reg.worker_id);
    assert_eq!(hb.held_epoch.map(|e| e.epoch), Some(1));
    assert!(hb.head_series > 0);

    // The web side shows the target and the worker's own metrics.
    let targets = http_get(web, "/api/v1/targets").await.unwrap();
    assert!(targets.contains("\"scrapePool\":\"exp\""), "{targets}");
    assert!(targets.contains(&exporter.to_string()));
    let m = http_get(web, "/metrics").await.unwrap();
    assert!(m.contains("trawl_worker_assignment_epoch 1"), "{m}");
    assert!(
        m.contains("trawl_worker_targets{role=\"incoming\"} 1"),
        "{m}"
    );
    assert!(m.contains("trawl_worker_coordinator_connected 1"), "{m}");
    let ready = http_get(web, "/-/ready").await.unwrap();
    assert!(
        ready.lines().next().unwrap_or("").contains(" 200 "),
        "{ready}"
    );
    let build = http_get(web, "/api/v1/status/buildinfo").await.unwrap();
    assert!(build.contains(env!("CARGO_PKG_VERSION")), "{build}");

    // An assignment with the held epoch is ignored (fencing); a newer one is applied.
    let (same_epoch, _) = assignment(1, exporter, Role::Owner);
    coord.assignment.send_replace(Some(same_epoch));
    eventually("equal epoch ignored", move || async move {
        let m = http_get(web, "/metrics").await?;
        m.contains("trawl_worker_assignments_ignored_total 1")
            .then_some(())
    })
    .await;
    let m = http_get(web, "/metrics").await.unwrap();
    assert!(
        m.contains("trawl_worker_targets{role=\"incoming\"} 1"),
        "{m}"
    );
    let (a2, _) = assignment(2, exporter, Role::Owner);
    coord.assignment.send_replace(Some(a2));
    eventually("epoch 2 applied", move || async move {
        let m = http_get(web, "/metrics").await?;
        (m.contains("trawl_worker_assignment_epoch 2")
            && m.contains("trawl_worker_targets{role=\"owner\"} 1"))
        .then_some(())
    })
    .await;

    // Without any coordinator the worker keeps scraping its assignment.
    coord.stop().await;
    eventually("disconnected", move || async move {
        let m = http_get(web, "/metrics").await?;
        m.contains("trawl_worker_coordinator_connected 0")
            .then_some(())
    })
    .await;
    let before = scraped_times(grpc).await.into_iter().max().unwrap();
    eventually("scrapes continue without a coordinator", move || async move {
        (scraped_times(grpc).await.into_iter().max()? > before).then_some(())
    })
    .await;
    worker.stop().await;
    // Scrapes are stamped with their start time, so none is newer than this.
    let last = trawl_storage::Clock::system().now_ms();
    let id_file = std::fs::read_to_string(dir.path().join("worker-id")).unwrap();
    assert_eq!(id_file.trim(), reg.worker_id);
    assert!(dir.path().join("assignment.pb").exists());

    // A restart resumes the persisted assignment although the (new) coordinator never sends
    // one, and registers under the same id.
    let silent = start_coordinator(None).await;
    let worker = start_worker(args(&silent.addr.to_string(), dir.path()));
    let s = &silent;
    let reg2 = eventually("re-register", move || async move { registered(s) }).await;
    assert_eq!(reg2.worker_id, reg.worker_id);
    let grpc2 = reg2.grpc_address.as_str();
    eventually("scrapes resume after restart", move || async move {
        (scraped_times(grpc2).await.into_iter().max()? > last).then_some(())
    })
    .await;
    let m = http_get(&reg2.web_address, "/metrics").await.unwrap();
    assert!(m.contains("trawl_worker_assignment_epoch 2"), "{m}");
    worker.stop().await;
    silent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_api_over_loopback_round_trips_written_samples() {
    let storage: Arc<dyn trawl_storage::Storage> =
        Arc::new(trawl_storage::mem::MemStorage::new(Default::default()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(trawl_worker::store_server(storage))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(l),
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
            ),
    );
    let mut c = StoreClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let t0 = trawl_storage::Clock::system().now_ms() - 10_000;
    let vals = [1.5, f64::INFINITY, -0.0, STALE_NAN];
    let labels = Labels::from_pairs([("__name__", "m"), ("job", "j")]);
    let w = c
        .write(v1::WriteRequest {
            series: vec![v1::TimeSeries {
                labels: trawl_proto::labels_to_proto(&labels),
                samples: vals
                    .iter()
                    .enumerate()
                    .map(|(i, v)| trawl_model::Sample::new(t0 + i as i64 * 1000, *v).into())
                    .chain([trawl_model::Sample::new(t0 - 1, 9.0).into()])
                    .collect(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.samples_written, 4);
    assert_eq!(w.samples_rejected.get("out_of_order"), Some(&1));
    let mut stream = c
        .select(v1::SelectRequest {
            matchers: vec![v1::Matcher {
                r#type: Type::Re as i32,
                name: "job".into(),
                value: "j|k".into(),
            }],
            min_time_ms: t0,
            max_time_ms: t0 + 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(b) = stream.next().await {
        for s in b.unwrap().series {
            assert_eq!(trawl_proto::labels_from_proto(s.labels), labels);
            for ch in s.chunks {
                let ch = trawl_proto::chunk_from_proto(ch).unwrap();
                got.extend(ch.samples().unwrap().map(|r| {
                    let s = r.unwrap();
                    (s.t, s.v.to_bits())
                }));
            }
        }
    }
    let want: Vec<(i64, u64)> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| (t0 + i as i64 * 1000, v.to_bits()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[3].1, STALE_NAN_BITS);
    drop(c);
    let _ = stop.send(true);
    server.await.unwrap().unwrap();
}

/// Bits of the newest sample of `up{instance=...}` in `storage`.
fn last_up_bits(storage: &dyn trawl_storage::Storage, instance: &str) -> Option<u64> {
    use trawl_model::{MatchOp, Matcher};
    let q = storage.querier().unwrap();
    let ms = [
        Matcher::new(MatchOp::Equal, "__name__", "up").unwrap(),
        Matcher::new(MatchOp::Equal, "instance", instance).unwrap(),
    ];
    let set = q.select(&ms, 0, i64::MAX, &Default::default()).unwrap();
    let mut last = None;
    for s in set {
        for smp in s.unwrap().samples() {
            last = Some(smp.unwrap().v.to_bits());
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_targets_get_staleness_markers_unless_they_were_outgoing() {
    let exporter = start_exporter().await;
    let storage: Arc<dyn trawl_storage::Storage> =
        Arc::new(trawl_storage::mem::MemStorage::new(Default::default()));
    let scrape = trawl_scrape::ScrapeManager::new(storage.clone(), Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = trawl_worker::Follower::new(
        trawl_worker::FollowOptions::new(
            Vec::new(),
            v1::RegisterRequest::default(),
            dir.path().to_path_buf(),
        ),
        storage.clone(),
        scrape,
    );
    let (a1, _) = assignment_of(
        1,
        exporter,
        &[
            ("owned", Role::Owner),
            ("leaving", Role::Outgoing),
            ("staying", Role::Owner),
        ],
    );
    assert!(f.apply(a1).await);
    let fr = &f;
    eventually("all three targets up", move || async move {
        let ts = fr.targets();
        (ts.len() == 3
            && ts
                .iter()
                .all(|t| t.state.health == trawl_scrape::Health::Up))
        .then_some(())
    })
    .await;
    let (a2, _) = assignment_of(2, exporter, &[("staying", Role::Owner)]);
    assert!(f.apply(a2).await);
    // `apply` returns after the dropped loops finished, so their last writes are visible.
    assert_eq!(
        last_up_bits(storage.as_ref(), "owned"),
        Some(STALE_NAN_BITS)
    );
    assert_eq!(
        last_up_bits(storage.as_ref(), "leaving"),
        Some(1.0f64.to_bits()),
        "a target that moved away gets no staleness marker"
    );
    assert_eq!(f.targets().len(), 1);
    // The persisted assignment is the applied one.
    let saved = std::fs::read(dir.path().join("assignment.pb")).unwrap();
    let saved = <v1::Assignment as prost::Message>::decode(saved.as_slice()).unwrap();
    assert_eq!(saved.epoch.map(|e| e.epoch), Some(2));
    f.stop_scraping().await;
    assert_ne!(
        last_up_bits(storage.as_ref(), "staying"),
        Some(STALE_NAN_BITS),
        "shutdown stops without staleness markers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_moves_past_dead_and_refusing_coordinators() {
    let exporter = start_exporter().await;
    let (a1, hash) = assignment(1, exporter, Role::Owner);
    let refusing = start_coordinator_with(Some(a1.clone()), true).await;
    let live = start_coordinator(Some(a1)).await;
    // A port nothing listens on: bind, read the port, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let list = format!("{dead}, {},{}", refusing.addr, live.addr);
    let worker = start_worker(args(&list, dir.path()));
    let l = &live;
    let reg = eventually("register with the live coordinator", move || async move {
        registered(l)
    })
    .await;
    assert!(!refusing.rec.lock().unwrap().registers.is_empty());
    assert_eq!(
        refusing.rec.lock().unwrap().registers[0].worker_id,
        reg.worker_id
    );
    eventually(
        "heartbeats reach the live coordinator",
        move || async move {
            l.rec
                .lock()
                .unwrap()
                .heartbeats
                .iter()
                .any(|h| h.series_per_target.contains_key(&hash))
                .then_some(())
        },
    )
    .await;
    worker.stop().await;
    live.stop().await;
    refusing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reports_are_retried_and_re_sent_while_still_incoming() {
    let exporter = start_exporter().await;
    let (a1, hash) = assignment(1, exporter, Role::Incoming);
    let coord = start_coordinator_full(Some(a1), false, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = start_worker(args(&coord.addr.to_string(), dir.path()));
    let c = &coord;
    eventually("report accepted after two failures", move || async move {
        let r = c.rec.lock().unwrap();
        (r.failed_reports == 2 && r.reports.contains(&hash)).then_some(())
    })
    .await;
    // A later epoch that still holds the target INCOMING gets it reported again.
    let (a2, _) = assignment(2, exporter, Role::Incoming);
    coord.assignment.send_replace(Some(a2));
    eventually("report re-sent in epoch 2", move || async move {
        let r = c.rec.lock().unwrap();
        (r.reports.iter().filter(|h| **h == hash).count() >= 2).then_some(())
    })
    .await;
    worker.stop().await;
    coord.stop().await;
}
