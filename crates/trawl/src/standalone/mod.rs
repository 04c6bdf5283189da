//! `trawl standalone`: discovery → target relabeling → scrape → RocksDB storage in one
//! process, serving Prometheus's HTTP API.
//!
//! Startup order follows Prometheus: flags, config (a bad initial config is fatal),
//! storage, the web listener (not ready yet), discovery and scraping, then ready.
//! Reloads (SIGHUP, or `POST /-/reload` with `--web.enable-lifecycle`) re-read the file;
//! a bad file is logged and the running configuration stays.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use trawl_model::PromDuration;
use trawl_storage::{Storage, StorageOptions};
use trawl_storage_rocks::{RocksOptions, RocksStorage};

mod app;
mod http;
mod metrics;

use app::App;

/// Flags of `trawl standalone`, named like Prometheus's.
#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    /// Prometheus configuration file path.
    #[arg(long = "config.file", default_value = "prometheus.yml")]
    pub config_file: PathBuf,
    /// Base path for metrics storage.
    #[arg(long = "storage.tsdb.path", default_value = "data/")]
    pub storage_path: PathBuf,
    /// How long to retain samples in storage.
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d", value_parser = parse_duration)]
    pub retention_time: PromDuration,
    /// Maximum number of bytes that can be stored (units: B, KB, MB, GB, TB, PB, EB); 0
    /// means unlimited.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0", value_parser = parse_bytes)]
    pub retention_size: u64,
    /// Address to listen on for the web interface and API.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    pub listen_address: String,
    /// Enable shutdown and reload via HTTP request.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Enable the API endpoint accepting remote write requests.
    #[arg(long = "web.enable-remote-write-receiver")]
    pub enable_remote_write_receiver: bool,
    /// The maximum lookback duration for retrieving metrics during expression evaluations.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration)]
    pub lookback_delta: PromDuration,
    /// Maximum time a query may take before being aborted.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: PromDuration,
    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub max_samples: usize,
    /// Address for the gRPC Query API (off unless set).
    #[arg(long = "grpc.listen-address")]
    pub grpc_listen_address: Option<String>,
    /// Threads dedicated to scraping, each running its own targets (0: one per CPU).
    #[arg(long = "scrape.threads", default_value_t = 0)]
    pub scrape_threads: usize,
}

fn parse_duration(s: &str) -> Result<PromDuration, String> {
    PromDuration::parse(s).map_err(|e| e.to_string())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    trawl_config::ByteSize::parse(s).map(|b| b.bytes())
}

impl StandaloneArgs {
    /// Flags as `/api/v1/status/flags` shows them.
    fn flags(&self) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("config.file", self.config_file.display().to_string());
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
        put("web.listen-address", self.listen_address.clone());
        put("web.enable-lifecycle", self.enable_lifecycle.to_string());
        put(
            "web.enable-remote-write-receiver",
            self.enable_remote_write_receiver.to_string(),
        );
        put("query.lookback-delta", self.lookback_delta.to_string());
        put("query.timeout", self.query_timeout.to_string());
        put("query.max-samples", self.max_samples.to_string());
        put(
            "grpc.listen-address",
            self.grpc_listen_address.clone().unwrap_or_default(),
        );
        put(
            "scrape.threads",
            trawl_scrape::threads_or_cpus(self.scrape_threads).to_string(),
        );
        m
    }

    /// Runs until SIGTERM/SIGINT.
    pub fn run(self) -> ExitCode {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("trawl")
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the tokio runtime");
                return ExitCode::FAILURE;
            }
        };
        match rt.block_on(self.serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "trawl standalone failed");
                ExitCode::FAILURE
            }
        }
    }

    async fn serve(self) -> anyhow::Result<()> {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "starting trawl standalone"
        );
        let (config, text) = app::load_config(&self.config_file)
            .with_context(|| "error loading config".to_string())?;
        tracing::info!(
            file = %self.config_file.display(),
            jobs = config.scrape_configs.len(),
            "completed loading of configuration file"
        );

        let opts = StorageOptions {
            retention_ms: i64::try_from(self.retention_time.as_millis()).unwrap_or(i64::MAX),
            retention_bytes: (self.retention_size > 0).then_some(self.retention_size),
            ..Default::default()
        };
        let path = self.storage_path.clone();
        let rocks = tokio::task::spawn_blocking(move || {
            RocksStorage::open(&path, opts, RocksOptions::default())
        })
        .await?
        .with_context(|| format!("opening storage at {}", self.storage_path.display()))?;
        let rocks = Arc::new(rocks);
        tracing::info!(path = %self.storage_path.display(), "storage opened");
        let storage: Arc<dyn Storage> = rocks.clone();
        let disk = rocks.clone();
        let (app, rx) = App::start(
            self.config_file.clone(),
            config,
            text,
            storage,
            Arc::new(move || disk.bytes_on_disk()),
            trawl_scrape::threads_or_cpus(self.scrape_threads),
        )?;

        let listener = tokio::net::TcpListener::bind(&self.listen_address)
            .await
            .with_context(|| format!("listening on {}", self.listen_address))?;
        let addr: SocketAddr = listener.local_addr()?;
        tracing::info!(address = %addr, "web server listening");
        let router = http::router(app.clone(), &self);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut web_stop = stop_rx.clone();
        let web = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = web_stop.wait_for(|s| *s).await;
                })
                .await
        });
        let grpc = match &self.grpc_listen_address {
            Some(g) => {
                let l = tokio::net::TcpListener::bind(g)
                    .await
                    .with_context(|| format!("listening on {g} for gRPC"))?;
                tracing::info!(address = %l.local_addr()?, "grpc server listening");
                let storage = app.storage.clone();
                let opts = trawl_query::QueryOptions {
                    engine: http::engine_options(&self),
                    ..Default::default()
                };
                let mut grpc_stop = stop_rx.clone();
                Some(tokio::spawn(async move {
                    let r = trawl_query::serve(
                        l,
                        Arc::new(trawl_web::StorageQueryable(storage.clone())),
                        Arc::new(trawl_query::StorageLabels(storage)),
                        opts,
                        async move {
                            let _ = grpc_stop.wait_for(|s| *s).await;
                        },
                    )
                    .await;
                    if let Err(e) = r {
                        tracing::error!(error = %e, "grpc server failed");
                    }
                }))
            }
            None => None,
        };

        let discovery = tokio::spawn(app.clone().run_discovery(rx));
        let retention = tokio::spawn(retention_loop(rocks.clone()));
        app.ready.store(true, Ordering::Relaxed);
        tracing::info!("server is ready to receive web requests");

        wait_for_signals(&app).await;
        tracing::info!("received shutdown signal, stopping");
        app.ready.store(false, Ordering::Relaxed);
        discovery.abort();
        retention.abort();
        app.shutdown().await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), web).await;
        if let Some(g) = grpc {
            let _ = tokio::time::timeout(Duration::from_secs(5), g).await;
        }
        let flush = rocks.clone();
        tokio::task::spawn_blocking(move || flush.flush())
            .await?
            .context("flushing storage")?;
        tracing::info!("see you next time");
        Ok(())
    }
}

/// Applies retention every minute, as Prometheus checks it on each compaction cycle.
async fn retention_loop(storage: Arc<RocksStorage>) {
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

/// Reloads on SIGHUP; returns on SIGTERM or SIGINT.
async fn wait_for_signals(app: &Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let a = app.clone();
                let _ = tokio::task::spawn_blocking(move || a.reload()).await;
            }
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}
