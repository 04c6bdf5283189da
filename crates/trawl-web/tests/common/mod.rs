//! Shared fixture: a trawl-storage `MemStorage` with a few known series, the router over it,
//! and a `oneshot` request helper (no sockets).

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use trawl_model::Labels;
use trawl_storage::mem::MemStorage;
use trawl_storage::{Clock, Storage, StorageOptions};
use trawl_web::{ApiState, Router};

/// Samples every 15 s from 0 to 600 s.
pub const STEP_MS: i64 = 15_000;
pub const END_MS: i64 = 600_000;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// The value of sample `i` (at `i * 15 s`).
pub type ValueAt = fn(i64) -> f64;

/// The fixture's series.
pub fn fixture_series() -> Vec<(Labels, ValueAt)> {
    vec![
        (
            labels(&[
                ("__name__", "up"),
                ("instance", "localhost:9090"),
                ("job", "prometheus"),
            ]),
            |_| 1.0,
        ),
        (
            labels(&[
                ("__name__", "up"),
                ("instance", "localhost:9100"),
                ("job", "node"),
            ]),
            |_| 0.0,
        ),
        (
            labels(&[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("job", "api"),
            ]),
            |i| (i * 10) as f64,
        ),
        (
            labels(&[
                ("__name__", "http_requests_total"),
                ("code", "500"),
                ("job", "api"),
            ]),
            |i| i as f64,
        ),
        (
            labels(&[("__name__", "old_metric"), ("job", "dup")]),
            |_| 1.0,
        ),
        (
            labels(&[("__name__", "new_metric"), ("job", "dup")]),
            |_| 2.0,
        ),
    ]
}

pub fn storage() -> Arc<MemStorage> {
    let s = MemStorage::new(StorageOptions {
        clock: Clock::from_fn(|| END_MS + 60_000),
        ..StorageOptions::default()
    });
    let series = fixture_series();
    let mut app = s.appender();
    let refs: Vec<_> = series
        .iter()
        .map(|(l, _)| app.series_ref(l).expect("series_ref"))
        .collect();
    let mut i = 0;
    while i * STEP_MS <= END_MS {
        for (r, (_, f)) in refs.iter().zip(&series) {
            app.append(*r, i * STEP_MS, f(i)).expect("append");
        }
        i += 1;
    }
    let rep = app.commit().expect("commit");
    assert_eq!(rep.rejected_total(), 0);
    drop(app);
    Arc::new(s)
}

/// State over the fixture with "now" at 600 s.
pub fn state() -> ApiState {
    ApiState::for_storage(storage()).with_now(Arc::new(|| END_MS))
}

pub fn app() -> Router {
    trawl_web::router(state())
}

/// A response: status, content type, body text.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        content_type,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
    }
}

pub async fn get(app: &Router, uri: &str) -> Resp {
    send(app, Request::get(uri).body(Body::empty()).expect("request")).await
}

pub async fn post_form(app: &Router, uri: &str, form: &str) -> Resp {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .expect("request");
    send(app, req).await
}

/// Asserts a successful JSON answer equal to `want` as a whole.
#[track_caller]
pub fn assert_ok(r: &Resp, want: Value) {
    assert_eq!(r.status, StatusCode::OK, "body: {}", short(&r.body));
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.json(), want, "body: {}", short(&r.body));
}

/// Asserts Prometheus's error answer.
#[track_caller]
pub fn assert_err(r: &Resp, status: u16, typ: &str, msg: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", short(&r.body));
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "error", "errorType": typ, "error": msg}),
    );
}

/// URL-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The start of a body, for assertion messages.
pub fn short(s: &str) -> &str {
    match s.char_indices().nth(600) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
