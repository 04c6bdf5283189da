//! Building a Kubernetes client from a `kubernetes_sd_configs` entry: explicit
//! `api_server` with Prometheus's HTTP client settings, `kubeconfig_file`, or the
//! in-cluster service account.

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use trawl_config::KubernetesSdConfig;

use crate::DiscoveryError;

fn err(what: &str, e: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError::Kubernetes(format!("{what}: {e}"))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The in-memory kubeconfig equivalent of an `api_server` with HTTP client settings.
fn kubeconfig_for(server: &str, cfg: &KubernetesSdConfig) -> Result<Kubeconfig, DiscoveryError> {
    let h = &cfg.http;
    let mut cluster = json!({ "server": server });
    let tls = &h.tls;
    if tls.insecure_skip_verify {
        cluster["insecure-skip-tls-verify"] = json!(true);
    }
    if let Some(ca) = &tls.ca {
        cluster["certificate-authority-data"] = json!(b64(ca));
    } else if let Some(f) = &tls.ca_file {
        cluster["certificate-authority"] = json!(path(f));
    }
    if let Some(n) = &tls.server_name {
        cluster["tls-server-name"] = json!(n);
    }
    if let Some(p) = &h.proxy_url {
        cluster["proxy-url"] = json!(p);
    }
    let mut user = json!({});
    if let Some(c) = &tls.cert {
        user["client-certificate-data"] = json!(b64(c));
    } else if let Some(f) = &tls.cert_file {
        user["client-certificate"] = json!(path(f));
    }
    if let Some(k) = &tls.key {
        user["client-key-data"] = json!(b64(k));
    } else if let Some(f) = &tls.key_file {
        user["client-key"] = json!(path(f));
    }
    if let Some(a) = &h.authorization
        && a.kind.eq_ignore_ascii_case("bearer")
    {
        if let Some(c) = &a.credentials {
            user["token"] = json!(c);
        } else if let Some(f) = &a.credentials_file {
            // kube re-reads the file, so rotated service-account tokens keep working.
            user["tokenFile"] = json!(path(f));
        }
    }
    if let Some(b) = &h.basic_auth {
        let username = match &b.username_file {
            Some(f) if b.username.is_empty() => std::fs::read_to_string(f)
                .map_err(|e| err(&path(f), e))?
                .trim()
                .to_owned(),
            _ => b.username.clone(),
        };
        let password = match (&b.password, &b.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| err(&path(f), e))?
                .trim()
                .to_owned(),
            _ => String::new(),
        };
        user["username"] = json!(username);
        user["password"] = json!(password);
    }
    serde_json::from_value(json!({
        "clusters": [{"name": "sd", "cluster": cluster}],
        "users": [{"name": "sd", "user": user}],
        "contexts": [{"name": "sd", "context": {"cluster": "sd", "user": "sd"}}],
        "current-context": "sd",
    }))
    .map_err(|e| err("building the client configuration", e))
}

/// The client configuration, without connecting.
pub async fn config(cfg: &KubernetesSdConfig) -> Result<kube::Config, DiscoveryError> {
    let opts = KubeConfigOptions::default();
    let mut c = if let Some(server) = &cfg.api_server {
        let kc = kubeconfig_for(server, cfg)?;
        kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| err(&format!("api_server {server}"), e))?
    } else if let Some(f) = &cfg.kubeconfig_file {
        let kc = Kubeconfig::read_from(f).map_err(|e| err(&path(f), e))?;
        kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| err(&path(f), e))?
    } else {
        kube::Config::incluster().map_err(|e| err("in-cluster configuration", e))?
    };
    // Other authorization schemes go out as a plain header.
    if cfg.api_server.is_some()
        && let Some(a) = &cfg.http.authorization
        && !a.kind.eq_ignore_ascii_case("bearer")
    {
        let cred = match (&a.credentials, &a.credentials_file) {
            (Some(c), _) => c.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| err(&path(f), e))?
                .trim()
                .to_owned(),
            _ => String::new(),
        };
        let v = format!("{} {cred}", a.kind)
            .parse()
            .map_err(|e| err("authorization header", e))?;
        c.headers.push((reqwest::header::AUTHORIZATION, v));
    }
    // `http_headers`: literal values, secrets and the contents of files.
    for (name, h) in &cfg.http.http_headers {
        let n: reqwest::header::HeaderName = name.parse().map_err(|e| err("http_headers", e))?;
        let mut values: Vec<String> = h.values.iter().flatten().cloned().collect();
        values.extend(h.secrets.iter().flatten().cloned());
        for f in h.files.iter().flatten() {
            values.push(
                std::fs::read_to_string(f)
                    .map_err(|e| err(f, e))?
                    .trim()
                    .to_owned(),
            );
        }
        for v in values {
            let v = v.parse().map_err(|e| err("http_headers", e))?;
            c.headers.push((n.clone(), v));
        }
    }
    Ok(c)
}

