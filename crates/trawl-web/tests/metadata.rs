//! `/api/v1/labels`, `/api/v1/label/{name}/values`, `/api/v1/series` and the other read-only
//! metadata endpoints: whole JSON bodies, Grafana's parameters, limits and errors.

mod common;

use common::*;
use serde_json::json;

fn ok(data: serde_json::Value) -> serde_json::Value {
    json!({"status": "success", "data": data})
}

#[tokio::test]
async fn label_names() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/labels").await,
        ok(json!(["__name__", "code", "instance", "job"])),
    );
    assert_ok(
        &get(&app, "/api/v1/labels?match[]=up").await,
        ok(json!(["__name__", "instance", "job"])),
    );
    // Several match[] are a union; Grafana POSTs them as a form with start/end.
    assert_ok(
        &post_form(
            &app,
            "/api/v1/labels",
            "match%5B%5D=up&match%5B%5D=http_requests_total&start=0&end=600",
        )
        .await,
        ok(json!(["__name__", "code", "instance", "job"])),
    );
    // Outside the data's time range nothing is found, and the answer is [] not null.
    assert_ok(
        &get(&app, "/api/v1/labels?start=700&end=800").await,
        ok(json!([])),
    );
}

#[tokio::test]
async fn limit_truncates_with_a_warning() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/labels?limit=2").await,
        json!({"status": "success", "data": ["__name__", "code"], "warnings": ["results truncated due to limit"]}),
    );
    assert_ok(
        &get(&app, "/api/v1/label/job/values?limit=3").await,
        json!({"status": "success", "data": ["api", "dup", "node"], "warnings": ["results truncated due to limit"]}),
    );
    assert_ok(
        &get(&app, "/api/v1/series?match[]=up&limit=1").await,
        json!({"status": "success", "data": [
            {"__name__": "up", "instance": "localhost:9090", "job": "prometheus"}
        ], "warnings": ["results truncated due to limit"]}),
    );
    // A limit not exceeded gives no warning.
    assert_ok(
        &get(&app, "/api/v1/label/code/values?limit=2").await,
        ok(json!(["200", "500"])),
    );
}

#[tokio::test]
async fn label_values() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/label/job/values").await,
        ok(json!(["api", "dup", "node", "prometheus"])),
    );
    assert_ok(
        &get(&app, "/api/v1/label/__name__/values").await,
        ok(json!([
            "http_requests_total",
            "new_metric",
            "old_metric",
            "up"
        ])),
    );
    assert_ok(
        &get(
            &app,
            &format!(
                "/api/v1/label/instance/values?match[]={}&start=0&end=600",
                enc("up{job=\"node\"}")
            ),
        )
        .await,
        ok(json!(["localhost:9100"])),
    );
    assert_ok(&get(&app, "/api/v1/label/nope/values").await, ok(json!([])));
    // Prometheus 3's escaped names in the path.
    assert_ok(
        &get(&app, "/api/v1/label/U__jo_62_/values").await,
        ok(json!(["api", "dup", "node", "prometheus"])),
    );
}

#[tokio::test]
async fn series() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/series?match[]=up").await,
        ok(json!([
            {"__name__": "up", "instance": "localhost:9090", "job": "prometheus"},
            {"__name__": "up", "instance": "localhost:9100", "job": "node"},
        ])),
    );
    // Several selectors: merged, sorted, without duplicates.
    let r = post_form(
        &app,
        "/api/v1/series",
        &format!(
            "match%5B%5D={}&match%5B%5D={}&start=1970-01-01T00:00:00Z&end=1970-01-01T00:10:00Z",
            enc("{job=\"api\"}"),
            enc("http_requests_total{code=\"500\"}")
        ),
    )
    .await;
    assert_ok(
        &r,
        ok(json!([
            {"__name__": "http_requests_total", "code": "200", "job": "api"},
            {"__name__": "http_requests_total", "code": "500", "job": "api"},
        ])),
    );
    assert_ok(
        &get(&app, "/api/v1/series?match[]=up&start=601&end=700").await,
        ok(json!([])),
    );
}

