//! Targets, scrape pools, status pages, rules/alerts, lifecycle (`/-/healthy`, `/-/ready`,
//! `/-/reload`) and `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::Request;
use common::*;
use serde_json::json;
use trawl_web::{
    ActiveTarget, BuildInfo, DroppedTarget, StatusInfo, TargetHealth, TargetsSnapshot,
};

fn ok(data: serde_json::Value) -> serde_json::Value {
    json!({"status": "success", "data": data})
}

fn snapshot() -> TargetsSnapshot {
    let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_000);
    TargetsSnapshot {
        scrape_pools: vec!["prometheus".into(), "node".into(), "empty".into()],
        active: vec![
            ActiveTarget {
                discovered_labels: labels(&[
                    ("__address__", "localhost:9100"),
                    ("__metrics_path__", "/metrics"),
                    ("__scheme__", "http"),
                    ("job", "node"),
                ]),
                labels: labels(&[("instance", "localhost:9100"), ("job", "node")]),
                scrape_pool: "node".into(),
                scrape_url: "http://localhost:9100/metrics".into(),
                global_url: "http://host:9100/metrics".into(),
                last_error: "Get \"http://localhost:9100/metrics\": connection refused".into(),
                last_scrape: Some(at),
                last_scrape_duration: 0.5,
                health: TargetHealth::Down,
                scrape_interval: "15s".into(),
                scrape_timeout: "10s".into(),
            },
            ActiveTarget {
                discovered_labels: labels(&[
                    ("__address__", "localhost:9090"),
                    ("job", "prometheus"),
                ]),
                labels: labels(&[("instance", "localhost:9090"), ("job", "prometheus")]),
                scrape_pool: "prometheus".into(),
                scrape_url: "http://localhost:9090/metrics".into(),
                global_url: "http://host:9090/metrics".into(),
                last_error: String::new(),
                last_scrape: None,
                last_scrape_duration: 0.0,
                health: TargetHealth::Unknown,
                scrape_interval: "1m".into(),
                scrape_timeout: "10s".into(),
            },
        ],
        dropped: vec![DroppedTarget {
            discovered_labels: labels(&[("__address__", "localhost:9999"), ("job", "node")]),
            scrape_pool: "node".into(),
        }],
        dropped_counts: BTreeMap::new(),
    }
}

fn node_json() -> serde_json::Value {
    json!({
        "discoveredLabels": {"__address__": "localhost:9100", "__metrics_path__": "/metrics", "__scheme__": "http", "job": "node"},
        "labels": {"instance": "localhost:9100", "job": "node"},
        "scrapePool": "node",
        "scrapeUrl": "http://localhost:9100/metrics",
        "globalUrl": "http://host:9100/metrics",
        "lastError": "Get \"http://localhost:9100/metrics\": connection refused",
        "lastScrape": "2023-11-14T22:13:20.123456Z",
        "lastScrapeDuration": 0.5,
        "health": "down",
        "scrapeInterval": "15s",
        "scrapeTimeout": "10s",
    })
}

fn prom_json() -> serde_json::Value {
    json!({
        "discoveredLabels": {"__address__": "localhost:9090", "job": "prometheus"},
        "labels": {"instance": "localhost:9090", "job": "prometheus"},
        "scrapePool": "prometheus",
        "scrapeUrl": "http://localhost:9090/metrics",
        "globalUrl": "http://host:9090/metrics",
        "lastError": "",
        "lastScrape": "0001-01-01T00:00:00Z",
        "lastScrapeDuration": 0.0,
        "health": "unknown",
        "scrapeInterval": "1m",
        "scrapeTimeout": "10s",
    })
}

fn dropped_json() -> serde_json::Value {
    json!({"discoveredLabels": {"__address__": "localhost:9999", "job": "node"}, "scrapePool": "node"})
}

fn targets_app() -> trawl_web::Router {
    trawl_web::router(state().with_targets(Arc::new(snapshot)))
}

