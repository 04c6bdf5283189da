//! Config conformance against Prometheus's own test data in
//! `shared/conformance/config/` (read in place, never copied), plus the real-world
//! example configs shipped in `deploy/examples/` and `docs/`.
//!
//! Run with `--nocapture` to see the counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use trawl_config::{ConfigError, LoadOptions, load_file, load_file_with};
use trawl_tests::{conformance, repo_root, shared_dir};

#[derive(Debug, Deserialize)]
struct Expectations {
    cases: Vec<Case>,
    other_expectations: Vec<Other>,
    promtool_check_sd_file: Vec<SdFileCase>,
}

#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    error_contains: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Other {
    file: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    error_contains: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SdFileCase {
    file: String,
    #[serde(default)]
    ok: Option<bool>,
}

fn expectations() -> Expectations {
    let text =
        std::fs::read_to_string(conformance("config/bad-configs.yaml")).expect("bad-configs.yaml");
    serde_norway::from_str(&text).expect("bad-configs.yaml parses")
}

fn testdata(name: &str) -> PathBuf {
    conformance("config/testdata").join(name)
}

/// Upstream messages for included files start with "parsing YAML file <path>: "; ours
/// put the file in the `FILE:LINE:` prefix instead, so compare what follows.
fn strip_go_prefix(s: &str) -> &str {
    match s.strip_prefix("parsing YAML file ") {
        Some(rest) => rest.split_once(": ").map_or(s, |(_, m)| m),
        None => s,
    }
}

fn yml_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && recursive {
            out.extend(yml_files(&p, true));
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn bad_configs_are_rejected() {
    let exp = expectations();
    let on_disk: Vec<PathBuf> = yml_files(&conformance("config/testdata"), true)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".bad.yml"))
        .collect();
    assert_eq!(on_disk.len(), 147, "the data set has 147 *.bad.yml files");
    assert_eq!(exp.cases.len(), 147, "bad-configs.yaml lists every one");

    let (mut rejected, mut unsupported, mut substring_ok, mut substring_total) = (0, 0, 0, 0);
    let mut located = 0;
    let mut mismatches = Vec::new();
    for case in &exp.cases {
        let path = testdata(&case.file);
        let err: ConfigError = if case.file == "static_config.bad.yml" {
            // A single target group, not a whole config.
            let src = std::fs::read_to_string(&path).unwrap();
            match trawl_config::parse_yaml::<trawl_config::file::StaticConfigFile>(&src, &path) {
                Ok(v) => panic!("{}: accepted as {v:?}", case.file),
                Err(e) => e,
            }
        } else {
            match load_file(&path) {
                Ok(_) => panic!(
                    "{}: accepted, expected an error containing {:?}",
                    case.file, case.error_contains
                ),
                Err(e) => e,
            }
        };
        rejected += 1;
        let line = err.line().expect("content errors carry a line");
        let n_lines = std::fs::read_to_string(err.file())
            .map(|s| s.lines().count())
            .unwrap_or(0);
        assert!(
            line >= 1 && line <= n_lines.max(1),
            "{}: line {line} out of range: {err}",
            case.file
        );
        if err.is_unsupported() {
            unsupported += 1;
        }
        if let Some(key) = located_key(&err) {
            let text = std::fs::read_to_string(err.file()).unwrap();
            let at = text.lines().nth(line - 1).unwrap_or("");
            assert!(
                at.contains(key.as_str()),
                "{}: line {line} ({at:?}) should hold {key:?}: {err}",
                case.file
            );
            located += 1;
        }
        if !case.error_contains.is_empty() {
            substring_total += 1;
            let text = err.to_string();
            if case
                .error_contains
                .iter()
                .all(|s| text.contains(strip_go_prefix(s)))
            {
                substring_ok += 1;
            } else if !err.is_unsupported() {
                mismatches.push(format!(
                    "{}: got {text:?}, want {:?}",
                    case.file, case.error_contains
                ));
            }
        }
    }
    println!("config bad files: {rejected}/147 rejected ({unsupported} as not supported by trawl)");
    println!(
        "config bad files: {substring_ok}/{substring_total} errors contain the upstream substring \
         ({} of the rest are 'not supported' SD mechanisms)",
        substring_total - substring_ok - mismatches.len()
    );
    println!(
        "config bad files: {located} errors name a key path whose key is on the reported line"
    );
    for m in &mismatches {
        println!("  wording differs: {m}");
    }
    assert_eq!(rejected, 147);
}

