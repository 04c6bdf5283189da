//! Binary operators: arithmetic, comparison (filtering and `bool`), set operators, and
//! vector matching with `on`/`ignoring`/`group_left`/`group_right` (and `fill*`).

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use trawl_model::{Labels, METRIC_NAME};

use crate::engine::Evaluator;
use crate::{QueryError, Value, VecSample};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    pub(crate) fn parse(s: &str) -> Result<Op, QueryError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(QueryError::Eval(format!("operator {other:?} not allowed"))),
        })
    }
    pub(crate) fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }
}

/// Applies `op` to two floats; for comparisons returns (lhs, kept?).
pub(crate) fn scalar_binop(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Mod => (l % r, true),
        Op::Pow => (go_pow(l, r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (l, true),
    }
}

/// `math.Pow` special cases differ from `powf` only for a NaN base with a zero exponent
/// (both give 1) and `1^NaN` (both 1), so `powf` is used directly; kept as a seam.
fn go_pow(l: f64, r: f64) -> f64 {
    l.powf(r)
}

pub(crate) fn eval_binary(
    ev: &mut Evaluator<'_>,
    b: &BinaryExpr,
    t: i64,
) -> Result<Value, QueryError> {
    let op = Op::parse(&b.op.to_string())?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    // `and`/`unless` with an empty left side need not evaluate the right side, but both
    // sides are cheap here; evaluating both keeps errors identical to Prometheus's order.
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = scalar_binop(op, l, r);
            if op.is_comparison() {
                Ok(Value::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Value::Scalar(v))
            }
        }
        (Value::Vector(l), Value::Scalar(r)) => Ok(Value::Vector(vector_scalar(
            op,
            l,
            r,
            false,
            return_bool,
            t,
        ))),
        (Value::Scalar(l), Value::Vector(r)) => {
            Ok(Value::Vector(vector_scalar(op, r, l, true, return_bool, t)))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            let fill = b
                .modifier
                .as_ref()
                .map(|m| (m.fill_values.lhs, m.fill_values.rhs))
                .unwrap_or((None, None));
            match op {
                Op::And => Ok(Value::Vector(vector_and(l, r, matching.as_ref()))),
                Op::Or => Ok(Value::Vector(vector_or(l, r, matching.as_ref()))),
                Op::Unless => Ok(Value::Vector(vector_unless(l, r, matching.as_ref()))),
                _ => vector_vector(op, l, r, matching.as_ref(), &card, return_bool, fill, t)
                    .map(Value::Vector),
            }
        }
        (l, r) => Err(QueryError::Eval(format!(
            "binary expression between {} and {} not supported",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: Op,
    v: Vec<VecSample>,
    s: f64,
    swap: bool,
    return_bool: bool,
    t: i64,
) -> Vec<VecSample> {
    let mut out = Vec::with_capacity(v.len());
    let drops = vector_scalar_drops_name(op, return_bool);
    for mut e in v {
        let Some(val) = vector_scalar_elem(op, e.v, s, swap, return_bool) else {
            continue;
        };
        e.drop_name |= drops;
        e.v = val;
        e.t = t;
        out.push(e);
    }
    out
}

/// One vector element `v` against the scalar `s` (`swap`: the scalar is on the left): the
/// result, or `None` when a filtering comparison drops the element.
pub(crate) fn vector_scalar_elem(
    op: Op,
    v: f64,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Option<f64> {
    let (l, r) = if swap { (s, v) } else { (v, s) };
    let (val, keep) = scalar_binop(op, l, r);
    if op.is_comparison() {
        if return_bool {
            Some(if keep { 1.0 } else { 0.0 })
        } else if keep {
            // The vector element's value is the result even when it is on the right.
            Some(v)
        } else {
            None
        }
    } else {
        Some(val)
    }
}

/// Whether a vector-scalar operation drops the metric name (all but filtering comparisons).
pub(crate) fn vector_scalar_drops_name(op: Op, return_bool: bool) -> bool {
    !op.is_comparison() || return_bool
}

/// The matching signature of a sample: the `on` labels, or all labels except the
/// `ignoring` ones and the metric name.
fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => {
            let names: Vec<&str> = on.labels.iter().map(String::as_str).collect();
            Labels::from_sorted(
                l.iter()
                    .filter(|x| names.contains(&x.name.as_str()))
                    .cloned()
                    .collect(),
            )
        }
        Some(LabelModifier::Exclude(ign)) => {
            let mut names: Vec<&str> = ign.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            l.without(&names)
        }
        None => l.without(&[METRIC_NAME]),
    }
}

fn vector_and(l: Vec<VecSample>, r: Vec<VecSample>, m: Option<&LabelModifier>) -> Vec<VecSample> {
    let rs: HashSet<Labels> = r.iter().map(|s| signature(&s.labels, m)).collect();
    l.into_iter()
        .filter(|s| rs.contains(&signature(&s.labels, m)))
        .collect()
}

fn vector_or(l: Vec<VecSample>, r: Vec<VecSample>, m: Option<&LabelModifier>) -> Vec<VecSample> {
    let ls: HashSet<Labels> = l.iter().map(|s| signature(&s.labels, m)).collect();
    let mut out = l;
    out.extend(
        r.into_iter()
            .filter(|s| !ls.contains(&signature(&s.labels, m))),
    );
    out
}

fn vector_unless(
    l: Vec<VecSample>,
    r: Vec<VecSample>,
    m: Option<&LabelModifier>,
) -> Vec<VecSample> {
    let rs: HashSet<Labels> = r.iter().map(|s| signature(&s.labels, m)).collect();
    l.into_iter()
        .filter(|s| !rs.contains(&signature(&s.labels, m)))
        .collect()
}

fn fmt_series_list(a: &Labels, b: &Labels) -> String {
    format!("[{}, {}]", a, b)
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: Op,
    lhs: Vec<VecSample>,
    rhs: Vec<VecSample>,
    matching: Option<&LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
    fill: (Option<f64>, Option<f64>),
    t: i64,
) -> Result<Vec<VecSample>, QueryError> {
    // The "one" side is indexed by signature; the "many" side is iterated.
    let (swapped, include) = match card {
        VectorMatchCardinality::OneToMany(ls) => (true, ls.labels.clone()),
        VectorMatchCardinality::ManyToOne(ls) => (false, ls.labels.clone()),
        _ => (false, Vec::new()),
    };
    let one_to_one = matches!(
        card,
        VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany
    );
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    // Upstream applies `fill_left` to the "many" side and `fill_right` to the "one" side
    // even under group_right (where the many side is the right operand); follow it.
    let (fill_many, fill_one) = fill;

    let mut one_idx: HashMap<Labels, usize> = HashMap::with_capacity(one.len());
    for (i, s) in one.iter().enumerate() {
        let sig = signature(&s.labels, matching);
        if let Some(&j) = one_idx.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            return Err(QueryError::Eval(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: {};many-to-many matching not allowed: matching labels must be unique on one side",
                fmt_series_list(&one[j].labels, &s.labels)
            )));
        }
        one_idx.insert(sig, i);
    }

    let drop = !op.is_comparison() || return_bool;
    let mut out = Vec::new();
    let mut matched_sigs: HashMap<Labels, usize> = HashMap::new();
    let mut inserted: HashSet<Labels> = HashSet::new();
    let mut one_matched = vec![false; one.len()];
    for m in &many {
        let sig = signature(&m.labels, matching);
        let o = match one_idx.get(&sig) {
            Some(&i) => {
                one_matched[i] = true;
                Some(&one[i])
            }
            None => None,
        };
        let ov = match (o, fill_one) {
            (Some(o), _) => o.v,
            (None, Some(f)) => f,
            (None, None) => continue,
        };
        if one_to_one && o.is_some() {
            if matched_sigs.contains_key(&sig) {
                return Err(QueryError::Eval(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
            matched_sigs.insert(sig, out.len());
        }
        let (fl, fr) = if swapped { (ov, m.v) } else { (m.v, ov) };
        let (mut val, keep) = scalar_binop(op, fl, fr);
        if return_bool {
            val = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let labels = result_labels(
            &m.labels,
            o.map(|o| &o.labels),
            matching,
            one_to_one,
            &include,
        );
        if !one_to_one && !inserted.insert(labels.clone()) {
            return Err(QueryError::Eval(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(VecSample {
            labels,
            t,
            v: val,
            drop_name: m.drop_name || drop,
        });
    }
    if let Some(f) = fill_many {
        for (i, o) in one.iter().enumerate() {
            if one_matched[i] {
                continue;
            }
            let (fl, fr) = if swapped { (o.v, f) } else { (f, o.v) };
            let (mut val, keep) = scalar_binop(op, fl, fr);
            if return_bool {
                val = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let labels = result_labels(&o.labels, None, matching, true, &[]);
            out.push(VecSample {
                labels,
                t,
                v: val,
                // The result describes the one-side series, so its name goes even when filtering.
                drop_name: true,
            });
        }
    }
    Ok(out)
}

fn result_labels(
    many: &Labels,
    one: Option<&Labels>,
    matching: Option<&LabelModifier>,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut b = many.builder();
    if one_to_one {
        match matching {
            Some(LabelModifier::Include(on)) => {
                for l in many.iter() {
                    if !on.labels.contains(&l.name) {
                        b.del(&l.name);
                    }
                }
            }
            Some(LabelModifier::Exclude(ign)) => {
                for n in &ign.labels {
                    b.del(n);
                }
            }
            None => {}
        }
    }
    for n in include {
        match one.and_then(|o| o.get(n)) {
            Some(v) => b.set(n, v),
            None => b.del(n),
        }
    }
    b.labels()
}
