//! Query planning (data prefetch), per-step evaluation of selectors and subqueries, and the
//! public instant/range entry points.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};
use trawl_model::{Labels, MatchOp, Matcher, Sample, is_stale_nan};

use crate::range::{self, Grid, RangeVec};
use crate::storage::{Queryable, Series};
use crate::{QueryError, RangeSeries, Value, VecSample};

/// Engine settings; defaults are Prometheus's.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `--query.lookback-delta` (default 5m).
    pub lookback_delta: Duration,
    /// `--query.max-samples` (default 50,000,000).
    pub max_samples: usize,
    /// `--query.timeout` (default 2m).
    pub timeout: Duration,
    /// Step used by subqueries written without one (`[5m:]`); Prometheus uses the global
    /// evaluation interval (default 1m).
    pub default_subquery_step: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Warnings and infos, rendered as Prometheus renders them (`PromQL warning: ...`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub(crate) fn warn(&mut self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }
    /// Adds a storage warning as given (no PromQL prefix), once.
    pub(crate) fn storage_warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }
    /// Adds `other`'s annotations that are not here yet.
    pub(crate) fn merge(&mut self, other: Annotations) {
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in other.infos {
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }
    pub(crate) fn info(&mut self, msg: String) {
        let m = format!("PromQL info: {msg}");
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }
}

/// A query's value and annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub annotations: Annotations,
}

/// The PromQL engine. Stateless apart from its options; cheap to share.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// A range vector together with the window it was taken over (needed by rate & co).
pub(crate) struct MatrixVal {
    pub series: Vec<RangeSeries>,
    /// Exclusive start of the window, ms.
    pub range_start: i64,
    /// Inclusive end of the window, ms.
    pub range_end: i64,
}

pub(crate) fn ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(d),
        Some(Offset::Neg(d)) => -ms(d),
    }
}

/// Milliseconds since the epoch, negative before it.
pub fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => ms(&d),
        Err(e) => -ms(&e.duration()),
    }
}

/// The inverse of [`system_time_ms`].
pub fn ms_to_system_time(t: i64) -> SystemTime {
    if t >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(t.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(t.unsigned_abs())
    }
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Instant query at `t` (ms).
    pub fn instant_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        let expr = crate::parse(query)?;
        self.instant_with_source(q, &expr, Some(query), t)
    }

    /// Range query over `[start, end]` at `step` (ms).
    pub fn range_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        let expr = crate::parse(query)?;
        self.range_with_source(q, &expr, Some(query), start, end, step)
    }

    /// Instant evaluation of a parsed expression at `t` (ms).
    pub fn instant(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        self.instant_with_source(q, expr, None, t)
    }

    /// Like [`Engine::instant`]; `src` is the query text, used to locate annotations
    /// (`(line:col)`) since the parser keeps no positions.
    pub fn instant_with_source(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        src: Option<&str>,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        let mut ev = Evaluator::new(&self.opts, q, t, t, 0);
        ev.src = src.map(str::to_owned);
        ev.prefetch(q, expr)?;
        let v = ev.eval(expr, t)?;
        let value = match v {
            Value::Vector(v) => Value::Vector(finish_vector(v, rewrites_labels(expr))?),
            Value::Matrix(m) => Value::Matrix(finish_matrix(m)?),
            other => other,
        };
        Ok(QueryResult {
            value,
            annotations: ev.ann,
        })
    }

    /// Range evaluation: one instant evaluation per step, merged into a matrix sorted by labels.
    pub fn range(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        self.range_with_source(q, expr, None, start, end, step)
    }

    /// Like [`Engine::range`], with the query text for annotation positions.
    pub fn range_with_source(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        src: Option<&str>,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::Eval(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(QueryError::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        match value_type(expr) {
            "string" | "matrix" => {
                let tn = if value_type(expr) == "string" {
                    "string"
                } else {
                    "range vector"
                };
                return Err(QueryError::Eval(format!(
                    "invalid expression type \"{tn}\" for range query, must be Scalar or instant Vector"
                )));
            }
            _ => {}
        }
        let mut ev = Evaluator::new(&self.opts, q, start, end, step);
        ev.src = src.map(str::to_owned);
        ev.prefetch(q, expr)?;
        let rewritten = rewrites_labels(expr);
        if let Some(grid) = Grid::new(start, end, step) {
            // Whole-range evaluation where the shape allows it; otherwise its supported
            // sub-expressions are computed for all steps up front and served per step.
            ev.grid = Some(grid);
            match range::try_range(&mut ev, expr, &grid)? {
                Some(rv) => {
                    if let Some(m) = finish_range(rv, &grid, self.opts.max_samples) {
                        return Ok(QueryResult {
                            value: Value::Matrix(m),
                            annotations: ev.ann,
                        });
                    }
                    // An error the per-step evaluation reports in its own words.
                }
                None => ev.precompute(expr, &grid)?,
            }
        }
        let mut merged = SeriesMerger::default();
        let mut total = 0usize;
        let mut t = start;
        while t <= end {
            ev.check_deadline()?;
            match ev.eval(expr, t)? {
                Value::Scalar(v) => {
                    merged.push(Labels::empty(), Sample::new(t, v));
                    total += 1;
                }
                Value::Vector(v) => {
                    for s in finish_vector(v, rewritten)? {
                        merged.push(s.labels, Sample::new(t, s.v));
                        total += 1;
                    }
                }
                other => {
                    return Err(QueryError::Eval(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )));
                }
            }
            if total > self.opts.max_samples {
                return Err(QueryError::TooManySamples("query execution"));
            }
            match t.checked_add(step) {
                Some(n) => t = n,
                None => break,
            }
        }
        let value = Value::Matrix(merged.into_sorted());
        Ok(QueryResult {
            value,
            annotations: ev.ann,
        })
    }
}

