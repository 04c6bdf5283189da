//! Handler tests through the router with `oneshot`.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use trawl_model::{Labels, Matcher};
use trawl_storage::mem::MemStorage;
use trawl_storage::{SelectHints, Storage, StorageOptions};

use super::*;
use crate::proto::{
    Label, LabelMatcher, MatcherType, Query, ReadRequest, Sample, TimeSeries, WriteRequest,
};

const NOW: i64 = 1_700_000_000_000;

fn state() -> (RemoteState, Arc<MemStorage>) {
    let store = Arc::new(MemStorage::new(StorageOptions {
        clock: trawl_storage::Clock::from_fn(|| NOW),
        ..Default::default()
    }));
    let dyn_store: Arc<dyn Storage> = store.clone();
    (RemoteState::new(dyn_store, RemoteOptions::default()), store)
}

fn series(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: name.into(),
            },
            Label {
                name: "job".into(),
                value: "test".into(),
            },
        ],
        samples: samples
            .iter()
            .map(|(t, v)| Sample {
                timestamp: *t,
                value: *v,
            })
            .collect(),
        exemplars: vec![],
    }
}

fn write_req(ts: Vec<TimeSeries>) -> Request<Body> {
    let body = write::encode_write_request(&WriteRequest {
        timeseries: ts,
        metadata: vec![],
    });
    Request::post("/api/v1/write")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(Body::from(body))
        .unwrap()
}

async fn send(st: &RemoteState, req: Request<Body>) -> (StatusCode, HeaderMapLite, Vec<u8>) {
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = HeaderMapLite {
        content_type: resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        content_encoding: resp
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, headers, body.to_vec())
}

struct HeaderMapLite {
    content_type: Option<String>,
    content_encoding: Option<String>,
}

fn stored(s: &MemStorage, name: &str) -> Vec<(i64, f64)> {
    let q = s.querier().unwrap();
    let set = q
        .select(
            &[Matcher::equal("__name__", name)],
            i64::MIN,
            i64::MAX,
            &SelectHints::default(),
        )
        .unwrap();
    let mut out = Vec::new();
    for series in set {
        for x in series.unwrap().samples() {
            let x = x.unwrap();
            out.push((x.t, x.v));
        }
    }
    out
}

#[tokio::test]
async fn write_success_is_204_and_stores() {
    let (st, store) = state();
    let (status, _, body) = send(
        &st,
        write_req(vec![series("m", &[(NOW - 2000, 1.0), (NOW - 1000, 2.0)])]),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    assert_eq!(
        stored(&store, "m"),
        vec![(NOW - 2000, 1.0), (NOW - 1000, 2.0)]
    );
}

#[tokio::test]
async fn write_out_of_order_is_400_with_prometheus_text() {
    let (st, store) = state();
    let (s1, _, _) = send(&st, write_req(vec![series("m", &[(NOW - 1000, 1.0)])])).await;
    assert_eq!(s1, StatusCode::NO_CONTENT);
    let (status, h, body) = send(
        &st,
        write_req(vec![
            series("m", &[(NOW - 5000, 9.0)]),
            series("n", &[(NOW - 5000, 3.0)]),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(String::from_utf8(body).unwrap(), "out of order sample\n");
    assert_eq!(h.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(stored(&store, "m"), vec![(NOW - 1000, 1.0)]);
    // The good sample of the same request is kept (see the crate docs).
    assert_eq!(stored(&store, "n"), vec![(NOW - 5000, 3.0)]);
}

#[tokio::test]
async fn write_duplicate_too_old_and_future_are_400() {
    let (st, _) = state();
    send(&st, write_req(vec![series("m", &[(NOW, 1.0)])])).await;
    let (status, _, body) = send(&st, write_req(vec![series("m", &[(NOW, 2.0)])])).await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap().as_str()),
        (StatusCode::BAD_REQUEST, "duplicate sample for timestamp\n")
    );
    // Same value again: accepted and ignored.
    let (status, _, _) = send(&st, write_req(vec![series("m", &[(NOW, 1.0)])])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Older than the head accepts (newest minus the too-old window) on a new series.
    let (status, _, body) = send(
        &st,
        write_req(vec![series("old", &[(NOW - 3 * 3600 * 1000, 1.0)])]),
    )
    .await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap().as_str()),
        (StatusCode::BAD_REQUEST, "out of bounds\n")
    );
    let (status, _, body) = send(
        &st,
        write_req(vec![series("f", &[(NOW + 3600 * 1000, 1.0)])]),
    )
    .await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap().as_str()),
        (
            StatusCode::BAD_REQUEST,
            "out of bounds: timestamp is too far in the future\n"
        )
    );
}

