//! Role `pod`: one target per (container, declared port), one per port-less container.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};

use super::meta::{NAMESPACE, PREFIX, Related, Set, add_object_meta, group, join_host_port};
use crate::TargetGroup;

/// `pod/<ns>/<name>`
pub fn source(ns: &str, name: &str) -> String {
    format!("pod/{ns}/{name}")
}

fn pod_ip(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or_default()
}

/// The owner reference marked as controller.
fn controller_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The POD set: pod-level labels shared by the pod role and pod-backed endpoints.
pub fn pod_set(pod: &Pod, rel: &Related<'_>) -> Set {
    let mut s = Set::new();
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    s.insert(format!("{PREFIX}pod_ip"), pod_ip(pod).to_owned());
    let ready = status
        .and_then(|st| st.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.to_lowercase())
        .unwrap_or_else(|| "unknown".into());
    s.insert(format!("{PREFIX}pod_ready"), ready);
    s.insert(
        format!("{PREFIX}pod_phase"),
        status.and_then(|st| st.phase.clone()).unwrap_or_default(),
    );
    s.insert(
        format!("{PREFIX}pod_node_name"),
        spec.and_then(|sp| sp.node_name.clone()).unwrap_or_default(),
    );
    s.insert(
        format!("{PREFIX}pod_host_ip"),
        status.and_then(|st| st.host_ip.clone()).unwrap_or_default(),
    );
    s.insert(
        format!("{PREFIX}pod_uid"),
        pod.metadata.uid.clone().unwrap_or_default(),
    );
    add_object_meta(&mut s, &pod.metadata, "pod", true);
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(c) = controller_of(&pod.metadata) {
        if !c.kind.is_empty() {
            s.insert(format!("{PREFIX}pod_controller_kind"), c.kind.clone());
        }
        if !c.name.is_empty() {
            s.insert(format!("{PREFIX}pod_controller_name"), c.name.clone());
        }
        let attach = &rel.attach;
        if attach.deployment && c.kind == "ReplicaSet" {
            let owner = rel
                .replicasets
                .as_ref()
                .and_then(|i| i.get(&format!("{ns}/{}", c.name)))
                .and_then(|rs| controller_of(&rs.metadata));
            if let Some(d) = owner.filter(|o| o.kind == "Deployment") {
                s.insert(format!("{PREFIX}pod_deployment_name"), d.name.clone());
            }
        }
        if attach.job && c.kind == "Job" {
            s.insert(format!("{PREFIX}pod_job_name"), c.name.clone());
        }
        if attach.cronjob && c.kind == "Job" {
            let owner = rel
                .jobs
                .as_ref()
                .and_then(|i| i.get(&format!("{ns}/{}", c.name)))
                .and_then(|j| controller_of(&j.metadata));
            if let Some(cj) = owner.filter(|o| o.kind == "CronJob") {
                s.insert(format!("{PREFIX}pod_cronjob_name"), cj.name.clone());
            }
        }
    }
    s
}

/// Every container, regular first then init, with its init flag.
pub fn containers(pod: &Pod) -> impl Iterator<Item = (&Container, bool)> {
    let spec = pod.spec.as_ref();
    let regular = spec.into_iter().flat_map(|s| s.containers.iter());
    let init = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten());
    regular.map(|c| (c, false)).chain(init.map(|c| (c, true)))
}

fn container_id(pod: &Pod, name: &str, init: bool) -> String {
    let statuses: Option<&Vec<ContainerStatus>> = pod.status.as_ref().and_then(|s| {
        if init {
            s.init_container_statuses.as_ref()
        } else {
            s.container_statuses.as_ref()
        }
    });
    statuses
        .into_iter()
        .flatten()
        .find(|s| s.name == name)
        .and_then(|s| s.container_id.clone())
        .unwrap_or_default()
}

/// The group of one pod.
pub fn pod_group(pod: &Pod, rel: &Related<'_>) -> TargetGroup {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let empty = TargetGroup {
        source: source(ns, name),
        ..TargetGroup::default()
    };
    // A pod without an IP is starting or evicted: nothing to scrape yet.
    let ip = pod_ip(pod);
    if ip.is_empty() {
        return empty;
    }
    let mut g = pod_set(pod, rel);
    g.insert(NAMESPACE.into(), ns.to_owned());
    if rel.nodes.is_some() {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        // With node metadata attached, a pod on an unknown (or filtered-out) node is
        // not a target.
        if !rel.add_node_meta(&mut g, node) {
            return empty;
        }
    }
    rel.add_namespace_meta(&mut g, ns);
    let mut targets = Vec::new();
    for (c, init) in containers(pod) {
        let mut t = Set::new();
        t.insert(format!("{PREFIX}pod_container_name"), c.name.clone());
        t.insert(
            format!("{PREFIX}pod_container_image"),
            c.image.clone().unwrap_or_default(),
        );
        t.insert(
            format!("{PREFIX}pod_container_id"),
            container_id(pod, &c.name, init),
        );
        t.insert(format!("{PREFIX}pod_container_init"), init.to_string());
        let ports = c.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            t.insert(trawl_model::ADDRESS_LABEL.into(), ip.to_owned());
            targets.push(t);
            continue;
        }
        for p in ports {
            let mut t = t.clone();
            t.insert(
                trawl_model::ADDRESS_LABEL.into(),
                join_host_port(ip, p.container_port),
            );
            t.insert(
                format!("{PREFIX}pod_container_port_name"),
                p.name.clone().unwrap_or_default(),
            );
            t.insert(
                format!("{PREFIX}pod_container_port_number"),
                p.container_port.to_string(),
            );
            t.insert(
                format!("{PREFIX}pod_container_port_protocol"),
                p.protocol.clone().unwrap_or_default(),
            );
            targets.push(t);
        }
    }
    group(source(ns, name), &g, &targets)
}