/// For a validation error `FILE:LINE: a.b[0].key: message`, the key the reported line
/// must hold: the last key of the path, or `-` when the path ends at a list item.
fn located_key(err: &ConfigError) -> Option<String> {
    let message = match err {
        ConfigError::Invalid { message, .. } => message,
        ConfigError::Unsupported { feature, .. } => return Some(feature.clone()),
        _ => return None,
    };
    let (path, _) = message.split_once(": ")?;
    if path.contains(' ') {
        return None;
    }
    if path.ends_with(']') {
        return Some("-".to_owned());
    }
    path.rsplit('.')
        .next()
        .map(|k| k.split('[').next().unwrap_or(k).to_owned())
}

fn is_prometheus_config(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(v) = serde_norway::from_str::<serde_norway::Value>(&text) else {
        return false;
    };
    let Some(map) = v.as_mapping() else {
        return false;
    };
    const KEYS: &[&str] = &[
        "global",
        "runtime",
        "alerting",
        "rule_files",
        "scrape_config_files",
        "scrape_configs",
        "storage",
        "tracing",
        "remote_write",
        "remote_read",
        "otlp",
    ];
    !map.is_empty()
        && map
            .keys()
            .all(|k| k.as_str().is_some_and(|k| KEYS.contains(&k)))
}

#[test]
fn good_configs_load_or_are_unsupported() {
    let mut files: Vec<PathBuf> = yml_files(&conformance("config/testdata"), true)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".good.yml"))
        .collect();
    assert_eq!(files.len(), 56, "the data set has 56 *.good.yml files");
    let examples: Vec<PathBuf> = yml_files(&conformance("config/examples"), false)
        .into_iter()
        .filter(|p| is_prometheus_config(p))
        .collect();
    let n_examples = examples.len();
    files.extend(examples);

    let (mut loaded, mut unsupported) = (0, 0);
    for path in &files {
        let agent = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("agent"));
        match load_file_with(
            path,
            LoadOptions {
                agent,
                ..Default::default()
            },
        ) {
            Ok(_) => loaded += 1,
            Err(e) if e.is_unsupported() => unsupported += 1,
            Err(e) => panic!("{} must load: {e}", path.display()),
        }
    }
    println!(
        "config good files: {} checked (56 *.good.yml + {n_examples} examples): {loaded} load, {unsupported} rejected only as not supported",
        files.len()
    );
    assert_eq!(loaded + unsupported, files.len());
}

#[test]
fn other_expectations() {
    let exp = expectations();
    let mut passed = 0;
    for o in &exp.other_expectations {
        let path = testdata(&o.file);
        let mut opts = LoadOptions {
            agent: o.mode.as_deref() == Some("agent"),
            ..Default::default()
        };
        if o.file == "external_labels.good.yml" {
            opts.env = Some(BTreeMap::from([(
                "TEST".to_owned(),
                "TestValue".to_owned(),
            )]));
        }
        let res = load_file_with(&path, opts);
        if o.ok == Some(true) {
            match res {
                Ok(cfg) => check_loaded(&o.file, &cfg),
                Err(e) if e.is_unsupported() => {
                    println!("  {}: not supported by trawl: {e}", o.file)
                }
                Err(e) => panic!("{} must load: {e}", o.file),
            }
        } else {
            let e = res
                .err()
                .unwrap_or_else(|| panic!("{} must be rejected", o.file));
            let text = e.to_string();
            for want in &o.error_contains {
                assert!(
                    text.contains(want.as_str()),
                    "{}: {text:?} lacks {want:?}",
                    o.file
                );
            }
        }
        passed += 1;
    }
    println!(
        "config other expectations: {passed}/{} pass",
        exp.other_expectations.len()
    );
}