#[tokio::test]
async fn write_rejects_v2_content_type_other_encodings_and_garbage() {
    let (st, _) = state();
    let mut req = write_req(vec![series("m", &[(NOW, 1.0)])]);
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
            .parse()
            .unwrap(),
    );
    let (status, _, _) = send(&st, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut req = write_req(vec![series("m", &[(NOW, 1.0)])]);
    req.headers_mut()
        .insert(header::CONTENT_ENCODING, "zstd".parse().unwrap());
    let (status, _, _) = send(&st, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let req = Request::post("/api/v1/write")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from("definitely not snappy"))
        .unwrap();
    let (status, _, body) = send(&st, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.is_empty());

    // Without any headers a 1.0 body is still accepted, as Prometheus does.
    let body = write::encode_write_request(&WriteRequest {
        timeseries: vec![series("bare", &[(NOW, 1.0)])],
        metadata: vec![],
    });
    let req = Request::post("/api/v1/write")
        .body(Body::from(body))
        .unwrap();
    let (status, _, _) = send(&st, req).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn write_disabled_is_404() {
    let (st, _) = state();
    let st = RemoteState::new(
        Arc::clone(st.storage()),
        RemoteOptions {
            enable_write: false,
            ..Default::default()
        },
    );
    let (status, _, body) = send(&st, write_req(vec![series("m", &[(NOW, 1.0)])])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("--web.enable-remote-write-receiver")
    );
}

fn read_req(accepted: Vec<i32>) -> Request<Body> {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: NOW - 10_000,
            end_timestamp_ms: NOW,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Eq as i32,
                name: "__name__".into(),
                value: "m".into(),
            }],
            hints: None,
        }],
        accepted_response_types: accepted,
    };
    Request::post("/api/v1/read")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "snappy")
        .body(Body::from(read::encode_read_request(&req)))
        .unwrap()
}

#[tokio::test]
async fn read_sampled_and_streamed() {
    let (st, _) = state();
    let pts: Vec<(i64, f64)> = (0..20)
        .map(|i| (NOW - 19_000 + i * 1000, i as f64))
        .collect();
    let (status, _, _) = send(&st, write_req(vec![series("m", &pts)])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, h, body) = send(&st, read_req(vec![])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.content_type.as_deref(), Some("application/x-protobuf"));
    assert_eq!(h.content_encoding.as_deref(), Some("snappy"));
    let resp = read::decode_read_response(&body, 1 << 24).unwrap();
    assert_eq!(resp.results.len(), 1);
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 1);
    let got: Vec<(i64, f64)> = ts[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(got, pts[9..].to_vec(), "inclusive [now-10s, now]");
    assert_eq!(
        ts[0].labels,
        vec![
            Label {
                name: "__name__".into(),
                value: "m".into()
            },
            Label {
                name: "job".into(),
                value: "test".into()
            }
        ]
    );

    let (status, h, body) = send(&st, read_req(vec![1, 0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.content_type.as_deref(), Some(read::STREAMED_CONTENT_TYPE));
    let frames = read::decode_streamed(&body).unwrap();
    assert_eq!(frames.len(), 1);
    let chunk = &frames[0].chunked_series[0].chunks[0];
    let samples = xor::decode_chunk(&chunk.data).unwrap();
    let got: Vec<(i64, f64)> = samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(got, pts[9..].to_vec());
    assert_eq!(
        Labels::from_pairs(
            frames[0].chunked_series[0]
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
        ),
        Labels::from_pairs([("__name__", "m"), ("job", "test")])
    );
}

#[tokio::test]
async fn read_errors() {
    let (st, _) = state();
    let (status, _, body) = send(&st, read_req(vec![5])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("does not support")
    );
    let req = Request::post("/api/v1/read")
        .body(Body::from(&b"\x00garbage"[..]))
        .unwrap();
    let (status, _, _) = send(&st, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bad = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: 1,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Re as i32,
                name: "a".into(),
                value: "(".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let req = Request::post("/api/v1/read")
        .body(Body::from(read::encode_read_request(&bad)))
        .unwrap();
    let (status, _, body) = send(&st, req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("error parsing regexp")
    );
    // GET is not routed.
    let req = Request::get("/api/v1/read").body(Body::empty()).unwrap();
    let (status, _, _) = send(&st, req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
