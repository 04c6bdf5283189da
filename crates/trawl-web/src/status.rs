//! What the `/api/v1/status/*` endpoints show.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The loaded configuration and the outcome of the last (re)load.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigStatus {
    /// The configuration as YAML (Prometheus shows the parsed config re-marshalled).
    pub yaml: String,
    /// Whether the last reload succeeded.
    pub reload_success: bool,
    /// When the configuration in force was loaded.
    pub last_config_time: SystemTime,
}

impl Default for ConfigStatus {
    fn default() -> Self {
        Self {
            yaml: String::new(),
            reload_success: true,
            last_config_time: SystemTime::UNIX_EPOCH,
        }
    }
}

/// `/api/v1/status/buildinfo`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
    pub branch: String,
    pub build_user: String,
    pub build_date: String,
    /// Prometheus shows its Go version; we show the Rust toolchain here.
    pub go_version: String,
}

/// `/api/v1/status/tsdb` head statistics and cardinality tops.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TsdbStatus {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    /// Oldest and newest sample in the head (ms).
    pub min_time: i64,
    pub max_time: i64,
}

/// Status information. The configuration part changes on reload: whoever reloads calls
/// [`StatusInfo::config_loaded`] or [`StatusInfo::config_failed`].
pub struct StatusInfo {
    config: RwLock<ConfigStatus>,
    /// Command-line flags, names without leading dashes.
    pub flags: BTreeMap<String, String>,
    /// Build information.
    pub build: BuildInfo,
    /// Process start.
    pub start_time: SystemTime,
    /// Working directory.
    pub cwd: String,
    /// Host name.
    pub hostname: String,
    /// Retention as Prometheus shows it (`"15d"`, `"15d or 10GiB"`).
    pub storage_retention: String,
    /// Head statistics for `/api/v1/status/tsdb`, when the storage offers them.
    pub tsdb: Option<Arc<dyn Fn() -> TsdbStatus + Send + Sync>>,
}

impl Default for StatusInfo {
    fn default() -> Self {
        Self {
            config: RwLock::new(ConfigStatus::default()),
            flags: BTreeMap::new(),
            build: BuildInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..BuildInfo::default()
            },
            start_time: SystemTime::now(),
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            hostname: String::new(),
            storage_retention: String::new(),
            tsdb: None,
        }
    }
}

impl std::fmt::Debug for StatusInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusInfo")
            .field("config", &self.config)
            .field("flags", &self.flags)
            .field("build", &self.build)
            .field("start_time", &self.start_time)
            .field("storage_retention", &self.storage_retention)
            .finish_non_exhaustive()
    }
}

impl StatusInfo {
    /// Status with this configuration loaded now.
    pub fn with_config(yaml: impl Into<String>) -> Self {
        let s = Self::default();
        s.config_loaded(yaml);
        s
    }

    /// Records a successful (re)load of `yaml`.
    pub fn config_loaded(&self, yaml: impl Into<String>) {
        let mut c = self.config.write().unwrap_or_else(|e| e.into_inner());
        c.yaml = yaml.into();
        c.reload_success = true;
        c.last_config_time = SystemTime::now();
    }

    /// Records a failed reload; the configuration in force stays.
    pub fn config_failed(&self) {
        let mut c = self.config.write().unwrap_or_else(|e| e.into_inner());
        c.reload_success = false;
    }

    /// The configuration status now.
    pub fn config(&self) -> ConfigStatus {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