/// The range-query matrix of a whole-range result, as the per-step loop would build it:
/// metric names dropped where flagged, series with equal final labels merged. `None` when
/// the per-step loop would fail (two series with the same labels at one step, too many
/// samples), so that it reports the error.
fn finish_range(rv: RangeVec, grid: &Grid, max_samples: usize) -> Option<Vec<RangeSeries>> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(rv.series.len());
    let mut members: Vec<Vec<usize>> = Vec::with_capacity(rv.series.len());
    let mut labels: Vec<Labels> = Vec::with_capacity(rv.series.len());
    for (s, r) in rv.series.iter().enumerate() {
        let l = if r.drop_name {
            r.labels.without(NAME_LABELS)
        } else {
            r.labels.clone()
        };
        match index.get(&l) {
            Some(&i) => members[i].push(s),
            None => {
                index.insert(l.clone(), labels.len());
                labels.push(l);
                members.push(vec![s]);
            }
        }
    }
    let mut total = 0usize;
    let mut out = Vec::with_capacity(labels.len());
    for (l, ms) in labels.into_iter().zip(members) {
        let mut samples = Vec::new();
        for i in 0..grid.n {
            let mut here = ms.iter().filter(|&&s| rv.series[s].present[i]);
            if let Some(&s) = here.next() {
                // Two series with one label set at one step: a duplicate-labelset error.
                if here.next().is_some() {
                    return None;
                }
                samples.push(Sample::new(grid.t(i), rv.series[s].vals[i]));
            }
        }
        total += samples.len();
        if total > max_samples {
            return None;
        }
        out.push(RangeSeries {
            labels: l,
            samples,
            drop_name: false,
        });
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Some(out)
}

/// Collects per-step samples into series. Series produced from stored data keep the same
/// `Labels` allocation across steps, so they are found by pointer before hashing; the merger
/// holds a clone of every key, so a pointer cannot be reused by other labels meanwhile.
#[derive(Default)]
struct SeriesMerger {
    series: Vec<RangeSeries>,
    by_ptr: HashMap<usize, usize>,
    by_labels: HashMap<Labels, usize>,
}

impl SeriesMerger {
    fn push(&mut self, labels: Labels, p: Sample) {
        let ptr = labels.as_slice().as_ptr() as usize;
        if let Some(&i) = self.by_ptr.get(&ptr)
            && self.series[i].labels.ptr_eq(&labels)
        {
            self.series[i].samples.push(p);
            return;
        }
        let i = match self.by_labels.get(&labels) {
            Some(&i) => i,
            None => {
                self.by_labels.insert(labels.clone(), self.series.len());
                self.series.push(RangeSeries {
                    labels: labels.clone(),
                    samples: Vec::new(),
                    drop_name: false,
                });
                self.series.len() - 1
            }
        };
        self.by_ptr.insert(ptr, i);
        self.series[i].samples.push(p);
    }

