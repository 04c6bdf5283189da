//! Kubernetes SD label mapping per role, checked against `shared/conformance/k8s-sd.md`
//! (pure functions: objects in, target groups out). Every expectation is the complete
//! label set, so a missing or an extra label fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use trawl_config::KubernetesAttachMetadata;
use trawl_discovery::TargetGroup;
use trawl_discovery::kubernetes::meta::{Index, Related, key};
use trawl_discovery::kubernetes::{endpoints, endpointslice, ingress, node, pod, service};
use trawl_model::Labels;

type Map = BTreeMap<String, String>;

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid Kubernetes object")
}

fn map(l: &Labels) -> Map {
    l.to_map()
}

/// A label map; empty values are absent, as in `Labels`.
fn m(pairs: &[(&str, &str)]) -> Map {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `base` plus `extra`.
fn with(base: &Map, extra: &[(&str, &str)]) -> Map {
    let mut out = base.clone();
    out.extend(m(extra));
    out
}

fn store<
    K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    objs: Vec<K>,
) -> BTreeMap<String, Arc<K>> {
    objs.into_iter()
        .map(|o| (key(o.metadata()), Arc::new(o)))
        .collect()
}

fn targets(g: &TargetGroup) -> Vec<Map> {
    g.targets.iter().map(map).collect()
}

fn web_pod(ip: &str) -> Pod {
    obj(json!({
        "metadata": {
            "name": "web-1", "namespace": "prod", "uid": "u-1",
            "labels": {"app": "web", "app.kubernetes.io/name": "web"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "o0"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "o1", "controller": true}
            ]
        },
        "spec": {
            "nodeName": "worker1",
            "containers": [
                {"name": "app", "image": "nginx:1", "ports": [
                    {"name": "http", "containerPort": 80, "protocol": "TCP"},
                    {"containerPort": 9113, "protocol": "TCP"}
                ]},
                {"name": "sidecar", "image": "busybox"}
            ],
            "initContainers": [
                {"name": "init", "image": "init:1", "ports": [{"name": "init-m", "containerPort": 9000, "protocol": "UDP"}]}
            ]
        },
        "status": {
            "podIP": ip, "hostIP": "192.168.1.10", "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"name": "app", "containerID": "containerd://abc", "image": "nginx:1", "imageID": "", "ready": true, "restartCount": 0}
            ],
            "initContainerStatuses": [
                {"name": "init", "containerID": "containerd://ini", "image": "init:1", "imageID": "", "ready": true, "restartCount": 0}
            ]
        }
    }))
}

/// The POD set of `web_pod`.
fn web_pod_set(ip: &str) -> Map {
    m(&[
        ("__meta_kubernetes_pod_name", "web-1"),
        ("__meta_kubernetes_pod_ip", ip),
        ("__meta_kubernetes_pod_ready", "false"),
        ("__meta_kubernetes_pod_phase", "Running"),
        ("__meta_kubernetes_pod_node_name", "worker1"),
        ("__meta_kubernetes_pod_host_ip", "192.168.1.10"),
        ("__meta_kubernetes_pod_uid", "u-1"),
        ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
        ("__meta_kubernetes_pod_controller_name", "web-abc"),
        ("__meta_kubernetes_pod_label_app", "web"),
        ("__meta_kubernetes_pod_labelpresent_app", "true"),
        ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "web"),
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
    ])
}

fn worker1() -> Node {
    obj(json!({
        "metadata": {"name": "worker1", "labels": {"topology.kubernetes.io/zone": "z1"}, "annotations": {"a/b": "c"}},
        "spec": {"providerID": "aws:///z1/i-1"},
        "status": {
            "addresses": [
                {"type": "Hostname", "address": "worker1"},
                {"type": "InternalIP", "address": "10.1.1.1"},
                {"type": "InternalIP", "address": "10.1.1.2"},
                {"type": "ExternalIP", "address": "1.2.3.4"}
            ],
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Custom.Thing", "status": "Unknown"}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
        }
    }))
}

fn worker1_meta() -> Map {
    m(&[
        ("__meta_kubernetes_node_name", "worker1"),
        (
            "__meta_kubernetes_node_label_topology_kubernetes_io_zone",
            "z1",
        ),
        (
            "__meta_kubernetes_node_labelpresent_topology_kubernetes_io_zone",
            "true",
        ),
        ("__meta_kubernetes_node_annotation_a_b", "c"),
        ("__meta_kubernetes_node_annotationpresent_a_b", "true"),
    ])
}

