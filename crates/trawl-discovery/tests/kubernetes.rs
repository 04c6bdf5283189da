//! Kubernetes SD end to end against the fake API server on loopback: every role,
//! events, broken watches, 410 Gone, bookmarks, attach_metadata, namespaces, selectors,
//! shared watches, auth and kubeconfig files. Tests wait on facts (updates received,
//! requests seen by the server), never on time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use trawl_config::{
    Authorization, HttpClientConfig, KubernetesAttachMetadata, KubernetesRole, KubernetesSdConfig,
    KubernetesSelector,
};
use trawl_discovery::{ProviderConfig, TargetGroup};
use trawl_fakekube::{FakeKube, Kind};

const DEADLINE: Duration = Duration::from_secs(20);

fn sd(k: &FakeKube, role: KubernetesRole) -> KubernetesSdConfig {
    KubernetesSdConfig {
        role,
        api_server: Some(k.url()),
        kubeconfig_file: None,
        own_namespace: false,
        namespaces: Vec::new(),
        selectors: Vec::new(),
        attach_metadata: KubernetesAttachMetadata::default(),
        http: HttpClientConfig::default(),
    }
}

/// A running provider and the state its updates add up to.
struct Run {
    rx: mpsc::Receiver<Vec<TargetGroup>>,
    state: BTreeMap<String, TargetGroup>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Run {
    fn start(cfg: KubernetesSdConfig) -> Run {
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(ProviderConfig::Kubernetes(cfg).run(tx));
        Run {
            rx,
            state: BTreeMap::new(),
            task,
        }
    }

    /// The next update, applied to the state.
    async fn next(&mut self) -> Vec<TargetGroup> {
        let u = tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .expect("an update in time")
            .expect("provider running");
        for g in &u {
            if g.targets.is_empty() {
                self.state.remove(&g.source);
            } else {
                self.state.insert(g.source.clone(), g.clone());
            }
        }
        u
    }

    /// Applies updates until `pred` holds for the state; returns every update seen.
    async fn until(
        &mut self,
        pred: impl Fn(&BTreeMap<String, TargetGroup>) -> bool,
    ) -> Vec<Vec<TargetGroup>> {
        let mut seen = Vec::new();
        while !pred(&self.state) {
            seen.push(self.next().await);
        }
        seen
    }

    fn addresses(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .state
            .values()
            .flat_map(|g| {
                g.targets
                    .iter()
                    .map(|t| t.get_or_empty("__address__").to_owned())
            })
            .collect();
        v.sort();
        v
    }

    fn sources(&self) -> Vec<String> {
        self.state.keys().cloned().collect()
    }
}

async fn wait_server(
    k: &FakeKube,
    what: &str,
    pred: impl FnMut(&trawl_fakekube::Stats) -> bool,
) -> trawl_fakekube::Stats {
    tokio::time::timeout(DEADLINE, k.wait_until(pred))
        .await
        .unwrap_or_else(|_| panic!("server never saw {what}"))
}

fn pod(ns: &str, name: &str, ip: &str, node: &str, labels: Value, port: i64) -> Value {
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [
            {"name": "c", "image": "img", "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]}
        ]},
        "status": {"podIP": ip, "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn node(name: &str, ip: &str, labels: Value) -> Value {
    json!({
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
    })
}

/// Deleted sources in a run of updates (empty groups).
fn deletions(updates: &[Vec<TargetGroup>]) -> Vec<String> {
    updates
        .iter()
        .flatten()
        .filter(|g| g.targets.is_empty())
        .map(|g| g.source.clone())
        .collect()
}

fn populate(k: &FakeKube) {
    let ok = |r: Result<u64, trawl_fakekube::ScriptError>| r.expect("apply");
    ok(k.apply(node("worker1", "10.1.0.1", json!({"zone": "a"}))));
    ok(k.apply(node("worker2", "10.1.0.2", json!({"zone": "b"}))));
    ok(k.apply(
        json!({"kind": "Namespace", "metadata": {"name": "prod", "labels": {"team": "blue"}}}),
    ));
    ok(k.apply(pod(
        "prod",
        "web-1",
        "10.0.0.1",
        "worker1",
        json!({"app": "web"}),
        8080,
    )));
    ok(k.apply(pod(
        "prod",
        "web-2",
        "10.0.0.2",
        "worker2",
        json!({"app": "web"}),
        8080,
    )));
    ok(k.apply(pod(
        "dev",
        "db-1",
        "10.0.1.1",
        "worker1",
        json!({"app": "db"}),
        5432,
    )));
    ok(k.apply(json!({
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    })));
    ok(k.apply(json!({
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "prod"},
        "subsets": [{
            "addresses": [
                {"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "prod"}},
                {"ip": "10.0.0.2", "targetRef": {"kind": "Pod", "name": "web-2", "namespace": "prod"}}
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }]
    })));
    ok(k.apply(json!({
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "namespace": "prod", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "prod"}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": false}}
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })));
    ok(k.apply(json!({
        "kind": "Ingress",
        "metadata": {"name": "site", "namespace": "prod"},
        "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {}}]}}]}
    })));
}

#[tokio::test]
async fn every_role_lists_its_targets() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let cases: [(KubernetesRole, &[&str], &[&str]); 6] = [
        (
            KubernetesRole::Pod,
            &["pod/dev/db-1", "pod/prod/web-1", "pod/prod/web-2"],
            &["10.0.0.1:8080", "10.0.0.2:8080", "10.0.1.1:5432"],
        ),
        (
            KubernetesRole::Service,
            &["svc/prod/web"],
            &["web.prod.svc:80"],
        ),
        (
            KubernetesRole::Endpoints,
            &["endpoints/prod/web"],
            &["10.0.0.1:8080", "10.0.0.2:8080"],
        ),
        (
            KubernetesRole::EndpointSlice,
            &["endpointslice/prod/web-abc"],
            &["10.0.0.1:8080", "10.0.0.2:8080"],
        ),
        (
            KubernetesRole::Node,
            &["node/worker1", "node/worker2"],
            &["10.1.0.1:10250", "10.1.0.2:10250"],
        ),
        (
            KubernetesRole::Ingress,
            &["ingress/prod/site"],
            &["web.example.com"],
        ),
    ];
    for (role, sources, addrs) in cases {
        let mut r = Run::start(sd(&k, role));
        let first = r.next().await;
        assert_eq!(
            first.len(),
            sources.len(),
            "{role:?}: the first update is the full set"
        );
        assert_eq!(r.sources(), sources, "{role:?}");
        assert_eq!(r.addresses(), addrs, "{role:?}");
    }
    // Endpoints carry the pod and the service behind them.
    let mut r = Run::start(sd(&k, KubernetesRole::Endpoints));
    r.next().await;
    let g = &r.state["endpoints/prod/web"];
    assert_eq!(g.labels.get("__meta_kubernetes_service_name"), Some("web"));
    assert_eq!(
        g.targets[0].get("__meta_kubernetes_pod_name"),
        Some("web-1")
    );
    assert_eq!(
        g.targets[0].get("__meta_kubernetes_pod_container_port_name"),
        Some("metrics")
    );
}

#[tokio::test]
async fn add_modify_delete_propagate() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut r = Run::start(sd(&k, KubernetesRole::Pod));
    r.next().await;
    k.apply(pod(
        "prod",
        "web-3",
        "10.0.0.3",
        "worker1",
        json!({"app": "web"}),
        8080,
    ))
    .expect("add");
    let u = r.next().await;
    assert_eq!(u.len(), 1, "only the new pod is sent");
    assert_eq!(u[0].source, "pod/prod/web-3");
    k.apply(pod(
        "prod",
        "web-3",
        "10.0.0.3",
        "worker1",
        json!({"app": "web", "v": "2"}),
        8080,
    ))
    .expect("modify");
    let u = r.next().await;
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].labels.get("__meta_kubernetes_pod_label_v"), Some("2"));
    k.delete(Kind::Pod, "prod", "web-3").expect("delete");
    let u = r.next().await;
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].source, "pod/prod/web-3");
    assert!(u[0].targets.is_empty(), "a deleted pod is an empty group");
    // A pod losing its IP empties its group too.
    k.apply(pod(
        "prod",
        "web-2",
        "",
        "worker2",
        json!({"app": "web"}),
        8080,
    ))
    .expect("evict");
    let u = r.next().await;
    assert!(u[0].targets.is_empty());
    assert_eq!(r.addresses(), ["10.0.0.1:8080", "10.0.1.1:5432"]);
}

