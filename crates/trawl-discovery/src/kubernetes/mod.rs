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

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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
    }

    /// Every group of the role, by source.
    fn groups(&self, cfg: &KubernetesSdConfig) -> BTreeMap<String, TargetGroup> {
        let attach = cfg.attach_metadata;
        let rel = Related {
            pods: index(&self.pods),
            services: index(&self.services),
            nodes: (!self.nodes.is_empty() && cfg.role != KubernetesRole::Node)
                .then(|| index(&self.nodes)),
            namespaces: (!self.namespaces.is_empty()).then(|| index(&self.namespaces)),
            attach,
        };
        let groups: Vec<TargetGroup> = match cfg.role {
            KubernetesRole::Pod => index(&self.pods)
                .iter()
                .map(|p| pod::pod_group(p, &rel))
                .collect(),
            KubernetesRole::Service => index(&self.services)
                .iter()
                .map(|s| service::service_group(s, &rel))
                .collect(),
            KubernetesRole::Endpoints => index(&self.endpoints)
                .iter()
                .map(|e| endpoints::endpoints_group(e, &rel))
                .collect(),
            KubernetesRole::EndpointSlice => index(&self.slices)
                .iter()
                .map(|e| endpointslice::endpointslice_group(e, &rel))
                .collect(),
            KubernetesRole::Node => index(&self.nodes).iter().map(node::node_group).collect(),
            KubernetesRole::Ingress => index(&self.ingresses)
                .iter()
                .map(|i| ingress::ingress_group(i, &rel))
                .collect(),
        };
        groups.into_iter().map(|g| (g.source.clone(), g)).collect()
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
    let mut first = true;
    loop {
        let snap = deps.snapshot();
        if snap.synced() {
            let now = snap.groups(&cfg);
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
