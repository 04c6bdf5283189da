//! The scrape manager: reconciles the desired target set with running loops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use trawl_config::ScrapeConfig;
use trawl_storage::Storage;

use crate::ScrapeError;
use crate::append::{AppendContext, AppendStats, Report, ScrapeCache};
use crate::http::ScrapeClient;
use crate::target::{Target, TargetKey};
use crate::threads::ScrapeThreads;

/// Health of a target, as the targets API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not scraped yet.
    Unknown,
    /// Last scrape succeeded.
    Up,
    /// Last scrape failed.
    Down,
}

impl Health {
    /// Prometheus's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// Scrape state of one target.
#[derive(Debug, Clone)]
pub struct TargetState {
    /// Health after the last scrape.
    pub health: Health,
    /// Error of the last scrape, empty when it succeeded.
    pub last_error: String,
    /// Start of the last scrape.
    pub last_scrape: Option<SystemTime>,
    /// Duration of the last scrape.
    pub last_duration: Duration,
    /// Number of scrapes done.
    pub scrapes: u64,
    /// Samples in the body of the last successful scrape.
    pub last_samples: u64,
    /// Series the last successful scrape added.
    pub last_series_added: u64,
}

impl Default for TargetState {
    fn default() -> Self {
        TargetState {
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape: None,
            last_duration: Duration::ZERO,
            scrapes: 0,
            last_samples: 0,
            last_series_added: 0,
        }
    }
}

/// A target with its state, for the API.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// The target.
    pub target: Target,
    /// Its scrape state.
    pub state: TargetState,
}

/// What to do with the series of a target that leaves this manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// The target is gone: mark all its series stale.
    Stale,
    /// The target moved to another owner, which continues the series: write nothing.
    Moved,
}

/// Manager settings.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Seed mixed into every target's offset (Prometheus uses external labels + hostname).
    pub offset_seed: u64,
    /// How many storage appends may run or wait at once across all targets.
    pub storage_queue: usize,
    /// How long a scrape waits for a storage slot before it is recorded as failed.
    pub storage_wait: Duration,
    /// Dedicated scrape threads, each a single-threaded runtime with targets pinned to it
    /// by hash; 0 runs the loops on the runtime that created the manager.
    pub threads: usize,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            offset_seed: 0,
            storage_queue: 64,
            storage_wait: Duration::from_secs(5),
            threads: 0,
        }
    }
}

/// Manager-wide counters (monotonic since the manager was created).
#[derive(Debug, Default)]
pub struct ManagerCounters {
    /// Scrapes that could not get a storage slot in time.
    pub storage_queue_full: AtomicU64,
    /// Scrapes whose storage commit failed.
    pub storage_errors: AtomicU64,
    /// Scrapes attempted.
    pub scrapes: AtomicU64,
    /// Scrapes that failed (target reported `up 0`).
    pub scrape_failures: AtomicU64,
    /// Scrapes over `sample_limit`.
    pub sample_limit_exceeded: AtomicU64,
    /// Scrapes over `body_size_limit`.
    pub body_size_limit_exceeded: AtomicU64,
    /// Scrapes that ran into their timeout.
    pub timeouts: AtomicU64,
    /// Samples scraped from bodies (before metric relabeling).
    pub samples_scraped: AtomicU64,
    /// Samples appended after metric relabeling (synthetic series not included).
    pub samples_appended: AtomicU64,
    /// Staleness markers written for series that vanished or whose target went away.
    pub stale_markers: AtomicU64,
    /// Loops started.
    pub loops_started: AtomicU64,
    /// Loops stopped.
    pub loops_stopped: AtomicU64,
}

struct Running {
    target: Target,
    state: Arc<RwLock<TargetState>>,
    stop: Option<oneshot::Sender<StopMode>>,
    handle: JoinHandle<()>,
}

/// Runs one loop per target. Must be created inside a tokio runtime.
pub struct ScrapeManager {
    storage: Arc<dyn Storage>,
    opts: ManagerOptions,
    rt: tokio::runtime::Handle,
    /// Dropped after the loops are aborted (field order), which stops the threads.
    threads: Option<ScrapeThreads>,
    loops: HashMap<TargetKey, Running>,
    clients: HashMap<String, (Arc<ScrapeConfig>, Result<ScrapeClient, String>)>,
    queue: Arc<Semaphore>,
    counters: Arc<ManagerCounters>,
}

impl std::fmt::Debug for ScrapeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeManager")
            .field("targets", &self.loops.len())
            .finish()
    }
}