#[tokio::test]
async fn endpoints_follow_their_pods_and_services() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut r = Run::start(sd(&k, KubernetesRole::EndpointSlice));
    r.next().await;
    let label = |s: &BTreeMap<String, TargetGroup>, name: &str| {
        s["endpointslice/prod/web-abc"].targets[0]
            .get(name)
            .map(str::to_owned)
    };
    assert_eq!(
        label(&r.state, "__meta_kubernetes_pod_label_app").as_deref(),
        Some("web")
    );
    k.apply(pod(
        "prod",
        "web-1",
        "10.0.0.1",
        "worker1",
        json!({"app": "web", "rev": "2"}),
        8080,
    ))
    .expect("pod relabel");
    r.until(|s| label(s, "__meta_kubernetes_pod_label_rev").as_deref() == Some("2"))
        .await;
    k.delete(Kind::Service, "prod", "web")
        .expect("service gone");
    let u = r
        .until(|s| {
            !s["endpointslice/prod/web-abc"]
                .labels
                .has("__meta_kubernetes_service_name")
        })
        .await;
    assert!(
        deletions(&u).is_empty(),
        "the slice stays, only its service labels go"
    );
}

#[tokio::test]
async fn broken_watch_resumes_without_relisting() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut r = Run::start(sd(&k, KubernetesRole::Pod));
    r.next().await;
    let before = r.addresses();
    wait_server(&k, "the pod watch", |s| s.open(Kind::Pod) == 1).await;
    k.close_watches();
    // Changes while the client is reconnecting are replayed from its version.
    k.apply(pod(
        "prod",
        "web-3",
        "10.0.0.3",
        "worker1",
        json!({"app": "web"}),
        8080,
    ))
    .expect("add");
    k.delete(Kind::Pod, "dev", "db-1").expect("delete");
    let updates = r
        .until(|s| s.contains_key("pod/prod/web-3") && !s.contains_key("pod/dev/db-1"))
        .await;
    assert_eq!(
        deletions(&updates),
        ["pod/dev/db-1"],
        "only the real deletion"
    );
    assert_eq!(
        r.addresses(),
        ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
    );
    assert_eq!(before.len(), 3);
    let s = k.stats();
    assert_eq!(s.count(Kind::Pod, false), 1, "resumed, not relisted");
    assert!(s.count(Kind::Pod, true) >= 2, "watched again");
    assert_eq!(s.gone_sent, 0);
}

