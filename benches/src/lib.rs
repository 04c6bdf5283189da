//! Workload generators shared by the benchmarks.
pub mod exposition_workload;
pub mod relabel_workload;
pub mod storage_workload;

/// The `benches/` package directory, read when the benchmark runs: a target directory shared
/// between clones at different paths keeps binaries whose compile-time
/// `env!("CARGO_MANIFEST_DIR")` names another clone, while `cargo bench` always sets the
/// variable for the running benchmark.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}
