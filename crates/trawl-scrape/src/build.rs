//! From discovered groups to scrape targets: target relabeling per job, dropped targets
//! kept for the targets API. Pure: config and groups in, targets out (standalone and the
//! coordinator share it).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Target;
use trawl_config::{Config, ScrapeConfig};
use trawl_discovery::{Populated, TargetGroup, targets_from_group};
use trawl_model::Labels;

/// The outcome of relabeling every discovered target of every job.
#[derive(Debug, Default)]
pub struct Built {
    /// Targets to scrape, in job order.
    pub active: Vec<Target>,
    /// Discovered labels of the targets `relabel_configs` dropped, per job, at most
    /// `keep_dropped_targets` per job when that is set.
    pub dropped: BTreeMap<String, Vec<Labels>>,
    /// Dropped targets per job, before the `keep_dropped_targets` cap.
    pub dropped_total: BTreeMap<String, u64>,
    /// Targets that could not be created (bad address, interval, ...), per job.
    pub failed: BTreeMap<String, u64>,
}

/// Relabels the latest groups of each job of `cfg`. Groups of jobs not in `cfg` are
/// ignored; errors are logged once per target and counted.
pub fn build(cfg: &Config, groups: &BTreeMap<String, Vec<TargetGroup>>) -> Built {
    let mut out = Built::default();
    for sc in &cfg.scrape_configs {
        let Some(gs) = groups.get(&sc.job_name) else {
            continue;
        };
        let sc = Arc::new(sc.clone());
        build_job(&sc, gs, &mut out);
    }
    out
}

fn build_job(sc: &Arc<ScrapeConfig>, groups: &[TargetGroup], out: &mut Built) {
    let job = &sc.job_name;
    let keep = sc.limits.keep_dropped_targets;
    for g in groups {
        for r in targets_from_group(sc, g) {
            match r {
                Ok(Populated::Kept { labels, discovered }) => {
                    match Target::new(labels, discovered, sc.clone()) {
                        Ok(t) => out.active.push(t),
                        Err(e) => {
                            tracing::warn!(job = %job, error = %e, "creating target failed");
                            *out.failed.entry(job.clone()).or_default() += 1;
                        }
                    }
                }
                Ok(Populated::Dropped { discovered }) => {
                    let n = out.dropped_total.entry(job.clone()).or_default();
                    *n += 1;
                    let kept = out.dropped.entry(job.clone()).or_default();
                    if keep == 0 || (kept.len() as u64) < keep {
                        kept.push(discovered);
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %job, error = %e, "creating target failed");
                    *out.failed.entry(job.clone()).or_default() += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cfg(src: &str) -> Config {
        trawl_config::load_str(src, Path::new("t.yml"), Default::default()).expect("config")
    }

    fn group(addrs: &[&str]) -> TargetGroup {
        TargetGroup {
            source: "0".into(),
            targets: addrs
                .iter()
                .map(|a| Labels::from_pairs([("__address__", *a)]))
                .collect(),
            labels: Labels::from_pairs([("env", "test")]),
        }
    }

    #[test]
    fn relabeling_splits_active_and_dropped_and_counts_errors() {
        let c = cfg("scrape_configs:
  - job_name: a
    keep_dropped_targets: 1
    relabel_configs:
      - source_labels: [__address__]
        regex: 'drop.*'
        action: drop
  - job_name: b
");
        let mut groups = BTreeMap::new();
        groups.insert(
            "a".to_string(),
            vec![group(&["h:1", "drop:1", "drop:2", "bad/addr"])],
        );
        groups.insert("b".to_string(), vec![group(&["h:2"])]);
        groups.insert("gone".to_string(), vec![group(&["h:3"])]);
        let b = build(&c, &groups);
        let urls: Vec<&str> = b.active.iter().map(|t| t.url()).collect();
        assert_eq!(urls, ["http://h:1/metrics", "http://h:2/metrics"]);
        assert_eq!(b.active[0].final_labels().get("env"), Some("test"));
        assert_eq!(b.active[0].final_labels().get("instance"), Some("h:1"));
        assert_eq!(b.dropped_total.get("a"), Some(&2));
        let kept = &b.dropped["a"];
        assert_eq!(kept.len(), 1, "keep_dropped_targets caps the list");
        assert_eq!(kept[0].get("__address__"), Some("drop:1"));
        assert_eq!(kept[0].get("job"), Some("a"));
        assert_eq!(b.failed.get("a"), Some(&1));
        assert!(!b.dropped.contains_key("b"));
    }
}