fn prod_ns() -> Namespace {
    obj(
        json!({"metadata": {"name": "prod", "labels": {"team": "blue"}, "annotations": {"owner": "ops"}}}),
    )
}

fn prod_ns_meta() -> Map {
    m(&[
        ("__meta_kubernetes_namespace_label_team", "blue"),
        ("__meta_kubernetes_namespace_labelpresent_team", "true"),
        ("__meta_kubernetes_namespace_annotation_owner", "ops"),
        (
            "__meta_kubernetes_namespace_annotationpresent_owner",
            "true",
        ),
    ])
}

// ---------------------------------------------------------------- pod

#[test]
fn pod_targets_per_container_port() {
    let p = web_pod("10.0.0.5");
    let g = pod::pod_group(&p, &Related::default());
    assert_eq!(g.source, "pod/prod/web-1");
    assert_eq!(
        map(&g.labels),
        with(
            &web_pod_set("10.0.0.5"),
            &[("__meta_kubernetes_namespace", "prod")]
        )
    );
    let c = |name: &str, image: &str, id: &str, init: &str| {
        m(&[
            ("__meta_kubernetes_pod_container_name", name),
            ("__meta_kubernetes_pod_container_image", image),
            ("__meta_kubernetes_pod_container_id", id),
            ("__meta_kubernetes_pod_container_init", init),
        ])
    };
    let app = c("app", "nginx:1", "containerd://abc", "false");
    assert_eq!(
        targets(&g),
        vec![
            with(
                &app,
                &[
                    ("__address__", "10.0.0.5:80"),
                    ("__meta_kubernetes_pod_container_port_name", "http"),
                    ("__meta_kubernetes_pod_container_port_number", "80"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                ]
            ),
            with(
                &app,
                &[
                    ("__address__", "10.0.0.5:9113"),
                    ("__meta_kubernetes_pod_container_port_number", "9113"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                ]
            ),
            // No ports: the bare pod IP, no port labels, unknown container id empty.
            with(
                &c("sidecar", "busybox", "", "false"),
                &[("__address__", "10.0.0.5")]
            ),
            with(
                &c("init", "init:1", "containerd://ini", "true"),
                &[
                    ("__address__", "10.0.0.5:9000"),
                    ("__meta_kubernetes_pod_container_port_name", "init-m"),
                    ("__meta_kubernetes_pod_container_port_number", "9000"),
                    ("__meta_kubernetes_pod_container_port_protocol", "UDP"),
                ]
            ),
        ]
    );
}

#[test]
fn pod_without_ip_has_no_targets_and_ipv6_is_bracketed() {
    let mut p = web_pod("");
    let g = pod::pod_group(&p, &Related::default());
    assert_eq!(g.source, "pod/prod/web-1");
    assert!(g.targets.is_empty());
    assert!(g.labels.is_empty());
    p = web_pod("fd00::5");
    let g = pod::pod_group(&p, &Related::default());
    assert_eq!(g.targets[0].get("__address__"), Some("[fd00::5]:80"));
    assert_eq!(g.targets[2].get("__address__"), Some("fd00::5"));
}

#[test]
fn pod_ready_unknown_and_job_owner() {
    let p: Pod = obj(json!({
        "metadata": {"name": "j-1", "namespace": "batch",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "nightly", "uid": "j", "controller": true}]},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"podIP": "10.0.0.9"}
    }));
    let g = pod::pod_group(&p, &Related::default());
    assert_eq!(g.labels.get("__meta_kubernetes_pod_ready"), Some("unknown"));
    assert_eq!(
        g.labels.get("__meta_kubernetes_pod_controller_kind"),
        Some("Job")
    );
    assert_eq!(g.labels.get("__meta_kubernetes_pod_job_name"), None);
    let rel = Related {
        attach: KubernetesAttachMetadata {
            job: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let g = pod::pod_group(&p, &rel);
    assert_eq!(
        g.labels.get("__meta_kubernetes_pod_job_name"),
        Some("nightly")
    );
}

#[test]
fn pod_deployment_and_cronjob_names() {
    let owned = |kind: &str, name: &str| json!([{"apiVersion": "v1", "kind": kind, "name": name, "uid": "x", "controller": true}]);
    let rs: ReplicaSet = obj(json!({
        "metadata": {"name": "web-abc", "namespace": "prod", "ownerReferences": owned("Deployment", "web")},
    }));
    let orphan_rs: ReplicaSet = obj(json!({"metadata": {"name": "lone-rs", "namespace": "prod"}}));
    let job: Job = obj(json!({
        "metadata": {"name": "nightly-123", "namespace": "prod", "ownerReferences": owned("CronJob", "nightly")},
    }));
    let rss = store(vec![rs, orphan_rs]);
    let jobs = store(vec![job]);
    let rel = Related {
        replicasets: Some(Index::new(vec![&rss])),
        jobs: Some(Index::new(vec![&jobs])),
        attach: KubernetesAttachMetadata {
            deployment: true,
            job: true,
            cronjob: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let pod = |owner: &str, name: &str| -> Pod {
        obj(json!({
            "metadata": {"name": "p", "namespace": "prod", "ownerReferences": owned(owner, name)},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"podIP": "10.0.0.1"}
        }))
    };
    let labels = |p: &Pod| map(&pod::pod_group(p, &rel).labels);
    let g = labels(&pod("ReplicaSet", "web-abc"));
    assert_eq!(g["__meta_kubernetes_pod_deployment_name"], "web");
    assert!(!g.contains_key("__meta_kubernetes_pod_job_name"));
    let g = labels(&pod("ReplicaSet", "lone-rs"));
    assert!(!g.contains_key("__meta_kubernetes_pod_deployment_name"));
    let g = labels(&pod("Job", "nightly-123"));
    assert_eq!(g["__meta_kubernetes_pod_job_name"], "nightly-123");
    assert_eq!(g["__meta_kubernetes_pod_cronjob_name"], "nightly");
    let g = labels(&pod("Job", "adhoc"));
    assert_eq!(g["__meta_kubernetes_pod_job_name"], "adhoc");
    assert!(!g.contains_key("__meta_kubernetes_pod_cronjob_name"));
    // Not attached: none of them.
    let g = map(&pod::pod_group(&pod("ReplicaSet", "web-abc"), &Related::default()).labels);
    assert!(!g.contains_key("__meta_kubernetes_pod_deployment_name"));
}

#[test]
fn pod_attach_node_and_namespace() {
    let p = web_pod("10.0.0.5");
    let nodes = store(vec![worker1()]);
    let nss = store(vec![prod_ns()]);
    let rel = Related {
        nodes: Some(Index::new(vec![&nodes])),
        namespaces: Some(Index::new(vec![&nss])),
        ..Default::default()
    };
    let g = pod::pod_group(&p, &rel);
    let mut want = with(
        &web_pod_set("10.0.0.5"),
        &[("__meta_kubernetes_namespace", "prod")],
    );
    want.extend(worker1_meta());
    want.extend(prod_ns_meta());
    assert_eq!(map(&g.labels), want);
    assert_eq!(g.targets.len(), 4);
    // A pod on a node missing from the (filtered) node cache is not a target.
    let none = BTreeMap::new();
    let rel = Related {
        nodes: Some(Index::new(vec![&none])),
        ..Default::default()
    };
    assert!(pod::pod_group(&p, &rel).targets.is_empty());
}

// ---------------------------------------------------------------- service

fn svc(spec: Value, status: Value) -> Service {
    obj(json!({
        "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}, "annotations": {"prometheus.io/port": "9113"}},
        "spec": spec,
        "status": status,
    }))
}

fn svc_group_labels() -> Map {
    m(&[
        ("__meta_kubernetes_namespace", "prod"),
        ("__meta_kubernetes_service_name", "web"),
        ("__meta_kubernetes_service_label_app", "web"),
        ("__meta_kubernetes_service_labelpresent_app", "true"),
        (
            "__meta_kubernetes_service_annotation_prometheus_io_port",
            "9113",
        ),
        (
            "__meta_kubernetes_service_annotationpresent_prometheus_io_port",
            "true",
        ),
    ])
}

#[test]
fn service_cluster_ip_ports() {
    let s = svc(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"port": 53, "protocol": "UDP"}
        ]}),
        json!({}),
    );
    let g = service::service_group(&s, &Related::default());
    assert_eq!(g.source, "svc/prod/web");
    assert_eq!(map(&g.labels), svc_group_labels());
    assert_eq!(
        targets(&g),
        vec![
            m(&[
                ("__address__", "web.prod.svc:80"),
                ("__meta_kubernetes_service_port_name", "http"),
                ("__meta_kubernetes_service_port_number", "80"),
                ("__meta_kubernetes_service_port_protocol", "TCP"),
                ("__meta_kubernetes_service_type", "ClusterIP"),
                ("__meta_kubernetes_service_cluster_ip", "10.96.0.10"),
            ]),
            m(&[
                ("__address__", "web.prod.svc:53"),
                ("__meta_kubernetes_service_port_number", "53"),
                ("__meta_kubernetes_service_port_protocol", "UDP"),
                ("__meta_kubernetes_service_type", "ClusterIP"),
                ("__meta_kubernetes_service_cluster_ip", "10.96.0.10"),
            ]),
        ]
    );
}

