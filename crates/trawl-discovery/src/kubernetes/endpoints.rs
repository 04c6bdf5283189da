//! Role `endpoints`: core/v1 Endpoints, one target per (subset port, address), plus
//! the uncovered container ports of the pods behind them.

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints};

use super::meta::{NAMESPACE, PREFIX, Related, Set, add_object_meta, group, join_host_port};
use super::podref::{SeenPods, resolve};
use super::service::service_set;
use crate::TargetGroup;

/// `endpoints/<ns>/<name>`
pub fn source(ns: &str, name: &str) -> String {
    format!("endpoints/{ns}/{name}")
}

/// The group of one Endpoints object.
pub fn endpoints_group(eps: &Endpoints, rel: &Related<'_>) -> TargetGroup {
    let ns = eps.metadata.namespace.as_deref().unwrap_or_default();
    let name = eps.metadata.name.as_deref().unwrap_or_default();
    let mut g = Set::new();
    g.insert(NAMESPACE.into(), ns.to_owned());
    add_object_meta(&mut g, &eps.metadata, "endpoints", true);
    if let Some(svc) = rel.services.get(&format!("{ns}/{name}")) {
        g.extend(service_set(svc));
    }
    rel.add_namespace_meta(&mut g, ns);

    let mut seen = SeenPods::default();
    let mut targets = Vec::new();
    let mut add = |addr: &EndpointAddress, port: &EndpointPort, ready: &str| {
        let mut t = Set::new();
        t.insert(
            trawl_model::ADDRESS_LABEL.into(),
            join_host_port(&addr.ip, port.port),
        );
        t.insert(
            format!("{PREFIX}endpoint_port_name"),
            port.name.clone().unwrap_or_default(),
        );
        t.insert(
            format!("{PREFIX}endpoint_port_protocol"),
            port.protocol.clone().unwrap_or_default(),
        );
        t.insert(format!("{PREFIX}endpoint_ready"), ready.into());
        if let Some(r) = &addr.target_ref {
            t.insert(
                format!("{PREFIX}endpoint_address_target_kind"),
                r.kind.clone().unwrap_or_default(),
            );
            t.insert(
                format!("{PREFIX}endpoint_address_target_name"),
                r.name.clone().unwrap_or_default(),
            );
        }
        if let Some(n) = &addr.node_name {
            t.insert(format!("{PREFIX}endpoint_node_name"), n.clone());
        }
        if let Some(h) = addr.hostname.as_deref().filter(|h| !h.is_empty()) {
            t.insert(format!("{PREFIX}endpoint_hostname"), h.to_owned());
        }
        if rel.nodes.is_some() {
            let node = addr.node_name.clone().or_else(|| {
                addr.target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Node"))
                    .and_then(|r| r.name.clone())
            });
            if let Some(n) = node {
                rel.add_node_meta(&mut t, &n);
            }
        }
        if let Some(pod) = resolve(rel, addr.target_ref.as_ref()) {
            seen.attach(&mut t, pod, Some(port.port), port.protocol.as_deref(), rel);
        }
        targets.push(t);
    };
    for ss in eps.subsets.iter().flatten() {
        for port in ss.ports.iter().flatten() {
            for a in ss.addresses.iter().flatten() {
                add(a, port, "true");
            }
            for a in ss.not_ready_addresses.iter().flatten() {
                add(a, port, "false");
            }
        }
    }
    targets.extend(seen.uncovered(rel));
    group(source(ns, name), &g, &targets)
}
