//! Role `ingress`: one target per (rule, path) of a networking.k8s.io/v1 Ingress.

use k8s_openapi::api::networking::v1::Ingress;

use super::meta::{NAMESPACE, PREFIX, Related, Set, add_object_meta, group};
use crate::TargetGroup;

/// `ingress/<ns>/<name>`
pub fn source(ns: &str, name: &str) -> String {
    format!("ingress/{ns}/{name}")
}

/// Whether a TLS host covers `host`: equal, or a `*.rest` wildcard with the same
/// number of labels whose non-first labels equal the host's.
fn tls_matches(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len() && p[0] == "*" && p[1..] == h[1..]
}

/// The group of one ingress.
pub fn ingress_group(ing: &Ingress, rel: &Related<'_>) -> TargetGroup {
    let ns = ing.metadata.namespace.as_deref().unwrap_or_default();
    let name = ing.metadata.name.as_deref().unwrap_or_default();
    let spec = ing.spec.clone().unwrap_or_default();
    let mut g = Set::new();
    g.insert(NAMESPACE.into(), ns.to_owned());
    if let Some(c) = &spec.ingress_class_name {
        g.insert(format!("{PREFIX}ingress_class_name"), c.clone());
    }
    add_object_meta(&mut g, &ing.metadata, "ingress", true);
    rel.add_namespace_meta(&mut g, ns);
    let tls_hosts: Vec<&str> = spec
        .tls
        .iter()
        .flatten()
        .flat_map(|t| t.hosts.iter().flatten())
        .map(String::as_str)
        .collect();
    let mut targets = Vec::new();
    for rule in spec.rules.iter().flatten() {
        let host = rule.host.clone().unwrap_or_default();
        let scheme = if tls_hosts.iter().any(|p| tls_matches(p, &host)) {
            "https"
        } else {
            "http"
        };
        let paths: Vec<String> = match &rule.http {
            None => vec!["/".into()],
            Some(h) => h
                .paths
                .iter()
                .map(|p| match p.path.as_deref() {
                    None | Some("") => "/".to_owned(),
                    Some(p) => p.to_owned(),
                })
                .collect(),
        };
        for path in paths {
            let mut t = Set::new();
            t.insert(trawl_model::ADDRESS_LABEL.into(), host.clone());
            t.insert(format!("{PREFIX}ingress_host"), host.clone());
            t.insert(format!("{PREFIX}ingress_path"), path);
            t.insert(format!("{PREFIX}ingress_scheme"), scheme.into());
            targets.push(t);
        }
    }
    group(source(ns, name), &g, &targets)
}

#[cfg(test)]
mod tests {
    use super::tls_matches;

    #[test]
    fn tls_wildcards() {
        assert!(tls_matches("a.example.com", "a.example.com"));
        assert!(tls_matches("*.example.com", "a.example.com"));
        assert!(!tls_matches("*.example.com", "a.b.example.com"));
        assert!(!tls_matches("*.example.com", "example.com"));
        assert!(!tls_matches("*.other.com", "a.example.com"));
        assert!(!tls_matches("b.example.com", "a.example.com"));
    }
}
