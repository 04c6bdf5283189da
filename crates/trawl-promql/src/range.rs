//! Whole-range evaluation of the expression shapes dashboards use most: selectors,
//! range-vector functions over a selector (`rate(x[5m])`, `*_over_time`, …), aggregations
//! (`sum`/`avg`/`count`/`min`/`max`/`group`/`stddev`/`stdvar` and `topk`/`bottomk`/
//! `limitk`) with `by`/`without`, unary minus and arithmetic/comparison with a number.
//!
//! Instead of evaluating the expression once per step, each node is computed for all
//! steps at once: a selector or range function walks each series' samples once with
//! window pointers that only move forward, and an aggregation assigns each input series
//! to its group once and accumulates series by series. Labels are never rebuilt per step.
//!
//! Invariants that keep results identical to the per-step evaluator:
//! - The same window functions ([`crate::functions::window_fn`]) see the same sample
//!   slices, and accumulators add members in the order the per-step evaluator does (the
//!   order of the input vector at that step), so every float operation is the same.
//! - Where a step's vector order matters to a consumer (`topk` ties, `limitk`, matching),
//!   each series keeps a per-step sort key that reproduces the per-step order.
//! - Anything this module does not handle, or any error or limit it runs into, makes it
//!   give up (`None`); the per-step evaluator then computes the node and reports errors
//!   exactly as before. Annotations are kept only when the whole node succeeds.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, BinaryExpr, Call, Expr};
use trawl_model::{METRIC_NAME, Sample, is_stale_nan};

use crate::aggregate::{Avg, group_hash, group_labels, k_param, topk_cmp};
use crate::binop::{Op, vector_scalar_drops_name, vector_scalar_elem};
use crate::engine::{Annotations, Evaluator, MatrixVal, ms, offset_ms};
use crate::functions::{counter_infos, kahan_inc, window_fn};
use crate::{Labels, QueryError, VecSample};

/// At most this many (series × step) cells per node; beyond it the per-step evaluator,
/// which holds one step at a time, is used.
const MAX_CELLS: usize = 64 << 20;

/// The evaluation times `start + i * step` for `i < n`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Grid {
    /// The grid of a range query; `None` when it has too many steps to hold per node.
    pub(crate) fn new(start: i64, end: i64, step: i64) -> Option<Grid> {
        if step <= 0 || end < start {
            return None;
        }
        let n = (end.checked_sub(start)? / step).checked_add(1)?;
        let n = usize::try_from(n).ok()?;
        (n <= MAX_CELLS).then_some(Grid { start, step, n })
    }

    pub(crate) fn t(&self, i: usize) -> i64 {
        // In range by construction: start + (n-1)*step <= end.
        self.start + i as i64 * self.step
    }

    /// The step index of `t`, if `t` is on the grid.
    pub(crate) fn index(&self, t: i64) -> Option<usize> {
        let d = t.checked_sub(self.start)?;
        if d < 0 || d % self.step != 0 {
            return None;
        }
        let i = usize::try_from(d / self.step).ok()?;
        (i < self.n).then_some(i)
    }
}

/// One series of a whole-range result.
#[derive(Debug, Clone)]
pub(crate) struct RSeries {
    pub labels: Labels,
    pub drop_name: bool,
    /// Value per step (meaningless where not present).
    pub vals: Vec<f64>,
    pub present: Vec<bool>,
    /// The sample timestamp per step (selectors report the raw sample's time); empty when
    /// it is the evaluation time.
    pub ts: Vec<i64>,
    /// Per step, the position key of this series in that step's vector; empty when the
    /// series order is the vector order.
    pub key: Vec<u32>,
}

impl RSeries {
    fn new(labels: Labels, drop_name: bool, n: usize) -> Self {
        RSeries {
            labels,
            drop_name,
            vals: vec![0.0; n],
            present: vec![false; n],
            ts: Vec::new(),
            key: Vec::new(),
        }
    }
}

/// An instant-vector expression evaluated at every step of a grid.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeVec {
    pub series: Vec<RSeries>,
    /// Whether the series carry per-step keys.
    pub keyed: bool,
}

impl RangeVec {
    fn key(&self, s: usize, i: usize) -> u32 {
        if self.keyed {
            self.series[s].key[i]
        } else {
            s as u32
        }
    }

