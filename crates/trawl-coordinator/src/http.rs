//! The coordinator's HTTP API: `/api/v1/cluster`, `/api/v1/targets` extended with the
//! workers scraping each target, and everything else of trawl-web's Prometheus API
//! (`/-/healthy`, `/-/ready`, `/-/reload`, `/metrics`, status pages) over an empty store,
//! since the coordinator holds no samples.
//!
//! `"workers"` names the workers that scrape each active target in any role. Health, last
//! scrape, its duration and last error are the workers' to know: on every request the
//! coordinator fetches the `/api/v1/targets` page of each worker named (in parallel, at most
//! [`WORKER_PAGE_TIMEOUT`] each, nothing cached) and shows, per target, what the first of its
//! `"workers"` that reports it says, matched by scrape pool, URL and labels. A target no
//! answering worker reports stays `"health": "unknown"` with Go's zero time; a worker that
//! does not answer is logged, not shown (Prometheus's targets API has no warnings).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};
use tower::ServiceExt as _;
use trawl_model::{Labels, SCRAPE_INTERVAL_LABEL, SCRAPE_TIMEOUT_LABEL};
use trawl_raft::{SharedReplicator, read_with};
use trawl_web::{ActiveTarget, DroppedTarget, StatusInfo, TargetHealth, TargetsSnapshot};

use crate::leader::{Desired, LeaderCounters};
use crate::state::ClusterState;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub replicator: SharedReplicator<ClusterState>,
    pub desired: Arc<Desired>,
    pub counters: Arc<LeaderCounters>,
    pub ready: Arc<AtomicBool>,
    pub enable_lifecycle: bool,
    pub flags: BTreeMap<String, String>,
    /// trawl-web's router, which answers everything not handled here.
    inner: axum::Router,
    /// Fetches the workers' target pages; `None` when no HTTP client could be built (the
    /// targets then stay "unknown").
    client: Option<reqwest::Client>,
}

/// How long `/api/v1/targets` waits for one worker's own page.
pub const WORKER_PAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The fields of an active target that come from the worker scraping it.
const HEALTH_FIELDS: [&str; 4] = ["health", "lastScrape", "lastScrapeDuration", "lastError"];

/// A target's identity in the targets JSON: scrape pool, scrape URL, labels.
type TargetKey = (String, String, Labels);

/// The worker-reported fields of each target on one worker's page.
type WorkerPage = BTreeMap<TargetKey, serde_json::Map<String, Json>>;

fn key_of(t: &Json) -> TargetKey {
    (
        t["scrapePool"].as_str().unwrap_or_default().to_string(),
        t["scrapeUrl"].as_str().unwrap_or_default().to_string(),
        json_labels(&t["labels"]),
    )
}

/// The health fields per target of a worker's `/api/v1/targets` answer; anything that is
/// not such an answer yields no targets.
fn parse_worker_page(v: &Json) -> WorkerPage {
    let Some(active) = v.pointer("/data/activeTargets").and_then(Json::as_array) else {
        return WorkerPage::new();
    };
    active
        .iter()
        .map(|t| {
            let fields = HEALTH_FIELDS
                .iter()
                .filter_map(|f| t.get(*f).map(|v| ((*f).to_string(), v.clone())))
                .collect();
            (key_of(t), fields)
        })
        .collect()
}

