//! Scrape loops against test exporters on 127.0.0.1, checked through the in-memory store.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use trawl_config::{LoadOptions, ScrapeConfig};
use trawl_model::{Labels, Matcher, Sample, is_stale_nan};
use trawl_scrape::{Health, ManagerOptions, ScrapeManager, StopMode, Target, TargetStatus};
use trawl_storage::mem::MemStorage;
use trawl_storage::{SelectHints, Storage, StorageOptions};

#[derive(Clone, Debug)]
enum Behaviour {
    Ok(&'static str, String),
    Status(u16),
    /// A gzip-encoded text body.
    Gzip(String),
    /// Never answers: the scrape must time out.
    Hang,
}

#[derive(Clone, Debug)]
struct Exporter {
    addr: String,
    behaviour: Arc<Mutex<Behaviour>>,
    last_request: Arc<Mutex<String>>,
}

impl Exporter {
    async fn start(b: Behaviour) -> Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?.to_string();
        let e = Exporter {
            addr,
            behaviour: Arc::new(Mutex::new(b)),
            last_request: Arc::new(Mutex::new(String::new())),
        };
        let (beh, last) = (e.behaviour.clone(), e.last_request.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let (beh, last) = (beh.clone(), last.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    *last.lock().expect("lock") = String::from_utf8_lossy(&buf).into_owned();
                    let b = beh.lock().expect("lock").clone();
                    let resp = match b {
                        Behaviour::Ok(ct, body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Behaviour::Status(code) => format!(
                            "HTTP/1.1 {code} Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                        Behaviour::Gzip(body) => {
                            let gz = gzip_stored(body.as_bytes());
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {TEXT}\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                gz.len()
                            );
                            let _ = sock.write_all(head.as_bytes()).await;
                            let _ = sock.write_all(&gz).await;
                            let _ = sock.shutdown().await;
                            return;
                        }
                        Behaviour::Hang => {
                            std::future::pending::<()>().await;
                            return;
                        }
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Ok(e)
    }

    fn set(&self, b: Behaviour) {
        *self.behaviour.lock().expect("lock") = b;
    }
}

const TEXT: &str = "text/plain; version=0.0.4";

fn config(extra: &str) -> Result<Arc<ScrapeConfig>> {
    let src = format!(
        "scrape_configs:\n  - job_name: test\n    scrape_interval: 100ms\n    scrape_timeout: 80ms\n{extra}"
    );
    let cfg = trawl_config::load_str(&src, Path::new("test.yml"), LoadOptions::default())?;
    Ok(Arc::new(cfg.job("test").context("job")?.clone()))
}

fn target(e: &Exporter, cfg: &Arc<ScrapeConfig>) -> Result<Target> {
    let labels = Labels::from_pairs([
        ("__address__", e.addr.as_str()),
        ("__scheme__", "http"),
        ("__metrics_path__", "/metrics"),
        ("job", "test"),
        ("instance", e.addr.as_str()),
    ]);
    Ok(Target::new(labels.clone(), labels, cfg.clone())?)
}

fn setup() -> (Arc<MemStorage>, ScrapeManager) {
    let st = Arc::new(MemStorage::new(StorageOptions::default()));
    let m = ScrapeManager::new(st.clone(), ManagerOptions::default()).expect("in runtime");
    (st, m)
}

fn series(st: &MemStorage, name: &str) -> Result<Vec<(Labels, Vec<Sample>)>> {
    let q = st.querier()?;
    let set = q.select(
        &[Matcher::equal("__name__", name)],
        i64::MIN,
        i64::MAX,
        &SelectHints::default(),
    )?;
    let mut out = Vec::new();
    for s in set {
        let s = s?;
        let samples = s.samples().collect::<Result<Vec<_>, _>>()?;
        out.push((s.labels.clone(), samples));
    }
    Ok(out)
}

/// Polls `f` until it returns `Some` or the deadline passes.
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(m: &ScrapeManager) -> Option<TargetStatus> {
    m.targets().into_iter().next()
}

async fn wait_scrapes(m: &ScrapeManager, n: u64) -> Result<TargetStatus> {
    wait_for("scrapes", || state(m).filter(|s| s.state.scrapes >= n)).await
}

fn last_value(st: &MemStorage, name: &str) -> Option<f64> {
    let s = series(st, name).ok()?;
    s.first()?
        .1
        .iter()
        .rev()
        .find(|s| !is_stale_nan(s.v))
        .map(|s| s.v)
}

#[tokio::test]
async fn healthy_target_stores_samples_labels_and_report() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(
        TEXT,
        "# TYPE a counter\na_total{x=\"1\"} 5\nb{job=\"inner\"} 7\n".into(),
    ))
    .await?;
    let cfg = config("    authorization:\n      credentials: secret-token\n")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    let s = wait_scrapes(&m, 2).await?;
    assert_eq!(s.state.health, Health::Up, "{:?}", s.state.last_error);
    assert_eq!(s.state.last_error, "");

