//! `trawl-coordinator`: the coordinator role of a Trawl cluster.
//!
//! Job: discover targets and relabel them (as Prometheus would), keep the membership of the
//! workers, place every target on `--cluster.replication-factor` workers by consistent
//! hashing with bounded loads (`trawl-placement`), and hand targets over make-before-break
//! when placement moves them. The state lives in a replicated state machine
//! ([`state::ClusterState`] through `trawl-raft`), served over gRPC (`trawl.v1.Coordinator`,
//! [`service`]) and HTTP ([`http`]).
//!
//! Invariants:
//! - Placement and handoffs are a pure function of the replicated state: a leader failover
//!   alone moves nothing. Time travels inside commands (the leader's clock).
//! - The epoch increases by one for every committed change of any worker's assignment;
//!   workers apply only epochs newer than the one they hold.
//! - A target moves make-before-break: the new owner scrapes it as INCOMING while the old
//!   one keeps it as OUTGOING, until the new owner reported a successful scrape (or the old
//!   owner is down).
//! - Only the leader proposes; every replica runs discovery so that a new leader knows the
//!   target set at once, and the leader waits until discovery reported every job (or a
//!   patience period passed) before proposing a target set, so a restart cannot wipe the
//!   assignment with an empty one.
//! - With `--raft.peers` the state is replicated by `trawl_raft::RaftNode` (Raft traffic on
//!   the same gRPC port); without it by `trawl_raft::Local`, persisted in `--data.path`.
//! - Files: `--data.path` holds the replicated state only (`state.snapshot` for a single
//!   replica; `raft.log`, `vote.json`, `snapshot.bin` with `--raft.peers`).
//! - Every replica must run with the same `--cluster.replication-factor`: placement is
//!   computed on each replica from the log, and the flag (not the snapshot) decides R.
//! - Failure detection is leader soft state; a new leader grants every worker a full
//!   `--cluster.heartbeat-timeout` before marking it down.

// Proto messages are always built with `..Default::default()` so that fields added to the
// contract later do not break this crate; clippy sees no effect today.
#![allow(clippy::needless_update)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use trawl_model::PromDuration;
use trawl_raft::SharedReplicator;

pub mod http;
pub mod leader;
pub mod service;
pub mod state;

pub use leader::{Desired, FailureDetector, LeaderCounters, LeaderOptions};
pub use service::CoordinatorService;
pub use state::{ClusterState, Command, JobSpec, Op, Role, TargetSpec};

/// Errors of the coordinator role.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The configuration file could not be loaded at startup.
    #[error("error loading config: {0}")]
    Config(#[from] trawl_config::ConfigError),
    /// A listener could not be bound.
    #[error("listening on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    /// The replicated state could not be opened.
    #[error("replication: {0}")]
    Replica(#[from] trawl_raft::ReplicaError),
    /// A flag value is invalid.
    #[error("invalid flag: {0}")]
    Flag(String),
    /// A server failed while running.
    #[error("server: {0}")]
    Serve(String),
    /// Any other I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn parse_duration(s: &str) -> Result<PromDuration, String> {
    PromDuration::parse(s).map_err(|e| e.to_string())
}

/// Flags of `trawl coordinator`, named like Prometheus's where Prometheus has them.
#[derive(Debug, Clone, Args)]
pub struct CoordinatorArgs {
    /// Prometheus configuration file path.
    #[arg(long = "config.file", default_value = "prometheus.yml")]
    pub config_file: PathBuf,
    /// Address to listen on for the web interface and API.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9091")]
    pub web_listen_address: String,
    /// Address for the gRPC Coordinator service (and Raft traffic between replicas).
    #[arg(long = "grpc.listen-address", default_value = "0.0.0.0:9191")]
    pub grpc_listen_address: String,
    /// Directory of the replicated state.
    #[arg(long = "data.path", default_value = "data/coordinator")]
    pub data_path: PathBuf,
    /// This replica's Raft id (must appear in --raft.peers when that is set).
    #[arg(long = "raft.id", default_value_t = 1)]
    pub raft_id: u64,
    /// Every replica as id=host:port of its gRPC address, comma separated
    /// (`1=h1:9191,2=h2:9191,3=h3:9191`); unset runs one replica alone.
    #[arg(long = "raft.peers")]
    pub raft_peers: Option<String>,
    /// Workers that scrape each target.
    #[arg(long = "cluster.replication-factor", default_value_t = 1)]
    pub replication_factor: usize,
    /// A worker silent for this long is marked down and its targets move.
    #[arg(long = "cluster.heartbeat-timeout", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_timeout: PromDuration,
    /// Enable shutdown and reload via HTTP request.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Limits of the gRPC server (`--grpc.max-concurrent-requests`, `--grpc.request-timeout`).
    #[command(flatten)]
    pub grpc_limits: trawl_proto::server::GrpcLimits,
    /// TLS of the gRPC server, Raft peers and forwarding to the leader
    /// (`--grpc.tls-cert-file`, `--grpc.tls-key-file`, `--grpc.tls-ca-file`).
    #[command(flatten)]
    pub tls: trawl_proto::tls::TlsFlags,
}

/// Parses `--raft.peers`: `id=host:port` pairs, comma separated, ids unique.
pub fn parse_peers(s: &str) -> Result<Vec<(u64, String)>, CoordinatorError> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, addr)) = part.split_once('=') else {
            return Err(CoordinatorError::Flag(format!(
                "--raft.peers: {part:?} is not id=host:port"
            )));
        };
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| CoordinatorError::Flag(format!("--raft.peers: bad id in {part:?}")))?;
        let addr = addr.trim();
        if addr.is_empty() || !addr.contains(':') {
            return Err(CoordinatorError::Flag(format!(
                "--raft.peers: bad address in {part:?}"
            )));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(CoordinatorError::Flag(format!(
                "--raft.peers: duplicate id {id}"
            )));
        }
        out.push((id, addr.to_string()));
    }
    if out.is_empty() {
        return Err(CoordinatorError::Flag("--raft.peers is empty".into()));
    }
    Ok(out)
}

