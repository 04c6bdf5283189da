//! The crate's error type.

use thiserror::Error;

/// Every error of discovery: target checks (texts as Prometheus) and provider failures.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// Relabeling left no `__address__`.
    #[error("no address")]
    NoAddress,
    /// `__address__` looks like a URL.
    #[error("{0:?} is not a valid hostname")]
    InvalidHostname(String),
    /// `__scrape_interval__` does not parse.
    #[error("error parsing scrape interval: {0}")]
    ParseInterval(String),
    /// `__scrape_interval__` is zero.
    #[error("scrape interval cannot be 0")]
    ZeroInterval,
    /// `__scrape_timeout__` does not parse.
    #[error("error parsing scrape timeout: {0}")]
    ParseTimeout(String),
    /// `__scrape_timeout__` is zero.
    #[error("scrape timeout cannot be 0")]
    ZeroTimeout,
    /// Timeout above interval.
    #[error("scrape timeout cannot be greater than scrape interval ({0:?} > {1:?})")]
    TimeoutAboveInterval(String, String),
    /// A target failed in a group: index, source and the reason.
    #[error("instance {index} in group {group}: {reason}")]
    InGroup {
        /// Position of the target in the group.
        index: usize,
        /// The group's source.
        group: String,
        /// Why.
        reason: Box<DiscoveryError>,
    },
    /// A file SD or HTTP SD document is malformed.
    #[error("{0}")]
    Decode(String),
    /// Reading a file or fetching a URL failed.
    #[error("{0}")]
    Io(String),
    /// Kubernetes SD could not create its client.
    #[error("kubernetes SD: {0}")]
    Kubernetes(String),
}