/// Copies onto every active target of the coordinator's answer the health fields of the
/// first worker in its `"workers"` whose page reports it; the others keep theirs.
fn fill_health(active: &mut [Json], pages: &BTreeMap<String, WorkerPage>) {
    for t in active {
        let key = key_of(t);
        let reported = t["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .find_map(|w| pages.get(w).and_then(|p| p.get(&key)));
        if let (Some(fields), Some(o)) = (reported, t.as_object_mut()) {
            for (k, v) in fields {
                o.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Fetches the target pages of `workers` (id, web address) in parallel; a worker that fails
/// or times out is logged and left out.
async fn fetch_worker_pages(
    client: &reqwest::Client,
    workers: Vec<(String, String)>,
) -> BTreeMap<String, WorkerPage> {
    let fetches = workers.into_iter().map(|(id, addr)| async move {
        let url = format!("http://{addr}/api/v1/targets?state=active");
        let res = async {
            client
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json::<Json>()
                .await
        }
        .await;
        match res {
            Ok(v) => Some((id, parse_worker_page(&v))),
            Err(e) => {
                tracing::warn!(worker = %id, url = %url, error = %e, "cannot fetch worker targets");
                None
            }
        }
    });
    futures_util::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn worker_page_client() -> Option<reqwest::Client> {
    trawl_scrape::install_crypto_provider();
    match reqwest::Client::builder()
        .timeout(WORKER_PAGE_TIMEOUT)
        .connect_timeout(WORKER_PAGE_TIMEOUT)
        .build()
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the http client for worker target pages; target health stays unknown");
            None
        }
    }
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("enable_lifecycle", &self.enable_lifecycle)
            .finish_non_exhaustive()
    }
}

/// Workers per target, keyed by what identifies a target in the targets JSON.
type WorkersByKey = BTreeMap<(String, String, Labels), Vec<String>>;

/// Active targets of this replica's relabeling with their workers, and the key that finds
/// a target again in trawl-web's JSON (pool, URL, labels).
fn targets_snapshot(
    r: &SharedReplicator<ClusterState>,
    desired: &Desired,
) -> (TargetsSnapshot, WorkersByKey) {
    desired.with(|d| {
        let mut workers = BTreeMap::new();
        let active: Vec<ActiveTarget> = d
            .active
            .iter()
            .map(|t| {
                let cfg = t.config();
                let ws = read_with(&**r, |s: &ClusterState| {
                    s.workers_of(t.labels().stable_hash())
                });
                let key = (
                    cfg.job_name.clone(),
                    t.url().to_string(),
                    t.final_labels().clone(),
                );
                workers.entry(key).or_insert_with(Vec::new).extend(ws);
                let label_or = |name: &str, dflt: String| {
                    t.labels().get(name).map(str::to_string).unwrap_or(dflt)
                };
                ActiveTarget {
                    discovered_labels: t.discovered_labels().clone(),
                    labels: t.final_labels().clone(),
                    scrape_pool: cfg.job_name.clone(),
                    scrape_url: t.url().to_string(),
                    global_url: t.url().to_string(),
                    last_error: String::new(),
                    last_scrape: None,
                    last_scrape_duration: 0.0,
                    health: TargetHealth::Unknown,
                    scrape_interval: label_or(
                        SCRAPE_INTERVAL_LABEL,
                        cfg.scrape_interval.to_string(),
                    ),
                    scrape_timeout: label_or(SCRAPE_TIMEOUT_LABEL, cfg.scrape_timeout.to_string()),
                }
            })
            .collect();
        let dropped = d
            .dropped
            .iter()
            .flat_map(|(job, ls)| {
                ls.iter().map(move |l| DroppedTarget {
                    discovered_labels: l.clone(),
                    scrape_pool: job.clone(),
                })
            })
            .collect();
        let pools: Vec<String> = d
            .config
            .scrape_configs
            .iter()
            .map(|s| s.job_name.clone())
            .collect();
        let dropped_counts = pools
            .iter()
            .map(|p| {
                let n = d.dropped_total.get(p).copied().unwrap_or(0);
                (p.clone(), usize::try_from(n).unwrap_or(usize::MAX))
            })
            .collect();
        (
            TargetsSnapshot {
                scrape_pools: pools,
                active,
                dropped,
                dropped_counts,
            },
            workers,
        )
    })
}

fn json_labels(v: &Json) -> Labels {
    Labels::from_pairs(
        v.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))),
    )
}

