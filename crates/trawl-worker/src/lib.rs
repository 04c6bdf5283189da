//! `trawl-worker`: the worker role of a Trawl cluster.
//!
//! Job: follow this worker's assignment from the coordinators ([`follow`]), scrape its
//! targets into its own RocksDB shard, and serve that shard to queriers over the Store gRPC
//! API ([`store`]), plus `/metrics`, `/-/healthy`, `/-/ready`, `/api/v1/targets` and the
//! status pages over HTTP ([`web`]).
//!
//! Invariants:
//! - The worker id is generated once (`w-<16 hex>`) and kept in
//!   `<storage.tsdb.path>/worker-id`, unless `--worker.id` names it; a restart re-registers
//!   under the same id.
//! - The last applied assignment is kept in `<storage.tsdb.path>/assignment.pb` (written to
//!   a temporary file, then renamed), and a restarted worker resumes scraping it before any
//!   coordinator answers. Without a reachable coordinator the worker keeps scraping it.
//! - Shutdown stops every scrape loop without staleness markers (the series continue after a
//!   restart or on the target's next owner) and flushes the storage.
//! - The worker never decodes chunks for a reader: `Select` streams them as stored.

// Proto messages are always built with `..Default::default()`, so fields added to the
// contract later do not break this crate, even where every field is set today.
#![allow(clippy::needless_update)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use trawl_model::PromDuration;
use trawl_proto::v1::RegisterRequest;
use trawl_storage::{Storage, StorageOptions};
use trawl_storage_rocks::{RocksOptions, RocksStorage};

pub mod follow;
pub mod metrics;
pub mod store;
pub mod web;

pub use follow::{FollowOptions, Follower, Reconciled, reconcile, should_apply};
pub use store::{StoreService, store_server};

/// File (in the data directory) holding the worker id.
pub const WORKER_ID_FILE: &str = "worker-id";

