//! Kubernetes service discovery (`kubernetes_sd_configs`), roles `pod`, `service`,
//! `endpoints`, `endpointslice`, `node` and `ingress`.
//!
//! Two layers:
//! - pure label mapping ([`pod`], [`service`], [`endpoints`], [`endpointslice`],
//!   [`node`], [`ingress`]): one Kubernetes object (plus a read-only view of related
//!   objects, [`meta::Related`]) becomes one [`TargetGroup`] with every
//!   `__meta_kubernetes_*` label as Prometheus emits it and the source Prometheus
//!   uses (`pod/<ns>/<name>`, `svc/<ns>/<name>`, `endpoints/<ns>/<name>`,
//!   `endpointslice/<ns>/<name>`, `node/<name>`, `ingress/<ns>/<name>`);
//! - watch I/O at the edge ([`informer`], [`client`], [`run`]): shared informers keep
//!   the objects of each (API server, kind, namespace, selectors) watch; a role's
//!   discoverer waits until every informer it reads has listed once, then recomputes
//!   its groups whenever one of them changes and sends the groups that differ from
//!   what it sent before (vanished sources as empty groups).
//!
//! Invariants: nothing is sent before every informer of the role has synced, so the
//! first update is the full set; a relist after `410 Gone` replaces an informer's store
//! in one step, so a recovering watch never produces deletions of objects that still
//! exist; unchanged groups are not re-sent.

pub mod client;
pub mod endpoints;
pub mod endpointslice;
pub mod informer;
pub mod ingress;
pub mod meta;
pub mod node;
pub mod pod;
pub mod podref;
pub mod service;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use tokio::sync::{mpsc, watch};
use trawl_config::{KubernetesRole, KubernetesSdConfig};

use crate::TargetGroup;
use informer::{Informer, Store, Watched};
use meta::{Index, Related};

type Rx<K> = watch::Receiver<Arc<Store<K>>>;

/// The namespaces to watch; `None` means all.
pub fn namespaces(cfg: &KubernetesSdConfig, own: &str) -> Vec<Option<String>> {
    let mut names: Vec<String> = cfg.namespaces.clone();
    if cfg.own_namespace {
        names.push(own.to_owned());
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        vec![None]
    } else {
        names.into_iter().map(Some).collect()
    }
}

fn selector(cfg: &KubernetesSdConfig, role: KubernetesRole) -> (Option<&str>, Option<&str>) {
    cfg.selectors
        .iter()
        .find(|s| s.role == role)
        .map(|s| (s.label.as_deref(), s.field.as_deref()))
        .unwrap_or((None, None))
}

/// The informers one discoverer reads.
#[derive(Debug, Default)]
struct Deps {
    pods: Vec<Rx<Pod>>,
    services: Vec<Rx<Service>>,
    endpoints: Vec<Rx<Endpoints>>,
    slices: Vec<Rx<EndpointSlice>>,
    ingresses: Vec<Rx<Ingress>>,
    nodes: Vec<Rx<Node>>,
    namespaces: Vec<Rx<Namespace>>,
    replicasets: Vec<Rx<ReplicaSet>>,
    jobs: Vec<Rx<Job>>,
    // Keeps the shared watches running while this discoverer lives.
    handles: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

/// One consistent view of the stores.
#[derive(Debug)]
struct Snapshot {
    pods: Vec<Arc<Store<Pod>>>,
    services: Vec<Arc<Store<Service>>>,
    endpoints: Vec<Arc<Store<Endpoints>>>,
    slices: Vec<Arc<Store<EndpointSlice>>>,
    ingresses: Vec<Arc<Store<Ingress>>>,
    nodes: Vec<Arc<Store<Node>>>,
    namespaces: Vec<Arc<Store<Namespace>>>,
    replicasets: Vec<Arc<Store<ReplicaSet>>>,
    jobs: Vec<Arc<Store<Job>>>,
}

fn take<K>(rxs: &mut [Rx<K>]) -> Vec<Arc<Store<K>>> {
    rxs.iter_mut()
        .map(|r| Arc::clone(&r.borrow_and_update()))
        .collect()
}

fn synced<K>(s: &[Arc<Store<K>>]) -> bool {
    s.iter().all(|s| s.synced)
}

fn index<K>(s: &[Arc<Store<K>>]) -> Index<'_, K> {
    Index::new(s.iter().map(|s| &s.objects).collect())
}

type Changed<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

