//! The cluster end to end: real coordinator, worker and querier processes on loopback
//! (`trawl_tests::cluster`), scraping test exporters.
//!
//! What is checked (issue 6's acceptance):
//! - every target is scraped by exactly R workers, load is balanced (max/mean ≤ 1.1), and the
//!   queriers answer like a standalone scraping the same targets;
//! - a joining worker takes ≤ 1.1/N of the targets and the moved ones miss no scrape;
//! - `kill -9` of a worker: complete answers with R=2, a partial-response warning with R=1
//!   until its targets are re-placed; after a restart its data is queryable again;
//! - killing the Raft leader elects another, epochs continue and no target moves.
//!
//! Every wait polls a condition with a deadline; nothing sleeps a fixed time and hopes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use trawl_tests::cluster::{Cluster, ClusterBuilder, Node};
use trawl_tests::exporter::{Behavior, Exporter};
use trawl_tests::process::{TrawlProcess, eventually, parse_prom_float, urlencode};

const BODY: &str = "# TYPE trawl_test_gauge gauge\ntrawl_test_gauge 2\n# TYPE trawl_test_requests_total counter\ntrawl_test_requests_total 42\n";

fn exporters(n: usize) -> Result<Vec<Exporter>> {
    (0..n)
        .map(|_| Exporter::start(Behavior::Ok(BODY.into())))
        .collect()
}

fn config(exps: &[Exporter], interval: &str) -> String {
    let targets: Vec<String> = exps.iter().map(|e| format!("'{}'", e.target())).collect();
    format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\nscrape_configs:\n  - job_name: load\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

/// Instances each running worker scrapes, from its own `/api/v1/targets`.
fn worker_targets(c: &Cluster) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for w in c.workers.iter().filter(|w| w.running()) {
        let v = w.get_json("/api/v1/targets?state=active")?;
        let set = v["data"]["activeTargets"]
            .as_array()
            .context("activeTargets")?
            .iter()
            .filter_map(|t| t["labels"]["instance"].as_str().map(str::to_owned))
            .collect();
        out.insert(w.name.clone(), set);
    }
    Ok(out)
}

/// How many running workers scrape each instance.
fn owners_per_instance(per_worker: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for set in per_worker.values() {
        for i in set {
            *n.entry(i.clone()).or_default() += 1;
        }
    }
    n
}

/// Waits until every one of `instances` is scraped by exactly `r` running workers.
fn wait_placed(
    c: &Cluster,
    instances: &BTreeSet<String>,
    r: usize,
    within: Duration,
) -> Result<BTreeMap<String, BTreeSet<String>>> {
    eventually("every target on exactly R workers", within, || {
        let per = worker_targets(c)?;
        let owners = owners_per_instance(&per);
        // Every running worker is registered and up, and has its share: a placement seen
        // before the last worker registered is not the settled one.
        let running = c.workers.iter().filter(|w| w.running()).count();
        let up = c.cluster_state()?["workers"]
            .as_array()
            .map(|ws| ws.iter().filter(|w| w["state"] == "up").count())
            .unwrap_or(0);
        let ok = up == running
            && per.values().all(|s| !s.is_empty())
            && owners.len() == instances.len()
            && instances.iter().all(|i| owners.get(i) == Some(&r));
        Ok(ok.then_some(per))
    })
}

fn query(n: &Node, expr: &str) -> Result<Value> {
    n.get_json(&format!("/api/v1/query?query={}", urlencode(expr)))
}

/// The value of a one-element instant vector (or scalar) answer.
fn scalar_of(v: &Value) -> Result<f64> {
    ensure!(v["status"] == "success", "query failed: {v}");
    let r = &v["data"]["result"];
    let val = match v["data"]["resultType"].as_str() {
        Some("vector") => {
            let a = r.as_array().context("result")?;
            ensure!(a.len() == 1, "want one element, got {v}");
            a[0]["value"][1].clone()
        }
        Some("scalar") => r[1].clone(),
        _ => bail!("unexpected answer {v}"),
    };
    val.as_str()
        .and_then(parse_prom_float)
        .with_context(|| format!("value in {v}"))
}

fn warnings(v: &Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect()
}

fn instances(exps: &[Exporter]) -> BTreeSet<String> {
    exps.iter().map(|e| e.target()).collect()
}

fn balance(per: &BTreeMap<String, BTreeSet<String>>) -> f64 {
    let counts: Vec<usize> = per.values().map(BTreeSet::len).collect();
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    max / mean
}