#[tokio::test]
async fn targets_all_and_filtered() {
    let app = targets_app();
    let all = ok(json!({
        "activeTargets": [node_json(), prom_json()],
        "droppedTargets": [dropped_json()],
        "droppedTargetCounts": {"node": 1},
    }));
    assert_ok(&get(&app, "/api/v1/targets").await, all.clone());
    assert_ok(&get(&app, "/api/v1/targets?state=any").await, all.clone());
    assert_ok(&get(&app, "/api/v1/targets?state=ANY").await, all);
    assert_ok(
        &get(&app, "/api/v1/targets?state=active").await,
        ok(json!({
            "activeTargets": [node_json(), prom_json()],
            "droppedTargets": [],
            "droppedTargetCounts": null,
        })),
    );
    assert_ok(
        &get(&app, "/api/v1/targets?state=dropped").await,
        ok(json!({
            "activeTargets": [],
            "droppedTargets": [dropped_json()],
            "droppedTargetCounts": {"node": 1},
        })),
    );
    // The pool filter applies to both lists, not to the counts.
    assert_ok(
        &get(&app, "/api/v1/targets?scrapePool=prometheus").await,
        ok(json!({
            "activeTargets": [prom_json()],
            "droppedTargets": [],
            "droppedTargetCounts": {"node": 1},
        })),
    );
    // An unknown state shows neither list.
    assert_ok(
        &get(&app, "/api/v1/targets?state=bogus").await,
        ok(json!({"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": null})),
    );
}

