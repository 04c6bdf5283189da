//! Following the assignment: a pure reconciliation step ([`reconcile`]) from the held and
//! the new assignment to the scrape manager's desired target set, and the loop around it
//! ([`Follower::run`]) that registers, heartbeats, watches, reports first scrapes, persists
//! and reconnects.
//!
//! Invariants:
//! - An assignment is applied only when its epoch is newer than the held one
//!   ([`should_apply`]): a deposed leader cannot roll the worker back.
//! - A target dropped by a new epoch stops without staleness markers exactly when it was
//!   OUTGOING in the held assignment (its new owner continues the series); any other dropped
//!   target gets them. Targets present in both keep their loops.
//! - Losing every coordinator changes nothing about scraping: the last applied assignment
//!   keeps running, and it is on disk so a restart resumes it before any coordinator answers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prost::Message as _;
use tokio_stream::StreamExt as _;
use trawl_config::ScrapeConfig;
use trawl_proto::v1::assigned_target::Role;
use trawl_proto::v1::coordinator_client::CoordinatorClient;
use trawl_proto::v1::{
    Assignment, Epoch, HeartbeatRequest, RegisterRequest, ScrapeJob, ScrapeReport,
    WatchAssignmentRequest,
};
use trawl_scrape::{
    Health, ManagerCounters, ScrapeManager, StopMode, Target, TargetKey, TargetStatus,
};
use trawl_storage::Storage;

use crate::WorkerError;

/// How long applying an assignment waits for the loops of dropped targets to finish.
pub const STOP_WAIT: Duration = Duration::from_secs(10);

/// File (in the data directory) holding the last applied assignment.
pub const ASSIGNMENT_FILE: &str = "assignment.pb";

/// Whether an assignment with epoch `new` replaces the held one: only a strictly newer
/// epoch number does; with nothing held, anything does.
pub fn should_apply(held: Option<&Epoch>, new: Option<&Epoch>) -> bool {
    match held {
        None => true,
        Some(h) => new.is_some_and(|n| n.epoch > h.epoch),
    }
}

/// Parses one job of an assignment: a complete prometheus.yml holding exactly that job.
pub fn parse_job(job: &ScrapeJob) -> Result<ScrapeConfig, String> {
    let cfg = trawl_config::load_str(
        &job.scrape_config_yaml,
        Path::new(&job.job_name),
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    cfg.job(&job.job_name)
        .cloned()
        .ok_or_else(|| format!("scrape config for job {:?} is missing", job.job_name))
}

/// Job configurations by job name.
pub type JobsByName = HashMap<String, Arc<ScrapeConfig>>;

/// Parsed job configurations, cached by the coordinator's `config_hash` so an unchanged job
/// is parsed once and keeps the same `Arc` (and so its running loops) across epochs.
#[derive(Debug, Default)]
pub struct JobConfigs {
    by_hash: HashMap<u64, Arc<ScrapeConfig>>,
}

impl JobConfigs {
    /// The configurations of `jobs` by job name, parsing those not cached; forgets cached
    /// configurations no longer referenced. Jobs that fail to parse are left out and
    /// returned as `(job, error)`.
    pub fn update(&mut self, jobs: &[ScrapeJob]) -> (JobsByName, Vec<(String, String)>) {
        let mut out = HashMap::with_capacity(jobs.len());
        let mut errors = Vec::new();
        let mut keep = HashSet::with_capacity(jobs.len());
        for j in jobs {
            keep.insert(j.config_hash);
            let cfg = match self.by_hash.get(&j.config_hash) {
                Some(c) if c.job_name == j.job_name => c.clone(),
                _ => match parse_job(j) {
                    Ok(c) => {
                        let c = Arc::new(c);
                        self.by_hash.insert(j.config_hash, c.clone());
                        c
                    }
                    Err(e) => {
                        errors.push((j.job_name.clone(), e));
                        continue;
                    }
                },
            };
            out.insert(j.job_name.clone(), cfg);
        }
        self.by_hash.retain(|h, _| keep.contains(h));
        (out, errors)
    }

    /// Number of cached configurations.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// What applying an assignment asks of the scrape manager.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// The full desired target set.
    pub targets: Vec<Target>,
    /// Targets leaving this worker that stop without staleness markers (OUTGOING in the
    /// held assignment).
    pub moved: HashSet<TargetKey>,
    /// INCOMING targets, by manager key, with the coordinator's target hash to report.
    pub incoming: BTreeMap<TargetKey, u64>,
    /// Targets per role in the new assignment (that could be built).
    pub roles: RoleCounts,
    /// Targets that could not be built: `(job, error)`.
    pub errors: Vec<(String, String)>,
}

/// Targets per role.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoleCounts {
    /// OWNER targets.
    pub owner: u64,
    /// INCOMING targets.
    pub incoming: u64,
    /// OUTGOING targets.
    pub outgoing: u64,
}

