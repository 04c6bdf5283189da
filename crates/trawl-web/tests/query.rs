//! `/api/v1/query` and `/api/v1/query_range`: whole JSON bodies, encodings, every error class.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use trawl_model::Matcher;
use trawl_promql::{EngineOptions, QueryError, Queryable, Series};
use trawl_web::ApiState;

fn up_vector(t: serde_json::Value) -> serde_json::Value {
    json!([
        {"metric": {"__name__": "up", "instance": "localhost:9090", "job": "prometheus"}, "value": [t, "1"]},
        {"metric": {"__name__": "up", "instance": "localhost:9100", "job": "node"}, "value": [t, "0"]},
    ])
}

#[tokio::test]
async fn instant_vector_get_and_post() {
    let app = app();
    let want = json!({"status": "success", "data": {"resultType": "vector", "result": up_vector(json!(600))}});
    assert_ok(
        &get(&app, "/api/v1/query?query=up&time=600").await,
        want.clone(),
    );
    assert_ok(
        &post_form(&app, "/api/v1/query", "query=up&time=600").await,
        want.clone(),
    );
    // RFC 3339 time; no time means "now" (600 s in the fixture).
    assert_ok(
        &get(&app, "/api/v1/query?query=up&time=1970-01-01T00:10:00Z").await,
        want.clone(),
    );
    assert_ok(&get(&app, "/api/v1/query?query=up").await, want.clone());
    // A body value wins over the URL's, as in Go's r.FormValue.
    assert_ok(
        &post_form(&app, "/api/v1/query?query=nothing", "query=up&time=600").await,
        want,
    );
}

#[tokio::test]
async fn timestamps_keep_millisecond_digits() {
    let app = app();
    let r = get(&app, "/api/v1/query?query=up&time=599.5").await;
    assert_ok(
        &r,
        json!({"status": "success", "data": {"resultType": "vector", "result": up_vector(json!(599.5))}}),
    );
    // Prometheus writes the fraction as three digits, trailing zeros included.
    assert!(r.body.contains("\"value\":[599.500,\"1\"]"), "{}", r.body);
}

#[tokio::test]
async fn scalar_and_string_results() {
    let app = app();
    assert_ok(
        &get(
            &app,
            &format!("/api/v1/query?query={}&time=100", enc("1/3")),
        )
        .await,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [100, "0.3333333333333333"]}}),
    );
    assert_ok(
        &get(
            &app,
            &format!("/api/v1/query?query={}&time=100", enc("\"a<b\"")),
        )
        .await,
        json!({"status": "success", "data": {"resultType": "string", "result": [100, "a<b"]}}),
    );
}

#[tokio::test]
async fn float_formatting_matches_go() {
    let app = app();
    // Vector and matrix points: Go's shortest 'f' format, 'e' below 1e-6 and from 1e21.
    let cases = [
        ("1/0", "+Inf"),
        ("-1/0", "-Inf"),
        ("0/0", "NaN"),
        ("1e-7", "1e-07"),
        ("0.000001", "0.000001"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("123456789012345678", "123456789012345680"),
        ("0.1+0.2", "0.30000000000000004"),
        ("-0.5", "-0.5"),
    ];
    for (q, want) in cases {
        let r = get(
            &app,
            &format!(
                "/api/v1/query?query={}&time=1",
                enc(&format!("vector({q})"))
            ),
        )
        .await;
        assert_ok(
            &r,
            json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, want]}]}}),
        );
        let r = get(
            &app,
            &format!(
                "/api/v1/query_range?query={}&start=1&end=1&step=1",
                enc(&format!("vector({q})"))
            ),
        )
        .await;
        assert_ok(
            &r,
            json!({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, want]]}]}}),
        );
    }
    // Scalars: always 'f', as Prometheus's scalar encoder has it.
    let scalars = [
        ("1e-7", "0.0000001"),
        ("1e21", "1000000000000000000000"),
        ("1/0", "+Inf"),
        ("0/0", "NaN"),
        ("-2.5", "-2.5"),
    ];
    for (q, want) in scalars {
        let r = get(&app, &format!("/api/v1/query?query={}&time=1.5", enc(q))).await;
        assert_ok(
            &r,
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.5, want]}}),
        );
        // The scalar's time is a plain float: no padded millisecond digits.
        assert!(r.body.contains("[1.5,"), "{}", r.body);
    }
}

