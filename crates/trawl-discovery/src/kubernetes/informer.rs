//! Shared informers: one watch per (API server, kind, namespace, selectors), shared
//! by every job that needs it and stopped when the last user is gone.
//!
//! An informer keeps the current objects of its watch in a [`Store`] published on a
//! `tokio::sync::watch` channel. The watch is kube-runtime's watcher: it lists, then
//! watches from the list's resourceVersion, follows bookmarks, resumes a broken watch
//! from the last version seen, and relists after `410 Gone`, with exponential backoff
//! on errors. A relist is applied to the store in one step when it is complete, so
//! readers never see a half-listed cluster (no spurious deletions).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use futures_util::StreamExt;
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::meta::key;

/// The objects of one watch.
#[derive(Debug)]
pub struct Store<K> {
    /// Objects by `ns/name` (or `name`).
    pub objects: BTreeMap<String, Arc<K>>,
    /// Whether the initial list has completed.
    pub synced: bool,
    /// Bumped on every change, so readers can tell whether anything changed.
    pub version: u64,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            objects: self.objects.clone(),
            synced: self.synced,
            version: self.version,
        }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            synced: false,
            version: 0,
        }
    }
}

/// What identifies a shared watch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InformerKey {
    /// The API server settings ([`super::client::identity`]).
    pub server: String,
    /// The resource kind.
    pub kind: &'static str,
    /// `None` for cluster-wide.
    pub namespace: Option<String>,
    /// Label selector.
    pub label: Option<String>,
    /// Field selector.
    pub field: Option<String>,
}

/// A running watch; dropping the last handle stops it.
#[derive(Debug)]
pub struct Informer<K> {
    rx: watch::Receiver<Arc<Store<K>>>,
    task: AbortHandle,
}

impl<K> Drop for Informer<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K> Informer<K> {
    /// A receiver of store updates.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Store<K>>> {
        self.rx.clone()
    }
}

type Registry = Mutex<HashMap<InformerKey, Weak<dyn Any + Send + Sync>>>;

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Resource kinds with a cluster-wide or namespaced API.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// The registry's name for the kind.
    const KIND: &'static str;
    /// Whether objects live in namespaces.
    const NAMESPACED: bool;
    /// The API for one namespace (namespaced kinds) or the whole cluster.
    fn api(client: kube::Client, namespace: Option<&str>) -> kube::Api<Self>;
}

macro_rules! watched {
    ($t:ty, $name:literal, namespaced) => {
        impl Watched for $t {
            const KIND: &'static str = $name;
            const NAMESPACED: bool = true;
            fn api(client: kube::Client, namespace: Option<&str>) -> kube::Api<Self> {
                match namespace {
                    Some(ns) => kube::Api::namespaced(client, ns),
                    None => kube::Api::all(client),
                }
            }
        }
    };
    ($t:ty, $name:literal, cluster) => {
        impl Watched for $t {
            const KIND: &'static str = $name;
            const NAMESPACED: bool = false;
            fn api(client: kube::Client, _: Option<&str>) -> kube::Api<Self> {
                kube::Api::all(client)
            }
        }
    };
}

watched!(k8s_openapi::api::core::v1::Pod, "pod", namespaced);
watched!(k8s_openapi::api::core::v1::Service, "service", namespaced);
watched!(
    k8s_openapi::api::core::v1::Endpoints,
    "endpoints",
    namespaced
);
watched!(
    k8s_openapi::api::discovery::v1::EndpointSlice,
    "endpointslice",
    namespaced
);
watched!(
    k8s_openapi::api::networking::v1::Ingress,
    "ingress",
    namespaced
);
watched!(
    k8s_openapi::api::apps::v1::ReplicaSet,
    "replicaset",
    namespaced
);
watched!(k8s_openapi::api::batch::v1::Job, "job", namespaced);
watched!(k8s_openapi::api::core::v1::Node, "node", cluster);
watched!(k8s_openapi::api::core::v1::Namespace, "namespace", cluster);

/// The shared informer for `key`, started with `client` when none is running.
pub fn informer<K: Watched>(
    client: &kube::Client,
    server: &str,
    namespace: Option<&str>,
    label: Option<&str>,
    field: Option<&str>,
) -> Arc<Informer<K>> {
    let key = InformerKey {
        server: server.to_owned(),
        kind: K::KIND,
        namespace: namespace.filter(|_| K::NAMESPACED).map(str::to_owned),
        label: label.filter(|s| !s.is_empty()).map(str::to_owned),
        field: field.filter(|s| !s.is_empty()).map(str::to_owned),
    };
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.retain(|_, w| w.strong_count() > 0);
    if let Some(i) = reg
        .get(&key)
        .and_then(Weak::upgrade)
        .and_then(|a| a.downcast::<Informer<K>>().ok())
    {
        return i;
    }
    let api = K::api(client.clone(), key.namespace.as_deref());
    let mut wc = watcher::Config::default();
    if let Some(l) = &key.label {
        wc = wc.labels(l);
    }
    if let Some(f) = &key.field {
        wc = wc.fields(f);
    }
    let (tx, rx) = watch::channel(Arc::new(Store::default()));
    let task = tokio::spawn(run(api, wc, tx, key.clone())).abort_handle();
    let inf = Arc::new(Informer { rx, task });
    let any: Arc<dyn Any + Send + Sync> = inf.clone();
    reg.insert(key, Arc::downgrade(&any));
    inf
}

async fn run<K: Watched>(
    api: kube::Api<K>,
    wc: watcher::Config,
    tx: watch::Sender<Arc<Store<K>>>,
    key: InformerKey,
) {
    let mut stream = watcher::watcher(api, wc).default_backoff().boxed();
    // Objects of a relist in progress; applied when it completes.
    let mut relist: Option<BTreeMap<String, Arc<K>>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => relist = Some(BTreeMap::new()),
            Ok(Event::InitApply(o)) => {
                relist
                    .get_or_insert_default()
                    .insert(key_of(&o), Arc::new(o));
            }
            Ok(Event::InitDone) => {
                let listed = relist.take().unwrap_or_default();
                tx.send_modify(|s| {
                    // Objects the relist found unchanged keep their identity, so readers
                    // can skip recomputing them.
                    let objects = listed
                        .into_iter()
                        .map(|(k, o)| match s.objects.get(&k) {
                            Some(prev) if same_version(&**prev, &*o) => (k, Arc::clone(prev)),
                            _ => (k, o),
                        })
                        .collect();
                    *s = Arc::new(Store {
                        objects,
                        synced: true,
                        version: s.version + 1,
                    })
                });
            }
            Ok(Event::Apply(o)) => tx.send_modify(|s| {
                let st = Arc::make_mut(s);
                st.objects.insert(key_of(&o), Arc::new(o));
                st.version += 1;
            }),
            Ok(Event::Delete(o)) => tx.send_modify(|s| {
                let st = Arc::make_mut(s);
                st.objects.remove(&key_of(&o));
                st.version += 1;
            }),
            Err(e) => {
                tracing::warn!(kind = key.kind, namespace = ?key.namespace, error = %e, "kubernetes SD: watch failed, retrying");
            }
        }
    }
}

fn key_of<K: Resource>(o: &K) -> String {
    key(o.meta())
}

fn same_version<K: Resource>(a: &K, b: &K) -> bool {
    let (a, b) = (&a.meta().resource_version, &b.meta().resource_version);
    a.is_some() && a == b
}