fn push_changed<'a, K: Send + Sync>(out: &mut Vec<Changed<'a>>, rxs: &'a mut [Rx<K>]) {
    for r in rxs {
        out.push(Box::pin(async move { r.changed().await.is_ok() }));
    }
}

impl Deps {
    fn add<K: Watched>(
        &mut self,
        client: &kube::Client,
        server: &str,
        ns: Option<&str>,
        sel: (Option<&str>, Option<&str>),
    ) -> Rx<K> {
        let inf: Arc<Informer<K>> = informer::informer(client, server, ns, sel.0, sel.1);
        let rx = inf.subscribe();
        self.handles.push(inf);
        rx
    }

    fn new(cfg: &KubernetesSdConfig, client: &kube::Client, own_ns: &str) -> Deps {
        use KubernetesRole as R;
        let server = client::identity(cfg);
        let nss = namespaces(cfg, own_ns);
        let mut d = Deps::default();
        let role = cfg.role;
        for ns in &nss {
            let ns = ns.as_deref();
            match role {
                R::Pod => {
                    let rx = d.add(client, &server, ns, selector(cfg, R::Pod));
                    d.pods.push(rx);
                }
                R::Service => {
                    let rx = d.add(client, &server, ns, selector(cfg, R::Service));
                    d.services.push(rx);
                }
                R::Ingress => {
                    let rx = d.add(client, &server, ns, selector(cfg, R::Ingress));
                    d.ingresses.push(rx);
                }
                R::Endpoints | R::EndpointSlice => {
                    if role == R::Endpoints {
                        let rx = d.add(client, &server, ns, selector(cfg, R::Endpoints));
                        d.endpoints.push(rx);
                    } else {
                        let rx = d.add(client, &server, ns, selector(cfg, R::EndpointSlice));
                        d.slices.push(rx);
                    }
                    let rx = d.add(client, &server, ns, selector(cfg, R::Service));
                    d.services.push(rx);
                    let rx = d.add(client, &server, ns, selector(cfg, R::Pod));
                    d.pods.push(rx);
                }
                R::Node => {}
            }
            // Owner lookups for pod labels (pods and pod-backed endpoints).
            if matches!(role, R::Pod | R::Endpoints | R::EndpointSlice) {
                if cfg.attach_metadata.deployment {
                    let rx = d.add(client, &server, ns, (None, None));
                    d.replicasets.push(rx);
                }
                if cfg.attach_metadata.cronjob {
                    let rx = d.add(client, &server, ns, (None, None));
                    d.jobs.push(rx);
                }
            }
        }
        let attach = cfg.attach_metadata;
        let wants_nodes = role == R::Node
            || (attach.node && matches!(role, R::Pod | R::Endpoints | R::EndpointSlice));
        if wants_nodes {
            let rx = d.add(client, &server, None, selector(cfg, R::Node));
            d.nodes.push(rx);
        }
        if attach.namespace && role != R::Node {
            let rx = d.add(client, &server, None, (None, None));
            d.namespaces.push(rx);
        }
        d
    }

    fn snapshot(&mut self) -> Snapshot {
        Snapshot {
            pods: take(&mut self.pods),
            services: take(&mut self.services),
            endpoints: take(&mut self.endpoints),
            slices: take(&mut self.slices),
            ingresses: take(&mut self.ingresses),
            nodes: take(&mut self.nodes),
            namespaces: take(&mut self.namespaces),
            replicasets: take(&mut self.replicasets),
            jobs: take(&mut self.jobs),
        }
    }

    /// Waits for any store to change; false when every informer is gone.
    async fn changed(&mut self) -> bool {
        let mut futs: Vec<Changed<'_>> = Vec::new();
        push_changed(&mut futs, &mut self.pods);
        push_changed(&mut futs, &mut self.services);
        push_changed(&mut futs, &mut self.endpoints);
        push_changed(&mut futs, &mut self.slices);
        push_changed(&mut futs, &mut self.ingresses);
        push_changed(&mut futs, &mut self.nodes);
        push_changed(&mut futs, &mut self.namespaces);
        push_changed(&mut futs, &mut self.replicasets);
        push_changed(&mut futs, &mut self.jobs);
        if futs.is_empty() {
            return false;
        }
        futures_util::future::select_all(futs).await.0
    }
}