#[tokio::test]
async fn instant_matrix_keeps_sample_times() {
    let app = app();
    let r = get(
        &app,
        &format!(
            "/api/v1/query?query={}&time=600",
            enc("http_requests_total{code=\"500\"}[30s]")
        ),
    )
    .await;
    assert_ok(
        &r,
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "http_requests_total", "code": "500", "job": "api"},
             "values": [[585, "39"], [600, "40"]]}
        ]}}),
    );
}

#[tokio::test]
async fn range_query_matrix() {
    let app = app();
    let q = enc("sum by (job) (rate(http_requests_total[1m]))");
    let want = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"job": "api"}, "values": [[540, "0.7333333333333333"], [570, "0.7333333333333333"], [600, "0.7333333333333333"]]}
    ]}});
    let r = get(
        &app,
        &format!("/api/v1/query_range?query={q}&start=540&end=600&step=30"),
    )
    .await;
    assert_ok(&r, want.clone());
    // Grafana's shape: POST form, RFC 3339 bounds, duration step.
    let r = post_form(
        &app,
        "/api/v1/query_range",
        &format!("query={q}&start=1970-01-01T00:09:00Z&end=1970-01-01T00:10:00Z&step=30s"),
    )
    .await;
    assert_ok(&r, want);
}

#[tokio::test]
async fn range_query_of_scalar_is_a_matrix() {
    let app = app();
    let r = get(&app, "/api/v1/query_range?query=2&start=0&end=30&step=15").await;
    assert_ok(
        &r,
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[0, "2"], [15, "2"], [30, "2"]]}
        ]}}),
    );
}

