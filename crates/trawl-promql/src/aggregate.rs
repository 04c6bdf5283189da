//! Aggregation operators with `by`/`without`.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};
use trawl_model::{Labels, METRIC_NAME};

use crate::engine::Evaluator;
use crate::functions::{fmt_g, fmt_go_float, kahan_inc, quantile_of};
use crate::{QueryError, Value, VecSample};

/// The grouping key. With delayed name removal a to-be-dropped `__name__` still partitions
/// `by (__name__)` groups (as upstream does); the group inherits the drop flag.
pub(crate) fn group_labels(l: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        None => Labels::empty(),
        Some(LabelModifier::Include(by)) => Labels::from_sorted(
            l.iter()
                .filter(|x| by.labels.contains(&x.name))
                .cloned()
                .collect(),
        ),
        Some(LabelModifier::Exclude(without)) => {
            let mut names: Vec<&str> = without.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            l.without(&names)
        }
    }
}

/// Hash of the grouping key, computed without building it (64-bit hashes identify groups,
/// as upstream's do).
pub(crate) fn group_hash(l: &Labels, m: Option<&LabelModifier>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    let keep = |name: &str| match m {
        None => false,
        Some(LabelModifier::Include(by)) => by.labels.iter().any(|n| n == name),
        Some(LabelModifier::Exclude(without)) => {
            name != METRIC_NAME && !without.labels.iter().any(|n| n == name)
        }
    };
    for x in l.iter().filter(|x| keep(&x.name)) {
        x.name.hash(&mut h);
        x.value.hash(&mut h);
    }
    h.finish()
}

/// The order `topk` (`top`) or `bottomk` ranks values in: best first, NaN last.
pub(crate) fn topk_cmp(a: f64, b: f64, top: bool) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => {
            if top {
                b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
            } else {
                a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
            }
        }
    }
}

/// Converts a `topk`/`limitk` parameter to an integer as Prometheus does.
pub(crate) fn k_param(v: f64) -> Result<i64, QueryError> {
    if v.is_nan() {
        return Err(QueryError::Eval("Parameter value is NaN".into()));
    }
    if !(v.is_finite() && v <= i64::MAX as f64 && v >= i64::MIN as f64) {
        return Err(QueryError::Eval(format!(
            "Scalar value {} overflows int64",
            fmt_go_float(v)
        )));
    }
    Ok(v as i64)
}

/// Streaming average as Prometheus computes it: a compensated sum, switching to an
/// incremental mean only once the sum would overflow.
#[derive(Default, Clone, Copy)]
pub(crate) struct Avg {
    count: f64,
    sum: f64,
    c: f64,
    mean: f64,
    incremental: bool,
}