fn check_loaded(file: &str, cfg: &trawl_config::Config) {
    use trawl_config::{EscapingScheme, NameValidationScheme};
    match file {
        "agent_mode.good.yml" => {
            assert_eq!(cfg.remote_write.len(), 1);
            assert_eq!(cfg.remote_write[0].url, "http://remote1/push");
        }
        "agent_mode.without_remote_writes.yml" => assert!(cfg.remote_write.is_empty()),
        "otlp_empty.yml" => assert_eq!(
            cfg.otlp.translation_strategy,
            "UnderscoreEscapingWithSuffixes"
        ),
        "external_labels.good.yml" => {
            let got = cfg.global.external_labels.to_map();
            let want: BTreeMap<String, String> = [
                ("bar", "foo"),
                ("baz", "fooTestValuebar"),
                ("foo", "TestValue"),
                ("qux", "foo${TEST}"),
                ("xyz", "foo$bar"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
            assert_eq!(got, want);
        }
        "tsdb_retention_percentage_float.good.yml" => {
            assert_eq!(cfg.storage.retention_percentage, Some(0.5))
        }
        "global_timeout.good.yml" => {
            assert_eq!(cfg.global.scrape_timeout.to_string(), "1h");
            // No hidden global state: a later load still gets the defaults.
            let other = load_file(testdata("scrape_config_default_validation_mode.yml")).unwrap();
            assert_eq!(other.global.scrape_interval.to_string(), "1m");
            assert_eq!(other.global.scrape_timeout.to_string(), "10s");
        }
        "scrape_config_default_validation_mode.yml" => {
            assert_eq!(
                cfg.scrape_configs[0].metric_name_validation_scheme,
                NameValidationScheme::Utf8
            );
            assert_eq!(
                cfg.scrape_configs[0].metric_name_escaping_scheme,
                EscapingScheme::AllowUtf8
            );
        }
        "scrape_config_global_validation_mode.yml" => {
            assert_eq!(
                cfg.scrape_configs[0].metric_name_validation_scheme,
                NameValidationScheme::Legacy
            );
            assert_eq!(
                cfg.scrape_configs[0].metric_name_escaping_scheme,
                EscapingScheme::Dots
            );
        }
        "scrape_config_local_validation_mode.yml" => {
            assert_eq!(
                cfg.scrape_configs[0].metric_name_validation_scheme,
                NameValidationScheme::Legacy
            );
            assert_eq!(
                cfg.scrape_configs[0].metric_name_escaping_scheme,
                EscapingScheme::Values
            );
        }
        "scrape_config_local_global_validation_mode.yml" => {
            assert_eq!(
                cfg.scrape_configs[0].metric_name_validation_scheme,
                NameValidationScheme::Utf8
            );
            assert_eq!(
                cfg.scrape_configs[0].metric_name_escaping_scheme,
                EscapingScheme::Dots
            );
        }
        "scrape_config_local_infer_escaping.yml" => {
            assert_eq!(
                cfg.scrape_configs[0].metric_name_validation_scheme,
                NameValidationScheme::Legacy
            );
            assert_eq!(
                cfg.scrape_configs[0].metric_name_escaping_scheme,
                EscapingScheme::Underscores
            );
        }
        _ => {}
    }
}

/// load → serialise the file form → load gives an identical configuration, for every
/// good file Trawl loads (`roundtrip.good.yml` itself uses SD mechanisms Trawl does not
/// implement).
#[test]
fn round_trip() {
    let files: Vec<PathBuf> = yml_files(&conformance("config/testdata"), true)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".good.yml"))
        .collect();
    let mut n = 0;
    for path in &files {
        let Ok(cfg) = load_file(path) else { continue };
        let yaml = trawl_config::to_yaml(&cfg.source).unwrap();
        let again =
            trawl_config::load_str(&yaml, path, LoadOptions::default()).unwrap_or_else(|e| {
                panic!(
                    "{}: reload of serialised form failed: {e}\n{yaml}",
                    path.display()
                )
            });
        assert_eq!(cfg, again, "{}", path.display());
        n += 1;
    }
    let rt = load_file(testdata("roundtrip.good.yml"));
    assert!(
        rt.as_ref().is_err_and(ConfigError::is_unsupported),
        "roundtrip.good.yml: {rt:?}"
    );
    println!("config round trip: {n} good files survive load -> serialise -> load");
    assert!(n >= 40);
}