    let a = series(&st, "a_total")?;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].0.get("x"), Some("1"));
    assert_eq!(a[0].0.get("job"), Some("test"));
    assert_eq!(a[0].0.get("instance"), Some(e.addr.as_str()));
    assert!(a[0].1.iter().all(|s| s.v == 5.0));
    // A scraped label clashing with a target label is kept as exported_*.
    let b = series(&st, "b")?;
    assert_eq!(b[0].0.get("exported_job"), Some("inner"));
    assert_eq!(b[0].0.get("job"), Some("test"));

    assert_eq!(last_value(&st, "up"), Some(1.0));
    assert_eq!(last_value(&st, "scrape_samples_scraped"), Some(2.0));
    assert_eq!(
        last_value(&st, "scrape_samples_post_metric_relabeling"),
        Some(2.0)
    );
    let added = series(&st, "scrape_series_added")?;
    // First scrape adds both series, later ones none: the cache holds them.
    assert_eq!(added[0].1.first().map(|s| s.v), Some(2.0));
    assert_eq!(added[0].1.last().map(|s| s.v), Some(0.0));
    assert!(last_value(&st, "scrape_duration_seconds").is_some_and(|d| d > 0.0));

    let req = e.last_request.lock().expect("lock").to_lowercase();
    assert!(req.contains("authorization: bearer secret-token"), "{req}");
    assert!(
        req.contains("accept: application/openmetrics-text;version=1.0.0;escaping="),
        "{req}"
    );
    assert!(
        req.contains("x-prometheus-scrape-timeout-seconds: 0.08"),
        "{req}"
    );
    m.stop_all(StopMode::Moved).await;
    Ok(())
}

async fn failing(b: Behaviour, extra: &str) -> Result<(Arc<MemStorage>, TargetStatus)> {
    let e = Exporter::start(b).await?;
    let cfg = config(extra)?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    let s = wait_scrapes(&m, 1).await?;
    m.stop_all(StopMode::Moved).await;
    Ok((st, s))
}

#[tokio::test]
async fn http_500_is_down_with_prometheus_error() -> Result<()> {
    let (st, s) = failing(Behaviour::Status(500), "").await?;
    assert_eq!(s.state.health, Health::Down);
    assert_eq!(
        s.state.last_error,
        "server returned HTTP status 500 Internal Server Error"
    );
    assert_eq!(last_value(&st, "up"), Some(0.0));
    Ok(())
}

#[tokio::test]
async fn slow_target_times_out() -> Result<()> {
    let (st, s) = failing(Behaviour::Hang, "").await?;
    assert_eq!(s.state.health, Health::Down);
    assert!(
        s.state.last_error.ends_with("context deadline exceeded"),
        "{}",
        s.state.last_error
    );
    assert!(s.state.last_duration >= Duration::from_millis(80));
    assert_eq!(last_value(&st, "up"), Some(0.0));
    Ok(())
}

#[tokio::test]
async fn malformed_body_is_down_and_stores_nothing() -> Result<()> {
    let (st, s) = failing(Behaviour::Ok(TEXT, "good 1\nbad{ 2\n".into()), "").await?;
    assert_eq!(s.state.health, Health::Down);
    assert!(!s.state.last_error.is_empty());
    // The scrape is atomic: the good line before the error is rolled back too.
    assert!(series(&st, "good")?.is_empty());
    assert_eq!(last_value(&st, "up"), Some(0.0));
    Ok(())
}