    /// The present series at step `i`, in that step's vector order.
    fn order_at(&self, i: usize, out: &mut Vec<usize>) {
        out.clear();
        out.extend((0..self.series.len()).filter(|&s| self.series[s].present[i]));
        if self.keyed {
            out.sort_unstable_by_key(|&s| self.series[s].key[i]);
        }
    }

    /// The vector at step `i` (time `t`), as the per-step evaluator would have produced it.
    pub(crate) fn vector_at(&self, i: usize, t: i64) -> Vec<VecSample> {
        let mut idx = Vec::new();
        self.order_at(i, &mut idx);
        idx.into_iter()
            .map(|s| {
                let r = &self.series[s];
                VecSample {
                    labels: r.labels.clone(),
                    t: if r.ts.is_empty() { t } else { r.ts[i] },
                    v: r.vals[i],
                    drop_name: r.drop_name,
                }
            })
            .collect()
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

fn number(e: &Expr) -> Option<f64> {
    match unparen(e) {
        Expr::NumberLiteral(n) => Some(n.val),
        _ => None,
    }
}

const SIMPLE_AGGS: &[&str] = &[
    "sum", "avg", "count", "group", "min", "max", "stddev", "stdvar",
];

/// Whether `e` is a shape this module evaluates (it may still give up at run time).
pub(crate) fn supported(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => supported(&p.expr),
        Expr::VectorSelector(_) => true,
        Expr::Call(c) => {
            window_fn(c.func.name).is_some()
                && c.args.args.len() == 1
                && matches!(unparen(&c.args.args[0]), Expr::MatrixSelector(_))
        }
        Expr::Aggregate(a) => {
            let op = a.op.to_string().to_ascii_lowercase();
            let param_ok = if SIMPLE_AGGS.contains(&op.as_str()) {
                a.param.is_none()
            } else if matches!(op.as_str(), "topk" | "bottomk" | "limitk") {
                a.param.as_deref().and_then(number).is_some()
            } else {
                false
            };
            param_ok && supported(&a.expr)
        }
        Expr::Unary(u) => supported(&u.expr),
        Expr::Binary(b) => {
            let Ok(op) = Op::parse(&b.op.to_string()) else {
                return false;
            };
            // Vector matching modifiers are not allowed with a scalar operand anyway.
            let plain = b.modifier.as_ref().is_none_or(|m| m.matching.is_none());
            !matches!(op, Op::And | Op::Or | Op::Unless)
                && plain
                && match (number(&b.lhs), number(&b.rhs)) {
                    (Some(_), None) => supported(&b.rhs),
                    (None, Some(_)) => supported(&b.lhs),
                    _ => false,
                }
        }
        _ => false,
    }
}

/// Evaluates `e` over the whole grid, or `None` when the per-step evaluator must do it.
pub(crate) fn try_range(
    ev: &mut Evaluator<'_>,
    e: &Expr,
    g: &Grid,
) -> Result<Option<RangeVec>, QueryError> {
    if !supported(e) {
        return Ok(None);
    }
    let mut ann = Annotations::default();
    match eval(ev, e, g, &mut ann) {
        Ok(Some(r)) => {
            ev.ann.merge(ann);
            Ok(Some(r))
        }
        Ok(None) => Ok(None),
        Err(e @ QueryError::Timeout(_)) => Err(e),
        // The per-step evaluator reports errors in its own order and words.
        Err(_) => Ok(None),
    }
}

fn eval(
    ev: &mut Evaluator<'_>,
    e: &Expr,
    g: &Grid,
    ann: &mut Annotations,
) -> Result<Option<RangeVec>, QueryError> {
    match e {
        Expr::Paren(p) => eval(ev, &p.expr, g, ann),
        Expr::VectorSelector(vs) => Ok(selector(ev, vs, g)),
        Expr::Call(c) => window_call(ev, c, g, ann),
        Expr::Aggregate(a) => aggregate(ev, a, g, ann),
        Expr::Unary(u) => {
            let Some(mut r) = eval(ev, &u.expr, g, ann)? else {
                return Ok(None);
            };
            for s in &mut r.series {
                for v in &mut s.vals {
                    *v = -*v;
                }
                s.drop_name = true;
                s.ts.clear();
            }
            Ok(Some(r))
        }
        Expr::Binary(b) => binary_scalar(ev, b, g, ann),
        _ => Ok(None),
    }
}

fn selector(
    ev: &Evaluator<'_>,
    vs: &promql_parser::parser::VectorSelector,
    g: &Grid,
) -> Option<RangeVec> {
    let series = ev.series_of(vs);
    if series.len().checked_mul(g.n)? > MAX_CELLS {
        return None;
    }
    let at = ev.at_ms(&vs.at);
    let off = offset_ms(&vs.offset);
    let lb = ev.lookback();
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let mut r = RSeries::new(s.labels.clone(), false, g.n);
        r.ts = vec![0; g.n];
        let mut any = false;
        let mut idx = 0;
        for i in 0..g.n {
            let rt = at.unwrap_or_else(|| g.t(i)).saturating_sub(off);
            // Evaluation times only grow, so the last sample at or before `rt` does too.
            while idx < s.samples.len() && s.samples[idx].t <= rt {
                idx += 1;
            }
            if idx == 0 {
                continue;
            }
            let p = s.samples[idx - 1];
            if p.t <= rt.saturating_sub(lb) || is_stale_nan(p.v) {
                continue;
            }
            r.vals[i] = p.v;
            r.ts[i] = p.t;
            r.present[i] = true;
            any = true;
        }
        if any {
            out.push(r);
        }
    }
    Some(RangeVec {
        series: out,
        keyed: false,
    })
}

