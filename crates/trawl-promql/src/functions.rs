//! PromQL functions on float samples.

use std::collections::HashMap;

use promql_parser::parser::{Call, Expr};
use trawl_model::{Labels, METRIC_NAME, MatchOp, Sample};

use crate::aggregate::Avg;
use crate::engine::{Evaluator, MatrixVal, to_matchers};
use crate::{QueryError, Value, VecSample};

/// Neumaier-compensated summation step: returns the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    if t.is_infinite() {
        (t, 0.0)
    } else if sum.abs() >= inc.abs() {
        (t, c + ((sum - t) + inc))
    } else {
        (t, c + ((inc - t) + sum))
    }
}

/// Formats a float the way Go's `strconv.FormatFloat(v, 'f', -1, 64)` / `%g`-free paths do
/// for label values and messages.
pub(crate) fn fmt_go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Go's `%g` for annotation messages: shortest representation, exponent form for large/small.
pub(crate) fn fmt_g(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return fmt_go_float(v);
    }
    let exp = v.abs().log10().floor() as i32;
    if (-4..21).contains(&exp) {
        format!("{v}")
    } else {
        let s = format!("{v:e}");
        // Rust writes 1e21; Go writes 1e+21.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    }
}

/// `quantile` as Prometheus computes it (linear interpolation between closest ranks).
pub(crate) fn quantile_of(q: f64, mut vals: Vec<f64>) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's sort.Float64s order: NaN first.
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    vals[lower as usize] * (1.0 - w) + vals[upper as usize] * w
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

fn arg(c: &Call, i: usize) -> Result<&Expr, QueryError> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| QueryError::Eval(format!("missing argument {i}")))
}

fn map_vec(v: Vec<VecSample>, t: i64, f: impl Fn(f64) -> f64) -> Vec<VecSample> {
    v.into_iter()
        .map(|mut s| {
            s.v = f(s.v);
            s.t = t;
            s.drop_name = true;
            s
        })
        .collect()
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, v: f64) -> f64 {
    if v.is_nan() || v.is_infinite() {
        return f64::NAN;
    }
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let month_len = [
        31,
        if is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    match name {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let before: i64 = month_len[..(m - 1) as usize].iter().sum();
            (before + d) as f64
        }
        "days_in_month" => month_len[(m - 1) as usize] as f64,
        "hour" => (sod / 3600) as f64,
        "minute" => ((sod % 3600) / 60) as f64,
        _ => f64::NAN,
    }
}

/// Labels `absent()`/`absent_over_time()` report: the equality matchers of the selector,
/// except a name matched twice.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        Expr::Subquery(sq) => match unparen(&sq.expr) {
            Expr::VectorSelector(vs) => vs,
            _ => return Labels::empty(),
        },
        _ => return Labels::empty(),
    };
    let sets = match to_matchers(vs) {
        Ok(s) if s.len() == 1 => s,
        _ => return Labels::empty(),
    };
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    for m in &sets[0] {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal {
            seen.entry(m.name.clone())
                .and_modify(|v| *v = None)
                .or_insert_with(|| Some(m.value.clone()));
        } else {
            seen.entry(m.name.clone())
                .and_modify(|v| *v = None)
                .or_insert(None);
        }
    }
    Labels::from_pairs(seen.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))))
}

fn metric_name_of(l: &Labels) -> String {
    l.metric_name().to_string()
}

