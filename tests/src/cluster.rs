//! The cluster harness: real `trawl coordinator|worker|querier` processes on loopback, built in
//! a few lines, that a test can kill (`SIGKILL`), restart (same ports, same data directory) and
//! partition (every link to and from a process cut at its proxy).
//!
//! Layout: every process listens on ports chosen up front (so a restart keeps its addresses),
//! and every connection between two processes goes through a [`Proxy`] owned by the harness:
//! coordinator→coordinator (Raft), worker→coordinator, querier→coordinator and anyone→worker
//! (a worker advertises its inbound proxy). Partitioning process X cuts every proxy whose source
//! or destination is X. Test exporters are reached directly (they are not cluster members).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use trawl_tests::cluster::ClusterBuilder;
//! let mut c = ClusterBuilder::new("scrape_configs: []\n").coordinators(3).workers(4).queriers(2).start()?;
//! c.kill_worker(0)?;
//! c.restart_worker(0)?;
//! c.partition("c1", true);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{Response, field, http, trawl_bin};
use crate::proxy::Proxy;

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// The three cluster roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Worker,
    Querier,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
            Role::Querier => "querier",
        }
    }
}

/// One cluster process: its fixed addresses, flags and data directory, running or not.
#[derive(Debug)]
pub struct Node {
    pub role: Role,
    /// `c1`, `w1`, `q1`, ...
    pub name: String,
    /// Where it serves HTTP.
    pub web: SocketAddr,
    /// Where it serves gRPC.
    pub grpc: SocketAddr,
    pub data: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn new(role: Role, name: String, data: PathBuf, args: Vec<String>) -> anyhow::Result<Node> {
        Ok(Node {
            role,
            name,
            web: free_addr()?,
            grpc: free_addr()?,
            data,
            args,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Starts the process and waits until it logs that it listens.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.name);
        }
        let mut cmd = Command::new(trawl_bin()?);
        cmd.arg(self.role.subcommand())
            .arg(format!("--web.listen-address={}", self.web))
            .arg(format!("--grpc.listen-address={}", self.grpc))
            .args(&self.args)
            .env("TRAWL_LOG", "info,openraft=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.name))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let log = self.log.clone();
        let name = self.name.clone();
        let ready_msg = format!("{} listening", self.role.subcommand());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(&ready_msg) {
                    let _ = tx.send(());
                }
                eprintln!("[{name}] {line}");
                log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not report that it listens; log:\n{}",
                self.name,
                self.log().join("\n")
            );
        }
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`: no shutdown path runs.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut c = self.child.take().context("not running")?;
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits up to `within` for the exit; whether it exited cleanly.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<bool> {
        let c = self.child.as_mut().context("not running")?;
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        if !st.success() {
            bail!("kill -TERM failed: {st}");
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = c.try_wait()? {
                self.child = None;
                return Ok(st.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not exit within {within:?}", self.name)
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Log lines of every run so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Value of `name=` in the first log line containing `msg`.
    pub fn log_field(&self, msg: &str, name: &str) -> Option<String> {
        self.log()
            .iter()
            .find(|l| l.contains(msg))
            .and_then(|l| field(l, name).map(str::to_owned))
    }

    /// GET on the web address.
    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        http(self.web, "GET", path, None)
    }

    /// GET of a JSON document.
    pub fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = self.get(path)?;
        serde_json::from_str(&r.body)
            .with_context(|| format!("{} {path}: {} {}", self.name, r.status, r.body))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Describes a cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    config: String,
    coordinators: usize,
    workers: usize,
    queriers: usize,
    replication: usize,
    heartbeat_timeout: String,
    extra_worker_args: Vec<String>,
    extra_args: Vec<String>,
}

impl ClusterBuilder {
    /// A cluster whose coordinators run `config` (a prometheus.yml text): by default 1
    /// coordinator, 1 worker, 1 querier, R=1, a 2 s heartbeat timeout.
    pub fn new(config: &str) -> Self {
        ClusterBuilder {
            config: config.to_owned(),
            coordinators: 1,
            workers: 1,
            queriers: 1,
            replication: 1,
            heartbeat_timeout: "2s".into(),
            extra_worker_args: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    pub fn coordinators(mut self, n: usize) -> Self {
        self.coordinators = n;
        self
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    pub fn queriers(mut self, n: usize) -> Self {
        self.queriers = n;
        self
    }

    pub fn replication(mut self, r: usize) -> Self {
        self.replication = r;
        self
    }

    /// `--cluster.heartbeat-timeout` (Prometheus duration).
    pub fn heartbeat_timeout(mut self, d: &str) -> Self {
        self.heartbeat_timeout = d.to_owned();
        self
    }

    /// Flags added to every worker.
    pub fn worker_args(mut self, args: &[&str]) -> Self {
        self.extra_worker_args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Flags added to every process of every role (e.g. the `--grpc.tls-*` flags).
    pub fn all_args(mut self, args: &[&str]) -> Self {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Starts coordinators first (all at once, so Raft can elect), then workers, then queriers.
    pub fn start(self) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, &self.config)?;
        let mut c = Cluster {
            dir,
            config,
            spec: self,
            coordinators: Vec::new(),
            workers: Vec::new(),
            queriers: Vec::new(),
            links: BTreeMap::new(),
        };
        c.create_coordinators()?;
        // Start every replica before waiting on any, so they find each other.
        let mut starters = Vec::new();
        for n in c.coordinators.drain(..) {
            starters.push(std::thread::spawn(move || {
                let mut n = n;
                let r = n.start();
                (n, r)
            }));
        }
        for h in starters {
            let (n, r) = h.join().map_err(|_| anyhow::anyhow!("starter panicked"))?;
            r?;
            c.coordinators.push(n);
        }
        for _ in 0..c.spec.workers {
            c.add_worker()?;
        }
        for _ in 0..c.spec.queriers {
            c.add_querier()?;
        }
        Ok(c)
    }
}

/// A running cluster; every process is killed when it is dropped.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The coordinators' `prometheus.yml`.
    pub config: PathBuf,
    spec: ClusterBuilder,
    pub coordinators: Vec<Node>,
    pub workers: Vec<Node>,
    pub queriers: Vec<Node>,
    /// Proxies by (from, to) process name.
    links: BTreeMap<(String, String), Proxy>,
}

impl Cluster {
    /// The temporary directory holding the config and every data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn link(&mut self, from: &str, to: &str, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let key = (from.to_owned(), to.to_owned());
        if let Some(p) = self.links.get(&key) {
            return Ok(p.addr());
        }
        let p = Proxy::start("127.0.0.1:0".parse()?, addr)?;
        let a = p.addr();
        self.links.insert(key, p);
        Ok(a)
    }

    fn create_coordinators(&mut self) -> anyhow::Result<()> {
        let n = self.spec.coordinators;
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("c{i}");
            let data = self.dir.path().join(&name);
            nodes.push(Node::new(Role::Coordinator, name, data, Vec::new())?);
        }
        for i in 0..n {
            let mut args = vec![
                format!("--config.file={}", self.config.display()),
                format!("--data.path={}", nodes[i].data.display()),
                format!("--cluster.replication-factor={}", self.spec.replication),
                format!(
                    "--cluster.heartbeat-timeout={}",
                    self.spec.heartbeat_timeout
                ),
                "--web.enable-lifecycle".to_owned(),
            ];
            if n > 1 {
                let mut peers = Vec::new();
                for (j, peer) in nodes.iter().enumerate() {
                    // A replica names itself by its own listen address and every other one
                    // by the proxy of the link to it.
                    let addr = if i == j {
                        peer.grpc
                    } else {
                        let from = nodes[i].name.clone();
                        self.link(&from, &peer.name, peer.grpc)?
                    };
                    peers.push(format!("{}={addr}", j + 1));
                }
                args.push(format!("--raft.id={}", i + 1));
                args.push(format!("--raft.peers={}", peers.join(",")));
            }
            args.extend(self.spec.extra_args.iter().cloned());
            nodes[i].args = args;
        }
        self.coordinators = nodes;
        Ok(())
    }

    /// `--coordinator.address` for process `from`: every coordinator through its link.
    fn coordinator_addresses(&mut self, from: &str) -> anyhow::Result<String> {
        let targets: Vec<(String, SocketAddr)> = self
            .coordinators
            .iter()
            .map(|c| (c.name.clone(), c.grpc))
            .collect();
        let mut out = Vec::new();
        for (name, addr) in targets {
            out.push(self.link(from, &name, addr)?.to_string());
        }
        Ok(out.join(","))
    }

    /// Starts one more worker (`w<N>`) and returns its index.
    pub fn add_worker(&mut self) -> anyhow::Result<usize> {
        let i = self.workers.len() + 1;
        let name = format!("w{i}");
        let data = self.dir.path().join(&name);
        let mut node = Node::new(Role::Worker, name.clone(), data, Vec::new())?;
        let inbound = self.link("*", &name, node.grpc)?;
        let mut args = vec![
            format!(
                "--coordinator.address={}",
                self.coordinator_addresses(&name)?
            ),
            format!("--storage.tsdb.path={}", node.data.display()),
            format!("--worker.id={name}"),
            format!("--grpc.advertise-address={inbound}"),
        ];
        args.extend(self.spec.extra_worker_args.iter().cloned());
        args.extend(self.spec.extra_args.iter().cloned());
        node.args = args;
        node.start()?;
        self.workers.push(node);
        Ok(i - 1)
    }

    /// Starts one more querier (`q<N>`) and returns its index.
    pub fn add_querier(&mut self) -> anyhow::Result<usize> {
        let i = self.queriers.len() + 1;
        let name = format!("q{i}");
        let data = self.dir.path().join(&name);
        let mut node = Node::new(Role::Querier, name.clone(), data, Vec::new())?;
        node.args = vec![format!(
            "--coordinator.address={}",
            self.coordinator_addresses(&name)?
        )];
        node.args.extend(self.spec.extra_args.iter().cloned());
        node.start()?;
        self.queriers.push(node);
        Ok(i - 1)
    }

    /// `kill -9` worker `i`.
    pub fn kill_worker(&mut self, i: usize) -> anyhow::Result<()> {
        self.workers[i].kill()
    }

    /// Starts worker `i` again with the same ports, flags and data directory.
    pub fn restart_worker(&mut self, i: usize) -> anyhow::Result<()> {
        self.workers[i].start()
    }

    /// Cuts (or restores) every link to and from the process named `name`.
    pub fn partition(&self, name: &str, cut: bool) {
        for ((from, to), p) in &self.links {
            if from == name || to == name {
                p.set_cut(cut);
            }
        }
    }

    /// Any process by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.coordinators
            .iter()
            .chain(&self.workers)
            .chain(&self.queriers)
            .find(|n| n.name == name)
    }

    /// Any process by name, mutably.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.coordinators
            .iter_mut()
            .chain(self.workers.iter_mut())
            .chain(self.queriers.iter_mut())
            .find(|n| n.name == name)
    }

    /// `/api/v1/cluster` of the first running coordinator that answers it.
    pub fn cluster_state(&self) -> anyhow::Result<serde_json::Value> {
        let mut last = anyhow::anyhow!("no coordinator is running");
        for c in self.coordinators.iter().filter(|c| c.running()) {
            match c.get_json("/api/v1/cluster") {
                Ok(v) if v["status"] == "success" => return Ok(v["data"].clone()),
                Ok(v) => last = anyhow::anyhow!("{}: {v}", c.name),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Index of the coordinator that reports itself leader, if one does.
    pub fn leader(&self) -> Option<usize> {
        self.coordinators.iter().position(|c| {
            c.running()
                && c.get_json("/api/v1/cluster").is_ok_and(|v| {
                    v["data"]["replicas"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|r| r["leader"] == true && is_self(c, r))
                })
        })
    }
}

/// Whether replica entry `r` of `c`'s own `/api/v1/cluster` describes `c` itself.
fn is_self(c: &Node, r: &serde_json::Value) -> bool {
    let own_id = c.name.trim_start_matches('c').parse::<u64>().ok();
    r["id"].as_u64() == own_id || r["address"].as_str() == Some(&c.grpc.to_string())
}