/// The router of the coordinator's HTTP API.
pub fn router(
    replicator: SharedReplicator<ClusterState>,
    desired: Arc<Desired>,
    counters: Arc<LeaderCounters>,
    ready: Arc<AtomicBool>,
    enable_lifecycle: bool,
    flags: BTreeMap<String, String>,
) -> axum::Router {
    let storage = Arc::new(trawl_storage::mem::MemStorage::new(Default::default()));
    let mut status = StatusInfo::with_config(desired.config_yaml());
    status.flags = flags.clone();
    status.start_time = std::time::SystemTime::now();
    let status = Arc::new(status);
    desired.set_status(status.clone());
    let (tr, td) = (replicator.clone(), desired.clone());
    let (mr, md, mc) = (replicator.clone(), desired.clone(), counters.clone());
    let mut api = trawl_web::ApiState::for_storage(storage)
        .with_targets(Arc::new(move || targets_snapshot(&tr, &td).0))
        .with_status(status)
        .with_ready(ready.clone())
        .with_metrics(Arc::new(move || render_metrics(&mr, &md, &mc)));
    if enable_lifecycle {
        let d = desired.clone();
        api = api.with_reload(Arc::new(move || d.reload()));
    }
    let inner = trawl_web::router(api);
    let st = HttpState {
        replicator,
        desired,
        counters,
        ready,
        enable_lifecycle,
        flags,
        inner: inner.clone(),
        client: worker_page_client(),
    };
    axum::Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/targets", get(targets).post(targets))
        .with_state(st)
        .fallback_service(inner)
}

async fn cluster(State(st): State<HttpState>) -> Response {
    if !st.ready.load(Ordering::Relaxed) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status":"error","errorType":"unavailable","error":"Service Unavailable"}),
        );
    }
    let status = st.replicator.status().borrow().clone();
    let data = read_with(&*st.replicator, |s: &ClusterState| {
        let workers: Vec<Json> = s
            .workers
            .values()
            .map(|w| {
                json!({
                    "id": w.id,
                    "state": if w.up { "up" } else { "down" },
                    "address": w.grpc_address,
                    "zone": w.zone,
                    "targets": s.views.get(&w.id).map_or(0, |v| v.len()),
                    "series": w.load.head_series,
                    "samplesPerSecond": w.load.samples_per_second,
                })
            })
            .collect();
        let replicas: Vec<Json> = status
            .members
            .iter()
            .map(|(id, addr)| {
                json!({
                    "id": id,
                    "address": addr,
                    "leader": status.leader == Some(*id),
                    "term": status.term,
                })
            })
            .collect();
        json!({
            "epoch": s.epoch,
            "term": s.epoch_term,
            "replicas": replicas,
            "workers": workers,
        })
    });
    json_response(StatusCode::OK, &json!({"status": "success", "data": data}))
}

fn json_response(status: StatusCode, v: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// trawl-web's `/api/v1/targets` answer with `"workers"` added to every active target.
async fn targets(State(st): State<HttpState>, req: Request) -> Response {
    let resp = match st.inner.clone().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(mut v) = serde_json::from_slice::<Json>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let (_, workers) = targets_snapshot(&st.replicator, &st.desired);
    if let Some(active) = v
        .pointer_mut("/data/activeTargets")
        .and_then(Json::as_array_mut)
    {
        let mut named = std::collections::BTreeSet::new();
        for t in active.iter_mut() {
            let mut ws = workers.get(&key_of(t)).cloned().unwrap_or_default();
            ws.sort();
            ws.dedup();
            named.extend(ws.iter().cloned());
            if let Some(o) = t.as_object_mut() {
                o.insert("workers".into(), json!(ws));
            }
        }
        if let Some(client) = &st.client {
            let addrs: Vec<(String, String)> = read_with(&*st.replicator, |s: &ClusterState| {
                named
                    .iter()
                    .filter_map(|id| s.workers.get(id))
                    .filter(|w| !w.web_address.is_empty())
                    .map(|w| (w.id.clone(), w.web_address.clone()))
                    .collect()
            });
            let pages = fetch_worker_pages(client, addrs).await;
            fill_health(active, &pages);
        }
    }
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(v.to_string()))
}