/// rate/increase/delta with Prometheus's extrapolation to the window edges.
fn extrapolated(m: &MatrixVal, s: &[Sample], is_counter: bool, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = first.v;
        for p in &s[1..] {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    let range_secs = (m.range_end - m.range_start) as f64 / 1000.0;
    let mut to_start = (first.t - m.range_start) as f64 / 1000.0;
    let mut to_end = (m.range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (s.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range_secs;
    }
    Some(result * factor)
}

fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn over_time(
    ev: &mut Evaluator<'_>,
    c: &Call,
    t: i64,
    matrix_arg: usize,
    keep_name: bool,
    f: impl Fn(&MatrixVal, &[Sample]) -> Option<f64>,
) -> Result<Value, QueryError> {
    let a = arg(c, matrix_arg)?;
    if let Expr::MatrixSelector(ms) = unparen(a) {
        // Fast path: work on the stored samples in place instead of copying each window.
        let (range_start, range_end) = ev.matrix_window(ms, t);
        let window = MatrixVal {
            series: Vec::new(),
            range_start,
            range_end,
        };
        let mut out = Vec::new();
        let mut loaded = 0usize;
        let mut filtered: Vec<Sample> = Vec::new();
        for s in ev.series_of(&ms.vs) {
            let lo = s.samples.partition_point(|p| p.t <= range_start);
            let hi = s.samples.partition_point(|p| p.t <= range_end);
            if lo >= hi {
                continue;
            }
            let mut pts = &s.samples[lo..hi];
            if pts.iter().any(|p| trawl_model::is_stale_nan(p.v)) {
                filtered.clear();
                filtered.extend(
                    pts.iter()
                        .copied()
                        .filter(|p| !trawl_model::is_stale_nan(p.v)),
                );
                if filtered.is_empty() {
                    continue;
                }
                pts = &filtered;
            }
            loaded += pts.len();
            if let Some(v) = f(&window, pts) {
                out.push(VecSample {
                    labels: s.labels.clone(),
                    t,
                    v,
                    drop_name: !keep_name,
                });
            }
        }
        if loaded > ev.opts.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        return Ok(Value::Vector(out));
    }
    let m = ev.eval_matrix(a, t)?;
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        if let Some(v) = f(&m, &s.samples) {
            out.push(VecSample {
                labels: s.labels.clone(),
                t,
                v,
                drop_name: s.drop_name || !keep_name,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// A function of one window of samples: a range-vector function without scalar arguments.
pub(crate) type WindowFn = fn(&MatrixVal, &[Sample]) -> Option<f64>;

/// The window function of `name`, and whether its result keeps the metric name. Shared by
/// the per-step and the whole-range evaluation so both compute identically.
pub(crate) fn window_fn(name: &str) -> Option<(WindowFn, bool)> {
    let f: WindowFn = match name {
        "present_over_time" => |_, s| (!s.is_empty()).then_some(1.0),
        "count_over_time" => |_, s| Some(s.len() as f64),
        "sum_over_time" => |_, s| {
            let (mut sum, mut cc) = (0.0, 0.0);
            for p in s {
                (sum, cc) = kahan_inc(p.v, sum, cc);
            }
            Some(if sum.is_infinite() { sum } else { sum + cc })
        },
        "avg_over_time" => |_, s| {
            let mut a = Avg::default();
            for p in s {
                a.add(p.v);
            }
            Some(a.value())
        },
        "min_over_time" => |_, s| {
            Some(s.iter().fold(
                f64::NAN,
                |acc, p| if p.v < acc || acc.is_nan() { p.v } else { acc },
            ))
        },
        "max_over_time" => |_, s| {
            Some(s.iter().fold(
                f64::NAN,
                |acc, p| if p.v > acc || acc.is_nan() { p.v } else { acc },
            ))
        },
        "last_over_time" => return Some((|_, s| s.last().map(|p| p.v), true)),
        "first_over_time" => return Some((|_, s| s.first().map(|p| p.v), true)),
        "ts_of_last_over_time" => |_, s| s.last().map(|p| p.t as f64 / 1000.0),
        "ts_of_first_over_time" => |_, s| s.first().map(|p| p.t as f64 / 1000.0),
        "ts_of_max_over_time" => |_, s| ts_of_extreme(s, true),
        "ts_of_min_over_time" => |_, s| ts_of_extreme(s, false),
        "stddev_over_time" => |_, s| Some(variance(s).sqrt()),
        "stdvar_over_time" => |_, s| Some(variance(s)),
        "mad_over_time" => |_, s| {
            let vals: Vec<f64> = s.iter().map(|p| p.v).collect();
            if vals.iter().any(|v| v.is_nan()) {
                return Some(f64::NAN);
            }
            let med = quantile_of(0.5, vals.clone());
            Some(quantile_of(
                0.5,
                vals.iter().map(|v| (v - med).abs()).collect(),
            ))
        },
        "changes" => |_, s| {
            let mut n = 0.0;
            for w in s.windows(2) {
                let (a, b) = (w[0].v, w[1].v);
                if !(a == b || (a.is_nan() && b.is_nan())) {
                    n += 1.0;
                }
            }
            Some(n)
        },
        "resets" => |_, s| Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64),
        "rate" => |m, s| extrapolated(m, s, true, true),
        "increase" => |m, s| extrapolated(m, s, true, false),
        "delta" => |m, s| extrapolated(m, s, false, false),
        "irate" => |_, s| instant_delta(s, true),
        "idelta" => |_, s| instant_delta(s, false),
        "deriv" => |_, s| {
            if s.len() < 2 {
                return None;
            }
            Some(linear_regression(s, s[0].t).0)
        },
        _ => return None,
    };
    Some((f, false))
}

fn ts_of_extreme(s: &[Sample], is_max: bool) -> Option<f64> {
    let mut best: Option<Sample> = None;
    for p in s {
        best = match best {
            None => Some(*p),
            Some(b) => {
                let better = if is_max { p.v >= b.v } else { p.v <= b.v };
                if better || b.v.is_nan() {
                    Some(*p)
                } else {
                    Some(b)
                }
            }
        };
    }
    best.map(|b| b.t as f64 / 1000.0)
}

fn instant_delta(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let last = s[s.len() - 1];
    let prev = s[s.len() - 2];
    let mut v = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    if is_rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

/// The info `rate`/`increase` give for metric names that do not look like counters; `names`
/// are the metric names of the series that produced a value.
pub(crate) fn counter_infos<'n>(
    ann: &mut crate::engine::Annotations,
    names: impl Iterator<Item = &'n str>,
    pos: &str,
) {
    let mut reported: Vec<&str> = Vec::new();
    for n in names {
        let counter_like = ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|suffix| n.ends_with(suffix));
        if !n.is_empty() && !counter_like && !reported.contains(&n) {
            reported.push(n);
            ann.info(format!(
                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}{pos}"
            ));
        }
    }
}

fn variance(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + cm);
        (mean, cm) = kahan_inc(delta / count, mean, cm);
        (aux, ca) = kahan_inc(delta * (p.v - (mean + cm)), aux, ca);
    }
    (aux + ca) / count
}

fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    // Merge buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    let mut forced = false;
    let mut prev = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        let cur = b.1;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, 1e-12) {
            b.1 = prev;
            continue;
        }
        if cur < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    if merged.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let n = merged.len();
    let b = merged[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return (merged[n - 2].0, forced);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return (merged[0].0, forced);
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

/// One classic histogram: labels without `le`, (upper bound, count) buckets, metric name.
type ClassicGroup = (Labels, Vec<(f64, f64)>, String);

/// Groups classic-histogram bucket series (`le` label) by their other labels (metric name
/// included: with delayed name removal it is dropped afterwards, so two histograms that
/// differ only in name collide as upstream's do).
fn classic_groups(ev: &mut Evaluator<'_>, v: &[VecSample], pos: &str) -> Vec<ClassicGroup> {
    let mut groups: Vec<ClassicGroup> = Vec::new();
    let mut idx: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let le = s.labels.get_or_empty("le");
        let Some(ub) = parse_go_float(le) else {
            ev.ann.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}{pos}",
                le,
                s.labels.metric_name()
            ));
            continue;
        };
        let key = s.labels.without(&["le"]);
        match idx.get(&key) {
            Some(&i) => groups[i].1.push((ub, s.v)),
            None => {
                idx.insert(key.clone(), groups.len());
                groups.push((key, vec![(ub, s.v)], metric_name_of(&s.labels)));
            }
        }
    }
    groups
}

