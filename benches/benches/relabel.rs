//! Relabel throughput.
//!
//! - `targets/nginx_keep_100k`: the three `keep` rules of
//!   `shared/examples/nginx-exporter-on-worker1.yml` over 100k Kubernetes-pod-like targets
//!   (throughput in targets/s); `targets/nginx_keep_1k_cache_resident` is the same on 1k
//!   targets, to separate the engine's cost from memory latency.
//! - `samples/*`: `metric_relabel_configs`-style rules on 10-label series, per sample, both
//!   when they leave the series unchanged (the common case) and when they rewrite it.
//!
//! Run: `cargo bench -p trawl-benches --bench relabel`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trawl_benches::relabel_workload::{http_series, pod_targets};
use trawl_model::NameValidationScheme;
use trawl_relabel::{Action, RelabelConfig, RelabelConfigFile, Relabeler};

/// Same three rules as the example file, used when `shared/` is not beside the clone.
const EMBEDDED_RULES: &str = r#"
- source_labels: [__meta_kubernetes_pod_node_name]
  action: keep
  regex: worker1
- source_labels: [__meta_kubernetes_pod_label_app]
  action: keep
  regex: nginx-exporter
- source_labels: [__meta_kubernetes_pod_container_port_number]
  action: keep
  regex: '(.*)9113'
"#;

fn compile(files: &[RelabelConfigFile]) -> Vec<RelabelConfig> {
    files
        .iter()
        .map(|f| RelabelConfig::new(f, NameValidationScheme::Utf8).expect("valid rule"))
        .collect()
}

/// The `keep` rules of the example config's first job, or the embedded copy.
fn nginx_keep_rules() -> Vec<RelabelConfig> {
    let shared = std::env::var_os("TRAWL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| trawl_benches::manifest_dir().join("../../shared"));
    let path = shared.join("examples/nginx-exporter-on-worker1.yml");
    let from_file = std::fs::read_to_string(&path).ok().and_then(|text| {
        let doc: serde_norway::Value = serde_norway::from_str(&text).ok()?;
        let rules = doc
            .get("scrape_configs")?
            .get(0)?
            .get("relabel_configs")?
            .clone();
        serde_norway::from_value::<Vec<RelabelConfigFile>>(rules).ok()
    });
    let files = match from_file {
        Some(f) => {
            eprintln!("relabel bench: rules from {}", path.display());
            f
        }
        None => {
            eprintln!(
                "relabel bench: {} not found, using the embedded rules",
                path.display()
            );
            serde_norway::from_str(EMBEDDED_RULES).expect("embedded rules")
        }
    };
    let rules: Vec<_> = compile(&files)
        .into_iter()
        .filter(|r| r.action() == Action::Keep)
        .collect();
    assert_eq!(rules.len(), 3, "the example has three keep rules");
    rules
}

fn bench_targets(c: &mut Criterion) {
    let rules = nginx_keep_rules();
    let targets = pod_targets(100_000, 42);
    let mut r = Relabeler::new();
    let kept = targets
        .iter()
        .filter(|t| r.relabel(t, &rules).is_some())
        .count();
    eprintln!("relabel bench: {kept} of {} targets kept", targets.len());

    let mut g = c.benchmark_group("relabel/targets");
    g.throughput(Throughput::Elements(targets.len() as u64));
    g.sample_size(20);
    g.bench_function("nginx_keep_100k", |b| {
        b.iter(|| {
            let mut kept = 0usize;
            for t in &targets {
                if r.relabel(black_box(t), &rules).is_some() {
                    kept += 1;
                }
            }
            black_box(kept)
        })
    });
    // The same rules over 1k targets that stay in cache: the engine's own cost, without
    // the memory latency of walking 100k label sets.
    let hot = &targets[..1000];
    g.throughput(Throughput::Elements(hot.len() as u64));
    g.bench_function("nginx_keep_1k_cache_resident", |b| {
        b.iter(|| {
            let mut kept = 0usize;
            for t in hot {
                if r.relabel(black_box(t), &rules).is_some() {
                    kept += 1;
                }
            }
            black_box(kept)
        })
    });
    g.finish();
}

fn bench_samples(c: &mut Criterion) {
    let series = http_series(10_000, 7);
    let unchanged: Vec<RelabelConfigFile> = serde_norway::from_str(
        r#"
- source_labels: [__name__]
  regex: 'go_gc_.*|process_.*'
  action: drop
- regex: 'pod_template_hash|controller_revision_hash'
  action: labeldrop
- source_labels: [namespace]
  regex: '(.+)'
  target_label: namespace
"#,
    )
    .expect("rules");
    let rewriting: Vec<RelabelConfigFile> = serde_norway::from_str(
        r#"
- regex: 'handler'
  action: labeldrop
- source_labels: [pod]
  regex: '(.+)-[0-9a-f]{10}-[0-9a-f]{5}'
  target_label: workload
  replacement: '$1'
"#,
    )
    .expect("rules");
    let mut g = c.benchmark_group("relabel/samples");
    g.throughput(Throughput::Elements(series.len() as u64));
    for (name, files) in [
        ("unchanged_10_labels", unchanged),
        ("rewrite_10_labels", rewriting),
    ] {
        let rules = compile(&files);
        let mut r = Relabeler::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                for s in &series {
                    black_box(r.relabel(black_box(s), &rules));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_targets, bench_samples);
criterion_main!(benches);
