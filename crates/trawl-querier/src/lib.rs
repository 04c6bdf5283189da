//! `trawl-querier`: the querier role. Stateless: it learns the workers from the
//! coordinators, fans every read out to all of them, merges and deduplicates what they hold,
//! evaluates PromQL, and serves Prometheus's HTTP API, the gRPC Query API and remote write.
//!
//! Parts:
//! - [`cluster`]: membership from `GetCluster` polled on `--coordinator.address` (a comma
//!   list, tried in turn), one lazily connected channel per worker, the replication factor.
//!   Not ready (503 on `/-/ready` and `/api/v1/*`) until the first answer.
//! - [`fanout`]: [`FanOut`], the engine's `Queryable` and the API's `LabelSource`, sending
//!   each request to every worker in parallel, each bounded by `--query.shard-timeout`.
//! - [`dedup`]: pure merge and replica deduplication of one series from several shards (the
//!   rule is stated there).
//! - [`write`]: `POST /api/v1/write` routed per series to R workers by rendezvous hashing.
//!
//! **Partial responses** (Thanos's policy). Workers the coordinator reports DOWN are asked
//! too (they may be back); a shard that errors or times out is *missing*. With replication
//! factor R (capped at the number of workers) ≥ 2 and at most R-1 shards missing, every
//! series still has a copy on a shard that answered, so the answer is complete and carries
//! no warning. Otherwise each missing shard is named in a warning
//! (`partial response: shard w3 (127.0.0.1:7103) unavailable: <reason>`) and the answer is
//! built from the rest; with `--query.partial-response=false` the query fails with the same
//! text (a storage error: HTTP 500 `internal` as Prometheus answers storage errors; gRPC as the Query service maps it). When no
//! shard answered, the request fails whatever the flag says.
//!
//! Known limits: the metadata endpoints (`/api/v1/labels`, `/api/v1/label/*/values`,
//! `/api/v1/series`) have no warnings channel in `trawl-web`, so a partial metadata answer is
//! given without a warning (still an error with partial responses disabled), and counted in
//! `/metrics`. `/api/v1/targets`, `/api/v1/targets/metadata` and `/api/v1/scrape_pools` are
//! proxied to a coordinator replica's web address, the leader first.
//!
//! Serving ([`QuerierArgs::serve`]): the HTTP API on `--web.listen-address` (`trawl-web`'s
//! router as the fallback behind the querier's own `/api/v1/write` and targets routes), the
//! gRPC Query API (`trawl-query`) on `--grpc.listen-address` when set, both over the same
//! [`FanOut`]. Once both are bound it logs `querier listening` with `web` and `grpc` fields
//! (`grpc` empty when off). `/metrics` carries `trawl_querier_shard_requests_total`,
//! `_shard_failures_total`, `_partial_responses_total`, `_failed_fanouts_total`,
//! `_dedup_series_total`, `_dedup_samples_dropped_total`, `_remote_write_*_total` and the
//! gauges `trawl_querier_workers`, `_workers_up`, `_replication_factor`. Nothing is written
//! to disk.

// Proto literals always end with `..Default::default()` (project rule: fields added later
// must not break them), even where every field is given today.
#![allow(clippy::needless_update)]

pub mod cluster;
pub mod dedup;
pub mod fanout;
pub mod metrics;
pub mod write;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use trawl_model::PromDuration;
use trawl_promql::EngineOptions;
use trawl_web::{ApiState, StatusInfo};

pub use cluster::{ClusterView, Membership, Worker};
pub use fanout::{FanOut, FanOutOptions, ShardFailure, partial_policy};
pub use metrics::Metrics;

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum QuerierError {
    /// A flag value is invalid.
    #[error("invalid flag --{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    /// An address does not parse as a gRPC endpoint.
    #[error("invalid address {address}: {reason}")]
    Address { address: String, reason: String },
    /// No coordinator answered `GetCluster`.
    #[error("no coordinator answered: {0}")]
    NoCoordinator(String),
    /// Binding or serving a listener failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] trawl_query::Error),
}

fn parse_duration(s: &str) -> Result<PromDuration, String> {
    PromDuration::parse(s).map_err(|e| e.to_string())
}