/// Label value for `histogram_quantiles`: integers keep one decimal (`1.0`).
fn fmt_quantile_label(q: f64) -> String {
    if q.is_finite() && q.fract() == 0.0 {
        format!("{q:.1}")
    } else {
        fmt_go_float(q)
    }
}

/// Estimated fraction of observations between `lo` and `hi` in classic buckets.
/// Buckets of infinite width are never interpolated into.
fn bucket_fraction(lo: f64, hi: f64, buckets: &mut [(f64, f64)]) -> f64 {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    let mut prev = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        if b.1 < prev {
            b.1 = prev;
        }
        prev = b.1;
    }
    let count = merged[merged.len() - 1].1;
    if count == 0.0 || lo.is_nan() || hi.is_nan() {
        return f64::NAN;
    }
    if lo >= hi {
        return 0.0;
    }
    let rank = |x: f64| -> f64 {
        if x == f64::NEG_INFINITY {
            return 0.0;
        }
        if x == f64::INFINITY {
            return count;
        }
        let mut prev_ub = f64::NEG_INFINITY;
        let mut prev_c = 0.0;
        for (i, &(ub, c)) in merged.iter().enumerate() {
            let lb = if i == 0 && ub > 0.0 { 0.0 } else { prev_ub };
            if x <= ub {
                if x <= lb {
                    return prev_c;
                }
                if lb == f64::NEG_INFINITY {
                    return c;
                }
                if ub == f64::INFINITY {
                    return prev_c;
                }
                return prev_c + (c - prev_c) * (x - lb) / (ub - lb);
            }
            prev_ub = ub;
            prev_c = c;
        }
        count
    };
    (rank(hi) - rank(lo)) / count
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < eps * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

