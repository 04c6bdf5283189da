//! Remote write and remote read against the real Prometheus (`/usr/bin/prometheus`, 2.42 from
//! Debian; `scripts/setup.sh` installs it).
//!
//! On loopback the test runs a small exporter whose exposition changes on every scrape, an
//! in-process Trawl receiver (`trawl_remote::router` over the in-memory store), a Prometheus
//! that scrapes the exporter every second under two jobs and remote-writes to Trawl, and a
//! second Prometheus whose only data source is `remote_read` from Trawl. It then checks:
//! - Trawl's PromQL engine over the received data answers a set of queries with the same
//!   series and the same values (bit for bit) as the scraping Prometheus at one fixed time;
//! - the remote-read Prometheus answers queries with Trawl's data, equal to the scraping
//!   Prometheus's answers.
//!
//! Every wait polls a condition with a deadline; nothing waits a fixed time.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use trawl_model::{Labels, Matcher};
use trawl_promql::{Engine, QueryError, Queryable, Value};
use trawl_remote::{RemoteOptions, RemoteState};
use trawl_storage::mem::MemStorage;
use trawl_storage::{SelectHints, Storage, StorageOptions};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Kills and reaps a child process when dropped, so a failing test leaves nothing running.
struct ChildGuard {
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Trawl's store seen through the engine's read trait.
struct StoreQueryable(Arc<MemStorage>);

impl Queryable for StoreQueryable {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<trawl_promql::Series>, QueryError> {
        let err = |e: trawl_storage::StorageError| QueryError::Storage(e.to_string());
        let q = self.0.querier().map_err(err)?;
        let set = q
            .select(matchers, mint, maxt, &SelectHints::default())
            .map_err(err)?;
        let mut out = Vec::new();
        for s in set {
            let s = s.map_err(err)?;
            let samples = s.samples().collect::<Result<Vec<_>, _>>().map_err(err)?;
            out.push(trawl_promql::Series {
                labels: s.labels.clone(),
                samples,
            });
        }
        Ok(out)
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The exporter's exposition after `n` scrapes: two counters, a gauge and a histogram, all
/// changing from scrape to scrape (counters and buckets never decrease).
fn exposition(n: u64) -> String {
    let le01 = 2 * n;
    let le05 = 5 * n;
    let le1 = 7 * n + n % 3;
    let inf = 9 * n + n % 3;
    format!(
        "# HELP test_requests_total Requests served.\n\
         # TYPE test_requests_total counter\n\
         test_requests_total{{path=\"/a\"}} {a}\n\
         test_requests_total{{path=\"/b\"}} {b}\n\
         # HELP test_temperature_celsius A gauge.\n\
         # TYPE test_temperature_celsius gauge\n\
         test_temperature_celsius {g}\n\
         # HELP test_latency_seconds A histogram.\n\
         # TYPE test_latency_seconds histogram\n\
         test_latency_seconds_bucket{{le=\"0.1\"}} {le01}\n\
         test_latency_seconds_bucket{{le=\"0.5\"}} {le05}\n\
         test_latency_seconds_bucket{{le=\"1\"}} {le1}\n\
         test_latency_seconds_bucket{{le=\"+Inf\"}} {inf}\n\
         test_latency_seconds_sum {sum}\n\
         test_latency_seconds_count {inf}\n",
        a = 3 * n,
        b = 5 * n + (n * n) % 7,
        g = 20.0 + (n % 5) as f64 * 0.25,
        sum = 0.37 * inf as f64,
    )
}

async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let _ = axum::serve(listener, app).await;
}

async fn start_exporter() -> Result<SocketAddr> {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    exposition(n),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, app));
    Ok(addr)
}

async fn start_trawl(store: Arc<MemStorage>) -> Result<SocketAddr> {
    let dyn_store: Arc<dyn Storage> = store;
    let app = trawl_remote::router(RemoteState::new(dyn_store, RemoteOptions::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, app));
    Ok(addr)
}

fn start_prometheus(dir: &Path, name: &str, config: &str) -> Result<(ChildGuard, u16)> {
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg, config)?;
    let port = free_port()?;
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join(name).display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {PROMETHEUS}"))?;
    Ok((ChildGuard { child, log }, port))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Polls `f` every 100 ms until it yields a value or `timeout` passes.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An instant vector as label set -> value.
type Vector = BTreeMap<Labels, f64>;

