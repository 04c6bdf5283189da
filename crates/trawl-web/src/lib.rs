//! `trawl-web`: the Prometheus HTTP API (`/api/v1/*`, `/-/*`, `/metrics`) as an axum
//! [`Router`], served by `trawl standalone` and later by the cluster querier.
//!
//! Job: turn HTTP requests (GET query strings and POST form bodies, as Grafana sends them)
//! into calls on the sources held by [`ApiState`] — a [`trawl_promql::Queryable`] for
//! PromQL, a [`LabelSource`] for the metadata endpoints, a [`TargetsSource`] for the scrape
//! state, a [`StatusInfo`] for the status pages — and answer with Prometheus's JSON, byte for
//! byte where Prometheus's own encoding is fixed (sample values as strings in Go's shortest
//! float format, timestamps as seconds with millisecond fraction).
//!
//! Invariants:
//! - Parameter parsing, error types, HTTP status codes and error texts are Prometheus's
//!   (`bad_data` 400, `execution` 422, `timeout`/`canceled`/`unavailable` 503, `internal` 500,
//!   `not_found` 404).
//! - Every `/api/v1/*` endpoint answers `503 Service Unavailable` until [`ApiState::ready`] is
//!   set, as Prometheus does before its storage is open.
//! - PromQL evaluation is synchronous and CPU-bound, so it runs on tokio's blocking pool and
//!   never stalls the reactor; the engine's own deadline enforces `timeout`.
//! - The crate holds no state of its own: everything comes from [`ApiState`], so the same
//!   router serves one shard or a fan-out.
//! - Request parameters are read as Go's `r.FormValue` / `r.Form` does: a form-encoded POST
//!   body first, then the URL query; `match[]` may repeat.
//!
//! Endpoints: `/api/v1/query`, `/api/v1/query_range` (GET, POST), `/api/v1/query_exemplars`
//! (always empty), `/api/v1/format_query`, `/api/v1/labels`, `/api/v1/label/{name}/values`,
//! `/api/v1/series`, `/api/v1/metadata`, `/api/v1/targets/metadata` (from
//! [`TargetsSource::metadata`]), `/api/v1/targets`, `/api/v1/scrape_pools`,
//! `/api/v1/alertmanagers`, `/api/v1/rules`, `/api/v1/alerts` (empty: no rule engine),
//! `/api/v1/status/{config,flags,buildinfo,runtimeinfo,tsdb,walreplay}`, `/-/healthy`,
//! `/-/ready`, `/-/reload`, `/-/quit`, `/metrics`. Remote read/write live in `trawl-remote`.
//!
//! Reference behaviour: Prometheus 3 where it extends the API (`limit`, `lookback_delta`,
//! `infos`, `droppedTargetCounts`, UTF-8 label names, `U__` escaped names in paths), and
//! otherwise the real Prometheus 2.42 binary, which `tests/vs_prometheus.rs` compares against
//! request by request. Known differences:
//! - Parse errors carry `line:col` only where it is the end of the input (`promql-parser`
//!   reports no positions); other parse errors read `parse error: <text>`.
//! - `stats` reports the whole evaluation as `evalTotalTime`/`innerEvalTime` and the result's
//!   sample count as `totalQueryableSamples`/`peakSamples`.
//! - `/api/v1/status/tsdb` counts every stored series, not only the head's, and shows
//!   `minTime`/`maxTime`/`chunkCount` only when [`StatusInfo::tsdb`] provides them.
//! - Responses are not gzip-compressed.
//! - A client that disconnects does not cancel its query; the query's timeout still bounds it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use trawl_promql::{EngineOptions, Queryable};

mod api;
pub mod format;
mod params;
pub mod source;
pub mod status;
pub mod targets;

pub use api::router;
pub use source::{LabelSource, StorageLabels, StorageQueryable};
pub use status::{BuildInfo, ConfigStatus, StatusInfo, TsdbStatus};
pub use targets::{
    ActiveTarget, DroppedTarget, NoTargets, TargetHealth, TargetMetadata, TargetsSnapshot,
    TargetsSource,
};

/// Re-exported so callers name the same router type.
pub use axum::Router;

/// The crate's error type: failures of the sources behind the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage failed.
    #[error("{0}")]
    Storage(#[from] trawl_storage::StorageError),
    /// Any other source failure, with its text.
    #[error("{0}")]
    Source(String),
}

/// Prometheus's default `--query.max-concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 20;

