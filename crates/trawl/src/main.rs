//! `trawl`: a distributed, Prometheus-compatible scraping cluster. One binary, one
//! subcommand per role; see docs/ARCHITECTURE.md.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod query;
mod standalone;

#[derive(Debug, Parser)]
#[command(
    name = "trawl",
    version,
    about = "A distributed, Prometheus-compatible scraping cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check configuration files, like `promtool check`.
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Run a coordinator replica: discovery, relabeling, worker membership and placement.
    Coordinator(trawl_coordinator::CoordinatorArgs),
    /// Run a worker: scrape the assigned targets into a local storage shard.
    Worker(trawl_worker::WorkerArgs),
    /// Run a querier: PromQL and the Prometheus HTTP API over every worker's shard.
    Querier(trawl_querier::QuerierArgs),
    /// Query a Trawl Query service over gRPC (instant, range, labels, series).
    Query(query::QueryArgs),
    /// Run discovery, scraping, storage and the HTTP API in one process.
    Standalone(standalone::StandaloneArgs),
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Check(c) => c.run(),
        Command::Coordinator(a) => a.run(),
        Command::Worker(a) => a.run(),
        Command::Querier(a) => a.run(),
        Command::Query(a) => a.run(),
        Command::Standalone(a) => a.run(),
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // openraft reports every vote and replication step at info; its warnings are what an
    // operator needs.
    let filter = EnvFilter::try_from_env("TRAWL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    // Colour only on a terminal: logs piped to files and tests stay plain `key=value`.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
