//! The replicated cluster state: workers, the relabeled target set, placement and the
//! make-before-break handoffs, and the epoch that numbers every change of any worker's
//! assignment.
//!
//! Pure: no I/O, no clock. Time arrives inside commands (the leader's clock), so every
//! replica applying the same log holds the same state. Placement depends only on this state
//! (targets, weights, UP workers, the previous plan), so a leader failover alone moves
//! nothing.
//!
//! Handoff model, per target:
//! - `owners` are the established owners (they scrape as OWNER);
//! - the plan gives the desired owners; a desired owner that is not established is INCOMING
//!   while at least one established owner is UP (someone keeps scraping meanwhile), and the
//!   established owners that are no longer desired are OUTGOING;
//! - once every INCOMING worker confirmed a successful scrape, or no established owner is UP
//!   any more, the desired owners become the established ones: the next epoch shows them as
//!   OWNER and drops the OUTGOING ones.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use trawl_model::Labels;
use trawl_placement::{Params, Plan};
use trawl_proto::v1;

/// Load slack of the bounded-loads placement.
pub const EPSILON: f64 = 0.1;

/// A job's scrape configuration as workers receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    /// xxh64 (seed 0) of `yaml`.
    pub config_hash: u64,
    /// A complete prometheus.yml holding only this job, service discovery removed.
    pub yaml: String,
}

/// One relabeled target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// `labels.stable_hash()`.
    pub hash: u64,
    pub job: String,
    /// Labels after target relabeling, `__` labels included.
    pub labels: Labels,
    /// Labels as discovered.
    pub discovered: Labels,
}

impl TargetSpec {
    /// A target of `job` with its hash computed from `labels`.
    pub fn new(job: impl Into<String>, labels: Labels, discovered: Labels) -> Self {
        TargetSpec {
            hash: labels.stable_hash(),
            job: job.into(),
            labels,
            discovered,
        }
    }
}

/// Load figures a worker reported, replicated only when they changed materially.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkerLoad {
    pub head_series: u64,
    pub samples_per_second: f64,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: String,
    pub grpc_address: String,
    pub web_address: String,
    pub zone: String,
    pub up: bool,
    /// Leader time (ms since the epoch) of the last registration.
    pub registered_ms: i64,
    pub load: WorkerLoad,
}

/// A state change. `term` is the proposer's Raft term, recorded with the epoch it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub term: u64,
    pub op: Op,
}

/// The operations of [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A worker (re-)announces itself; it is UP afterwards.
    RegisterWorker {
        id: String,
        grpc_address: String,
        web_address: String,
        zone: String,
        now_ms: i64,
    },
    /// The leader's failure detector gave up on a worker.
    SetWorkerDown { id: String },
    /// The relabeled target set and the jobs' configurations replace the current ones.
    SetTargets {
        jobs: Vec<JobSpec>,
        targets: Vec<TargetSpec>,
    },
    /// Series counts per target (merged into the known ones) and worker load figures.
    SetWeights {
        series_per_target: BTreeMap<u64, u64>,
        loads: BTreeMap<String, WorkerLoad>,
    },
    /// First successful scrapes of INCOMING targets by `worker`.
    ConfirmScrapes { worker: String, hashes: Vec<u64> },
    /// A worker holds an epoch newer than the replicated one (the coordinator's data was
    /// lost): jump past it, so that the worker applies the assignments again.
    PassEpoch { held: u64 },
    /// A replica that became leader announces its HTTP address (for `GetCluster`).
    SetReplicaWeb { id: u64, web_address: String },
}

/// What applying a command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied; `epoch` is the epoch after it.
    Applied { epoch: u64, term: u64 },
    /// Not applicable (unknown worker, empty id); the state is unchanged.
    Rejected(String),
}

/// A target's role on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Owner,
    Incoming,
    Outgoing,
}

impl Role {
    fn to_proto(self) -> v1::assigned_target::Role {
        match self {
            Role::Owner => v1::assigned_target::Role::Owner,
            Role::Incoming => v1::assigned_target::Role::Incoming,
            Role::Outgoing => v1::assigned_target::Role::Outgoing,
        }
    }
}

/// A pending make-before-break move.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Handoff {
    /// Desired owners not yet established (INCOMING).
    pub to: Vec<String>,
    /// Established owners that are no longer desired and still UP (OUTGOING).
    pub from: Vec<String>,
    /// INCOMING workers that confirmed a scrape.
    pub confirmed: BTreeSet<String>,
}

