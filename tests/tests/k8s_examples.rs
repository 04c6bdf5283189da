//! The example configurations in `shared/examples/` against the fake Kubernetes API
//! server: discovery, then target relabeling, keep exactly the targets Prometheus
//! would. Expectations are derived by hand from `k8s-sd.md` and the relabel rules.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use trawl_config::{Config, ScrapeConfig};
use trawl_discovery::manager::providers_of;
use trawl_discovery::{DiscoveryManager, JobGroups, Populated, targets_from_group};
use trawl_fakekube::FakeKube;

const DEADLINE: Duration = Duration::from_secs(30);

type Map = BTreeMap<String, String>;

fn m(pairs: &[(&str, &str)]) -> Map {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(name: &str, k: &FakeKube) -> Config {
    let path = trawl_tests::shared_dir().join("examples").join(name);
    let mut cfg = trawl_config::load_file(&path).expect("example config loads");
    // The examples use the in-cluster account; point them at the fake server.
    for sc in &mut cfg.scrape_configs {
        for kc in &mut sc.service_discovery.kubernetes {
            kc.api_server = Some(k.url());
        }
    }
    cfg
}

fn pod(
    name: &str,
    ip: &str,
    node: &str,
    labels: Value,
    annotations: Value,
    ports: &[i64],
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": format!("p{p}"), "containerPort": p, "protocol": "TCP"}))
        .collect();
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "monitoring", "labels": labels, "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "img", "ports": ports}]},
        "status": {"podIP": ip, "phase": "Running"}
    })
}

/// Runs discovery for `jobs` until each has groups, then populates every target.
/// Returns per job the distinct kept label sets (Prometheus scrapes identical label
/// sets once) and the number of targets discovered.
async fn discover(cfg: &Config, jobs: &[&str]) -> BTreeMap<String, (BTreeSet<Map>, usize)> {
    let scs: Vec<&ScrapeConfig> = jobs
        .iter()
        .map(|j| {
            cfg.scrape_configs
                .iter()
                .find(|s| s.job_name == *j)
                .expect("job in the example")
        })
        .collect();
    let (tx, mut rx) = mpsc::channel::<JobGroups>(16);
    let mut mgr = DiscoveryManager::new(Duration::from_millis(20), tx);
    mgr.apply(
        scs.iter()
            .map(|sc| (sc.job_name.clone(), providers_of(sc)))
            .collect(),
    );
    let mut latest: JobGroups = BTreeMap::new();
    while !jobs
        .iter()
        .all(|j| latest.get(*j).is_some_and(|g| !g.is_empty()))
    {
        let u = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("discovery in time")
            .expect("manager running");
        latest.extend(u);
    }
    let mut out = BTreeMap::new();
    for sc in scs {
        let mut kept = BTreeSet::new();
        let mut n = 0;
        for g in &latest[&sc.job_name] {
            for r in targets_from_group(sc, g) {
                n += 1;
                if let Populated::Kept { labels, .. } = r.expect("valid target") {
                    kept.insert(labels.to_map());
                }
            }
        }
        out.insert(sc.job_name.clone(), (kept, n));
    }
    out
}

#[tokio::test]
async fn nginx_exporter_on_worker1() {
    let k = FakeKube::start().await.expect("fake server");
    let exporter = json!({"app": "nginx-exporter"});
    let apply = |v: Value| {
        k.apply(v).expect("apply");
    };
    // The one to keep: app=nginx-exporter on worker1; its 9113 and 19113 ports match
    // `(.*)9113`, 8080 does not.
    apply(pod(
        "exp-w1",
        "10.0.0.1",
        "worker1",
        exporter.clone(),
        json!({}),
        &[8080, 9113, 19113],
    ));
    // Same app on worker2: wrong node.
    apply(pod(
        "exp-w2",
        "10.0.0.2",
        "worker2",
        exporter.clone(),
        json!({}),
        &[9113, 19113],
    ));
    // worker1, right port, wrong or missing app label.
    apply(pod(
        "other-w1",
        "10.0.0.3",
        "worker1",
        json!({"app": "nginx"}),
        json!({}),
        &[9113],
    ));
    apply(pod(
        "bare-w1",
        "10.0.0.4",
        "worker1",
        json!({}),
        json!({}),
        &[9113],
    ));
    // worker1, right app, no port declared: the bare pod IP, no port number.
    apply(pod(
        "noport-w1",
        "10.0.0.5",
        "worker1",
        exporter.clone(),
        json!({}),
        &[],
    ));
    // worker1, right app, only other ports.
    apply(pod(
        "web-w1",
        "10.0.0.6",
        "worker1",
        exporter,
        json!({}),
        &[8080, 9114],
    ));

    let cfg = load("nginx-exporter-on-worker1.yml", &k);
    let got = discover(&cfg, &["my-metrics"]).await;
    let (kept, n) = &got["my-metrics"];
    assert_eq!(
        *n,
        3 + 2 + 1 + 1 + 1 + 2,
        "one target per declared port or port-less container"
    );
    let want: BTreeSet<Map> = ["10.0.0.1:9113", "10.0.0.1:19113"]
        .into_iter()
        .map(|a| {
            m(&[
                ("__address__", a),
                ("__metrics_path__", "/metrics"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "1m"),
                ("__scrape_timeout__", "10s"),
                ("instance", a),
                ("job", "my-metrics"),
            ])
        })
        .collect();
    assert_eq!(kept, &want);
    println!(
        "nginx-exporter-on-worker1: {n} discovered, {} kept",
        kept.len()
    );
}

