//! `trawl standalone` as a real process against test exporters on loopback: targets API,
//! health and Prometheus's error texts, synthetic series, limits, staleness, reloads
//! (SIGHUP and `POST /-/reload`, good and bad), lifecycle endpoints and `/metrics`.
//!
//! Every wait polls a condition against the HTTP API with a generous deadline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use trawl_tests::exporter::{Behavior, Exporter, series_body};
use trawl_tests::process::{TrawlProcess, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    // Write then rename, so a reload never sees a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn temp() -> anyhow::Result<(tempfile::TempDir, PathBuf, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("prometheus.yml");
    let data = dir.path().join("data");
    Ok((dir, cfg, data))
}

fn job(name: &str, targets: &[String], extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "  - job_name: {name}\n{extra}    static_configs:\n      - targets: [{}]\n",
        list.join(", ")
    )
}

fn config(jobs: &[String]) -> String {
    format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n{}",
        jobs.concat()
    )
}

/// Active targets of the targets API grouped by pool.
fn active_by_pool(t: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for a in t["data"]["activeTargets"].as_array().into_iter().flatten() {
        let pool = a["scrapePool"].as_str().unwrap_or("").to_string();
        m.entry(pool).or_default().push(a.clone());
    }
    m
}

fn scalar(p: &TrawlProcess, expr: &str) -> anyhow::Result<Option<f64>> {
    let v = p.query_vector(expr)?;
    Ok(match v.as_slice() {
        [(_, x)] => Some(*x),
        _ => None,
    })
}

/// Waits until `expr` yields exactly one sample equal to `want`.
fn wait_value(p: &TrawlProcess, expr: &str, want: f64) -> anyhow::Result<()> {
    eventually(&format!("{expr} == {want}"), WAIT, || {
        Ok(scalar(p, expr)?.filter(|v| *v == want).map(|_| ()))
    })
}

/// Waits until `expr` returns no series.
fn wait_empty(p: &TrawlProcess, expr: &str) -> anyhow::Result<()> {
    eventually(&format!("{expr} to be empty"), WAIT, || {
        Ok(p.query_vector(expr)?.is_empty().then_some(()))
    })
}

fn metric_value(p: &TrawlProcess, name: &str) -> anyhow::Result<f64> {
    let r = p.get("/metrics")?;
    if r.status != 200 {
        bail!("/metrics answered {}", r.status);
    }
    for line in r.body.lines() {
        if let Some(rest) = line.strip_prefix(name)
            && let Some(v) = rest.strip_prefix(' ')
        {
            return Ok(v.trim().parse()?);
        }
    }
    bail!("{name} not in /metrics")
}