#[tokio::test]
async fn sample_limit_exceeded() -> Result<()> {
    let (st, s) = failing(
        Behaviour::Ok(TEXT, "a 1\nb 2\nc 3\n".into()),
        "    sample_limit: 2\n",
    )
    .await?;
    assert_eq!(s.state.health, Health::Down);
    assert_eq!(s.state.last_error, "sample limit exceeded");
    assert!(series(&st, "a")?.is_empty());
    assert_eq!(last_value(&st, "up"), Some(0.0));
    // As in Prometheus, the report of a scrape over the limit counts the whole body.
    assert_eq!(last_value(&st, "scrape_samples_scraped"), Some(3.0));
    assert_eq!(
        last_value(&st, "scrape_samples_post_metric_relabeling"),
        Some(3.0)
    );
    Ok(())
}

#[tokio::test]
async fn label_limit_exceeded_with_prometheus_text() -> Result<()> {
    let (_st, s) = failing(
        Behaviour::Ok(TEXT, "m{a=\"1\",b=\"2\"} 1\n".into()),
        "    label_limit: 3\n",
    )
    .await?;
    // __name__, a, b, job, instance = 5 labels.
    assert_eq!(
        s.state.last_error,
        "label_limit exceeded (metric: m, number of labels: 5, limit: 3)"
    );
    Ok(())
}

#[tokio::test]
async fn metric_relabel_drops_series() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "keep_me 1\ndrop_me 2\n".into())).await?;
    let cfg = config(
        "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: drop_me\n        action: drop\n",
    )?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    wait_scrapes(&m, 1).await?;
    m.stop_all(StopMode::Moved).await;
    assert_eq!(series(&st, "keep_me")?.len(), 1);
    assert!(series(&st, "drop_me")?.is_empty());
    assert_eq!(last_value(&st, "scrape_samples_scraped"), Some(2.0));
    assert_eq!(
        last_value(&st, "scrape_samples_post_metric_relabeling"),
        Some(1.0)
    );
    Ok(())
}

fn has_stale(st: &MemStorage, name: &str) -> bool {
    series(st, name)
        .map(|s| s.iter().any(|(_, v)| v.iter().any(|x| is_stale_nan(x.v))))
        .unwrap_or(false)
}

#[tokio::test]
async fn vanished_series_gets_staleness_marker() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "stays 1\ngoes 2\n".into())).await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    wait_for("goes stored", || {
        (!series(&st, "goes").ok()?.is_empty()).then_some(())
    })
    .await?;
    e.set(Behaviour::Ok(TEXT, "stays 1\n".into()));
    wait_for("stale marker", || has_stale(&st, "goes").then_some(())).await?;
    let n = state(&m).map(|s| s.state.scrapes).unwrap_or(0);
    wait_scrapes(&m, n + 1).await?;
    assert!(!has_stale(&st, "stays"));
    // The marker is the last sample: nothing was written for it after.
    let goes = series(&st, "goes")?;
    assert!(goes[0].1.last().is_some_and(|s| is_stale_nan(s.v)));
    m.stop_all(StopMode::Moved).await;
    Ok(())
}

#[tokio::test]
async fn removed_target_marks_all_series_stale() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    wait_scrapes(&m, 1).await?;
    for h in m.sync(vec![]) {
        h.await?;
    }
    assert!(m.targets().is_empty());
    assert!(has_stale(&st, "m"));
    assert!(has_stale(&st, "up"));
    assert!(has_stale(&st, "scrape_duration_seconds"));
    Ok(())
}

#[tokio::test]
async fn moved_target_writes_no_staleness() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    wait_scrapes(&m, 1).await?;
    let stopped = m.sync_with(vec![], StopMode::Moved);
    assert_eq!(stopped.len(), 1);
    for h in stopped {
        h.await?;
    }
    assert!(!series(&st, "m")?.is_empty());
    assert!(!has_stale(&st, "m"));
    assert!(!has_stale(&st, "up"));
    Ok(())
}