#[tokio::test]
async fn kubernetes_cluster_annotation_jobs() {
    let k = FakeKube::start().await.expect("fake server");
    let apply = |v: Value| {
        k.apply(v).expect("apply");
    };
    let scrape = |port: Option<&str>, path: Option<&str>| {
        let mut a = json!({"prometheus.io/scrape": "true"});
        if let Some(p) = port {
            a["prometheus.io/port"] = json!(p);
        }
        if let Some(p) = path {
            a["prometheus.io/path"] = json!(p);
        }
        a
    };
    // kubernetes-pods
    apply(pod(
        "api-1",
        "10.0.0.1",
        "worker1",
        json!({"app": "api", "tier": "be"}),
        scrape(Some("9102"), Some("/stats")),
        &[8080, 9102],
    ));
    apply(pod(
        "plain-1",
        "10.0.0.2",
        "worker1",
        json!({"app": "plain"}),
        scrape(None, None),
        &[8080],
    ));
    apply(pod(
        "quiet-1",
        "10.0.0.3",
        "worker2",
        json!({"app": "quiet"}),
        json!({}),
        &[8080],
    ));
    apply(pod(
        "off-1",
        "10.0.0.4",
        "worker2",
        json!({"app": "off"}),
        json!({"prometheus.io/scrape": "false"}),
        &[8080],
    ));
    // kubernetes-service-endpoints
    let svc = |name: &str, ann: Value| {
        json!({
            "kind": "Service",
            "metadata": {"name": name, "namespace": "monitoring", "labels": {"svc": name}, "annotations": ann},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5", "ports": [{"name": "web", "port": 80, "protocol": "TCP"}]}
        })
    };
    let eps = |name: &str, addrs: Value, not_ready: Value, port: i64| {
        json!({
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": "monitoring"},
            "subsets": [{"addresses": addrs, "notReadyAddresses": not_ready, "ports": [{"name": "web", "port": port, "protocol": "TCP"}]}]
        })
    };
    let mut api_ann = scrape(Some("9443"), Some("/m"));
    api_ann["prometheus.io/scheme"] = json!("https");
    apply(svc("api", api_ann));
    apply(eps(
        "api",
        json!([{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": "api-1", "namespace": "monitoring"}}]),
        json!([{"ip": "10.0.0.9"}]),
        8080,
    ));
    apply(svc("plain", scrape(None, None)));
    apply(eps("plain", json!([{"ip": "10.0.0.7"}]), json!([]), 8080));
    apply(svc("db", json!({})));
    apply(eps("db", json!([{"ip": "10.0.0.8"}]), json!([]), 5432));
    apply(eps("orphan", json!([{"ip": "10.0.0.10"}]), json!([]), 80));

    let cfg = load("kubernetes-cluster.yml", &k);
    let got = discover(&cfg, &["kubernetes-pods", "kubernetes-service-endpoints"]).await;

    let (pods, n) = &got["kubernetes-pods"];
    assert_eq!(*n, 5);
    // api-1's two ports both become 10.0.0.1:9102 with identical labels: one target.
    let want_pods: BTreeSet<Map> = [
        m(&[
            ("__address__", "10.0.0.1:9102"),
            ("__metrics_path__", "/stats"),
            ("__scheme__", "http"),
            ("__scrape_interval__", "5s"),
            ("__scrape_timeout__", "5s"),
            ("app", "api"),
            ("tier", "be"),
            ("instance", "10.0.0.1:9102"),
            ("job", "kubernetes-pods"),
            ("kubernetes_namespace", "monitoring"),
            ("kubernetes_pod_name", "api-1"),
        ]),
        m(&[
            ("__address__", "10.0.0.2:8080"),
            ("__metrics_path__", "/metrics"),
            ("__scheme__", "http"),
            ("__scrape_interval__", "5s"),
            ("__scrape_timeout__", "5s"),
            ("app", "plain"),
            ("instance", "10.0.0.2:8080"),
            ("job", "kubernetes-pods"),
            ("kubernetes_namespace", "monitoring"),
            ("kubernetes_pod_name", "plain-1"),
        ]),
    ]
    .into();
    assert_eq!(pods, &want_pods);

    let (svcs, n) = &got["kubernetes-service-endpoints"];
    // api: ready + not-ready address, plus api-1's uncovered port 9102; plain: 1;
    // db: 1; orphan: 1.
    assert_eq!(*n, 6);
    let api = |addr: &str| {
        m(&[
            ("__address__", addr),
            ("__metrics_path__", "/m"),
            ("__scheme__", "https"),
            ("__scrape_interval__", "5s"),
            ("__scrape_timeout__", "5s"),
            ("svc", "api"),
            ("instance", addr),
            ("job", "kubernetes-service-endpoints"),
            ("kubernetes_namespace", "monitoring"),
            ("kubernetes_name", "api"),
        ])
    };
    let want_svcs: BTreeSet<Map> = [
        // 10.0.0.1:8080 and the uncovered 10.0.0.1:9102 both move to the annotated port.
        api("10.0.0.1:9443"),
        api("10.0.0.9:9443"),
        m(&[
            ("__address__", "10.0.0.7:8080"),
            ("__metrics_path__", "/metrics"),
            ("__scheme__", "http"),
            ("__scrape_interval__", "5s"),
            ("__scrape_timeout__", "5s"),
            ("svc", "plain"),
            ("instance", "10.0.0.7:8080"),
            ("job", "kubernetes-service-endpoints"),
            ("kubernetes_namespace", "monitoring"),
            ("kubernetes_name", "plain"),
        ]),
    ]
    .into();
    assert_eq!(svcs, &want_svcs);
    println!(
        "kubernetes-cluster: kubernetes-pods {} kept, kubernetes-service-endpoints {} kept",
        pods.len(),
        svcs.len()
    );
}
