//! The running standalone server: configuration, discovery, target relabeling, the scrape
//! manager and the storage shard, and the reload path that ties them together.
//!
//! Lock order: `state` before `scrape`. Nothing holds either across an `.await`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use trawl_config::{Config, ConfigError};
use trawl_discovery::{DiscoveryManager, JobGroups, TargetGroup};
use trawl_model::Labels;
use trawl_scrape::{ManagerCounters, ScrapeManager, StopMode, TargetStatus};
use trawl_storage::Storage;

use super::metrics::{Encoder, Kind};
use trawl_scrape::build as targets;

/// How often discovery may send updates (Prometheus: 5 s).
pub const DISCOVERY_UPDATE_EVERY: Duration = Duration::from_secs(5);

/// Outcome counters of configuration reloads.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    pub last_successful: AtomicBool,
    /// Unix seconds of the last successful load.
    pub last_success_seconds: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
}

/// What the API needs to know about the current configuration and targets.
#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    /// The configuration file's text at the last successful load.
    pub config_text: String,
    /// Latest groups per job from discovery.
    pub groups: BTreeMap<String, Vec<TargetGroup>>,
    /// Discovered labels of dropped targets per job (capped by `keep_dropped_targets`).
    pub dropped: BTreeMap<String, Vec<Labels>>,
    /// Dropped targets per job before the cap.
    pub dropped_total: BTreeMap<String, u64>,
    /// Active targets per job.
    pub active: BTreeMap<String, u64>,
    /// Target creation failures since start, per job.
    pub failed: BTreeMap<String, u64>,
}

/// The standalone server.
pub struct App {
    pub config_file: PathBuf,
    pub storage: Arc<dyn Storage>,
    /// The storage's concrete handle, for figures the trait does not give.
    pub disk_bytes: Arc<dyn Fn() -> u64 + Send + Sync>,
    pub state: Mutex<State>,
    scrape: Mutex<ScrapeManager>,
    discovery: Mutex<DiscoveryManager>,
    pub counters: Arc<ManagerCounters>,
    pub reload_status: ReloadStatus,
    pub ready: Arc<AtomicBool>,
    pub started: SystemTime,
    /// The API's status pages, told about every reload.
    status: Mutex<Option<Arc<trawl_web::StatusInfo>>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent before it can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Loads the configuration file and its text.
pub fn load_config(path: &std::path::Path) -> Result<(Config, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.to_owned(),
        source,
    })?;
    let cfg = trawl_config::load_str(&text, path, Default::default())?;
    Ok((cfg, text))
}

impl App {
    /// Starts discovery and scraping for `config` (already loaded once by the caller, so a
    /// bad initial config fails startup). Must run inside a tokio runtime. Returns the app
    /// and the discovery update stream to feed to [`App::run_discovery`].
    pub fn start(
        config_file: PathBuf,
        config: Config,
        config_text: String,
        storage: Arc<dyn Storage>,
        disk_bytes: Arc<dyn Fn() -> u64 + Send + Sync>,
        scrape_threads: usize,
    ) -> anyhow::Result<(Arc<App>, mpsc::Receiver<JobGroups>)> {
        let scrape = ScrapeManager::new(
            storage.clone(),
            trawl_scrape::ManagerOptions {
                offset_seed: offset_seed(&config),
                threads: scrape_threads,
                ..Default::default()
            },
        )?;
        let (tx, rx) = mpsc::channel(16);
        let mut discovery = DiscoveryManager::new(DISCOVERY_UPDATE_EVERY, tx);
        discovery.apply_config(&config);
        let counters = scrape.counters_handle();
        let reload_status = ReloadStatus::default();
        reload_status.last_successful.store(true, Ordering::Relaxed);
        reload_status
            .last_success_seconds
            .store(unix_seconds(SystemTime::now()), Ordering::Relaxed);
        let app = App {
            config_file,
            storage,
            disk_bytes,
            state: Mutex::new(State {
                config: Arc::new(config),
                config_text,
                groups: BTreeMap::new(),
                dropped: BTreeMap::new(),
                dropped_total: BTreeMap::new(),
                active: BTreeMap::new(),
                failed: BTreeMap::new(),
            }),
            scrape: Mutex::new(scrape),
            discovery: Mutex::new(discovery),
            counters,
            reload_status,
            ready: Arc::new(AtomicBool::new(false)),
            started: SystemTime::now(),
            status: Mutex::new(None),
        };
        Ok((Arc::new(app), rx))
    }

