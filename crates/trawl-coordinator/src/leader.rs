//! Leader duties and the per-replica inputs they act on.
//!
//! Every replica runs discovery and target relabeling from `--config.file` ([`Desired`]), so
//! a new leader already knows the target set; only the leader proposes it. Failure detection
//! is leader soft state ([`FailureDetector`]): heartbeats are not replicated, and a new leader
//! gives every worker a full timeout of grace from the moment it became leader.
//!
//! Decisions are pure functions over the replicated state and the soft state; the loop in
//! [`run`] only feeds them and proposes what they return.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use trawl_config::file::{ConfigFile, ScrapeConfigFile, ScrapeConfigsFile};
use trawl_config::{Config, ConfigError};
use trawl_discovery::{DiscoveryManager, JobGroups, TargetGroup};
use trawl_model::Labels;
use trawl_raft::{ReplicaError, SharedReplicator, read_with};
use trawl_scrape::Target;

use crate::state::{ClusterState, Command, JobSpec, Op, Response, TargetSpec, WorkerLoad};

/// How often discovery may send updates (Prometheus: 5 s).
pub const DISCOVERY_UPDATE_EVERY: Duration = Duration::from_secs(5);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before it could panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Loads the configuration file, with the text of every scrape config as written (those
/// of `scrape_config_files` included), for [`job_specs`].
pub fn load_config(path: &Path) -> Result<(Config, Vec<ScrapeConfigFile>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.to_owned(),
        source,
    })?;
    let cfg = trawl_config::load_str(&text, path, Default::default())?;
    let mut raw: Vec<ScrapeConfigFile> = cfg
        .source
        .scrape_configs
        .iter()
        .flatten()
        .flatten()
        .cloned()
        .collect();
    for pattern in &cfg.scrape_config_files {
        // load_str read these files a moment ago, so a failure here is a race with an edit;
        // the job then keeps no YAML and is skipped by job_specs.
        for f in trawl_config::expand_glob(pattern).unwrap_or_default() {
            let Ok(src) = std::fs::read_to_string(&f) else {
                continue;
            };
            if let Ok(inc) = trawl_config::parse_yaml::<ScrapeConfigsFile>(&src, &f) {
                raw.extend(inc.scrape_configs.into_iter().flatten().flatten());
            }
        }
    }
    Ok((cfg, raw))
}

/// The scrape configuration of every job of `cfg` as a worker receives it: a complete
/// prometheus.yml with `global:` and that one job, its service discovery removed (the
/// coordinator discovers; workers get targets).
pub fn job_specs(cfg: &Config, raw: &[ScrapeConfigFile]) -> Vec<JobSpec> {
    let mut out = Vec::new();
    for sc in &cfg.scrape_configs {
        let Some(r) = raw
            .iter()
            .find(|r| r.job_name.as_deref() == Some(sc.job_name.as_str()))
        else {
            tracing::warn!(job = %sc.job_name, "scrape config text not found, job skipped");
            continue;
        };
        let mut job = r.clone();
        job.static_configs = None;
        job.file_sd_configs = None;
        job.http_sd_configs = None;
        job.dns_sd_configs = None;
        job.kubernetes_sd_configs = None;
        let file = ConfigFile {
            global: cfg.source.global.clone(),
            scrape_configs: Some(vec![Some(job)]),
            ..Default::default()
        };
        match trawl_config::to_yaml(&file) {
            Ok(yaml) => out.push(JobSpec {
                name: sc.job_name.clone(),
                config_hash: xxhash_rust::xxh64::xxh64(yaml.as_bytes(), 0),
                yaml,
            }),
            Err(e) => {
                tracing::error!(job = %sc.job_name, error = %e, "cannot serialise scrape config")
            }
        }
    }
    out
}

/// The relabeled targets of `built`, one per label hash (the first wins, as a worker could
/// not tell duplicates apart).
pub fn target_specs(active: &[Target]) -> Vec<TargetSpec> {
    let mut seen = BTreeSet::new();
    active
        .iter()
        .filter(|t| seen.insert(t.labels().stable_hash()))
        .map(|t| {
            TargetSpec::new(
                t.config().job_name.clone(),
                t.labels().clone(),
                t.discovered_labels().clone(),
            )
        })
        .collect()
}

