//! The querier against in-test Store servers (over `trawl_storage::mem` reference stores) and
//! a fake coordinator, all on loopback: PromQL over the querier's HTTP API must equal the
//! same query over one store holding all the data, and missing shards must give the
//! partial-response warning, no warning when replicated, or an error when disabled.

// Proto literals always end with `..Default::default()` (project rule: fields added
// later must not break them), even where every field is given today.
#![allow(clippy::needless_update)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Response, Status};
use tower::ServiceExt;
use trawl_model::{Labels, Matcher, STALE_NAN};
use trawl_proto::v1;
use trawl_querier::{FanOut, FanOutOptions, Membership, Metrics};
use trawl_storage::mem::MemStorage;
use trawl_storage::{SelectHints, Storage, StorageOptions};

const T0: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;
const POINTS: i64 = 240;

fn opts() -> StorageOptions {
    StorageOptions {
        too_old_window_ms: i64::MAX / 4,
        max_future_ms: i64::MAX / 4,
        retention_ms: i64::MAX / 4,
        ..Default::default()
    }
}

fn store() -> Arc<MemStorage> {
    Arc::new(MemStorage::new(opts()))
}

fn append(s: &MemStorage, l: &Labels, samples: &[(i64, f64)]) {
    let mut a = s.appender();
    let r = a.series_ref(l).expect("ref");
    for (t, v) in samples {
        a.append(r, *t, *v).expect("append");
    }
    a.commit().expect("commit");
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn matchers(ms: Vec<v1::Matcher>) -> Result<Vec<Matcher>, Status> {
    ms.into_iter()
        .map(|m| Matcher::try_from(m).map_err(|e| Status::invalid_argument(e.to_string())))
        .collect()
}

/// A worker's Store service over a reference store.
#[derive(Clone)]
struct FakeStore(Arc<MemStorage>);

type SelectStream = Pin<Box<dyn Stream<Item = Result<v1::SelectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl v1::store_server::Store for FakeStore {
    type SelectStream = SelectStream;

    async fn select(
        &self,
        req: tonic::Request<v1::SelectRequest>,
    ) -> Result<Response<SelectStream>, Status> {
        let r = req.into_inner();
        let ms = matchers(r.matchers)?;
        let q = self.0.querier().map_err(internal)?;
        let set = q
            .select(&ms, r.min_time_ms, r.max_time_ms, &SelectHints::default())
            .map_err(internal)?;
        let mut msgs = Vec::new();
        // Two series per message: the querier must read the whole stream.
        let mut batch = Vec::new();
        for s in set {
            let s = s.map_err(internal)?;
            batch.push(v1::ChunkedSeries {
                labels: trawl_proto::labels_to_proto(&s.labels),
                chunks: if r.skip_chunks {
                    Vec::new()
                } else {
                    s.chunks().iter().map(trawl_proto::chunk_to_proto).collect()
                },
                ..Default::default()
            });
            if batch.len() == 2 {
                msgs.push(Ok(v1::SelectResponse {
                    series: std::mem::take(&mut batch),
                    ..Default::default()
                }));
            }
        }
        msgs.push(Ok(v1::SelectResponse {
            series: batch,
            ..Default::default()
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }

    async fn label_names(
        &self,
        req: tonic::Request<v1::LabelNamesRequest>,
    ) -> Result<Response<v1::LabelNamesResponse>, Status> {
        let r = req.into_inner();
        let ms = matchers(r.matchers)?;
        let q = self.0.querier().map_err(internal)?;
        let names = q
            .label_names(&ms, r.min_time_ms, r.max_time_ms)
            .map_err(internal)?;
        Ok(Response::new(v1::LabelNamesResponse {
            names,
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        req: tonic::Request<v1::LabelValuesRequest>,
    ) -> Result<Response<v1::LabelValuesResponse>, Status> {
        let r = req.into_inner();
        let ms = matchers(r.matchers)?;
        let q = self.0.querier().map_err(internal)?;
        let values = q
            .label_values(&r.name, &ms, r.min_time_ms, r.max_time_ms)
            .map_err(internal)?;
        Ok(Response::new(v1::LabelValuesResponse {
            values,
            ..Default::default()
        }))
    }

    async fn write(
        &self,
        req: tonic::Request<v1::WriteRequest>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        let r = req.into_inner();
        let mut a = self.0.appender();
        let mut n = 0;
        for ts in r.series {
            let l = trawl_proto::labels_from_proto(ts.labels);
            let sref = a.series_ref(&l).map_err(internal)?;
            for s in ts.samples {
                a.append(sref, s.timestamp_ms, s.value.unwrap_or(0.0))
                    .map_err(internal)?;
                n += 1;
            }
        }
        let rep = a.commit().map_err(internal)?;
        let mut resp = v1::WriteResponse {
            samples_written: n - rep.rejected_total(),
            ..Default::default()
        };
        if rep.rejected_total() > 0 {
            resp.samples_rejected
                .insert("out_of_order".into(), rep.rejected_total());
        }
        Ok(Response::new(resp))
    }
}

/// A coordinator answering `GetCluster` with whatever the test sets.
#[derive(Clone, Default)]
struct FakeCoordinator(Arc<Mutex<v1::ClusterState>>);

type AssignStream = Pin<Box<dyn Stream<Item = Result<v1::Assignment, Status>> + Send>>;

#[tonic::async_trait]
impl v1::coordinator_server::Coordinator for FakeCoordinator {
    type WatchAssignmentStream = AssignStream;

    async fn register(
        &self,
        _: tonic::Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn heartbeat(
        &self,
        _: tonic::Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn watch_assignment(
        &self,
        _: tonic::Request<v1::WatchAssignmentRequest>,
    ) -> Result<Response<AssignStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn report_scrapes(
        &self,
        _: tonic::Request<v1::ScrapeReport>,
    ) -> Result<Response<v1::ScrapeReportResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_cluster(
        &self,
        _: tonic::Request<v1::GetClusterRequest>,
    ) -> Result<Response<v1::ClusterState>, Status> {
        let s = self.0.lock().map_err(internal)?.clone();
        Ok(Response::new(s))
    }
}

async fn serve_store(s: Arc<MemStorage>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::store_server::StoreServer::new(FakeStore(s)))
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    addr
}

async fn serve_coordinator(c: FakeCoordinator) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::coordinator_server::CoordinatorServer::new(c))
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    addr
}

/// An address nothing listens on.
fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn worker(id: &str, addr: &str, up: bool) -> v1::WorkerInfo {
    v1::WorkerInfo {
        id: id.into(),
        grpc_address: addr.into(),
        state: if up {
            v1::worker_info::State::Up
        } else {
            v1::worker_info::State::Down
        } as i32,
        ..Default::default()
    }
}

fn labels(job: &str, instance: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "http_requests_total".to_string()),
        ("job", job.to_string()),
        ("instance", format!("10.0.0.{instance}:9100")),
    ])
}

/// A counter per series, resetting once, ending with a staleness marker for one series.
fn samples(seed: usize) -> Vec<(i64, f64)> {
    let mut v = 0.0;
    (0..POINTS)
        .map(|k| {
            v += (seed % 7) as f64 + (k % 5) as f64 * 0.5;
            if k == 100 + seed as i64 {
                v = 1.0;
            }
            (T0 + k * STEP, v)
        })
        .collect()
}

struct Cluster {
    reference: Arc<MemStorage>,
    shards: Vec<Arc<MemStorage>>,
    coordinator: FakeCoordinator,
    coordinator_addr: String,
}

/// `n` shards; each series on `r` consecutive shards (exact copies), and one series whose
/// target moved from shard 0 to shard 1 half way (both halves overlap by one scrape).
async fn cluster(n: usize, r: usize) -> Cluster {
    let reference = store();
    let shards: Vec<Arc<MemStorage>> = (0..n).map(|_| store()).collect();
    let mut idx = 0;
    for job in ["api", "db", "web"] {
        for inst in 0..3 {
            let l = labels(job, inst);
            let mut s = samples(idx);
            if idx == 4 {
                s.push((T0 + POINTS * STEP, STALE_NAN));
            }
            append(&reference, &l, &s);
            for k in 0..r {
                append(&shards[(idx + k) % n], &l, &s);
            }
            idx += 1;
        }
    }
    let moved = labels("moved", 9);
    let s = samples(3);
    append(&reference, &moved, &s);
    let half = s.len() / 2;
    append(&shards[0], &moved, &s[..=half]);
    append(&shards[1 % n], &moved, &s[half..]);
    let coordinator = FakeCoordinator::default();
    let coordinator_addr = serve_coordinator(coordinator.clone()).await;
    Cluster {
        reference,
        shards,
        coordinator,
        coordinator_addr,
    }
}

impl Cluster {
    /// Publishes the shards (those in `down` with an address nobody listens on).
    async fn publish(&self, r: u32, down: &[usize]) {
        let mut workers = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            let addr = if down.contains(&i) {
                dead_address()
            } else {
                serve_store(s.clone()).await
            };
            workers.push(worker(&format!("w{}", i + 1), &addr, !down.contains(&i)));
        }
        *self.coordinator.0.lock().expect("lock") = v1::ClusterState {
            workers,
            replication_factor: r,
            ..Default::default()
        };
    }

    async fn querier(&self, partial: bool) -> (axum::Router, Arc<FanOut>) {
        let membership = Arc::new(Membership::new(Duration::from_secs(2)));
        let ch =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.coordinator_addr))
                .expect("endpoint")
                .connect_lazy();
        membership
            .poll_once(
                &[ch],
                std::slice::from_ref(&self.coordinator_addr),
                Duration::from_secs(5),
            )
            .await
            .expect("cluster state");
        let fanout = Arc::new(FanOut::new(
            membership,
            tokio::runtime::Handle::current(),
            FanOutOptions {
                shard_timeout: Duration::from_secs(5),
                partial_response: partial,
            },
            Arc::new(Metrics::default()),
        ));
        let router = trawl_querier::router(
            fanout.clone(),
            Default::default(),
            Arc::new(Default::default()),
            4,
        );
        (router, fanout)
    }

    fn reference_router(&self) -> axum::Router {
        trawl_web::router(trawl_web::ApiState::for_storage(self.reference.clone()))
    }
}

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, v)
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn queries() -> Vec<String> {
    let start = (T0 + 10 * STEP) as f64 / 1000.0;
    let end = (T0 + (POINTS + 30) * STEP) as f64 / 1000.0;
    let at = (T0 + 150 * STEP) as f64 / 1000.0;
    let mut v = Vec::new();
    for q in [
        "http_requests_total",
        "sum by (job) (rate(http_requests_total[2m]))",
        "count(http_requests_total)",
        "max_over_time(http_requests_total{job=~\"moved|api\"}[10m])",
        "resets(http_requests_total[1h])",
    ] {
        v.push(format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=60",
            enc(q)
        ));
        v.push(format!("/api/v1/query?query={}&time={at}", enc(q)));
    }
    let s = T0 / 1000;
    let e = (T0 + POINTS * STEP) / 1000;
    v.push(format!("/api/v1/labels?start={s}&end={e}"));
    v.push(format!("/api/v1/label/job/values?start={s}&end={e}"));
    v.push(format!(
        "/api/v1/series?match[]={}&start={s}&end={e}",
        enc("{job=~\"moved|db\"}")
    ));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_equal_one_store_holding_everything() {
    for (n, r) in [(3, 1), (3, 2), (2, 2)] {
        let c = cluster(n, r).await;
        c.publish(r as u32, &[]).await;
        let (q, fanout) = c.querier(true).await;
        let reference = c.reference_router();
        for uri in queries() {
            let (qs, qv) = get(&q, &uri).await;
            let (rs, rv) = get(&reference, &uri).await;
            assert_eq!(qs, StatusCode::OK, "{uri}: {qv}");
            assert_eq!(qs, rs, "{uri}");
            assert_eq!(qv, rv, "n={n} r={r} {uri}");
            assert!(qv.get("warnings").is_none(), "{uri}: {qv}");
            // Equal and not trivially so.
            let data = &qv["data"];
            let n = data["result"]
                .as_array()
                .or_else(|| data.as_array())
                .map_or(0, Vec::len);
            assert!(n > 0, "{uri}: empty answer {qv}");
        }
        let m = fanout.metrics();
        assert!(m.shard_requests.get() >= queries().len() as u64 * n as u64);
        assert_eq!(m.shard_failures.get(), 0);
        // The moved series is held by two shards; with R=2 every series is.
        assert!(m.dedup_series.get() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_shard_is_a_partial_response_with_r1() {
    let c = cluster(3, 1).await;
    c.publish(1, &[2]).await;
    let (q, fanout) = c.querier(true).await;
    let uri = format!(
        "/api/v1/query?query={}&time={}",
        enc("count(http_requests_total)"),
        (T0 + 150 * STEP) / 1000
    );
    let (status, v) = get(&q, &uri).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let warnings = v["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{v}");
    let w = warnings[0].as_str().expect("string");
    assert!(
        w.starts_with("partial response: shard w3 (127.0.0.1:") && w.contains(") unavailable: "),
        "{w}"
    );
    // The answer is built from the two shards that answered: 10 series minus shard 3's 3.
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");
    assert_eq!(fanout.metrics().partial_responses.get(), 1);
    assert_eq!(fanout.metrics().shard_failures.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_shard_is_covered_with_r2() {
    let c = cluster(3, 2).await;
    c.publish(2, &[0]).await;
    let (q, fanout) = c.querier(false).await;
    let reference = c.reference_router();
    let uri = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        enc("sum by (job) (http_requests_total{job!=\"moved\"})"),
        T0 / 1000,
        (T0 + POINTS * STEP) / 1000
    );
    let (status, v) = get(&q, &uri).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    assert_eq!(v, get(&reference, &uri).await.1);
    assert_eq!(fanout.metrics().partial_responses.get(), 0);
    assert_eq!(fanout.metrics().shard_failures.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_response_disabled_fails_the_query() {
    let c = cluster(3, 1).await;
    c.publish(1, &[1]).await;
    let (q, _) = c.querier(false).await;
    let uri = format!(
        "/api/v1/query?query={}&time={}",
        enc("http_requests_total"),
        (T0 + 150 * STEP) / 1000
    );
    let (status, v) = get(&q, &uri).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "internal");
    let e = v["error"].as_str().expect("error");
    assert!(e.contains("partial response: shard w2 (127.0.0.1:"), "{e}");
    // Metadata fails the same way.
    let (status, v) = get(&q, "/api/v1/labels").await;
    assert_ne!(status, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_lands_on_r_workers() {
    let c = cluster(3, 1).await;
    c.publish(2, &[]).await;
    let (q, _) = c.querier(true).await;
    let series: Vec<trawl_remote::proto::TimeSeries> = (0..20)
        .map(|i| trawl_remote::proto::TimeSeries {
            labels: vec![
                trawl_remote::proto::Label {
                    name: "__name__".into(),
                    value: "pushed".into(),
                },
                trawl_remote::proto::Label {
                    name: "i".into(),
                    value: i.to_string(),
                },
            ],
            samples: vec![trawl_remote::proto::Sample {
                value: i as f64,
                timestamp: T0,
            }],
            exemplars: vec![],
        })
        .collect();
    let body = trawl_remote::write::encode_write_request(&trawl_remote::proto::WriteRequest {
        timeseries: series,
        metadata: vec![],
    });
    let resp = q
        .clone()
        .oneshot(
            Request::post("/api/v1/write")
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // Every series is on exactly two of the three shards.
    let m = [Matcher::equal("__name__", "pushed")];
    let mut copies = std::collections::BTreeMap::new();
    for s in &c.shards {
        for l in trawl_web::LabelSource::series(s.as_ref(), &m, T0 - 1, T0 + 1).expect("series") {
            *copies.entry(l).or_insert(0) += 1;
        }
    }
    assert_eq!(copies.len(), 20);
    assert!(copies.values().all(|n| *n == 2), "{copies:?}");
    // Readable through the querier, deduplicated.
    let (status, v) = get(
        &q,
        &format!("/api/v1/query?query=count(pushed)&time={}", T0 / 1000),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["data"]["result"][0]["value"][1], "20", "{v}");
    // Garbage is a client error, not a retriable one.
    let resp = q
        .clone()
        .oneshot(
            Request::post("/api/v1/write")
                .body(Body::from("not snappy"))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_cluster_state() {
    let membership = Arc::new(Membership::default());
    let fanout = Arc::new(FanOut::new(
        membership.clone(),
        tokio::runtime::Handle::current(),
        FanOutOptions::default(),
        Arc::new(Metrics::default()),
    ));
    let router = trawl_querier::router(fanout, Default::default(), Arc::new(Default::default()), 4);
    let resp = router
        .clone()
        .oneshot(Request::get("/-/ready").body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let c = cluster(2, 1).await;
    c.publish(1, &[]).await;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", c.coordinator_addr))
        .expect("endpoint")
        .connect_lazy();
    let deadline = Instant::now() + Duration::from_secs(10);
    while membership
        .poll_once(
            std::slice::from_ref(&ch),
            std::slice::from_ref(&c.coordinator_addr),
            Duration::from_secs(2),
        )
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "coordinator never answered");
    }
    let resp = router
        .oneshot(Request::get("/-/ready").body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_proxied_to_a_coordinator_replica() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let web = axum::Router::new().route(
        "/api/v1/targets",
        axum::routing::get(|uri: axum::http::Uri| async move {
            (
                [("content-type", "application/json")],
                format!(
                    "{{\"status\":\"success\",\"data\":{{\"query\":\"{}\"}}}}",
                    uri.query().unwrap_or("")
                ),
            )
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let web_addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(l, web).await });
    let c = cluster(2, 1).await;
    c.publish(1, &[]).await;
    c.coordinator.0.lock().expect("lock").replicas = vec![
        v1::ReplicaInfo {
            id: 1,
            leader: false,
            web_address: dead_address(),
            ..Default::default()
        },
        v1::ReplicaInfo {
            id: 2,
            leader: true,
            web_address: web_addr,
            ..Default::default()
        },
    ];
    let (q, _) = c.querier(true).await;
    let (status, v) = get(&q, "/api/v1/targets?state=active").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["query"], "state=active");
    // The first-listed replica is down but the leader is tried first; with only the dead
    // one the answer is Prometheus's unavailable error.
    c.coordinator.0.lock().expect("lock").replicas.truncate(1);
    let (q, _) = c.querier(true).await;
    let (status, v) = get(&q, "/api/v1/targets").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["errorType"], "unavailable");
}

/// A Store that accepts the call and never answers.
#[derive(Clone)]
struct HangingStore;

#[tonic::async_trait]
impl v1::store_server::Store for HangingStore {
    type SelectStream = SelectStream;

    async fn select(
        &self,
        _: tonic::Request<v1::SelectRequest>,
    ) -> Result<Response<SelectStream>, Status> {
        std::future::pending().await
    }
    async fn label_names(
        &self,
        _: tonic::Request<v1::LabelNamesRequest>,
    ) -> Result<Response<v1::LabelNamesResponse>, Status> {
        std::future::pending().await
    }
    async fn label_values(
        &self,
        _: tonic::Request<v1::LabelValuesRequest>,
    ) -> Result<Response<v1::LabelValuesResponse>, Status> {
        std::future::pending().await
    }
    async fn write(
        &self,
        _: tonic::Request<v1::WriteRequest>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_never_answers_times_out_into_a_warning() {
    let c = cluster(2, 1).await;
    c.publish(1, &[]).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hang_addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::store_server::StoreServer::new(HangingStore))
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    c.coordinator
        .0
        .lock()
        .expect("lock")
        .workers
        .push(worker("w9", &hang_addr, true));
    let membership = Arc::new(Membership::default());
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", c.coordinator_addr))
        .expect("endpoint")
        .connect_lazy();
    membership
        .poll_once(
            &[ch],
            std::slice::from_ref(&c.coordinator_addr),
            Duration::from_secs(5),
        )
        .await
        .expect("cluster state");
    let fanout = Arc::new(FanOut::new(
        membership,
        tokio::runtime::Handle::current(),
        FanOutOptions {
            shard_timeout: Duration::from_millis(300),
            partial_response: true,
        },
        Arc::new(Metrics::default()),
    ));
    let q = trawl_querier::router(
        fanout.clone(),
        Default::default(),
        Arc::new(Default::default()),
        4,
    );
    let uri = format!(
        "/api/v1/query?query={}&time={}",
        enc("count(http_requests_total)"),
        (T0 + 150 * STEP) / 1000
    );
    let (status, v) = get(&q, &uri).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["warnings"][0],
        format!("partial response: shard w9 ({hang_addr}) unavailable: timed out after 300ms")
    );
    // The two real shards still answered everything.
    assert_eq!(v["data"]["result"][0]["value"][1], "10", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_replica_scrapes_answer_as_one_replica() {
    // R=2: replica B scrapes every target 5 ms after replica A, with other values; A's
    // scrape at step 50 failed (staleness marker) while B's succeeded.
    let a = store();
    let b = store();
    let reference = store();
    for (idx, job) in ["api", "db"].into_iter().enumerate() {
        for inst in 0..2 {
            let l = labels(job, inst);
            let s = samples(idx * 2 + inst);
            let mut sa = s.clone();
            let sb: Vec<(i64, f64)> = s.iter().map(|(t, v)| (t + 5, v + 0.25)).collect();
            let mut want = s.clone();
            if idx == 0 && inst == 0 {
                sa[50].1 = STALE_NAN;
                want[50] = sb[50];
            }
            append(&a, &l, &sa);
            append(&b, &l, &sb);
            append(&reference, &l, &want);
        }
    }
    let coordinator = FakeCoordinator::default();
    let coordinator_addr = serve_coordinator(coordinator.clone()).await;
    let c = Cluster {
        reference,
        shards: vec![a, b],
        coordinator,
        coordinator_addr,
    };
    c.publish(2, &[]).await;
    let (q, fanout) = c.querier(false).await;
    let r = c.reference_router();
    // Evaluation times 7 s off the scrape grid, so no window edge falls between the copies.
    let off = 7_000;
    let start = (T0 + 20 * STEP + off) as f64 / 1000.0;
    let end = (T0 + 200 * STEP + off) as f64 / 1000.0;
    for expr in [
        "http_requests_total",
        "rate(http_requests_total[1m])",
        "count_over_time(http_requests_total[5m])",
    ] {
        let uri = format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=15",
            enc(expr)
        );
        let (qs, qv) = get(&q, &uri).await;
        assert_eq!(qs, StatusCode::OK, "{qv}");
        assert_eq!(qv, get(&r, &uri).await.1, "{expr}");
    }
    assert!(fanout.metrics().dedup_samples_dropped.get() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_workers_are_asked_and_used_when_they_answer() {
    let c = cluster(3, 1).await;
    c.publish(1, &[]).await;
    for w in &mut c.coordinator.0.lock().expect("lock").workers {
        w.state = v1::worker_info::State::Down as i32;
    }
    let (q, _) = c.querier(false).await;
    let uri = format!(
        "/api/v1/query?query={}&time={}",
        enc("count(http_requests_total)"),
        (T0 + 150 * STEP) / 1000
    );
    let (status, v) = get(&q, &uri).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "10", "{v}");
}

fn write_body(name: &str, n: usize, t: i64) -> Vec<u8> {
    let timeseries = (0..n)
        .map(|i| trawl_remote::proto::TimeSeries {
            labels: vec![
                trawl_remote::proto::Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                trawl_remote::proto::Label {
                    name: "i".into(),
                    value: i.to_string(),
                },
            ],
            samples: vec![trawl_remote::proto::Sample {
                value: i as f64,
                timestamp: t,
            }],
            exemplars: vec![],
        })
        .collect();
    trawl_remote::write::encode_write_request(&trawl_remote::proto::WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

async fn post_write(q: &axum::Router, body: Vec<u8>) -> (StatusCode, String) {
    let resp = q
        .clone()
        .oneshot(
            Request::post("/api/v1/write")
                .header("content-type", "application/x-protobuf")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status();
    let b = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_answers_as_prometheus() {
    let c = cluster(2, 1).await;
    c.publish(1, &[]).await;
    let (q, fanout) = c.querier(true).await;
    assert_eq!(
        post_write(&q, write_body("w", 10, T0)).await.0,
        StatusCode::NO_CONTENT
    );
    // The same series again with older samples: refused by the store, not retriable.
    let (status, text) = post_write(&q, write_body("w", 10, T0 - 60_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(text, "out of order sample\n");
    // Remote write 2.0 is not accepted.
    let resp = q
        .clone()
        .oneshot(
            Request::post("/api/v1/write")
                .header(
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                )
                .body(Body::from(write_body("w", 1, T0)))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(fanout.metrics().write_requests.get(), 3);
    assert_eq!(fanout.metrics().write_failures.get(), 2);

    // A worker that is up but unreachable: the sender should retry.
    c.coordinator
        .0
        .lock()
        .expect("lock")
        .workers
        .push(worker("w9", &dead_address(), true));
    let (q, _) = c.querier(true).await;
    let (status, text) = post_write(&q, write_body("x", 30, T0)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.starts_with("worker w9 (127.0.0.1:"), "{text}");
}
