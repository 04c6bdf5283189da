//! Label helpers shared by every role: name sanitising, object metadata expansion,
//! host:port joining and the lookup of related objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use trawl_config::KubernetesAttachMetadata;
use trawl_model::Labels;

use crate::TargetGroup;

/// Every Kubernetes meta label starts with this.
pub const PREFIX: &str = "__meta_kubernetes_";
/// `__meta_kubernetes_namespace`
pub const NAMESPACE: &str = "__meta_kubernetes_namespace";

/// A label set under construction (a later insert of the same name wins).
pub type Set = BTreeMap<String, String>;

/// Replaces every character outside `[A-Za-z0-9_]` by `_`, as Prometheus does for
/// Kubernetes keys embedded in label names.
pub fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `host:port`, with IPv6 hosts bracketed (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Adds `META(<kind>)`: the name (unless `with_name` is false), and every label and
/// annotation with its `present` twin.
pub fn add_object_meta(set: &mut Set, meta: &ObjectMeta, kind: &str, with_name: bool) {
    if with_name {
        set.insert(
            format!("{PREFIX}{kind}_name"),
            meta.name.clone().unwrap_or_default(),
        );
    }
    for (k, v) in meta.labels.iter().flatten() {
        let k = sanitize(k);
        set.insert(format!("{PREFIX}{kind}_label_{k}"), v.clone());
        set.insert(format!("{PREFIX}{kind}_labelpresent_{k}"), "true".into());
    }
    for (k, v) in meta.annotations.iter().flatten() {
        let k = sanitize(k);
        set.insert(format!("{PREFIX}{kind}_annotation_{k}"), v.clone());
        set.insert(
            format!("{PREFIX}{kind}_annotationpresent_{k}"),
            "true".into(),
        );
    }
}

/// The labels of a set.
pub fn labels(set: &Set) -> Labels {
    Labels::from_pairs(set.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A group from label sets.
pub fn group(source: String, group: &Set, targets: &[Set]) -> TargetGroup {
    TargetGroup {
        source,
        labels: labels(group),
        targets: targets.iter().map(labels).collect(),
    }
}

/// `ns/name` (or `name` for cluster-scoped objects), the key of every store.
pub fn key(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// Objects of one kind, keyed by [`key`], possibly spread over several stores (one per
/// watched namespace).
#[derive(Debug)]
pub struct Index<'a, K> {
    parts: Vec<&'a BTreeMap<String, Arc<K>>>,
}

impl<K> Default for Index<'_, K> {
    fn default() -> Self {
        Index { parts: Vec::new() }
    }
}

impl<K> Clone for Index<'_, K> {
    fn clone(&self) -> Self {
        Index {
            parts: self.parts.clone(),
        }
    }
}

impl<'a, K> Index<'a, K> {
    /// An index over the given stores.
    pub fn new(parts: Vec<&'a BTreeMap<String, Arc<K>>>) -> Self {
        Index { parts }
    }

    /// The object with this key.
    pub fn get(&self, key: &str) -> Option<&'a K> {
        self.parts.iter().find_map(|p| p.get(key).map(|a| &**a))
    }

    /// Every object.
    pub fn iter(&self) -> impl Iterator<Item = &'a K> + '_ {
        self.parts.iter().flat_map(|p| p.values().map(|a| &**a))
    }
}

/// What a role may look up besides its own objects.
#[derive(Debug, Default, Clone)]
pub struct Related<'a> {
    /// Pods (endpoints, endpointslice).
    pub pods: Index<'a, Pod>,
    /// Services (endpoints, endpointslice).
    pub services: Index<'a, Service>,
    /// Nodes, when `attach_metadata.node` applies.
    pub nodes: Option<Index<'a, Node>>,
    /// Namespaces, when `attach_metadata.namespace` applies.
    pub namespaces: Option<Index<'a, Namespace>>,
    /// ReplicaSets, when `attach_metadata.deployment` applies.
    pub replicasets: Option<Index<'a, ReplicaSet>>,
    /// Jobs, when `attach_metadata.cronjob` applies.
    pub jobs: Option<Index<'a, Job>>,
    /// The `attach_metadata` flags.
    pub attach: KubernetesAttachMetadata,
}

impl Related<'_> {
    /// Adds `META(namespace)` of `ns` when namespace metadata is attached and known.
    pub fn add_namespace_meta(&self, set: &mut Set, ns: &str) {
        if let Some(n) = self.namespaces.as_ref().and_then(|i| i.get(ns)) {
            add_object_meta(set, &n.metadata, "namespace", false);
        }
    }

    /// Adds `META(node)` of `name` when node metadata is attached and the node is
    /// known; returns whether it was found.
    pub fn add_node_meta(&self, set: &mut Set, name: &str) -> bool {
        match self.nodes.as_ref().and_then(|i| i.get(name)) {
            Some(n) => {
                add_object_meta(set, &n.metadata, "node", true);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitising_and_joining() {
        assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
        assert_eq!(sanitize("a-b_C9"), "a_b_C9");
        assert_eq!(sanitize("é"), "_");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("::1", 10250), "[::1]:10250");
    }

    #[test]
    fn object_meta_expansion() {
        let meta = ObjectMeta {
            name: Some("n".into()),
            labels: Some([("app.kubernetes.io/name".to_owned(), "x".to_owned())].into()),
            annotations: Some([("prometheus.io/scrape".to_owned(), "true".to_owned())].into()),
            ..Default::default()
        };
        let mut s = Set::new();
        add_object_meta(&mut s, &meta, "pod", true);
        let want: Set = [
            ("__meta_kubernetes_pod_name", "n"),
            ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "x"),
            (
                "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
                "true",
            ),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        assert_eq!(s, want);
        let mut s = Set::new();
        add_object_meta(&mut s, &meta, "namespace", false);
        assert!(!s.contains_key("__meta_kubernetes_namespace_name"));
        assert_eq!(s.len(), 4);
    }
}
