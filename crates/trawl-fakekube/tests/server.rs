//! The fake API server over real HTTP: list, watch, selectors, replay, bookmarks,
//! server-side breaks and 410 Gone.

use std::time::Duration;

use serde_json::{Value, json};
use trawl_fakekube::{FakeKube, Kind};

const DEADLINE: Duration = Duration::from_secs(10);

fn pod(ns: &str, name: &str, app: &str, node: &str) -> Value {
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node},
    })
}

/// reqwest is built without a default TLS provider (see BUILD-NOTES).
fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn get(url: &str) -> Value {
    init();
    let r = reqwest::get(url).await.expect("request");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    serde_json::from_slice(&r.bytes().await.expect("body")).expect("json")
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Reads a watch response line by line.
struct Watch {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Watch {
    async fn open(url: &str) -> Watch {
        init();
        let resp = reqwest::get(url).await.expect("watch");
        assert!(resp.status().is_success());
        Watch {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event, or `None` when the server ended the response.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("event json"));
            }
            let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk())
                .await
                .expect("watch event in time")
                .expect("chunk")?;
            self.buf.extend_from_slice(&chunk);
        }
    }
}

fn ev(v: &Value) -> (String, String) {
    (
        v["type"].as_str().unwrap_or_default().to_owned(),
        v["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn list_with_namespaces_and_selectors() {
    let k = FakeKube::start().await.expect("start");
    k.apply(pod("a", "p1", "x", "w1")).expect("apply");
    k.apply(pod("a", "p2", "y", "w2")).expect("apply");
    k.apply(pod("b", "p3", "x", "w1")).expect("apply");
    let u = k.url();
    assert_eq!(
        names(&get(&format!("{u}/api/v1/pods")).await),
        ["p1", "p2", "p3"]
    );
    assert_eq!(
        names(&get(&format!("{u}/api/v1/namespaces/a/pods")).await),
        ["p1", "p2"]
    );
    assert_eq!(
        names(&get(&format!("{u}/api/v1/pods?labelSelector=app%3Dx")).await),
        ["p1", "p3"]
    );
    assert_eq!(
        names(&get(&format!("{u}/api/v1/pods?fieldSelector=spec.nodeName%3Dw2")).await),
        ["p2"]
    );
    assert_eq!(
        names(&get(&format!("{u}/api/v1/pods?labelSelector=app%20in%20(y,z)")).await),
        ["p2"]
    );
    let list = get(&format!("{u}/api/v1/pods")).await;
    assert_eq!(list["metadata"]["resourceVersion"], "3");
    assert_eq!(list["kind"], "PodList");
    init();
    let bad = reqwest::get(format!("{u}/api/v1/pods?fieldSelector=nonsense"))
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    let missing = reqwest::get(format!("{u}/api/v1/secrets"))
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    let s = k.stats();
    assert_eq!(
        s.count(Kind::Pod, false),
        7,
        "the bad request is logged too"
    );
    assert_eq!(s.requests[1].namespace.as_deref(), Some("a"));
}

#[tokio::test]
async fn watch_replays_streams_and_filters() {
    let k = FakeKube::start().await.expect("start");
    let rv0 = k.apply(pod("a", "p1", "x", "w1")).expect("apply");
    k.apply(pod("a", "p2", "x", "w1")).expect("apply");
    let u = k.url();
    let mut w = Watch::open(&format!(
        "{u}/api/v1/pods?watch=true&resourceVersion={rv0}&labelSelector=app%3Dx"
    ))
    .await;
    assert_eq!(
        ev(&w.next().await.expect("replayed")),
        ("ADDED".into(), "p2".into())
    );
    k.apply(pod("a", "p1", "x", "w2")).expect("modify");
    assert_eq!(
        ev(&w.next().await.expect("live")),
        ("MODIFIED".into(), "p1".into())
    );
    k.apply(pod("a", "p1", "other", "w2")).expect("relabel");
    assert_eq!(
        ev(&w.next().await.expect("leaves")),
        ("DELETED".into(), "p1".into())
    );
    k.delete(Kind::Pod, "a", "p2").expect("delete");
    let d = w.next().await.expect("deleted");
    assert_eq!(ev(&d), ("DELETED".into(), "p2".into()));
    assert_eq!(
        d["object"]["metadata"]["resourceVersion"],
        k.resource_version().to_string()
    );
    assert_eq!(k.stats().open(Kind::Pod), 1);
    k.close_watches();
    assert!(w.next().await.is_none(), "closed by the server");
    k.wait_until(|s| s.open(Kind::Pod) == 0).await;
}

#[tokio::test]
async fn bookmarks_only_when_allowed() {
    let k = FakeKube::start().await.expect("start");
    k.apply(pod("a", "p1", "x", "w1")).expect("apply");
    let u = k.url();
    let mut with = Watch::open(&format!(
        "{u}/api/v1/pods?watch=true&resourceVersion=1&allowWatchBookmarks=true"
    ))
    .await;
    let mut without = Watch::open(&format!("{u}/api/v1/pods?watch=true&resourceVersion=1")).await;
    let v = k.bookmark();
    let b = with.next().await.expect("bookmark");
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(b["object"]["metadata"]["resourceVersion"], v.to_string());
    k.apply(pod("a", "p2", "x", "w1")).expect("apply");
    assert_eq!(
        ev(&without.next().await.expect("event")).1,
        "p2",
        "no bookmark first"
    );
}

#[tokio::test]
async fn stale_version_gets_410_and_unversioned_watch_gets_state() {
    let k = FakeKube::start().await.expect("start");
    let rv = k.apply(pod("a", "p1", "x", "w1")).expect("apply");
    let compacted = k.compact();
    assert!(compacted > rv);
    let u = k.url();
    let mut w = Watch::open(&format!("{u}/api/v1/pods?watch=true&resourceVersion={rv}")).await;
    let e = w.next().await.expect("error event");
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(w.next().await.is_none());
    assert_eq!(k.stats().gone_sent, 1);
    // From the compacted version on, watching works again.
    let mut ok = Watch::open(&format!(
        "{u}/api/v1/pods?watch=true&resourceVersion={compacted}"
    ))
    .await;
    k.apply(pod("a", "p2", "x", "w1")).expect("apply");
    assert_eq!(ev(&ok.next().await.expect("event")).1, "p2");
    let mut fresh = Watch::open(&format!("{u}/api/v1/pods?watch=true")).await;
    let mut got = vec![
        ev(&fresh.next().await.expect("a")),
        ev(&fresh.next().await.expect("b")),
    ];
    got.sort();
    assert_eq!(
        got,
        [("ADDED".into(), "p1".into()), ("ADDED".into(), "p2".into())]
    );
}

#[tokio::test]
async fn cluster_scoped_and_grouped_kinds() {
    let k = FakeKube::start().await.expect("start");
    k.apply(json!({"kind": "Node", "metadata": {"name": "n1"}}))
        .expect("node");
    k.apply(json!({"kind": "Namespace", "metadata": {"name": "ns1", "labels": {"team": "t"}}}))
        .expect("namespace");
    k.apply(json!({"kind": "EndpointSlice", "metadata": {"name": "s", "namespace": "ns1"}, "addressType": "IPv4", "endpoints": []}))
        .expect("slice");
    k.apply(json!({"kind": "Ingress", "metadata": {"name": "i", "namespace": "ns1"}}))
        .expect("ingress");
    assert!(
        k.apply(json!({"kind": "Pod", "metadata": {"name": "p"}}))
            .is_err()
    );
    assert!(
        k.apply(json!({"kind": "Secret", "metadata": {"name": "p"}}))
            .is_err()
    );
    let u = k.url();
    assert_eq!(names(&get(&format!("{u}/api/v1/nodes")).await), ["n1"]);
    assert_eq!(
        names(&get(&format!("{u}/api/v1/namespaces")).await),
        ["ns1"]
    );
    let s = get(&format!(
        "{u}/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices"
    ))
    .await;
    assert_eq!(names(&s), ["s"]);
    assert_eq!(s["items"][0]["apiVersion"], "discovery.k8s.io/v1");
    assert_eq!(
        names(&get(&format!("{u}/apis/networking.k8s.io/v1/ingresses")).await),
        ["i"]
    );
    assert!(k.delete(Kind::Node, "ignored", "n1").is_some());
    assert!(k.delete(Kind::Node, "", "n1").is_none());
}