impl Avg {
    pub(crate) fn add(&mut self, f: f64) {
        self.count += 1.0;
        if self.count == 1.0 {
            self.sum = f;
            self.c = 0.0;
            return;
        }
        if !self.incremental {
            let (s, c) = kahan_inc(f, self.sum, self.c);
            if !s.is_infinite() {
                self.sum = s;
                self.c = c;
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        if self.mean.is_infinite() {
            if f.is_infinite() && (self.mean > 0.0) == (f > 0.0) {
                return;
            }
            if !f.is_infinite() && !f.is_nan() {
                return;
            }
        }
        let cur = self.mean + self.c;
        let (m, c) = kahan_inc(f / self.count - cur / self.count, self.mean, self.c);
        self.mean = m;
        self.c = c;
    }
    pub(crate) fn value(&self) -> f64 {
        if self.incremental {
            self.mean + self.c
        } else {
            (self.sum + self.c) / self.count
        }
    }
}

struct Group {
    labels: Labels,
    members: Vec<usize>,
    drop_name: bool,
}

pub(crate) fn eval_aggregate(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    t: i64,
) -> Result<Value, QueryError> {
    let op = a.op.to_string().to_ascii_lowercase();
    let mut param_f = None;
    let mut param_s = None;
    if let Some(p) = &a.param {
        match ev.eval(p, t)? {
            Value::Scalar(v) => param_f = Some(v),
            Value::String(s) => param_s = Some(s),
            other => {
                return Err(QueryError::Eval(format!(
                    "unexpected aggregation parameter {}",
                    other.type_name()
                )));
            }
        }
    }
    let input = ev.eval_vector(&a.expr, t)?;
    let m = a.modifier.as_ref();

    if op == "count_values" {
        let name = param_s.unwrap_or_default();
        if !trawl_model::validate::is_legacy_label_name(&name)
            && (name.is_empty() || name.contains('\u{0}'))
        {
            return Err(QueryError::Eval(format!("invalid label name {name:?}")));
        }
        let mut idx: HashMap<Labels, usize> = HashMap::new();
        let mut out: Vec<VecSample> = Vec::new();
        for s in &input {
            let g = group_labels(&s.labels, m);
            let mut b = g.builder();
            b.set(&name, &fmt_go_float(s.v));
            let l = b.labels();
            match idx.get(&l) {
                Some(&i) => out[i].v += 1.0,
                None => {
                    idx.insert(l.clone(), out.len());
                    out.push(VecSample {
                        labels: l,
                        t,
                        v: 1.0,
                        drop_name: false,
                    });
                }
            }
        }
        return Ok(Value::Vector(out));
    }

    // Group the input, keeping first-seen order.
    let mut groups: Vec<Group> = Vec::new();
    let mut idx: HashMap<u64, usize> = HashMap::new();
    for (i, s) in input.iter().enumerate() {
        let key = group_hash(&s.labels, m);
        match idx.get(&key) {
            Some(&gi) => {
                groups[gi].members.push(i);
                groups[gi].drop_name |= s.drop_name;
            }
            None => {
                idx.insert(key, groups.len());
                groups.push(Group {
                    labels: group_labels(&s.labels, m),
                    members: vec![i],
                    drop_name: s.drop_name,
                });
            }
        }
    }

    let mut out = Vec::new();
    match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let k = k_param(param_f.unwrap_or(f64::NAN))?;
            if k < 1 {
                return Ok(Value::Vector(Vec::new()));
            }
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            for g in &groups {
                let mut members = g.members.clone();
                if op != "limitk" {
                    let top = op == "topk";
                    members.sort_by(|&x, &y| topk_cmp(input[x].v, input[y].v, top));
                }
                for &i in members.iter().take(k) {
                    let mut s = input[i].clone();
                    s.t = t;
                    out.push(s);
                }
            }
            return Ok(Value::Vector(out));
        }
        "limit_ratio" => {
            let mut r = param_f.unwrap_or(f64::NAN);
            if r.is_nan() {
                return Err(QueryError::Eval("Ratio value is NaN".into()));
            }
            if !(-1.0..=1.0).contains(&r) {
                let capped = r.clamp(-1.0, 1.0);
                let p = a.param.as_deref().map(|e| ev.pos(e)).unwrap_or_default();
                ev.ann.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to {}{p}",
                    fmt_g(r),
                    fmt_g(capped)
                ));
                r = capped;
            }
            for g in &groups {
                for &i in &g.members {
                    let off = input[i].labels.stable_hash() as f64 / u64::MAX as f64;
                    if (r >= 0.0 && off < r) || (r < 0.0 && off >= 1.0 + r) {
                        let mut s = input[i].clone();
                        s.t = t;
                        out.push(s);
                    }
                }
            }
            return Ok(Value::Vector(out));
        }
        _ => {}
    }

    if op == "quantile" {
        let q = param_f.unwrap_or(f64::NAN);
        if !(0.0..=1.0).contains(&q) {
            let p = a.param.as_deref().map(|e| ev.pos(e)).unwrap_or_default();
            ev.ann.warn(format!(
                "quantile value should be between 0 and 1, got {}{p}",
                fmt_g(q)
            ));
        }
    }

    for g in groups {
        let vals: Vec<f64> = g.members.iter().map(|&i| input[i].v).collect();
        let v =
            match op.as_str() {
                "sum" => {
                    let (mut s, mut c) = (0.0, 0.0);
                    for &x in &vals {
                        (s, c) = kahan_inc(x, s, c);
                    }
                    s + c
                }
                "avg" => {
                    let mut a = Avg::default();
                    for &x in &vals {
                        a.add(x);
                    }
                    a.value()
                }
                "count" => vals.len() as f64,
                "group" => 1.0,
                "min" => vals.iter().copied().fold(f64::NAN, |acc, x| {
                    if acc > x || acc.is_nan() { x } else { acc }
                }),
                "max" => vals.iter().copied().fold(f64::NAN, |acc, x| {
                    if acc < x || acc.is_nan() { x } else { acc }
                }),
                "stddev" | "stdvar" => {
                    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
                    for &x in &vals {
                        n += 1.0;
                        let d = x - mean;
                        mean += d / n;
                        m2 += d * (x - mean);
                    }
                    let var = m2 / n;
                    if op == "stddev" { var.sqrt() } else { var }
                }
                "quantile" => quantile_of(param_f.unwrap_or(f64::NAN), vals),
                other => {
                    return Err(QueryError::Eval(format!(
                        "unsupported aggregation {other:?}"
                    )));
                }
            };
        let drop_name = g.drop_name && g.labels.has(METRIC_NAME);
        out.push(VecSample {
            labels: g.labels,
            t,
            v,
            drop_name,
        });
    }
    Ok(Value::Vector(out))
}
