//! `trawl-scrape`: the scrape manager and the per-target scrape loops.
//!
//! [`ScrapeManager::sync`] takes the full desired set of [`Target`]s and reconciles the
//! running loops: new targets start, gone targets stop (writing staleness markers for all
//! their series unless stopped with [`StopMode::Moved`]), unchanged targets keep running.
//! Each loop scrapes on its interval, first at an offset spread by a stable hash of the
//! target, and writes through the [`trawl_storage::Storage`] appender.
//!
//! Invariants:
//! - The append step ([`append`]) is pure: body, context and cache in, samples out; the
//!   loop adds only HTTP and time. A scrape is atomic: a parse error or exceeded limit rolls
//!   back every sample of that scrape, reports `up 0` and marks the previous scrape's
//!   series stale, as Prometheus does.
//! - The steady state does not parse, rebuild or hash labels: a per-target cache maps the
//!   raw series text to its storage reference, checked first at the series' position in
//!   the last scrape, and labels are parsed only for series not in it. The cache lives as
//!   long as the loop, and a changed config starts a new loop.
//! - Async workers do not block on storage work that can take long: only a scrape whose
//!   cache was warm (no series to create) appends inline, and only while the storage is not
//!   [`busy`](trawl_storage::Storage::busy); the rest goes to the blocking pool.
//! - With [`ManagerOptions::threads`] set, the loops run on that many dedicated
//!   single-threaded runtimes, each target pinned to one by its hash, so a scrape's
//!   socket, timer and cache never wake another CPU.
//! - Storage back-pressure is bounded: a scrape waits at most
//!   [`ManagerOptions::storage_wait`] for one of [`ManagerOptions::storage_queue`] slots,
//!   otherwise it fails with a visible error and a counter; it never stalls silently.
//! - Error texts follow Prometheus (`sample limit exceeded`, `server returned HTTP status
//!   …`, `label_limit exceeded (…)`, `context deadline exceeded`).

pub mod append;
pub mod build;
pub mod http;
mod manager;
mod target;
mod threads;

pub use append::{AppendContext, AppendStats, Report, ScrapeCache};
pub use http::{ScrapeClient, accept_header, install_crypto_provider};
pub use manager::{
    Health, ManagerCounters, ManagerOptions, ScrapeManager, StopMode, TargetState, TargetStatus,
};
pub use target::{Target, TargetKey};

/// The scrape thread count for a `--scrape.threads` flag: the flag, or one per CPU when 0.
pub fn threads_or_cpus(flag: usize) -> usize {
    match flag {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Everything that can go wrong in a scrape.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The target's labels do not make a URL.
    #[error("{0}")]
    Target(String),
    /// The HTTP client could not be built.
    #[error("{0}")]
    Client(String),
    /// Request or response failure.
    #[error("{0}")]
    Http(String),
    /// The body exceeded `body_size_limit`.
    #[error("body size limit exceeded")]
    BodySizeLimit,
    /// The body failed to parse.
    #[error("{0}")]
    Parse(String),
    /// More samples than `sample_limit` after metric relabeling.
    #[error("sample limit exceeded")]
    SampleLimit,
    /// A label limit was exceeded (Prometheus's text).
    #[error("{0}")]
    Limit(String),
    /// A feature this build does not support.
    #[error("{0}")]
    Unsupported(String),
    /// Storage refused the scrape.
    #[error("storage: {0}")]
    Storage(#[from] trawl_storage::StorageError),
    /// No storage slot within the wait bound: storage is falling behind.
    #[error("storage queue full: storage is falling behind, scrape dropped")]
    StorageBusy,
    /// Runtime problem (no tokio runtime, task panicked).
    #[error("{0}")]
    Runtime(String),
}
