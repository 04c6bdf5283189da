//! The discovery manager: providers per job, latest group per (provider, source), merged
//! per job and sent at most once per update interval.
//!
//! Each update carries only the jobs whose groups changed since the last send, each with
//! its full current group list (groups of every provider of that job, by provider then
//! source). A job that is removed by a reload is sent once with no groups. Groups with
//! no targets are not kept: an empty group only clears its source.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use trawl_config::{Config, ScrapeConfig};

use crate::{ProviderConfig, TargetGroup};

/// Groups of the changed jobs, keyed by job name.
pub type JobGroups = BTreeMap<String, Vec<TargetGroup>>;

#[derive(Debug, Default)]
struct State {
    /// provider id -> (job, source -> group)
    groups: BTreeMap<u64, (String, BTreeMap<String, TargetGroup>)>,
    dirty: BTreeSet<String>,
}

impl State {
    fn merged(&self, job: &str) -> Vec<TargetGroup> {
        self.groups
            .values()
            .filter(|(j, _)| j == job)
            .flat_map(|(_, g)| g.values().cloned())
            .collect()
    }
}

#[derive(Debug)]
struct Running {
    id: u64,
    cfg: ProviderConfig,
    task: JoinHandle<()>,
}

/// Runs providers and sends merged job groups. Must be created and reloaded inside a
/// Tokio runtime. Dropping it stops every provider.
#[derive(Debug)]
pub struct DiscoveryManager {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    running: BTreeMap<String, Vec<Running>>,
    next_id: u64,
    sender: JoinHandle<()>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic in another holder cannot leave the maps half-updated in a way that
    // matters: every write is a single insert/remove.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The providers a scrape config asks for.
pub fn providers_of(sc: &ScrapeConfig) -> Vec<ProviderConfig> {
    let sd = &sc.service_discovery;
    let mut out = Vec::new();
    if !sd.static_configs.is_empty() {
        out.push(ProviderConfig::Static(sd.static_configs.clone()));
    }
    out.extend(sd.file.iter().cloned().map(ProviderConfig::File));
    out.extend(sd.http.iter().cloned().map(ProviderConfig::Http));
    out.extend(
        sd.dns
            .iter()
            .cloned()
            .map(|c| ProviderConfig::Dns(crate::dns::DnsSd::system(c))),
    );
    out.extend(
        sd.kubernetes
            .iter()
            .cloned()
            .map(ProviderConfig::Kubernetes),
    );
    out
}

impl DiscoveryManager {
    /// Creates the manager; updates go to `tx` at most once per `update_every`
    /// (Prometheus uses 5 s).
    pub fn new(update_every: Duration, tx: mpsc::Sender<JobGroups>) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let notify = Arc::new(Notify::new());
        let sender = tokio::spawn(send_loop(
            Arc::clone(&state),
            Arc::clone(&notify),
            update_every,
            tx,
        ));
        DiscoveryManager {
            state,
            notify,
            running: BTreeMap::new(),
            next_id: 0,
            sender,
        }
    }

    /// Applies a configuration: providers whose job and config are unchanged keep
    /// running; the rest are stopped or started.
    pub fn apply_config(&mut self, cfg: &Config) {
        let mut wanted: BTreeMap<String, Vec<ProviderConfig>> = BTreeMap::new();
        for sc in &cfg.scrape_configs {
            wanted.insert(sc.job_name.clone(), providers_of(sc));
        }
        self.apply(wanted);
    }

    /// Applies a job -> providers map directly.
    pub fn apply(&mut self, wanted: BTreeMap<String, Vec<ProviderConfig>>) {
        let mut old = std::mem::take(&mut self.running);
        let mut stopped = Vec::new();
        // A new job without any provider is still announced once (with no groups), so
        // the consumer learns that the job exists, as Prometheus does.
        let mut announce: Vec<String> = wanted
            .iter()
            .filter(|(job, cfgs)| cfgs.is_empty() && !old.contains_key(*job))
            .map(|(job, _)| job.clone())
            .collect();
        for (job, cfgs) in &wanted {
            let mut have = old.remove(job).unwrap_or_default();
            let mut now = Vec::new();
            for c in cfgs {
                if let Some(pos) = have.iter().position(|r| &r.cfg == c) {
                    now.push(have.swap_remove(pos));
                } else {
                    now.push(self.start(job, c.clone()));
                }
            }
            stopped.extend(have.into_iter().map(|r| (job.clone(), r)));
            self.running.insert(job.clone(), now);
        }
        for (job, rs) in old {
            stopped.extend(rs.into_iter().map(|r| (job.clone(), r)));
        }
        if stopped.is_empty() && announce.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        st.dirty.extend(announce.drain(..));
        for (job, r) in stopped {
            r.task.abort();
            st.groups.remove(&r.id);
            st.dirty.insert(job);
        }
        drop(st);
        self.notify.notify_one();
    }

    fn start(&mut self, job: &str, cfg: ProviderConfig) -> Running {
        let id = self.next_id;
        self.next_id += 1;
        lock(&self.state)
            .groups
            .insert(id, (job.to_owned(), BTreeMap::new()));
        let state = Arc::clone(&self.state);
        let notify = Arc::clone(&self.notify);
        let job = job.to_owned();
        let c = cfg.clone();
        let task = tokio::spawn(async move {
            let (tx, mut rx) = mpsc::channel::<Vec<TargetGroup>>(4);
            let forward = async move {
                while let Some(update) = rx.recv().await {
                    let mut st = lock(&state);
                    // A provider stopped by a reload may still deliver; ignore it.
                    let Some((_, groups)) = st.groups.get_mut(&id) else {
                        return;
                    };
                    for g in update {
                        if g.targets.is_empty() {
                            groups.remove(&g.source);
                        } else {
                            groups.insert(g.source.clone(), g);
                        }
                    }
                    st.dirty.insert(job.clone());
                    drop(st);
                    notify.notify_one();
                }
            };
            tokio::join!(c.run(tx), forward);
        });
        Running { id, cfg, task }
    }
}

impl Drop for DiscoveryManager {
    fn drop(&mut self) {
        self.sender.abort();
        for r in self.running.values().flatten() {
            r.task.abort();
        }
    }
}

async fn send_loop(
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    every: Duration,
    tx: mpsc::Sender<JobGroups>,
) {
    loop {
        notify.notified().await;
        let out: JobGroups = {
            let mut st = lock(&state);
            let dirty = std::mem::take(&mut st.dirty);
            dirty
                .into_iter()
                .map(|j| {
                    let g = st.merged(&j);
                    (j, g)
                })
                .collect()
        };
        if !out.is_empty() && tx.send(out).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}