#[test]
fn service_external_name_and_load_balancer() {
    let s = svc(
        json!({"type": "ExternalName", "externalName": "db.example.com", "ports": [{"port": 5432, "protocol": "TCP"}]}),
        json!({}),
    );
    let t = &targets(&service::service_group(&s, &Related::default()))[0];
    assert_eq!(
        t.get("__meta_kubernetes_service_external_name")
            .map(String::as_str),
        Some("db.example.com")
    );
    assert!(!t.contains_key("__meta_kubernetes_service_cluster_ip"));
    let s = svc(
        json!({"type": "LoadBalancer", "clusterIP": "10.96.0.11", "loadBalancerIP": "5.5.5.5", "ports": [{"port": 443, "protocol": "TCP"}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}, {"hostname": "lb.example.com"}, {"ip": "2.2.2.2"}]}}),
    );
    let t = &targets(&service::service_group(&s, &Related::default()))[0];
    assert_eq!(
        t["__meta_kubernetes_service_loadbalancer_ip"],
        "1.1.1.1,2.2.2.2"
    );
    assert_eq!(t["__meta_kubernetes_service_cluster_ip"], "10.96.0.11");
    let s = svc(
        json!({"type": "LoadBalancer", "clusterIP": "None", "loadBalancerIP": "5.5.5.5", "ports": [{"port": 443, "protocol": "TCP"}]}),
        json!({"loadBalancer": {}}),
    );
    let t = &targets(&service::service_group(&s, &Related::default()))[0];
    assert_eq!(t["__meta_kubernetes_service_loadbalancer_ip"], "5.5.5.5");
    assert_eq!(t["__meta_kubernetes_service_cluster_ip"], "None");
    // Namespace metadata is a group label when attached.
    let nss = store(vec![prod_ns()]);
    let rel = Related {
        namespaces: Some(Index::new(vec![&nss])),
        ..Default::default()
    };
    let mut want = svc_group_labels();
    want.extend(prod_ns_meta());
    assert_eq!(map(&service::service_group(&s, &rel).labels), want);
}