/// Errors of the worker role.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A file in the data directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state file in the data directory is unreadable.
    #[error("{}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A listen address could not be bound.
    #[error("listening on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The storage failed.
    #[error("storage: {0}")]
    Storage(#[from] trawl_storage::StorageError),
    /// The scrape manager could not start.
    #[error("scrape: {0}")]
    Scrape(#[from] trawl_scrape::ScrapeError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// A `--grpc.tls-*` flag or file cannot be used.
    #[error("{0}")]
    Tls(#[from] trawl_proto::tls::TlsError),
    /// Runtime problem (a task panicked, no runtime).
    #[error("{0}")]
    Runtime(String),
}

/// Flags of `trawl worker`, named like Prometheus's where one exists.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Coordinator gRPC addresses, comma-separated (or one load-balanced name).
    #[arg(long = "coordinator.address", required = true)]
    pub coordinator_address: String,
    /// Address for the Store gRPC API.
    #[arg(long = "grpc.listen-address", default_value = "0.0.0.0:9192")]
    pub grpc_listen_address: String,
    /// Address for the web interface, /metrics and the API.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9092")]
    pub web_listen_address: String,
    /// gRPC address registered with the coordinator (default: the bound listen address, an
    /// unspecified IP replaced by 127.0.0.1).
    #[arg(long = "grpc.advertise-address")]
    pub grpc_advertise_address: Option<String>,
    /// Web address registered with the coordinator (default as for gRPC).
    #[arg(long = "web.advertise-address")]
    pub web_advertise_address: Option<String>,
    /// Base path for metrics storage (also holds the worker id and the assignment).
    #[arg(long = "storage.tsdb.path", default_value = "data/worker")]
    pub storage_path: PathBuf,
    /// How long to retain samples in storage.
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d", value_parser = parse_duration)]
    pub retention_time: PromDuration,
    /// Maximum number of bytes that can be stored (units: B, KB, MB, GB, TB, PB, EB); 0
    /// means unlimited.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0", value_parser = parse_bytes)]
    pub retention_size: u64,
    /// This worker's id (default: generated once and kept in the data directory).
    #[arg(long = "worker.id")]
    pub worker_id: Option<String>,
    /// Zone of this worker, for zone-aware replica placement.
    #[arg(long = "worker.zone", default_value = "")]
    pub worker_zone: String,
    /// Threads dedicated to scraping, each running its own targets (0: one per CPU).
    #[arg(long = "scrape.threads", default_value_t = 0)]
    pub scrape_threads: usize,
    /// Limits of the Store gRPC server (`--grpc.max-concurrent-requests`,
    /// `--grpc.request-timeout`).
    #[command(flatten)]
    pub grpc_limits: trawl_proto::server::GrpcLimits,
    /// TLS of the Store gRPC server and of the connection to the coordinators
    /// (`--grpc.tls-cert-file`, `--grpc.tls-key-file`, `--grpc.tls-ca-file`).
    #[command(flatten)]
    pub tls: trawl_proto::tls::TlsFlags,
}

fn parse_duration(s: &str) -> Result<PromDuration, String> {
    PromDuration::parse(s).map_err(|e| e.to_string())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    trawl_config::ByteSize::parse(s).map(|b| b.bytes())
}

/// The address to register for a listener bound at `bound`: `flag` when given, else `bound`
/// with an unspecified IP (0.0.0.0, ::) replaced by loopback.
pub fn advertise_address(bound: SocketAddr, flag: Option<&str>) -> String {
    if let Some(f) = flag.filter(|f| !f.trim().is_empty()) {
        return f.trim().to_string();
    }
    let mut a = bound;
    if a.ip().is_unspecified() {
        a.set_ip(match a.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a.to_string()
}

/// A fresh worker id: `w-` and 16 random hex digits.
pub fn generate_worker_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process; mixing in the time and pid keeps ids
    // apart even if two processes drew the same keys.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("w-{:016x}", h.finish())
}

/// The worker id: `given` if set, else the one kept in `dir`, else a new one written there.
pub fn load_or_create_worker_id(dir: &Path, given: Option<&str>) -> Result<String, WorkerError> {
    if let Some(g) = given.map(str::trim).filter(|g| !g.is_empty()) {
        return Ok(g.to_string());
    }
    let path = dir.join(WORKER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(WorkerError::Io { path, source: e }),
    }
    let id = generate_worker_id();
    follow::write_atomic(dir, WORKER_ID_FILE, format!("{id}\n").as_bytes())
        .map_err(|source| WorkerError::Io { path, source })?;
    Ok(id)
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, WorkerError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| WorkerError::Bind {
            address: address.to_string(),
            source,
        })
}

impl WorkerArgs {
    fn flags(&self) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("coordinator.address", self.coordinator_address.clone());
        put("grpc.listen-address", self.grpc_listen_address.clone());
        put("web.listen-address", self.web_listen_address.clone());
        put(
            "grpc.advertise-address",
            self.grpc_advertise_address.clone().unwrap_or_default(),
        );
        put(
            "web.advertise-address",
            self.web_advertise_address.clone().unwrap_or_default(),
        );
        put("storage.tsdb.path", self.storage_path.display().to_string());
        put(
            "storage.tsdb.retention.time",
            self.retention_time.to_string(),
        );
        put(
            "storage.tsdb.retention.size",
            trawl_config::ByteSize(i64::try_from(self.retention_size).unwrap_or(i64::MAX))
                .to_string(),
        );
        put("worker.id", self.worker_id.clone().unwrap_or_default());
        put("worker.zone", self.worker_zone.clone());
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
            .thread_name("trawl-worker")
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the tokio runtime");
                return ExitCode::FAILURE;
            }
        };
        match rt.block_on(self.serve(wait_for_signals())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "trawl worker failed");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs the worker until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WorkerError> {
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting trawl worker");
        let tls = self.tls.load()?;
        let dir = self.storage_path.clone();
        std::fs::create_dir_all(&dir).map_err(|source| WorkerError::Io {
            path: dir.clone(),
            source,
        })?;
        let id = load_or_create_worker_id(&dir, self.worker_id.as_deref())?;

        let opts = StorageOptions {
            retention_ms: i64::try_from(self.retention_time.as_millis()).unwrap_or(i64::MAX),
            retention_bytes: (self.retention_size > 0).then_some(self.retention_size),
            ..Default::default()
        };
        let path = dir.clone();
        let rocks = tokio::task::spawn_blocking(move || {
            RocksStorage::open(&path, opts, RocksOptions::default())
        })
        .await
        .map_err(|e| WorkerError::Runtime(e.to_string()))??;
        let rocks = Arc::new(rocks);
        tracing::info!(path = %dir.display(), "storage opened");
        let storage: Arc<dyn Storage> = rocks.clone();

        let web_l = bind(&self.web_listen_address).await?;
        let grpc_l = bind(&self.grpc_listen_address).await?;
        let web_addr = web_l.local_addr().map_err(|source| WorkerError::Bind {
            address: self.web_listen_address.clone(),
            source,
        })?;
        let grpc_addr = grpc_l.local_addr().map_err(|source| WorkerError::Bind {
            address: self.grpc_listen_address.clone(),
            source,
        })?;

        let scrape = trawl_scrape::ScrapeManager::new(
            storage.clone(),
            trawl_scrape::ManagerOptions {
                // Replicas of a target on different workers should not scrape in lockstep.
                offset_seed: trawl_model::Labels::from_pairs([("worker", id.as_str())])
                    .stable_hash(),
                threads: trawl_scrape::threads_or_cpus(self.scrape_threads),
                ..Default::default()
            },
        )?;
        let register = RegisterRequest {
            worker_id: id.clone(),
            grpc_address: advertise_address(grpc_addr, self.grpc_advertise_address.as_deref()),
            web_address: advertise_address(web_addr, self.web_advertise_address.as_deref()),
            zone: self.worker_zone.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        };
        let coordinators = self
            .coordinator_address
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut follow_opts = FollowOptions::new(coordinators, register, dir.clone());
        follow_opts.tls = tls.as_ref().map(|t| t.client().clone());
        let follower = Arc::new(Follower::new(follow_opts, storage.clone(), scrape));
        if let Err(e) = follower.resume().await {
            // A bad file must not keep the worker down: the coordinator sends a fresh one.
            tracing::warn!(error = %e, "cannot resume the persisted assignment");
        }

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let ready = Arc::new(AtomicBool::new(false));
        let status = Arc::new(self.status_info(&id));
        let disk = rocks.clone();
        let router = web::router(web::WebParts {
            storage: storage.clone(),
            follower: follower.clone(),
            status,
            ready: ready.clone(),
            disk_bytes: Arc::new(move || disk.bytes_on_disk()),
        });
        let mut web_stop = stop_rx.clone();
        let web_task = tokio::spawn(async move {
            axum::serve(web_l, router)
                .with_graceful_shutdown(async move {
                    let _ = web_stop.wait_for(|s| *s).await;
                })
                .await
        });
        let mut grpc_stop = stop_rx.clone();
        let grpc_storage = storage.clone();
        let mut grpc_server = trawl_proto::tls::with_tls(
            self.grpc_limits.server(),
            tls.as_ref().map(|t| t.server()),
        )?;
        let grpc_task = tokio::spawn(async move {
            grpc_server
                .add_service(store_server(grpc_storage))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc_l),
                    async move {
                        let _ = grpc_stop.wait_for(|s| *s).await;
                    },
                )
                .await
        });
        let follow_task = tokio::spawn(follower.clone().run(stop_rx.clone()));
        let retention = tokio::spawn(retention_loop(storage.clone()));
        ready.store(true, Ordering::Relaxed);
        tracing::info!(web = %web_addr, grpc = %grpc_addr, id = %id, "worker listening");

        shutdown.await;
        tracing::info!("received shutdown signal, stopping");
        ready.store(false, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        retention.abort();
        // The aborted task holds a storage handle until it is dropped; wait for that so the
        // store is closed when this returns (a restart in the same process reopens it).
        let _ = retention.await;
        let _ = tokio::time::timeout(Duration::from_secs(5), follow_task).await;
        follower.stop_scraping().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), web_task).await;
        let grpc_result = tokio::time::timeout(Duration::from_secs(5), grpc_task).await;
        let flush = rocks.clone();
        tokio::task::spawn_blocking(move || flush.flush())
            .await
            .map_err(|e| WorkerError::Runtime(e.to_string()))??;
        if let Ok(Ok(Err(e))) = grpc_result {
            return Err(WorkerError::Grpc(e));
        }
        tracing::info!("see you next time");
        Ok(())
    }

    fn status_info(&self, id: &str) -> trawl_web::StatusInfo {
        let retention = if self.retention_size > 0 {
            format!(
                "{} or {}",
                self.retention_time,
                trawl_config::ByteSize(i64::try_from(self.retention_size).unwrap_or(i64::MAX))
            )
        } else {
            self.retention_time.to_string()
        };
        let mut s = trawl_web::StatusInfo::default();
        s.flags = self.flags();
        s.flags.insert("worker.id".into(), id.to_string());
        s.hostname = web::hostname();
        s.storage_retention = retention;
        s.build.go_version = format!("rustc {}", env!("CARGO_PKG_RUST_VERSION"));
        s
    }
}