/// 3 coordinators, 4 workers, 2 queriers, 300 targets, with R=`r`.
fn placement_matches_standalone(r: usize) -> Result<()> {
    let exps = exporters(300)?;
    let cfg = config(&exps, "2s");
    let want = instances(&exps);
    let c = ClusterBuilder::new(&cfg)
        .coordinators(3)
        .workers(4)
        .queriers(2)
        .replication(r)
        .start()?;
    let per = wait_placed(&c, &want, r, Duration::from_secs(90))?;
    let b = balance(&per);
    eprintln!(
        "R={r}: targets per worker {:?}, max/mean {b:.3}",
        per.values().map(BTreeSet::len).collect::<Vec<_>>()
    );
    ensure!(b <= 1.1, "max/mean targets per worker {b} > 1.1");

    // The same targets in a standalone, as the reference.
    let data = tempfile::tempdir()?;
    let cfg_file = data.path().join("prometheus.yml");
    std::fs::write(&cfg_file, &cfg)?;
    let sa = TrawlProcess::standalone(&cfg_file, &data.path().join("data"), &[])?;
    let exprs = [
        "count(up == 1)",
        "sum(trawl_test_gauge)",
        "count(trawl_test_requests_total)",
        "sum(trawl_test_requests_total)",
    ];
    for expr in exprs {
        let reference = eventually(
            &format!("standalone answers {expr}"),
            Duration::from_secs(60),
            || {
                let v = sa.query(expr)?;
                Ok(scalar_of(&v)
                    .ok()
                    .filter(|x| *x > 0.0 && count_ok(expr, *x)))
            },
        )?;
        for q in &c.queriers {
            let got = eventually(
                &format!("{} answers {expr}", q.name),
                Duration::from_secs(60),
                || {
                    let v = query(q, expr)?;
                    ensure!(warnings(&v).is_empty(), "unexpected warnings: {v}");
                    Ok(scalar_of(&v).ok().filter(|x| *x == reference))
                },
            )?;
            ensure!(
                got == reference,
                "{}: {expr} = {got}, standalone {reference}",
                q.name
            );
        }
    }
    Ok(())
}

/// Counting answers reach every target once all have been scraped.
fn count_ok(expr: &str, x: f64) -> bool {
    match expr {
        "count(up == 1)" | "count(trawl_test_requests_total)" => x == 300.0,
        "sum(trawl_test_gauge)" => x == 600.0,
        "sum(trawl_test_requests_total)" => x == 300.0 * 42.0,
        _ => true,
    }
}

#[test]
fn r1_every_target_once_balanced_and_answers_match_standalone() -> Result<()> {
    placement_matches_standalone(1)
}

#[test]
fn r2_every_target_twice_balanced_and_answers_match_standalone() -> Result<()> {
    placement_matches_standalone(2)
}

/// Sample timestamps (seconds) of `expr` (a range selector) as the querier returns them.
fn sample_times(q: &Node, expr: &str) -> Result<Vec<f64>> {
    let v = query(q, expr)?;
    ensure!(v["status"] == "success", "{expr}: {v}");
    let r = v["data"]["result"].as_array().context("result")?;
    ensure!(r.len() == 1, "{expr}: want one series, got {v}");
    Ok(r[0]["values"]
        .as_array()
        .context("values")?
        .iter()
        .filter_map(|p| p[0].as_f64())
        .collect())
}