/// This replica's view of what should be scraped: configuration, discovered groups and the
/// relabeled targets.
#[derive(Debug)]
pub struct DesiredState {
    pub config: Arc<Config>,
    pub raw: Vec<ScrapeConfigFile>,
    pub groups: BTreeMap<String, Vec<TargetGroup>>,
    pub jobs: Vec<JobSpec>,
    pub targets: Vec<TargetSpec>,
    /// Built targets, for the targets page (URL, intervals).
    pub active: Vec<Target>,
    pub dropped: BTreeMap<String, Vec<Labels>>,
    pub dropped_total: BTreeMap<String, u64>,
    /// Jobs discovery has reported since the last configuration change.
    pub seen: BTreeSet<String>,
    pub config_applied: Instant,
}

impl DesiredState {
    /// Whether discovery has had its chance to report every job, so that proposing the
    /// target set cannot wipe targets that simply were not discovered yet.
    pub fn synced(&self, now: Instant, patience: Duration) -> bool {
        self.config
            .scrape_configs
            .iter()
            .all(|sc| self.seen.contains(&sc.job_name))
            || now.duration_since(self.config_applied) >= patience
    }

    fn rebuild(&mut self) {
        let built = trawl_scrape::build::build(&self.config, &self.groups);
        self.targets = target_specs(&built.active);
        self.active = built.active;
        self.dropped = built.dropped;
        self.dropped_total = built.dropped_total;
    }
}

/// Reload outcome counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReloadCounts {
    pub successes: u64,
    pub failures: u64,
    pub last_successful: bool,
}

/// The desired state plus the discovery that feeds it; shared by the HTTP API, the reload
/// path and the leader loop.
pub struct Desired {
    pub config_file: PathBuf,
    state: Mutex<DesiredState>,
    discovery: Mutex<Option<DiscoveryManager>>,
    /// Wakes the leader loop when the target set may have changed.
    pub changed: Notify,
    reloads: Mutex<ReloadCounts>,
    /// The status pages, told about every reload.
    status: Mutex<Option<Arc<trawl_web::StatusInfo>>>,
}

impl std::fmt::Debug for Desired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desired")
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

impl Desired {
    /// A desired state over `config` without discovery (tests feed groups with
    /// [`Desired::apply_groups`]).
    pub fn new(config_file: PathBuf, config: Config, raw: Vec<ScrapeConfigFile>) -> Arc<Self> {
        let jobs = job_specs(&config, &raw);
        Arc::new(Desired {
            config_file,
            state: Mutex::new(DesiredState {
                config: Arc::new(config),
                raw,
                groups: BTreeMap::new(),
                jobs,
                targets: Vec::new(),
                active: Vec::new(),
                dropped: BTreeMap::new(),
                dropped_total: BTreeMap::new(),
                seen: BTreeSet::new(),
                config_applied: Instant::now(),
            }),
            discovery: Mutex::new(None),
            changed: Notify::new(),
            reloads: Mutex::new(ReloadCounts {
                last_successful: true,
                ..Default::default()
            }),
            status: Mutex::new(None),
        })
    }

    /// Starts discovery for the current configuration; must run inside a tokio runtime.
    /// Returns the update stream for [`Desired::run_discovery`].
    pub fn start_discovery(&self, every: Duration) -> mpsc::Receiver<JobGroups> {
        let (tx, rx) = mpsc::channel(16);
        let mut d = DiscoveryManager::new(every, tx);
        d.apply_config(&lock(&self.state).config);
        *lock(&self.discovery) = Some(d);
        rx
    }

    /// Applies discovery updates until the stream ends.
    pub async fn run_discovery(self: Arc<Self>, mut rx: mpsc::Receiver<JobGroups>) {
        while let Some(update) = rx.recv().await {
            self.apply_groups(update);
        }
    }

    /// Applies one discovery update.
    pub fn apply_groups(&self, update: JobGroups) {
        {
            let mut st = lock(&self.state);
            for (job, groups) in update {
                st.seen.insert(job.clone());
                if groups.is_empty() {
                    st.groups.remove(&job);
                } else {
                    st.groups.insert(job, groups);
                }
            }
            st.rebuild();
        }
        self.changed.notify_one();
    }

