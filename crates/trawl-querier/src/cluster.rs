//! Membership: who the workers are, where to reach them, and the replication factor, as the
//! coordinators' `GetCluster` reports it.
//!
//! The view is replaced whole on every successful poll ([`Membership::apply`]), so a query
//! sees one consistent set of workers. Channels are lazily connected and reused across polls
//! while a worker keeps its id and address, so a poll costs no reconnects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use trawl_proto::tls::ClientTls;
use trawl_proto::v1;

use crate::QuerierError;

/// One worker as the querier addresses it.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The worker's id (stable across restarts).
    pub id: String,
    /// host:port of its Store gRPC service.
    pub grpc_address: String,
    /// Whether the coordinator considers it up. Down workers are still asked (they may be
    /// back), but their failure is expected.
    pub up: bool,
    /// Lazily connected channel to `grpc_address`.
    pub channel: Channel,
}

/// One consistent picture of the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Workers sorted by id.
    pub workers: Vec<Worker>,
    /// Replication factor R (at least 1).
    pub replication_factor: u32,
    /// Web (HTTP) addresses of the coordinator replicas, the leader first.
    pub coordinator_web: Vec<String>,
}

impl ClusterView {
    /// The ids of the workers that are up, sorted.
    pub fn up_ids(&self) -> Vec<&str> {
        self.workers
            .iter()
            .filter(|w| w.up)
            .map(|w| w.id.as_str())
            .collect()
    }
}

/// The querier's knowledge of the cluster: `None` until the first `GetCluster` answer.
#[derive(Debug)]
pub struct Membership {
    view: RwLock<Option<Arc<ClusterView>>>,
    channels: Mutex<HashMap<(String, String), Channel>>,
    ready: Arc<AtomicBool>,
    shard_connect_timeout: Duration,
    polls_failed: AtomicU64,
    /// TLS to workers and coordinators (`--grpc.tls-*`); `None` dials plaintext.
    tls: Option<ClientTls>,
}

