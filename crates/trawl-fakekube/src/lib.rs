//! A fake Kubernetes API server for tests, on `127.0.0.1:0`.
//!
//! It serves `list` and `watch` for pods, services, endpoints, nodes, namespaces
//! (core/v1), endpointslices (discovery.k8s.io/v1), ingresses (networking.k8s.io/v1),
//! replicasets (apps/v1) and jobs (batch/v1),
//! cluster-wide and per namespace, with `labelSelector` / `fieldSelector` filtering.
//! The test scripts the cluster: [`FakeKube::apply`] creates or replaces an object,
//! [`FakeKube::delete`] removes one; each change gets the next resourceVersion and is
//! delivered to open watches. Watches started from an older resourceVersion are
//! replayed from the event history; [`FakeKube::compact`] drops that history so such a
//! watch gets an `ERROR` event with a `410` Status ("too old resource version"), as an
//! etcd compaction does. [`FakeKube::close_watches`] ends every open watch (a server-side
//! break) and [`FakeKube::bookmark`] sends a `BOOKMARK` to watches that allow them.
//!
//! Everything the test may need to wait for (requests made, watches open) is observable
//! through [`FakeKube::wait_until`], so tests synchronise on facts, never on time.
//!
//! Invariants: resourceVersions strictly increase; a watch never delivers an event
//! twice nor skips one (a watch whose subscriber lags is closed instead, so the client
//! resumes from its last version); selector changes are seen as `ADDED`/`DELETED` by a
//! filtered watch, as the API server does.

pub mod selector;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use selector::Selector;

/// The resource kinds the server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 Pod
    Pod,
    /// core/v1 Service
    Service,
    /// core/v1 Endpoints
    Endpoints,
    /// discovery.k8s.io/v1 EndpointSlice
    EndpointSlice,
    /// core/v1 Node
    Node,
    /// networking.k8s.io/v1 Ingress
    Ingress,
    /// core/v1 Namespace
    Namespace,
    /// apps/v1 ReplicaSet
    ReplicaSet,
    /// batch/v1 Job
    Job,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Pod,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::Node,
        Kind::Ingress,
        Kind::Namespace,
        Kind::ReplicaSet,
        Kind::Job,
    ];

    /// The `kind` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::Ingress => "Ingress",
            Kind::Namespace => "Namespace",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Job => "Job",
        }
    }

    /// The URL plural.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
            Kind::Node => "nodes",
            Kind::Ingress => "ingresses",
            Kind::Namespace => "namespaces",
            Kind::ReplicaSet => "replicasets",
            Kind::Job => "jobs",
        }
    }

    /// The `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Ingress => "networking.k8s.io/v1",
            Kind::ReplicaSet => "apps/v1",
            Kind::Job => "batch/v1",
            _ => "v1",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Node | Kind::Namespace)
    }

    /// Parses a `kind` field.
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn from_path(api_version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.plural() == plural)
    }
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLog {
    /// The kind asked for.
    pub kind: Kind,
    /// The namespace of a namespaced path.
    pub namespace: Option<String>,
    /// A watch (else a list).
    pub watch: bool,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// What the test may wait for.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Every request, in arrival order.
    pub requests: Vec<RequestLog>,
    /// Watches currently open, per kind.
    pub open_watches: BTreeMap<Kind, usize>,
    /// How many `410 Gone` errors were sent.
    pub gone_sent: usize,
}

impl Stats {
    /// Requests for `kind` that were lists (`watch == false`) or watches.
    pub fn count(&self, kind: Kind, watch: bool) -> usize {
        self.requests
            .iter()
            .filter(|r| r.kind == kind && r.watch == watch)
            .count()
    }