    /// Re-reads the configuration file; a bad file is logged (naming file and line, as the
    /// config error does) and the running configuration stays.
    pub fn reload(&self) -> Result<(), String> {
        let (cfg, raw) = match load_config(&self.config_file) {
            Ok(c) => c,
            Err(e) => {
                let mut r = lock(&self.reloads);
                r.failures += 1;
                r.last_successful = false;
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
        {
            let mut st = lock(&self.state);
            if let Some(d) = lock(&self.discovery).as_mut() {
                d.apply_config(&cfg);
            }
            st.groups.retain(|job, _| cfg.job(job).is_some());
            // Jobs whose providers did not change keep their groups and count as seen.
            let seen: BTreeSet<String> = st
                .seen
                .iter()
                .filter(|j| cfg.job(j).is_some())
                .cloned()
                .collect();
            st.seen = seen;
            st.jobs = job_specs(&cfg, &raw);
            st.config = Arc::new(cfg);
            st.raw = raw;
            st.config_applied = Instant::now();
            st.rebuild();
        }
        {
            let mut r = lock(&self.reloads);
            r.successes += 1;
            r.last_successful = true;
        }
        if let Some(s) = &*lock(&self.status) {
            s.config_loaded(self.config_yaml());
        }
        self.changed.notify_one();
        tracing::info!(file = %self.config_file.display(), "completed loading of configuration file");
        Ok(())
    }

    /// Shares the API's status pages so reloads update them.
    pub fn set_status(&self, s: Arc<trawl_web::StatusInfo>) {
        *lock(&self.status) = Some(s);
    }

    /// The configuration in force, re-serialised with secrets hidden.
    pub fn config_yaml(&self) -> String {
        trawl_config::to_yaml_redacted(&lock(&self.state).config.source)
            .unwrap_or_else(|e| format!("# {e}\n"))
    }

    /// Runs `f` over the desired state.
    pub fn with<T>(&self, f: impl FnOnce(&DesiredState) -> T) -> T {
        f(&lock(&self.state))
    }

    /// Reload counters.
    pub fn reloads(&self) -> ReloadCounts {
        *lock(&self.reloads)
    }
}

/// Leader soft state: when each worker was last heard from, and what it reported.
#[derive(Debug, Default)]
pub struct FailureDetector {
    leader_since_ms: i64,
    last_seen: BTreeMap<String, i64>,
    /// Latest series-per-target report of each worker.
    reported: BTreeMap<String, BTreeMap<u64, u64>>,
    loads: BTreeMap<String, WorkerLoad>,
}

impl FailureDetector {
    /// Starts a leadership at `now_ms`: every worker gets a full timeout from now.
    pub fn became_leader(&mut self, now_ms: i64) {
        self.leader_since_ms = now_ms;
        self.last_seen.clear();
        self.reported.clear();
        self.loads.clear();
    }

    /// Records a sign of life.
    pub fn seen(&mut self, worker: &str, now_ms: i64) {
        self.last_seen.insert(worker.to_string(), now_ms);
    }

    /// Records a heartbeat's figures.
    pub fn report(&mut self, worker: &str, series: BTreeMap<u64, u64>, load: WorkerLoad) {
        self.reported.insert(worker.to_string(), series);
        self.loads.insert(worker.to_string(), load);
    }

    /// UP workers silent for `timeout_ms`, counting from the later of their last heartbeat
    /// and the start of this leadership.
    pub fn expired<'a>(
        &self,
        up: impl Iterator<Item = &'a str>,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Vec<String> {
        up.filter(|w| {
            let last = self
                .last_seen
                .get(*w)
                .copied()
                .unwrap_or(i64::MIN)
                .max(self.leader_since_ms);
            now_ms.saturating_sub(last) >= timeout_ms
        })
        .map(str::to_string)
        .collect()
    }

    /// The weights and loads worth replicating, or `None` when nothing moved materially.
    pub fn weights_to_propose(&self, s: &ClusterState) -> Option<Op> {
        let mut merged: BTreeMap<u64, u64> = BTreeMap::new();
        for (w, m) in &self.reported {
            if !s.workers.get(w).is_some_and(|r| r.up) {
                continue;
            }
            for (h, n) in m {
                if s.targets.contains_key(h) {
                    let e = merged.entry(*h).or_default();
                    *e = (*e).max(*n);
                }
            }
        }
        let series = crate::state::weights_changed(&s.weights, &merged);
        let loads: BTreeMap<String, WorkerLoad> = self
            .loads
            .iter()
            .filter(|(w, l)| {
                s.workers
                    .get(*w)
                    .is_some_and(|r| r.up && crate::state::load_changed(&r.load, l))
            })
            .map(|(w, l)| (w.clone(), *l))
            .collect();
        (!series.is_empty() || !loads.is_empty()).then_some(Op::SetWeights {
            series_per_target: series,
            loads,
        })
    }
}

/// Settings of the leader loop.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    pub heartbeat_timeout: Duration,
    /// How long discovery may take to report every job before the target set is proposed
    /// anyway.
    pub discovery_patience: Duration,
    /// This replica's HTTP address, announced when it becomes leader.
    pub web_address: String,
}