    fn into_sorted(mut self) -> Vec<RangeSeries> {
        self.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        self.series
    }
}

/// Static type of an expression, as the parser would infer it.
pub(crate) fn value_type(e: &Expr) -> &'static str {
    match e {
        Expr::NumberLiteral(_) => "scalar",
        Expr::StringLiteral(_) => "string",
        Expr::VectorSelector(_) | Expr::Aggregate(_) => "vector",
        Expr::MatrixSelector(_) | Expr::Subquery(_) => "matrix",
        Expr::Paren(p) => value_type(&p.expr),
        Expr::Unary(u) => value_type(&u.expr),
        Expr::Binary(b) => {
            if value_type(&b.lhs) == "scalar" && value_type(&b.rhs) == "scalar" {
                "scalar"
            } else {
                "vector"
            }
        }
        Expr::Call(c) => match c.func.return_type {
            promql_parser::parser::value::ValueType::Scalar => "scalar",
            promql_parser::parser::value::ValueType::String => "string",
            promql_parser::parser::value::ValueType::Matrix => "matrix",
            _ => "vector",
        },
        Expr::Extension(_) => "vector",
    }
}

/// Removes flagged metric names and rejects duplicate label sets (Prometheus's final step
/// with delayed name removal).
pub(crate) fn finish_vector(
    v: Vec<VecSample>,
    labels_rewritten: bool,
) -> Result<Vec<VecSample>, QueryError> {
    // Series stay unique unless names were dropped or labels rewritten; only then can two
    // collide. Duplicates are detected by 64-bit label hash, as upstream does.
    let check = labels_rewritten || v.iter().any(|s| s.drop_name);
    let mut seen = HashSet::with_capacity(if check { v.len() } else { 0 });
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        if s.drop_name {
            s.labels = s.labels.without(NAME_LABELS);
            s.drop_name = false;
        }
        if check && !seen.insert(s.labels.stable_hash()) {
            return Err(dup_labelset());
        }
        out.push(s);
    }
    Ok(out)
}

/// Whether the expression calls a function that rewrites labels (and so may create
/// duplicate series).
fn rewrites_labels(e: &Expr) -> bool {
    match e {
        Expr::Call(c) => {
            matches!(c.func.name, "label_replace" | "label_join" | "info")
                || c.args.args.iter().any(|a| rewrites_labels(a))
        }
        Expr::Aggregate(a) => {
            rewrites_labels(&a.expr) || a.param.as_ref().is_some_and(|p| rewrites_labels(p))
        }
        Expr::Unary(u) => rewrites_labels(&u.expr),
        Expr::Binary(b) => rewrites_labels(&b.lhs) || rewrites_labels(&b.rhs),
        Expr::Paren(p) => rewrites_labels(&p.expr),
        Expr::Subquery(s) => rewrites_labels(&s.expr),
        _ => false,
    }
}

