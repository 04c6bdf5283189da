//! The querier's own counters and their text exposition for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every counter of the querier.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests sent to shards (one per shard per fan-out).
    pub shard_requests: Counter,
    /// Shard requests that failed or timed out.
    pub shard_failures: Counter,
    /// Answers given with a partial-response warning.
    pub partial_responses: Counter,
    /// Fan-outs failed for missing shards (partial response disabled, or nothing answered).
    pub failed_queries: Counter,
    /// Series held by more than one shard, merged and deduplicated.
    pub dedup_series: Counter,
    /// Samples dropped as replica copies.
    pub dedup_samples_dropped: Counter,
    /// Remote-write requests received.
    pub write_requests: Counter,
    /// Remote-write requests answered with an error status.
    pub write_failures: Counter,
    /// Samples forwarded to workers (each replica counted).
    pub write_samples: Counter,
}

impl Metrics {
    /// The counters in Prometheus's text format, with `extra` series (name, help, type,
    /// value) appended.
    pub fn render(&self, extra: &[(&str, &str, &str, f64)]) -> String {
        let counters: [(&str, &str, &Counter); 9] = [
            (
                "trawl_querier_shard_requests_total",
                "Requests sent to worker shards.",
                &self.shard_requests,
            ),
            (
                "trawl_querier_shard_failures_total",
                "Shard requests that failed or timed out.",
                &self.shard_failures,
            ),
            (
                "trawl_querier_partial_responses_total",
                "Answers returned with a partial-response warning.",
                &self.partial_responses,
            ),
            (
                "trawl_querier_failed_fanouts_total",
                "Fan-outs failed because shards were missing.",
                &self.failed_queries,
            ),
            (
                "trawl_querier_dedup_series_total",
                "Series merged from more than one shard.",
                &self.dedup_series,
            ),
            (
                "trawl_querier_dedup_samples_dropped_total",
                "Replica samples dropped by deduplication.",
                &self.dedup_samples_dropped,
            ),
            (
                "trawl_querier_remote_write_requests_total",
                "Remote-write requests received.",
                &self.write_requests,
            ),
            (
                "trawl_querier_remote_write_failures_total",
                "Remote-write requests answered with an error.",
                &self.write_failures,
            ),
            (
                "trawl_querier_remote_write_samples_total",
                "Samples forwarded to workers, each replica counted.",
                &self.write_samples,
            ),
        ];
        let mut out = String::new();
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        for (name, help, typ, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {typ}\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.shard_requests.add(3);
        m.partial_responses.inc();
        let text = m.render(&[("trawl_querier_workers", "Workers known.", "gauge", 2.0)]);
        assert!(
            text.contains("\ntrawl_querier_shard_requests_total 3\n"),
            "{text}"
        );
        assert!(text.contains("\ntrawl_querier_partial_responses_total 1\n"));
        assert!(text.contains("# TYPE trawl_querier_workers gauge\ntrawl_querier_workers 2\n"));
    }
}