/// The replicated cluster state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Replication factor R; every replica must run with the same value.
    pub replication: usize,
    pub epoch: u64,
    /// Term in which `epoch` was committed.
    pub epoch_term: u64,
    pub workers: BTreeMap<String, WorkerRecord>,
    pub jobs: BTreeMap<String, JobSpec>,
    pub targets: BTreeMap<u64, TargetSpec>,
    /// Observed series per target (placement weights).
    pub weights: BTreeMap<u64, u64>,
    /// The last placement (desired owners).
    pub plan: Plan,
    /// Established owners per target.
    pub owners: BTreeMap<u64, Vec<String>>,
    pub handoffs: BTreeMap<u64, Handoff>,
    /// Per worker, its targets and their roles: what [`ClusterState::assignment_for`] shows.
    pub views: BTreeMap<String, BTreeMap<u64, Role>>,
    /// HTTP addresses of replicas that have led, by Raft id.
    #[serde(default)]
    pub replica_web: BTreeMap<u64, String>,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState::new(1)
    }
}

impl ClusterState {
    /// An empty cluster with replication factor `replication` (at least 1).
    pub fn new(replication: usize) -> Self {
        ClusterState {
            replication: replication.max(1),
            epoch: 0,
            epoch_term: 0,
            workers: BTreeMap::new(),
            jobs: BTreeMap::new(),
            targets: BTreeMap::new(),
            weights: BTreeMap::new(),
            plan: Plan::default(),
            owners: BTreeMap::new(),
            handoffs: BTreeMap::new(),
            views: BTreeMap::new(),
            replica_web: BTreeMap::new(),
        }
    }

    /// The current epoch as the wire shows it.
    pub fn epoch_proto(&self) -> v1::Epoch {
        v1::Epoch {
            epoch: self.epoch,
            term: self.epoch_term,
            ..Default::default()
        }
    }

    /// Whether `jobs` and `targets` are what is replicated already (so nothing to propose).
    pub fn same_targets(&self, jobs: &[JobSpec], targets: &[TargetSpec]) -> bool {
        jobs.len() == self.jobs.len()
            && targets.len() == self.targets.len()
            && jobs.iter().all(|j| self.jobs.get(&j.name) == Some(j))
            && targets.iter().all(|t| self.targets.get(&t.hash) == Some(t))
    }

    /// UP worker ids.
    pub fn up_workers(&self) -> impl Iterator<Item = &str> {
        self.workers
            .values()
            .filter(|w| w.up)
            .map(|w| w.id.as_str())
    }

