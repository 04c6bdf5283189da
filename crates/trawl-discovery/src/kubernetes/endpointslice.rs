//! Role `endpointslice`: discovery.k8s.io/v1 EndpointSlice, one target per
//! (endpoint, port, address), plus the uncovered container ports of the pods behind.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use super::meta::{
    NAMESPACE, PREFIX, Related, Set, add_object_meta, group, join_host_port, sanitize,
};
use super::podref::{SeenPods, resolve};
use super::service::service_set;
use crate::TargetGroup;

/// `endpointslice/<ns>/<name>`
pub fn source(ns: &str, name: &str) -> String {
    format!("endpointslice/{ns}/{name}")
}

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn bool_label(t: &mut Set, name: &str, v: Option<bool>) {
    if let Some(v) = v {
        t.insert(format!("{PREFIX}endpointslice_{name}"), v.to_string());
    }
}

/// The group of one EndpointSlice.
pub fn endpointslice_group(slice: &EndpointSlice, rel: &Related<'_>) -> TargetGroup {
    let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
    let name = slice.metadata.name.as_deref().unwrap_or_default();
    let mut g = Set::new();
    g.insert(NAMESPACE.into(), ns.to_owned());
    g.insert(
        format!("{PREFIX}endpointslice_address_type"),
        slice.address_type.clone(),
    );
    add_object_meta(&mut g, &slice.metadata, "endpointslice", true);
    let svc = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .and_then(|s| rel.services.get(&format!("{ns}/{s}")));
    if let Some(svc) = svc {
        g.extend(service_set(svc));
    }
    rel.add_namespace_meta(&mut g, ns);

    // A dual-stack service has one slice per family; only the primary one is scraped.
    let spec = svc.and_then(|s| s.spec.as_ref());
    let dual = spec
        .and_then(|s| s.ip_family_policy.as_deref())
        .is_some_and(|p| p == "PreferDualStack" || p == "RequireDualStack");
    let primary = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first());
    if dual && primary.is_some_and(|p| *p != slice.address_type) {
        return group(source(ns, name), &g, &[]);
    }

    let mut seen = SeenPods::default();
    let mut targets = Vec::new();
    let mut add = |addr: &str, ep: &Endpoint, port: &EndpointPort| {
        let mut t = Set::new();
        let address = match port.port {
            Some(p) => join_host_port(addr, p),
            None => addr.to_owned(),
        };
        t.insert(trawl_model::ADDRESS_LABEL.into(), address);
        if let Some(n) = &port.name {
            t.insert(format!("{PREFIX}endpointslice_port_name"), n.clone());
        }
        if let Some(p) = &port.protocol {
            t.insert(format!("{PREFIX}endpointslice_port_protocol"), p.clone());
        }
        if let Some(p) = port.port {
            t.insert(format!("{PREFIX}endpointslice_port"), p.to_string());
        }
        if let Some(p) = &port.app_protocol {
            t.insert(
                format!("{PREFIX}endpointslice_port_app_protocol"),
                p.clone(),
            );
        }
        if let Some(c) = &ep.conditions {
            bool_label(&mut t, "endpoint_conditions_ready", c.ready);
            bool_label(&mut t, "endpoint_conditions_serving", c.serving);
            bool_label(&mut t, "endpoint_conditions_terminating", c.terminating);
        }
        if let Some(h) = &ep.hostname {
            t.insert(
                format!("{PREFIX}endpointslice_endpoint_hostname"),
                h.clone(),
            );
        }
        if let Some(n) = &ep.node_name {
            t.insert(
                format!("{PREFIX}endpointslice_endpoint_node_name"),
                n.clone(),
            );
        }
        if let Some(z) = &ep.zone {
            t.insert(format!("{PREFIX}endpointslice_endpoint_zone"), z.clone());
        }
        if let Some(r) = &ep.target_ref {
            t.insert(
                format!("{PREFIX}endpointslice_address_target_kind"),
                r.kind.clone().unwrap_or_default(),
            );
            t.insert(
                format!("{PREFIX}endpointslice_address_target_name"),
                r.name.clone().unwrap_or_default(),
            );
        }
        for (k, v) in ep.deprecated_topology.iter().flatten() {
            let k = sanitize(k);
            t.insert(
                format!("{PREFIX}endpointslice_endpoint_topology_{k}"),
                v.clone(),
            );
            t.insert(
                format!("{PREFIX}endpointslice_endpoint_topology_present_{k}"),
                "true".into(),
            );
        }
        if rel.nodes.is_some() {
            let node = match &ep.target_ref {
                Some(r) if r.kind.as_deref() == Some("Node") => r.name.clone(),
                _ => ep.node_name.clone(),
            };
            if let Some(n) = node {
                rel.add_node_meta(&mut t, &n);
            }
        }
        if let Some(pod) = resolve(rel, ep.target_ref.as_ref()) {
            seen.attach(&mut t, pod, port.port, None, rel);
        }
        targets.push(t);
    };
    for ep in slice.endpoints.iter().flatten() {
        for port in slice.ports.iter().flatten() {
            for a in &ep.addresses {
                add(a, ep, port);
            }
        }
    }
    targets.extend(seen.uncovered(rel));
    group(source(ns, name), &g, &targets)
}