/// The largest distance between consecutive timestamps.
fn max_gap(ts: &[f64]) -> f64 {
    ts.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

fn owner_of(per: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut o: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (w, set) in per {
        for i in set {
            o.entry(i.clone()).or_default().insert(w.clone());
        }
    }
    o
}

#[test]
fn joining_worker_takes_its_share_and_moved_targets_miss_no_scrape() -> Result<()> {
    let exps = exporters(100)?;
    let want = instances(&exps);
    let mut c = ClusterBuilder::new(&config(&exps, "2s"))
        .workers(4)
        .start()?;
    let before = owner_of(&wait_placed(&c, &want, 1, Duration::from_secs(90))?);
    // Some history on the first owners before the join.
    let q = &c.queriers[0];
    eventually("history before the join", Duration::from_secs(60), || {
        let v = query(q, "min(count_over_time(up[1m]))")?;
        Ok(scalar_of(&v).ok().filter(|n| *n >= 3.0))
    })?;
    c.add_worker()?;
    let after = eventually(
        "the new worker owns targets",
        Duration::from_secs(90),
        || {
            let per = wait_placed(&c, &want, 1, Duration::from_secs(60))?;
            Ok(per
                .get("w5")
                .is_some_and(|s| !s.is_empty())
                .then_some(owner_of(&per)))
        },
    )?;
    let moved: Vec<&String> = want
        .iter()
        .filter(|i| before.get(*i) != after.get(*i))
        .collect();
    let limit = 1.1 / 5.0 * want.len() as f64;
    eprintln!(
        "join: {} of {} targets moved (limit {limit:.1})",
        moved.len(),
        want.len()
    );
    ensure!(!moved.is_empty(), "the new worker got no target");
    ensure!(
        moved.len() as f64 <= limit,
        "{} moved > {limit}",
        moved.len()
    );
    // Let the new owners scrape a few more times, then look at the whole history.
    let q = &c.queriers[0];
    for inst in &moved {
        let expr = format!("up{{instance=\"{inst}\"}}[3m]");
        let ts = eventually(
            &format!("{inst} scraped after the move"),
            Duration::from_secs(60),
            || {
                let ts = sample_times(q, &expr)?;
                Ok((ts.len() >= 10).then_some(ts))
            },
        )?;
        let gap = max_gap(&ts);
        ensure!(
            gap < 3.0,
            "{inst}: a {gap}s gap in up across the handoff (interval 2s): {ts:?}"
        );
    }
    Ok(())
}

#[test]
fn killed_worker_r2_answers_stay_complete_and_targets_are_replaced() -> Result<()> {
    let exps = exporters(60)?;
    let want = instances(&exps);
    let mut c = ClusterBuilder::new(&config(&exps, "2s"))
        .workers(4)
        .replication(2)
        .start()?;
    wait_placed(&c, &want, 2, Duration::from_secs(90))?;
    let q = &c.queriers[0];
    eventually("all targets up", Duration::from_secs(60), || {
        Ok(scalar_of(&query(q, "count(up == 1)")?)
            .ok()
            .filter(|n| *n == 60.0))
    })?;
    c.kill_worker(0)?;
    // Right after the kill, before any re-placement: complete, no warning.
    let v = query(&c.queriers[0], "count(up == 1)")?;
    ensure!(
        warnings(&v).is_empty(),
        "R=2 with one worker down warned: {v}"
    );
    ensure!(scalar_of(&v)? == 60.0, "R=2 with one worker down: {v}");
    wait_placed(&c, &want, 2, Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn killed_worker_r1_partial_response_then_replaced_and_restart_brings_history_back() -> Result<()> {
    let exps = exporters(40)?;
    let want = instances(&exps);
    let mut c = ClusterBuilder::new(&config(&exps, "2s"))
        .workers(3)
        .start()?;
    let per = wait_placed(&c, &want, 1, Duration::from_secs(90))?;
    let victim_inst = per["w1"].iter().next().context("w1 owns nothing")?.clone();
    let hist = format!("count_over_time(up{{instance=\"{victim_inst}\"}}[10m])");
    let q = &c.queriers[0];
    let n0 = eventually("history on w1", Duration::from_secs(60), || {
        Ok(scalar_of(&query(q, &hist)?).ok().filter(|n| *n >= 3.0))
    })?;
    c.kill_worker(0)?;
    let q = &c.queriers[0];
    let v = query(q, "count(up)")?;
    let w = warnings(&v);
    ensure!(
        w.iter().any(|w| w.contains("w1")),
        "R=1 with w1 down: want a partial-response warning naming w1, got {v}"
    );
    // Heartbeat timeout 2 s + two 2 s intervals, with slack for a loaded machine.
    wait_placed(&c, &want, 1, Duration::from_secs(20))?;
    c.restart_worker(0)?;
    let q = &c.queriers[0];
    eventually(
        "w1's history queryable again without warnings",
        Duration::from_secs(60),
        || {
            let v = query(q, &hist)?;
            Ok((warnings(&v).is_empty() && scalar_of(&v).is_ok_and(|n| n >= n0)).then_some(()))
        },
    )?;
    Ok(())
}

#[test]
fn killing_the_raft_leader_elects_another_and_moves_nothing() -> Result<()> {
    let exps = exporters(30)?;
    let want = instances(&exps);
    let mut c = ClusterBuilder::new(&config(&exps, "1s"))
        .coordinators(3)
        .workers(2)
        .start()?;
    let owners = owner_of(&wait_placed(&c, &want, 1, Duration::from_secs(90))?);
    let leader = eventually("a leader", Duration::from_secs(30), || Ok(c.leader()))?;
    let epoch0 = c.cluster_state()?["epoch"].as_u64().context("epoch")?;
    let scrapes0: Vec<u64> = exps.iter().map(Exporter::requests).collect();
    c.coordinators[leader].kill()?;
    let new_leader = eventually("a new leader", Duration::from_secs(5), || {
        Ok(c.leader().filter(|l| *l != leader))
    })?;
    eprintln!("leader c{} killed, c{} leads", leader + 1, new_leader + 1);
    // Watch the assignment through three heartbeat timeouts of the new leader.
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(6) {
        let now = owner_of(&worker_targets(&c)?);
        let moved: Vec<_> = owners
            .iter()
            .filter(|(i, o)| now.get(*i) != Some(*o))
            .collect();
        ensure!(
            moved.is_empty(),
            "targets moved after the failover: {moved:?} now {now:?}"
        );
        let epoch = c.cluster_state()?["epoch"].as_u64().context("epoch")?;
        ensure!(epoch >= epoch0, "epoch went back from {epoch0} to {epoch}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Workers kept scraping: every exporter was asked again.
    for (e, n0) in exps.iter().zip(scrapes0) {
        ensure!(
            e.requests() > n0,
            "{} not scraped during the failover",
            e.target()
        );
    }
    Ok(())
}
