//! Providers: each runs until aborted and sends `Vec<TargetGroup>` updates on a channel.
//!
//! Sources follow Prometheus: static groups are `"0"`, `"1"`, …; file groups are
//! `"<path>:<i>"` with `__meta_filepath`; HTTP groups are `"<url>:<i>"` with `__meta_url`.
//! When a file disappears, or a document now has fewer groups, the vanished sources are
//! sent as empty groups. A read, decode or fetch failure is logged and the last good
//! groups stay in place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::mpsc;
use trawl_config::{FileSdConfig, HttpSdConfig, StaticConfig};
use trawl_model::{ADDRESS_LABEL, Labels};

use crate::{DiscoveryError, TargetGroup};

/// How often file SD polls modification times between full refreshes.
const FILE_POLL: Duration = Duration::from_millis(250);

/// One provider's configuration; equal configs within a job are kept running on reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderConfig {
    /// All `static_configs` of a job.
    Static(Vec<StaticConfig>),
    /// One `file_sd_configs` entry.
    File(FileSdConfig),
    /// One `http_sd_configs` entry.
    Http(HttpSdConfig),
    /// One `kubernetes_sd_configs` entry.
    Kubernetes(trawl_config::KubernetesSdConfig),
    /// One `dns_sd_configs` entry.
    Dns(crate::dns::DnsSd),
}

impl ProviderConfig {
    /// Runs the provider, sending updates on `tx` until the receiver is gone.
    pub async fn run(self, tx: mpsc::Sender<Vec<TargetGroup>>) {
        match self {
            ProviderConfig::Static(s) => {
                let _ = tx.send(static_groups(&s)).await;
            }
            ProviderConfig::File(f) => run_file(f, tx).await,
            ProviderConfig::Http(h) => run_http(h, tx).await,
            ProviderConfig::Kubernetes(k) => crate::kubernetes::run(k, tx).await,
            ProviderConfig::Dns(d) => crate::dns::run(d, tx).await,
        }
    }
}

/// The groups of `static_configs`.
pub fn static_groups(cfgs: &[StaticConfig]) -> Vec<TargetGroup> {
    cfgs.iter()
        .enumerate()
        .map(|(i, c)| TargetGroup {
            source: i.to_string(),
            targets: c
                .targets
                .iter()
                .map(|t| Labels::from_pairs([(ADDRESS_LABEL, t.as_str())]))
                .collect(),
            labels: Labels::from_pairs(c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        })
        .collect()
}

/// The wire form of one group in file SD and HTTP SD documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    // `null` is accepted for both, as Prometheus does.
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

fn to_groups(
    docs: Vec<Option<GroupDoc>>,
    source_prefix: &str,
    meta: (&str, &str),
) -> Result<Vec<TargetGroup>, DiscoveryError> {
    docs.into_iter()
        .enumerate()
        .map(|(i, d)| {
            let d =
                d.ok_or_else(|| DiscoveryError::Decode("nil target group item found".into()))?;
            let mut labels = d.labels.unwrap_or_default();
            let targets = d.targets.unwrap_or_default();
            for name in labels.keys() {
                // Prometheus 3 accepts any non-empty UTF-8 label name here.
                if name.is_empty() {
                    return Err(DiscoveryError::Decode(format!(
                        "invalid label name {name:?}"
                    )));
                }
            }
            labels.insert(meta.0.to_owned(), meta.1.to_owned());
            Ok(TargetGroup {
                source: format!("{source_prefix}:{i}"),
                targets: targets
                    .iter()
                    .map(|t| Labels::from_pairs([(ADDRESS_LABEL, t.as_str())]))
                    .collect(),
                labels: Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            })
        })
        .collect()
}

/// Decodes a file SD document (JSON for `.json`, YAML for `.yml`/`.yaml`).
pub fn decode_file(path: &str, text: &str) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let docs: Vec<Option<GroupDoc>> = if path.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| DiscoveryError::Decode(e.to_string()))?
    } else if path.ends_with(".yml") || path.ends_with(".yaml") {
        // An empty YAML file has no groups.
        if text.trim().is_empty() {
            Vec::new()
        } else {
            serde_norway::from_str(text).map_err(|e| DiscoveryError::Decode(e.to_string()))?
        }
    } else {
        return Err(DiscoveryError::Decode(format!(
            "retrieval target groups from {path}: unsupported file extension"
        )));
    };
    to_groups(docs, path, ("__meta_filepath", path))
}