/// `/metrics`: the coordinator's own figures in the text exposition format.
pub fn render_metrics(
    r: &SharedReplicator<ClusterState>,
    desired: &Desired,
    counters: &LeaderCounters,
) -> String {
    use std::fmt::Write as _;
    let status = r.status().borrow().clone();
    let (epoch, up, down, targets, handoffs) = read_with(&**r, |s: &ClusterState| {
        let up = s.workers.values().filter(|w| w.up).count();
        (
            s.epoch,
            up,
            s.workers.len() - up,
            s.targets.len(),
            s.handoffs_pending(),
        )
    });
    let reloads = desired.reloads();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "trawl_coordinator_epoch",
        "The current assignment epoch.",
        "gauge",
        &[("", epoch as f64)],
    );
    gauge(
        "trawl_coordinator_term",
        "The current Raft term.",
        "gauge",
        &[("", status.term as f64)],
    );
    gauge(
        "trawl_coordinator_is_leader",
        "Whether this replica leads.",
        "gauge",
        &[("", f64::from(u8::from(status.is_leader())))],
    );
    gauge(
        "trawl_coordinator_workers",
        "Registered workers by state.",
        "gauge",
        &[
            ("{state=\"up\"}", up as f64),
            ("{state=\"down\"}", down as f64),
        ],
    );
    gauge(
        "trawl_coordinator_targets",
        "Targets in the replicated target set.",
        "gauge",
        &[("", targets as f64)],
    );
    gauge(
        "trawl_coordinator_handoffs_pending",
        "Targets moving between workers, waiting for the new owner's first scrape.",
        "gauge",
        &[("", handoffs as f64)],
    );
    gauge(
        "trawl_coordinator_proposals_total",
        "Commands proposed to the replicated log by this replica.",
        "counter",
        &[("", counters.proposals.load(Ordering::Relaxed) as f64)],
    );
    gauge(
        "trawl_coordinator_proposal_failures_total",
        "Proposals that failed (not leader, no quorum, storage).",
        "counter",
        &[(
            "",
            counters.proposal_failures.load(Ordering::Relaxed) as f64,
        )],
    );
    gauge(
        "trawl_config_last_reload_successful",
        "Whether the last configuration reload attempt was successful.",
        "gauge",
        &[("", f64::from(u8::from(reloads.last_successful)))],
    );
    gauge(
        "trawl_config_reloads_total",
        "Configuration reloads by result (the initial load not included).",
        "counter",
        &[
            ("{result=\"success\"}", reloads.successes as f64),
            ("{result=\"failure\"}", reloads.failures as f64),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::leader::propose;
    use crate::state::Op;

    const CONFIG: &str = "scrape_configs:
  - job_name: node
    relabel_configs:
      - source_labels: [__address__]
        regex: 'skip.*'
        action: drop
    static_configs:
      - targets: ['a:9100', 'b:9100', 'skip:1']
";

    async fn setup(lifecycle: bool) -> (axum::Router, SharedReplicator<ClusterState>) {
        // Nothing listens there: the worker's page cannot be fetched.
        setup_with_worker_web(lifecycle, "127.0.0.1:1").await
    }

    async fn setup_with_worker_web(
        lifecycle: bool,
        worker_web: &str,
    ) -> (axum::Router, SharedReplicator<ClusterState>) {
        let path = Path::new("/nonexistent/prometheus.yml");
        let cfg = trawl_config::load_str(CONFIG, path, Default::default()).expect("config");
        let raw = cfg
            .source
            .scrape_configs
            .iter()
            .flatten()
            .flatten()
            .cloned()
            .collect();
        let desired = Desired::new(path.to_owned(), cfg, raw);
        desired.apply_groups(
            [(
                "node".to_string(),
                vec![trawl_discovery::TargetGroup {
                    source: "0".into(),
                    targets: ["a:9100", "b:9100", "skip:1"]
                        .iter()
                        .map(|a| Labels::from_pairs([("__address__", *a)]))
                        .collect(),
                    labels: Labels::empty(),
                }],
            )]
            .into(),
        );
        let r: SharedReplicator<ClusterState> = Arc::new(
            trawl_raft::Local::open(None, ClusterState::new(1), "127.0.0.1:7001".into())
                .expect("local"),
        );
        let c = LeaderCounters::default();
        propose(
            &r,
            &c,
            Op::RegisterWorker {
                id: "w1".into(),
                grpc_address: "127.0.0.1:7101".into(),
                web_address: worker_web.into(),
                zone: String::new(),
                now_ms: 0,
            },
        )
        .await
        .expect("register");
        let (jobs, targets) = desired.with(|d| (d.jobs.clone(), d.targets.clone()));
        propose(&r, &c, Op::SetTargets { jobs, targets })
            .await
            .expect("targets");
        let router = router(
            r.clone(),
            desired,
            Arc::new(c),
            Arc::new(AtomicBool::new(true)),
            lifecycle,
            BTreeMap::new(),
        );
        (router, r)
    }

    async fn call(router: &axum::Router, method: &str, uri: &str) -> (StatusCode, String) {
        let req = HttpRequest::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }

    #[tokio::test]
    async fn cluster_has_the_documented_shape() {
        let (router, _) = setup(false).await;
        let (status, body) = call(&router, "GET", "/api/v1/cluster").await;
        assert_eq!(status, StatusCode::OK);
        let v: Json = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v,
            json!({"status":"success","data":{"epoch":1,"term":1,
                "replicas":[{"id":1,"address":"127.0.0.1:7001","leader":true,"term":1}],
                "workers":[{"id":"w1","state":"up","address":"127.0.0.1:7101","zone":"",
                    "targets":2,"series":0,"samplesPerSecond":0.0}]}})
        );
    }

    #[tokio::test]
    async fn targets_name_their_workers() {
        let (router, _) = setup(false).await;
        let (status, body) = call(&router, "GET", "/api/v1/targets").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Json = serde_json::from_str(&body).expect("json");
        let active = v["data"]["activeTargets"].as_array().expect("active");
        assert_eq!(active.len(), 2);
        for t in active {
            assert_eq!(t["workers"], json!(["w1"]));
            assert_eq!(t["health"], "unknown");
            assert_eq!(t["scrapePool"], "node");
        }
        assert_eq!(
            v["data"]["droppedTargets"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(v["data"]["droppedTargetCounts"], json!({"node": 1}));
        // Filters are trawl-web's.
        let (_, body) = call(&router, "GET", "/api/v1/targets?state=dropped").await;
        let v: Json = serde_json::from_str(&body).expect("json");
        assert_eq!(v["data"]["activeTargets"], json!([]));
    }

    #[tokio::test]
    async fn lifecycle_health_and_metrics() {
        let (router, _) = setup(false).await;
        assert_eq!(call(&router, "GET", "/-/healthy").await.0, StatusCode::OK);
        assert_eq!(call(&router, "GET", "/-/ready").await.0, StatusCode::OK);
        assert_eq!(
            call(&router, "POST", "/-/reload").await.0,
            StatusCode::FORBIDDEN
        );
        let (status, body) = call(&router, "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            "trawl_coordinator_epoch 1",
            "trawl_coordinator_is_leader 1",
            "trawl_coordinator_targets 2",
            "trawl_coordinator_workers{state=\"up\"} 1",
            "trawl_coordinator_workers{state=\"down\"} 0",
            "trawl_coordinator_handoffs_pending 0",
            "trawl_coordinator_proposals_total 2",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} missing in\n{body}");
        }
        let (router, _) = setup(true).await;
        // The config file does not exist: the reload fails and says why.
        let (status, body) = call(&router, "POST", "/-/reload").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert!(body.contains("prometheus.yml"), "{body}");
    }

    /// A worker's web server on loopback whose `/api/v1/targets` answers what `page` holds.
    async fn fake_worker(page: Arc<std::sync::Mutex<Json>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let app = axum::Router::new().route(
            "/api/v1/targets",
            get(move || {
                let page = page.clone();
                async move {
                    let v = page.lock().map(|p| p.clone()).unwrap_or(Json::Null);
                    json_response(StatusCode::OK, &v)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    #[tokio::test]
    async fn targets_show_what_their_worker_reports() {
        let page = Arc::new(std::sync::Mutex::new(json!({
            "status": "success",
            "data": {"activeTargets": [], "droppedTargets": []}
        })));
        let addr = fake_worker(page.clone()).await;
        let (router, _) = setup_with_worker_web(false, &addr).await;

        // The worker answers but does not (yet) report the targets: they stay unknown.
        let (status, body) = call(&router, "GET", "/api/v1/targets").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Json = serde_json::from_str(&body).expect("json");
        let active = v["data"]["activeTargets"]
            .as_array()
            .expect("active")
            .clone();
        assert_eq!(active.len(), 2);
        for t in &active {
            assert_eq!(t["health"], "unknown", "{t}");
        }

        // The worker reports one target up and the other down, with the coordinator's own
        // pool, URL and labels.
        let reported: Vec<Json> = active
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let up = i == 0;
                json!({
                    "scrapePool": t["scrapePool"],
                    "scrapeUrl": t["scrapeUrl"],
                    "labels": t["labels"],
                    "discoveredLabels": t["discoveredLabels"],
                    "health": if up { "up" } else { "down" },
                    "lastScrape": format!("2026-12-07T02:00:0{i}.5Z"),
                    "lastScrapeDuration": 0.25 + i as f64,
                    "lastError": if up { "" } else { "connection refused" },
                })
            })
            .collect();
        *page.lock().expect("lock") = json!({
            "status": "success",
            "data": {"activeTargets": reported, "droppedTargets": []}
        });
        let (_, body) = call(&router, "GET", "/api/v1/targets").await;
        let v: Json = serde_json::from_str(&body).expect("json");
        let active = v["data"]["activeTargets"].as_array().expect("active");
        assert_eq!(active.len(), 2);
        for t in active {
            let want = reported
                .iter()
                .find(|r| r["scrapeUrl"] == t["scrapeUrl"])
                .expect("reported");
            for f in HEALTH_FIELDS {
                assert_eq!(t[f], want[f], "{f} of {t}");
            }
            assert_eq!(t["workers"], json!(["w1"]));
        }
        // The filters still apply to the merged answer.
        let (_, body) = call(&router, "GET", "/api/v1/targets?state=dropped").await;
        let v: Json = serde_json::from_str(&body).expect("json");
        assert_eq!(v["data"]["activeTargets"], json!([]));
    }

    #[test]
    fn health_comes_from_the_first_worker_that_reports_the_target() {
        let labels = json!({"instance": "a:9100", "job": "node"});
        let target = |workers: Json| {
            json!({"scrapePool": "node", "scrapeUrl": "http://a:9100/metrics",
                "labels": labels, "health": "unknown", "lastError": "", "workers": workers})
        };
        let page = |health: &str, other_url: bool| {
            let url = if other_url {
                "http://b:9100/metrics"
            } else {
                "http://a:9100/metrics"
            };
            parse_worker_page(&json!({"data": {"activeTargets": [
                {"scrapePool": "node", "scrapeUrl": url, "labels": labels,
                 "health": health, "lastError": health, "lastScrape": "t",
                 "lastScrapeDuration": 1.0}
            ]}}))
        };
        let pages: BTreeMap<String, WorkerPage> = [
            ("w1".to_string(), page("down", true)),
            ("w2".to_string(), page("up", false)),
            ("w3".to_string(), page("down", false)),
        ]
        .into();
        let mut active = vec![
            // w1 does not report this target (another URL), w2 does, w3 comes later.
            target(json!(["w1", "w2", "w3"])),
            target(json!(["w3", "w2"])),
            // w0 did not answer.
            target(json!(["w0"])),
            target(json!([])),
        ];
        fill_health(&mut active, &pages);
        let health: Vec<&str> = active
            .iter()
            .map(|t| t["health"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(health, ["up", "down", "unknown", "unknown"]);
        assert_eq!(active[0]["lastError"], "up");
        assert_eq!(active[0]["lastScrapeDuration"], 1.0);
        assert_eq!(active[2]["lastError"], "");
        // Labels are part of the match: the same pool and URL with other labels is another
        // target.
        let mut other = vec![
            json!({"scrapePool": "node", "scrapeUrl": "http://a:9100/metrics",
            "labels": {"instance": "a:9100", "job": "node", "zone": "x"},
            "health": "unknown", "workers": ["w2"]}),
        ];
        fill_health(&mut other, &pages);
        assert_eq!(other[0]["health"], "unknown");
        // Not a targets answer: nothing reported.
        assert!(parse_worker_page(&json!({"status": "error"})).is_empty());
    }
}