fn key_of(t: &trawl_proto::v1::AssignedTarget) -> TargetKey {
    TargetKey {
        job: t.job_name.clone(),
        labels_hash: trawl_proto::labels_from_proto(t.labels.clone()).stable_hash(),
    }
}

/// Reconciles `new` against `held` with the parsed `jobs` of `new`.
pub fn reconcile(held: Option<&Assignment>, new: &Assignment, jobs: &JobsByName) -> Reconciled {
    let mut r = Reconciled::default();
    let mut kept: HashSet<TargetKey> = HashSet::with_capacity(new.targets.len());
    for at in &new.targets {
        let Some(cfg) = jobs.get(&at.job_name) else {
            r.errors
                .push((at.job_name.clone(), "no valid scrape config for job".into()));
            continue;
        };
        let labels = trawl_proto::labels_from_proto(at.labels.clone());
        let discovered = trawl_proto::labels_from_proto(at.discovered_labels.clone());
        let t = match Target::new(labels, discovered, cfg.clone()) {
            Ok(t) => t,
            Err(e) => {
                r.errors.push((at.job_name.clone(), e.to_string()));
                continue;
            }
        };
        let key = t.key();
        match at.role() {
            Role::Owner => r.roles.owner += 1,
            Role::Incoming => {
                r.roles.incoming += 1;
                r.incoming.insert(key.clone(), at.target_hash);
            }
            Role::Outgoing => r.roles.outgoing += 1,
        }
        kept.insert(key);
        r.targets.push(t);
    }
    if let Some(h) = held {
        for at in &h.targets {
            if at.role() == Role::Outgoing {
                let k = key_of(at);
                if !kept.contains(&k) {
                    r.moved.insert(k);
                }
            }
        }
    }
    r
}

/// INCOMING targets (from `pending`) whose last scrape succeeded: the hashes to report.
pub fn reports_due(pending: &BTreeMap<TargetKey, u64>, targets: &[TargetStatus]) -> Vec<u64> {
    if pending.is_empty() {
        return Vec::new();
    }
    let mut due: Vec<u64> = targets
        .iter()
        .filter(|t| t.state.health == Health::Up)
        .filter_map(|t| pending.get(&t.target.key()).copied())
        .collect();
    due.sort_unstable();
    due.dedup();
    due
}

/// Capped exponential backoff between rounds of connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    cur: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            cur: min,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }

    /// After a session that worked: start again from `min`.
    pub fn reset(&mut self) {
        self.cur = self.min;
    }
}