/// Decodes an HTTP SD response body.
pub fn decode_http(url: &str, body: &[u8]) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let docs: Option<Vec<Option<GroupDoc>>> =
        serde_json::from_slice(body).map_err(|e| DiscoveryError::Decode(e.to_string()))?;
    let docs = docs.ok_or_else(|| DiscoveryError::Decode("null is not a valid input".into()))?;
    to_groups(docs, url, ("__meta_url", url))
}

/// Sources present in `old` but not in `new`, as empty groups.
fn vanished(old: &BTreeSet<String>, new: &[TargetGroup]) -> Vec<TargetGroup> {
    let now: BTreeSet<&str> = new.iter().map(|g| g.source.as_str()).collect();
    old.iter()
        .filter(|s| !now.contains(s.as_str()))
        .map(|s| TargetGroup {
            source: s.clone(),
            ..TargetGroup::default()
        })
        .collect()
}

fn list_files(patterns: &[PathBuf]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in patterns {
        let Some(pat) = p.to_str() else { continue };
        match glob::glob(pat) {
            Ok(paths) => out.extend(
                paths
                    .flatten()
                    .filter_map(|p| p.to_str().map(str::to_owned))
                    .filter(|p| {
                        p.ends_with(".json") || p.ends_with(".yml") || p.ends_with(".yaml")
                    }),
            ),
            Err(e) => tracing::error!(pattern = pat, error = %e, "file SD: bad pattern"),
        }
    }
    out
}

fn mtime(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

async fn run_file(cfg: FileSdConfig, tx: mpsc::Sender<Vec<TargetGroup>>) {
    // Per file: the sources last sent and the modification time last read.
    let mut sent: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen: BTreeMap<String, Option<SystemTime>> = BTreeMap::new();
    let refresh = cfg.refresh_interval.as_std().max(FILE_POLL);
    let mut last_full = tokio::time::Instant::now();
    let mut first = true;
    loop {
        let full = first || last_full.elapsed() >= refresh;
        if full {
            last_full = tokio::time::Instant::now();
        }
        let files = list_files(&cfg.files);
        let mut update = Vec::new();
        // Files that disappeared: send their sources as empty.
        let gone: Vec<String> = sent
            .keys()
            .filter(|f| !files.contains(*f))
            .cloned()
            .collect();
        for f in gone {
            seen.remove(&f);
            if let Some(old) = sent.remove(&f) {
                update.extend(vanished(&old, &[]));
            }
        }
        for f in &files {
            let m = mtime(f);
            if !full && seen.get(f) == Some(&m) {
                continue;
            }
            seen.insert(f.clone(), m);
            let groups = std::fs::read_to_string(f)
                .map_err(|e| DiscoveryError::Io(format!("{f}: {e}")))
                .and_then(|t| decode_file(f, &t));
            match groups {
                Ok(groups) => {
                    let old = sent.remove(f).unwrap_or_default();
                    update.extend(vanished(&old, &groups));
                    sent.insert(f.clone(), groups.iter().map(|g| g.source.clone()).collect());
                    update.extend(groups);
                }
                Err(e) => {
                    tracing::error!(file = %f, error = %e, "file SD: reading failed, keeping the last good groups");
                }
            }
        }
        if (first || !update.is_empty()) && tx.send(update).await.is_err() {
            return;
        }
        first = false;
        tokio::time::sleep(FILE_POLL.min(refresh)).await;
    }
}

async fn fetch(
    client: &reqwest::Client,
    cfg: &HttpSdConfig,
) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let mut req = client
        .get(&cfg.url)
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            cfg.refresh_interval.as_std().as_secs().to_string(),
        )
        .header("User-Agent", concat!("Trawl/", env!("CARGO_PKG_VERSION")));
    if let Some(b) = &cfg.http.basic_auth {
        let pw = match (&b.password, &b.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| DiscoveryError::Io(format!("{}: {e}", f.display())))?
                    .trim()
                    .to_owned(),
            ),
            _ => None,
        };
        req = req.basic_auth(&b.username, pw);
    }
    if let Some(a) = &cfg.http.authorization {
        let cred = match (&a.credentials, &a.credentials_file) {
            (Some(c), _) => c.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| DiscoveryError::Io(format!("{}: {e}", f.display())))?
                .trim()
                .to_owned(),
            _ => String::new(),
        };
        req = req.header("Authorization", format!("{} {cred}", a.kind));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| DiscoveryError::Io(e.to_string()))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(DiscoveryError::Io(format!(
            "server returned HTTP status {status}"
        )));
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok_ct = matches!(
        ct.as_str(),
        "application/json" | "application/json; charset=utf-8" | "application/json;charset=utf-8"
    ) || ct == "application/json; charset=\"utf-8\"";
    if !ok_ct {
        return Err(DiscoveryError::Decode(format!(
            "unsupported content type {ct:?}"
        )));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| DiscoveryError::Io(e.to_string()))?;
    decode_http(&cfg.url, &body)
}