impl ScrapeManager {
    /// A manager writing into `storage`; fails outside a tokio runtime.
    pub fn new(storage: Arc<dyn Storage>, opts: ManagerOptions) -> Result<Self, ScrapeError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| ScrapeError::Runtime(e.to_string()))?;
        crate::http::install_crypto_provider();
        let threads = match opts.threads {
            0 => None,
            n => Some(ScrapeThreads::start(n)?),
        };
        Ok(ScrapeManager {
            storage,
            threads,
            queue: Arc::new(Semaphore::new(opts.storage_queue.max(1))),
            opts,
            rt,
            loops: HashMap::new(),
            clients: HashMap::new(),
            counters: Arc::new(ManagerCounters::default()),
        })
    }

    /// Manager-wide counters.
    pub fn counters(&self) -> &ManagerCounters {
        &self.counters
    }

    /// A shared handle to the counters, readable without the manager (e.g. by `/metrics`).
    pub fn counters_handle(&self) -> Arc<ManagerCounters> {
        self.counters.clone()
    }

    /// Number of running loops.
    pub fn len(&self) -> usize {
        self.loops.len()
    }

    /// Whether no loop runs.
    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// Reconciles with the full desired set; targets that leave get staleness markers.
    /// Returns the handles of the stopped loops (await them to know they finished).
    pub fn sync(&mut self, targets: Vec<Target>) -> Vec<JoinHandle<()>> {
        self.sync_with(targets, StopMode::Stale)
    }

    /// Reconciles with the full desired set: starts new targets, stops gone ones with
    /// `gone`, keeps unchanged ones (same key and same config) running untouched.
    pub fn sync_with(&mut self, targets: Vec<Target>, gone: StopMode) -> Vec<JoinHandle<()>> {
        self.sync_moved(targets, |_| gone == StopMode::Moved)
    }

    /// Like [`ScrapeManager::sync_with`], deciding per leaving target: those for which
    /// `moved` is true now belong to another owner and get no staleness markers.
    pub fn sync_moved(
        &mut self,
        targets: Vec<Target>,
        moved: impl Fn(&Target) -> bool,
    ) -> Vec<JoinHandle<()>> {
        let mut desired: HashMap<TargetKey, Target> = HashMap::with_capacity(targets.len());
        for t in targets {
            desired.entry(t.key()).or_insert(t);
        }
        let stale_keys: Vec<TargetKey> = self
            .loops
            .iter()
            .filter(|(k, r)| {
                desired
                    .get(*k)
                    .is_none_or(|t| *t.config() != *r.target.config() || t.url() != r.target.url())
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut stopped = Vec::new();
        for k in stale_keys {
            // A target whose config changed restarts; its series continue, so no markers.
            let mode = match self.loops.get(&k) {
                Some(r) if !desired.contains_key(&k) && !moved(&r.target) => StopMode::Stale,
                _ => StopMode::Moved,
            };
            stopped.extend(self.stop_one(&k, mode));
        }
        self.clients
            .retain(|job, _| desired.values().any(|t| &t.config().job_name == job));
        for (k, t) in desired {
            if self.loops.contains_key(&k) {
                continue;
            }
            self.start(k, t);
        }
        stopped
    }

    /// Stops one target.
    pub fn stop_one(&mut self, key: &TargetKey, mode: StopMode) -> Option<JoinHandle<()>> {
        let mut r = self.loops.remove(key)?;
        self.counters.loops_stopped.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = r.stop.take() {
            let _ = s.send(mode);
        }
        Some(r.handle)
    }

    /// Stops every target and waits for the loops to finish.
    pub async fn stop_all(&mut self, mode: StopMode) {
        let keys: Vec<TargetKey> = self.loops.keys().cloned().collect();
        let handles: Vec<JoinHandle<()>> =
            keys.iter().filter_map(|k| self.stop_one(k, mode)).collect();
        for h in handles {
            let _ = h.await;
        }
    }

    /// Current targets and their state, sorted by job then URL.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let mut v: Vec<TargetStatus> = self
            .loops
            .values()
            .map(|r| TargetStatus {
                target: r.target.clone(),
                state: r.state.read().map(|s| s.clone()).unwrap_or_default(),
            })
            .collect();
        v.sort_by(|a, b| {
            (&a.target.config().job_name, a.target.url())
                .cmp(&(&b.target.config().job_name, b.target.url()))
        });
        v
    }

    fn client_for(&mut self, cfg: &Arc<ScrapeConfig>) -> Result<ScrapeClient, String> {
        if let Some((c, cl)) = self.clients.get(&cfg.job_name)
            && **c == **cfg
        {
            return cl.clone();
        }
        let cl = ScrapeClient::new(cfg).map_err(|e| e.to_string());
        self.clients
            .insert(cfg.job_name.clone(), (cfg.clone(), cl.clone()));
        cl
    }

    fn start(&mut self, key: TargetKey, target: Target) {
        let client = self.client_for(target.config()).and_then(|c| {
            reqwest::Url::parse(target.url())
                .map(|u| (c, u))
                .map_err(|e| format!("invalid URL {:?}: {e}", target.url()))
        });
        let state = Arc::new(RwLock::new(TargetState::default()));
        let (tx, rx) = oneshot::channel();
        let lp = Loop {
            ctx: AppendContext {
                target_labels: target.final_labels().clone(),
                honor_labels: target.config().honor_labels,
                honor_timestamps: target.config().honor_timestamps,
                track_timestamps_staleness: target.config().track_timestamps_staleness,
                metric_relabel: target.config().metric_relabel_configs.clone(),
                limits: target.config().limits,
            },
            target: target.clone(),
            client,
            last_body: AtomicUsize::new(0),
            storage: self.storage.clone(),
            state: state.clone(),
            cache: Arc::new(Mutex::new(ScrapeCache::default())),
            queue: self.queue.clone(),
            counters: self.counters.clone(),
            storage_wait: self.opts.storage_wait,
        };
        let seed = self.opts.offset_seed;
        self.counters.loops_started.fetch_add(1, Ordering::Relaxed);
        let rt = match &self.threads {
            Some(t) => t.handle_for(target.hash()),
            None => &self.rt,
        };
        let handle = rt.spawn(lp.run(rx, seed));
        self.loops.insert(
            key,
            Running {
                target,
                state,
                stop: Some(tx),
                handle,
            },
        );
    }
}

