//! Service discovery for Trawl: where scrape targets come from.
//!
//! - [`targets`] is pure: the [`TargetGroup`] type and Prometheus's target label
//!   population (defaults from the scrape config, `relabel_configs`, address and
//!   interval/timeout checks, `instance` default, `__meta_*` removal).
//! - [`provider`] holds the providers (`static_configs`, `file_sd_configs`,
//!   `http_sd_configs`). Each runs as a task that sends `Vec<TargetGroup>` updates; a group
//!   is identified by its `source`, and an update for a source replaces the previous one
//!   (an empty group removes the source's targets).
//! - [`manager`] runs the providers of every job, keeps the latest group per
//!   (provider, source), and sends the merged groups of changed jobs at most once per
//!   update interval.
//!
//! Invariants: providers only read files and make HTTP GETs; a provider that fails keeps
//! its last good groups; nothing panics on discovered input.

pub mod dns;
pub mod error;
pub mod kubernetes;
pub mod manager;
pub mod provider;
pub mod targets;

pub use error::DiscoveryError;
pub use manager::{DiscoveryManager, JobGroups};
pub use provider::ProviderConfig;
pub use targets::{Populated, TargetGroup, populate_labels, targets_from_group};