/// Settings of the follower.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Coordinator addresses (host:port or URLs), tried in turn.
    pub coordinators: Vec<String>,
    /// What to register (the worker id is in it).
    pub register: RegisterRequest,
    /// Where the assignment is persisted.
    pub data_dir: PathBuf,
    /// How often first successful scrapes of INCOMING targets are checked and reported.
    pub report_interval: Duration,
    /// Heartbeat interval when the coordinator names none.
    pub default_heartbeat: Duration,
    /// First wait after a round of failed connection attempts.
    pub backoff_min: Duration,
    /// Longest wait between rounds.
    pub backoff_max: Duration,
    /// Bound on connecting and on each unary call.
    pub rpc_timeout: Duration,
    /// TLS to the coordinators (`--grpc.tls-*`); `None` dials plaintext.
    pub tls: Option<trawl_proto::tls::ClientTls>,
}

impl FollowOptions {
    /// Defaults for `coordinators` and `register`.
    pub fn new(coordinators: Vec<String>, register: RegisterRequest, data_dir: PathBuf) -> Self {
        Self {
            coordinators,
            register,
            data_dir,
            report_interval: Duration::from_secs(1),
            default_heartbeat: Duration::from_secs(5),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Live figures of the follower, for `/metrics`.
#[derive(Debug, Default)]
pub struct FollowStatus {
    /// Whether a watch stream to a coordinator is open.
    pub connected: AtomicBool,
    /// The heartbeat interval the coordinator last asked for, in ms (0 before any).
    pub heartbeat_ms: AtomicU64,
    /// Epoch of the held assignment.
    pub epoch: AtomicU64,
    /// Assignments applied.
    pub applied: AtomicU64,
    /// Assignments ignored because their epoch was not newer.
    pub ignored: AtomicU64,
    /// Sessions that ended in an error.
    pub session_errors: AtomicU64,
    /// Target hashes reported as first successful scrapes.
    pub reported: AtomicU64,
    /// Failed `ReportScrapes` calls.
    pub report_errors: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats: AtomicU64,
    /// Failed writes of the assignment file.
    pub persist_errors: AtomicU64,
}

#[derive(Debug, Default)]
struct Held {
    assignment: Option<Assignment>,
    jobs: JobConfigs,
    pending: BTreeMap<TargetKey, u64>,
    roles: RoleCounts,
}

/// The worker's assignment follower: owns the scrape manager.
pub struct Follower {
    opts: FollowOptions,
    storage: Arc<dyn Storage>,
    scrape: Mutex<ScrapeManager>,
    held: Mutex<Held>,
    counters: Arc<ManagerCounters>,
    status: FollowStatus,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("worker_id", &self.opts.register.worker_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before it could panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `bytes` to `dir/name` atomically (temp file, fsync, rename).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))
}

/// The persisted assignment in `dir`, if any.
pub fn load_assignment(dir: &Path) -> Result<Option<Assignment>, WorkerError> {
    let path = dir.join(ASSIGNMENT_FILE);
    match std::fs::read(&path) {
        Ok(b) => Assignment::decode(b.as_slice())
            .map(Some)
            .map_err(|e| WorkerError::State {
                path,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WorkerError::Io { path, source: e }),
    }
}

/// Why a session with one coordinator ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("{call}: {status}")]
    Rpc {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("assignment stream ended")]
    StreamEnded,
}

impl Follower {
    /// A follower driving `scrape`, which writes into `storage`.
    pub fn new(opts: FollowOptions, storage: Arc<dyn Storage>, scrape: ScrapeManager) -> Self {
        let counters = scrape.counters_handle();
        Self {
            opts,
            storage,
            scrape: Mutex::new(scrape),
            held: Mutex::new(Held::default()),
            counters,
            status: FollowStatus::default(),
        }
    }

    /// The worker id.
    pub fn worker_id(&self) -> &str {
        &self.opts.register.worker_id
    }

    /// Live figures.
    pub fn status(&self) -> &FollowStatus {
        &self.status
    }

    /// Scrape counters.
    pub fn counters(&self) -> &ManagerCounters {
        &self.counters
    }

    /// Targets per role in the held assignment.
    pub fn roles(&self) -> RoleCounts {
        lock(&self.held).roles
    }

    /// The held epoch.
    pub fn held_epoch(&self) -> Option<Epoch> {
        lock(&self.held).assignment.as_ref().and_then(|a| a.epoch)
    }

    /// Job names of the held assignment, sorted.
    pub fn jobs(&self) -> Vec<String> {
        let h = lock(&self.held);
        let mut v: Vec<String> = h
            .assignment
            .iter()
            .flat_map(|a| a.jobs.iter().map(|j| j.job_name.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Running targets with their scrape state.
    pub fn targets(&self) -> Vec<TargetStatus> {
        lock(&self.scrape).targets()
    }

    /// Resumes the persisted assignment, if there is one. Returns whether one was applied.
    pub async fn resume(&self) -> Result<bool, WorkerError> {
        let dir = self.opts.data_dir.clone();
        let a = tokio::task::spawn_blocking(move || load_assignment(&dir))
            .await
            .map_err(|e| WorkerError::Runtime(e.to_string()))??;
        match a {
            Some(a) => {
                let epoch = a.epoch.map(|e| e.epoch).unwrap_or(0);
                let applied = self.apply_inner(a).is_some();
                if applied {
                    tracing::info!(epoch, "resumed the persisted assignment");
                }
                Ok(applied)
            }
            None => Ok(false),
        }
    }

    /// Applies `a` if its epoch is newer than the held one and persists it. Returns whether
    /// it was applied. When it returns, the loops of dropped targets have finished (their
    /// staleness markers, where due, are written), or [`STOP_WAIT`] passed.
    pub async fn apply(&self, a: Assignment) -> bool {
        let Some((bytes, stopped)) = self.apply_inner(a) else {
            return false;
        };
        let all = async {
            for h in stopped {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            tracing::warn!("dropped scrape loops still stopping; continuing");
        }
        let dir = self.opts.data_dir.clone();
        let r =
            tokio::task::spawn_blocking(move || write_atomic(&dir, ASSIGNMENT_FILE, &bytes)).await;
        let err = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = err {
            self.status.persist_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, dir = %self.opts.data_dir.display(), "cannot persist the assignment");
        }
        true
    }

    /// Applies `a` to the scrape manager; when applied, returns its encoding to persist and
    /// the handles of the loops it stopped.
    fn apply_inner(&self, a: Assignment) -> Option<(Vec<u8>, Vec<tokio::task::JoinHandle<()>>)> {
        let mut held = lock(&self.held);
        let held_epoch = held.assignment.as_ref().and_then(|h| h.epoch);
        if held.assignment.is_some() && !should_apply(held_epoch.as_ref(), a.epoch.as_ref()) {
            self.status.ignored.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                held = held_epoch.map(|e| e.epoch).unwrap_or(0),
                got = a.epoch.map(|e| e.epoch).unwrap_or(0),
                "ignoring an assignment that is not newer"
            );
            return None;
        }
        let (jobs, job_errors) = held.jobs.update(&a.jobs);
        for (job, e) in &job_errors {
            tracing::warn!(job = %job, error = %e, "invalid scrape config in assignment");
        }
        let r = reconcile(held.assignment.as_ref(), &a, &jobs);
        for (job, e) in r.errors.iter().take(10) {
            tracing::warn!(job = %job, error = %e, "cannot build assigned target");
        }
        let n = r.targets.len();
        let moved = r.moved;
        // Dropped targets write staleness markers unless they moved; `apply` awaits them.
        let stopped = lock(&self.scrape).sync_moved(r.targets, |t| moved.contains(&t.key()));
        let epoch = a.epoch.map(|e| e.epoch).unwrap_or(0);
        held.pending = r.incoming;
        held.roles = r.roles;
        let bytes = a.encode_to_vec();
        held.assignment = Some(a);
        drop(held);
        self.status.epoch.store(epoch, Ordering::Relaxed);
        self.status.applied.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            epoch,
            targets = n,
            moved = moved.len(),
            "applied assignment"
        );
        Some((bytes, stopped))
    }

    /// Stops every scrape loop without staleness markers (the series continue after a
    /// restart or on the next owner) and waits for them.
    pub async fn stop_scraping(&self) {
        let handles = lock(&self.scrape).sync_with(Vec::new(), StopMode::Moved);
        for h in handles {
            let _ = h.await;
        }
    }

    /// Follows the coordinators until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let addrs: Vec<String> = self
            .opts
            .coordinators
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            tracing::error!("no coordinator address; scraping the held assignment only");
            let _ = shutdown.wait_for(|s| *s).await;
            return;
        }
        let mut backoff = Backoff::new(self.opts.backoff_min, self.opts.backoff_max);
        let mut i = 0usize;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let addr = &addrs[i % addrs.len()];
            let started = Instant::now();
            let r = self.session(addr, &mut shutdown).await;
            self.status.connected.store(false, Ordering::Relaxed);
            match r {
                Ok(()) => return,
                Err(e) => {
                    self.status.session_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(coordinator = %addr, error = %e, "coordinator session ended");
                }
            }
            // A session that lasted proved the cluster healthy: retry quickly.
            if started.elapsed() > self.opts.backoff_max {
                backoff.reset();
            }
            i += 1;
            // After a full round of failed addresses, wait before the next round.
            if i.is_multiple_of(addrs.len()) {
                // Never wait longer than a heartbeat interval: the leader (a new one after a
                // failover, with one heartbeat timeout of grace) counts missed heartbeats, and
                // a worker that backs off past its timeout would lose its targets.
                let mut wait = backoff.next_wait();
                let hb = self.status.heartbeat_ms.load(Ordering::Relaxed);
                if hb > 0 {
                    wait = wait.min(Duration::from_millis(hb));
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped(&mut shutdown) => return,
                }
            }
        }
    }