#[tokio::test]
async fn gone_relists_without_spurious_deletions() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut r = Run::start(sd(&k, KubernetesRole::Pod));
    r.next().await;
    wait_server(&k, "the pod watch", |s| s.open(Kind::Pod) == 1).await;
    // History is gone; the client's version is now too old.
    k.delete(Kind::Pod, "dev", "db-1")
        .expect("delete during the outage");
    k.compact();
    k.close_watches();
    k.apply(pod(
        "prod",
        "web-3",
        "10.0.0.3",
        "worker1",
        json!({"app": "web"}),
        8080,
    ))
    .expect("add");
    let updates = r
        .until(|s| s.contains_key("pod/prod/web-3") && !s.contains_key("pod/dev/db-1"))
        .await;
    let s = wait_server(&k, "a relist", |s| s.count(Kind::Pod, false) >= 2).await;
    assert!(s.gone_sent >= 1, "the client got 410 Gone");
    assert_eq!(
        deletions(&updates),
        ["pod/dev/db-1"],
        "web-1/web-2 never vanished"
    );
    let sent: Vec<&str> = updates
        .iter()
        .flatten()
        .map(|g| g.source.as_str())
        .collect();
    assert!(
        !sent.contains(&"pod/prod/web-1"),
        "unchanged groups are not re-sent: {sent:?}"
    );
    assert_eq!(
        r.addresses(),
        ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
    );
    // And the new watch works.
    k.delete(Kind::Pod, "prod", "web-3").expect("delete");
    r.until(|s| !s.contains_key("pod/prod/web-3")).await;
}

#[tokio::test]
async fn bookmarks_move_the_resume_version() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut r = Run::start(sd(&k, KubernetesRole::Pod));
    r.next().await;
    wait_server(&k, "the pod watch", |s| s.open(Kind::Pod) == 1).await;
    let first = k
        .stats()
        .requests
        .iter()
        .rev()
        .find(|q| q.kind == Kind::Pod && q.watch)
        .cloned()
        .expect("watch request");
    assert_eq!(
        first.query.get("allowWatchBookmarks").map(String::as_str),
        Some("true")
    );
    // A change the pod watch does not see, then a bookmark past it.
    k.apply(node("worker3", "10.1.0.3", json!({})))
        .expect("node");
    let bm = k.bookmark();
    k.close_watches();
    let s = wait_server(&k, "a second pod watch", |s| s.count(Kind::Pod, true) >= 2).await;
    let again = s
        .requests
        .iter()
        .rev()
        .find(|q| q.kind == Kind::Pod && q.watch)
        .expect("watch");
    assert_eq!(again.query.get("resourceVersion"), Some(&bm.to_string()));
    assert_ne!(
        first.query.get("resourceVersion"),
        again.query.get("resourceVersion")
    );
    assert_eq!(s.count(Kind::Pod, false), 1);
}