    /// Workers scraping `target` (any role), by id.
    pub fn workers_of(&self, target: u64) -> Vec<String> {
        self.views
            .iter()
            .filter(|(_, v)| v.contains_key(&target))
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// Pending handoffs.
    pub fn handoffs_pending(&self) -> usize {
        self.handoffs.len()
    }

    /// The full assignment of `worker` (empty, at the current epoch, when it has none).
    pub fn assignment_for(&self, worker: &str) -> v1::Assignment {
        let view = self.views.get(worker);
        let mut jobs: BTreeSet<&str> = BTreeSet::new();
        let mut targets = Vec::new();
        for (hash, role) in view.into_iter().flatten() {
            let Some(t) = self.targets.get(hash) else {
                continue;
            };
            jobs.insert(t.job.as_str());
            targets.push(v1::AssignedTarget {
                target_hash: t.hash,
                labels: trawl_proto::labels_to_proto(&t.labels),
                discovered_labels: trawl_proto::labels_to_proto(&t.discovered),
                job_name: t.job.clone(),
                role: role.to_proto() as i32,
                ..Default::default()
            });
        }
        let jobs = jobs
            .into_iter()
            .filter_map(|j| self.jobs.get(j))
            .map(|j| v1::ScrapeJob {
                job_name: j.name.clone(),
                config_hash: j.config_hash,
                scrape_config_yaml: j.yaml.clone(),
                ..Default::default()
            })
            .collect();
        v1::Assignment {
            epoch: Some(self.epoch_proto()),
            jobs,
            targets,
            ..Default::default()
        }
    }

    /// Every worker as `GetCluster` shows it (replicas are filled in by the service).
    pub fn cluster(&self) -> v1::ClusterState {
        let workers = self
            .workers
            .values()
            .map(|w| v1::WorkerInfo {
                id: w.id.clone(),
                state: if w.up {
                    v1::worker_info::State::Up
                } else {
                    v1::worker_info::State::Down
                } as i32,
                grpc_address: w.grpc_address.clone(),
                web_address: w.web_address.clone(),
                zone: w.zone.clone(),
                targets: self.views.get(&w.id).map_or(0, |v| v.len() as u64),
                series: w.load.head_series,
                samples_per_second: w.load.samples_per_second,
                ..Default::default()
            })
            .collect();
        v1::ClusterState {
            epoch: Some(self.epoch_proto()),
            workers,
            replication_factor: u32::try_from(self.replication).unwrap_or(u32::MAX),
            ..Default::default()
        }
    }

    fn apply_op(&mut self, op: &Op) -> Result<bool, String> {
        match op {
            Op::RegisterWorker {
                id,
                grpc_address,
                web_address,
                zone,
                now_ms,
            } => {
                if id.is_empty() {
                    return Err("empty worker id".into());
                }
                let w = self
                    .workers
                    .entry(id.clone())
                    .or_insert_with(|| WorkerRecord {
                        id: id.clone(),
                        grpc_address: String::new(),
                        web_address: String::new(),
                        zone: String::new(),
                        up: false,
                        registered_ms: *now_ms,
                        load: WorkerLoad::default(),
                    });
                // A zone change is a placement input like UP/DOWN.
                let replace = !w.up || w.zone != *zone;
                w.grpc_address.clone_from(grpc_address);
                w.web_address.clone_from(web_address);
                w.zone.clone_from(zone);
                w.registered_ms = *now_ms;
                w.up = true;
                Ok(replace)
            }
            Op::SetWorkerDown { id } => match self.workers.get_mut(id) {
                None => Err(format!("unknown worker {id:?}")),
                Some(w) if !w.up => Ok(false),
                Some(w) => {
                    w.up = false;
                    w.load = WorkerLoad::default();
                    Ok(true)
                }
            },
            Op::SetTargets { jobs, targets } => {
                self.jobs = jobs.iter().map(|j| (j.name.clone(), j.clone())).collect();
                self.targets = targets.iter().map(|t| (t.hash, t.clone())).collect();
                self.weights.retain(|h, _| self.targets.contains_key(h));
                Ok(true)
            }
            Op::SetWeights {
                series_per_target,
                loads,
            } => {
                let mut replace = false;
                for (h, n) in series_per_target {
                    if self.targets.contains_key(h) && self.weights.get(h) != Some(n) {
                        self.weights.insert(*h, *n);
                        replace = true;
                    }
                }
                for (id, l) in loads {
                    if let Some(w) = self.workers.get_mut(id)
                        && w.up
                    {
                        w.load = *l;
                    }
                }
                Ok(replace)
            }
            Op::ConfirmScrapes { worker, hashes } => {
                if !self.workers.contains_key(worker) {
                    return Err(format!("unknown worker {worker:?}"));
                }
                for h in hashes {
                    if let Some(ho) = self.handoffs.get_mut(h)
                        && ho.to.contains(worker)
                    {
                        ho.confirmed.insert(worker.clone());
                    }
                }
                Ok(false)
            }
            Op::PassEpoch { .. } => Ok(false),
            Op::SetReplicaWeb { id, web_address } => {
                self.replica_web.insert(*id, web_address.clone());
                Ok(false)
            }
        }
    }

    /// Re-runs placement over the current inputs, keeping the previous plan where the
    /// bounds allow.
    fn replace(&mut self) {
        let targets: Vec<trawl_placement::Target> = self
            .targets
            .keys()
            .map(|h| trawl_placement::Target {
                id: *h,
                weight: self.weights.get(h).copied(),
            })
            .collect();
        let workers: Vec<trawl_placement::Worker> = self
            .workers
            .values()
            .filter(|w| w.up)
            .map(|w| {
                let mut pw = trawl_placement::Worker::new(w.id.clone());
                if !w.zone.is_empty() {
                    pw = pw.with_zone(w.zone.clone());
                }
                pw
            })
            .collect();
        let params = Params {
            replication: self.replication,
            epsilon: EPSILON,
            ..Params::default()
        };
        match trawl_placement::assign(&targets, &workers, Some(&self.plan), &params) {
            Ok(p) => self.plan = p,
            // Inputs are validated on the way in (ids non-empty and unique, R >= 1), so
            // this is a bug; keeping the old plan keeps every replica consistent.
            Err(e) => tracing::error!(error = %e, "placement failed, keeping the previous plan"),
        }
    }

    /// Derives established owners, handoffs and views from the plan and confirmations.
    fn settle(&mut self) {
        let up: BTreeSet<&str> = self.up_workers().collect();
        let mut owners = BTreeMap::new();
        let mut handoffs = BTreeMap::new();
        let mut views: BTreeMap<String, BTreeMap<u64, Role>> = up
            .iter()
            .map(|w| ((*w).to_string(), BTreeMap::new()))
            .collect();
        for (hash, desired) in &self.plan.owners {
            if !self.targets.contains_key(hash) {
                continue;
            }
            let established: Vec<String> = self
                .owners
                .get(hash)
                .map(|o| {
                    o.iter()
                        .filter(|w| up.contains(w.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let to: Vec<String> = desired
                .iter()
                .filter(|w| !established.contains(w))
                .cloned()
                .collect();
            let from: Vec<String> = established
                .iter()
                .filter(|w| !desired.contains(w))
                .cloned()
                .collect();
            let prev = self.handoffs.get(hash);
            let confirmed: BTreeSet<String> = prev
                .map(|h| {
                    h.confirmed
                        .iter()
                        .filter(|w| to.contains(w))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            // Nobody established is UP (a new target, or its owners died): nothing to hand
            // off from. Nothing new: the remaining owners already scrape it.
            let done =
                established.is_empty() || to.is_empty() || to.iter().all(|w| confirmed.contains(w));
            if done {
                for w in desired {
                    if let Some(v) = views.get_mut(w) {
                        v.insert(*hash, Role::Owner);
                    }
                }
                owners.insert(*hash, desired.clone());
                continue;
            }
            for w in &established {
                let role = if desired.contains(w) {
                    Role::Owner
                } else {
                    Role::Outgoing
                };
                if let Some(v) = views.get_mut(w) {
                    v.insert(*hash, role);
                }
            }
            for w in &to {
                if let Some(v) = views.get_mut(w) {
                    v.insert(*hash, Role::Incoming);
                }
            }
            owners.insert(*hash, established);
            handoffs.insert(
                *hash,
                Handoff {
                    to,
                    from,
                    confirmed,
                },
            );
        }
        self.owners = owners;
        self.handoffs = handoffs;
        self.views = views;
    }

    /// Jobs as each worker's view references them, to notice config-only changes.
    fn job_view(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.views
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(w, v)| {
                let jobs = v
                    .keys()
                    .filter_map(|h| self.targets.get(h))
                    .filter_map(|t| self.jobs.get(&t.job))
                    .map(|j| (j.name.clone(), j.config_hash))
                    .collect();
                (w.clone(), jobs)
            })
            .collect()
    }

    fn target_view(&self) -> BTreeMap<String, Vec<(u64, Role, u64)>> {
        // The label hash names a target; the job is part of the labels, so the pair
        // (hash, role) plus the job config hash captures everything a worker receives.
        self.views
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(w, v)| {
                let ts = v
                    .iter()
                    .map(|(h, r)| {
                        let job = self
                            .targets
                            .get(h)
                            .and_then(|t| self.jobs.get(&t.job))
                            .map_or(0, |j| j.config_hash);
                        (*h, *r, job)
                    })
                    .collect();
                (w.clone(), ts)
            })
            .collect()
    }
}

impl trawl_raft::StateMachine for ClusterState {
    type Command = Command;
    type Response = Response;

    fn apply(&mut self, cmd: &Command) -> Response {
        let before_targets = self.target_view();
        let before_jobs = self.job_view();
        match self.apply_op(&cmd.op) {
            Err(e) => return Response::Rejected(e),
            Ok(replace) => {
                if replace {
                    self.replace();
                }
            }
        }
        self.settle();
        if self.target_view() != before_targets || self.job_view() != before_jobs {
            self.epoch += 1;
            self.epoch_term = cmd.term;
        }
        if let Op::PassEpoch { held } = cmd.op
            && held >= self.epoch
        {
            self.epoch = held.saturating_add(1);
            self.epoch_term = cmd.term;
        }
        Response::Applied {
            epoch: self.epoch,
            term: self.epoch_term,
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        // Serialising plain maps of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut s: ClusterState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        // The flag wins over the snapshot: the next change places with the configured R.
        s.replication = self.replication;
        *self = s;
        Ok(())
    }
}

/// Whether reported series counts differ enough from the replicated weights to be worth a
/// log entry: a new target, or a change by more than 10% (at least 10 series, so small
/// targets do not flap).
pub fn weights_changed(
    replicated: &BTreeMap<u64, u64>,
    reported: &BTreeMap<u64, u64>,
) -> BTreeMap<u64, u64> {
    reported
        .iter()
        .filter(|(h, n)| match replicated.get(*h) {
            None => true,
            Some(old) => {
                let d = old.abs_diff(**n);
                d >= 10 && d * 10 > *old
            }
        })
        .map(|(h, n)| (*h, *n))
        .collect()
}

/// Whether a worker's load figures moved by more than 10%.
pub fn load_changed(replicated: &WorkerLoad, reported: &WorkerLoad) -> bool {
    let rel = |a: f64, b: f64| {
        let d = (a - b).abs();
        d > 0.0 && d > 0.1 * a.abs().max(b.abs()) && d >= 1.0
    };
    rel(replicated.head_series as f64, reported.head_series as f64)
        || rel(replicated.samples_per_second, reported.samples_per_second)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
