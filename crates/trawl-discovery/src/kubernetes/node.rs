//! Role `node`: one target per node, at its kubelet.

use k8s_openapi::api::core::v1::Node;

use super::meta::{PREFIX, Set, add_object_meta, group, join_host_port, sanitize};
use crate::TargetGroup;

/// `node/<name>`
pub fn source(name: &str) -> String {
    format!("node/{name}")
}

/// Address types in the order the target address is chosen from.
const ADDRESS_ORDER: [&str; 6] = [
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
];

/// The group of one node; a node without a usable address has no targets.
pub fn node_group(node: &Node) -> TargetGroup {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let mut g = Set::new();
    add_object_meta(&mut g, &node.metadata, "node", true);
    g.insert(
        format!("{PREFIX}node_provider_id"),
        node.spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default(),
    );
    let status = node.status.clone().unwrap_or_default();
    for c in status.conditions.iter().flatten() {
        g.insert(
            format!(
                "{PREFIX}node_condition_{}",
                sanitize(&c.type_.to_lowercase())
            ),
            c.status.to_lowercase(),
        );
    }
    // The first address of each type.
    let mut first: Vec<(&str, &str)> = Vec::new();
    for a in status.addresses.iter().flatten() {
        if !first.iter().any(|(t, _)| *t == a.type_) {
            first.push((&a.type_, &a.address));
        }
    }
    let host = ADDRESS_ORDER
        .iter()
        .find_map(|ty| first.iter().find(|(t, _)| t == ty).map(|(_, a)| *a));
    let Some(host) = host else {
        return TargetGroup {
            source: source(name),
            ..TargetGroup::default()
        };
    };
    let port = status
        .daemon_endpoints
        .as_ref()
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map(|k| k.port)
        .unwrap_or(0);
    let mut t = Set::new();
    t.insert(
        trawl_model::ADDRESS_LABEL.into(),
        join_host_port(host, port),
    );
    t.insert(trawl_model::INSTANCE_LABEL.into(), name.to_owned());
    for (ty, addr) in first {
        t.insert(
            format!("{PREFIX}node_address_{}", sanitize(ty)),
            addr.to_owned(),
        );
    }
    group(source(name), &g, &[t])
}