#[tokio::test]
async fn attach_metadata_follows_nodes_and_namespaces() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut cfg = sd(&k, KubernetesRole::Pod);
    cfg.attach_metadata = KubernetesAttachMetadata {
        node: true,
        namespace: true,
        ..Default::default()
    };
    let mut r = Run::start(cfg);
    r.next().await;
    let g = &r.state["pod/prod/web-1"];
    assert_eq!(g.labels.get("__meta_kubernetes_node_name"), Some("worker1"));
    assert_eq!(g.labels.get("__meta_kubernetes_node_label_zone"), Some("a"));
    assert_eq!(
        g.labels.get("__meta_kubernetes_namespace_label_team"),
        Some("blue")
    );
    // dev has no Namespace object: no namespace labels, the pod is still a target.
    assert!(
        !r.state["pod/dev/db-1"]
            .labels
            .iter()
            .any(|l| l.name.starts_with("__meta_kubernetes_namespace_label"))
    );
    // A node change reaches the pods on it.
    k.apply(node("worker1", "10.1.0.1", json!({"zone": "c"})))
        .expect("relabel node");
    r.until(|s| {
        s["pod/prod/web-1"]
            .labels
            .get("__meta_kubernetes_node_label_zone")
            == Some("c")
    })
    .await;
    // Pods whose node disappears stop being targets.
    k.delete(Kind::Node, "", "worker2");
    r.until(|s| !s.contains_key("pod/prod/web-2")).await;
    // Endpoints: node metadata per target.
    let mut cfg = sd(&k, KubernetesRole::Endpoints);
    cfg.attach_metadata.node = true;
    k.apply(json!({
        "kind": "Endpoints",
        "metadata": {"name": "n", "namespace": "prod"},
        "subsets": [{"addresses": [{"ip": "10.9.9.9", "nodeName": "worker1"}], "ports": [{"port": 1, "protocol": "TCP"}]}]
    })).expect("endpoints");
    let mut r = Run::start(cfg);
    r.next().await;
    let t = &r.state["endpoints/prod/n"].targets[0];
    assert_eq!(t.get("__meta_kubernetes_node_label_zone"), Some("c"));
}

#[tokio::test]
async fn attach_deployment_and_cronjob_owners() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let owner = |kind: &str, name: &str| json!([{"apiVersion": "v1", "kind": kind, "name": name, "uid": "u", "controller": true}]);
    k.apply(json!({"kind": "ReplicaSet", "metadata": {"name": "web-abc", "namespace": "prod", "ownerReferences": owner("Deployment", "web")}}))
        .expect("replicaset");
    let mut p = pod("prod", "web-7", "10.0.0.7", "worker1", json!({}), 8080);
    p["metadata"]["ownerReferences"] = owner("ReplicaSet", "web-abc");
    k.apply(p).expect("pod");
    let mut cfg = sd(&k, KubernetesRole::Pod);
    cfg.attach_metadata = KubernetesAttachMetadata {
        deployment: true,
        cronjob: true,
        ..Default::default()
    };
    let mut r = Run::start(cfg);
    r.next().await;
    assert_eq!(
        r.state["pod/prod/web-7"]
            .labels
            .get("__meta_kubernetes_pod_deployment_name"),
        Some("web")
    );
    // A Job created later, owned by a CronJob, reaches pods it controls.
    let mut p = pod("prod", "job-1", "10.0.0.8", "worker1", json!({}), 8080);
    p["metadata"]["ownerReferences"] = owner("Job", "nightly-1");
    k.apply(p).expect("job pod");
    k.apply(json!({"kind": "Job", "metadata": {"name": "nightly-1", "namespace": "prod", "ownerReferences": owner("CronJob", "nightly")}}))
        .expect("job");
    r.until(|s| {
        s.get("pod/prod/job-1")
            .and_then(|g| g.labels.get("__meta_kubernetes_pod_cronjob_name"))
            == Some("nightly")
    })
    .await;
    let st = k.stats();
    assert_eq!(st.count(Kind::ReplicaSet, false), 1);
    assert_eq!(st.count(Kind::Job, false), 1);
}