#[test]
fn file_sd_target_files() {
    let exp = expectations();
    let mut n = 0;
    for c in &exp.promtool_check_sd_file {
        let path = conformance("config/promtool-testdata").join(&c.file);
        let Ok(src) = std::fs::read_to_string(&path) else {
            continue;
        };
        let res =
            trawl_config::parse_yaml::<Vec<trawl_config::file::StaticConfigFile>>(&src, &path);
        assert_eq!(res.is_ok(), c.ok == Some(true), "{}: {res:?}", c.file);
        n += 1;
    }
    println!("file_sd target files: {n} checked");
    assert_eq!(n, 4);
}

/// Every Prometheus config under `deploy/examples/` and `docs/` loads: these are the
/// files users copy.
#[test]
fn shipped_examples_load() {
    let root = repo_root();
    let mut files = yml_files(&root.join("deploy/examples"), true);
    files.extend(yml_files(&root.join("docs"), true));
    let configs: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| is_prometheus_config(p))
        .collect();
    for p in &configs {
        if let Err(e) = load_file(p) {
            panic!("{} must load: {e}", p.display());
        }
    }
    for name in [
        "kubernetes-cluster.yml",
        "nginx-exporter-on-worker1.yml",
        "standalone.yml",
    ] {
        assert!(
            configs.iter().any(|p| p.ends_with(name)),
            "deploy/examples/{name} missing"
        );
    }
    println!("shipped example configs: {} load", configs.len());
}

/// The originals in `shared/examples/` load too (the copies must not drift into
/// something only Trawl accepts).
#[test]
fn shared_real_world_examples_load() {
    let k8s = load_file(shared_dir().join("examples/kubernetes-cluster.yml"))
        .expect("kubernetes-cluster.yml");
    let names: Vec<&str> = k8s
        .scrape_configs
        .iter()
        .map(|j| j.job_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "kubernetes-apiservers",
            "kubernetes-nodes",
            "kubernetes-pods",
            "kube-state-metrics",
            "kubernetes-cadvisor",
            "kubernetes-service-endpoints"
        ]
    );
    let api = k8s.job("kubernetes-apiservers").unwrap();
    assert_eq!(api.scheme, "https");
    assert_eq!(api.scrape_interval.to_string(), "5s");
    assert_eq!(
        api.scrape_timeout.to_string(),
        "5s",
        "timeout capped at the 5s interval"
    );
    let auth = api
        .http
        .authorization
        .as_ref()
        .expect("bearer_token_file is Bearer authorization");
    assert_eq!(auth.kind, "Bearer");
    assert_eq!(
        auth.credentials_file.as_deref(),
        Some(Path::new(
            "/var/run/secrets/kubernetes.io/serviceaccount/token"
        ))
    );
    assert_eq!(
        api.http.tls.ca_file.as_deref(),
        Some(Path::new(
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        ))
    );
    assert_eq!(
        api.service_discovery.kubernetes[0].role,
        trawl_config::KubernetesRole::Endpoints
    );
    assert_eq!(k8s.job("kubernetes-pods").unwrap().relabel_configs.len(), 6);
    assert_eq!(
        k8s.alerting.alertmanagers[0]
            .service_discovery
            .static_target_count(),
        1
    );

    let nginx =
        load_file(shared_dir().join("examples/nginx-exporter-on-worker1.yml")).expect("nginx");
    let job = &nginx.scrape_configs[0];
    assert_eq!(job.job_name, "my-metrics");
    assert_eq!(job.relabel_configs.len(), 3);
    assert_eq!(
        job.service_discovery.kubernetes[0].role,
        trawl_config::KubernetesRole::Pod
    );
    assert_eq!(job.scrape_interval.to_string(), "1m");
    assert_eq!(job.scrape_timeout.to_string(), "10s");
    assert_eq!(job.metrics_path, "/metrics");
    assert!(
        job.honor_timestamps
            && job.http.follow_redirects
            && job.http.enable_http2
            && job.enable_compression
    );
}