impl Default for Membership {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

/// Web address of a coordinator replica, when the coordinator reports one.
fn replica_web_address(r: &v1::ReplicaInfo) -> Option<String> {
    let a = r.web_address.trim();
    (!a.is_empty()).then(|| a.to_string())
}

/// An endpoint for `addr` (host:port or a URL), over TLS when `tls` is given.
pub(crate) fn endpoint(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Endpoint, QuerierError> {
    Ok(trawl_proto::tls::endpoint(addr, tls)
        .map_err(|e| QuerierError::Address {
            address: addr.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true))
}

impl Membership {
    /// An empty membership; channels to workers give up connecting after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            view: RwLock::new(None),
            channels: Mutex::new(HashMap::new()),
            ready: Arc::new(AtomicBool::new(false)),
            shard_connect_timeout: connect_timeout,
            polls_failed: AtomicU64::new(0),
            tls: None,
        }
    }

    /// Dials workers and coordinators over TLS (`--grpc.tls-*`); `None` dials plaintext.
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The current view; `None` before the first answer.
    pub fn snapshot(&self) -> Option<Arc<ClusterView>> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Set once the first cluster state arrived (the querier's readiness).
    pub fn ready(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// `GetCluster` polls that reached no coordinator.
    pub fn polls_failed(&self) -> u64 {
        self.polls_failed.load(Ordering::Relaxed)
    }

    /// Replaces the view with `state`. Must run inside a tokio runtime (channels spawn their
    /// connection task). Workers with an unusable address are left out and logged.
    pub fn apply(&self, state: v1::ClusterState) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next: HashMap<(String, String), Channel> = HashMap::new();
        let mut workers = Vec::with_capacity(state.workers.len());
        for w in state.workers {
            if w.id.is_empty() || w.grpc_address.is_empty() {
                tracing::warn!(worker = %w.id, address = %w.grpc_address, "worker without id or address ignored");
                continue;
            }
            let key = (w.id.clone(), w.grpc_address.clone());
            let channel = match channels.get(&key) {
                Some(c) => c.clone(),
                None => match endpoint(
                    &w.grpc_address,
                    self.shard_connect_timeout,
                    self.tls.as_ref(),
                ) {
                    Ok(e) => e.connect_lazy(),
                    Err(e) => {
                        tracing::warn!(worker = %w.id, error = %e, "worker address unusable");
                        continue;
                    }
                },
            };
            next.insert(key, channel.clone());
            workers.push(Worker {
                up: w.state == v1::worker_info::State::Up as i32,
                id: w.id,
                grpc_address: w.grpc_address,
                channel,
            });
        }
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        *channels = next;
        let mut replicas = state.replicas;
        // Leader first, then by id: the proxy tries them in this order.
        replicas.sort_by_key(|r| (!r.leader, r.id));
        let view = ClusterView {
            workers,
            replication_factor: state.replication_factor.max(1),
            coordinator_web: replicas.iter().filter_map(replica_web_address).collect(),
        };
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(view));
        self.ready.store(true, Ordering::Release);
    }

    /// Asks each coordinator in turn until one answers, and applies its answer.
    pub async fn poll_once(
        &self,
        coordinators: &[Channel],
        addresses: &[String],
        timeout: Duration,
    ) -> Result<(), QuerierError> {
        let mut last = String::from("no coordinator address");
        for (ch, addr) in coordinators.iter().zip(addresses) {
            let mut client = v1::coordinator_client::CoordinatorClient::new(ch.clone());
            let mut req = tonic::Request::new(v1::GetClusterRequest::default());
            req.set_timeout(timeout);
            match tokio::time::timeout(timeout, client.get_cluster(req)).await {
                Ok(Ok(resp)) => {
                    self.apply(resp.into_inner());
                    return Ok(());
                }
                Ok(Err(status)) => {
                    tracing::debug!(coordinator = %addr, error = %status, "get cluster failed");
                    last = format!("{addr}: {}", status.message());
                }
                Err(_) => {
                    tracing::debug!(coordinator = %addr, "get cluster timed out");
                    last = format!("{addr}: timed out after {timeout:?}");
                }
            }
        }
        self.polls_failed.fetch_add(1, Ordering::Relaxed);
        Err(QuerierError::NoCoordinator(last))
    }

    /// Polls every `interval` until `shutdown` resolves. Errors are logged; the last good
    /// view stays in use meanwhile (the workers keep serving what they hold).
    pub async fn run(
        self: Arc<Self>,
        addresses: Vec<String>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), QuerierError> {
        let coordinators: Vec<Channel> = addresses
            .iter()
            .map(|a| {
                endpoint(a, interval.max(Duration::from_secs(1)), self.tls.as_ref())
                    .map(|e| e.connect_lazy())
            })
            .collect::<Result<_, _>>()?;
        let timeout = interval.max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tick.tick() => {}
            }
            match self.poll_once(&coordinators, &addresses, timeout).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("cluster state received again");
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot get the cluster state");
                    }
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, addr: &str, up: bool) -> v1::WorkerInfo {
        v1::WorkerInfo {
            id: id.into(),
            grpc_address: addr.into(),
            state: if up {
                v1::worker_info::State::Up
            } else {
                v1::worker_info::State::Down
            } as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn apply_replaces_the_view_and_sets_ready() {
        let m = Membership::default();
        assert!(m.snapshot().is_none());
        assert!(!m.ready().load(Ordering::Acquire));
        m.apply(v1::ClusterState {
            workers: vec![
                worker("w2", "127.0.0.1:2", false),
                worker("w1", "127.0.0.1:1", true),
                worker("", "127.0.0.1:3", true),
                worker("w4", "", true),
            ],
            replication_factor: 0,
            ..Default::default()
        });
        let v = m.snapshot().expect("view");
        assert!(m.ready().load(Ordering::Acquire));
        let ids: Vec<&str> = v.workers.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["w1", "w2"]);
        assert_eq!(v.up_ids(), ["w1"]);
        assert_eq!(v.replication_factor, 1);
        m.apply(v1::ClusterState {
            workers: vec![worker("w3", "127.0.0.1:3", true)],
            replication_factor: 2,
            ..Default::default()
        });
        let v = m.snapshot().expect("view");
        assert_eq!(v.up_ids(), ["w3"]);
        assert_eq!(v.replication_factor, 2);
    }

    #[tokio::test]
    async fn poll_reports_unreachable_coordinators() {
        // A port nobody listens on: bind, read the port, close.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        drop(l);
        let m = Membership::default();
        let ch = endpoint(&addr, Duration::from_secs(1), None)
            .expect("endpoint")
            .connect_lazy();
        let r = m
            .poll_once(&[ch], std::slice::from_ref(&addr), Duration::from_secs(2))
            .await;
        assert!(matches!(r, Err(QuerierError::NoCoordinator(ref s)) if s.contains(&addr)));
        assert_eq!(m.polls_failed(), 1);
        assert!(m.snapshot().is_none());
    }
}