impl Drop for ScrapeManager {
    fn drop(&mut self) {
        for r in self.loops.values() {
            r.handle.abort();
        }
    }
}

struct Loop {
    target: Target,
    ctx: AppendContext,
    client: Result<(ScrapeClient, reqwest::Url), String>,
    /// Size of the last body, to size the next one's buffer.
    last_body: AtomicUsize,
    storage: Arc<dyn Storage>,
    state: Arc<RwLock<TargetState>>,
    cache: Arc<Mutex<ScrapeCache>>,
    queue: Arc<Semaphore>,
    counters: Arc<ManagerCounters>,
    storage_wait: Duration,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Loop {
    async fn run(self, mut stop: oneshot::Receiver<StopMode>, seed: u64) {
        let interval = self.target.interval().max(Duration::from_millis(1));
        let now_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let offset = self.target.offset(interval, seed, now_nanos);
        let start = tokio::time::Instant::now() + offset;
        let mut ticker = tokio::time::interval_at(start, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                mode = &mut stop => {
                    // A dropped sender (manager gone) means shutdown without markers.
                    if let Ok(StopMode::Stale) = mode {
                        self.write_end_staleness().await;
                    }
                    return;
                }
                _ = ticker.tick() => self.scrape_once().await,
            }
        }
    }

    async fn scrape_once(&self) {
        let started = Instant::now();
        let wall = SystemTime::now();
        let t = now_ms();
        let cfg = self.target.config();
        let fetched = match &self.client {
            Ok((c, url)) => {
                let r = c
                    .fetch(
                        url,
                        self.target.timeout(),
                        cfg.limits.body_size_limit,
                        cfg.fallback_scrape_protocol,
                        self.last_body.load(Ordering::Relaxed),
                    )
                    .await;
                if let Ok((body, _)) = &r {
                    self.last_body.store(body.len(), Ordering::Relaxed);
                }
                r
            }
            Err(e) => Err(ScrapeError::Client(e.clone())),
        };
        let duration = started.elapsed();
        let result = self.store(fetched, t, duration).await;
        let c = &self.counters;
        c.scrapes.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(_) => {}
            Err(e) => {
                c.scrape_failures.fetch_add(1, Ordering::Relaxed);
                let which = match e {
                    ScrapeError::SampleLimit => Some(&c.sample_limit_exceeded),
                    ScrapeError::BodySizeLimit => Some(&c.body_size_limit_exceeded),
                    ScrapeError::Http(m) if m.ends_with("context deadline exceeded") => {
                        Some(&c.timeouts)
                    }
                    _ => None,
                };
                if let Some(x) = which {
                    x.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Ok(mut s) = self.state.write() {
            s.last_scrape = Some(wall);
            s.last_duration = duration;
            s.scrapes += 1;
            match result {
                Ok(stats) => {
                    s.health = Health::Up;
                    s.last_error.clear();
                    s.last_samples = stats.scraped;
                    s.last_series_added = stats.series_added;
                }
                Err(e) => {
                    s.health = Health::Down;
                    s.last_error = e.to_string();
                }
            }
        }
    }

    /// Appends one scrape's result through the bounded storage queue.
    async fn store(
        &self,
        fetched: Result<(Vec<u8>, trawl_exposition::Format), ScrapeError>,
        t: i64,
        duration: Duration,
    ) -> Result<AppendStats, ScrapeError> {
        let permit =
            match tokio::time::timeout(self.storage_wait, self.queue.clone().acquire_owned()).await
            {
                Ok(Ok(p)) => p,
                _ => {
                    self.counters
                        .storage_queue_full
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(ScrapeError::StorageBusy);
                }
            };
        // In the steady state (the last scrape matched the cache in order, so no series
        // will be created) and while storage runs no long maintenance step, append right
        // here: handing a 1000-sample scrape to the blocking pool cost a third of the
        // scrape CPU (cross-CPU wake-ups both ways, the body read again on a cold core).
        // Otherwise the blocking pool takes it, so series creation and a checkpoint never
        // hold up the async workers.
        // The cache lock is uncontended: only this loop takes it.
        let steady = self.cache.lock().is_ok_and(|c| c.is_steady());
        if steady && !self.storage.busy() {
            let _permit = permit;
            let r = append_scrape(
                &*self.storage,
                &self.cache,
                &self.ctx,
                &self.counters,
                fetched,
                t,
                duration,
            );
            return r;
        }
        let storage = self.storage.clone();
        let cache = self.cache.clone();
        let ctx = self.ctx.clone();
        let counters = self.counters.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            append_scrape(&*storage, &cache, &ctx, &counters, fetched, t, duration)
        });
        match job.await {
            Ok(r) => r,
            Err(e) => Err(ScrapeError::Runtime(e.to_string())),
        }
    }