impl Snapshot {
    fn synced(&self) -> bool {
        synced(&self.pods)
            && synced(&self.services)
            && synced(&self.endpoints)
            && synced(&self.slices)
            && synced(&self.ingresses)
            && synced(&self.nodes)
            && synced(&self.namespaces)
            && synced(&self.replicasets)
            && synced(&self.jobs)
    }

    /// Versions of every store but the role's own: when one changes, every group
    /// may change.
    fn dep_versions(&self, role: KubernetesRole) -> Vec<u64> {
        fn v<K>(s: &[Arc<Store<K>>]) -> impl Iterator<Item = u64> + '_ {
            s.iter().map(|s| s.version)
        }
        let mut out: Vec<u64> = Vec::new();
        if role != KubernetesRole::Pod {
            out.extend(v(&self.pods));
        }
        if role != KubernetesRole::Service {
            out.extend(v(&self.services));
        }
        if role != KubernetesRole::Node {
            out.extend(v(&self.nodes));
        }
        out.extend(v(&self.namespaces));
        out.extend(v(&self.replicasets));
        out.extend(v(&self.jobs));
        out
    }

    /// Every group of the role, by source. Groups of objects that did not change
    /// (same object, same dependencies) are taken from `memo`.
    fn groups(&self, cfg: &KubernetesSdConfig, memo: &mut Memo) -> BTreeMap<String, TargetGroup> {
        let attach = cfg.attach_metadata;
        let rel = Related {
            pods: index(&self.pods),
            services: index(&self.services),
            nodes: (!self.nodes.is_empty() && cfg.role != KubernetesRole::Node)
                .then(|| index(&self.nodes)),
            namespaces: (!self.namespaces.is_empty()).then(|| index(&self.namespaces)),
            replicasets: (!self.replicasets.is_empty()).then(|| index(&self.replicasets)),
            jobs: (!self.jobs.is_empty()).then(|| index(&self.jobs)),
            attach,
        };
        let deps = self.dep_versions(cfg.role);
        if memo.deps != deps {
            memo.groups.clear();
            memo.deps = deps;
        }
        let groups: Vec<TargetGroup> = match cfg.role {
            KubernetesRole::Pod => memo.run(&self.pods, |p| pod::pod_group(p, &rel)),
            KubernetesRole::Service => {
                memo.run(&self.services, |s| service::service_group(s, &rel))
            }
            KubernetesRole::Endpoints => {
                memo.run(&self.endpoints, |e| endpoints::endpoints_group(e, &rel))
            }
            KubernetesRole::EndpointSlice => memo.run(&self.slices, |e| {
                endpointslice::endpointslice_group(e, &rel)
            }),
            KubernetesRole::Node => memo.run(&self.nodes, node::node_group),
            KubernetesRole::Ingress => {
                memo.run(&self.ingresses, |i| ingress::ingress_group(i, &rel))
            }
        };
        groups.into_iter().map(|g| (g.source.clone(), g)).collect()
    }
}

/// The last group computed per object, valid while the dependency versions hold.
#[derive(Default)]
struct Memo {
    deps: Vec<u64>,
    // The object is kept so its address cannot be reused by another object.
    groups: HashMap<String, (Arc<dyn Any + Send + Sync>, TargetGroup)>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("deps", &self.deps)
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl Memo {
    fn run<K: Send + Sync + 'static>(
        &mut self,
        stores: &[Arc<Store<K>>],
        f: impl Fn(&K) -> TargetGroup,
    ) -> Vec<TargetGroup> {
        let mut next = HashMap::with_capacity(self.groups.len());
        let mut out = Vec::new();
        for s in stores {
            for (k, o) in &s.objects {
                let g = match self.groups.get(k) {
                    Some((prev, g)) if std::ptr::addr_eq(Arc::as_ptr(prev), Arc::as_ptr(o)) => {
                        g.clone()
                    }
                    _ => f(o),
                };
                let any: Arc<dyn Any + Send + Sync> = Arc::clone(o) as _;
                next.insert(k.clone(), (any, g.clone()));
                out.push(g);
            }
        }
        self.groups = next;
        out
    }
}

/// The groups to send to move a consumer from `old` to `new`: changed and new groups,
/// and an empty group for each vanished source.
pub fn diff(
    old: &BTreeMap<String, TargetGroup>,
    new: &BTreeMap<String, TargetGroup>,
) -> Vec<TargetGroup> {
    let mut out: Vec<TargetGroup> = new
        .iter()
        .filter(|(s, g)| old.get(*s) != Some(*g))
        .map(|(_, g)| g.clone())
        .collect();
    out.extend(
        old.keys()
            .filter(|s| !new.contains_key(*s))
            .map(|s| TargetGroup {
                source: s.clone(),
                ..TargetGroup::default()
            }),
    );
    out
}