#[test]
fn targets_health_errors_limits_and_synthetic_series() -> anyhow::Result<()> {
    let (_dir, cfg, data) = temp()?;
    let good: Vec<Exporter> = (0..6)
        .map(|_| Exporter::start(Behavior::Ok(series_body("test_metric", 10, 1.0))))
        .collect::<anyhow::Result<_>>()?;
    let slow = Exporter::start(Behavior::Slow(
        Duration::from_secs(2),
        series_body("slow_metric", 1, 1.0),
    ))?;
    let failing = Exporter::start(Behavior::Status(500))?;
    let malformed = Exporter::start(Behavior::Ok("this is { not valid\n".into()))?;
    let oversized = Exporter::start(Behavior::Ok(series_body("big_metric", 50, 1.0)))?;
    let limited = Exporter::start(Behavior::Ok(series_body("lim_metric", 10, 1.0)))?;
    let good_targets: Vec<String> = good.iter().map(Exporter::target).collect();
    write(
        &cfg,
        &config(&[
            job(
                "good",
                &good_targets,
                "    metric_relabel_configs:\n      - source_labels: [i]\n        regex: '9'\n        action: drop\n",
            ),
            job("slow", &[slow.target()], ""),
            job("failing", &[failing.target()], ""),
            job("malformed", &[malformed.target()], ""),
            job(
                "oversized",
                &[oversized.target()],
                "    body_size_limit: 100B\n",
            ),
            job("limited", &[limited.target()], "    sample_limit: 5\n"),
            job(
                "dropped",
                &["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()],
                "    relabel_configs:\n      - source_labels: [__address__]\n        regex: '.*:1'\n        action: drop\n",
            ),
        ]),
    )?;
    let p = TrawlProcess::standalone(&cfg, &data, &[])?;

    // Every target scraped at least once, and every failing one with its reason.
    let targets = eventually("all targets scraped", WAIT, || {
        let t = p.targets("")?;
        let all = t["data"]["activeTargets"]
            .as_array()
            .context("activeTargets")?;
        let done = all.len() == 12 && all.iter().all(|a| a["health"] != "unknown");
        Ok(done.then_some(t))
    })?;
    let by_pool = active_by_pool(&targets);
    assert_eq!(by_pool["good"].len(), 6);
    for a in &by_pool["good"] {
        assert_eq!(a["health"], "up", "{a}");
        assert_eq!(a["lastError"], "", "{a}");
        assert_eq!(a["scrapeInterval"], "200ms");
        assert_eq!(a["scrapeTimeout"], "150ms");
        let addr = a["discoveredLabels"]["__address__"]
            .as_str()
            .context("addr")?;
        assert!(good_targets.iter().any(|t| t == addr), "{a}");
        assert_eq!(a["labels"]["instance"], addr);
        assert_eq!(a["labels"]["job"], "good");
        assert!(a["labels"].get("__address__").is_none(), "{a}");
        assert_eq!(a["scrapeUrl"], format!("http://{addr}/metrics"));
    }
    let err_of = |pool: &str| -> String {
        by_pool[pool][0]["lastError"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let health_of = |pool: &str| by_pool[pool][0]["health"].clone();
    for pool in ["slow", "failing", "malformed", "oversized", "limited"] {
        assert_eq!(health_of(pool), "down", "{pool}: {}", by_pool[pool][0]);
    }
    assert_eq!(
        err_of("slow"),
        format!(
            "Get \"http://{}/metrics\": context deadline exceeded",
            slow.target()
        )
    );
    assert_eq!(
        err_of("failing"),
        "server returned HTTP status 500 Internal Server Error"
    );
    assert!(!err_of("malformed").is_empty());
    assert_eq!(err_of("oversized"), "body size limit exceeded");
    assert_eq!(err_of("limited"), "sample limit exceeded");

    // Dropped targets keep their discovered labels.
    let dropped = targets["data"]["droppedTargets"]
        .as_array()
        .context("droppedTargets")?;
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], "127.0.0.1:1");
    assert_eq!(dropped[0]["discoveredLabels"]["job"], "dropped");
    assert_eq!(by_pool["dropped"].len(), 1);

    // Filters.
    let only_active = p.targets("?state=active")?;
    assert_eq!(only_active["data"]["droppedTargets"], Value::Array(vec![]));
    let only_dropped = p.targets("?state=dropped")?;
    assert_eq!(only_dropped["data"]["activeTargets"], Value::Array(vec![]));
    assert_eq!(
        only_dropped["data"]["droppedTargets"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let pool = p.targets("?scrapePool=failing")?;
    let pools: Vec<&Value> = pool["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| &a["scrapePool"])
        .collect();
    assert_eq!(pools, [&Value::from("failing")]);

    // Synthetic series.
    wait_value(&p, "count(up{job=\"good\"} == 1)", 6.0)?;
    for pool in ["slow", "failing", "malformed", "oversized", "limited"] {
        wait_value(&p, &format!("up{{job=\"{pool}\"}}"), 0.0)?;
    }
    wait_value(&p, "min(scrape_samples_scraped{job=\"good\"})", 10.0)?;
    wait_value(
        &p,
        "max(scrape_samples_post_metric_relabeling{job=\"good\"})",
        9.0,
    )?;
    wait_value(
        &p,
        "max(max_over_time(scrape_series_added{job=\"good\"}[1h]))",
        9.0,
    )?;
    wait_value(&p, "max(scrape_series_added{job=\"good\"})", 0.0)?;
    wait_value(&p, "count(test_metric{job=\"good\"})", 54.0)?;
    wait_empty(&p, "test_metric{i=\"9\"}")?;
    let d = scalar(&p, "max(scrape_duration_seconds{job=\"good\"})")?.context("duration")?;
    assert!(d > 0.0 && d < 0.15, "scrape_duration_seconds {d}");
    let d = scalar(&p, "scrape_duration_seconds{job=\"slow\"}")?.context("duration")?;
    assert!(d >= 0.14, "a timed-out scrape lasts its timeout: {d}");
    // A failed scrape stores none of its samples.
    wait_empty(&p, "lim_metric")?;
    wait_empty(&p, "big_metric")?;

    // Lifecycle and own metrics.
    assert_eq!(p.get("/-/healthy")?.status, 200);
    assert_eq!(p.get("/-/ready")?.status, 200);
    assert_eq!(
        p.post("/-/reload")?.status,
        403,
        "reload needs --web.enable-lifecycle"
    );
    let m = p.get("/metrics")?;
    assert_eq!(m.status, 200);
    for name in [
        "trawl_build_info{",
        "trawl_config_last_reload_successful 1",
        "trawl_tsdb_head_series ",
        "trawl_target_scrape_pool_targets{scrape_job=\"good\"} 6",
        "trawl_target_scrape_pool_dropped_targets{scrape_job=\"dropped\"} 1",
        "trawl_sd_discovered_targets{config=\"dropped\",name=\"scrape\"} 2",
        "process_resident_memory_bytes ",
    ] {
        assert!(
            m.body.contains(name),
            "{name} missing in /metrics:\n{}",
            m.body
        );
    }
    assert!(metric_value(&p, "trawl_target_scrapes_exceeded_sample_limit_total")? >= 1.0);
    assert!(metric_value(&p, "trawl_target_scrapes_exceeded_body_size_limit_total")? >= 1.0);
    assert!(metric_value(&p, "trawl_target_scrape_timeouts_total")? >= 1.0);
    Ok(())
}

#[test]
fn staleness_reload_and_bad_config() -> anyhow::Result<()> {
    let (_dir, cfg, data) = temp()?;
    let a = Exporter::start(Behavior::Ok(series_body("churn", 3, 1.0)))?;
    let b = Exporter::start(Behavior::Ok(series_body("leaving", 2, 1.0)))?;
    let good = config(&[job("a", &[a.target()], ""), job("b", &[b.target()], "")]);
    write(&cfg, &good)?;
    let p = TrawlProcess::standalone(&cfg, &data, &["--web.enable-lifecycle"])?;
    wait_value(&p, "count(churn)", 3.0)?;
    wait_value(&p, "count(leaving)", 2.0)?;

    // A series that vanishes from the body goes stale at once, long before the 5m
    // lookback would hide it, while its history stays.
    a.set(Behavior::Ok(
        "# TYPE churn gauge\nchurn{i=\"0\"} 1\nchurn{i=\"1\"} 1\n".into(),
    ));
    wait_empty(&p, "churn{i=\"2\"}")?;
    wait_value(&p, "count(churn)", 2.0)?;
    wait_value(&p, "count(count_over_time(churn[1h]))", 3.0)?;

    // Reload (SIGHUP) without job b: its series and synthetic series go stale; job a's
    // loop is untouched.
    let started = metric_value(&p, "trawl_target_loops_started_total")?;
    write(&cfg, &config(&[job("a", &[a.target()], "")]))?;
    p.signal("HUP")?;
    wait_empty(&p, "leaving")?;
    wait_empty(&p, "up{job=\"b\"}")?;
    wait_value(&p, "count(count_over_time(up{job=\"b\"}[1h]))", 1.0)?;
    wait_value(&p, "up{job=\"a\"}", 1.0)?;
    eventually("job b gone from the targets API", WAIT, || {
        let t = p.targets("")?;
        let pools = active_by_pool(&t);
        Ok((!pools.contains_key("b") && pools.contains_key("a")).then_some(()))
    })?;
    assert_eq!(
        metric_value(&p, "trawl_target_loops_started_total")?,
        started,
        "no loop restarted for an unchanged target"
    );
    assert_eq!(
        metric_value(&p, "trawl_config_last_reload_successful")?,
        1.0
    );

    // A bad config is refused over HTTP, logged, counted, and the old one keeps running.
    write(
        &cfg,
        "scrape_configs:\n  - job_name: a\n    scrape_interval: banana\n",
    )?;
    let r = p.post("/-/reload")?;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.contains("banana") || r.body.contains("scrape_interval"),
        "{}",
        r.body
    );
    assert_eq!(
        metric_value(&p, "trawl_config_last_reload_successful")?,
        0.0
    );
    assert!(
        p.log()
            .iter()
            .any(|l| l.contains("error reloading config") && l.contains("error=")),
        "the failure is logged with its error"
    );
    let before = a.requests();
    eventually("job a still scraped after the bad reload", WAIT, || {
        Ok((a.requests() >= before + 3).then_some(()))
    })?;
    wait_value(&p, "up{job=\"a\"}", 1.0)?;
    let status = p.get("/api/v1/status/config")?;
    assert!(status.body.contains("job_name: a"), "{}", status.body);

    // A good reload over HTTP brings job b back.
    write(&cfg, &good)?;
    let r = p.post("/-/reload")?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        metric_value(&p, "trawl_config_last_reload_successful")?,
        1.0
    );
    wait_value(&p, "up{job=\"b\"}", 1.0)?;

    // A target that goes down marks its series stale too.
    a.set(Behavior::Status(503));
    wait_empty(&p, "churn")?;
    wait_value(&p, "up{job=\"a\"}", 0.0)?;
    Ok(())
}

#[test]
fn restart_keeps_data_and_sigterm_exits_cleanly() -> anyhow::Result<()> {
    let (_dir, cfg, data) = temp()?;
    let a = Exporter::start(Behavior::Ok(series_body("kept", 4, 2.0)))?;
    write(&cfg, &config(&[job("a", &[a.target()], "")]))?;
    let mut p = TrawlProcess::standalone(&cfg, &data, &[])?;
    wait_value(&p, "count(kept)", 4.0)?;
    assert!(
        p.terminate(Duration::from_secs(30))?,
        "clean exit on SIGTERM"
    );
    drop(a);
    let p = TrawlProcess::standalone(&cfg, &data, &[])?;
    eventually("ready after restart", WAIT, || {
        Ok((p.get("/-/ready")?.status == 200).then_some(()))
    })?;
    // The exporter is gone: history from the first run is still there.
    wait_value(&p, "count(count_over_time(kept[1h]))", 4.0)?;
    wait_value(&p, "up{job=\"a\"}", 0.0)?;
    Ok(())
}