/// Flags of `trawl querier`, named like Prometheus's (and Thanos's for partial responses).
#[derive(Debug, Clone, Args)]
pub struct QuerierArgs {
    /// Coordinator gRPC addresses (host:port, comma-separated); tried in turn.
    #[arg(long = "coordinator.address", required = true, value_delimiter = ',')]
    pub coordinator_address: Vec<String>,
    /// How often the cluster state is fetched from the coordinators.
    #[arg(long = "coordinator.poll-interval", default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: PromDuration,
    /// Address to listen on for the web interface and API.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    pub listen_address: String,
    /// Address for the gRPC Query API (off unless set).
    #[arg(long = "grpc.listen-address")]
    pub grpc_listen_address: Option<String>,
    /// Answer from the shards that answered, with a warning naming the missing ones; with
    /// false, fail the query instead.
    #[arg(
        long = "query.partial-response",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub partial_response: bool,
    /// The maximum lookback duration for retrieving metrics during expression evaluations.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration)]
    pub lookback_delta: PromDuration,
    /// Maximum time a query may take before being aborted.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: PromDuration,
    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub max_samples: usize,
    /// Maximum number of queries executed concurrently.
    #[arg(long = "query.max-concurrency", default_value_t = trawl_web::DEFAULT_MAX_CONCURRENCY)]
    pub max_concurrency: usize,
    /// The longest one shard may take to answer; kept below --query.timeout.
    #[arg(long = "query.shard-timeout", default_value = "30s", value_parser = parse_duration)]
    pub shard_timeout: PromDuration,
    /// Limits of the gRPC Query server (`--grpc.max-concurrent-requests`,
    /// `--grpc.request-timeout`).
    #[command(flatten)]
    pub grpc_limits: trawl_proto::server::GrpcLimits,
    /// TLS of the gRPC Query server and of the connections to coordinators and workers
    /// (`--grpc.tls-cert-file`, `--grpc.tls-key-file`, `--grpc.tls-ca-file`).
    #[command(flatten)]
    pub tls: trawl_proto::tls::TlsFlags,
}

impl QuerierArgs {
    /// Flags as `/api/v1/status/flags` shows them.
    pub fn flags(&self) -> trawl_web::Flags {
        let mut m = trawl_web::Flags::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("coordinator.address", self.coordinator_address.join(","));
        put("coordinator.poll-interval", self.poll_interval.to_string());
        put("web.listen-address", self.listen_address.clone());
        put(
            "grpc.listen-address",
            self.grpc_listen_address.clone().unwrap_or_default(),
        );
        put("query.partial-response", self.partial_response.to_string());
        put("query.lookback-delta", self.lookback_delta.to_string());
        put("query.timeout", self.query_timeout.to_string());
        put("query.max-samples", self.max_samples.to_string());
        put("query.max-concurrency", self.max_concurrency.to_string());
        put("query.shard-timeout", self.shard_timeout.to_string());
        for (k, v) in self.grpc_limits.flags() {
            put(k, v);
        }
        for (k, v) in self.tls.flags() {
            put(k, v);
        }
        m
    }

