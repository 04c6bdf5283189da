//! The HTTP side: `trawl-web`'s Prometheus API router over this process's storage, scrape
//! state, status and metrics.

use std::sync::Arc;

use trawl_model::{SCRAPE_INTERVAL_LABEL, SCRAPE_TIMEOUT_LABEL};
use trawl_scrape::Health;
use trawl_web::{
    ActiveTarget, ApiState, DroppedTarget, StatusInfo, TargetHealth, TargetsSnapshot, TargetsSource,
};

use super::StandaloneArgs;
use super::app::App;

/// The router for `app`.
pub fn router(app: Arc<App>, args: &StandaloneArgs) -> axum::Router {
    let status = Arc::new(status_info(&app, args));
    app.set_status(status.clone());
    let engine = engine_options(args);
    let metrics_app = app.clone();
    let mut state = ApiState::for_storage(app.storage.clone())
        .with_targets(Arc::new(Targets {
            app: app.clone(),
            hostname: hostname(),
        }))
        .with_status(status)
        .with_metrics(Arc::new(move || metrics_app.render_metrics()))
        .with_ready(app.ready.clone())
        .with_engine(engine);
    if args.enable_lifecycle {
        let reload_app = app.clone();
        state = state.with_reload(Arc::new(move || reload_app.reload()));
    }
    // Remote read is always served; remote write answers 404 unless enabled, as in
    // Prometheus.
    let remote = trawl_remote::router(trawl_remote::RemoteState::new(
        app.storage.clone(),
        trawl_remote::RemoteOptions {
            enable_write: args.enable_remote_write_receiver,
            ..Default::default()
        },
    ));
    trawl_web::router(state).merge(remote)
}

/// Engine settings from the flags.
pub fn engine_options(args: &StandaloneArgs) -> trawl_promql::EngineOptions {
    trawl_promql::EngineOptions {
        lookback_delta: args.lookback_delta.as_std(),
        timeout: args.query_timeout.as_std(),
        max_samples: args.max_samples,
        ..Default::default()
    }
}

fn status_info(app: &App, args: &StandaloneArgs) -> StatusInfo {
    let retention = if args.retention_size > 0 {
        format!(
            "{} or {}",
            args.retention_time,
            trawl_config::ByteSize(i64::try_from(args.retention_size).unwrap_or(i64::MAX))
        )
    } else {
        args.retention_time.to_string()
    };
    let mut s = StatusInfo::default();
    s.flags = args.flags();
    s.start_time = app.started;
    s.hostname = hostname();
    s.storage_retention = retention;
    s.build.go_version = format!("rustc {}", env!("CARGO_PKG_RUST_VERSION"));
    s.config_loaded(app.config_yaml());
    s
}

/// The machine's host name, for `globalUrl` and the runtime status.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Prometheus's `globalUrl`: the scrape URL with a loopback host replaced by this
/// machine's host name, so the link works from elsewhere.
fn global_url(url: &str, hostname: &str) -> String {
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

struct Targets {
    app: Arc<App>,
    hostname: String,
}

impl TargetsSource for Targets {
    fn snapshot(&self) -> TargetsSnapshot {
        let running = self.app.targets();
        let (pools, dropped, dropped_counts) = self.app.dropped_snapshot();
        let active = running
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
        let dropped = dropped
            .into_iter()
            .flat_map(|(job, ls)| {
                ls.into_iter().map(move |l| DroppedTarget {
                    discovered_labels: l,
                    scrape_pool: job.clone(),
                })
            })
            .collect();
        TargetsSnapshot {
            scrape_pools: pools,
            active,
            dropped,
            dropped_counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_url_replaces_only_loopback_hosts() {
        assert_eq!(
            global_url("http://localhost:9100/metrics", "box"),
            "http://box:9100/metrics"
        );
        assert_eq!(
            global_url("http://127.0.0.1:1/m?a=b", "box"),
            "http://box:1/m?a=b"
        );
        assert_eq!(
            global_url("https://node1:9100/metrics", "box"),
            "https://node1:9100/metrics"
        );
    }
}