fn string_arg(ev: &mut Evaluator<'_>, e: &Expr, t: i64) -> Result<String, QueryError> {
    match ev.eval(e, t)? {
        Value::String(s) => Ok(s),
        other => Err(QueryError::Eval(format!(
            "expected string, got {}",
            other.type_name()
        ))),
    }
}

/// Natural order for `sort_by_label`: runs of digits compare numerically.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].cmp(&bb[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, c: &Call, t: i64) -> Result<Value, QueryError> {
    let name = c.func.name;
    let simple: Option<fn(f64) -> f64> = match name {
        "abs" => Some(f64::abs),
        "ceil" => Some(f64::ceil),
        "floor" => Some(f64::floor),
        "exp" => Some(f64::exp),
        "sqrt" => Some(f64::sqrt),
        "ln" => Some(f64::ln),
        "log2" => Some(f64::log2),
        "log10" => Some(f64::log10),
        "sin" => Some(f64::sin),
        "cos" => Some(f64::cos),
        "tan" => Some(f64::tan),
        "asin" => Some(f64::asin),
        "acos" => Some(f64::acos),
        "atan" => Some(f64::atan),
        "sinh" => Some(f64::sinh),
        "cosh" => Some(f64::cosh),
        "tanh" => Some(f64::tanh),
        "asinh" => Some(f64::asinh),
        "acosh" => Some(f64::acosh),
        "atanh" => Some(f64::atanh),
        "deg" => Some(|v| v * 180.0 / std::f64::consts::PI),
        "rad" => Some(|v| v * std::f64::consts::PI / 180.0),
        "sgn" => Some(|v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        _ => None,
    };
    if let Some(f) = simple {
        let v = ev.eval_vector(arg(c, 0)?, t)?;
        return Ok(Value::Vector(map_vec(v, t, f)));
    }
    if let Some((f, keep_name)) = window_fn(name) {
        let out = over_time(ev, c, t, 0, keep_name, f)?;
        if let Value::Vector(v) = &out
            && matches!(name, "rate" | "increase")
        {
            let p = ev.pos(arg(c, 0)?);
            counter_infos(&mut ev.ann, v.iter().map(|s| s.labels.metric_name()), &p);
        }
        return Ok(out);
    }
    match name {
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "start" => Ok(Value::Scalar(ev.start as f64 / 1000.0)),
        "end" => Ok(Value::Scalar(ev.end as f64 / 1000.0)),
        "range" => Ok(Value::Scalar((ev.end - ev.start) as f64 / 1000.0)),
        "step" => Ok(Value::Scalar(ev.step as f64 / 1000.0)),
        "vector" => {
            let v = ev.eval_scalar(arg(c, 0)?, t)?;
            Ok(Value::Vector(vec![VecSample {
                labels: Labels::empty(),
                t,
                v,
                drop_name: false,
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "round" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            let to = match c.args.args.get(1) {
                Some(e) => ev.eval_scalar(e, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            Ok(Value::Vector(map_vec(v, t, |x| {
                (x * inv + 0.5).floor() / inv
            })))
        }
        "clamp" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            let lo = ev.eval_scalar(arg(c, 1)?, t)?;
            let hi = ev.eval_scalar(arg(c, 2)?, t)?;
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(map_vec(v, t, |x| go_max(lo, go_min(hi, x)))))
        }
        "clamp_min" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            let lo = ev.eval_scalar(arg(c, 1)?, t)?;
            Ok(Value::Vector(map_vec(v, t, |x| go_max(lo, x))))
        }
        "clamp_max" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            let hi = ev.eval_scalar(arg(c, 1)?, t)?;
            Ok(Value::Vector(map_vec(v, t, |x| go_min(hi, x))))
        }
        "timestamp" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            Ok(Value::Vector(
                v.into_iter()
                    .map(|mut s| {
                        s.v = s.t as f64 / 1000.0;
                        s.t = t;
                        s.drop_name = true;
                        s
                    })
                    .collect(),
            ))
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => {
            let v = match c.args.args.first() {
                Some(e) => ev.eval_vector(e, t)?,
                None => vec![VecSample {
                    labels: Labels::empty(),
                    t,
                    v: t as f64 / 1000.0,
                    drop_name: false,
                }],
            };
            Ok(Value::Vector(map_vec(v, t, |x| date_part(name, x))))
        }
        "absent" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            if !v.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![VecSample {
                labels: absent_labels(arg(c, 0)?),
                t,
                v: 1.0,
                drop_name: false,
            }]))
        }
        "absent_over_time" => {
            let m = ev.eval_matrix(arg(c, 0)?, t)?;
            if m.series.iter().any(|s| !s.samples.is_empty()) {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![VecSample {
                labels: absent_labels(arg(c, 0)?),
                t,
                v: 1.0,
                drop_name: false,
            }]))
        }
        "quantile_over_time" => {
            let q = ev.eval_scalar(arg(c, 0)?, t)?;
            if !(0.0..=1.0).contains(&q) {
                let p = ev.pos(arg(c, 0)?);
                ev.ann.warn(format!(
                    "quantile value should be between 0 and 1, got {}{p}",
                    fmt_g(q)
                ));
            }
            over_time(ev, c, t, 1, false, move |_, s| {
                Some(quantile_of(q, s.iter().map(|p| p.v).collect()))
            })
        }
        "predict_linear" => {
            let d = ev.eval_scalar(arg(c, 1)?, t)?;
            over_time(ev, c, t, 0, false, move |_, s| {
                if s.len() < 2 {
                    return None;
                }
                let (slope, icpt) = linear_regression(s, t);
                Some(slope * d + icpt)
            })
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let sf = ev.eval_scalar(arg(c, 1)?, t)?;
            let tf = ev.eval_scalar(arg(c, 2)?, t)?;
            if sf <= 0.0 || sf >= 1.0 || sf.is_nan() {
                return Err(QueryError::Eval(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if tf <= 0.0 || tf >= 1.0 || tf.is_nan() {
                return Err(QueryError::Eval(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
            over_time(ev, c, t, 0, false, move |_, s| {
                if s.len() < 2 {
                    return None;
                }
                let (mut s0, mut s1) = (0.0, s[0].v);
                let mut b = s[1].v - s[0].v;
                for (i, p) in s.iter().enumerate().skip(1) {
                    if i > 1 {
                        b = tf * (s1 - s0) + (1.0 - tf) * b;
                    }
                    let x = sf * p.v;
                    let y = (1.0 - sf) * (s1 + b);
                    s0 = s1;
                    s1 = x + y;
                }
                Some(s1)
            })
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(arg(c, 0)?, t)?;
            let v = ev.eval_vector(arg(c, 1)?, t)?;
            if !(0.0..=1.0).contains(&q) {
                let p = ev.pos(arg(c, 0)?);
                ev.ann.warn(format!(
                    "quantile value should be between 0 and 1, got {}{p}",
                    fmt_g(q)
                ));
            }
            let p = ev.pos(arg(c, 1)?);
            let mut out = Vec::new();
            for (labels, mut buckets, mname) in classic_groups(ev, &v, &p) {
                let (val, forced) = bucket_quantile(q, &mut buckets);
                if forced {
                    ev.ann.info(format!("input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {mname:?}{p}"));
                }
                out.push(VecSample {
                    labels,
                    t,
                    v: val,
                    drop_name: true,
                });
            }
            Ok(Value::Vector(out))
        }
        "histogram_quantiles" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            let label = string_arg(ev, arg(c, 1)?, t)?;
            let mut qs = Vec::new();
            for e in c.args.args.iter().skip(2) {
                let q = ev.eval_scalar(e, t)?;
                if !(0.0..=1.0).contains(&q) {
                    let p = ev.pos(e);
                    ev.ann.warn(format!(
                        "quantile value should be between 0 and 1, got {}{p}",
                        fmt_g(q)
                    ));
                }
                qs.push(q);
            }
            let p = ev.pos(arg(c, 0)?);
            let mut out = Vec::new();
            for (labels, mut buckets, mname) in classic_groups(ev, &v, &p) {
                for &q in &qs {
                    let (val, forced) = bucket_quantile(q, &mut buckets);
                    if forced {
                        ev.ann.info(format!("input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {mname:?}{p}"));
                    }
                    let mut b = labels.builder();
                    b.set(&label, &fmt_quantile_label(q));
                    out.push(VecSample {
                        labels: b.labels(),
                        t,
                        v: val,
                        drop_name: true,
                    });
                }
            }
            Ok(Value::Vector(out))
        }
        "histogram_fraction" => {
            let lo = ev.eval_scalar(arg(c, 0)?, t)?;
            let hi = ev.eval_scalar(arg(c, 1)?, t)?;
            let v = ev.eval_vector(arg(c, 2)?, t)?;
            let p = ev.pos(arg(c, 2)?);
            let mut out = Vec::new();
            for (labels, mut buckets, _) in classic_groups(ev, &v, &p) {
                let val = bucket_fraction(lo, hi, &mut buckets);
                out.push(VecSample {
                    labels,
                    t,
                    v: val,
                    drop_name: true,
                });
            }
            Ok(Value::Vector(out))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Float samples carry no native histogram; these functions ignore them.
            for a in &c.args.args {
                let _ = ev.eval(a, t)?;
            }
            Ok(Value::Vector(Vec::new()))
        }
        "label_replace" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            let dst = string_arg(ev, arg(c, 1)?, t)?;
            let repl = string_arg(ev, arg(c, 2)?, t)?;
            let src = string_arg(ev, arg(c, 3)?, t)?;
            let re = string_arg(ev, arg(c, 4)?, t)?;
            let re = trawl_model::AnchoredRegex::new(&re).map_err(|e| {
                QueryError::Eval(format!(
                    "invalid regular expression in label_replace(): {re}: {e}"
                ))
            })?;
            if !valid_label_name(&dst) {
                return Err(QueryError::Eval(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let sv = s.labels.get_or_empty(&src).to_string();
                if let Some(caps) = re.regex().captures(&sv) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    let mut b = s.labels.builder();
                    b.set(&dst, &res);
                    s.labels = b.labels();
                    if dst == METRIC_NAME {
                        s.drop_name = false;
                    }
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "label_join" => {
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            let dst = string_arg(ev, arg(c, 1)?, t)?;
            let sep = string_arg(ev, arg(c, 2)?, t)?;
            let mut srcs = Vec::new();
            for e in c.args.args.iter().skip(3) {
                let s = string_arg(ev, e, t)?;
                if !valid_label_name(&s) {
                    return Err(QueryError::Eval(format!(
                        "invalid source label name in label_join(): {s}"
                    )));
                }
                srcs.push(s);
            }
            if !valid_label_name(&dst) {
                return Err(QueryError::Eval(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get_or_empty(n)).collect();
                let joined = joined.join(&sep);
                let mut b = s.labels.builder();
                b.set(&dst, &joined);
                s.labels = b.labels();
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" if ev.step != 0 => {
            let p = ev.pos(&Expr::Call(c.clone()));
            ev.ann.warn(format!(
                "sort is ineffective for range queries since results are always ordered by labels{p}"
            ));
            let v = ev.eval_vector(arg(c, 0)?, t)?;
            Ok(Value::Vector(v))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(c, 0)?, t)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => {
                    let o = a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal);
                    if desc { o.reverse() } else { o }
                }
            });
            Ok(Value::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector(arg(c, 0)?, t)?;
            let mut names = Vec::new();
            for e in c.args.args.iter().skip(1) {
                names.push(string_arg(ev, e, t)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for n in &names {
                    let o = natural_cmp(a.labels.get_or_empty(n), b.labels.get_or_empty(n));
                    if o != std::cmp::Ordering::Equal {
                        return if desc { o.reverse() } else { o };
                    }
                }
                let o = a.labels.cmp(&b.labels);
                if desc { o.reverse() } else { o }
            });
            Ok(Value::Vector(v))
        }
        "info" => eval_info(ev, c, t),
        "min_of" | "max_of" => {
            let mut acc: Option<f64> = None;
            for e in &c.args.args {
                let x = ev.eval_scalar(e, t)?;
                acc = Some(match acc {
                    None => x,
                    Some(a) => {
                        if name == "min_of" {
                            go_min(a, x)
                        } else {
                            go_max(a, x)
                        }
                    }
                });
            }
            Ok(Value::Scalar(acc.unwrap_or(f64::NAN)))
        }
        other => Err(QueryError::Eval(format!(
            "function {other:?} is not supported"
        ))),
    }
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok()
}

/// Parses a float as Go's `strconv.ParseFloat` does for `le`/`quantile` label values.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let lower = t.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            return Some(if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t != s {
        return None;
    }
    let body = t.trim_start_matches(['+', '-']);
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if t.starts_with('-') { -v } else { v });
    }
    t.replace('_', "").parse::<f64>().ok()
}

/// The time a base expression's samples refer to (after `@`/`offset`), which is when
/// `info()` looks up the info series for them.
fn ref_time(ev: &Evaluator<'_>, e: &Expr, t: i64) -> i64 {
    use crate::engine::offset_ms;
    match e {
        Expr::VectorSelector(vs) => ev.at_ms(&vs.at).unwrap_or(t) - offset_ms(&vs.offset),
        Expr::MatrixSelector(m) => ev.at_ms(&m.vs.at).unwrap_or(t) - offset_ms(&m.vs.offset),
        Expr::Subquery(sq) => {
            let rt = ev.at_ms(&sq.at).unwrap_or(t) - offset_ms(&sq.offset);
            ref_time(ev, &sq.expr, rt)
        }
        Expr::Paren(p) => ref_time(ev, &p.expr, t),
        Expr::Unary(u) => ref_time(ev, &u.expr, t),
        Expr::Aggregate(a) => ref_time(ev, &a.expr, t),
        Expr::Binary(b) => match crate::engine::value_type(&b.lhs) {
            "vector" => ref_time(ev, &b.lhs, t),
            _ => ref_time(ev, &b.rhs, t),
        },
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .find(|a| matches!(crate::engine::value_type(a), "vector" | "matrix"))
            .map_or(t, |a| ref_time(ev, a, t)),
        _ => t,
    }
}

/// `info(v [, selector])`: enriches each series with the data labels of the info series
/// (default `target_info`) sharing its identifying labels (`instance`, `job`).
fn eval_info(ev: &mut Evaluator<'_>, c: &Call, t: i64) -> Result<Value, QueryError> {
    use trawl_model::Matcher;
    const IDENTIFYING: [&str; 2] = ["instance", "job"];
    let base_expr = arg(c, 0)?;
    let base = ev.eval_vector(base_expr, t)?;
    let mut name_ms: Vec<Matcher> = Vec::new();
    let mut data_ms: Vec<Matcher> = Vec::new();
    if let Some(sel) = c.args.args.get(1) {
        let Expr::VectorSelector(vs) = unparen(sel) else {
            return Err(QueryError::Eval(
                "info(): second argument must be a vector selector".into(),
            ));
        };
        for set in to_matchers(vs)?.into_iter().take(1) {
            for m in set {
                if m.name == METRIC_NAME {
                    name_ms.push(m);
                } else {
                    data_ms.push(m);
                }
            }
        }
    }
    if name_ms.is_empty() {
        name_ms.push(Matcher::equal(METRIC_NAME, "target_info"));
    }
    let positive = name_ms
        .iter()
        .any(|m| matches!(m.op, MatchOp::Equal | MatchOp::RegexMatch));
    let mut select_ms = name_ms.clone();
    if !positive {
        select_ms.push(
            Matcher::new(MatchOp::RegexMatch, METRIC_NAME, ".+_info")
                .map_err(|e| QueryError::Eval(e.to_string()))?,
        );
    }
    select_ms.extend(data_ms.iter().cloned());
    let rt = ref_time(ev, base_expr, t);
    let lb = ev.lookback();
    let mut warnings = Vec::new();
    let selected =
        ev.q.select_warn(&select_ms, rt - lb + 1, rt, &mut warnings)?;
    for w in warnings {
        ev.ann.storage_warn(w);
    }
    let infos: Vec<(Labels, i64)> = selected
        .into_iter()
        .filter_map(|s| {
            let last = s.samples.last().copied()?;
            (!trawl_model::is_stale_nan(last.v)).then_some((s.labels, last.t))
        })
        .collect();
    let data_names: Vec<&str> = data_ms.iter().map(|m| m.name.as_str()).collect();
    let empty_ok = data_ms.iter().all(|m| m.matches(""));
    let mut out = Vec::with_capacity(base.len());
    for mut s in base {
        let is_info = select_ms
            .iter()
            .filter(|m| m.name == METRIC_NAME)
            .all(|m| m.matches(s.labels.metric_name()))
            && positive
            && !s.drop_name;
        if is_info {
            out.push(s);
            continue;
        }
        // Newest info sample first: a churned info series yields to its successor.
        let mut matched: Vec<&(Labels, i64)> = infos
            .iter()
            .filter(|(i, _)| {
                IDENTIFYING
                    .iter()
                    .all(|n| i.get_or_empty(n) == s.labels.get_or_empty(n))
            })
            .collect();
        matched.sort_by_key(|m| std::cmp::Reverse(m.1));
        if matched.is_empty() {
            if empty_ok {
                out.push(s);
            }
            continue;
        }
        let mut b = s.labels.builder();
        let mut added: HashMap<String, (String, i64)> = HashMap::new();
        for (i, it) in matched {
            for l in i.iter() {
                if l.name == METRIC_NAME || IDENTIFYING.contains(&l.name.as_str()) {
                    continue;
                }
                if !data_names.is_empty() && !data_names.contains(&l.name.as_str()) {
                    continue;
                }
                if s.labels.has(&l.name) {
                    continue;
                }
                if let Some((prev, pt)) = added.get(&l.name) {
                    if *prev != l.value && pt == it {
                        return Err(QueryError::Eval(format!(
                            "conflicting label: {} has values {:?} and {:?}",
                            l.name, prev, l.value
                        )));
                    }
                    continue;
                }
                added.insert(l.name.clone(), (l.value.clone(), *it));
                b.set(&l.name, &l.value);
            }
        }
        s.labels = b.labels();
        out.push(s);
    }
    Ok(Value::Vector(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
        assert_eq!(date_part("days_in_month", 951_782_400.0), 29.0);
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile_of(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile_of(-1.0, vec![1.0]), f64::NEG_INFINITY);
        assert!(quantile_of(0.5, vec![]).is_nan());
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(fmt_go_float(1e21), "1000000000000000000000");
        assert_eq!(fmt_g(1e21), "1e+21");
        assert_eq!(fmt_g(-0.5), "-0.5");
        assert_eq!(fmt_go_float(f64::INFINITY), "+Inf");
    }
}
