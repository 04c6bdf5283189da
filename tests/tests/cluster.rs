//! The cluster end to end: real coordinator, worker and querier processes on loopback
//! (`trawl_tests::cluster`), scraping test exporters.
//!
//! What is checked (issue 6's acceptance):
//! - every target is scraped by exactly R workers, load is balanced (max/mean ≤ 1.1), and the
//!   queriers answer like a standalone scraping the same targets;
//! - a joining worker takes ≤ 1.1/N of the targets and the moved ones miss no scrape;
//! - `kill -9` of a worker: complete answers with R=2, a partial-response warning with R=1
//!   until its targets are re-placed; after a restart its data is queryable again;
//! - killing the Raft leader elects another, epochs continue and no target moves;
//! - a partitioned leader is replaced by the majority and nothing moves; a partitioned worker
//!   keeps scraping its last assignment while its targets are placed elsewhere;
//! - with mutual TLS on every process the cluster works the same, and a plaintext client is
//!   refused.
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

/// Waits until every target has been scraped (so its series count, a placement weight, has
/// been reported) and the assignment epoch then stays the same for `quiet`: the placement that
/// follows from the first weights has been committed and nothing is in flight.
fn wait_settled(c: &Cluster, targets: usize, quiet: Duration, within: Duration) -> Result<u64> {
    let deadline = std::time::Instant::now() + within;
    let mut last: Option<(u64, std::time::Instant)> = None;
    loop {
        ensure!(
            std::time::Instant::now() < deadline,
            "placement did not settle within {within:?}"
        );
        let up: usize = c
            .workers
            .iter()
            .filter(|w| w.running())
            .map(|w| -> Result<usize> {
                let v = w.get_json("/api/v1/targets?state=active")?;
                Ok(v["data"]["activeTargets"]
                    .as_array()
                    .context("activeTargets")?
                    .iter()
                    .filter(|t| t["health"] == "up")
                    .count())
            })
            .sum::<Result<usize>>()?;
        let epoch = c.cluster_state()?["epoch"].as_u64().context("epoch")?;
        match last {
            Some((e, since)) if e == epoch && up >= targets => {
                if since.elapsed() >= quiet {
                    return Ok(epoch);
                }
            }
            _ => last = Some((epoch, std::time::Instant::now())),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// With R=1: waits until `want` is placed and the placement has settled (see
/// [`wait_settled`]), then returns the epoch and each target's owners.
fn settled_owners(
    c: &Cluster,
    want: &BTreeSet<String>,
) -> Result<(u64, BTreeMap<String, BTreeSet<String>>)> {
    wait_placed(c, want, 1, Duration::from_secs(90))?;
    let epoch = wait_settled(
        c,
        want.len(),
        Duration::from_secs(3),
        Duration::from_secs(60),
    )?;
    Ok((epoch, owner_of(&worker_targets(c)?)))
}

/// For 6 s (three heartbeat timeouts of the tests' coordinators), every look finds each
/// target on the workers of `owners`, and `also` holds.
fn hold_owners(
    c: &Cluster,
    owners: &BTreeMap<String, BTreeSet<String>>,
    when: &str,
    mut also: impl FnMut() -> Result<()>,
) -> Result<()> {
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(6) {
        let now = owner_of(&worker_targets(c)?);
        let moved: Vec<_> = owners
            .iter()
            .filter(|(i, o)| now.get(*i) != Some(*o))
            .collect();
        ensure!(
            moved.is_empty(),
            "targets moved {when}: {moved:?} now {now:?}"
        );
        also()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
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
    // The placement that follows from the first reported series counts (weights) is the
    // one the join starts from: a move caused by those weights is not the join's.
    let (_, before) = settled_owners(&c, &want)?;
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
    let (epoch0, owners) = settled_owners(&c, &want)?;
    let leader = eventually("a leader", Duration::from_secs(30), || Ok(c.leader()))?;
    let scrapes0: Vec<u64> = exps.iter().map(Exporter::requests).collect();
    c.coordinators[leader].kill()?;
    let new_leader = eventually("a new leader", Duration::from_secs(5), || {
        Ok(c.leader().filter(|l| *l != leader))
    })?;
    eprintln!("leader c{} killed, c{} leads", leader + 1, new_leader + 1);
    // Watch the assignment through three heartbeat timeouts of the new leader.
    hold_owners(&c, &owners, "after the failover", || {
        let epoch = c.cluster_state()?["epoch"].as_u64().context("epoch")?;
        ensure!(epoch >= epoch0, "epoch went back from {epoch0} to {epoch}");
        Ok(())
    })?;
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

/// The leader as the reachable majority sees it: the leader that the coordinators other than
/// `except` report.
fn leader_seen_by_others(c: &Cluster, except: usize) -> Option<u64> {
    let mut seen = BTreeSet::new();
    for (i, n) in c.coordinators.iter().enumerate() {
        if i == except || !n.running() {
            continue;
        }
        let v = n.get_json("/api/v1/cluster").ok()?;
        let l = v["data"]["replicas"]
            .as_array()?
            .iter()
            .find(|r| r["leader"] == true)?["id"]
            .as_u64()?;
        seen.insert(l);
    }
    (seen.len() == 1).then(|| seen.into_iter().next()).flatten()
}

#[test]
fn partitioned_leader_is_replaced_and_nothing_moves() -> Result<()> {
    let exps = exporters(20)?;
    let want = instances(&exps);
    let c = ClusterBuilder::new(&config(&exps, "1s"))
        .coordinators(3)
        .workers(2)
        .start()?;
    let (_, owners) = settled_owners(&c, &want)?;
    let leader = eventually("a leader", Duration::from_secs(30), || Ok(c.leader()))?;
    let old_id = leader as u64 + 1;
    let name = c.coordinators[leader].name.clone();
    c.partition(&name, true);
    let new_id = eventually(
        "the majority elects another leader",
        Duration::from_secs(15),
        || Ok(leader_seen_by_others(&c, leader).filter(|l| *l != old_id)),
    )?;
    eprintln!("c{old_id} partitioned, c{new_id} leads the majority");
    // Workers reach the majority through their other links; nothing moves meanwhile.
    hold_owners(&c, &owners, "under the partition", || Ok(()))?;
    c.partition(&name, false);
    // Healed, the old leader follows the new term's leader.
    eventually(
        "all three agree on the leader",
        Duration::from_secs(15),
        || {
            let all = leader_seen_by_others(&c, usize::MAX);
            Ok(all.filter(|l| *l == new_id))
        },
    )?;
    Ok(())
}

#[test]
fn partitioned_worker_keeps_scraping_and_its_targets_are_placed_elsewhere() -> Result<()> {
    let exps = exporters(20)?;
    let want = instances(&exps);
    let c = ClusterBuilder::new(&config(&exps, "1s"))
        .workers(2)
        .start()?;
    let per = wait_placed(&c, &want, 1, Duration::from_secs(90))?;
    let w1_targets = per["w1"].clone();
    let scrapes_of = |n: &Node| -> Result<BTreeMap<String, String>> {
        let v = n.get_json("/api/v1/targets?state=active")?;
        Ok(v["data"]["activeTargets"]
            .as_array()
            .context("activeTargets")?
            .iter()
            .filter_map(|t| {
                Some((
                    t["labels"]["instance"].as_str()?.to_owned(),
                    t["lastScrape"].as_str()?.to_owned(),
                ))
            })
            .collect())
    };
    c.partition("w1", true);
    // The coordinator no longer hears w1: its targets go to w2.
    eventually("w2 scrapes every target", Duration::from_secs(30), || {
        let on_w2 = worker_targets(&c)?.get("w2").cloned().unwrap_or_default();
        Ok((on_w2 == want).then_some(()))
    })?;
    // w1 keeps scraping its last assignment meanwhile.
    let before = scrapes_of(&c.workers[0])?;
    eventually(
        "w1 scrapes on while partitioned",
        Duration::from_secs(30),
        || {
            let now = scrapes_of(&c.workers[0])?;
            let advanced = w1_targets
                .iter()
                .all(|i| now.get(i).is_some_and(|t| Some(t) != before.get(i)));
            Ok(advanced.then_some(()))
        },
    )?;
    c.partition("w1", false);
    eventually(
        "w1 rejoins and placement settles",
        Duration::from_secs(60),
        || Ok(wait_placed(&c, &want, 1, Duration::from_secs(5)).ok()),
    )?;
    Ok(())
}

/// With `--grpc.tls-*` on every process (mutual TLS: one CA signs every component), Raft,
/// worker registration and assignment, the querier's fan-out and `trawl query` all run over
/// TLS, and a client without the CA and a certificate is refused.
#[test]
fn mutual_tls_cluster_places_scrapes_and_answers() -> Result<()> {
    let pki_dir = tempfile::tempdir()?;
    let pki = trawl_proto::tls::test_certs::TestPki::generate(pki_dir.path())
        .map_err(|e| anyhow::anyhow!("test pki: {e}"))?;
    let tls_flags = [
        format!("--grpc.tls-cert-file={}", pki.cert.display()),
        format!("--grpc.tls-key-file={}", pki.key.display()),
        format!("--grpc.tls-ca-file={}", pki.ca.display()),
    ];
    let tls_refs: Vec<&str> = tls_flags.iter().map(String::as_str).collect();
    let exps = exporters(6)?;
    let want = instances(&exps);
    let c = ClusterBuilder::new(&config(&exps, "1s"))
        .coordinators(3)
        .workers(2)
        .all_args(&tls_refs)
        .start()?;
    let per = wait_placed(&c, &want, 1, Duration::from_secs(90))?;
    ensure!(per.len() == 2, "both workers scrape: {per:?}");
    let leader = eventually("a leader", Duration::from_secs(30), || Ok(c.leader()))?;
    ensure!(c.cluster_state()?["term"].as_u64().unwrap_or(0) >= 1);

    // The querier reaches both workers' Store over TLS: a complete answer, no warning.
    let q = &c.queriers[0];
    eventually(
        "the querier counts every target up",
        Duration::from_secs(30),
        || {
            let v = query(q, "count(up == 1)")?;
            Ok(
                (scalar_of(&v).ok() == Some(want.len() as f64) && warnings(&v).is_empty())
                    .then_some(()),
            )
        },
    )?;

    // The coordinator's targets page carries the health its workers report (fetched from
    // their web pages), whichever replica answers.
    eventually(
        "the coordinator shows every target up",
        Duration::from_secs(30),
        || {
            let v = c.coordinators[leader].get_json("/api/v1/targets?state=active")?;
            let active = v["data"]["activeTargets"].as_array().context("active")?;
            let up = active.iter().filter(|t| t["health"] == "up").count();
            Ok((active.len() == want.len() && up == want.len()).then_some(()))
        },
    )?;

    // `trawl query` with the same flags is served; without them it cannot talk to the port.
    let bin = trawl_tests::process::trawl_bin()?;
    let addr = format!("--addr={}", q.grpc);
    let with_tls = std::process::Command::new(&bin)
        .args(["query", &addr, "-o", "json", "count(up == 1)"])
        .args(&tls_flags)
        .output()?;
    let out = String::from_utf8_lossy(&with_tls.stdout);
    ensure!(
        with_tls.status.success(),
        "trawl query over TLS failed: {out}{}",
        String::from_utf8_lossy(&with_tls.stderr)
    );
    let v: Value = serde_json::from_str(&out).with_context(|| format!("json: {out}"))?;
    ensure!(
        scalar_of(&v).ok() == Some(want.len() as f64),
        "trawl query over TLS answered {v}"
    );
    let plain = std::process::Command::new(&bin)
        .args(["query", &addr, "--timeout=5s", "up"])
        .output()?;
    ensure!(
        !plain.status.success(),
        "a plaintext client was served by a TLS port: {}",
        String::from_utf8_lossy(&plain.stdout)
    );
    Ok(())
}
