//! The worker's own `/metrics` in the Prometheus text format (0.0.4).
//!
//! Hand-written like standalone's: every figure already lives in an atomic or a snapshot
//! (follower status, scrape counters, storage metrics), so a registry would only keep a
//! second copy.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use trawl_storage::StorageMetrics;

use crate::follow::Follower;

/// Writes metric families in the text format.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

/// Metric family type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
}

impl Encoder {
    /// Starts a family: `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in val.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        if v.is_nan() {
            self.out.push_str("NaN");
        } else if v == f64::INFINITY {
            self.out.push_str("+Inf");
        } else if v == f64::NEG_INFINITY {
            self.out.push_str("-Inf");
        } else if v.fract() == 0.0 && v.abs() < 1e15 {
            let _ = write!(self.out, "{}", v as i64);
        } else {
            let _ = write!(self.out, "{v}");
        }
        self.out.push('\n');
        self
    }

    /// A family with one unlabeled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, v: f64) -> &mut Self {
        self.family(name, help, kind).sample(name, &[], v)
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// Renders the worker's metrics.
pub fn render(f: &Follower, storage: &StorageMetrics, disk_bytes: u64) -> String {
    let mut e = Encoder::default();
    e.family(
        "trawl_build_info",
        "A metric with a constant '1' value labeled by version from which trawl was built.",
        Kind::Gauge,
    )
    .sample(
        "trawl_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let s = f.status();
    e.single(
        "trawl_worker_assignment_epoch",
        "Epoch of the assignment the worker holds (0 before the first).",
        Kind::Gauge,
        load(&s.epoch),
    );
    e.single(
        "trawl_worker_coordinator_connected",
        "Whether the worker holds an open assignment stream to a coordinator.",
        Kind::Gauge,
        f64::from(u8::from(s.connected.load(Ordering::Relaxed))),
    );
    let roles = f.roles();
    e.family(
        "trawl_worker_targets",
        "Assigned targets by role.",
        Kind::Gauge,
    )
    .sample(
        "trawl_worker_targets",
        &[("role", "owner")],
        roles.owner as f64,
    )
    .sample(
        "trawl_worker_targets",
        &[("role", "incoming")],
        roles.incoming as f64,
    )
    .sample(
        "trawl_worker_targets",
        &[("role", "outgoing")],
        roles.outgoing as f64,
    );
    for (name, help, v) in [
        (
            "trawl_worker_assignments_applied_total",
            "Assignments applied (including one resumed from disk).",
            &s.applied,
        ),
        (
            "trawl_worker_assignments_ignored_total",
            "Assignments ignored because their epoch was not newer than the held one.",
            &s.ignored,
        ),
        (
            "trawl_worker_coordinator_session_errors_total",
            "Coordinator sessions that ended in an error (connect, RPC, stream end).",
            &s.session_errors,
        ),
        (
            "trawl_worker_heartbeats_total",
            "Heartbeats sent.",
            &s.heartbeats,
        ),
        (
            "trawl_worker_scrape_reports_total",
            "Incoming targets reported as scraped successfully.",
            &s.reported,
        ),
        (
            "trawl_worker_scrape_report_errors_total",
            "Failed ReportScrapes calls.",
            &s.report_errors,
        ),
        (
            "trawl_worker_assignment_persist_errors_total",
            "Failed writes of the assignment file.",
            &s.persist_errors,
        ),
    ] {
        e.single(name, help, Kind::Counter, load(v));
    }
    let c = f.counters();
    for (name, help, v) in [
        (
            "trawl_target_scrapes_total",
            "Scrapes attempted.",
            &c.scrapes,
        ),
        (
            "trawl_target_scrape_failures_total",
            "Scrapes that failed (up 0).",
            &c.scrape_failures,
        ),
        (
            "trawl_target_scrapes_exceeded_sample_limit_total",
            "Scrapes that hit the sample limit and were rejected.",
            &c.sample_limit_exceeded,
        ),
        (
            "trawl_target_scrapes_exceeded_body_size_limit_total",
            "Scrapes that hit the body size limit.",
            &c.body_size_limit_exceeded,
        ),
        (
            "trawl_target_scrape_timeouts_total",
            "Scrapes that ran into their scrape timeout.",
            &c.timeouts,
        ),
        (
            "trawl_target_samples_scraped_total",
            "Samples read from scrape bodies, before metric relabeling.",
            &c.samples_scraped,
        ),
        (
            "trawl_target_samples_appended_total",
            "Scraped samples appended after metric relabeling.",
            &c.samples_appended,
        ),
        (
            "trawl_target_stale_markers_total",
            "Staleness markers written.",
            &c.stale_markers,
        ),
        (
            "trawl_target_storage_queue_full_total",
            "Scrapes dropped because storage did not accept them in time.",
            &c.storage_queue_full,
        ),
        (
            "trawl_target_storage_errors_total",
            "Scrapes whose storage commit failed.",
            &c.storage_errors,
        ),
        (
            "trawl_target_loops_started_total",
            "Scrape loops started.",
            &c.loops_started,
        ),
        (
            "trawl_target_loops_stopped_total",
            "Scrape loops stopped.",
            &c.loops_stopped,
        ),
    ] {
        e.single(name, help, Kind::Counter, load(v));
    }
    let m = storage;
    e.single(
        "trawl_tsdb_head_series",
        "Series held in the head.",
        Kind::Gauge,
        m.head_series as f64,
    );
    e.single(
        "trawl_tsdb_head_chunks",
        "Chunks held in memory.",
        Kind::Gauge,
        m.head_chunks as f64,
    );
    e.single(
        "trawl_tsdb_head_bytes",
        "Approximate heap bytes of the head.",
        Kind::Gauge,
        m.head_bytes as f64,
    );
    e.single(
        "trawl_tsdb_head_samples_appended_total",
        "Samples stored.",
        Kind::Counter,
        m.appended_samples as f64,
    );
    e.family(
        "trawl_tsdb_samples_rejected_total",
        "Samples rejected by the append rules, by reason.",
        Kind::Counter,
    );
    for r in trawl_storage::RejectReason::ALL {
        e.sample(
            "trawl_tsdb_samples_rejected_total",
            &[("reason", r.as_str())],
            m.rejected(r) as f64,
        );
    }
    e.single(
        "trawl_tsdb_storage_bytes",
        "Bytes the storage occupies on disk.",
        Kind::Gauge,
        disk_bytes as f64,
    );
    e.single(
        "trawl_tsdb_compactions_total",
        "Compactions and head checkpoints run.",
        Kind::Counter,
        m.compactions as f64,
    );
    e.single(
        "trawl_tsdb_retention_runs_total",
        "Retention runs.",
        Kind::Counter,
        m.retention_runs as f64,
    );
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_families_labels_and_special_values() {
        let mut e = Encoder::default();
        e.family("a_total", "A help\nline.", Kind::Counter)
            .sample("a_total", &[("x", "q\"b\\n\n")], 3.0)
            .sample("a_total", &[], 0.5);
        e.single("b", "B.", Kind::Gauge, f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP a_total A help\\nline.\n# TYPE a_total counter\n\
             a_total{x=\"q\\\"b\\\\n\\n\"} 3\na_total 0.5\n\
             # HELP b B.\n# TYPE b gauge\nb NaN\n"
        );
    }
}