/// Runs discovery for one `kubernetes_sd_configs` entry until `tx` is closed.
pub async fn run(cfg: KubernetesSdConfig, tx: mpsc::Sender<Vec<TargetGroup>>) {
    let (client, own_ns) = match client::client(&cfg).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(role = cfg.role.as_str(), error = %e, "kubernetes SD: cannot create a client");
            return;
        }
    };
    let mut deps = Deps::new(&cfg, &client, &own_ns);
    let mut sent: BTreeMap<String, TargetGroup> = BTreeMap::new();
    let mut memo = Memo::default();
    let mut first = true;
    loop {
        let snap = deps.snapshot();
        if snap.synced() {
            let now = snap.groups(&cfg, &mut memo);
            drop(snap);
            let update = diff(&sent, &now);
            sent = now;
            if (first || !update.is_empty()) && tx.send(update).await.is_err() {
                return;
            }
            first = false;
        } else {
            drop(snap);
        }
        tokio::select! {
            alive = deps.changed() => if !alive { return },
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_config::{HttpClientConfig, KubernetesAttachMetadata};

    fn sd(namespaces: &[&str], own: bool) -> KubernetesSdConfig {
        KubernetesSdConfig {
            role: KubernetesRole::Pod,
            api_server: None,
            kubeconfig_file: None,
            own_namespace: own,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            selectors: Vec::new(),
            attach_metadata: KubernetesAttachMetadata::default(),
            http: HttpClientConfig::default(),
        }
    }

    #[test]
    fn memo_recomputes_only_changed_objects() {
        let pod = |name: &str, rv: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
                    "spec": {"containers": [{"name": "c"}]},
                    "status": {"podIP": "10.0.0.1"}
                }))
                .expect("pod"),
            )
        };
        let (a, b) = (pod("a", "1"), pod("b", "2"));
        let store = |objs: &[&Arc<Pod>]| {
            Arc::new(Store {
                objects: objs
                    .iter()
                    .map(|p| (meta::key(&p.metadata), Arc::clone(p)))
                    .collect(),
                synced: true,
                version: 0,
            })
        };
        let calls = std::cell::Cell::new(0);
        let f = |p: &Pod| {
            calls.set(calls.get() + 1);
            pod::pod_group(p, &Related::default())
        };
        let mut memo = Memo::default();
        let first = memo.run(&[store(&[&a, &b])], f);
        assert_eq!(calls.get(), 2);
        let again = memo.run(&[store(&[&a, &b])], f);
        assert_eq!(calls.get(), 2, "unchanged objects are not recomputed");
        assert!(first[0].targets[0].ptr_eq(&again[0].targets[0]));
        let b2 = pod("b", "3");
        memo.run(&[store(&[&a, &b2])], f);
        assert_eq!(calls.get(), 3, "only the changed object");
        memo.run(&[store(&[&b2])], f);
        assert_eq!(memo.groups.len(), 1, "deleted objects leave the memo");
    }

    #[test]
    fn namespace_sets() {
        assert_eq!(namespaces(&sd(&[], false), "me"), [None]);
        assert_eq!(namespaces(&sd(&[], true), "me"), [Some("me".into())]);
        assert_eq!(
            namespaces(&sd(&["b", "a", "me"], true), "me"),
            [Some("a".into()), Some("b".into()), Some("me".into())]
        );
    }

    #[test]
    fn diff_sends_changes_and_vanished_sources() {
        let g = |s: &str, addr: &str| TargetGroup {
            source: s.into(),
            targets: vec![trawl_model::Labels::from_pairs([("__address__", addr)])],
            labels: trawl_model::Labels::empty(),
        };
        let old: BTreeMap<String, TargetGroup> =
            [("a".into(), g("a", "1")), ("b".into(), g("b", "2"))].into();
        let new: BTreeMap<String, TargetGroup> =
            [("a".into(), g("a", "1")), ("c".into(), g("c", "3"))].into();
        let d = diff(&old, &new);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], g("c", "3"));
        assert_eq!(d[1].source, "b");
        assert!(d[1].targets.is_empty());
        assert!(diff(&new, &new).is_empty());
    }
}