#[tokio::test]
async fn unchanged_target_keeps_running_across_sync() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    let before = wait_scrapes(&m, 2).await?.state.scrapes;
    // Same labels, an equal config in a new Arc: nothing restarts or goes stale.
    let stopped = m.sync(vec![target(&e, &config("")?)?]);
    assert!(stopped.is_empty());
    let after = state(&m).map(|s| s.state.scrapes).unwrap_or(0);
    assert!(after >= before, "state was reset: {after} < {before}");
    wait_scrapes(&m, before + 1).await?;
    assert!(!has_stale(&st, "m"));
    m.stop_all(StopMode::Moved).await;
    Ok(())
}

#[tokio::test]
async fn body_size_limit_exceeded() -> Result<()> {
    let body: String = (0..200).map(|i| format!("m{i} 1\n")).collect();
    let (st, s) = failing(Behaviour::Ok(TEXT, body), "    body_size_limit: 100B\n").await?;
    assert_eq!(s.state.last_error, "body size limit exceeded");
    assert!(series(&st, "m0")?.is_empty());
    Ok(())
}

#[tokio::test]
async fn openmetrics_body_is_parsed_as_openmetrics() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "# TYPE c counter\nc_total 3\n# EOF\n".into(),
    ))
    .await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    let s = wait_scrapes(&m, 1).await?;
    m.stop_all(StopMode::Moved).await;
    assert_eq!(s.state.health, Health::Up, "{}", s.state.last_error);
    assert_eq!(last_value(&st, "c_total"), Some(3.0));
    Ok(())
}

/// A store whose appenders block until the gate opens: storage falling behind.
struct GatedStorage {
    inner: MemStorage,
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl GatedStorage {
    fn open(&self) {
        *self.open.lock().expect("lock") = true;
        self.cv.notify_all();
    }
}

impl Storage for GatedStorage {
    fn appender(&self) -> Box<dyn trawl_storage::Appender + '_> {
        let mut g = self.open.lock().expect("lock");
        while !*g {
            g = self.cv.wait(g).expect("lock");
        }
        self.inner.appender()
    }
    fn querier(&self) -> Result<Box<dyn trawl_storage::Querier + '_>, trawl_storage::StorageError> {
        self.inner.querier()
    }
    fn apply_retention(
        &self,
    ) -> Result<trawl_storage::RetentionReport, trawl_storage::StorageError> {
        self.inner.apply_retention()
    }
    fn flush(&self) -> Result<(), trawl_storage::StorageError> {
        self.inner.flush()
    }
    fn metrics(&self) -> trawl_storage::StorageMetrics {
        self.inner.metrics()
    }
}

#[tokio::test]
async fn slow_storage_is_counted_and_reported_not_a_silent_stall() -> Result<()> {
    let e1 = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let e2 = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let cfg = config("")?;
    let st = Arc::new(GatedStorage {
        inner: MemStorage::new(StorageOptions::default()),
        open: std::sync::Mutex::new(false),
        cv: std::sync::Condvar::new(),
    });
    let opts = ManagerOptions {
        storage_queue: 1,
        storage_wait: Duration::from_millis(20),
        ..ManagerOptions::default()
    };
    let mut m = ScrapeManager::new(st.clone(), opts)?;
    m.sync(vec![target(&e1, &cfg)?, target(&e2, &cfg)?]);
    // One scrape holds the only slot; the other's waits time out and are recorded.
    let busy = wait_for("a storage-busy error", || {
        m.targets()
            .into_iter()
            .find(|s| s.state.last_error.starts_with("storage queue full"))
    })
    .await;
    let full = m
        .counters()
        .storage_queue_full
        .load(std::sync::atomic::Ordering::Relaxed);
    st.open();
    let busy = busy?;
    assert_eq!(busy.state.health, Health::Down);
    assert!(full >= 1);
    // Once storage catches up both targets recover.
    wait_for("recovery", || {
        let t = m.targets();
        t.iter().all(|s| s.state.health == Health::Up).then_some(())
    })
    .await?;
    m.stop_all(StopMode::Moved).await;
    Ok(())
}