/// Every file with one of `exts` under `dir`, recursively, sorted.
fn files_with_ext(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_with_ext(&p, exts));
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.contains(&x))
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The documents of a multi-document YAML stream, empty documents (`---` at the end) left out.
fn yaml_documents(text: &str, path: &Path) -> Vec<serde_norway::Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| {
            serde_norway::Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The contents of every fenced ```yaml / ```yml block of a Markdown text, with the line of
/// its first content line.
fn fenced_yaml_blocks(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        let t = line.trim_start();
        match open.as_mut() {
            None => {
                let info = t.strip_prefix("```").map(str::trim);
                if matches!(info, Some("yaml" | "yml")) {
                    open = Some((i + 2, String::new()));
                }
            }
            Some((_, body)) if t.starts_with("```") => {
                let body = std::mem::take(body);
                let (line, _) = open.take().unwrap_or_default();
                out.push((line, body));
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

#[test]
fn fenced_yaml_blocks_are_found() {
    let md = "text\n```yaml\na: 1\n```\n\n  ```yml\n  b: 2\n  ```\n```sh\nc\n```\n";
    let blocks = fenced_yaml_blocks(md);
    assert_eq!(
        blocks,
        vec![(3, "a: 1\n".to_owned()), (7, "  b: 2\n".to_owned())]
    );
}

/// Every Kubernetes manifest under `deploy/kubernetes/` is YAML with `apiVersion`, `kind` and
/// `metadata.name`, and the `prometheus.yml` of every ConfigMap there loads.
#[test]
fn kubernetes_manifests_parse_and_their_prometheus_configs_load() {
    let dir = repo_root().join("deploy/kubernetes");
    let files = files_with_ext(&dir, &["yml", "yaml"]);
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut kinds = BTreeMap::<String, usize>::new();
    let mut configs = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("manifest readable");
        let docs = yaml_documents(&text, path);
        assert!(!docs.is_empty(), "{}: no documents", path.display());
        for doc in &docs {
            let field = |k: &str| doc.get(k).and_then(serde_norway::Value::as_str);
            let kind = field("kind")
                .unwrap_or_else(|| panic!("{}: a document without kind", path.display()));
            assert!(
                field("apiVersion").is_some(),
                "{}: {kind} without apiVersion",
                path.display()
            );
            let name = doc
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(serde_norway::Value::as_str)
                .unwrap_or_else(|| panic!("{}: {kind} without metadata.name", path.display()));
            *kinds.entry(kind.to_owned()).or_default() += 1;
            if kind != "ConfigMap" {
                continue;
            }
            let Some(prom) = doc
                .get("data")
                .and_then(|d| d.get("prometheus.yml"))
                .and_then(serde_norway::Value::as_str)
            else {
                continue;
            };
            let at = path.with_file_name(format!("{name}/prometheus.yml"));
            let cfg = trawl_config::load_str(prom, &at, LoadOptions::default())
                .unwrap_or_else(|e| panic!("{} ({name}): prometheus.yml: {e}", path.display()));
            assert!(
                !cfg.scrape_configs.is_empty(),
                "{} ({name}): no scrape configs",
                path.display()
            );
            configs += 1;
        }
    }
    for kind in [
        "ConfigMap",
        "StatefulSet",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ] {
        assert!(
            kinds.contains_key(kind),
            "no {kind} in deploy/kubernetes: {kinds:?}"
        );
    }
    assert!(configs >= 1, "no ConfigMap with a prometheus.yml");
    println!("kubernetes manifests: {kinds:?}, {configs} prometheus.yml load");
}

/// Every fenced YAML block with a `scrape_configs:` key in `docs/*.md`, `README.md` and the
/// READMEs under `deploy/` loads: readers copy them.
#[test]
fn prometheus_configs_in_markdown_load() {
    let root = repo_root();
    let mut files = files_with_ext(&root.join("docs"), &["md"]);
    files.extend(files_with_ext(&root.join("deploy"), &["md"]));
    files.push(root.join("README.md"));
    let mut n = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("markdown readable");
        for (line, block) in fenced_yaml_blocks(&text) {
            let v: serde_norway::Value = serde_norway::from_str(&block)
                .unwrap_or_else(|e| panic!("{}:{line}: invalid YAML block: {e}", path.display()));
            if v.get("scrape_configs").is_none() {
                continue;
            }
            if let Err(e) = trawl_config::load_str(&block, path, LoadOptions::default()) {
                panic!("{}:{line}: config block must load: {e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 1, "no prometheus.yml block in the docs");
    println!("prometheus.yml blocks in markdown: {n} load");
}
