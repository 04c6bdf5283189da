//! Interoperability with the real worker Store service (`trawl_worker::store_server`, here
//! over in-memory shards): batched Select streams, skip_chunks, label calls and Write.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Response, Status};
use tower::ServiceExt;
use trawl_model::Labels;
use trawl_proto::v1;
use trawl_querier::{FanOut, FanOutOptions, Membership, Metrics};
use trawl_storage::mem::MemStorage;
use trawl_storage::{Storage, StorageOptions};

const T0: i64 = 1_700_000_000_000;

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

fn mem() -> Arc<MemStorage> {
    Arc::new(MemStorage::new(StorageOptions {
        too_old_window_ms: i64::MAX / 4,
        max_future_ms: i64::MAX / 4,
        ..Default::default()
    }))
}

async fn get(router: &axum::Router, uri: &str) -> serde_json::Value {
    let resp = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK, "{uri}");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn querier_over_real_worker_stores_equals_one_store() {
    let reference = mem();
    let shards = [mem(), mem(), mem()];
    // 600 series (more than one Select batch per shard), 40 samples each.
    for i in 0..600usize {
        let l = Labels::from_pairs([
            ("__name__", "m".to_string()),
            ("job", format!("j{}", i % 7)),
            ("i", i.to_string()),
        ]);
        for s in [&reference, &shards[i % 3]] {
            let mut a = s.appender();
            let r = a.series_ref(&l).expect("ref");
            for k in 0..40 {
                a.append(r, T0 + k * 15_000, (i * k as usize) as f64)
                    .expect("append");
            }
            a.commit().expect("commit");
        }
    }
    let mut workers = Vec::new();
    for (i, s) in shards.iter().enumerate() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let storage: Arc<dyn Storage> = s.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(trawl_worker::store_server(storage))
                .serve_with_incoming(TcpListenerStream::new(l)),
        );
        workers.push(v1::WorkerInfo {
            id: format!("w{i}"),
            grpc_address: addr,
            ..Default::default()
        });
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let coord = l.local_addr().expect("addr").to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::coordinator_server::CoordinatorServer::new(Coordinator(
                v1::ClusterState {
                    workers,
                    replication_factor: 1,
                    ..Default::default()
                },
            )))
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    let membership = Arc::new(Membership::default());
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{coord}"))
        .expect("endpoint")
        .connect_lazy();
    membership
        .poll_once(&[ch], std::slice::from_ref(&coord), Duration::from_secs(5))
        .await
        .expect("cluster");
    let fanout = Arc::new(FanOut::new(
        membership,
        tokio::runtime::Handle::current(),
        FanOutOptions::default(),
        Arc::new(Metrics::default()),
    ));
    let q = trawl_querier::router(fanout, Default::default(), Arc::new(Default::default()), 4);
    let r = trawl_web::router(trawl_web::ApiState::for_storage(reference.clone()));
    let s = T0 / 1000;
    let e = (T0 + 40 * 15_000) / 1000;
    for uri in [
        format!(
            "/api/v1/query_range?query=sum%20by%20(job)%20(rate(m%5B1m%5D))&start={s}&end={e}&step=30"
        ),
        format!("/api/v1/query?query=count(m)&time={e}"),
        format!("/api/v1/query?query=topk(3,m)&time={e}"),
        format!("/api/v1/labels?start={s}&end={e}"),
        format!("/api/v1/label/job/values?start={s}&end={e}"),
        format!("/api/v1/series?match[]=m%7Bjob%3D%22j3%22%7D&start={s}&end={e}"),
    ] {
        let got = get(&q, &uri).await;
        assert_eq!(got, get(&r, &uri).await, "{uri}");
        let data = &got["data"];
        let n = data["result"]
            .as_array()
            .or_else(|| data.as_array())
            .map_or(0, Vec::len);
        assert!(n > 0, "{uri}: {got}");
    }

    // Remote write through the real Store.Write, then read back.
    let ts = trawl_remote::proto::TimeSeries {
        labels: vec![trawl_remote::proto::Label {
            name: "__name__".into(),
            value: "pushed".into(),
        }],
        samples: vec![trawl_remote::proto::Sample {
            value: 42.0,
            timestamp: T0,
        }],
        exemplars: vec![],
    };
    let body = trawl_remote::write::encode_write_request(&trawl_remote::proto::WriteRequest {
        timeseries: vec![ts],
        metadata: vec![],
    });
    let resp = q
        .clone()
        .oneshot(
            Request::post("/api/v1/write")
                .body(Body::from(body.clone()))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let v = get(
        &q,
        &format!("/api/v1/query?query=pushed&time={}", T0 / 1000),
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "42", "{v}");
    // The identical batch again (a sender's retry) is accepted.
    let resp = q
        .clone()
        .oneshot(
            Request::post("/api/v1/write")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}
