//! The coordinator on loopback with real tonic clients acting as workers: registration,
//! assignment streams, make-before-break handoff confirmed by scrape reports, and a worker
//! whose heartbeats stop losing its targets to the other one.

// Proto messages end with `..Default::default()` so later fields do not break the test.
#![allow(clippy::needless_update)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tonic::transport::Channel;
use trawl_coordinator::CoordinatorArgs;
use trawl_model::PromDuration;
use trawl_proto::v1;
use trawl_proto::v1::coordinator_client::CoordinatorClient;

const TARGETS: usize = 20;

fn config() -> String {
    let targets: Vec<String> = (1..=TARGETS)
        .map(|i| format!("'127.0.0.1:{}'", 20000 + i))
        .collect();
    format!(
        "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

fn args(dir: &std::path::Path, timeout: &str) -> CoordinatorArgs {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config()).expect("write config");
    CoordinatorArgs {
        config_file: cfg,
        web_listen_address: "127.0.0.1:0".into(),
        grpc_listen_address: "127.0.0.1:0".into(),
        data_path: dir.join("data"),
        raft_id: 1,
        raft_peers: None,
        replication_factor: 1,
        heartbeat_timeout: PromDuration::parse(timeout).expect("duration"),
        enable_lifecycle: true,
        grpc_limits: Default::default(),
        tls: Default::default(),
    }
}

/// A fake worker: registers, heartbeats while `alive`, follows its assignment and reports
/// the first scrape of every INCOMING target at once.
struct FakeWorker {
    alive: Arc<AtomicBool>,
    assignment: watch::Receiver<Option<v1::Assignment>>,
}

async fn fake_worker(client: CoordinatorClient<Channel>, id: &str) -> FakeWorker {
    let mut c = client.clone();
    // As a real worker does: retry while the replicas have no leader (an election).
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        match c
            .register(v1::RegisterRequest {
                worker_id: id.into(),
                grpc_address: format!("127.0.0.1:{}", 7100 + id.len()),
                web_address: "127.0.0.1:1".into(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("register: {e}"),
        }
    };
    assert!(
        r.heartbeat_interval_ms >= 200,
        "{}",
        r.heartbeat_interval_ms
    );
    let alive = Arc::new(AtomicBool::new(true));
    let (a, hb_id) = (alive.clone(), id.to_string());
    let mut hb = client.clone();
    tokio::spawn(async move {
        while a.load(Ordering::Relaxed) {
            let _ = hb
                .heartbeat(v1::HeartbeatRequest {
                    worker_id: hb_id.clone(),
                    ..Default::default()
                })
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (tx, rx) = watch::channel(None);
    let mut w = client.clone();
    let wid = id.to_string();
    tokio::spawn(async move {
        let mut stream = w
            .watch_assignment(v1::WatchAssignmentRequest {
                worker_id: wid.clone(),
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        let mut held = 0;
        let mut first = true;
        while let Ok(Some(a)) = stream.message().await {
            let e = a.epoch.as_ref().map_or(0, |e| e.epoch);
            assert!(
                first || e > held,
                "epochs only move forward: {e} after {held}"
            );
            first = false;
            held = e;
            let incoming: Vec<u64> = a
                .targets
                .iter()
                .filter(|t| t.role == v1::assigned_target::Role::Incoming as i32)
                .map(|t| t.target_hash)
                .collect();
            let _ = tx.send(Some(a));
            if !incoming.is_empty() {
                let _ = w
                    .report_scrapes(v1::ScrapeReport {
                        worker_id: wid.clone(),
                        first_successful_scrapes: incoming,
                        ..Default::default()
                    })
                    .await;
            }
        }
    });
    FakeWorker {
        alive,
        assignment: rx,
    }
}

fn roles(w: &FakeWorker) -> BTreeMap<u64, i32> {
    w.assignment
        .borrow()
        .as_ref()
        .map(|a| a.targets.iter().map(|t| (t.target_hash, t.role)).collect())
        .unwrap_or_default()
}

fn owned(w: &FakeWorker) -> usize {
    roles(w)
        .values()
        .filter(|r| **r == v1::assigned_target::Role::Owner as i32)
        .count()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path).await
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_loses_its_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = args(dir.path(), "2s").start().await.expect("start");
    let client = CoordinatorClient::connect(format!("http://{}", running.grpc))
        .await
        .expect("connect");

    let w1 = fake_worker(client.clone(), "w1").await;
    let w2 = fake_worker(client.clone(), "w2").await;
    wait_for("every target owned by one of the two workers", || {
        owned(&w1) + owned(&w2) == TARGETS && owned(&w1) > 0 && owned(&w2) > 0
    })
    .await;
    assert_eq!(
        roles(&w1).len() + roles(&w2).len(),
        TARGETS,
        "handoffs finished"
    );

    let (status, body) = http_get(running.web, "/api/v1/cluster").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "success");
    let workers = v["data"]["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2);
    let total: u64 = workers
        .iter()
        .map(|w| w["targets"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, TARGETS as u64);

    let (status, body) = http_get(running.web, "/api/v1/targets").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let active = v["data"]["activeTargets"].as_array().expect("active");
    assert_eq!(active.len(), TARGETS);
    for t in active {
        let ws = t["workers"].as_array().expect("workers field");
        assert_eq!(ws.len(), 1, "{t}");
    }

    // w1 goes silent: after the timeout its targets are owned by w2, at once.
    w1.alive.store(false, Ordering::Relaxed);
    wait_for("w2 owning everything", || owned(&w2) == TARGETS).await;
    let mut c = client.clone();
    let cluster = c
        .get_cluster(v1::GetClusterRequest::default())
        .await
        .expect("get cluster")
        .into_inner();
    let state: BTreeMap<String, i32> = cluster
        .workers
        .iter()
        .map(|w| (w.id.clone(), w.state))
        .collect();
    assert_eq!(state["w1"], v1::worker_info::State::Down as i32);
    assert_eq!(state["w2"], v1::worker_info::State::Up as i32);
    assert_eq!(cluster.replicas.len(), 1);
    assert!(cluster.replicas[0].leader);
    assert_eq!(cluster.replicas[0].web_address, running.web.to_string());
    wait_for("w1's stream to drop its targets", || roles(&w1).is_empty()).await;

    // w1 comes back: it registers again and gets a share through a handoff.
    let w1 = fake_worker(client.clone(), "w1").await;
    wait_for("w1 owning targets again", || {
        owned(&w1) > 0 && owned(&w1) + owned(&w2) == TARGETS
    })
    .await;
    let (status, body) = http_get(running.web, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("trawl_coordinator_workers{state=\"up\"} 2"),
        "{body}"
    );
    assert!(body.contains("trawl_coordinator_is_leader 1"), "{body}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = args(dir.path(), "10s").start().await.expect("start");
    let client = CoordinatorClient::connect(format!("http://{}", running.grpc))
        .await
        .expect("connect");
    let w1 = fake_worker(client, "w1").await;
    wait_for("w1 owning everything", || owned(&w1) == TARGETS).await;
    let before = roles(&w1);
    let epoch = w1
        .assignment
        .borrow()
        .as_ref()
        .and_then(|a| a.epoch)
        .map(|e| e.epoch);
    w1.alive.store(false, Ordering::Relaxed);
    running.stop().await;

    let running = args(dir.path(), "10s").start().await.expect("restart");
    let mut client = CoordinatorClient::connect(format!("http://{}", running.grpc))
        .await
        .expect("connect");
    let mut stream = client
        .watch_assignment(v1::WatchAssignmentRequest {
            worker_id: "w1".into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let a = stream
        .message()
        .await
        .expect("message")
        .expect("first snapshot");
    assert_eq!(a.epoch.map(|e| e.epoch), epoch, "same epoch after restart");
    let after: BTreeMap<u64, i32> = a.targets.iter().map(|t| (t.target_hash, t.role)).collect();
    assert_eq!(after, before);
    running.stop().await;
}

#[tokio::test]
async fn peers_must_name_this_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = args(dir.path(), "1s");
    a.raft_id = 4;
    a.raft_peers = Some("1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3".into());
    let e = a.start().await.expect_err("id not in peers");
    assert!(e.to_string().contains("raft.id 4"), "{e}");
    let mut a = args(dir.path(), "1s");
    a.raft_peers = Some("1=127.0.0.1:1,1=127.0.0.1:2".into());
    let e = a.start().await.expect_err("duplicate id");
    assert!(e.to_string().contains("duplicate"), "{e}");
}

/// Free loopback ports: bound to port 0, read, released (the replicas must know each
/// other's addresses before any of them binds).
fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

async fn leader_of(clients: &mut [CoordinatorClient<Channel>]) -> Option<u64> {
    for c in clients.iter_mut() {
        if let Ok(r) = c.get_cluster(v1::GetClusterRequest::default()).await
            && let Some(l) = r.into_inner().replicas.iter().find(|r| r.leader)
        {
            return Some(l.id);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_forward_writes_and_fail_over_without_moving_targets() {
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let ports = free_ports(3);
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect();
    let mut replicas = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let mut a = args(d.path(), "5s");
        a.raft_id = i as u64 + 1;
        a.raft_peers = Some(peers.join(","));
        a.grpc_listen_address = format!("127.0.0.1:{}", ports[i]);
        replicas.push(Some(a.start().await.expect("start replica")));
    }
    let mut clients = Vec::new();
    for p in &ports {
        clients.push(
            CoordinatorClient::connect(format!("http://127.0.0.1:{p}"))
                .await
                .expect("connect"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(l) = leader_of(&mut clients).await {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Register through a follower: the write is forwarded to the leader.
    let follower = (0..3)
        .find(|i| *i as u64 + 1 != leader)
        .expect("a follower");
    let w1 = fake_worker(clients[follower].clone(), "w1").await;
    wait_for("w1 owning everything", || owned(&w1) == TARGETS).await;
    let before = roles(&w1);

    // Every replica serves the same assignment from its own state.
    for c in clients.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut s = c
                .watch_assignment(v1::WatchAssignmentRequest {
                    worker_id: "w1".into(),
                    ..Default::default()
                })
                .await
                .expect("watch")
                .into_inner();
            let a = s.message().await.expect("message").expect("snapshot");
            let got: BTreeMap<u64, i32> =
                a.targets.iter().map(|t| (t.target_hash, t.role)).collect();
            if got == before {
                break;
            }
            assert!(Instant::now() < deadline, "replica never caught up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The leader stops; a new one is elected and the assignment stays as it was.
    let old = replicas[leader as usize - 1]
        .take()
        .expect("leader running");
    old.stop().await;
    let mut rest: Vec<CoordinatorClient<Channel>> = (0..3)
        .filter(|i| *i as u64 + 1 != leader)
        .map(|i| clients[i].clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        if let Some(l) = leader_of(&mut rest).await
            && l != leader
        {
            break l;
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(new_leader, leader);
    // w1 keeps heartbeating through the follower it used (if that one still runs, it forwards).
    let mut c = clients[new_leader as usize - 1].clone();
    let c2 = c.clone();
    let w1b = fake_worker(c2, "w1").await;
    wait_for("w1's assignment after failover", || !roles(&w1b).is_empty()).await;
    assert_eq!(roles(&w1b), before, "a failover alone moves nothing");
    let cluster = c
        .get_cluster(v1::GetClusterRequest::default())
        .await
        .expect("cluster")
        .into_inner();
    assert_eq!(cluster.workers.len(), 1);
    assert_eq!(cluster.workers[0].state, v1::worker_info::State::Up as i32);
    w1.alive.store(false, Ordering::Relaxed);
    w1b.alive.store(false, Ordering::Relaxed);
    for r in replicas.into_iter().flatten() {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_the_targets_and_a_bad_file_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = args(dir.path(), "10s");
    let cfg = a.config_file.clone();
    let running = a.start().await.expect("start");
    let client = CoordinatorClient::connect(format!("http://{}", running.grpc))
        .await
        .expect("connect");
    let w1 = fake_worker(client, "w1").await;
    wait_for("w1 owning everything", || owned(&w1) == TARGETS).await;

    std::fs::write(&cfg, "scrape_configs:\n  - job_name: node\n    bogus: 1\n").expect("write");
    let (status, body) = http(running.web, "POST", "/-/reload").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("prometheus.yml"), "{body}");
    let (_, metrics) = http_get(running.web, "/metrics").await;
    assert!(
        metrics.contains("trawl_config_last_reload_successful 0"),
        "{metrics}"
    );
    assert_eq!(owned(&w1), TARGETS, "the running config stays");

    std::fs::write(
        &cfg,
        "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:30001', '127.0.0.1:30002']\n",
    )
    .expect("write");
    let (status, body) = http(running.web, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    wait_for("the new target set", || roles(&w1).len() == 2).await;
    let a = w1.assignment.borrow().clone().expect("assignment");
    let addrs: Vec<String> = a
        .targets
        .iter()
        .filter_map(|t| {
            t.labels
                .iter()
                .find(|l| l.name == "__address__")
                .map(|l| l.value.clone())
        })
        .collect();
    assert_eq!(addrs.len(), 2);
    assert!(
        addrs.iter().all(|a| a.starts_with("127.0.0.1:3000")),
        "{addrs:?}"
    );
    running.stop().await;
}
