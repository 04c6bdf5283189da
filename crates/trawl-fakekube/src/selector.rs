//! Kubernetes label and field selectors, as the API server evaluates them.

use std::collections::BTreeSet;

use serde_json::Value;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Req>,
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_of(s: &str) -> Result<BTreeSet<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, got {s:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl Selector {
    /// Parses a label selector (`=`, `==`, `!=`, `in`, `notin`, `k`, `!k`).
    pub fn parse_labels(s: &str) -> Result<Self, String> {
        Self::parse(s, true)
    }

    /// Parses a field selector (`=`, `==`, `!=` only).
    pub fn parse_fields(s: &str) -> Result<Self, String> {
        Self::parse(s, false)
    }

    fn parse(s: &str, sets: bool) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Selector { reqs });
        }
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(format!("empty requirement in {s:?}"));
            }
            let req = if let Some((k, v)) = p.split_once("!=") {
                Req::Ne(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once("==") {
                Req::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once('=') {
                Req::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if sets && let Some((k, v)) = p.split_once(" notin ") {
                Req::NotIn(k.trim().to_owned(), set_of(v)?)
            } else if sets && let Some((k, v)) = p.split_once(" in ") {
                Req::In(k.trim().to_owned(), set_of(v)?)
            } else if sets && let Some(k) = p.strip_prefix('!') {
                Req::NotExists(k.trim().to_owned())
            } else if sets && !p.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
                Req::Exists(p.to_owned())
            } else {
                return Err(format!("unable to parse requirement {p:?}"));
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// Whether `get` (key -> value, `None` when absent) satisfies every requirement.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
            Req::In(k, set) => get(k).is_some_and(|x| set.contains(&x)),
            Req::NotIn(k, set) => get(k).is_none_or(|x| !set.contains(&x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// The value of a label of `obj`.
pub fn label_of(obj: &Value, key: &str) -> Option<String> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The value of a field path like `spec.nodeName` of `obj`; absent fields are `""`,
/// as the API server treats them.
pub fn field_of(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return Some(String::new()),
        }
    }
    Some(match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"app": "a", "tier": "web"}}});
        let m = |s: &str| {
            Selector::parse_labels(s)
                .expect("parses")
                .matches(|k| label_of(&o, k))
        };
        assert!(m(""));
        assert!(m("app=a"));
        assert!(m("app==a,tier"));
        assert!(!m("app!=a"));
        assert!(m("app in (a, b)"));
        assert!(!m("app notin (a,b)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m("missing notin (x)"));
        assert!(Selector::parse_labels("a in b").is_err());
        assert!(Selector::parse_labels("a,,b").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "w1"}});
        let m = |s: &str| {
            Selector::parse_fields(s)
                .expect("parses")
                .matches(|k| field_of(&o, k))
        };
        assert!(m("spec.nodeName=w1"));
        assert!(m("metadata.name=p,metadata.namespace!=x"));
        assert!(!m("spec.nodeName=w2"));
        assert!(m("status.phase="));
        assert!(Selector::parse_fields("spec.nodeName").is_err());
    }
}
