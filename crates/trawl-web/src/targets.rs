//! The scrape state as the API shows it. The owner of the scrape manager maps its own state
//! into these plain structs; the API filters and encodes them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use trawl_model::Labels;

/// A target's health as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetHealth {
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed.
    Down,
    /// Not scraped yet.
    #[default]
    Unknown,
}

impl TargetHealth {
    /// `"up"`, `"down"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::Up => "up",
            TargetHealth::Down => "down",
            TargetHealth::Unknown => "unknown",
        }
    }
}

/// One scraped target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActiveTarget {
    /// Labels before relabeling (the discovered `__meta_*`, `__address__`, ... set).
    pub discovered_labels: Labels,
    /// Labels after relabeling, without `__`-prefixed ones (as attached to the samples).
    pub labels: Labels,
    /// The job name.
    pub scrape_pool: String,
    /// The URL scraped.
    pub scrape_url: String,
    /// The URL with the host replaced by the external hostname (`--web.external-url`'s host).
    pub global_url: String,
    /// Text of the last scrape's error, empty when it succeeded.
    pub last_error: String,
    /// When the last scrape started; `None` before the first one (shown as Go's zero time).
    pub last_scrape: Option<SystemTime>,
    /// Duration of the last scrape in seconds.
    pub last_scrape_duration: f64,
    /// Health.
    pub health: TargetHealth,
    /// Effective interval, as written in Prometheus duration syntax (`"15s"`).
    pub scrape_interval: String,
    /// Effective timeout, as written in Prometheus duration syntax (`"10s"`).
    pub scrape_timeout: String,
}

/// A discovered target that relabeling dropped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DroppedTarget {
    /// Labels before relabeling.
    pub discovered_labels: Labels,
    /// The job name.
    pub scrape_pool: String,
}

/// What the scrape side looks like right now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetsSnapshot {
    /// Every configured scrape pool (job), also those without targets.
    pub scrape_pools: Vec<String>,
    /// Scraped targets, in any order (the API groups them by pool, pools sorted).
    pub active: Vec<ActiveTarget>,
    /// Dropped targets kept for display (Prometheus keeps at most `keep_dropped_targets`).
    pub dropped: Vec<DroppedTarget>,
    /// Dropped targets per pool, counting also those not kept. Pools missing here are counted
    /// from `dropped`.
    pub dropped_counts: BTreeMap<String, usize>,
}

/// One metric's `# HELP` / `# TYPE` / `# UNIT` as last scraped from one target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetMetadata {
    /// The target's labels (as [`ActiveTarget::labels`]).
    pub target: Labels,
    /// The metric family name.
    pub metric: String,
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` or
    /// `unknown`.
    pub typ: String,
    /// The help text.
    pub help: String,
    /// The unit, empty when none.
    pub unit: String,
}

/// Gives the current scrape state.
pub trait TargetsSource: Send + Sync {
    /// A consistent snapshot.
    fn snapshot(&self) -> TargetsSnapshot;

    /// Metric metadata per active target, for `/api/v1/metadata` and
    /// `/api/v1/targets/metadata`. None by default.
    fn metadata(&self) -> Vec<TargetMetadata> {
        Vec::new()
    }
}

impl<F: Fn() -> TargetsSnapshot + Send + Sync> TargetsSource for F {
    fn snapshot(&self) -> TargetsSnapshot {
        self()
    }
}

/// No scraping here (a querier): no pools, no targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTargets;

impl TargetsSource for NoTargets {
    fn snapshot(&self) -> TargetsSnapshot {
        TargetsSnapshot::default()
    }
}