#[tokio::test]
async fn namespaces_and_selectors_reach_the_server() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    k.apply(pod(
        "prod",
        "web-9",
        "10.0.0.9",
        "worker2",
        json!({"app": "other"}),
        8080,
    ))
    .expect("pod");
    let mut cfg = sd(&k, KubernetesRole::Pod);
    cfg.namespaces = vec!["prod".into(), "dev".into()];
    cfg.selectors = vec![KubernetesSelector {
        role: KubernetesRole::Pod,
        label: Some("app in (web,db)".into()),
        field: Some("spec.nodeName=worker1".into()),
    }];
    let mut r = Run::start(cfg);
    r.next().await;
    assert_eq!(r.sources(), ["pod/dev/db-1", "pod/prod/web-1"]);
    let s = k.stats();
    let mut nss: Vec<String> = s
        .requests
        .iter()
        .filter(|q| q.kind == Kind::Pod && !q.watch)
        .map(|q| {
            assert_eq!(
                q.query.get("labelSelector").map(String::as_str),
                Some("app in (web,db)")
            );
            assert_eq!(
                q.query.get("fieldSelector").map(String::as_str),
                Some("spec.nodeName=worker1")
            );
            q.namespace.clone().unwrap_or_default()
        })
        .collect();
    nss.sort();
    assert_eq!(nss, ["dev", "prod"]);
    // A pod moving into the selection appears, one moving out disappears.
    k.apply(pod(
        "prod",
        "web-2",
        "10.0.0.2",
        "worker1",
        json!({"app": "web"}),
        8080,
    ))
    .expect("move in");
    k.apply(pod(
        "prod",
        "web-1",
        "10.0.0.1",
        "worker2",
        json!({"app": "web"}),
        8080,
    ))
    .expect("move out");
    r.until(|s| s.contains_key("pod/prod/web-2") && !s.contains_key("pod/prod/web-1"))
        .await;
}

#[tokio::test]
async fn jobs_share_one_watch_per_kind() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut a = Run::start(sd(&k, KubernetesRole::Endpoints));
    let mut b = Run::start(sd(&k, KubernetesRole::EndpointSlice));
    let mut c = Run::start(sd(&k, KubernetesRole::Pod));
    a.next().await;
    b.next().await;
    c.next().await;
    let s = k.stats();
    assert_eq!(s.count(Kind::Pod, false), 1, "one pod list for three jobs");
    assert_eq!(
        s.count(Kind::Service, false),
        1,
        "one service list for two jobs"
    );
    assert_eq!(s.count(Kind::Endpoints, false), 1);
    assert_eq!(s.count(Kind::EndpointSlice, false), 1);
    assert_eq!(
        s.count(Kind::Node, false),
        0,
        "no node watch without attach_metadata"
    );
    // Still one pod watch open once all are running.
    wait_server(&k, "watches", |s| {
        s.open(Kind::Pod) == 1 && s.open(Kind::Service) == 1
    })
    .await;
}

#[tokio::test]
async fn bearer_token_and_kubeconfig_file() {
    let k = FakeKube::start().await.expect("fake server");
    populate(&k);
    let mut cfg = sd(&k, KubernetesRole::Node);
    cfg.http.authorization = Some(Authorization {
        kind: "Bearer".into(),
        credentials: Some("s3cret".into()),
        credentials_file: None,
    });
    let mut r = Run::start(cfg);
    r.next().await;
    let s = k.stats();
    assert!(
        s.requests
            .iter()
            .all(|q| q.authorization.as_deref() == Some("Bearer s3cret"))
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\nusers:\n- name: u\n  user:\n    token: from-file\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
            k.url()
        ),
    )
    .expect("write kubeconfig");
    let mut cfg = sd(&k, KubernetesRole::Ingress);
    cfg.api_server = None;
    cfg.kubeconfig_file = Some(kc);
    let mut r = Run::start(cfg);
    r.next().await;
    assert_eq!(r.sources(), ["ingress/prod/site"]);
    let s = k.stats();
    let last = s
        .requests
        .iter()
        .rev()
        .find(|q| q.kind == Kind::Ingress)
        .expect("ingress request");
    assert_eq!(last.authorization.as_deref(), Some("Bearer from-file"));
}