#[tokio::test]
async fn parameter_errors() {
    let app = app();
    let cases: &[(&str, &str)] = &[
        (
            "/api/v1/query_range?query=up&end=10&step=1",
            "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
        ),
        (
            "/api/v1/query_range?query=up&start=x&end=10&step=1",
            "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=y&step=1",
            "invalid parameter \"end\": cannot parse \"y\" to a valid timestamp",
        ),
        (
            "/api/v1/query_range?query=up&start=10&end=0&step=1",
            "invalid parameter \"end\": end timestamp must not be before start time",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=10&step=z",
            "invalid parameter \"step\": cannot parse \"z\" to a valid duration",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=10",
            "invalid parameter \"step\": cannot parse \"\" to a valid duration",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=10&step=0",
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=10&step=-1",
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=600&step=0.0001",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        (
            "/api/v1/query?query=up&time=1e9999",
            "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"1e9999\" to a valid timestamp",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=11001&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        (
            "/api/v1/query?query=up&time=abc",
            "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"abc\" to a valid timestamp",
        ),
        (
            "/api/v1/query?query=up&timeout=forever",
            "invalid parameter \"timeout\": cannot parse \"forever\" to a valid duration",
        ),
        (
            "/api/v1/query?query=up&lookback_delta=x",
            "error parsing lookback delta duration: cannot parse \"x\" to a valid duration",
        ),
        (
            "/api/v1/query_range?query=up%5B5m%5D&start=0&end=10&step=1",
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ),
        (
            "/api/v1/query_range?query=%22s%22&start=0&end=10&step=1",
            "invalid expression type \"string\" for range query, must be Scalar or instant Vector",
        ),
    ];
    for (uri, msg) in cases {
        assert_err(&get(&app, uri).await, 400, "bad_data", msg);
    }
    // 11,000 points exactly is still accepted.
    let r = get(&app, "/api/v1/query_range?query=1&start=0&end=11000&step=1").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
}

#[tokio::test]
async fn parse_errors_are_bad_data_on_query() {
    let app = app();
    assert_err(
        &get(&app, &format!("/api/v1/query?query={}", enc("sum(up"))).await,
        400,
        "bad_data",
        "invalid parameter \"query\": 1:7: parse error: unclosed left parenthesis",
    );
    assert_err(
        &get(&app, "/api/v1/query?query=").await,
        400,
        "bad_data",
        "invalid parameter \"query\": 1:1: parse error: no expression found in input",
    );
    // The range endpoint reports the parser's text alone, as Prometheus does.
    assert_err(
        &get(
            &app,
            &format!(
                "/api/v1/query_range?query={}&start=0&end=1&step=1",
                enc("sum(up")
            ),
        )
        .await,
        400,
        "bad_data",
        "1:7: parse error: unclosed left parenthesis",
    );
    assert_err(
        &get(&app, &format!("/api/v1/series?match[]={}", enc("up{"))).await,
        400,
        "bad_data",
        "invalid parameter \"match[]\": 1:4: parse error: unexpected end of input inside braces",
    );
}

#[tokio::test]
async fn execution_errors_are_422() {
    let app = app();
    let r = get(
        &app,
        &format!("/api/v1/query?query={}&time=600", enc("-{job=\"dup\"}")),
    )
    .await;
    assert_err(
        &r,
        422,
        "execution",
        "vector cannot contain metrics with the same labelset",
    );
    // The sample limit.
    let app = trawl_web::router(state().with_engine(EngineOptions {
        max_samples: 1,
        ..EngineOptions::default()
    }));
    let r = get(
        &app,
        &format!("/api/v1/query?query={}&time=600", enc("up[5m]")),
    )
    .await;
    assert_err(
        &r,
        422,
        "execution",
        "query processing would load too many samples into memory in query execution",
    );
}

#[tokio::test]
async fn timeout_is_503() {
    let app = app();
    // A timeout that has passed before evaluation starts (Go's context with a negative
    // timeout is already expired).
    let q = enc("max_over_time(up[5m:1s])");
    let r = get(
        &app,
        &format!("/api/v1/query?query={q}&time=600&timeout=-1"),
    )
    .await;
    assert_err(
        &r,
        503,
        "timeout",
        "query timed out in expression evaluation",
    );
}

#[derive(Debug)]
struct Broken;

impl Queryable for Broken {
    fn select(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Series>, QueryError> {
        Err(QueryError::Storage("disk on fire".into()))
    }
}

#[tokio::test]
async fn storage_errors_are_internal() {
    let st = state();
    let st = ApiState {
        queryable: Arc::new(Broken),
        ..st
    };
    let app = trawl_web::router(st);
    let r = get(&app, "/api/v1/query?query=up&time=600").await;
    assert_err(&r, 500, "internal", "disk on fire");
}

#[tokio::test]
async fn empty_results_are_empty_arrays() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/query?query=nothing&time=600").await,
        json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
    );
    assert_ok(
        &get(
            &app,
            "/api/v1/query_range?query=nothing&start=0&end=60&step=15",
        )
        .await,
        json!({"status": "success", "data": {"resultType": "matrix", "result": []}}),
    );
}

#[tokio::test]
async fn annotations_become_warnings_and_infos() {
    let app = app();
    // rate() over a metric not named like a counter yields an info in Prometheus 3.
    let r = get(
        &app,
        &format!("/api/v1/query?query={}&time=600", enc("rate(up[1m])")),
    )
    .await;
    let v = r.json();
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    let infos = v["infos"].as_array().cloned().unwrap_or_default();
    assert_eq!(infos.len(), 1, "{v}");
    assert!(
        infos[0]
            .as_str()
            .is_some_and(|s| s.starts_with("PromQL info: metric might not be a counter")),
        "{v}"
    );
    assert!(v.get("warnings").is_none(), "{v}");
    // No annotations: neither key present.
    let v = get(&app, "/api/v1/query?query=up&time=600").await.json();
    assert!(
        v.get("warnings").is_none() && v.get("infos").is_none(),
        "{v}"
    );
}

