//! `QuerierArgs::serve` end to end on loopback: it logs its bound addresses, becomes ready
//! once the coordinator answered, serves PromQL over real HTTP and the gRPC Query API, and
//! stops cleanly on shutdown.

// Proto literals always end with `..Default::default()` (project rule: fields added
// later must not break them), even where every field is given today.
#![allow(clippy::needless_update)]

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Response, Status};
use trawl_model::Labels;
use trawl_proto::v1;
use trawl_querier::QuerierArgs;
use trawl_storage::mem::MemStorage;
use trawl_storage::{SelectHints, Storage, StorageOptions};

#[derive(Clone)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: QuerierArgs,
}

#[derive(Clone)]
struct Store(Arc<MemStorage>);

type SelectStream = Pin<Box<dyn Stream<Item = Result<v1::SelectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl v1::store_server::Store for Store {
    type SelectStream = SelectStream;
    async fn select(
        &self,
        req: tonic::Request<v1::SelectRequest>,
    ) -> Result<Response<SelectStream>, Status> {
        let r = req.into_inner();
        let ms: Vec<trawl_model::Matcher> = r
            .matchers
            .into_iter()
            .map(|m| {
                trawl_model::Matcher::try_from(m)
                    .map_err(|e| Status::invalid_argument(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let q = self
            .0
            .querier()
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut series = Vec::new();
        for s in q
            .select(&ms, r.min_time_ms, r.max_time_ms, &SelectHints::default())
            .map_err(|e| Status::internal(e.to_string()))?
        {
            let s = s.map_err(|e| Status::internal(e.to_string()))?;
            series.push(v1::ChunkedSeries {
                labels: trawl_proto::labels_to_proto(&s.labels),
                chunks: s.chunks().iter().map(trawl_proto::chunk_to_proto).collect(),
                ..Default::default()
            });
        }
        let msg = v1::SelectResponse {
            series,
            ..Default::default()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(msg)]))))
    }
    async fn label_names(
        &self,
        _: tonic::Request<v1::LabelNamesRequest>,
    ) -> Result<Response<v1::LabelNamesResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn label_values(
        &self,
        _: tonic::Request<v1::LabelValuesRequest>,
    ) -> Result<Response<v1::LabelValuesResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn write(
        &self,
        _: tonic::Request<v1::WriteRequest>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
}

#[derive(Clone)]
struct Coordinator(v1::ClusterState);

type AssignStream = Pin<Box<dyn Stream<Item = Result<v1::Assignment, Status>> + Send>>;

#[tonic::async_trait]
impl v1::coordinator_server::Coordinator for Coordinator {
    type WatchAssignmentStream = AssignStream;
    async fn register(
        &self,
        _: tonic::Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn heartbeat(
        &self,
        _: tonic::Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn watch_assignment(
        &self,
        _: tonic::Request<v1::WatchAssignmentRequest>,
    ) -> Result<Response<AssignStream>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn report_scrapes(
        &self,
        _: tonic::Request<v1::ScrapeReport>,
    ) -> Result<Response<v1::ScrapeReportResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn get_cluster(
        &self,
        _: tonic::Request<v1::GetClusterRequest>,
    ) -> Result<Response<v1::ClusterState>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    (l, a)
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let i = line.find(&format!("{key}="))?;
    line[i + key.len() + 1..].split_whitespace().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_addresses_answers_and_stops() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = SharedBuf(buf.clone());
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("subscriber");

    let t0 = 1_700_000_000_000i64;
    let storage = Arc::new(MemStorage::new(StorageOptions {
        too_old_window_ms: i64::MAX / 4,
        max_future_ms: i64::MAX / 4,
        ..Default::default()
    }));
    {
        let mut a = storage.appender();
        let r = a
            .series_ref(&Labels::from_pairs([("__name__", "up"), ("job", "x")]))
            .expect("ref");
        for k in 0..10 {
            a.append(r, t0 + k * 15_000, 1.0).expect("append");
        }
        a.commit().expect("commit");
    }
    let (sl, store_addr) = listener().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::store_server::StoreServer::new(Store(storage)))
            .serve_with_incoming(TcpListenerStream::new(sl)),
    );
    // w2 is gone (nothing listens there): answers are partial, with a warning on both APIs.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let state = v1::ClusterState {
        workers: vec![
            v1::WorkerInfo {
                id: "w1".into(),
                grpc_address: store_addr,
                ..Default::default()
            },
            v1::WorkerInfo {
                id: "w2".into(),
                grpc_address: dead.clone(),
                state: v1::worker_info::State::Down as i32,
                ..Default::default()
            },
        ],
        replication_factor: 1,
        ..Default::default()
    };
    let (cl, coord_addr) = listener().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::coordinator_server::CoordinatorServer::new(Coordinator(
                state,
            )))
            .serve_with_incoming(TcpListenerStream::new(cl)),
    );

    let cli = Cli::try_parse_from([
        "querier",
        &format!("--coordinator.address=127.0.0.1:1,{coord_addr}"),
        "--coordinator.poll-interval=100ms",
        "--web.listen-address=127.0.0.1:0",
        "--grpc.listen-address=127.0.0.1:0",
        "--query.timeout=20s",
        "--query.shard-timeout=5s",
    ])
    .expect("flags");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cli.args.serve(async move {
        let _ = stop_rx.await;
    }));

    let deadline = Instant::now() + Duration::from_secs(20);
    let (web, grpc) = loop {
        let text = String::from_utf8_lossy(&buf.lock().expect("lock")).to_string();
        if let Some(line) = text.lines().find(|l| l.contains("querier listening")) {
            let web = field(line, "web").expect("web").to_string();
            let grpc = field(line, "grpc").expect("grpc").to_string();
            break (web, grpc);
        }
        assert!(Instant::now() < deadline, "no listening line in: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let http = reqwest::Client::new();
    // Ready once the coordinator (the second address; the first refuses) answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http
            .get(format!("http://{web}/-/ready"))
            .send()
            .await
            .expect("ready");
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = http
        .get(format!(
            "http://{web}/api/v1/query?query=sum(up)&time={}",
            (t0 + 100_000) / 1000
        ))
        .send()
        .await
        .expect("query");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
    let want = format!("partial response: shard w2 ({dead}) unavailable: ");
    let w = v["warnings"][0].as_str().expect("warning");
    assert!(w.starts_with(&want), "{w}");

    let mut client = trawl_query::Client::connect(&grpc).await.expect("grpc");
    let a = client
        .instant("count(up)", Some(t0 + 100_000))
        .await
        .expect("instant");
    let j = trawl_query::json::answer_json(&a);
    assert!(j.contains("\"1\""), "{j}");
    assert_eq!(a.result.annotations.warnings.len(), 1, "{j}");
    assert!(a.result.annotations.warnings[0].starts_with(&want), "{j}");

    let metrics = http
        .get(format!("http://{web}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("trawl_querier_workers 2"), "{metrics}");
    assert!(metrics.contains("trawl_querier_workers_up 1"), "{metrics}");
    assert!(
        metrics.contains("trawl_querier_partial_responses_total 2"),
        "{metrics}"
    );

    stop_tx.send(()).expect("stop");
    let r = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("stopped in time")
        .expect("task");
    assert!(r.is_ok(), "{r:?}");
}