fn ms_to_secs(t: i64) -> String {
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

async fn prom_query(client: &reqwest::Client, port: u16, q: &str, t: i64) -> Result<Vector> {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}&time={}",
        percent_encode(q),
        ms_to_secs(t)
    );
    let body = client.get(&url).send().await?.text().await?;
    let v: serde_json::Value = serde_json::from_str(&body).with_context(|| body.clone())?;
    ensure!(v["status"] == "success", "query {q} failed: {body}");
    ensure!(v["data"]["resultType"] == "vector", "not a vector: {body}");
    let mut out = Vector::new();
    for s in v["data"]["result"].as_array().context("result")? {
        let metric = s["metric"].as_object().context("metric")?;
        let labels = Labels::from_pairs(
            metric
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())),
        );
        let val = s["value"][1].as_str().context("value")?;
        let val = match val {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            x => x.parse()?,
        };
        out.insert(labels, val);
    }
    Ok(out)
}

fn trawl_query(store: &Arc<MemStorage>, q: &str, t: i64) -> Result<Vector> {
    let res = Engine::default()
        .instant_query(&StoreQueryable(Arc::clone(store)), q, t)
        .map_err(|e| anyhow::anyhow!("trawl query {q}: {e}"))?;
    match res.value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        other => bail!("trawl query {q}: not a vector: {}", other.type_name()),
    }
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Compares two vectors; returns a description of every difference.
fn diff(want: &Vector, got: &Vector) -> Vec<String> {
    let mut out = Vec::new();
    for (l, w) in want {
        match got.get(l) {
            None => out.push(format!("missing {l} (want {w})")),
            Some(g) if !same(*w, *g) => out.push(format!("{l}: want {w:?}, got {g:?}")),
            Some(_) => {}
        }
    }
    for l in got.keys() {
        if !want.contains_key(l) {
            out.push(format!("unexpected {l}"));
        }
    }
    out
}

/// Newest timestamp of `up{job=...}` in Trawl and how many such samples it holds.
fn trawl_up(store: &MemStorage, job: &str) -> Result<(usize, i64)> {
    let q = store.querier()?;
    let set = q.select(
        &[Matcher::equal("__name__", "up"), Matcher::equal("job", job)],
        i64::MIN,
        i64::MAX,
        &SelectHints::default(),
    )?;
    let mut n = 0;
    let mut newest = i64::MIN;
    for s in set {
        for x in s?.samples() {
            n += 1;
            newest = newest.max(x?.t);
        }
    }
    Ok((n, newest))
}

/// Every metric name the scraping Prometheus stores.
const METRIC_NAMES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "test_requests_total",
    "test_temperature_celsius",
    "test_latency_seconds_bucket",
    "test_latency_seconds_sum",
    "test_latency_seconds_count",
];

const QUERIES: &[&str] = &[
    "up",
    "sum by (job) (up)",
    "test_requests_total",
    "test_temperature_celsius * 2 - 1",
    "rate(test_requests_total[5s])",
    "sum by (job) (rate(test_requests_total[5s]))",
    "increase(test_latency_seconds_count[4s])",
    "histogram_quantile(0.9, sum by (job, le) (rate(test_latency_seconds_bucket[5s])))",
    "histogram_quantile(0.5, rate(test_latency_seconds_bucket[3s]))",
    "avg_over_time(test_temperature_celsius[10s])",
    "max_over_time(test_requests_total[6s]) - min_over_time(test_requests_total[6s])",
    "scrape_samples_scraped",
    "count by (__name__) ({job=\"exp_a\"})",
    "topk(1, test_requests_total)",
    "test_latency_seconds_sum / test_latency_seconds_count",
];

/// Queries whose answer comes from raw data only, so the remote-read Prometheus must give
/// exactly the scraping Prometheus's answer.
const READ_QUERIES: &[&str] = &[
    "up",
    "test_requests_total",
    "sum by (job) (rate(test_requests_total[5s]))",
    "histogram_quantile(0.9, sum by (job, le) (rate(test_latency_seconds_bucket[5s])))",
];

#[test]
fn prometheus_remote_write_and_read_interop() -> Result<()> {
    if !Path::new(PROMETHEUS).exists() {
        println!("skipped: {PROMETHEUS} not found");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let dir = tempfile::tempdir()?;

    let exporter = start_exporter().await?;
    let store = Arc::new(MemStorage::new(StorageOptions::default()));
    let trawl = start_trawl(Arc::clone(&store)).await?;

    let writer_cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
         scrape_configs:\n\
         \x20 - job_name: exp_a\n    static_configs:\n      - targets: ['{exporter}']\n\
         \x20 - job_name: exp_b\n    static_configs:\n      - targets: ['{exporter}']\n\
         remote_write:\n\
         \x20 - url: http://{trawl}/api/v1/write\n\
         \x20   queue_config:\n      batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 500ms\n"
    );
    let (writer, wport) = start_prometheus(dir.path(), "writer", &writer_cfg)?;

    let reader_cfg = format!(
        "global:\n  scrape_interval: 1m\n\
         remote_read:\n\
         \x20 - url: http://{trawl}/api/v1/read\n    read_recent: true\n"
    );
    let (reader, rport) = start_prometheus(dir.path(), "reader", &reader_cfg)?;

    let result = check(&client, &store, wport, rport).await;
    if result.is_err() {
        println!(
            "writer log:\n{}\nreader log:\n{}",
            writer.log_tail(),
            reader.log_tail()
        );
    }
    result
}