impl CoordinatorArgs {
    /// Flags as `/api/v1/status/flags` shows them.
    pub fn flags(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("config.file", self.config_file.display().to_string());
        put("web.listen-address", self.web_listen_address.clone());
        put("grpc.listen-address", self.grpc_listen_address.clone());
        put("data.path", self.data_path.display().to_string());
        put("raft.id", self.raft_id.to_string());
        put("raft.peers", self.raft_peers.clone().unwrap_or_default());
        put(
            "cluster.replication-factor",
            self.replication_factor.to_string(),
        );
        put(
            "cluster.heartbeat-timeout",
            self.heartbeat_timeout.to_string(),
        );
        put("web.enable-lifecycle", self.enable_lifecycle.to_string());
        for (k, v) in self.grpc_limits.flags() {
            put(k, v);
        }
        for (k, v) in self.tls.flags() {
            put(k, v);
        }
        m
    }

    /// Runs until SIGTERM/SIGINT.
    pub fn run(self) -> ExitCode {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("trawl-coordinator")
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the tokio runtime");
                return ExitCode::FAILURE;
            }
        };
        match rt.block_on(self.serve(termination())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "trawl coordinator failed");
                ExitCode::FAILURE
            }
        }
    }

    /// Serves until `shutdown` resolves. SIGHUP reloads the configuration.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CoordinatorError> {
        let running = self.start().await?;
        shutdown.await;
        tracing::info!("received shutdown signal, stopping");
        running.stop().await;
        tracing::info!("see you next time");
        Ok(())
    }

    /// Starts every part of the coordinator and returns once it listens; [`Running::stop`]
    /// ends it. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<Running, CoordinatorError> {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "starting trawl coordinator"
        );
        if self.replication_factor == 0 {
            return Err(CoordinatorError::Flag(
                "--cluster.replication-factor must be at least 1".into(),
            ));
        }
        let timeout = self.heartbeat_timeout.as_std();
        if timeout.is_zero() {
            return Err(CoordinatorError::Flag(
                "--cluster.heartbeat-timeout must be positive".into(),
            ));
        }
        let tls = self
            .tls
            .load()
            .map_err(|e| CoordinatorError::Flag(e.to_string()))?;
        let (config, raw) = leader::load_config(&self.config_file)?;
        tracing::info!(
            file = %self.config_file.display(),
            jobs = config.scrape_configs.len(),
            "completed loading of configuration file"
        );

        let web_listener = bind(&self.web_listen_address).await?;
        let grpc_listener = bind(&self.grpc_listen_address).await?;
        let web_addr: SocketAddr = web_listener.local_addr()?;
        let grpc_addr: SocketAddr = grpc_listener.local_addr()?;

        let mut raft: Option<Arc<trawl_raft::RaftNode<ClusterState>>> = None;
        let replicator: SharedReplicator<ClusterState> = match &self.raft_peers {
            None => {
                let dir = self.data_path.clone();
                let r = self.replication_factor;
                let addr = grpc_addr.to_string();
                let local = tokio::task::spawn_blocking(move || {
                    trawl_raft::Local::open(Some(&dir), ClusterState::new(r), addr)
                })
                .await
                .map_err(|e| CoordinatorError::Serve(e.to_string()))??;
                Arc::new(local)
            }
            Some(peers) => {
                let peers = parse_peers(peers)?;
                if !peers.iter().any(|(id, _)| *id == self.raft_id) {
                    return Err(CoordinatorError::Flag(format!(
                        "--raft.id {} is not in --raft.peers",
                        self.raft_id
                    )));
                }
                let mut cfg = trawl_raft::RaftConfig::new(
                    self.raft_id,
                    peers.into_iter().collect(),
                    self.data_path.clone(),
                );
                cfg.tls = tls.as_ref().map(|t| t.client().clone());
                let node = Arc::new(
                    trawl_raft::RaftNode::start(cfg, ClusterState::new(self.replication_factor))
                        .await?,
                );
                raft = Some(node.clone());
                node
            }
        };
        let raft_service = raft.as_ref().map(|n| n.grpc_service());

        let desired = Desired::new(self.config_file.clone(), config, raw);
        let rx = desired.start_discovery(leader::DISCOVERY_UPDATE_EVERY);
        let mut tasks = vec![tokio::spawn(desired.clone().run_discovery(rx))];
        let detector = Arc::new(Mutex::new(FailureDetector::default()));
        let counters = Arc::new(LeaderCounters::default());
        let ready = Arc::new(AtomicBool::new(false));

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let svc = CoordinatorService::new(
            replicator.clone(),
            detector.clone(),
            counters.clone(),
            timeout,
            web_addr.to_string(),
        )
        .with_shutdown(stop_rx.clone())
        .with_client_tls(tls.as_ref().map(|t| t.client().clone()));
        let grpc_stop = stopped(stop_rx.clone());
        let mut grpc_server =
            trawl_proto::tls::with_tls(self.grpc_limits.server(), tls.as_ref().map(|t| t.server()))
                .map_err(|e| CoordinatorError::Flag(e.to_string()))?;
        let grpc = tokio::spawn(async move {
            let r = grpc_server
                .add_service(svc.into_server())
                .add_optional_service(raft_service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                    grpc_stop,
                )
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "grpc server failed");
            }
        });

        let router = http::router(
            replicator.clone(),
            desired.clone(),
            counters.clone(),
            ready.clone(),
            self.enable_lifecycle,
            self.flags(),
        );
        let web_stop = stopped(stop_rx.clone());
        let web = tokio::spawn(async move {
            let r = axum::serve(web_listener, router)
                .with_graceful_shutdown(web_stop)
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "web server failed");
            }
        });

        let leader_loop = tokio::spawn(leader::run(
            replicator.clone(),
            desired.clone(),
            detector,
            counters,
            LeaderOptions {
                heartbeat_timeout: timeout,
                discovery_patience: 2 * leader::DISCOVERY_UPDATE_EVERY,
                web_address: web_addr.to_string(),
            },
            stopped(stop_rx.clone()),
        ));
        tasks.push(tokio::spawn(reload_on_sighup(desired.clone())));

        ready.store(true, Ordering::Relaxed);
        tracing::info!(web = %web_addr, grpc = %grpc_addr, "coordinator listening");
        Ok(Running {
            web: web_addr,
            grpc: grpc_addr,
            replicator,
            ready,
            stop: stop_tx,
            servers: vec![leader_loop, grpc, web],
            tasks,
            raft,
        })
    }
}

/// A started coordinator.
pub struct Running {
    /// The bound HTTP address.
    pub web: SocketAddr,
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// The replicated state.
    pub replicator: SharedReplicator<ClusterState>,
    ready: Arc<AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    raft: Option<Arc<trawl_raft::RaftNode<ClusterState>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("web", &self.web)
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stops the servers (in-flight calls get up to 5 s) and the background tasks.
    pub async fn stop(self) {
        self.ready.store(false, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.stop.send(true);
        for s in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
        }
        if let Some(r) = self.raft {
            r.shutdown().await;
        }
    }
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, CoordinatorError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| CoordinatorError::Listen {
            address: address.to_string(),
            source,
        })
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

async fn reload_on_sighup(desired: Arc<Desired>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload with POST /-/reload");
        return;
    };
    while hup.recv().await.is_some() {
        let d = desired.clone();
        let _ = tokio::task::spawn_blocking(move || d.reload()).await;
    }
}