#[tokio::test]
async fn metadata_errors() {
    let app = app();
    let cases: &[(&str, &str)] = &[
        ("/api/v1/series", "no match[] parameter provided"),
        (
            "/api/v1/labels?limit=x",
            "invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "/api/v1/labels?limit=-1",
            "invalid parameter \"limit\": limit must be non-negative",
        ),
        (
            "/api/v1/labels?start=x",
            "invalid parameter \"start\": Invalid time value for 'start': cannot parse \"x\" to a valid timestamp",
        ),
        (
            "/api/v1/label/job/values?end=x",
            "invalid parameter \"end\": Invalid time value for 'end': cannot parse \"x\" to a valid timestamp",
        ),
        (
            "/api/v1/series?match[]=up&start=x",
            "invalid parameter \"start\": Invalid time value for 'start': cannot parse \"x\" to a valid timestamp",
        ),
        ("/api/v1/metadata?limit=x", "limit must be a number"),
        (
            "/api/v1/metadata?limit_per_metric=x",
            "limit_per_metric must be a number",
        ),
        (
            "/api/v1/query_exemplars?query=up&start=10&end=0",
            "end timestamp must not be before start timestamp",
        ),
    ];
    for (uri, msg) in cases {
        assert_err(&get(&app, uri).await, 400, "bad_data", msg);
    }
    assert_err(
        &get(&app, &format!("/api/v1/series?match[]={}", enc("{x=\"\"}"))).await,
        400,
        "bad_data",
        "invalid parameter \"match[]\": match[] must contain at least one non-empty matcher",
    );
    // Selectors that do not parse.
    for sel in ["up{", "sum(up)"] {
        let r = get(&app, &format!("/api/v1/series?match[]={}", enc(sel))).await;
        assert_eq!(r.status.as_u16(), 400, "{sel}: {}", r.body);
        assert_eq!(r.json()["errorType"], "bad_data");
        assert!(
            r.json()["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("invalid parameter \"match[]\": ")),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn exemplars_metadata_format() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/query_exemplars?query=up").await,
        ok(json!([])),
    );
    // No selector: Prometheus answers 204 without a body.
    let r = get(&app, "/api/v1/query_exemplars?query=1").await;
    assert_eq!(r.status.as_u16(), 204);
    assert_eq!(r.body, "");
    assert_ok(&get(&app, "/api/v1/metadata").await, ok(json!({})));
    assert_ok(
        &get(
            &app,
            "/api/v1/targets/metadata?match_target=%7Bjob%3D%22a%22%7D",
        )
        .await,
        ok(json!([])),
    );
    assert_ok(
        &get(
            &app,
            &format!(
                "/api/v1/format_query?query={}",
                enc("sum(rate(x[5m]))by(job)")
            ),
        )
        .await,
        ok(json!("sum by (job) (rate(x[5m]))")),
    );
    let r = get(&app, &format!("/api/v1/format_query?query={}", enc("sum("))).await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid parameter \"query\": ")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn tsdb_status() {
    let app = app();
    assert_ok(
        &get(&app, "/api/v1/status/tsdb?limit=3").await,
        ok(json!({
            "headStats": {"numSeries": 6, "numLabelPairs": 12, "chunkCount": 0, "minTime": 0, "maxTime": 0},
            "seriesCountByMetricName": [
                {"name": "http_requests_total", "value": 2},
                {"name": "up", "value": 2},
                {"name": "new_metric", "value": 1},
            ],
            "labelValueCountByLabelName": [
                {"name": "__name__", "value": 4},
                {"name": "job", "value": 4},
                {"name": "code", "value": 2},
            ],
            "memoryInBytesByLabelName": [
                {"name": "__name__", "value": 41},
                {"name": "instance", "value": 28},
                {"name": "job", "value": 20},
            ],
            "seriesCountByLabelValuePair": [
                {"name": "__name__=http_requests_total", "value": 2},
                {"name": "__name__=up", "value": 2},
                {"name": "job=api", "value": 2},
            ],
        })),
    );
    assert_err(
        &get(&app, "/api/v1/status/tsdb?limit=0").await,
        400,
        "bad_data",
        "limit must be a positive number",
    );
}