#[tokio::test]
async fn stats_only_when_asked() {
    let app = app();
    let v = get(&app, "/api/v1/query?query=up&time=600&stats=all")
        .await
        .json();
    let stats = &v["data"]["stats"];
    assert!(stats["timings"]["evalTotalTime"].is_number(), "{v}");
    assert_eq!(stats["samples"]["totalQueryableSamples"], 2, "{v}");
    let v = get(&app, "/api/v1/query?query=up&time=600").await.json();
    assert!(v["data"].get("stats").is_none(), "{v}");
}

#[tokio::test]
async fn lookback_delta_param() {
    let app = app();
    // The last sample is at 600 s; at 700 s it is visible with the default 5 m lookback
    // but not with a 1 m one.
    let v = get(&app, "/api/v1/query?query=up&time=700").await.json();
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(2));
    let v = get(&app, "/api/v1/query?query=up&time=700&lookback_delta=1m")
        .await
        .json();
    assert_eq!(v["data"]["result"], json!([]));
}

#[tokio::test]
async fn limit_truncates_series_with_a_warning() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/query?query=up&time=600&limit=1").await,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "instance": "localhost:9090", "job": "prometheus"}, "value": [600, "1"]},
        ]}, "warnings": ["results truncated due to limit"]}),
    );
    assert_ok(
        &get(
            &app,
            "/api/v1/query_range?query=up&start=600&end=600&step=1&limit=1",
        )
        .await,
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "up", "instance": "localhost:9090", "job": "prometheus"}, "values": [[600, "1"]]},
        ]}, "warnings": ["results truncated due to limit"]}),
    );
    // Not exceeded, or a scalar: no warning.
    assert_ok(
        &get(&app, "/api/v1/query?query=up&time=600&limit=2").await,
        json!({"status": "success", "data": {"resultType": "vector", "result": up_vector(json!(600))}}),
    );
    assert_ok(
        &get(&app, "/api/v1/query?query=7&time=600&limit=1").await,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [600, "7"]}}),
    );
    assert_err(
        &get(&app, "/api/v1/query?query=up&limit=-2").await,
        400,
        "bad_data",
        "invalid parameter \"limit\": limit must be non-negative",
    );
}

#[tokio::test]
async fn a_full_query_queue_times_out() {
    let st = state().with_max_concurrency(1);
    let held = st
        .query_slots
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore open");
    let app = trawl_web::router(st);
    let r = get(&app, "/api/v1/query?query=up&time=600&timeout=0.05").await;
    assert_err(&r, 503, "timeout", "query timed out in query queue");
    drop(held);
    let r = get(&app, "/api/v1/query?query=up&time=600&timeout=5").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
}

#[tokio::test]
async fn grafana_shaped_requests() {
    use axum::body::Body;
    use axum::http::{Request, header};
    let app = app();
    // Grafana's data source: POST form with a charset, float-second bounds, integer step
    // and the data source's query timeout.
    let req = Request::post("/api/v1/query_range")
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(Body::from(format!(
            "query={}&start=540&end=600&step=30&timeout=60s",
            enc("sum by (job) (rate(http_requests_total[1m]))")
        )))
        .expect("request");
    assert_ok(
        &send(&app, req).await,
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"job": "api"}, "values": [[540, "0.7333333333333333"], [570, "0.7333333333333333"], [600, "0.7333333333333333"]]}
        ]}}),
    );
    // Its health check.
    assert_ok(
        &get(
            &app,
            &format!("/api/v1/query?query={}&time=600", enc("1+1")),
        )
        .await,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [600, "2"]}}),
    );
    // Label values for a variable, with match[] and the dashboard's range.
    let req = Request::get(format!(
        "/api/v1/label/code/values?match%5B%5D={}&start=0&end=600",
        enc("http_requests_total{job=\"api\"}")
    ))
    .body(Body::empty())
    .expect("request");
    assert_ok(
        &send(&app, req).await,
        json!({"status": "success", "data": ["200", "500"]}),
    );
}
