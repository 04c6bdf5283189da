//! Pod-backed endpoint targets, shared by the `endpoints` and `endpointslice` roles.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};

use super::meta::{PREFIX, Related, Set, join_host_port};
use super::pod::{containers, pod_set};

/// Pods seen behind a group's endpoints, with the endpoint ports already emitted.
#[derive(Debug, Default)]
pub struct SeenPods<'a> {
    pods: BTreeMap<String, (&'a Pod, Vec<Option<i32>>)>,
}

/// The pod a target reference points to, if it is a Pod in the cache.
pub fn resolve<'a>(rel: &Related<'a>, r: Option<&ObjectReference>) -> Option<&'a Pod> {
    let r = r?;
    if r.kind.as_deref() != Some("Pod") {
        return None;
    }
    let key = format!(
        "{}/{}",
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default()
    );
    rel.pods.get(&key)
}

impl<'a> SeenPods<'a> {
    /// Adds the POD set and the labels of the container port matching `port` to `t`,
    /// and remembers the port as covered. `protocol` is the protocol label for a
    /// match: `None` takes the container port's.
    pub fn attach(
        &mut self,
        t: &mut Set,
        pod: &'a Pod,
        port: Option<i32>,
        protocol: Option<&str>,
        rel: &Related<'_>,
    ) {
        t.extend(pod_set(pod, rel));
        // Later containers win, as upstream's inner `break` leaves the outer loop running.
        for (c, init) in containers(pod) {
            for cp in c.ports.iter().flatten() {
                if Some(cp.container_port) == port {
                    t.insert(format!("{PREFIX}pod_container_name"), c.name.clone());
                    t.insert(
                        format!("{PREFIX}pod_container_image"),
                        c.image.clone().unwrap_or_default(),
                    );
                    t.insert(
                        format!("{PREFIX}pod_container_port_name"),
                        cp.name.clone().unwrap_or_default(),
                    );
                    t.insert(
                        format!("{PREFIX}pod_container_port_number"),
                        cp.container_port.to_string(),
                    );
                    t.insert(
                        format!("{PREFIX}pod_container_port_protocol"),
                        protocol
                            .map(str::to_owned)
                            .or_else(|| cp.protocol.clone())
                            .unwrap_or_default(),
                    );
                    t.insert(format!("{PREFIX}pod_container_init"), init.to_string());
                    break;
                }
            }
        }
        let key = super::meta::key(&pod.metadata);
        self.pods
            .entry(key)
            .or_insert_with(|| (pod, Vec::new()))
            .1
            .push(port);
    }

    /// One target per container port of a seen pod that no endpoint port covered.
    pub fn uncovered(&self, rel: &Related<'_>) -> Vec<Set> {
        let mut out = Vec::new();
        for (pod, ports) in self.pods.values() {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .unwrap_or_default();
            if ip.is_empty() {
                continue;
            }
            for (c, init) in containers(pod) {
                for cp in c.ports.iter().flatten() {
                    if ports.contains(&Some(cp.container_port)) {
                        continue;
                    }
                    let mut t = Set::new();
                    t.insert(
                        trawl_model::ADDRESS_LABEL.into(),
                        join_host_port(ip, cp.container_port),
                    );
                    t.insert(format!("{PREFIX}pod_container_name"), c.name.clone());
                    t.insert(
                        format!("{PREFIX}pod_container_image"),
                        c.image.clone().unwrap_or_default(),
                    );
                    t.insert(
                        format!("{PREFIX}pod_container_port_name"),
                        cp.name.clone().unwrap_or_default(),
                    );
                    t.insert(
                        format!("{PREFIX}pod_container_port_number"),
                        cp.container_port.to_string(),
                    );
                    t.insert(
                        format!("{PREFIX}pod_container_port_protocol"),
                        cp.protocol.clone().unwrap_or_default(),
                    );
                    t.insert(format!("{PREFIX}pod_container_init"), init.to_string());
                    t.extend(pod_set(pod, rel));
                    out.push(t);
                }
            }
        }
        out
    }
}