    /// Applies discovery updates until the stream ends.
    pub async fn run_discovery(self: Arc<Self>, mut rx: mpsc::Receiver<JobGroups>) {
        while let Some(update) = rx.recv().await {
            let mut st = lock(&self.state);
            for (job, groups) in update {
                if groups.is_empty() {
                    st.groups.remove(&job);
                } else {
                    st.groups.insert(job, groups);
                }
            }
            self.resync(&mut st);
        }
    }

    /// Re-reads the configuration file. A bad file is logged and counted, and the running
    /// configuration stays; unchanged targets keep their scrape loops.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = load_config(&self.config_file);
        let (cfg, text) = match loaded {
            Ok(c) => c,
            Err(e) => {
                self.reload_status
                    .last_successful
                    .store(false, Ordering::Relaxed);
                self.reload_status.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = &*lock(&self.status) {
                    s.config_failed();
                }
                tracing::error!(
                    file = %self.config_file.display(),
                    error = %e,
                    "error reloading config, keeping the running one"
                );
                return Err(format!(
                    "couldn't load configuration (--config.file={:?}): {e}",
                    self.config_file.display().to_string()
                ));
            }
        };
        let mut st = lock(&self.state);
        lock(&self.discovery).apply_config(&cfg);
        // Jobs that are gone lose their groups now; discovery also announces them.
        st.groups.retain(|job, _| cfg.job(job).is_some());
        st.config = Arc::new(cfg);
        st.config_text = text;
        self.resync(&mut st);
        let yaml = redacted_yaml(&st.config);
        drop(st);
        if let Some(s) = &*lock(&self.status) {
            s.config_loaded(yaml);
        }
        self.reload_status
            .last_successful
            .store(true, Ordering::Relaxed);
        self.reload_status.successes.fetch_add(1, Ordering::Relaxed);
        self.reload_status
            .last_success_seconds
            .store(unix_seconds(SystemTime::now()), Ordering::Relaxed);
        tracing::info!(file = %self.config_file.display(), "completed loading of configuration file");
        Ok(())
    }

    /// Rebuilds the target set from the current config and groups and reconciles the loops.
    fn resync(&self, st: &mut State) {
        let built = targets::build(&st.config, &st.groups);
        let mut active: BTreeMap<String, u64> = BTreeMap::new();
        for t in &built.active {
            *active.entry(t.config().job_name.clone()).or_default() += 1;
        }
        for (job, n) in built.failed {
            *st.failed.entry(job).or_default() += n;
        }
        st.active = active;
        st.dropped = built.dropped;
        st.dropped_total = built.dropped_total;
        let n = built.active.len();
        // Stopped loops finish (writing staleness markers) on their own.
        let _ = lock(&self.scrape).sync(built.active);
        tracing::debug!(targets = n, "synced scrape targets");
    }

    /// Shares the API's status so reloads update it.
    pub fn set_status(&self, s: Arc<trawl_web::StatusInfo>) {
        *lock(&self.status) = Some(s);
    }

    /// The configuration in force, re-serialised with secrets hidden.
    pub fn config_yaml(&self) -> String {
        redacted_yaml(&lock(&self.state).config)
    }

    /// Configured pools, dropped targets kept per pool, and dropped counts per pool.
    #[allow(clippy::type_complexity)]
    pub fn dropped_snapshot(
        &self,
    ) -> (
        Vec<String>,
        BTreeMap<String, Vec<Labels>>,
        BTreeMap<String, usize>,
    ) {
        let st = lock(&self.state);
        let pools = st
            .config
            .scrape_configs
            .iter()
            .map(|s| s.job_name.clone())
            .collect();
        // Every pool appears, with 0 when nothing was dropped, as in Prometheus.
        let counts = st
            .config
            .scrape_configs
            .iter()
            .map(|s| {
                let n = st.dropped_total.get(&s.job_name).copied().unwrap_or(0);
                (s.job_name.clone(), usize::try_from(n).unwrap_or(usize::MAX))
            })
            .collect();
        (pools, st.dropped.clone(), counts)
    }

    /// Current targets with their scrape state.
    pub fn targets(&self) -> Vec<TargetStatus> {
        lock(&self.scrape).targets()
    }

    /// Stops every scrape loop without staleness markers (the series continue after a
    /// restart) and waits for them.
    pub async fn shutdown(&self) {
        let handles = lock(&self.scrape).sync_with(Vec::new(), StopMode::Moved);
        for h in handles {
            let _ = h.await;
        }
    }

    /// Renders `/metrics`.
    pub fn render_metrics(&self) -> String {
        let mut e = Encoder::default();
        e.family(
            "trawl_build_info",
            "A metric with a constant '1' value labeled by version from which trawl was built.",
            Kind::Gauge,
        )
        .sample(
            "trawl_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        let rs = &self.reload_status;
        e.single(
            "trawl_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            Kind::Gauge,
            f64::from(u8::from(rs.last_successful.load(Ordering::Relaxed))),
        );
        e.single(
            "trawl_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            Kind::Gauge,
            rs.last_success_seconds.load(Ordering::Relaxed) as f64,
        );
        e.family(
            "trawl_config_reloads_total",
            "Configuration reloads by result (the initial load not included).",
            Kind::Counter,
        )
        .sample(
            "trawl_config_reloads_total",
            &[("result", "success")],
            rs.successes.load(Ordering::Relaxed) as f64,
        )
        .sample(
            "trawl_config_reloads_total",
            &[("result", "failure")],
            rs.failures.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "trawl_ready",
            "Whether trawl is ready to serve queries.",
            Kind::Gauge,
            f64::from(u8::from(self.ready.load(Ordering::Relaxed))),
        );
        self.write_target_metrics(&mut e);
        self.write_storage_metrics(&mut e);
        super::metrics::write_process(&mut e);
        e.finish()
    }

    fn write_target_metrics(&self, e: &mut Encoder) {
        {
            let st = lock(&self.state);
            e.family(
                "trawl_sd_discovered_targets",
                "Current number of discovered targets per job.",
                Kind::Gauge,
            );
            for sc in &st.config.scrape_configs {
                let n: usize = st
                    .groups
                    .get(&sc.job_name)
                    .map(|gs| gs.iter().map(|g| g.targets.len()).sum())
                    .unwrap_or(0);
                e.sample(
                    "trawl_sd_discovered_targets",
                    &[("config", &sc.job_name), ("name", "scrape")],
                    n as f64,
                );
            }
            let per_job =
                |e: &mut Encoder, name: &str, help: &str, kind, m: &BTreeMap<String, u64>| {
                    e.family(name, help, kind);
                    for sc in &st.config.scrape_configs {
                        let v = m.get(&sc.job_name).copied().unwrap_or(0);
                        e.sample(name, &[("scrape_job", &sc.job_name)], v as f64);
                    }
                };
            per_job(
                e,
                "trawl_target_scrape_pool_targets",
                "Current number of targets in this scrape pool.",
                Kind::Gauge,
                &st.active,
            );
            per_job(
                e,
                "trawl_target_scrape_pool_dropped_targets",
                "Current number of targets dropped by relabeling in this scrape pool.",
                Kind::Gauge,
                &st.dropped_total,
            );
            per_job(
                e,
                "trawl_target_sync_failed_total",
                "Targets that could not be created (invalid labels after relabeling).",
                Kind::Counter,
                &st.failed,
            );
        }
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        for (name, help, v) in [
            (
                "trawl_target_scrapes_total",
                "Scrapes attempted.",
                &c.scrapes,
            ),
            (
                "trawl_target_scrape_failures_total",
                "Scrapes that failed (up 0).",
                &c.scrape_failures,
            ),
            (
                "trawl_target_scrapes_exceeded_sample_limit_total",
                "Scrapes that hit the sample limit and were rejected.",
                &c.sample_limit_exceeded,
            ),
            (
                "trawl_target_scrapes_exceeded_body_size_limit_total",
                "Scrapes that hit the body size limit.",
                &c.body_size_limit_exceeded,
            ),
            (
                "trawl_target_scrape_timeouts_total",
                "Scrapes that ran into their scrape timeout.",
                &c.timeouts,
            ),
            (
                "trawl_target_samples_scraped_total",
                "Samples read from scrape bodies, before metric relabeling.",
                &c.samples_scraped,
            ),
            (
                "trawl_target_samples_appended_total",
                "Scraped samples appended after metric relabeling.",
                &c.samples_appended,
            ),
            (
                "trawl_target_stale_markers_total",
                "Staleness markers written.",
                &c.stale_markers,
            ),
            (
                "trawl_target_storage_queue_full_total",
                "Scrapes dropped because storage did not accept them in time.",
                &c.storage_queue_full,
            ),
            (
                "trawl_target_storage_errors_total",
                "Scrapes whose storage commit failed.",
                &c.storage_errors,
            ),
            (
                "trawl_target_loops_started_total",
                "Scrape loops started.",
                &c.loops_started,
            ),
            (
                "trawl_target_loops_stopped_total",
                "Scrape loops stopped.",
                &c.loops_stopped,
            ),
        ] {
            e.single(name, help, Kind::Counter, load(v));
        }
    }

    fn write_storage_metrics(&self, e: &mut Encoder) {
        let m = self.storage.metrics();
        e.single(
            "trawl_tsdb_head_series",
            "Series held in the head.",
            Kind::Gauge,
            m.head_series as f64,
        );
        e.single(
            "trawl_tsdb_head_chunks",
            "Chunks held in memory.",
            Kind::Gauge,
            m.head_chunks as f64,
        );
        e.single(
            "trawl_tsdb_head_bytes",
            "Approximate heap bytes of the head.",
            Kind::Gauge,
            m.head_bytes as f64,
        );
        e.single(
            "trawl_tsdb_head_samples_appended_total",
            "Samples stored.",
            Kind::Counter,
            m.appended_samples as f64,
        );
        e.family(
            "trawl_tsdb_samples_rejected_total",
            "Samples rejected by the append rules, by reason.",
            Kind::Counter,
        );
        for r in trawl_storage::RejectReason::ALL {
            e.sample(
                "trawl_tsdb_samples_rejected_total",
                &[("reason", r.as_str())],
                m.rejected(r) as f64,
            );
        }
        e.single(
            "trawl_tsdb_storage_bytes",
            "Bytes the storage occupies on disk.",
            Kind::Gauge,
            (self.disk_bytes)() as f64,
        );
        e.single(
            "trawl_tsdb_compactions_total",
            "Compactions and head checkpoints run.",
            Kind::Counter,
            m.compactions as f64,
        );
        e.single(
            "trawl_tsdb_retention_runs_total",
            "Retention runs.",
            Kind::Counter,
            m.retention_runs as f64,
        );
    }
}

/// Prometheus seeds the scrape offsets with the external labels (and hostname) so two
/// replicas do not scrape in lockstep; this does the same with the external labels.
fn offset_seed(cfg: &Config) -> u64 {
    cfg.global.external_labels.stable_hash()
}

fn redacted_yaml(cfg: &Config) -> String {
    trawl_config::to_yaml_redacted(&cfg.source).unwrap_or_else(|e| format!("# {e}\n"))
}