/// Applies retention every minute, as Prometheus checks it on each compaction cycle.
async fn retention_loop(storage: Arc<dyn Storage>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.apply_retention()).await {
            Ok(Ok(r)) if r.dropped > 0 => {
                tracing::info!(
                    dropped = r.dropped,
                    watermark = r.watermark,
                    "retention applied"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
    }
}

/// Returns on SIGTERM or SIGINT.
async fn wait_for_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_replaces_unspecified_ips_unless_told() {
        let a: SocketAddr = "0.0.0.0:9192".parse().expect("addr");
        assert_eq!(advertise_address(a, None), "127.0.0.1:9192");
        let a6: SocketAddr = "[::]:1".parse().expect("addr");
        assert_eq!(advertise_address(a6, None), "[::1]:1");
        let b: SocketAddr = "10.1.2.3:80".parse().expect("addr");
        assert_eq!(advertise_address(b, None), "10.1.2.3:80");
        assert_eq!(advertise_address(a, Some("w1.svc:9192")), "w1.svc:9192");
        assert_eq!(advertise_address(a, Some(" ")), "127.0.0.1:9192");
    }

    #[test]
    fn worker_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = load_or_create_worker_id(dir.path(), None).expect("id");
        assert!(id.starts_with("w-") && id.len() == 18, "{id}");
        assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(load_or_create_worker_id(dir.path(), None).expect("id"), id);
        assert_eq!(
            load_or_create_worker_id(dir.path(), Some("given")).expect("id"),
            "given"
        );
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            load_or_create_worker_id(other.path(), None).expect("id"),
            id
        );
    }

    #[test]
    fn flags_parse_with_prometheus_names_and_defaults() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            w: WorkerArgs,
        }
        let c = Cli::try_parse_from(["t", "--coordinator.address", "a:1,b:2"]).expect("parse");
        assert_eq!(c.w.grpc_listen_address, "0.0.0.0:9192");
        assert_eq!(c.w.web_listen_address, "0.0.0.0:9092");
        assert_eq!(c.w.storage_path, PathBuf::from("data/worker"));
        assert_eq!(
            c.w.retention_time.as_std(),
            Duration::from_secs(15 * 24 * 3600)
        );
        assert_eq!(c.w.retention_size, 0);
        assert!(
            Cli::try_parse_from(["t"]).is_err(),
            "coordinator.address is required"
        );
        let c = Cli::try_parse_from([
            "t",
            "--coordinator.address=c:1",
            "--storage.tsdb.retention.size=1KB",
            "--worker.id=w-1",
            "--worker.zone=z",
        ])
        .expect("parse");
        assert_eq!(c.w.retention_size, 1024);
        assert_eq!(c.w.worker_id.as_deref(), Some("w-1"));
    }
}