    /// Open watches for `kind`.
    pub fn open(&self, kind: Kind) -> usize {
        self.open_watches.get(&kind).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    kind: Kind,
    old: Option<Value>,
    new: Option<Value>,
}

#[derive(Clone, Debug)]
enum Signal {
    Change(Arc<Change>),
    Bookmark(u64),
    Close,
}

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    /// Watches from a version below this get 410.
    compacted: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    history: Vec<Arc<Change>>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    signals: broadcast::Sender<Signal>,
    stats: watch::Sender<Stats>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake server; dropping it stops the server.
#[derive(Debug)]
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A failure of the test's own script (not of the client under test).
#[derive(Debug, PartialEq, Eq)]
pub struct ScriptError(pub String);

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScriptError {}

impl FakeKube {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<FakeKube> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (signals, _) = broadcast::channel(4096);
        let (stats, _) = watch::channel(Stats::default());
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            signals,
            stats,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeKube { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.inner).rv
    }

    /// Creates or replaces an object (its `kind` field names the kind; namespaced
    /// kinds need `metadata.namespace`). Sets `metadata.resourceVersion`, and a
    /// deterministic `metadata.uid` when absent. Returns the new resourceVersion.
    pub fn apply(&self, mut obj: Value) -> Result<u64, ScriptError> {
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .and_then(Kind::from_name)
            .ok_or_else(|| ScriptError(format!("object without a known kind: {obj}")))?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| ScriptError("object without metadata.name".into()))?
            .to_owned();
        let ns = if kind.namespaced() {
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .ok_or_else(|| ScriptError(format!("{} {name} without a namespace", kind.name())))?
                .to_owned()
        } else {
            String::new()
        };
        obj["apiVersion"] = json!(kind.api_version());
        let mut inner = lock(&self.shared.inner);
        inner.rv += 1;
        let rv = inner.rv;
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        if meta.get("uid").is_none() {
            meta["uid"] = json!(format!("uid-{}-{ns}-{name}", kind.plural()));
        }
        let old = inner.objects.insert((kind, ns, name), obj.clone());
        self.publish(
            &mut inner,
            Change {
                rv,
                kind,
                old,
                new: Some(obj),
            },
        );
        Ok(rv)
    }

    /// Deletes an object; `namespace` is ignored for cluster-scoped kinds. Returns the
    /// deletion's resourceVersion, or `None` when there was no such object.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Option<u64> {
        let ns = if kind.namespaced() { namespace } else { "" };
        let mut inner = lock(&self.shared.inner);
        let mut old = inner
            .objects
            .remove(&(kind, ns.to_owned(), name.to_owned()))?;
        inner.rv += 1;
        let rv = inner.rv;
        // A deleted object is delivered with the deletion's resourceVersion.
        old["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.publish(
            &mut inner,
            Change {
                rv,
                kind,
                old: Some(old),
                new: None,
            },
        );
        Some(rv)
    }

    fn publish(&self, inner: &mut Inner, change: Change) {
        let c = Arc::new(change);
        inner.history.push(Arc::clone(&c));
        // Sent under the lock so a watch that subscribes while holding it sees every
        // change after its snapshot exactly once.
        let _ = self.shared.signals.send(Signal::Change(c));
    }

    /// Drops the event history: a watch from any version older than the next one
    /// gets `410 Gone`. Returns the version below which watches fail.
    pub fn compact(&self) -> u64 {
        let mut inner = lock(&self.shared.inner);
        // Bumping the version makes even a client that has seen every event "too old".
        inner.rv += 1;
        inner.compacted = inner.rv;
        inner.history.clear();
        inner.compacted
    }

    /// Ends every open watch (the client sees the response end).
    pub fn close_watches(&self) {
        let _inner = lock(&self.shared.inner);
        let _ = self.shared.signals.send(Signal::Close);
    }

    /// Sends a `BOOKMARK` with the current version to every watch that allows them.
    /// Returns that version.
    pub fn bookmark(&self) -> u64 {
        let inner = lock(&self.shared.inner);
        let _ = self.shared.signals.send(Signal::Bookmark(inner.rv));
        inner.rv
    }

    /// A snapshot of the request log and watch counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats.borrow().clone()
    }

    /// Waits until `pred` holds for the stats. Callers bound it with a timeout.
    pub async fn wait_until(&self, mut pred: impl FnMut(&Stats) -> bool) -> Stats {
        let mut rx = self.shared.stats.subscribe();
        match rx.wait_for(|s| pred(s)).await {
            Ok(s) => s.clone(),
            // The sender lives as long as `self`.
            Err(_) => self.stats(),
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn error_response(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        [("content-type", "application/json")],
        status(code.as_u16(), reason, message).to_string(),
    )
        .into_response()
}

/// Splits `/api/v1/...` and `/apis/<group>/<version>/...` into (kind, namespace).
fn route(path: &str) -> Option<(Kind, Option<String>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    match rest {
        [plural] => Kind::from_path(&api_version, plural).map(|k| (k, None)),
        ["namespaces", ns, plural] => {
            let k = Kind::from_path(&api_version, plural)?;
            k.namespaced().then(|| (k, Some((*ns).to_owned())))
        }
        _ => None,
    }
}

/// What one list or watch request selects.
#[derive(Debug)]
struct Filter {
    kind: Kind,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(|k| selector::label_of(obj, k))
            && self.fields.matches(|k| selector::field_of(obj, k))
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let Some((kind, namespace)) = route(uri.path()) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ),
        );
    };
    let is_watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    shared.stats.send_modify(|s| {
        s.requests.push(RequestLog {
            kind,
            namespace: namespace.clone(),
            watch: is_watch,
            query: query.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    });
    let parse = |key: &str, f: fn(&str) -> Result<Selector, String>| {
        query
            .get(key)
            .map(|s| f(s))
            .unwrap_or(Ok(Selector::default()))
    };
    let (labels, fields) = match (
        parse("labelSelector", Selector::parse_labels),
        parse("fieldSelector", Selector::parse_fields),
    ) {
        (Ok(l), Ok(f)) => (l, f),
        (Err(e), _) | (_, Err(e)) => {
            return error_response(StatusCode::BAD_REQUEST, "BadRequest", &e);
        }
    };
    let filter = Filter {
        kind,
        namespace,
        labels,
        fields,
    };
    if is_watch {
        let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        watch_response(
            &shared,
            filter,
            query.get("resourceVersion").cloned(),
            bookmarks,
        )
    } else {
        list_response(&shared, &filter)
    }
}

fn list_response(shared: &Shared, filter: &Filter) -> Response {
    let inner = lock(&shared.inner);
    let items: Vec<&Value> = inner
        .objects
        .iter()
        .filter(|((k, _, _), o)| *k == filter.kind && filter.matches(o))
        .map(|(_, o)| o)
        .collect();
    let body = json!({
        "kind": format!("{}List", filter.kind.name()),
        "apiVersion": filter.kind.api_version(),
        "metadata": {"resourceVersion": inner.rv.to_string()},
        "items": items,
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Translates one change for a filtered watch: an object entering the selection is
/// `ADDED`, one leaving it `DELETED`.
fn translate(filter: &Filter, c: &Change) -> Option<Bytes> {
    if c.kind != filter.kind {
        return None;
    }
    let was = c.old.as_ref().is_some_and(|o| filter.matches(o));
    let is = c.new.as_ref().is_some_and(|o| filter.matches(o));
    match (was, is, &c.new, &c.old) {
        (true, true, Some(n), _) => Some(event_line("MODIFIED", n)),
        (false, true, Some(n), _) => Some(event_line("ADDED", n)),
        (true, false, Some(n), _) => Some(event_line("DELETED", n)),
        (true, false, None, Some(o)) => Some(event_line("DELETED", o)),
        _ => None,
    }
}

/// Decrements the open-watch count when the response body is dropped.
#[derive(Debug)]
struct WatchGuard {
    shared: Arc<Shared>,
    kind: Kind,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let kind = self.kind;
        self.shared.stats.send_modify(|s| {
            if let Some(n) = s.open_watches.get_mut(&kind) {
                *n = n.saturating_sub(1);
            }
        });
    }
}

struct WatchState {
    pending: VecDeque<Bytes>,
    rx: Option<broadcast::Receiver<Signal>>,
    filter: Filter,
    bookmarks: bool,
    _guard: WatchGuard,
}

fn watch_response(
    shared: &Arc<Shared>,
    filter: Filter,
    rv: Option<String>,
    bookmarks: bool,
) -> Response {
    let from: Option<u64> = match rv.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => match s.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resource version {s:?}"),
                );
            }
        },
    };
    let mut pending = VecDeque::new();
    let rx;
    {
        let inner = lock(&shared.inner);
        match from {
            Some(v) if v < inner.compacted => {
                pending.push_back(event_line(
                    "ERROR",
                    &status(
                        410,
                        "Expired",
                        &format!("too old resource version: {v} ({})", inner.compacted),
                    ),
                ));
                rx = None;
                shared.stats.send_modify(|s| s.gone_sent += 1);
            }
            Some(v) => {
                for c in inner.history.iter().filter(|c| c.rv > v) {
                    pending.extend(translate(&filter, c));
                }
                rx = Some(shared.signals.subscribe());
            }
            None => {
                // No version: the current state as ADDED events, then live changes.
                for ((k, _, _), o) in &inner.objects {
                    if *k == filter.kind && filter.matches(o) {
                        pending.push_back(event_line("ADDED", o));
                    }
                }
                rx = Some(shared.signals.subscribe());
            }
        }
    }
    let kind = filter.kind;
    shared
        .stats
        .send_modify(|s| *s.open_watches.entry(kind).or_default() += 1);
    let state = WatchState {
        pending,
        rx,
        filter,
        bookmarks,
        _guard: WatchGuard {
            shared: Arc::clone(shared),
            kind,
        },
    };
    let body = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(b), st));
            }
            let rx = st.rx.as_mut()?;
            match rx.recv().await {
                Ok(Signal::Change(c)) => st.pending.extend(translate(&st.filter, &c)),
                Ok(Signal::Bookmark(v)) if st.bookmarks => {
                    st.pending.push_back(event_line(
                        "BOOKMARK",
                        &json!({
                            "kind": st.filter.kind.name(),
                            "apiVersion": st.filter.kind.api_version(),
                            "metadata": {"resourceVersion": v.to_string()},
                        }),
                    ));
                }
                Ok(Signal::Bookmark(_)) => {}
                // Closed by the test, or lagging: end the response; the client resumes.
                Ok(Signal::Close) | Err(_) => return None,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "body")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api/v1/pods"), Some((Kind::Pod, None)));
        assert_eq!(
            route("/api/v1/namespaces/ns1/pods"),
            Some((Kind::Pod, Some("ns1".into())))
        );
        assert_eq!(route("/api/v1/namespaces"), Some((Kind::Namespace, None)));
        assert_eq!(
            route("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices"),
            Some((Kind::EndpointSlice, Some("x".into())))
        );
        assert_eq!(
            route("/apis/networking.k8s.io/v1/ingresses"),
            Some((Kind::Ingress, None))
        );
        assert_eq!(route("/api/v1/namespaces/x/nodes"), None);
        assert_eq!(route("/apis/extensions/v1beta1/ingresses"), None);
    }

    #[test]
    fn filtered_watch_translation() {
        let f = Filter {
            kind: Kind::Pod,
            namespace: None,
            labels: Selector::parse_labels("app=a").expect("selector"),
            fields: Selector::default(),
        };
        let a = json!({"metadata": {"name": "p", "labels": {"app": "a"}}});
        let b = json!({"metadata": {"name": "p", "labels": {"app": "b"}}});
        let ev = |old: Option<&Value>, new: Option<&Value>| {
            translate(
                &f,
                &Change {
                    rv: 1,
                    kind: Kind::Pod,
                    old: old.cloned(),
                    new: new.cloned(),
                },
            )
            .map(|b| {
                serde_json::from_slice::<Value>(&b).expect("json")["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
        };
        assert_eq!(ev(None, Some(&a)).as_deref(), Some("ADDED"));
        assert_eq!(ev(Some(&a), Some(&a)).as_deref(), Some("MODIFIED"));
        assert_eq!(ev(Some(&a), Some(&b)).as_deref(), Some("DELETED"));
        assert_eq!(ev(Some(&b), Some(&a)).as_deref(), Some("ADDED"));
        assert_eq!(ev(Some(&a), None).as_deref(), Some("DELETED"));
        assert_eq!(ev(None, Some(&b)), None);
    }
}