fn finish_matrix(m: Vec<RangeSeries>) -> Result<Vec<RangeSeries>, QueryError> {
    let mut seen = HashSet::with_capacity(m.len());
    let mut out = Vec::with_capacity(m.len());
    for mut s in m {
        if s.drop_name {
            s.labels = s.labels.without(NAME_LABELS);
            s.drop_name = false;
        }
        if !seen.insert(s.labels.clone()) {
            return Err(dup_labelset());
        }
        out.push(s);
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Labels removed together when a metric name is dropped: the name, and the `__type__` /
/// `__unit__` metadata labels that describe it (Prometheus's type-and-unit labels).
const NAME_LABELS: &[&str] = &[trawl_model::METRIC_NAME, "__type__", "__unit__"];

pub(crate) fn dup_labelset() -> QueryError {
    QueryError::Eval("vector cannot contain metrics with the same labelset".into())
}

pub(crate) struct Evaluator<'a> {
    pub opts: &'a EngineOptions,
    /// Query start/end (for `@ start()`/`@ end()` and `start()`/`end()`).
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub ann: Annotations,
    /// Query text, for annotation positions.
    pub src: Option<String>,
    data: HashMap<usize, Vec<Series>>,
    /// The range query's steps, when evaluating one.
    pub(crate) grid: Option<Grid>,
    /// Sub-expressions computed for every step of `grid` up front, by expression address.
    pre: HashMap<usize, RangeVec>,
    deadline: Instant,
    /// Storage, for lookups not known before evaluation (`info()`).
    pub q: &'a dyn Queryable,
}

fn key_of<T>(x: &T) -> usize {
    std::ptr::from_ref(x) as usize
}

pub(crate) fn to_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let conv = |m: &promql_parser::label::Matcher| -> Result<Matcher, QueryError> {
        let op = match m.op {
            promql_parser::label::MatchOp::Equal => MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => MatchOp::RegexMatch,
            promql_parser::label::MatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        Matcher::new(op, m.name.clone(), m.value.clone())
            .map_err(|e| QueryError::Parse(e.to_string()))
    };
    let mut base = Vec::new();
    if let Some(n) = &vs.name {
        base.push(Matcher::equal(trawl_model::METRIC_NAME, n.clone()));
    }
    let mut sets = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        let mut set = base.clone();
        for m in &vs.matchers.matchers {
            set.push(conv(m)?);
        }
        sets.push(set);
    } else {
        for alt in &vs.matchers.or_matchers {
            let mut set = base.clone();
            for m in vs.matchers.matchers.iter().chain(alt.iter()) {
                set.push(conv(m)?);
            }
            sets.push(set);
        }
    }
    Ok(sets)
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        opts: &'a EngineOptions,
        q: &'a dyn Queryable,
        start: i64,
        end: i64,
        step: i64,
    ) -> Self {
        Self {
            q,
            opts,
            start,
            end,
            step,
            ann: Annotations::default(),
            src: None,
            data: HashMap::new(),
            grid: None,
            pre: HashMap::new(),
            deadline: Instant::now()
                .checked_add(opts.timeout)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
        }
    }

    /// ` (line:col)` of the sub-expression `e` in the query text, or "" when unknown.
    pub(crate) fn pos(&self, e: &Expr) -> String {
        let Some(src) = &self.src else {
            return String::new();
        };
        let anchor = match e {
            Expr::Call(c) => format!("{}(", c.func.name),
            Expr::VectorSelector(vs) => vs.name.clone().unwrap_or_else(|| "{".into()),
            Expr::MatrixSelector(m) => m.vs.name.clone().unwrap_or_else(|| "{".into()),
            Expr::Aggregate(a) => a.op.to_string(),
            Expr::Paren(_) => "(".into(),
            other => other.to_string(),
        };
        let Some(off) = src.find(&anchor) else {
            return String::new();
        };
        let before = &src[..off];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" ({line}:{col})")
    }

    pub(crate) fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    pub(crate) fn lookback(&self) -> i64 {
        ms(&self.opts.lookback_delta)
    }

    /// Walks the expression with the window of evaluation times each node will see and
    /// fetches every selector's series once.
    fn prefetch(&mut self, q: &dyn Queryable, expr: &Expr) -> Result<(), QueryError> {
        let mut wants: Vec<(usize, &VectorSelector, i64, i64)> = Vec::new();
        self.plan(expr, self.start, self.end, &mut wants);
        for (key, vs, mint, maxt) in wants {
            let sets = to_matchers(vs)?;
            let mut warnings = Vec::new();
            let mut series = if sets.len() == 1 {
                q.select_warn(&sets[0], mint, maxt, &mut warnings)?
            } else {
                // `{a="x" or b="y"}`: union of the alternatives, each series once.
                let mut by_labels: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
                for set in sets {
                    for s in q.select_warn(&set, mint, maxt, &mut warnings)? {
                        by_labels.entry(s.labels).or_insert(s.samples);
                    }
                }
                by_labels
                    .into_iter()
                    .map(|(labels, samples)| Series { labels, samples })
                    .collect()
            };
            for w in warnings {
                self.ann.storage_warn(w);
            }
            // Storage order is label order in Prometheus; `limitk` & co. depend on it.
            if !series.windows(2).all(|w| w[0].labels <= w[1].labels) {
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
            self.data.insert(key, series);
        }
        Ok(())
    }

    fn plan<'e>(
        &self,
        e: &'e Expr,
        lo: i64,
        hi: i64,
        out: &mut Vec<(usize, &'e VectorSelector, i64, i64)>,
    ) {
        match e {
            Expr::VectorSelector(vs) => {
                let (lo, hi) = self.window(&vs.at, &vs.offset, lo, hi);
                out.push((
                    key_of(vs),
                    vs,
                    lo.saturating_sub(self.lookback()).saturating_add(1),
                    hi,
                ));
            }
            Expr::MatrixSelector(m) => {
                let (lo, hi) = self.window(&m.vs.at, &m.vs.offset, lo, hi);
                out.push((
                    key_of(&m.vs),
                    &m.vs,
                    lo.saturating_sub(ms(&m.range)).saturating_add(1),
                    hi,
                ));
            }
            Expr::Subquery(sq) => {
                let (lo, hi) = self.window(&sq.at, &sq.offset, lo, hi);
                self.plan(&sq.expr, lo.saturating_sub(ms(&sq.range)), hi, out);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi, out),
            Expr::Unary(u) => self.plan(&u.expr, lo, hi, out),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi, out);
                self.plan(&b.rhs, lo, hi, out);
            }
            Expr::Aggregate(a) => {
                self.plan(&a.expr, lo, hi, out);
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi, out);
                }
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, lo, hi, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn window(
        &self,
        at: &Option<AtModifier>,
        off: &Option<Offset>,
        lo: i64,
        hi: i64,
    ) -> (i64, i64) {
        let o = offset_ms(off);
        match self.at_ms(at) {
            Some(a) => (a.saturating_sub(o), a.saturating_sub(o)),
            None => (lo.saturating_sub(o), hi.saturating_sub(o)),
        }
    }

    pub(crate) fn series_of(&self, vs: &VectorSelector) -> &[Series] {
        self.data.get(&key_of(vs)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Computes the maximal sub-expressions of `e` that [`range`] supports for every step
    /// of `grid`, so the per-step evaluation reads them instead of recomputing. Nothing
    /// under a subquery is precomputed: it is evaluated at the subquery's own times.
    fn precompute(&mut self, e: &Expr, grid: &Grid) -> Result<(), QueryError> {
        if value_type(e) == "vector"
            && let Some(rv) = range::try_range(self, e, grid)?
        {
            self.pre.insert(key_of(e), rv);
            return Ok(());
        }
        match e {
            Expr::Paren(p) => self.precompute(&p.expr, grid),
            Expr::Unary(u) => self.precompute(&u.expr, grid),
            Expr::Binary(b) => {
                self.precompute(&b.lhs, grid)?;
                self.precompute(&b.rhs, grid)
            }
            Expr::Aggregate(a) => {
                self.precompute(&a.expr, grid)?;
                match &a.param {
                    Some(p) => self.precompute(p, grid),
                    None => Ok(()),
                }
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.precompute(a, grid)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn eval(&mut self, e: &Expr, t: i64) -> Result<Value, QueryError> {
        if !self.pre.is_empty()
            && let Some(rv) = self.pre.get(&key_of(e))
            && let Some(i) = self.grid.and_then(|g| g.index(t))
        {
            return Ok(Value::Vector(rv.vector_at(i, t)));
        }
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(mut v) => {
                    for s in &mut v {
                        s.v = -s.v;
                        s.t = t;
                        s.drop_name = true;
                    }
                    Ok(Value::Vector(v))
                }
                other => Err(QueryError::Eval(format!(
                    "unary minus on {}",
                    other.type_name()
                ))),
            },
            Expr::Binary(b) => crate::binop::eval_binary(self, b, t),
            Expr::Aggregate(a) => crate::aggregate::eval_aggregate(self, a, t),
            Expr::Call(c) => crate::functions::eval_call(self, c, t),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.eval_vector_selector(vs, t))),
            Expr::MatrixSelector(m) => Ok(Value::Matrix(self.eval_matrix_selector(m, t)?.series)),
            Expr::Subquery(sq) => Ok(Value::Matrix(self.eval_subquery(sq, t)?.series)),
            Expr::Extension(_) => Err(QueryError::Eval("unsupported extension expression".into())),
        }
    }

    pub(crate) fn eval_vector(&mut self, e: &Expr, t: i64) -> Result<Vec<VecSample>, QueryError> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::Eval(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn eval_scalar(&mut self, e: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(e, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::Eval(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn eval_vector_selector(&self, vs: &VectorSelector, t: i64) -> Vec<VecSample> {
        let rt = self
            .at_ms(&vs.at)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&vs.offset));
        let lb = self.lookback();
        let mut out = Vec::new();
        for s in self.series_of(vs) {
            let idx = s.samples.partition_point(|p| p.t <= rt);
            if idx == 0 {
                continue;
            }
            let p = s.samples[idx - 1];
            if p.t <= rt.saturating_sub(lb) || is_stale_nan(p.v) {
                continue;
            }
            out.push(VecSample {
                labels: s.labels.clone(),
                t: p.t,
                v: p.v,
                drop_name: false,
            });
        }
        out
    }

    pub(crate) fn eval_matrix(&mut self, e: &Expr, t: i64) -> Result<MatrixVal, QueryError> {
        match e {
            Expr::MatrixSelector(m) => self.eval_matrix_selector(m, t),
            Expr::Subquery(sq) => self.eval_subquery(sq, t),
            Expr::Paren(p) => self.eval_matrix(&p.expr, t),
            _ => Err(QueryError::Eval("expected range vector".into())),
        }
    }

    /// The `(start, end]` window a matrix selector covers when evaluated at `t`.
    pub(crate) fn matrix_window(&self, m: &MatrixSelector, t: i64) -> (i64, i64) {
        let rt = self
            .at_ms(&m.vs.at)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&m.vs.offset));
        (rt.saturating_sub(ms(&m.range)), rt)
    }

    pub(crate) fn eval_matrix_selector(
        &mut self,
        m: &MatrixSelector,
        t: i64,
    ) -> Result<MatrixVal, QueryError> {
        let rt = self
            .at_ms(&m.vs.at)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&m.vs.offset));
        let range = ms(&m.range);
        let mut out = Vec::new();
        let mut loaded = 0usize;
        for s in self.series_of(&m.vs) {
            let lo = s
                .samples
                .partition_point(|p| p.t <= rt.saturating_sub(range));
            let hi = s.samples.partition_point(|p| p.t <= rt);
            if lo >= hi {
                continue;
            }
            let samples: Vec<Sample> = s.samples[lo..hi]
                .iter()
                .copied()
                .filter(|p| !is_stale_nan(p.v))
                .collect();
            if samples.is_empty() {
                continue;
            }
            loaded += samples.len();
            out.push(RangeSeries {
                labels: s.labels.clone(),
                samples,
                drop_name: false,
            });
        }
        if loaded > self.opts.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(MatrixVal {
            series: out,
            range_start: rt.saturating_sub(range),
            range_end: rt,
        })
    }

    pub(crate) fn eval_subquery(
        &mut self,
        sq: &SubqueryExpr,
        t: i64,
    ) -> Result<MatrixVal, QueryError> {
        let rt = self
            .at_ms(&sq.at)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&sq.offset));
        let range = ms(&sq.range);
        let step = match &sq.step {
            Some(s) if !s.is_zero() => ms(s),
            _ => ms(&self.opts.default_subquery_step),
        };
        let first = rt.saturating_sub(range);
        let mut ts = step * (first / step);
        if ts <= first {
            ts = ts.saturating_add(step);
        }
        let mut series: Vec<RangeSeries> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut loaded = 0usize;
        while ts <= rt {
            self.check_deadline()?;
            let v = match self.eval(&sq.expr, ts)? {
                Value::Scalar(v) => vec![VecSample {
                    labels: Labels::empty(),
                    t: ts,
                    v,
                    drop_name: false,
                }],
                Value::Vector(v) => v,
                other => {
                    return Err(QueryError::Eval(format!(
                        "subquery over {}",
                        other.type_name()
                    )));
                }
            };
            for s in v {
                loaded += 1;
                match index.get(&s.labels) {
                    Some(&i) => series[i].samples.push(Sample::new(ts, s.v)),
                    None => {
                        index.insert(s.labels.clone(), series.len());
                        series.push(RangeSeries {
                            labels: s.labels,
                            samples: vec![Sample::new(ts, s.v)],
                            drop_name: s.drop_name,
                        });
                    }
                }
            }
            if loaded > self.opts.max_samples {
                return Err(QueryError::TooManySamples("query execution"));
            }
            match ts.checked_add(step) {
                Some(n) => ts = n,
                None => break,
            }
        }
        Ok(MatrixVal {
            series,
            range_start: first,
            range_end: rt,
        })
    }
}
