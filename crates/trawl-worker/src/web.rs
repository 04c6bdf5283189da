//! The worker's HTTP side: `trawl-web`'s router over the shard (so the Prometheus API can
//! inspect one shard directly), with this worker's targets, status and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use trawl_model::{SCRAPE_INTERVAL_LABEL, SCRAPE_TIMEOUT_LABEL};
use trawl_scrape::Health;
use trawl_storage::Storage;
use trawl_web::{ActiveTarget, ApiState, StatusInfo, TargetHealth, TargetsSnapshot, TargetsSource};

use crate::follow::Follower;

/// What the router serves from.
#[derive(Clone)]
pub struct WebParts {
    /// The shard.
    pub storage: Arc<dyn Storage>,
    /// The follower (targets, status).
    pub follower: Arc<Follower>,
    /// Status pages.
    pub status: Arc<StatusInfo>,
    /// `/-/ready` and `/api/v1/*` answer 503 until set.
    pub ready: Arc<AtomicBool>,
    /// Bytes on disk of the shard.
    pub disk_bytes: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for WebParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebParts").finish_non_exhaustive()
    }
}

/// The worker's router: `/metrics`, `/-/healthy`, `/-/ready`, `/api/v1/targets`,
/// `/api/v1/status/*` and the rest of the Prometheus API over this shard.
pub fn router(p: WebParts) -> axum::Router {
    let metrics_follower = p.follower.clone();
    let metrics_storage = p.storage.clone();
    let disk = p.disk_bytes.clone();
    let state = ApiState::for_storage(p.storage.clone())
        .with_targets(Arc::new(WorkerTargets {
            follower: p.follower.clone(),
            hostname: hostname(),
        }))
        .with_status(p.status)
        .with_ready(p.ready)
        .with_metrics(Arc::new(move || {
            crate::metrics::render(&metrics_follower, &metrics_storage.metrics(), disk())
        }));
    trawl_web::router(state)
}

/// The machine's host name, for `globalUrl` and the runtime status.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Prometheus's `globalUrl`: the scrape URL with a loopback host replaced by this
/// machine's host name.
pub fn global_url(url: &str, hostname: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback && u.set_host(Some(hostname)).is_ok() {
        return u.to_string();
    }
    url.to_string()
}

struct WorkerTargets {
    follower: Arc<Follower>,
    hostname: String,
}

impl TargetsSource for WorkerTargets {
    fn snapshot(&self) -> TargetsSnapshot {
        let active = self
            .follower
            .targets()
            .into_iter()
            .map(|ts| {
                let t = &ts.target;
                let cfg = t.config();
                let label_or = |name: &str, dflt: String| {
                    t.labels().get(name).map(str::to_string).unwrap_or(dflt)
                };
                ActiveTarget {
                    discovered_labels: t.discovered_labels().clone(),
                    labels: t.final_labels().clone(),
                    scrape_pool: cfg.job_name.clone(),
                    scrape_url: t.url().to_string(),
                    global_url: global_url(t.url(), &self.hostname),
                    last_error: ts.state.last_error.clone(),
                    last_scrape: ts.state.last_scrape,
                    last_scrape_duration: ts.state.last_duration.as_secs_f64(),
                    health: match ts.state.health {
                        Health::Up => TargetHealth::Up,
                        Health::Down => TargetHealth::Down,
                        Health::Unknown => TargetHealth::Unknown,
                    },
                    scrape_interval: label_or(
                        SCRAPE_INTERVAL_LABEL,
                        cfg.scrape_interval.to_string(),
                    ),
                    scrape_timeout: label_or(SCRAPE_TIMEOUT_LABEL, cfg.scrape_timeout.to_string()),
                }
            })
            .collect();
        let pools = self.follower.jobs();
        // Dropped targets live on the coordinator, which relabels; every pool shows 0 here.
        let dropped_counts = pools.iter().map(|p| (p.clone(), 0)).collect();
        TargetsSnapshot {
            scrape_pools: pools,
            active,
            dropped: Vec::new(),
            dropped_counts,
        }
    }
}