/// Reloads the configuration; `Err` carries the reason shown to the caller.
pub type ReloadFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
/// Requests shutdown (returns at once; the process stops on its own time).
pub type QuitFn = Arc<dyn Fn() + Send + Sync>;
/// Renders the process's own metrics in the Prometheus text exposition format.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;
/// "Now" in milliseconds since the epoch (replaceable in tests).
pub type NowFn = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Everything the API serves from. Cheap to clone (all shared).
#[derive(Clone)]
pub struct ApiState {
    /// What PromQL evaluates over.
    pub queryable: Arc<dyn Queryable>,
    /// Label names/values and series for the metadata endpoints.
    pub labels: Arc<dyn LabelSource>,
    /// The scrape state for `/api/v1/targets` and `/api/v1/scrape_pools`.
    pub targets: Arc<dyn TargetsSource>,
    /// Configuration, flags, build and runtime information.
    pub status: Arc<StatusInfo>,
    /// `POST|PUT /-/reload`; `None` answers 403 as Prometheus without `--web.enable-lifecycle`.
    pub reload: Option<ReloadFn>,
    /// `POST|PUT /-/quit` asks the process to shut down; `None` answers 403 as Prometheus
    /// without `--web.enable-lifecycle`.
    pub quit: Option<QuitFn>,
    /// `/metrics`.
    pub metrics: MetricsFn,
    /// Until set, `/-/ready` and every `/api/v1/*` endpoint answer 503.
    pub ready: Arc<AtomicBool>,
    /// Lookback delta, default query timeout and max samples.
    pub engine: EngineOptions,
    /// The clock used when `time` is not given.
    pub now: NowFn,
    /// Queries evaluated at once (`--query.max-concurrency`, default 20); more wait their turn
    /// within their timeout.
    pub query_slots: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    /// A state over `queryable` and `labels` with no targets, default status, lifecycle API
    /// disabled, empty `/metrics`, default engine options, the system clock, and **ready**.
    pub fn new(queryable: Arc<dyn Queryable>, labels: Arc<dyn LabelSource>) -> Self {
        Self {
            queryable,
            labels,
            targets: Arc::new(NoTargets),
            status: Arc::new(StatusInfo::default()),
            reload: None,
            quit: None,
            metrics: Arc::new(String::new),
            ready: Arc::new(AtomicBool::new(true)),
            engine: EngineOptions::default(),
            now: Arc::new(system_now_ms),
            query_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_CONCURRENCY)),
        }
    }

    /// A state reading everything from one storage shard.
    pub fn for_storage<S: trawl_storage::Storage + ?Sized + 'static>(storage: Arc<S>) -> Self {
        Self::new(
            Arc::new(StorageQueryable(storage.clone())),
            Arc::new(StorageLabels(storage)),
        )
    }

    /// Sets the targets source.
    pub fn with_targets(mut self, t: Arc<dyn TargetsSource>) -> Self {
        self.targets = t;
        self
    }

    /// Sets the status information.
    pub fn with_status(mut self, s: Arc<StatusInfo>) -> Self {
        self.status = s;
        self
    }

    /// Enables the lifecycle API with this reload function.
    pub fn with_reload(mut self, f: ReloadFn) -> Self {
        self.reload = Some(f);
        self
    }

    /// Lets `/-/quit` request shutdown through `f` (lifecycle API).
    pub fn with_quit(mut self, f: QuitFn) -> Self {
        self.quit = Some(f);
        self
    }

    /// Sets the `/metrics` renderer.
    pub fn with_metrics(mut self, f: MetricsFn) -> Self {
        self.metrics = f;
        self
    }

    /// Shares this readiness flag.
    pub fn with_ready(mut self, r: Arc<AtomicBool>) -> Self {
        self.ready = r;
        self
    }

    /// Sets the engine options.
    pub fn with_engine(mut self, o: EngineOptions) -> Self {
        self.engine = o;
        self
    }

    /// Sets how many queries are evaluated at once (at least 1).
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.query_slots = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// Sets the clock.
    pub fn with_now(mut self, f: NowFn) -> Self {
        self.now = f;
        self
    }
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("reload", &self.reload.is_some())
            .field("quit", &self.quit.is_some())
            .field("ready", &self.ready)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The system clock in milliseconds since the epoch.
pub fn system_now_ms() -> i64 {
    trawl_promql::system_time_ms(&std::time::SystemTime::now())
}

/// Flags as `/api/v1/status/flags` shows them (name without dashes → value).
pub type Flags = BTreeMap<String, String>;