/// Counters of the leader loop, for `/metrics`.
#[derive(Debug, Default)]
pub struct LeaderCounters {
    pub proposals: std::sync::atomic::AtomicU64,
    pub proposal_failures: std::sync::atomic::AtomicU64,
}

/// Proposes `op` in the current term; counts the outcome.
pub async fn propose(
    r: &SharedReplicator<ClusterState>,
    counters: &LeaderCounters,
    op: Op,
) -> Result<Response, ReplicaError> {
    use std::sync::atomic::Ordering::Relaxed;
    let term = r.status().borrow().term;
    let res = r.propose(Command { term, op }).await;
    match &res {
        Ok(_) => counters.proposals.fetch_add(1, Relaxed),
        Err(_) => counters.proposal_failures.fetch_add(1, Relaxed),
    };
    res
}

/// Runs the leader duties on this replica until `shutdown` resolves; idle while it follows.
pub async fn run(
    replicator: SharedReplicator<ClusterState>,
    desired: Arc<Desired>,
    detector: Arc<Mutex<FailureDetector>>,
    counters: Arc<LeaderCounters>,
    opts: LeaderOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut status = replicator.status();
    let tick = (opts.heartbeat_timeout / 4).max(Duration::from_millis(50));
    let timeout_ms = i64::try_from(opts.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
    let mut leading_term: Option<u64> = None;
    tokio::pin!(shutdown);
    loop {
        let st = status.borrow_and_update().clone();
        if st.is_leader() {
            if leading_term != Some(st.term) {
                lock(&detector).became_leader(now_ms());
                leading_term = Some(st.term);
                tracing::info!(id = st.id, term = st.term, "became leader");
                let op = Op::SetReplicaWeb {
                    id: st.id,
                    web_address: opts.web_address.clone(),
                };
                if let Err(e) = propose(&replicator, &counters, op).await {
                    tracing::warn!(error = %e, "announcing the leader's web address failed");
                }
            }
            duties(
                &replicator,
                &desired,
                &detector,
                &counters,
                &opts,
                timeout_ms,
            )
            .await;
        } else if leading_term.take().is_some() {
            tracing::info!(id = st.id, term = st.term, leader = ?st.leader, "lost leadership");
        }
        tokio::select! {
            _ = &mut shutdown => return,
            r = status.changed() => if r.is_err() { return },
            _ = desired.changed.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

async fn duties(
    replicator: &SharedReplicator<ClusterState>,
    desired: &Desired,
    detector: &Mutex<FailureDetector>,
    counters: &LeaderCounters,
    opts: &LeaderOptions,
    timeout_ms: i64,
) {
    let wanted = desired.with(|d| {
        d.synced(Instant::now(), opts.discovery_patience)
            .then(|| (d.jobs.clone(), d.targets.clone()))
    });
    if let Some((jobs, targets)) = wanted
        && !read_with(&**replicator, |s: &ClusterState| {
            s.same_targets(&jobs, &targets)
        })
    {
        let n = targets.len();
        match propose(replicator, counters, Op::SetTargets { jobs, targets }).await {
            Ok(r) => tracing::info!(targets = n, response = ?r, "proposed target set"),
            Err(e) => tracing::warn!(error = %e, "proposing the target set failed"),
        }
    }
    let now = now_ms();
    let expired = read_with(&**replicator, |s: &ClusterState| {
        lock(detector).expired(s.up_workers(), now, timeout_ms)
    });
    for id in expired {
        tracing::warn!(worker = %id, timeout_ms, "worker missed heartbeats, marking it down");
        if let Err(e) = propose(replicator, counters, Op::SetWorkerDown { id: id.clone() }).await {
            tracing::warn!(worker = %id, error = %e, "marking worker down failed");
        }
    }
    let weights = read_with(&**replicator, |s: &ClusterState| {
        lock(detector).weights_to_propose(s)
    });
    if let Some(op) = weights
        && let Err(e) = propose(replicator, counters, op).await
    {
        tracing::warn!(error = %e, "proposing weights failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;
    use trawl_raft::StateMachine as _;

    const CONFIG: &str = "global:
  scrape_interval: 15s
  external_labels:
    cluster: c1
scrape_configs:
  - job_name: node
    scrape_interval: 5s
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_.*'
        action: drop
    relabel_configs:
      - source_labels: [__address__]
        regex: 'skip.*'
        action: drop
    static_configs:
      - targets: ['a:9100', 'b:9100', 'skip:1']
  - job_name: other
    static_configs:
      - targets: ['c:1']
";

    fn desired() -> Arc<Desired> {
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
        Desired::new(path.to_owned(), cfg, raw)
    }

    fn static_group(addrs: &[&str]) -> TargetGroup {
        TargetGroup {
            source: "0".into(),
            targets: addrs
                .iter()
                .map(|a| Labels::from_pairs([("__address__", *a)]))
                .collect(),
            labels: Labels::empty(),
        }
    }

    #[test]
    fn job_yaml_is_a_loadable_config_without_discovery() {
        let d = desired();
        let jobs = d.with(|d| d.jobs.clone());
        assert_eq!(jobs.len(), 2);
        let node = &jobs[0];
        assert_eq!(node.name, "node");
        assert_eq!(
            node.config_hash,
            xxhash_rust::xxh64::xxh64(node.yaml.as_bytes(), 0)
        );
        assert!(!node.yaml.contains("static_configs"), "{}", node.yaml);
        let cfg = trawl_config::load_str(&node.yaml, Path::new("node"), Default::default())
            .expect("the job's YAML loads");
        assert_eq!(cfg.scrape_configs.len(), 1);
        let sc = &cfg.scrape_configs[0];
        assert_eq!(sc.job_name, "node");
        assert_eq!(sc.scrape_interval.to_string(), "5s");
        assert_eq!(cfg.global.external_labels.get("cluster"), Some("c1"));
        assert!(!sc.metric_relabel_configs.is_empty());
        // Same config, same text, same hash: unchanged jobs keep running on reload.
        assert_eq!(
            job_specs(&d.with(|d| d.config.clone()), &d.with(|d| d.raw.clone())),
            jobs
        );
    }

    #[test]
    fn discovery_updates_rebuild_relabeled_targets() {
        let d = desired();
        let t0 = Instant::now();
        let patience = Duration::from_secs(3600);
        assert!(!d.with(|d| d.synced(t0, patience)));
        d.apply_groups(
            [(
                "node".to_string(),
                vec![static_group(&["a:9100", "b:9100", "skip:1"])],
            )]
            .into(),
        );
        assert!(
            !d.with(|d| d.synced(t0, patience)),
            "job other not reported yet"
        );
        d.apply_groups([("other".to_string(), vec![static_group(&["c:1"])])].into());
        assert!(d.with(|d| d.synced(t0, patience)));
        let (targets, dropped) = d.with(|d| (d.targets.clone(), d.dropped_total.clone()));
        assert_eq!(targets.len(), 3);
        assert_eq!(dropped.get("node"), Some(&1));
        for t in &targets {
            assert_eq!(t.hash, t.labels.stable_hash());
            assert!(t.labels.get("__address__").is_some());
            assert!(t.labels.get("job").is_some());
        }
        // Patience ends the wait for jobs that never report.
        let d2 = desired();
        assert!(d2.with(|d| d.synced(Instant::now(), Duration::ZERO)));
    }

    #[test]
    fn duplicate_targets_are_placed_once() {
        let d = desired();
        d.apply_groups(
            [(
                "node".to_string(),
                vec![static_group(&["a:9100", "a:9100"])],
            )]
            .into(),
        );
        assert_eq!(d.with(|d| d.targets.len()), 1);
    }

    #[test]
    fn a_bad_reload_keeps_the_running_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, CONFIG).expect("write");
        let (cfg, raw) = load_config(&path).expect("load");
        let d = Desired::new(path.clone(), cfg, raw);
        std::fs::write(&path, "scrape_configs:\n  - job_name: x\n    bogus: 1\n").expect("write");
        let err = d.reload().expect_err("bad file");
        assert!(err.contains("prometheus.yml"), "{err}");
        assert_eq!(d.with(|d| d.jobs.len()), 2);
        assert!(!d.reloads().last_successful);
        std::fs::write(&path, "scrape_configs:\n  - job_name: only\n").expect("write");
        d.reload().expect("good file");
        let jobs: Vec<String> = d.with(|d| d.jobs.iter().map(|j| j.name.clone()).collect());
        assert_eq!(jobs, ["only"]);
        assert_eq!(d.reloads().successes, 1);
        assert_eq!(d.reloads().failures, 1);
    }

    #[test]
    fn jobs_of_scrape_config_files_get_their_yaml() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("extra.yml"),
            "scrape_configs:\n  - job_name: extra\n    scrape_interval: 7s\n    static_configs:\n      - targets: ['x:1']\n",
        )
        .expect("write");
        let main = dir.path().join("prometheus.yml");
        std::fs::write(
            &main,
            "scrape_config_files: ['extra.yml']\nscrape_configs:\n  - job_name: main\n",
        )
        .expect("write");
        let (cfg, raw) = load_config(&main).expect("load");
        let jobs = job_specs(&cfg, &raw);
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["main", "extra"]);
        let extra = trawl_config::load_str(&jobs[1].yaml, Path::new("extra"), Default::default())
            .expect("loads");
        assert_eq!(extra.scrape_configs[0].scrape_interval.to_string(), "7s");
    }

    #[test]
    fn failure_detector_grants_a_new_leader_a_full_timeout() {
        let mut f = FailureDetector::default();
        f.became_leader(10_000);
        let up = ["w1", "w2"];
        assert!(f.expired(up.iter().copied(), 19_999, 10_000).is_empty());
        f.seen("w1", 15_000);
        assert_eq!(f.expired(up.iter().copied(), 20_000, 10_000), ["w2"]);
        assert_eq!(f.expired(up.iter().copied(), 25_000, 10_000), ["w1", "w2"]);
        // A new leadership forgets old heartbeats but restarts the grace.
        f.became_leader(30_000);
        assert!(f.expired(up.iter().copied(), 39_000, 10_000).is_empty());
    }

    #[test]
    fn weights_are_proposed_when_they_moved() {
        let mut s = ClusterState::new(1);
        let t = TargetSpec::new(
            "node",
            Labels::from_pairs([("__address__", "a:1"), ("job", "node")]),
            Labels::empty(),
        );
        for op in [
            Op::RegisterWorker {
                id: "w1".into(),
                grpc_address: "g".into(),
                web_address: "h".into(),
                zone: String::new(),
                now_ms: 0,
            },
            Op::SetTargets {
                jobs: vec![],
                targets: vec![t.clone()],
            },
        ] {
            s.apply(&Command { term: 1, op });
        }
        let mut f = FailureDetector::default();
        assert_eq!(f.weights_to_propose(&s), None);
        let load = WorkerLoad {
            head_series: 500,
            samples_per_second: 30.0,
        };
        f.report("w1", [(t.hash, 500), (12345, 7)].into(), load);
        let op = f.weights_to_propose(&s).expect("new figures");
        let Op::SetWeights {
            series_per_target,
            loads,
        } = &op
        else {
            panic!("{op:?}")
        };
        assert_eq!(
            series_per_target,
            &BTreeMap::from([(t.hash, 500)]),
            "unknown targets ignored"
        );
        assert_eq!(loads.get("w1"), Some(&load));
        s.apply(&Command { term: 1, op });
        assert_eq!(f.weights_to_propose(&s), None, "nothing moved since");
    }
}