    /// Engine settings from the flags.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            lookback_delta: self.lookback_delta.as_std(),
            timeout: self.query_timeout.as_std(),
            max_samples: self.max_samples,
            ..Default::default()
        }
    }

    /// Fan-out settings: the shard timeout is capped just below the query timeout, since a
    /// shard answering after the query gave up helps no one.
    pub fn fanout_options(&self) -> FanOutOptions {
        let query = self.query_timeout.as_std();
        let mut shard = self.shard_timeout.as_std();
        if shard >= query && !query.is_zero() {
            let capped = query.mul_f64(0.9).max(Duration::from_millis(1));
            tracing::warn!(
                shard_timeout = %self.shard_timeout,
                query_timeout = %self.query_timeout,
                "shard timeout not below the query timeout, capping it"
            );
            shard = capped;
        }
        FanOutOptions {
            shard_timeout: shard,
            partial_response: self.partial_response,
        }
    }

    fn coordinators(&self) -> Result<Vec<String>, QuerierError> {
        let v: Vec<String> = self
            .coordinator_address
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if v.is_empty() {
            return Err(QuerierError::Flag {
                flag: "coordinator.address",
                reason: "no address given".into(),
            });
        }
        for a in &v {
            cluster::endpoint(a, Duration::from_secs(1), None)?;
        }
        Ok(v)
    }

    /// Runs until SIGTERM/SIGINT.
    pub fn run(self) -> ExitCode {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("trawl")
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the tokio runtime");
                return ExitCode::FAILURE;
            }
        };
        match rt.block_on(self.serve(wait_for_signal())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "trawl querier failed");
                ExitCode::FAILURE
            }
        }
    }

    /// Serves until `shutdown` resolves. Logs `querier listening` with the bound `web` and
    /// `grpc` addresses once both are bound (`grpc` empty when off).
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), QuerierError> {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "starting trawl querier"
        );
        let coordinators = self.coordinators()?;
        let tls = self.tls.load().map_err(|e| QuerierError::Flag {
            flag: "grpc.tls-*",
            reason: e.to_string(),
        })?;
        let fan_opts = self.fanout_options();
        let membership = Arc::new(
            Membership::new(fan_opts.shard_timeout.min(Duration::from_secs(5)))
                .with_tls(tls.as_ref().map(|t| t.client().clone())),
        );
        let metrics = Arc::new(Metrics::default());
        let fanout = Arc::new(FanOut::new(
            membership.clone(),
            tokio::runtime::Handle::current(),
            fan_opts,
            metrics,
        ));

        let listener = tokio::net::TcpListener::bind(&self.listen_address)
            .await
            .map_err(|source| QuerierError::Io {
                what: format!("listening on {}", self.listen_address),
                source,
            })?;
        let web_addr: SocketAddr = listener.local_addr().map_err(|source| QuerierError::Io {
            what: "web listener address".into(),
            source,
        })?;
        let grpc_listener =
            match &self.grpc_listen_address {
                Some(g) => Some(tokio::net::TcpListener::bind(g).await.map_err(|source| {
                    QuerierError::Io {
                        what: format!("listening on {g} for gRPC"),
                        source,
                    }
                })?),
                None => None,
            };
        let grpc_addr = grpc_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(web = %web_addr, grpc = %grpc_addr, "querier listening");

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let poll = tokio::spawn(membership.clone().run(
            coordinators,
            self.poll_interval.as_std().max(Duration::from_millis(10)),
            stopped(stop_rx.clone()),
        ));

        let status = Arc::new(status_info(&self));
        let router = router(
            fanout.clone(),
            self.engine_options(),
            status,
            self.max_concurrency,
        );
        let web_stop = stopped(stop_rx.clone());
        let web = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(web_stop)
                .await
        });
        let grpc = grpc_listener.map(|l| {
            let opts = trawl_query::QueryOptions {
                engine: self.engine_options(),
                max_concurrency: self.max_concurrency.max(1),
                ..Default::default()
            };
            let grpc_stop = stopped(stop_rx.clone());
            let q = fanout.clone();
            let limits = self.grpc_limits.clone();
            let server_tls = tls.as_ref().map(|t| t.server().clone());
            tokio::spawn(async move {
                trawl_query::serve_with_limits(
                    l,
                    q.clone(),
                    q,
                    opts,
                    &limits,
                    server_tls.as_ref(),
                    grpc_stop,
                )
                .await
            })
        });

        shutdown.await;
        tracing::info!("received shutdown signal, stopping");
        membership.ready().store(false, Ordering::Release);
        let _ = stop_tx.send(true);
        let mut result = Ok(());
        match tokio::time::timeout(Duration::from_secs(5), web).await {
            Ok(Ok(Err(e))) => {
                result = Err(QuerierError::Io {
                    what: "web server".into(),
                    source: e,
                })
            }
            Ok(Err(e)) => tracing::error!(error = %e, "web server task failed"),
            _ => {}
        }
        if let Some(g) = grpc {
            match tokio::time::timeout(Duration::from_secs(5), g).await {
                Ok(Ok(Err(e))) => result = result.and(Err(QuerierError::Grpc(e))),
                Ok(Err(e)) => tracing::error!(error = %e, "grpc server task failed"),
                _ => {}
            }
        }
        poll.abort();
        tracing::info!("see you next time");
        result
    }
}

fn status_info(args: &QuerierArgs) -> StatusInfo {
    let mut s = StatusInfo::default();
    s.flags = args.flags();
    s.hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    s.build.go_version = format!("rustc {}", env!("CARGO_PKG_RUST_VERSION"));
    s
}

/// Returns on SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What the querier's own routes share.
#[derive(Debug, Clone)]
struct AppState {
    fanout: Arc<FanOut>,
    http: Option<reqwest::Client>,
}

