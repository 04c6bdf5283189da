//! Role `service`: one target per (service, `spec.ports` entry).

use k8s_openapi::api::core::v1::Service;

use super::meta::{NAMESPACE, PREFIX, Related, Set, add_object_meta, group, join_host_port};
use crate::TargetGroup;

/// `svc/<ns>/<name>`
pub fn source(ns: &str, name: &str) -> String {
    format!("svc/{ns}/{name}")
}

/// `__meta_kubernetes_namespace` plus `META(service)`: what endpoints and
/// endpointslice groups borrow from their service.
pub fn service_set(svc: &Service) -> Set {
    let mut s = Set::new();
    s.insert(
        NAMESPACE.into(),
        svc.metadata.namespace.clone().unwrap_or_default(),
    );
    add_object_meta(&mut s, &svc.metadata, "service", true);
    s
}

/// The group of one service.
pub fn service_group(svc: &Service, rel: &Related<'_>) -> TargetGroup {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let mut g = service_set(svc);
    rel.add_namespace_meta(&mut g, ns);
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = spec.type_.clone().unwrap_or_default();
    let host = format!("{name}.{ns}.svc");
    let mut targets = Vec::new();
    for p in spec.ports.iter().flatten() {
        let mut t = Set::new();
        t.insert(
            trawl_model::ADDRESS_LABEL.into(),
            join_host_port(&host, p.port),
        );
        t.insert(
            format!("{PREFIX}service_port_name"),
            p.name.clone().unwrap_or_default(),
        );
        t.insert(format!("{PREFIX}service_port_number"), p.port.to_string());
        t.insert(
            format!("{PREFIX}service_port_protocol"),
            p.protocol.clone().unwrap_or_default(),
        );
        t.insert(format!("{PREFIX}service_type"), kind.clone());
        if kind == "ExternalName" {
            t.insert(
                format!("{PREFIX}service_external_name"),
                spec.external_name.clone().unwrap_or_default(),
            );
        } else {
            t.insert(
                format!("{PREFIX}service_cluster_ip"),
                spec.cluster_ip.clone().unwrap_or_default(),
            );
        }
        if kind == "LoadBalancer" {
            let ips: Vec<&str> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref())
                .filter(|ip| !ip.is_empty())
                .collect();
            let v = if ips.is_empty() {
                spec.load_balancer_ip.clone().unwrap_or_default()
            } else {
                ips.join(",")
            };
            t.insert(format!("{PREFIX}service_loadbalancer_ip"), v);
        }
        targets.push(t);
    }
    group(source(ns, name), &g, &targets)
}
