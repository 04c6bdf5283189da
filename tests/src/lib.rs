//! Shared helpers for Trawl's integration tests.

use std::path::PathBuf;

/// The `shared/` folder beside the clone (conformance data and example configs).
///
/// Tests read upstream data from there directly; set `TRAWL_SHARED` to point elsewhere.
pub fn shared_dir() -> PathBuf {
    if let Ok(p) = std::env::var("TRAWL_SHARED") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.join("..").join("..").join("shared")
}

/// A path under `shared/conformance/`.
pub fn conformance(rel: &str) -> PathBuf {
    shared_dir().join("conformance").join(rel)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub mod cluster;
pub mod exporter;
pub mod process;
pub mod proxy;