async fn run_http(cfg: HttpSdConfig, tx: mpsc::Sender<Vec<TargetGroup>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .redirect(if cfg.http.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .tls_danger_accept_invalid_certs(cfg.http.tls.insecure_skip_verify)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %cfg.url, error = %e, "http SD: cannot build the client");
            return;
        }
    };
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let refresh = cfg.refresh_interval.as_std().max(Duration::from_millis(10));
    loop {
        match fetch(&client, &cfg).await {
            Ok(groups) => {
                let mut update = vanished(&sent, &groups);
                sent = groups.iter().map(|g| g.source.clone()).collect();
                update.extend(groups);
                if tx.send(update).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(url = %cfg.url, error = %e, "http SD: refresh failed, keeping the last good groups");
            }
        }
        tokio::time::sleep(refresh).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_documents() {
        let g = decode_file("d/x.yaml", "- targets: [a:1]\n  labels: {k: v}\n").expect("yaml");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].source, "d/x.yaml:0");
        assert_eq!(g[0].targets[0].get("__address__"), Some("a:1"));
        assert_eq!(g[0].labels.get("k"), Some("v"));
        assert_eq!(g[0].labels.get("__meta_filepath"), Some("d/x.yaml"));
        assert!(decode_file("x.yml", "").expect("empty yaml").is_empty());
        assert!(decode_file("x.json", "[]").expect("empty json").is_empty());
        assert!(decode_file("x.txt", "[]").is_err());
        assert!(decode_file("x.json", "{").is_err());
        assert!(decode_file("x.json", r#"[{"targets":["a"],"bogus":1}]"#).is_err());
        assert!(decode_file("x.json", r#"[{"targets":["a"],"labels":{"":"v"}}]"#).is_err());
        let g = decode_file("x.json", r#"[{"targets":null,"labels":null}]"#).expect("nulls");
        assert!(g[0].targets.is_empty());
        assert_eq!(
            decode_file("x.json", "[null]").unwrap_err().to_string(),
            "nil target group item found"
        );
    }

    #[test]
    fn http_documents() {
        let g =
            decode_http("http://s/sd", br#"[{"targets":["a:1"]},{"targets":[]}]"#).expect("json");
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].source, "http://s/sd:1");
        assert_eq!(g[0].labels.get("__meta_url"), Some("http://s/sd"));
        assert_eq!(
            decode_http("u", b"null").unwrap_err().to_string(),
            "null is not a valid input"
        );
        assert!(decode_http("u", b"[{").is_err());
    }

    #[test]
    fn vanished_sources_are_empty_groups() {
        let old: BTreeSet<String> = ["a:0", "a:1"].iter().map(|s| s.to_string()).collect();
        let new = vec![TargetGroup {
            source: "a:0".into(),
            ..TargetGroup::default()
        }];
        let v = vanished(&old, &new);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].source, "a:1");
        assert!(v[0].targets.is_empty());
    }
}
