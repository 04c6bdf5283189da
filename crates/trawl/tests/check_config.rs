//! `trawl check config` run as a real process: exit codes, the one-line summary, and
//! `FILE:LINE: message` errors with real line numbers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn trawl(args: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trawl"));
    cmd.args(["check", "config"])
        .args(args)
        .env("TRAWL_LOG", "off");
    cmd.output().expect("run trawl")
}

fn repo_root() -> PathBuf {
    // Read at run time: a shared target directory can hold a binary built in another clone.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../..")
}

fn shared() -> PathBuf {
    std::env::var_os("TRAWL_SHARED").map_or_else(|| repo_root().join("../shared"), PathBuf::from)
}

/// A scratch directory unique to this test process and name.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trawl-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn valid_files_exit_zero_with_one_summary_line_each() {
    let ex = repo_root().join("deploy/examples");
    let files = [
        ex.join("standalone.yml"),
        ex.join("kubernetes-cluster.yml"),
        ex.join("nginx-exporter-on-worker1.yml"),
    ];
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let o = trawl(&refs);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("standalone.yml: OK: 2 scrape jobs, 2 static targets, 0 rule files found (0 rule_files patterns)"), "{}", lines[0]);
    assert!(lines[1].contains("kubernetes-cluster.yml: OK: 6 scrape jobs, 1 static target, 0 rule files found (1 rule_files pattern)"), "{}", lines[1]);
    assert!(
        lines[2].contains("nginx-exporter-on-worker1.yml: OK: 1 scrape job, 0 static targets"),
        "{}",
        lines[2]
    );
}

#[test]
fn counts_rule_files_found_by_glob_relative_to_the_config() {
    let d = scratch("rules");
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/a.yml"), "groups: []\n").unwrap();
    std::fs::write(d.join("rules/b.yml"), "groups: []\n").unwrap();
    std::fs::write(d.join("rules/c.txt"), "").unwrap();
    let cfg = d.join("prometheus.yml");
    std::fs::write(
        &cfg,
        "rule_files:\n  - rules/*.yml\n  - missing.yml\nscrape_configs:\n  - job_name: x\n",
    )
    .unwrap();
    let o = trawl(&[&cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "OK: 1 scrape job, 0 static targets, 2 rule files found (2 rule_files patterns)"
        ),
        "{}",
        stdout(&o)
    );
}

/// Each case: file text, expected line, expected message fragment.
#[test]
fn invalid_files_exit_one_with_file_line_and_field() {
    let d = scratch("bad");
    let cases: [(&str, &str, usize, &str); 5] = [
        (
            "unknown_field.yml",
            "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: a\n    scrape_intervall: 10s\n",
            5,
            "scrape_configs[0]: field scrape_intervall not found",
        ),
        (
            "timeout.yml",
            "scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_interval: 5s\n\n    scrape_timeout: 6s\n",
            6,
            "scrape timeout greater than scrape interval for scrape config with job name \"b\"",
        ),
        (
            "ec2.yml",
            "scrape_configs:\n  - job_name: cloud\n    # comment\n    ec2_sd_configs:\n      - region: us-east-1\n",
            4,
            "ec2_sd_configs is not supported by trawl yet (job \"cloud\", line 4)",
        ),
        (
            "relabel.yml",
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: keep\n        regex: ok\n      - action: hashmod\n        source_labels: [x]\n        target_label: y\n",
            6,
            "relabel configuration for hashmod requires non-zero modulus",
        ),
        (
            "duration.yml",
            "global:\n  scrape_interval: 15\n",
            2,
            "global.scrape_interval: not a valid duration string: \"15\"",
        ),
    ];
    for (name, text, line, msg) in cases {
        let f = d.join(name);
        std::fs::write(&f, text).unwrap();
        let o = trawl(&[&f]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = stderr(&o);
        let want_prefix = format!("{}:{line}: ", f.display());
        assert!(
            err.starts_with(&want_prefix),
            "{name}: {err:?} should start with {want_prefix:?}"
        );
        assert!(err.contains(msg), "{name}: {err:?} should contain {msg:?}");
        assert!(
            stdout(&o).is_empty(),
            "{name}: no summary for an invalid file"
        );
    }
}

#[test]
fn one_bad_file_fails_the_run_but_the_others_are_reported() {
    let d = scratch("mixed");
    let bad = d.join("bad.yml");
    std::fs::write(&bad, "scrape_configs:\n  - job_name:\n").unwrap();
    let good = repo_root().join("deploy/examples/standalone.yml");
    let o = trawl(&[&good, &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("standalone.yml: OK"));
    assert!(
        stderr(&o).starts_with(&format!(
            "{}:2: scrape_configs[0].job_name: job_name is empty",
            bad.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_file_is_an_error() {
    let o = trawl(&[Path::new("/nonexistent/prometheus.yml")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("/nonexistent/prometheus.yml: "));
}

/// `promtool check config` expectations from `bad-configs.yaml`: static targets are
/// relabeled and must end with a valid address.
#[test]
fn promtool_relabeled_static_targets() {
    let dir = shared().join("conformance/config/promtool-testdata");
    for good in [
        "url_in_scrape_targetgroup_with_relabel_config.good.yml",
        "url_in_alert_targetgroup_with_relabel_config.good.yml",
    ] {
        let o = trawl(&[&dir.join(good)]);
        assert!(o.status.success(), "{good}: {}", stderr(&o));
    }
    for (bad, want) in [
        (
            "url_in_scrape_targetgroup_with_relabel_config.bad.yml",
            "instance 0 in group 0: \"http://bad\" is not a valid hostname",
        ),
        (
            "url_in_alert_targetgroup_with_relabel_config.bad.yml",
            "\"http://bad\" is not a valid hostname",
        ),
    ] {
        let f = dir.join(bad);
        let o = trawl(&[&f]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        let err = stderr(&o);
        let (prefix, msg) = err.trim_end().split_at(f.display().to_string().len());
        assert_eq!(prefix, f.display().to_string());
        let msg = msg.strip_prefix(':').unwrap();
        let (line, text) = msg.split_once(": ").unwrap();
        assert_eq!(line, "7", "{bad}: the static_configs entry");
        assert_eq!(text, want, "{bad}");
    }
}