/// The querier's HTTP router: `trawl-web`'s Prometheus API over `fanout`, with remote write
/// and the targets endpoints (proxied to a coordinator) in front of it.
pub fn router(
    fanout: Arc<FanOut>,
    engine: EngineOptions,
    status: Arc<StatusInfo>,
    max_concurrency: usize,
) -> Router {
    let membership = fanout.membership().clone();
    let m = fanout.metrics().clone();
    let gauges_from = membership.clone();
    let metrics_fn: trawl_web::MetricsFn = Arc::new(move || {
        let view = gauges_from.snapshot();
        let (workers, up, rf) = view.as_ref().map_or((0, 0, 0), |v| {
            (v.workers.len(), v.up_ids().len(), v.replication_factor)
        });
        m.render(&[
            (
                "trawl_querier_workers",
                "Workers in the cluster state.",
                "gauge",
                workers as f64,
            ),
            (
                "trawl_querier_workers_up",
                "Workers the coordinator reports up.",
                "gauge",
                up as f64,
            ),
            (
                "trawl_querier_replication_factor",
                "Replication factor of the cluster.",
                "gauge",
                f64::from(rf),
            ),
            (
                "trawl_querier_cluster_polls_failed_total",
                "Cluster-state polls that reached no coordinator.",
                "counter",
                gauges_from.polls_failed() as f64,
            ),
        ])
    });
    let api = ApiState::new(fanout.clone(), fanout.clone())
        .with_ready(membership.ready())
        .with_engine(engine)
        .with_status(status)
        .with_metrics(metrics_fn)
        .with_max_concurrency(max_concurrency);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .inspect_err(
            |e| tracing::error!(error = %e, "cannot build the http client; targets proxy off"),
        )
        .ok();
    let state = AppState { fanout, http };
    Router::new()
        .route("/api/v1/targets", get(proxy_coordinator))
        .route("/api/v1/targets/metadata", get(proxy_coordinator))
        .route("/api/v1/scrape_pools", get(proxy_coordinator))
        .route(
            "/api/v1/write",
            post(remote_write).layer(DefaultBodyLimit::max(32 << 20)),
        )
        .with_state(state)
        .fallback_service(trawl_web::router(api))
}

async fn remote_write(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    write::handle(st.fanout, headers, body).await
}

fn api_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body = format!(
        "{{\"status\":\"error\",\"errorType\":\"{kind}\",\"error\":{}}}",
        json_string(msg)
    );
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Forwards the request (path and query) to the coordinator replicas' web addresses in
/// turn, the leader first, answering with the first one that answers.
async fn proxy_coordinator(State(st): State<AppState>, uri: Uri) -> Response {
    let membership = st.fanout.membership();
    if !membership.ready().load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let targets: Vec<String> = membership
        .snapshot()
        .map(|v| v.coordinator_web.clone())
        .unwrap_or_default();
    let path_q = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut last = "no coordinator web address is known".to_string();
    let Some(http) = st.http.as_ref() else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no http client",
        );
    };
    for addr in targets {
        let base = if addr.contains("://") {
            addr.clone()
        } else {
            format!("http://{addr}")
        };
        let url = format!("{}{path_q}", base.trim_end_matches('/'));
        match http.get(&url).send().await {
            Ok(resp) => {
                let status =
                    StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let ct = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
                match resp.bytes().await {
                    Ok(b) => {
                        let mut r = Response::new(Body::from(b));
                        *r.status_mut() = status;
                        if let Some(ct) = ct {
                            r.headers_mut().insert(header::CONTENT_TYPE, ct);
                        }
                        return r;
                    }
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            Err(e) => {
                tracing::debug!(coordinator = %addr, error = %e, "targets proxy failed");
                last = format!("{addr}: {e}");
            }
        }
    }
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &format!("cannot reach a coordinator: {last}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: QuerierArgs,
    }

    #[test]
    fn flags_parse_as_prometheus_writes_them() {
        let c = Cli::try_parse_from(["q", "--coordinator.address=a:1,b:2"]).expect("parse");
        assert_eq!(c.args.coordinator_address, ["a:1", "b:2"]);
        assert!(c.args.partial_response);
        assert_eq!(c.args.listen_address, "0.0.0.0:9090");
        assert_eq!(
            c.args.fanout_options().shard_timeout,
            Duration::from_secs(30)
        );
        let c = Cli::try_parse_from([
            "q",
            "--coordinator.address",
            "a:1",
            "--query.partial-response=false",
            "--query.timeout=10s",
            "--query.shard-timeout=20s",
        ])
        .expect("parse");
        assert!(!c.args.partial_response);
        // Capped below the query timeout.
        assert!(c.args.fanout_options().shard_timeout < Duration::from_secs(10));
        let c = Cli::try_parse_from(["q", "--coordinator.address=a:1", "--query.partial-response"])
            .expect("bare flag");
        assert!(c.args.partial_response);
        assert!(Cli::try_parse_from(["q"]).is_err());
        assert!(
            Cli::try_parse_from([
                "q",
                "--coordinator.address=a:1",
                "--query.partial-response=maybe"
            ])
            .is_err()
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