    async fn call<T>(
        &self,
        call: &'static str,
        f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, SessionError> {
        match tokio::time::timeout(self.opts.rpc_timeout, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(SessionError::Rpc { call, status }),
            Err(_) => Err(SessionError::Timeout(call)),
        }
    }

    /// One session with one coordinator; `Ok` only on shutdown.
    async fn session(
        &self,
        addr: &str,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        let ep = trawl_proto::tls::endpoint(addr, self.opts.tls.as_ref())
            .map_err(|e| SessionError::Connect(e.to_string()))?
            .connect_timeout(self.opts.rpc_timeout);
        let channel = match tokio::time::timeout(self.opts.rpc_timeout, ep.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(SessionError::Connect(e.to_string())),
            Err(_) => return Err(SessionError::Timeout("connect")),
        };
        let mut client = CoordinatorClient::new(channel);
        let reg = self
            .call("register", client.register(self.opts.register.clone()))
            .await?;
        let hb_every = u64::try_from(reg.heartbeat_interval_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(self.opts.default_heartbeat);
        self.status.heartbeat_ms.store(
            u64::try_from(hb_every.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let watch = WatchAssignmentRequest {
            worker_id: self.worker_id().to_string(),
            held_epoch: self.held_epoch(),
            ..Default::default()
        };
        let mut stream = self
            .call("watch assignment", client.watch_assignment(watch))
            .await?;
        self.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(
            coordinator = %addr,
            epoch = reg.epoch.map(|e| e.epoch).unwrap_or(0),
            heartbeat_ms = hb_every.as_millis() as u64,
            "registered with coordinator"
        );
        let mut hb = tokio::time::interval(hb_every);
        hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rep = tokio::time::interval(self.opts.report_interval);
        rep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rate = RateMeter::new(self.counters.samples_appended.load(Ordering::Relaxed));
        loop {
            tokio::select! {
                _ = stopped(shutdown) => return Ok(()),
                msg = stream.next() => match msg {
                    Some(Ok(a)) => {
                        self.apply(a).await;
                        // Report at once what may already be up (a role change to INCOMING).
                        self.report(&mut client).await;
                    }
                    Some(Err(status)) => return Err(SessionError::Rpc { call: "watch assignment", status }),
                    None => return Err(SessionError::StreamEnded),
                },
                _ = hb.tick() => {
                    let req = self.heartbeat_request(&mut rate);
                    self.call("heartbeat", client.heartbeat(req)).await?;
                    self.status.heartbeats.fetch_add(1, Ordering::Relaxed);
                }
                _ = rep.tick() => self.report(&mut client).await,
            }
        }
    }

    /// Reports the INCOMING targets that scraped successfully; failures are retried on the
    /// next tick, and a later epoch that still holds a target INCOMING re-arms its report.
    async fn report(&self, client: &mut CoordinatorClient<tonic::transport::Channel>) {
        let due = {
            let held = lock(&self.held);
            if held.pending.is_empty() {
                return;
            }
            let targets = lock(&self.scrape).targets();
            reports_due(&held.pending, &targets)
        };
        if due.is_empty() {
            return;
        }
        let req = ScrapeReport {
            worker_id: self.worker_id().to_string(),
            first_successful_scrapes: due.clone(),
            ..Default::default()
        };
        match self
            .call("report scrapes", client.report_scrapes(req))
            .await
        {
            Ok(_) => {
                self.status
                    .reported
                    .fetch_add(due.len() as u64, Ordering::Relaxed);
                let done: HashSet<u64> = due.into_iter().collect();
                lock(&self.held).pending.retain(|_, h| !done.contains(h));
                tracing::debug!(targets = done.len(), "reported first successful scrapes");
            }
            Err(e) => {
                self.status.report_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot report first successful scrapes");
            }
        }
    }

    fn heartbeat_request(&self, rate: &mut RateMeter) -> HeartbeatRequest {
        let targets = self.targets();
        let series_per_target = targets
            .iter()
            .filter(|t| t.state.health == Health::Up)
            .map(|t| (t.target.key().labels_hash, t.state.last_samples))
            .collect();
        HeartbeatRequest {
            worker_id: self.worker_id().to_string(),
            held_epoch: self.held_epoch(),
            active_targets: targets.len() as u64,
            head_series: self.storage.metrics().head_series,
            samples_per_second: rate.rate(self.counters.samples_appended.load(Ordering::Relaxed)),
            series_per_target,
            ..Default::default()
        }
    }
}

/// Completes once `rx` reads true (or its sender is gone). Holds no borrow of the value
/// across the caller's awaits, unlike `wait_for`'s guard.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Samples per second between two readings of a counter.
#[derive(Debug)]
struct RateMeter {
    last: u64,
    at: Instant,
}

impl RateMeter {
    fn new(v: u64) -> Self {
        Self {
            last: v,
            at: Instant::now(),
        }
    }

    fn rate(&mut self, v: u64) -> f64 {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        let r = if dt > 0.0 {
            v.saturating_sub(self.last) as f64 / dt
        } else {
            0.0
        };
        self.last = v;
        self.at = now;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::Labels;
    use trawl_proto::v1::AssignedTarget;

    fn job_yaml(name: &str, interval: &str) -> ScrapeJob {
        ScrapeJob {
            job_name: name.into(),
            config_hash: trawl_model::Labels::from_pairs([("j", name), ("i", interval)])
                .stable_hash(),
            scrape_config_yaml: format!(
                "scrape_configs:\n  - job_name: {name}\n    scrape_interval: {interval}\n    scrape_timeout: 1s\n"
            ),
        }
    }

    fn target(job: &str, addr: &str, role: Role) -> AssignedTarget {
        let l = Labels::from_pairs([("__address__", addr), ("instance", addr), ("job", job)]);
        AssignedTarget {
            target_hash: l.stable_hash(),
            labels: trawl_proto::labels_to_proto(&l),
            discovered_labels: trawl_proto::labels_to_proto(&Labels::from_pairs([(
                "__address__",
                addr,
            )])),
            job_name: job.into(),
            role: role as i32,
        }
    }

    fn assignment(epoch: u64, jobs: Vec<ScrapeJob>, targets: Vec<AssignedTarget>) -> Assignment {
        Assignment {
            epoch: Some(Epoch { epoch, term: 1 }),
            jobs,
            targets,
        }
    }

    fn key(t: &AssignedTarget) -> TargetKey {
        TargetKey {
            job: t.job_name.clone(),
            labels_hash: t.target_hash,
        }
    }

    #[test]
    fn only_newer_epochs_apply() {
        let e = |n| Epoch { epoch: n, term: 0 };
        assert!(should_apply(None, Some(&e(0))));
        assert!(should_apply(None, None));
        assert!(should_apply(Some(&e(3)), Some(&e(4))));
        assert!(!should_apply(Some(&e(3)), Some(&e(3))));
        assert!(!should_apply(Some(&e(3)), Some(&e(2))));
        assert!(!should_apply(Some(&e(3)), None));
        // A new term does not make an old epoch number newer.
        assert!(!should_apply(
            Some(&e(3)),
            Some(&Epoch { epoch: 3, term: 9 })
        ));
    }

    #[test]
    fn job_configs_parse_once_per_hash_and_report_bad_ones() {
        let mut jc = JobConfigs::default();
        let a = job_yaml("a", "15s");
        let bad = ScrapeJob {
            job_name: "bad".into(),
            config_hash: 7,
            scrape_config_yaml: "scrape_configs:\n  - job_name: bad\n    nonsense: 1\n".into(),
        };
        let other = ScrapeJob {
            job_name: "missing".into(),
            config_hash: 8,
            scrape_config_yaml: "scrape_configs:\n  - job_name: another\n".into(),
        };
        let (m1, errs) = jc.update(&[a.clone(), bad, other]);
        assert_eq!(m1.len(), 1);
        assert_eq!(m1["a"].scrape_interval.as_std(), Duration::from_secs(15));
        let failed: Vec<&str> = errs.iter().map(|(j, _)| j.as_str()).collect();
        assert_eq!(failed, ["bad", "missing"]);
        let (m2, _) = jc.update(std::slice::from_ref(&a));
        assert!(Arc::ptr_eq(&m1["a"], &m2["a"]), "cached config is reused");
        let a2 = job_yaml("a", "30s");
        let (m3, _) = jc.update(&[a2]);
        assert_eq!(m3["a"].scrape_interval.as_std(), Duration::from_secs(30));
        assert_eq!(jc.len(), 1, "configs no longer referenced are forgotten");
    }

    #[test]
    fn reconcile_builds_targets_and_decides_moved_versus_stale() {
        let jobs_list = vec![job_yaml("a", "15s")];
        let mut jc = JobConfigs::default();
        let (jobs, _) = jc.update(&jobs_list);
        let owner = target("a", "h1:1", Role::Owner);
        let outgoing = target("a", "h2:1", Role::Outgoing);
        let plain = target("a", "h3:1", Role::Owner);
        let incoming = target("a", "h4:1", Role::Incoming);
        let held = assignment(
            1,
            jobs_list.clone(),
            vec![
                owner.clone(),
                outgoing.clone(),
                plain.clone(),
                incoming.clone(),
            ],
        );
        let first = reconcile(None, &held, &jobs);
        assert_eq!(first.targets.len(), 4);
        assert!(first.moved.is_empty());
        assert_eq!(
            first.roles,
            RoleCounts {
                owner: 2,
                incoming: 1,
                outgoing: 1
            }
        );
        assert_eq!(
            first.incoming.into_iter().collect::<Vec<_>>(),
            vec![(key(&incoming), incoming.target_hash)]
        );
        for (t, at) in first
            .targets
            .iter()
            .zip([&owner, &outgoing, &plain, &incoming])
        {
            assert_eq!(
                t.key(),
                key(at),
                "manager key is the coordinator's target hash"
            );
        }

        // Epoch 2 drops the OUTGOING target (moved) and an OWNER one (gone: stale), and the
        // INCOMING one became OWNER.
        let mut now_owner = incoming.clone();
        now_owner.role = Role::Owner as i32;
        let next = assignment(2, jobs_list, vec![owner.clone(), now_owner]);
        let r = reconcile(Some(&held), &next, &jobs);
        let keys: Vec<TargetKey> = r.targets.iter().map(Target::key).collect();
        assert_eq!(keys, [key(&owner), key(&incoming)]);
        assert_eq!(r.moved, HashSet::from([key(&outgoing)]));
        assert!(!r.moved.contains(&key(&plain)));
        assert!(r.incoming.is_empty());
    }

    #[test]
    fn reconcile_keeps_an_outgoing_target_that_stays_and_skips_unbuildable_ones() {
        let jobs_list = vec![job_yaml("a", "15s")];
        let (jobs, _) = JobConfigs::default().update(&jobs_list);
        let out = target("a", "h2:1", Role::Outgoing);
        let held = assignment(1, jobs_list.clone(), vec![out.clone()]);
        let no_job = target("nojob", "h9:1", Role::Owner);
        let mut no_addr = target("a", "", Role::Owner);
        no_addr.labels = trawl_proto::labels_to_proto(&Labels::from_pairs([("job", "a")]));
        let next = assignment(2, jobs_list, vec![out.clone(), no_job, no_addr]);
        let r = reconcile(Some(&held), &next, &jobs);
        assert_eq!(r.targets.len(), 1);
        assert!(r.moved.is_empty(), "a target still assigned does not stop");
        let failed: Vec<&str> = r.errors.iter().map(|(j, _)| j.as_str()).collect();
        assert_eq!(failed, ["nojob", "a"]);
    }

    #[test]
    fn reports_due_lists_pending_targets_whose_last_scrape_was_up() {
        let (jobs, _) = JobConfigs::default().update(&[job_yaml("a", "15s")]);
        let up = target("a", "h1:1", Role::Incoming);
        let down = target("a", "h2:1", Role::Incoming);
        let not_pending = target("a", "h3:1", Role::Owner);
        let r = reconcile(
            None,
            &assignment(
                1,
                vec![],
                vec![up.clone(), down.clone(), not_pending.clone()],
            ),
            &jobs,
        );
        let health = [Health::Up, Health::Down, Health::Up];
        let statuses: Vec<TargetStatus> = r
            .targets
            .iter()
            .zip(health)
            .map(|(t, h)| TargetStatus {
                target: t.clone(),
                state: trawl_scrape::TargetState {
                    health: h,
                    ..Default::default()
                },
            })
            .collect();
        assert_eq!(reports_due(&r.incoming, &statuses), vec![up.target_hash]);
        assert!(reports_due(&BTreeMap::new(), &statuses).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<u128> = (0..5).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350, 350]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }

    #[test]
    fn assignment_file_round_trips_and_a_corrupt_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load_assignment(dir.path()).expect("no file").is_none());
        let a = assignment(
            5,
            vec![job_yaml("a", "15s")],
            vec![target("a", "h:1", Role::Owner)],
        );
        write_atomic(dir.path(), ASSIGNMENT_FILE, &a.encode_to_vec()).expect("write");
        assert_eq!(load_assignment(dir.path()).expect("load"), Some(a));
        std::fs::write(dir.path().join(ASSIGNMENT_FILE), b"\xff\xff\xff").expect("write");
        assert!(matches!(
            load_assignment(dir.path()),
            Err(WorkerError::State { .. })
        ));
    }
}