async fn check(
    client: &reqwest::Client,
    store: &Arc<MemStorage>,
    wport: u16,
    rport: u16,
) -> Result<()> {
    for port in [wport, rport] {
        poll(
            "Prometheus to be ready",
            Duration::from_secs(60),
            || async move {
                let r = client
                    .get(format!("http://127.0.0.1:{port}/-/ready"))
                    .send()
                    .await?;
                Ok(r.status().is_success().then_some(()))
            },
        )
        .await?;
    }

    // Enough scrapes of both jobs received that 10s windows are full.
    const SCRAPES: usize = 12;
    let t = poll(
        "Trawl to receive scrapes of both jobs",
        Duration::from_secs(90),
        || {
            let store = Arc::clone(store);
            async move {
                let (na, ta) = trawl_up(&store, "exp_a")?;
                let (nb, tb) = trawl_up(&store, "exp_b")?;
                Ok((na >= SCRAPES && nb >= SCRAPES).then_some(ta.min(tb)))
            }
        },
    )
    .await?;
    // Evaluate half an interval after the last common scrape, so no sample sits exactly on a
    // window's left edge: Prometheus 2.42 includes that edge, Prometheus 3 (whose semantics
    // Trawl follows, with the upstream conformance tests) does not.
    let t = t + 500;
    // Every scrape at or before `t` has landed in Prometheus once its clock is 2 s past it.
    poll(
        "the clock to pass t + 2s",
        Duration::from_secs(10),
        || async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis();
            Ok((now >= u128::try_from(t + 2_000).unwrap_or(u128::MAX)).then_some(()))
        },
    )
    .await?;
    println!("evaluation time {t} ({} s)", ms_to_secs(t));

    // Remote write runs in several shards, so samples up to `t` may still be in flight:
    // wait until Trawl holds exactly as many samples at or before `t` as Prometheus, per
    // metric name (Prometheus 2.42 drops the name in `count_over_time`, so one query over
    // every name would collide on the remaining labels).
    let counts: Vec<String> = METRIC_NAMES
        .iter()
        .map(|n| format!("sum(count_over_time({n}[1h]))"))
        .collect();
    let mut want_counts = Vec::new();
    let mut total = 0.0;
    for q in &counts {
        let want = prom_query(client, wport, q, t).await?;
        total += want.values().next().copied().unwrap_or(0.0);
        want_counts.push((q.clone(), want));
    }
    ensure!(total > 0.0, "Prometheus has no data at {t}");
    poll(
        "Trawl to hold every sample up to t",
        Duration::from_secs(60),
        || {
            let store = Arc::clone(store);
            let want_counts = want_counts.clone();
            async move {
                for (q, want) in &want_counts {
                    if !diff(want, &trawl_query(&store, q, t)?).is_empty() {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            }
        },
    )
    .await?;
    println!("samples at or before t in both: {total}");

    let mut passed = 0;
    let mut failed = Vec::new();
    for q in QUERIES {
        let want = prom_query(client, wport, q, t).await?;
        let got = trawl_query(store, q, t)?;
        ensure!(!want.is_empty(), "Prometheus answered nothing for {q}");
        let d = diff(&want, &got);
        if d.is_empty() {
            passed += 1;
        } else {
            failed.push(format!("{q}:\n  {}", d.join("\n  ")));
        }
    }
    println!(
        "remote write: {passed} passed, {} failed (Trawl's engine vs Prometheus at t)",
        failed.len()
    );

    let mut read_passed = 0;
    for q in READ_QUERIES {
        let want = prom_query(client, wport, q, t).await?;
        let got = prom_query(client, rport, q, t).await?;
        let d = diff(&want, &got);
        if d.is_empty() {
            read_passed += 1;
        } else {
            failed.push(format!("remote read {q}:\n  {}", d.join("\n  ")));
        }
    }
    println!(
        "remote read: {read_passed} passed, {} failed (remote-read Prometheus vs scraping Prometheus)",
        READ_QUERIES.len() - read_passed
    );
    ensure!(failed.is_empty(), "differences:\n{}", failed.join("\n"));
    Ok(())
}
