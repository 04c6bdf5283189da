//! `trawl query` (gRPC) against a running `trawl standalone` scraping a test exporter: every
//! answer equals the same request made to the standalone's Prometheus HTTP API.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use trawl_tests::exporter::{Behavior, Exporter, series_body};
use trawl_tests::process::{TrawlProcess, eventually, trawl_bin, urlencode};

const WAIT: Duration = Duration::from_secs(60);

/// `trawl query ARGS --addr ADDR -o json`, parsed.
fn cli(addr: &str, args: &[&str]) -> anyhow::Result<Value> {
    let o = Command::new(trawl_bin()?)
        .arg("query")
        .args(args)
        .args(["--addr", addr, "-o", "json"])
        .env("TRAWL_LOG", "off")
        .output()?;
    let out = String::from_utf8(o.stdout)?;
    if !o.status.success() {
        bail!(
            "trawl query {args:?}: {}{}",
            out,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    serde_json::from_str(&out).with_context(|| out)
}

fn http(p: &TrawlProcess, path: &str) -> anyhow::Result<Value> {
    let r = p.get(path)?;
    serde_json::from_str(&r.body).with_context(|| format!("{path}: {}", r.body))
}

#[test]
fn trawl_query_answers_as_the_http_api_of_a_running_standalone() -> anyhow::Result<()> {
    let exp = Exporter::start(Behavior::Ok(series_body("q_metric", 5, 1.5)))?;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: q\n    static_configs:\n      - targets: [\"{}\"]\n",
            exp.target()
        ),
    )?;
    // A free port for gRPC (the process binds it a moment later).
    let grpc = TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let p = TrawlProcess::standalone(
        &cfg,
        &dir.path().join("data"),
        &[&format!("--grpc.listen-address={grpc}")],
    )?;
    eventually("five scraped series", WAIT, || {
        Ok((p.query_vector("q_metric")?.len() == 5).then_some(()))
    })?;
    // The gRPC service answers once it is listening.
    eventually("the gRPC query service", WAIT, || {
        Ok(cli(&grpc, &["labels"]).ok())
    })?;

    // Fix the evaluation time so both paths see the same data.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let t = format!("{}.{:03}", now.as_secs(), now.subsec_millis());
    let start = format!("{}", now.as_secs() - 3);
    let mut compared = 0;
    for q in [
        "q_metric",
        "sum(q_metric)",
        "up",
        "count by (job) (q_metric) * 2",
        "scrape_samples_scraped",
    ] {
        let g = cli(&grpc, &[q, "--time", &t])?;
        let h = http(
            &p,
            &format!("/api/v1/query?query={}&time={t}", urlencode(q)),
        )?;
        assert_eq!(g["status"], "success", "{g}");
        assert_eq!(g["data"], h["data"], "instant {q}");
        let g = cli(&grpc, &[q, "--start", &start, "--end", &t, "--step", "0.5"])?;
        let h = http(
            &p,
            &format!(
                "/api/v1/query_range?query={}&start={start}&end={t}&step=0.5",
                urlencode(q)
            ),
        )?;
        assert_eq!(g["data"], h["data"], "range {q}");
        compared += 2;
    }
    let m = urlencode("q_metric");
    let g = cli(&grpc, &["labels", "--match", "q_metric", "--end", &t])?;
    let h = http(&p, &format!("/api/v1/labels?match[]={m}&end={t}"))?;
    assert_eq!(g["data"], h["data"]);
    assert_eq!(
        g["data"],
        serde_json::json!(["__name__", "i", "instance", "job"])
    );
    let g = cli(&grpc, &["labels", "i", "--end", &t])?;
    let h = http(&p, &format!("/api/v1/label/i/values?end={t}"))?;
    assert_eq!(g["data"], h["data"]);
    let g = cli(&grpc, &["series", "--match", "q_metric", "--end", &t])?;
    let h = http(&p, &format!("/api/v1/series?match[]={m}&end={t}"))?;
    assert_eq!(g["data"], h["data"]);
    assert_eq!(g["data"].as_array().map(Vec::len), Some(5));
    compared += 3;
    println!("trawl query (gRPC) equals the HTTP API on {compared} requests");

    // Errors keep Prometheus's errorType on both paths.
    let o = Command::new(trawl_bin()?)
        .args(["query", "sum(", "--addr", &grpc, "-o", "json"])
        .output()?;
    assert_eq!(o.status.code(), Some(1));
    let g: Value = serde_json::from_slice(&o.stdout)?;
    let h = http(&p, "/api/v1/query?query=sum(")?;
    assert_eq!(g["errorType"], h["errorType"]);
    assert_eq!(g["errorType"], "bad_data");
    Ok(())
}