    async fn write_end_staleness(&self) {
        let storage = self.storage.clone();
        let cache = self.cache.clone();
        let ctx = self.ctx.clone();
        let counters = self.counters.clone();
        let t = now_ms();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(mut cache) = cache.lock() else { return };
            let mut app = storage.appender();
            let marked = cache.append_all_stale(app.as_mut(), t);
            let ok = marked.is_ok() && cache.append_report_stale(app.as_mut(), &ctx, t).is_ok();
            if !ok || app.commit().is_err() {
                counters.storage_errors.fetch_add(1, Ordering::Relaxed);
            } else if let Ok(n) = marked {
                counters.stale_markers.fetch_add(n + 5, Ordering::Relaxed);
            }
        })
        .await;
    }
}

/// Appends one scrape's result (or its failure) and its report series in one commit.
fn append_scrape(
    storage: &dyn Storage,
    cache: &Mutex<ScrapeCache>,
    ctx: &AppendContext,
    counters: &ManagerCounters,
    fetched: Result<(Vec<u8>, trawl_exposition::Format), ScrapeError>,
    t: i64,
    duration: Duration,
) -> Result<AppendStats, ScrapeError> {
    let mut cache = cache
        .lock()
        .map_err(|_| ScrapeError::Runtime("scrape cache poisoned".into()))?;
    let mut app = storage.appender();
    // Counts for the report of a failed scrape: what the body held up to the
    // failure (Prometheus reports them too), nothing when the fetch failed.
    let mut failed_stats = AppendStats::default();
    let scrape_result = match fetched {
        Ok((body, format)) => match cache.append_body(app.as_mut(), ctx, &body, format, t) {
            Ok(stats) => Ok(stats),
            Err(e) => {
                app.rollback();
                app = storage.appender();
                failed_stats = cache.failed_stats();
                Err(e)
            }
        },
        Err(e) => Err(e),
    };
    let mut failed_stale = 0;
    let report = match &scrape_result {
        Ok(stats) => Report {
            up: true,
            duration_seconds: duration.as_secs_f64(),
            stats: *stats,
        },
        Err(_) => {
            failed_stale = cache.append_failed(app.as_mut(), t)?;
            Report {
                up: false,
                duration_seconds: duration.as_secs_f64(),
                stats: failed_stats,
            }
        }
    };
    cache.append_report(app.as_mut(), ctx, t, &report)?;
    if let Err(e) = app.commit() {
        counters.storage_errors.fetch_add(1, Ordering::Relaxed);
        return Err(ScrapeError::Storage(e));
    }
    if let Ok(stats) = &scrape_result {
        counters
            .samples_scraped
            .fetch_add(stats.scraped, Ordering::Relaxed);
        counters
            .samples_appended
            .fetch_add(stats.post_relabel, Ordering::Relaxed);
        counters
            .stale_markers
            .fetch_add(stats.stale_markers, Ordering::Relaxed);
    }
    counters
        .stale_markers
        .fetch_add(failed_stale, Ordering::Relaxed);
    scrape_result
}