fn window_call(
    ev: &mut Evaluator<'_>,
    c: &Call,
    g: &Grid,
    ann: &mut Annotations,
) -> Result<Option<RangeVec>, QueryError> {
    let name = c.func.name;
    let (Some((f, keep_name)), Some(arg)) = (window_fn(name), c.args.args.first()) else {
        return Ok(None);
    };
    let Expr::MatrixSelector(m) = unparen(arg) else {
        return Ok(None);
    };
    let series = ev.series_of(&m.vs);
    if series.len().saturating_mul(g.n) > MAX_CELLS {
        return Ok(None);
    }
    let at = ev.at_ms(&m.vs.at);
    let off = offset_ms(&m.vs.offset);
    let range = ms(&m.range);
    let mut loaded = vec![0usize; g.n];
    let mut out = Vec::new();
    let mut filtered: Vec<Sample> = Vec::new();
    for (n, s) in series.iter().enumerate() {
        if n % 1024 == 0 {
            ev.check_deadline()?;
        }
        let has_stale = s.samples.iter().any(|p| is_stale_nan(p.v));
        let mut r = RSeries::new(s.labels.clone(), !keep_name, g.n);
        let mut any = false;
        let (mut lo, mut hi) = (0, 0);
        for (i, loaded_at) in loaded.iter_mut().enumerate().take(g.n) {
            let rt = at.unwrap_or_else(|| g.t(i)).saturating_sub(off);
            let start = rt.saturating_sub(range);
            // Both window edges only move forward as the evaluation time grows.
            while lo < s.samples.len() && s.samples[lo].t <= start {
                lo += 1;
            }
            while hi < s.samples.len() && s.samples[hi].t <= rt {
                hi += 1;
            }
            if lo >= hi {
                continue;
            }
            let mut pts = &s.samples[lo..hi];
            if has_stale && pts.iter().any(|p| is_stale_nan(p.v)) {
                filtered.clear();
                filtered.extend(pts.iter().copied().filter(|p| !is_stale_nan(p.v)));
                if filtered.is_empty() {
                    continue;
                }
                pts = &filtered;
            }
            *loaded_at += pts.len();
            let window = MatrixVal {
                series: Vec::new(),
                range_start: start,
                range_end: rt,
            };
            if let Some(v) = f(&window, pts) {
                r.vals[i] = v;
                r.present[i] = true;
                any = true;
            }
        }
        if any {
            out.push(r);
        }
    }
    if loaded.iter().any(|&l| l > ev.opts.max_samples) {
        return Ok(None);
    }
    if matches!(name, "rate" | "increase") {
        let p = ev.pos(arg);
        counter_infos(ann, out.iter().map(|r| r.labels.metric_name()), &p);
    }
    Ok(Some(RangeVec {
        series: out,
        keyed: false,
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AggOp {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
}

/// One group's running aggregate at one step; adds in the per-step evaluator's order and
/// with its arithmetic.
#[derive(Clone, Copy, Default)]
struct Acc {
    a: f64,
    b: f64,
    c: f64,
    avg: Avg,
}

impl Acc {
    fn start(op: AggOp) -> Acc {
        let mut x = Acc::default();
        if matches!(op, AggOp::Min | AggOp::Max) {
            x.a = f64::NAN;
        }
        x
    }

    fn add(&mut self, op: AggOp, x: f64) {
        match op {
            AggOp::Sum => (self.a, self.b) = kahan_inc(x, self.a, self.b),
            AggOp::Avg => self.avg.add(x),
            AggOp::Count | AggOp::Group => self.a += 1.0,
            AggOp::Min => {
                if self.a > x || self.a.is_nan() {
                    self.a = x;
                }
            }
            AggOp::Max => {
                if self.a < x || self.a.is_nan() {
                    self.a = x;
                }
            }
            AggOp::Stddev | AggOp::Stdvar => {
                // count, mean, m2
                self.a += 1.0;
                let d = x - self.b;
                self.b += d / self.a;
                self.c += d * (x - self.b);
            }
        }
    }

    fn value(&self, op: AggOp) -> f64 {
        match op {
            AggOp::Sum => self.a + self.b,
            AggOp::Avg => self.avg.value(),
            AggOp::Count => self.a,
            AggOp::Group => 1.0,
            AggOp::Min | AggOp::Max => self.a,
            AggOp::Stddev => (self.c / self.a).sqrt(),
            AggOp::Stdvar => self.c / self.a,
        }
    }
}

fn aggregate(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    g: &Grid,
    ann: &mut Annotations,
) -> Result<Option<RangeVec>, QueryError> {
    let op = a.op.to_string().to_ascii_lowercase();
    let Some(input) = eval(ev, &a.expr, g, ann)? else {
        return Ok(None);
    };
    let m = a.modifier.as_ref();
    // Each input series' group, computed once for the whole range.
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    let mut by_hash: HashMap<u64, usize> = HashMap::new();
    let mut group_of = Vec::with_capacity(input.series.len());
    for (s, r) in input.series.iter().enumerate() {
        let gi = *by_hash.entry(group_hash(&r.labels, m)).or_insert_with(|| {
            groups.push((group_labels(&r.labels, m), Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push(s);
        group_of.push(gi);
    }
    match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let Some(k) = a.param.as_deref().and_then(number) else {
                return Ok(None);
            };
            let Ok(k) = k_param(k) else {
                return Ok(None);
            };
            Ok(Some(select_k(&op, k, &input, &group_of, groups.len(), g)))
        }
        _ => {
            let op = match op.as_str() {
                "sum" => AggOp::Sum,
                "avg" => AggOp::Avg,
                "count" => AggOp::Count,
                "group" => AggOp::Group,
                "min" => AggOp::Min,
                "max" => AggOp::Max,
                "stddev" => AggOp::Stddev,
                "stdvar" => AggOp::Stdvar,
                _ => return Ok(None),
            };
            Ok(simple_aggregate(op, &input, &group_of, groups, g))
        }
    }
}

fn simple_aggregate(
    op: AggOp,
    input: &RangeVec,
    group_of: &[usize],
    groups: Vec<(Labels, Vec<usize>)>,
    g: &Grid,
) -> Option<RangeVec> {
    let mut out: Vec<RSeries> = Vec::with_capacity(groups.len());
    let mut accs: Vec<Vec<Acc>> = Vec::with_capacity(groups.len());
    for (labels, members) in groups {
        // A group's output drops `__name__` when a member does; per step that could
        // differ if members disagreed, so such groups are left to the per-step evaluator.
        let first = members.first().map(|&s| input.series[s].drop_name)?;
        if members.iter().any(|&s| input.series[s].drop_name != first) {
            return None;
        }
        let drop_name = first && labels.has(METRIC_NAME);
        let mut r = RSeries::new(labels, drop_name, g.n);
        r.key = vec![u32::MAX; g.n];
        out.push(r);
        accs.push(vec![Acc::start(op); g.n]);
    }
    let add = |s: usize, i: usize, out: &mut Vec<RSeries>, accs: &mut Vec<Vec<Acc>>| {
        let gi = group_of[s];
        let r = &input.series[s];
        accs[gi][i].add(op, r.vals[i]);
        let o = &mut out[gi];
        if !o.present[i] {
            // The first member at this step places the group in the step's vector.
            o.present[i] = true;
            o.key[i] = input.key(s, i);
        }
    };
    if input.keyed {
        let mut order = Vec::new();
        for i in 0..g.n {
            input.order_at(i, &mut order);
            for &s in &order {
                add(s, i, &mut out, &mut accs);
            }
        }
    } else {
        // Series order is every step's vector order: add series by series.
        for s in 0..input.series.len() {
            for i in 0..g.n {
                if input.series[s].present[i] {
                    add(s, i, &mut out, &mut accs);
                }
            }
        }
    }
    for (r, acc) in out.iter_mut().zip(&accs) {
        for (i, a) in acc.iter().enumerate().take(g.n) {
            if r.present[i] {
                r.vals[i] = a.value(op);
            }
        }
    }
    Some(RangeVec {
        series: out,
        keyed: true,
    })
}

fn select_k(
    op: &str,
    k: i64,
    input: &RangeVec,
    group_of: &[usize],
    ngroups: usize,
    g: &Grid,
) -> RangeVec {
    let mut out: Vec<RSeries> = Vec::new();
    if k < 1 {
        return RangeVec {
            series: out,
            keyed: true,
        };
    }
    let k = usize::try_from(k).unwrap_or(usize::MAX);
    // Output series index of each input series, created on first selection.
    let mut out_of: Vec<Option<usize>> = vec![None; input.series.len()];
    let mut order = Vec::new();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); ngroups];
    let mut group_order: Vec<usize> = Vec::new();
    for i in 0..g.n {
        input.order_at(i, &mut order);
        group_order.clear();
        for &s in &order {
            let gi = group_of[s];
            if members[gi].is_empty() {
                group_order.push(gi);
            }
            members[gi].push(s);
        }
        let mut pos = 0u32;
        for &gi in &group_order {
            let ms = &mut members[gi];
            if op != "limitk" {
                let top = op == "topk";
                let vals = |s: usize| input.series[s].vals[i];
                // Stable: ties keep the step's vector order, as a stable sort would.
                let cmp = |x: &(usize, usize), y: &(usize, usize)| {
                    topk_cmp(vals(x.1), vals(y.1), top).then(x.0.cmp(&y.0))
                };
                let mut ranked: Vec<(usize, usize)> = ms.iter().copied().enumerate().collect();
                if k < ranked.len() {
                    ranked.select_nth_unstable_by(k - 1, cmp);
                    ranked.truncate(k);
                }
                ranked.sort_unstable_by(cmp);
                ms.clear();
                ms.extend(ranked.into_iter().map(|(_, s)| s));
            }
            for &s in ms.iter().take(k) {
                let o = *out_of[s].get_or_insert_with(|| {
                    let src = &input.series[s];
                    let mut r = RSeries::new(src.labels.clone(), src.drop_name, g.n);
                    r.key = vec![u32::MAX; g.n];
                    out.push(r);
                    out.len() - 1
                });
                let r = &mut out[o];
                r.vals[i] = input.series[s].vals[i];
                r.present[i] = true;
                r.key[i] = pos;
                pos += 1;
            }
            ms.clear();
        }
    }
    RangeVec {
        series: out,
        keyed: true,
    }
}

fn binary_scalar(
    ev: &mut Evaluator<'_>,
    b: &BinaryExpr,
    g: &Grid,
    ann: &mut Annotations,
) -> Result<Option<RangeVec>, QueryError> {
    let Ok(op) = Op::parse(&b.op.to_string()) else {
        return Ok(None);
    };
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let (vexpr, scalar, swap) = match (number(&b.lhs), number(&b.rhs)) {
        (None, Some(s)) => (&*b.lhs, s, false),
        (Some(s), None) => (&*b.rhs, s, true),
        _ => return Ok(None),
    };
    let Some(mut r) = eval(ev, vexpr, g, ann)? else {
        return Ok(None);
    };
    let drops = vector_scalar_drops_name(op, return_bool);
    for s in &mut r.series {
        for i in 0..g.n {
            if !s.present[i] {
                continue;
            }
            match vector_scalar_elem(op, s.vals[i], scalar, swap, return_bool) {
                Some(v) => s.vals[i] = v,
                None => s.present[i] = false,
            }
        }
        s.drop_name |= drops;
        s.ts.clear();
    }
    r.series.retain(|s| s.present.iter().any(|&p| p));
    Ok(Some(r))
}
