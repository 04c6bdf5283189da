//! Trawl's own metrics in the Prometheus text format (0.0.4).
//!
//! A small hand-written encoder: every value already lives in an atomic counter or a
//! snapshot taken at scrape time (storage metrics, scrape manager counters, target
//! counts, `/proc/self`), so a registry would only add a second copy of each number.

use std::fmt::Write as _;

/// Writes metric families in the text format.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

/// Metric family type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
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
        write_value(&mut self.out, v);
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

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Process figures from `/proc/self` (Linux); `None` elsewhere or when unreadable.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub open_fds: f64,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads `/proc/self/stat`, `/proc/self/fd` and `/proc/self/limits`.
pub fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime 15, starttime 22,
    // vsize 23, rss 24 (pages).
    let field = |n: usize| f.get(n - 3).and_then(|s| s.parse::<f64>().ok());
    let ticks = 100.0; // USER_HZ is 100 on every Linux ABI Trawl targets.
    let page = 4096.0;
    let cpu_seconds = (field(14)? + field(15)?) / ticks;
    let start_time_seconds = field(22).and_then(|st| {
        let uptime_boot = std::fs::read_to_string("/proc/stat").ok()?;
        let btime = uptime_boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<f64>()
            .ok()?;
        Some(btime + st / ticks)
    });
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as f64)
        .unwrap_or(0.0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: field(24)? * page,
        virtual_bytes: field(23)?,
        open_fds,
        max_fds,
        start_time_seconds,
    })
}

/// Writes the standard `process_*` families.
pub fn write_process(e: &mut Encoder) {
    let Some(p) = process_stats() else { return };
    e.single(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        Kind::Counter,
        p.cpu_seconds,
    );
    e.single(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        Kind::Gauge,
        p.resident_bytes,
    );
    e.single(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        Kind::Gauge,
        p.virtual_bytes,
    );
    e.single(
        "process_open_fds",
        "Number of open file descriptors.",
        Kind::Gauge,
        p.open_fds,
    );
    if let Some(m) = p.max_fds {
        e.single(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            Kind::Gauge,
            m,
        );
    }
    if let Some(s) = p.start_time_seconds {
        e.single(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Kind::Gauge,
            s,
        );
    }
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
        e.single("c", "C.", Kind::Gauge, f64::NEG_INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP a_total A help\\nline.\n# TYPE a_total counter\n\
             a_total{x=\"q\\\"b\\\\n\\n\"} 3\na_total 0.5\n\
             # HELP b B.\n# TYPE b gauge\nb NaN\n\
             # HELP c C.\n# TYPE c gauge\nc -Inf\n"
        );
    }

    #[test]
    fn process_stats_are_plausible_on_linux() {
        if let Some(p) = process_stats() {
            assert!(p.resident_bytes > 0.0);
            assert!(p.open_fds >= 1.0);
            assert!(p.cpu_seconds >= 0.0);
        }
    }
}