// ---------------------------------------------------------------- node

#[test]
fn node_address_and_labels() {
    let g = node::node_group(&worker1());
    assert_eq!(g.source, "node/worker1");
    assert_eq!(
        map(&g.labels),
        with(
            &worker1_meta(),
            &[
                ("__meta_kubernetes_node_provider_id", "aws:///z1/i-1"),
                ("__meta_kubernetes_node_condition_ready", "true"),
                ("__meta_kubernetes_node_condition_memorypressure", "false"),
                ("__meta_kubernetes_node_condition_custom_thing", "unknown"),
            ]
        )
    );
    assert_eq!(
        targets(&g),
        vec![m(&[
            ("__address__", "10.1.1.1:10250"),
            ("instance", "worker1"),
            ("__meta_kubernetes_node_address_InternalIP", "10.1.1.1"),
            ("__meta_kubernetes_node_address_ExternalIP", "1.2.3.4"),
            ("__meta_kubernetes_node_address_Hostname", "worker1"),
        ])]
    );
}

#[test]
fn node_address_priority_and_ipv6() {
    let n = |addrs: Value| -> Node {
        obj(
            json!({"metadata": {"name": "n"}, "status": {"addresses": addrs, "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}),
        )
    };
    let addr = |v: Value| {
        node::node_group(&n(v))
            .targets
            .first()
            .and_then(|t| t.get("__address__").map(str::to_owned))
    };
    assert_eq!(
        addr(
            json!([{"type": "Hostname", "address": "h"}, {"type": "ExternalDNS", "address": "e.example"}, {"type": "InternalDNS", "address": "i.local"}])
        ),
        Some("i.local:10250".into())
    );
    assert_eq!(
        addr(
            json!([{"type": "Hostname", "address": "h"}, {"type": "LegacyHostIP", "address": "9.9.9.9"}])
        ),
        Some("9.9.9.9:10250".into())
    );
    assert_eq!(
        addr(json!([{"type": "InternalIP", "address": "fd00::1"}])),
        Some("[fd00::1]:10250".into())
    );
    assert_eq!(addr(json!([])), None);
    assert_eq!(addr(json!([{"type": "Weird", "address": "x"}])), None);
}

// ---------------------------------------------------------------- endpoints

fn web_endpoints() -> Endpoints {
    obj(json!({
        "metadata": {"name": "web", "namespace": "prod", "labels": {"k": "v"}},
        "subsets": [{
            "addresses": [
                {"ip": "10.0.0.5", "hostname": "h1", "nodeName": "worker1",
                 "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "prod"}},
                {"ip": "10.1.1.1", "targetRef": {"kind": "Node", "name": "worker1"}}
            ],
            "notReadyAddresses": [{"ip": "10.0.0.6"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
        }]
    }))
}

#[test]
fn endpoints_targets_pods_and_services() {
    let pods = store(vec![web_pod("10.0.0.5")]);
    let svcs = store(vec![svc(
        json!({"type": "ClusterIP", "ports": [{"port": 80}]}),
        json!({}),
    )]);
    let rel = Related {
        pods: Index::new(vec![&pods]),
        services: Index::new(vec![&svcs]),
        ..Default::default()
    };
    let g = endpoints::endpoints_group(&web_endpoints(), &rel);
    assert_eq!(g.source, "endpoints/prod/web");
    assert_eq!(
        map(&g.labels),
        with(
            &svc_group_labels(),
            &[
                ("__meta_kubernetes_endpoints_name", "web"),
                ("__meta_kubernetes_endpoints_label_k", "v"),
                ("__meta_kubernetes_endpoints_labelpresent_k", "true"),
            ]
        )
    );
    let port = [
        ("__meta_kubernetes_endpoint_port_name", "http"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
    ];
    let pod_set = web_pod_set("10.0.0.5");
    let container = |name: &str, image: &str, pname: &str, num: &str, proto: &str, init: &str| {
        m(&[
            ("__meta_kubernetes_pod_container_name", name),
            ("__meta_kubernetes_pod_container_image", image),
            ("__meta_kubernetes_pod_container_port_name", pname),
            ("__meta_kubernetes_pod_container_port_number", num),
            ("__meta_kubernetes_pod_container_port_protocol", proto),
            ("__meta_kubernetes_pod_container_init", init),
        ])
    };
    let mut first = with(&pod_set, &port);
    first.extend(container("app", "nginx:1", "http", "80", "TCP", "false"));
    first.extend(m(&[
        ("__address__", "10.0.0.5:80"),
        ("__meta_kubernetes_endpoint_ready", "true"),
        ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
        ("__meta_kubernetes_endpoint_address_target_name", "web-1"),
        ("__meta_kubernetes_endpoint_node_name", "worker1"),
        ("__meta_kubernetes_endpoint_hostname", "h1"),
    ]));
    let node_target = with(
        &m(&port),
        &[
            ("__address__", "10.1.1.1:80"),
            ("__meta_kubernetes_endpoint_ready", "true"),
            ("__meta_kubernetes_endpoint_address_target_kind", "Node"),
            ("__meta_kubernetes_endpoint_address_target_name", "worker1"),
        ],
    );
    let not_ready = with(
        &m(&port),
        &[
            ("__address__", "10.0.0.6:80"),
            ("__meta_kubernetes_endpoint_ready", "false"),
        ],
    );
    let mut extra_9113 = with(&pod_set, &[("__address__", "10.0.0.5:9113")]);
    extra_9113.extend(container("app", "nginx:1", "", "9113", "TCP", "false"));
    extra_9113.remove("__meta_kubernetes_pod_container_port_name");
    let mut extra_init = with(&pod_set, &[("__address__", "10.0.0.5:9000")]);
    extra_init.extend(container("init", "init:1", "init-m", "9000", "UDP", "true"));
    assert_eq!(
        targets(&g),
        vec![
            first,
            node_target.clone(),
            not_ready,
            extra_9113,
            extra_init
        ]
    );

    // Node metadata goes on the target, by nodeName or by a Node target ref.
    let nodes = store(vec![worker1()]);
    let rel = Related {
        pods: Index::new(vec![&pods]),
        nodes: Some(Index::new(vec![&nodes])),
        ..Default::default()
    };
    let g = endpoints::endpoints_group(&web_endpoints(), &rel);
    let t = targets(&g);
    for (k, v) in worker1_meta() {
        assert_eq!(t[0].get(&k), Some(&v), "pod-backed target {k}");
        assert_eq!(t[1].get(&k), Some(&v), "node-backed target {k}");
    }
    assert!(!t[2].contains_key("__meta_kubernetes_node_name"));
    // Without a service of the same name there are no service labels.
    assert!(!g.labels.has("__meta_kubernetes_service_name"));
}

// ---------------------------------------------------------------- endpointslice

fn web_slice(address_type: &str, addr: &str) -> EndpointSlice {
    obj(json!({
        "metadata": {"name": "web-x1", "namespace": "prod", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": address_type,
        "endpoints": [
            {"addresses": [addr], "conditions": {"ready": true, "serving": true, "terminating": false},
             "hostname": "h1", "nodeName": "worker1", "zone": "z1",
             "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "prod"},
             "deprecatedTopology": {"kubernetes.io/hostname": "worker1"}},
            {"addresses": ["10.0.0.7"]}
        ],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "appProtocol": "http"}, {"name": "noport"}]
    }))
}

#[test]
fn endpointslice_targets() {
    let pods = store(vec![web_pod("10.0.0.5")]);
    let svcs = store(vec![svc(
        json!({"type": "ClusterIP", "ports": [{"port": 80}]}),
        json!({}),
    )]);
    let rel = Related {
        pods: Index::new(vec![&pods]),
        services: Index::new(vec![&svcs]),
        ..Default::default()
    };
    let g = endpointslice::endpointslice_group(&web_slice("IPv4", "10.0.0.5"), &rel);
    assert_eq!(g.source, "endpointslice/prod/web-x1");
    assert_eq!(
        map(&g.labels),
        with(
            &svc_group_labels(),
            &[
                ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
                ("__meta_kubernetes_endpointslice_name", "web-x1"),
                (
                    "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name",
                    "web"
                ),
                (
                    "__meta_kubernetes_endpointslice_labelpresent_kubernetes_io_service_name",
                    "true"
                ),
            ]
        )
    );
    let ep1 = m(&[
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
            "true",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_serving",
            "true",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
            "false",
        ),
        ("__meta_kubernetes_endpointslice_endpoint_hostname", "h1"),
        (
            "__meta_kubernetes_endpointslice_endpoint_node_name",
            "worker1",
        ),
        ("__meta_kubernetes_endpointslice_endpoint_zone", "z1"),
        ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
        (
            "__meta_kubernetes_endpointslice_address_target_name",
            "web-1",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_topology_kubernetes_io_hostname",
            "worker1",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_topology_present_kubernetes_io_hostname",
            "true",
        ),
    ]);
    let http = m(&[
        ("__meta_kubernetes_endpointslice_port_name", "http"),
        ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
        ("__meta_kubernetes_endpointslice_port", "80"),
        ("__meta_kubernetes_endpointslice_port_app_protocol", "http"),
    ]);
    let pod_set = web_pod_set("10.0.0.5");
    let mut t0 = with(&ep1, &[("__address__", "10.0.0.5:80")]);
    t0.extend(http.clone());
    t0.extend(pod_set.clone());
    t0.extend(m(&[
        ("__meta_kubernetes_pod_container_name", "app"),
        ("__meta_kubernetes_pod_container_image", "nginx:1"),
        ("__meta_kubernetes_pod_container_port_name", "http"),
        ("__meta_kubernetes_pod_container_port_number", "80"),
        ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
        ("__meta_kubernetes_pod_container_init", "false"),
    ]));
    // A port without a number: the bare address and no port-number label.
    let mut t1 = with(
        &ep1,
        &[
            ("__address__", "10.0.0.5"),
            ("__meta_kubernetes_endpointslice_port_name", "noport"),
        ],
    );
    t1.extend(pod_set.clone());
    let t2 = with(&http, &[("__address__", "10.0.0.7:80")]);
    let t3 = m(&[
        ("__address__", "10.0.0.7"),
        ("__meta_kubernetes_endpointslice_port_name", "noport"),
    ]);
    let got = targets(&g);
    assert_eq!(got[..4], [t0, t1, t2, t3]);
    // Uncovered container ports of the pod: 9113 and the init container's 9000.
    let extra: Vec<&str> = got[4..].iter().map(|t| t["__address__"].as_str()).collect();
    assert_eq!(extra, ["10.0.0.5:9113", "10.0.0.5:9000"]);
    assert_eq!(got[5]["__meta_kubernetes_pod_container_init"], "true");
    assert!(
        !got[4]
            .keys()
            .any(|k| k.starts_with("__meta_kubernetes_endpointslice_"))
    );
}

#[test]
fn endpointslice_dual_stack_secondary_family_has_no_targets() {
    let svcs = store(vec![svc(
        json!({"type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]}),
        json!({}),
    )]);
    let rel = Related {
        services: Index::new(vec![&svcs]),
        ..Default::default()
    };
    let v6 = endpointslice::endpointslice_group(&web_slice("IPv6", "fd00::5"), &rel);
    assert!(v6.targets.is_empty());
    assert_eq!(v6.labels.get("__meta_kubernetes_service_name"), Some("web"));
    let v4 = endpointslice::endpointslice_group(&web_slice("IPv4", "10.0.0.5"), &rel);
    assert_eq!(v4.targets.len(), 4);
    // Single stack: every family is scraped.
    let single = store(vec![svc(
        json!({"type": "ClusterIP", "ipFamilies": ["IPv4"], "ports": [{"port": 80}]}),
        json!({}),
    )]);
    let rel = Related {
        services: Index::new(vec![&single]),
        ..Default::default()
    };
    let v6 = endpointslice::endpointslice_group(&web_slice("IPv6", "fd00::5"), &rel);
    assert_eq!(v6.targets[0].get("__address__"), Some("[fd00::5]:80"));
}

// ---------------------------------------------------------------- ingress

#[test]
fn ingress_rules_paths_and_scheme() {
    let ing: Ingress = obj(json!({
        "metadata": {"name": "site", "namespace": "prod", "labels": {"a": "b"}},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["*.example.com"]}],
            "rules": [
                {"host": "a.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {}},
                    {"path": "/api", "pathType": "Prefix", "backend": {}},
                    {"pathType": "ImplementationSpecific", "backend": {}}
                ]}},
                {"host": "b.other.com"},
                {"http": {"paths": [{"path": "/x", "pathType": "Exact", "backend": {}}]}}
            ]
        }
    }));
    let g = ingress::ingress_group(&ing, &Related::default());
    assert_eq!(g.source, "ingress/prod/site");
    assert_eq!(
        map(&g.labels),
        m(&[
            ("__meta_kubernetes_namespace", "prod"),
            ("__meta_kubernetes_ingress_class_name", "nginx"),
            ("__meta_kubernetes_ingress_name", "site"),
            ("__meta_kubernetes_ingress_label_a", "b"),
            ("__meta_kubernetes_ingress_labelpresent_a", "true"),
        ])
    );
    let t = |host: &str, path: &str, scheme: &str| {
        m(&[
            ("__address__", host),
            ("__meta_kubernetes_ingress_host", host),
            ("__meta_kubernetes_ingress_path", path),
            ("__meta_kubernetes_ingress_scheme", scheme),
        ])
    };
    assert_eq!(
        targets(&g),
        vec![
            t("a.example.com", "/", "https"),
            t("a.example.com", "/api", "https"),
            t("a.example.com", "/", "https"),
            t("b.other.com", "/", "http"),
            // No host: no address (empty values are absent).
            m(&[
                ("__meta_kubernetes_ingress_path", "/x"),
                ("__meta_kubernetes_ingress_scheme", "http"),
            ]),
        ]
    );
}