#[tokio::test]
async fn scrape_pools_sorted() {
    let app = targets_app();
    assert_ok(
        &get(&app, "/api/v1/scrape_pools").await,
        ok(json!({"scrapePools": ["empty", "node", "prometheus"]})),
    );
    // Without scraping (a querier) there are none.
    assert_ok(
        &get(&common::app(), "/api/v1/scrape_pools").await,
        ok(json!({"scrapePools": []})),
    );
    assert_ok(
        &get(&common::app(), "/api/v1/targets").await,
        ok(json!({"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {}})),
    );
}

fn status() -> Arc<StatusInfo> {
    let mut s = StatusInfo::with_config("global:\n  scrape_interval: 15s\n");
    s.flags = BTreeMap::from([
        ("config.file".to_owned(), "trawl.yml".to_owned()),
        ("query.lookback-delta".to_owned(), "5m".to_owned()),
    ]);
    s.build = BuildInfo {
        version: "0.1.0".into(),
        revision: "abc".into(),
        branch: "main".into(),
        build_user: "me@host".into(),
        build_date: "20261122-08:00:00".into(),
        go_version: "rustc 1.95.0".into(),
    };
    s.start_time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    s.cwd = "/srv".into();
    s.hostname = "box".into();
    s.storage_retention = "15d".into();
    Arc::new(s)
}

#[tokio::test]
async fn status_pages() {
    let st = status();
    let app = trawl_web::router(state().with_status(st.clone()));
    assert_ok(
        &get(&app, "/api/v1/status/config").await,
        ok(json!({"yaml": "global:\n  scrape_interval: 15s\n"})),
    );
    assert_ok(
        &get(&app, "/api/v1/status/flags").await,
        ok(json!({"config.file": "trawl.yml", "query.lookback-delta": "5m"})),
    );
    assert_ok(
        &get(&app, "/api/v1/status/buildinfo").await,
        ok(json!({
            "version": "0.1.0", "revision": "abc", "branch": "main",
            "buildUser": "me@host", "buildDate": "20261122-08:00:00", "goVersion": "rustc 1.95.0",
        })),
    );
    let v = get(&app, "/api/v1/status/runtimeinfo").await.json();
    let d = &v["data"];
    let mut keys: Vec<&str> = d
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "CWD",
            "GODEBUG",
            "GOGC",
            "GOMAXPROCS",
            "GOMEMLIMIT",
            "corruptionCount",
            "goroutineCount",
            "hostname",
            "lastConfigTime",
            "reloadConfigSuccess",
            "serverTime",
            "startTime",
            "storageRetention",
        ]
    );
    assert_eq!(d["startTime"], "1970-01-01T00:16:40Z");
    assert_eq!(d["CWD"], "/srv");
    assert_eq!(d["hostname"], "box");
    assert_eq!(d["storageRetention"], "15d");
    assert_eq!(d["reloadConfigSuccess"], true);
    // A failed reload shows; the config in force stays.
    st.config_failed();
    let v = get(&app, "/api/v1/status/runtimeinfo").await.json();
    assert_eq!(v["data"]["reloadConfigSuccess"], false);
    assert_ok(
        &get(&app, "/api/v1/status/config").await,
        ok(json!({"yaml": "global:\n  scrape_interval: 15s\n"})),
    );
    st.config_loaded("new: 1\n");
    assert_ok(
        &get(&app, "/api/v1/status/config").await,
        ok(json!({"yaml": "new: 1\n"})),
    );
}

#[tokio::test]
async fn rules_alerts_alertmanagers_are_empty() {
    let app = app();
    assert_ok(&get(&app, "/api/v1/rules").await, ok(json!({"groups": []})));
    assert_ok(
        &get(&app, "/api/v1/rules?type=alert").await,
        ok(json!({"groups": []})),
    );
    assert_err(
        &get(&app, "/api/v1/rules?type=x").await,
        400,
        "bad_data",
        "invalid parameter \"type\": not supported value \"x\"",
    );
    assert_ok(
        &get(&app, "/api/v1/alerts").await,
        ok(json!({"alerts": []})),
    );
    assert_ok(
        &get(&app, "/api/v1/alertmanagers").await,
        ok(json!({"activeAlertmanagers": [], "droppedAlertmanagers": []})),
    );
}

#[tokio::test]
async fn ready_gates_the_api() {
    let ready = Arc::new(AtomicBool::new(false));
    let app = trawl_web::router(state().with_ready(ready.clone()));
    for uri in [
        "/-/ready",
        "/api/v1/query?query=up",
        "/api/v1/labels",
        "/api/v1/targets",
    ] {
        let r = get(&app, uri).await;
        assert_eq!(r.status.as_u16(), 503, "{uri}");
        assert_eq!(r.body, "Service Unavailable", "{uri}");
    }
    // Health and metrics do not wait for readiness.
    let r = get(&app, "/-/healthy").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "Prometheus Server is Healthy.\n")
    );
    assert_eq!(get(&app, "/metrics").await.status.as_u16(), 200);
    ready.store(true, Ordering::Release);
    let r = get(&app, "/-/ready").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "Prometheus Server is Ready.\n")
    );
    assert_eq!(
        get(&app, "/api/v1/query?query=up").await.status.as_u16(),
        200
    );
    // HEAD works on both probes.
    let r = send(
        &app,
        Request::head("/-/healthy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
}

#[tokio::test]
async fn reload() {
    // Disabled lifecycle API.
    let app = app();
    let r = post_form(&app, "/-/reload", "").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (403, "Lifecycle API is not enabled.")
    );
    // Enabled: success, then failure with the reason; PUT works too; GET does not.
    let calls = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(Mutex::new(None::<String>));
    let (c, f) = (calls.clone(), fail.clone());
    let app = trawl_web::router(state().with_reload(Arc::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
        match f.lock().map(|g| g.clone()) {
            Ok(Some(e)) => Err(e),
            _ => Ok(()),
        }
    })));
    let r = post_form(&app, "/-/reload", "").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, ""));
    *fail.lock().expect("lock") =
        Some("couldn't load configuration (--config.file=\"x.yml\"): boom".into());
    let r = send(
        &app,
        Request::put("/-/reload").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 500);
    assert_eq!(
        r.body,
        "failed to reload config: couldn't load configuration (--config.file=\"x.yml\"): boom\n"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let r = get(&app, "/-/reload").await;
    assert_eq!(r.status.as_u16(), 405);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn metrics_endpoint() {
    let app = trawl_web::router(
        state().with_metrics(Arc::new(|| "# TYPE up gauge\ntrawl_up 1\n".to_owned())),
    );
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(r.body, "# TYPE up gauge\ntrawl_up 1\n");
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let app = app();
    assert_eq!(get(&app, "/api/v1/nope").await.status.as_u16(), 404);
    let r = send(
        &app,
        Request::delete("/api/v1/query")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 405);
}

struct WithMetadata;

impl trawl_web::TargetsSource for WithMetadata {
    fn snapshot(&self) -> TargetsSnapshot {
        snapshot()
    }

    fn metadata(&self) -> Vec<trawl_web::TargetMetadata> {
        let md = |target: &[(&str, &str)], metric: &str, typ: &str, help: &str| {
            trawl_web::TargetMetadata {
                target: labels(target),
                metric: metric.into(),
                typ: typ.into(),
                help: help.into(),
                unit: String::new(),
            }
        };
        let a: &[(&str, &str)] = &[("instance", "a:1"), ("job", "node")];
        let b: &[(&str, &str)] = &[("instance", "b:1"), ("job", "prometheus")];
        vec![
            md(a, "up_seconds", "gauge", "Uptime."),
            md(a, "req_total", "counter", "Requests."),
            md(b, "req_total", "counter", "Requests."),
            md(b, "req_total2", "counter", "Other help."),
            md(b, "mixed", "gauge", "One."),
            md(a, "mixed", "counter", "Two."),
        ]
    }
}

#[tokio::test]
async fn metadata_from_the_targets() {
    let app = trawl_web::router(state().with_targets(Arc::new(WithMetadata)));
    assert_ok(
        &get(&app, "/api/v1/metadata").await,
        ok(json!({
            "mixed": [{"type": "gauge", "help": "One.", "unit": ""}, {"type": "counter", "help": "Two.", "unit": ""}],
            "req_total": [{"type": "counter", "help": "Requests.", "unit": ""}],
            "req_total2": [{"type": "counter", "help": "Other help.", "unit": ""}],
            "up_seconds": [{"type": "gauge", "help": "Uptime.", "unit": ""}],
        })),
    );
    assert_ok(
        &get(&app, "/api/v1/metadata?metric=req_total").await,
        ok(json!({"req_total": [{"type": "counter", "help": "Requests.", "unit": ""}]})),
    );
    assert_ok(
        &get(&app, "/api/v1/metadata?limit=1&limit_per_metric=1").await,
        ok(json!({"mixed": [{"type": "gauge", "help": "One.", "unit": ""}]})),
    );
    assert_ok(
        &get(
            &app,
            &format!(
                "/api/v1/targets/metadata?match_target={}",
                enc("{job=\"prometheus\"}")
            ),
        )
        .await,
        ok(json!([
            {"target": {"instance": "b:1", "job": "prometheus"}, "metric": "req_total", "type": "counter", "help": "Requests.", "unit": ""},
            {"target": {"instance": "b:1", "job": "prometheus"}, "metric": "req_total2", "type": "counter", "help": "Other help.", "unit": ""},
            {"target": {"instance": "b:1", "job": "prometheus"}, "metric": "mixed", "type": "gauge", "help": "One.", "unit": ""},
        ])),
    );
    // Naming the metric leaves it out of each entry.
    assert_ok(
        &get(&app, "/api/v1/targets/metadata?metric=mixed&limit=1").await,
        ok(json!([
            {"target": {"instance": "b:1", "job": "prometheus"}, "type": "gauge", "help": "One.", "unit": ""},
        ])),
    );
    let r = get(&app, "/api/v1/targets/metadata?match_target=up%7B").await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid parameter \"match_target\": ")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn cors_and_preflight() {
    let app = app();
    let req = Request::options("/api/v1/query")
        .header("Origin", "http://grafana:3000")
        .body(Body::empty())
        .expect("req");
    let res = tower::ServiceExt::oneshot(app.clone(), req)
        .await
        .expect("infallible");
    assert_eq!(res.status().as_u16(), 204);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, OPTIONS");
    assert_eq!(
        h["access-control-allow-headers"],
        "Accept, Authorization, Content-Type, Origin"
    );
    assert_eq!(h["access-control-expose-headers"], "Date");
    // Without Origin there are no CORS headers.
    let req = Request::get("/api/v1/labels")
        .body(Body::empty())
        .expect("req");
    let res = tower::ServiceExt::oneshot(app, req)
        .await
        .expect("infallible");
    assert_eq!(res.status().as_u16(), 200);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn wal_replay_is_done() {
    let ready = Arc::new(AtomicBool::new(false));
    let app = trawl_web::router(state().with_ready(ready));
    // Served before readiness, as in Prometheus (it reports start-up progress).
    assert_ok(
        &get(&app, "/api/v1/status/walreplay").await,
        ok(json!({"min": 0, "max": 0, "current": 0})),
    );
}

#[tokio::test]
async fn quit() {
    let r = post_form(&app(), "/-/quit", "").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (403, "Lifecycle API is not enabled.")
    );
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let app = trawl_web::router(state().with_quit(Arc::new(move || {
        a.fetch_add(1, Ordering::SeqCst);
    })));
    let r = post_form(&app, "/-/quit", "").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "Requesting termination... Goodbye!")
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}