/// A client for `cfg`, and the namespace it runs in (for `own_namespace`).
pub async fn client(cfg: &KubernetesSdConfig) -> Result<(kube::Client, String), DiscoveryError> {
    // kube's TLS stack is rustls on ring; the process needs a default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = config(cfg).await?;
    let ns = c.default_namespace.clone();
    let client = kube::Client::try_from(c).map_err(|e| err("creating the client", e))?;
    Ok((client, ns))
}

/// A stable identity of the API server settings, for sharing watches between jobs.
pub fn identity(cfg: &KubernetesSdConfig) -> String {
    format!(
        "{:?}|{:?}|{:?}",
        cfg.api_server, cfg.kubeconfig_file, cfg.http
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use trawl_config::{
        Authorization, BasicAuth, HttpClientConfig, KubernetesAttachMetadata, KubernetesRole,
        TlsConfig,
    };

    use super::*;

    fn sd(http: HttpClientConfig) -> KubernetesSdConfig {
        KubernetesSdConfig {
            role: KubernetesRole::Pod,
            api_server: Some("https://k8s.example:6443".into()),
            kubeconfig_file: None,
            own_namespace: false,
            namespaces: Vec::new(),
            selectors: Vec::new(),
            attach_metadata: KubernetesAttachMetadata::default(),
            http,
        }
    }

    #[tokio::test]
    async fn api_server_with_client_settings() {
        let dir = std::env::temp_dir();
        let token = dir.join(format!("trawl-k8s-token-{}", std::process::id()));
        std::fs::write(&token, "t0k\n").expect("token file");
        let c = config(&sd(HttpClientConfig {
            authorization: Some(Authorization {
                kind: "Bearer".into(),
                credentials: None,
                credentials_file: Some(token.clone()),
            }),
            tls: TlsConfig {
                insecure_skip_verify: true,
                server_name: Some("kubernetes".into()),
                ..TlsConfig::default()
            },
            ..HttpClientConfig::default()
        }))
        .await
        .expect("config");
        assert_eq!(c.cluster_url.to_string(), "https://k8s.example:6443/");
        assert!(c.accept_invalid_certs);
        assert_eq!(c.tls_server_name.as_deref(), Some("kubernetes"));
        assert_eq!(
            c.auth_info.token_file.as_deref(),
            Some(token.to_string_lossy().as_ref())
        );
        std::fs::remove_file(&token).ok();

        let c = config(&sd(HttpClientConfig {
            basic_auth: Some(BasicAuth {
                username: "u".into(),
                password: Some("p".into()),
                ..BasicAuth::default()
            }),
            ..HttpClientConfig::default()
        }))
        .await
        .expect("config");
        assert_eq!(c.auth_info.username.as_deref(), Some("u"));
        assert!(!c.accept_invalid_certs);

        let c = config(&sd(HttpClientConfig {
            authorization: Some(Authorization {
                kind: "Custom".into(),
                credentials: Some("xyz".into()),
                credentials_file: None,
            }),
            ..HttpClientConfig::default()
        }))
        .await
        .expect("config");
        assert!(c.auth_info.token.is_none());
        assert!(
            c.headers
                .iter()
                .any(|(n, v)| n == "authorization" && v == "Custom xyz")
        );
    }

    #[tokio::test]
    async fn missing_files_and_in_cluster_fail_cleanly() {
        let mut cfg = sd(HttpClientConfig::default());
        cfg.api_server = None;
        cfg.kubeconfig_file = Some(PathBuf::from("/nonexistent/kubeconfig"));
        let e = config(&cfg).await.expect_err("no kubeconfig");
        assert!(
            e.to_string()
                .starts_with("kubernetes SD: /nonexistent/kubeconfig")
        );
        cfg.kubeconfig_file = None;
        // No service account on a test machine: an error, not a panic.
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            assert!(config(&cfg).await.is_err());
        }
    }

    #[test]
    fn identity_separates_servers_and_credentials() {
        let a = sd(HttpClientConfig::default());
        let mut b = a.clone();
        assert_eq!(identity(&a), identity(&b));
        b.http.tls.insecure_skip_verify = true;
        assert_ne!(identity(&a), identity(&b));
        b = a.clone();
        b.api_server = Some("https://other:6443".into());
        assert_ne!(identity(&a), identity(&b));
        // The role and namespaces do not matter: watches are shared across them.
        b = a.clone();
        b.role = KubernetesRole::Node;
        b.namespaces = vec!["x".into()];
        assert_eq!(identity(&a), identity(&b));
    }
}
