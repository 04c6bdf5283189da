//! Shared helpers for Trawl's integration tests.

use std::path::PathBuf;

/// The `shared/` folder beside the clone (conformance data and example configs).
///
/// Tests read upstream data from there directly; set `TRAWL_SHARED` to point elsewhere.
pub fn shared_dir() -> PathBuf {
    if let Ok(p) = std::env::var("TRAWL_SHARED") {
        return PathBuf::from(p);
    }
    manifest_dir().join("..").join("..").join("shared")
}

/// A path under `shared/conformance/`.
pub fn conformance(rel: &str) -> PathBuf {
    shared_dir().join("conformance").join(rel)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    manifest_dir().join("..")
}

/// This package's directory, read when the test runs: a target directory shared between clones
/// at different paths keeps binaries whose compile-time `env!("CARGO_MANIFEST_DIR")` names
/// another clone (cargo fingerprints path packages relative to the workspace, so they are not
/// rebuilt), while `cargo test` always sets the variable for the running test.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub mod cluster;
pub mod exporter;
pub mod process;
pub mod proxy;