/// A gzip stream holding `data` in one stored (uncompressed) deflate block: enough to
/// prove the client negotiates and decodes gzip without a compression dependency.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    let crc = !crc;
    let len = u16::try_from(data.len()).expect("small body");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x01];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).expect("small").to_le_bytes());
    out
}

#[tokio::test]
async fn gzip_bodies_are_requested_and_decoded() -> Result<()> {
    let e = Exporter::start(Behaviour::Gzip("zipped 42\n".into())).await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    let s = wait_scrapes(&m, 1).await?;
    m.stop_all(StopMode::Moved).await;
    assert_eq!(s.state.health, Health::Up, "{}", s.state.last_error);
    assert_eq!(last_value(&st, "zipped"), Some(42.0));
    let req = e.last_request.lock().expect("lock").to_lowercase();
    assert!(req.contains("accept-encoding: gzip"), "{req}");
    Ok(())
}

#[tokio::test]
async fn honor_labels_keeps_scraped_values() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "m{job=\"inner\"} 1\n".into())).await?;
    let cfg = config("    honor_labels: true\n")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    wait_scrapes(&m, 1).await?;
    m.stop_all(StopMode::Moved).await;
    let got = series(&st, "m")?;
    assert_eq!(got[0].0.get("job"), Some("inner"));
    assert_eq!(got[0].0.get("exported_job"), None);
    assert_eq!(got[0].0.get("instance"), Some(e.addr.as_str()));
    Ok(())
}

#[tokio::test]
async fn refused_connection_is_down() -> Result<()> {
    // Bind then drop a listener so the port is (very likely) closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?
        .to_string();
    let e = Exporter {
        addr,
        behaviour: Arc::new(Mutex::new(Behaviour::Status(500))),
        last_request: Arc::new(Mutex::new(String::new())),
    };
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    let s = wait_scrapes(&m, 1).await?;
    m.stop_all(StopMode::Moved).await;
    assert_eq!(s.state.health, Health::Down);
    assert!(
        s.state
            .last_error
            .starts_with(&format!("Get \"http://{}/metrics\": ", e.addr)),
        "{}",
        s.state.last_error
    );
    assert_eq!(last_value(&st, "up"), Some(0.0));
    Ok(())
}

#[tokio::test]
async fn failing_after_success_marks_previous_series_stale() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e, &cfg)?]);
    wait_for("m stored", || {
        (!series(&st, "m").ok()?.is_empty()).then_some(())
    })
    .await?;
    e.set(Behaviour::Status(500));
    wait_for("stale marker", || has_stale(&st, "m").then_some(())).await?;
    let s = state(&m).context("target")?;
    m.stop_all(StopMode::Moved).await;
    assert_eq!(s.state.health, Health::Down);
    assert_eq!(last_value(&st, "up"), Some(0.0));
    Ok(())
}

#[tokio::test]
async fn sync_moved_decides_per_target() -> Result<()> {
    let e1 = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let e2 = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let cfg = config("")?;
    let (st, mut m) = setup();
    m.sync(vec![target(&e1, &cfg)?, target(&e2, &cfg)?]);
    wait_for("both scraped", || {
        let t = m.targets();
        (t.len() == 2 && t.iter().all(|s| s.state.scrapes >= 1)).then_some(())
    })
    .await?;
    let moved_addr = e1.addr.clone();
    let stopped = m.sync_moved(vec![], |t| {
        t.labels().get("__address__") == Some(&moved_addr)
    });
    assert_eq!(stopped.len(), 2);
    for h in stopped {
        h.await?;
    }
    let stale_instances: Vec<String> = series(&st, "m")?
        .into_iter()
        .filter(|(_, v)| v.iter().any(|x| is_stale_nan(x.v)))
        .filter_map(|(l, _)| l.get("instance").map(str::to_string))
        .collect();
    assert_eq!(stale_instances, vec![e2.addr.clone()]);
    Ok(())
}

#[tokio::test]
async fn scrape_interval_label_overrides_job_interval() -> Result<()> {
    let e = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    // The job says one hour; the target label says 100ms, so scrapes must keep coming.
    let mut cfg = (*config("")?).clone();
    cfg.scrape_interval = trawl_model::PromDuration::from_secs(3600);
    let cfg = Arc::new(cfg);
    let labels = Labels::from_pairs([
        ("__address__", e.addr.as_str()),
        ("__scrape_interval__", "100ms"),
        ("__scrape_timeout__", "80ms"),
        ("job", "test"),
    ]);
    let (_st, mut m) = setup();
    m.sync(vec![Target::new(labels.clone(), labels, cfg)?]);
    let s = wait_scrapes(&m, 3).await?;
    m.stop_all(StopMode::Moved).await;
    assert_eq!(s.state.health, Health::Up);
    let req = e.last_request.lock().expect("lock").to_lowercase();
    assert!(
        req.contains("x-prometheus-scrape-timeout-seconds: 0.08"),
        "{req}"
    );
    Ok(())
}

#[tokio::test]
async fn https_to_a_plain_http_server_fails_cleanly() -> Result<()> {
    // Exercises the rustls client path end to end (provider installed, handshake error
    // reported on the target rather than a panic).
    let e = Exporter::start(Behaviour::Ok(TEXT, "m 1\n".into())).await?;
    let cfg = config("    scheme: https\n    tls_config:\n      insecure_skip_verify: true\n")?;
    let labels = Labels::from_pairs([("__address__", e.addr.as_str()), ("job", "test")]);
    let t = Target::new(labels.clone(), labels, cfg)?;
    assert!(t.url().starts_with("https://"));
    let (st, mut m) = setup();
    m.sync(vec![t]);
    let s = wait_scrapes(&m, 1).await?;
    m.stop_all(StopMode::Moved).await;
    assert_eq!(s.state.health, Health::Down);
    assert!(
        s.state.last_error.starts_with("Get \"https://"),
        "{}",
        s.state.last_error
    );
    assert!(series(&st, "m")?.is_empty());
    Ok(())
}

#[tokio::test]
async fn dedicated_scrape_threads_scrape_every_target_and_mark_removed_ones_stale() -> Result<()> {
    let mut exporters = Vec::new();
    for i in 0..8 {
        exporters
            .push(Exporter::start(Behaviour::Ok(TEXT, format!("m{{i=\"{i}\"}} {i}\n"))).await?);
    }
    let cfg = config("")?;
    let st = Arc::new(MemStorage::new(StorageOptions::default()));
    let opts = ManagerOptions {
        threads: 2,
        ..ManagerOptions::default()
    };
    let mut m = ScrapeManager::new(st.clone(), opts)?;
    let targets = exporters
        .iter()
        .map(|e| target(e, &cfg))
        .collect::<Result<Vec<_>>>()?;
    m.sync(targets);
    wait_for("every target scraped twice", || {
        let t = m.targets();
        (t.len() == 8 && t.iter().all(|s| s.state.scrapes >= 2)).then_some(())
    })
    .await?;
    for s in m.targets() {
        assert_eq!(s.state.health, Health::Up, "{:?}", s.state.last_error);
    }
    let mut got: Vec<f64> = series(&st, "m")?
        .iter()
        .filter_map(|(_, samples)| samples.last().map(|s| s.v))
        .collect();
    got.sort_by(f64::total_cmp);
    assert_eq!(got, (0..8).map(f64::from).collect::<Vec<_>>());
    // Removing the targets writes their staleness markers from the scrape threads.
    let stopped = m.sync(vec![]);
    assert_eq!(stopped.len(), 8);
    for h in stopped {
        h.await?;
    }
    let m_series = series(&st, "m")?;
    assert_eq!(m_series.len(), 8);
    for (labels, samples) in &m_series {
        assert!(
            samples.last().is_some_and(|s| is_stale_nan(s.v)),
            "{labels:?} has no staleness marker"
        );
    }
    Ok(())
}
