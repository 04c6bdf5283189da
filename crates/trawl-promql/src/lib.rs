//! `trawl-promql`: the PromQL evaluation engine.
//!
//! Job: parse a query with `promql-parser` and evaluate it, instant or range, over anything
//! implementing [`Queryable`] (a storage shard, a fan-out over shards, or the in-memory
//! [`MemStorage`] used by tests), answering exactly as Prometheus does on float samples.
//!
//! Invariants:
//! - Pure: no I/O, no async runtime, no global state; the only input is the `Queryable`.
//! - Nothing panics on user input: every failure is a [`QueryError`] whose text is
//!   Prometheus's error text.
//! - Range queries are evaluated as a sequence of instant evaluations at
//!   `start, start+step, ... <= end`; every selector's data is fetched once for the whole
//!   range up front, so per-step work is binary searches over in-memory samples.
//! - Metric-name removal is delayed (Prometheus's "delayed name removal"): operations that
//!   drop `__name__` only flag the sample, and the name is removed when the result is returned.
//! - [`Value`] is an enum so native histograms can be added later without changing callers.
//!
//! Known differences from Prometheus 3.x (float samples only for now):
//! - Native histograms are not evaluated; `histogram_count` & co. return nothing on floats.
//! - `promql-parser` keeps no source positions, so an annotation's `(line:col)` is found by
//!   searching the query text for the sub-expression (first occurrence), and is omitted when
//!   no text is given ([`Engine::instant`] / [`Engine::range`]).
//! - The max-samples limit counts the samples of each range window and of the range-query
//!   result, not Prometheus's exact peak of samples held in memory.
//! - Syntax `promql-parser` 0.11 does not accept (duration arithmetic such as `[5m+1m]`,
//!   `anchored`/`smoothed` range modifiers) is rejected at parse time.

mod aggregate;
mod binop;
mod engine;
mod functions;
mod range;
mod storage;

use std::fmt;

pub use engine::{
    Annotations, Engine, EngineOptions, QueryResult, ms_to_system_time, system_time_ms,
};
/// The parser crate, re-exported so callers can build and rewrite ASTs.
pub use promql_parser;
pub use storage::{MemStorage, Queryable, Series};
pub use trawl_model::{Labels, Sample};

/// One error enum for the crate. Display texts are Prometheus's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The expression did not parse.
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed (text as Prometheus reports it).
    #[error("{0}")]
    Eval(String),
    /// Too many samples loaded at once.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran longer than the configured timeout.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The storage failed.
    #[error("{0}")]
    Storage(String),
}

/// An instant-vector element.
#[derive(Debug, Clone, PartialEq)]
pub struct VecSample {
    pub labels: Labels,
    /// Timestamp of the sample in ms (the evaluation time, or the raw sample time for selectors).
    pub t: i64,
    pub v: f64,
    /// Delayed name removal: `__name__` is removed when the result leaves the engine.
    pub drop_name: bool,
}

/// A series of points (range vector element or range-query result series).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub drop_name: bool,
}

/// A PromQL value. Native histograms will become further variants / sample kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<VecSample>),
    Matrix(Vec<RangeSeries>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(v) => write!(f, "scalar: {v}"),
            Value::String(s) => write!(f, "string: {s:?}"),
            Value::Vector(v) => {
                for s in v {
                    writeln!(f, "{} => {} @[{}]", s.labels, s.v, s.t)?;
                }
                Ok(())
            }
            Value::Matrix(m) => {
                for s in m {
                    write!(f, "{} =>", s.labels)?;
                    for p in &s.samples {
                        write!(f, " {} @[{}]", p.v, p.t)?;
                    }
                    writeln!(f)?;
                }
                Ok(())
            }
        }
    }
}

/// Parses a PromQL expression with `promql-parser`.
pub fn parse(q: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    promql_parser::parser::parse(q).map_err(QueryError::Parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::STALE_NAN;

    fn store(series: &[(&str, &[(i64, f64)])]) -> MemStorage {
        let mut s = MemStorage::new();
        for (name, pts) in series {
            let l = Labels::from_pairs([("__name__", *name), ("job", "j")]);
            for (t, v) in *pts {
                s.append(l.clone(), *t, *v);
            }
        }
        s
    }

    fn vector(r: &QueryResult) -> Vec<f64> {
        match &r.value {
            Value::Vector(v) => v.iter().map(|s| s.v).collect(),
            other => panic!("not a vector: {other}"),
        }
    }

    #[test]
    fn lookback_is_left_open_and_stale_markers_end_series() {
        let s = store(&[("a", &[(0, 1.0)]), ("b", &[(0, 2.0), (30_000, STALE_NAN)])]);
        let e = Engine::default();
        assert_eq!(
            vector(&e.instant_query(&s, "a", 299_999).unwrap()),
            vec![1.0]
        );
        assert!(vector(&e.instant_query(&s, "a", 300_000).unwrap()).is_empty());
        assert_eq!(
            vector(&e.instant_query(&s, "b", 29_999).unwrap()),
            vec![2.0]
        );
        assert!(vector(&e.instant_query(&s, "b", 30_000).unwrap()).is_empty());
        let short = Engine::new(EngineOptions {
            lookback_delta: std::time::Duration::from_secs(10),
            ..EngineOptions::default()
        });
        assert!(vector(&short.instant_query(&s, "a", 10_000).unwrap()).is_empty());
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        let pts: Vec<(i64, f64)> = (0..=4).map(|i| (i * 15_000, i as f64 * 15.0)).collect();
        let s = store(&[("c_total", &pts)]);
        let e = Engine::default();
        // Window (0s, 60s] holds 15..60; extrapolated to the start by one interval: 1/s.
        let r = e.instant_query(&s, "rate(c_total[1m])", 60_000).unwrap();
        assert!((vector(&r)[0] - 1.0).abs() < 1e-12);
        // A reset adds the pre-reset value.
        let s = store(&[(
            "r_total",
            &[(0, 5.0), (10_000, 8.0), (20_000, 2.0), (30_000, 4.0)],
        )]);
        let r = e
            .instant_query(&s, "increase(r_total[31s])", 30_000)
            .unwrap();
        let v = vector(&r)[0];
        // Raw increase 3 + 2 + 2 = 7 over 30s of samples, extrapolated 1s to the window start.
        assert!((v - 7.0 * 31.0 / 30.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn range_query_steps_and_subquery_alignment() {
        let s = MemStorage::new();
        let e = Engine::default();
        let r = e.range_query(&s, "time()", 0, 60_000, 15_000).unwrap();
        let Value::Matrix(m) = &r.value else {
            panic!("matrix")
        };
        assert_eq!(m.len(), 1);
        let vs: Vec<f64> = m[0].samples.iter().map(|p| p.v).collect();
        assert_eq!(vs, vec![0.0, 15.0, 30.0, 45.0, 60.0]);
        // Subquery points are aligned to multiples of the step, left-open window.
        let r = e
            .instant_query(&s, "count_over_time(vector(1)[1m:15s])", 61_000)
            .unwrap();
        assert_eq!(vector(&r), vec![4.0]);
    }

    #[test]
    fn errors_carry_prometheus_text() {
        let s = store(&[("m", &[(0, 1.0), (1000, 2.0), (2000, 3.0)])]);
        let tight = Engine::new(EngineOptions {
            max_samples: 2,
            ..EngineOptions::default()
        });
        let err = tight.instant_query(&s, "m[1m]", 2000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "query processing would load too many samples into memory in query execution"
        );
        let mut d = MemStorage::new();
        for v in ["x", "y"] {
            d.append(Labels::from_pairs([("__name__", "l"), ("a", v)]), 0, 1.0);
            d.append(Labels::from_pairs([("__name__", "r"), ("a", v)]), 0, 1.0);
        }
        let err = Engine::default()
            .instant_query(&d, "l + on() r", 0)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("found duplicate series for the match group {}"),
            "{err}"
        );
        assert!(matches!(
            Engine::default().instant_query(&d, "sum(", 0),
            Err(QueryError::Parse(_))
        ));
    }

    #[test]
    fn delayed_name_removal_keeps_label_replace_names() {
        let s = store(&[("m_total", &[(0, 0.0), (60_000, 60.0)])]);
        let e = Engine::default();
        let r = e.instant_query(&s, "rate(m_total[2m])", 60_000).unwrap();
        let Value::Vector(v) = &r.value else { panic!() };
        assert_eq!(v[0].labels.get("__name__"), None);
        let q = r#"label_replace(rate(m_total[2m]), "__name__", "renamed", "", "")"#;
        let r = e.instant_query(&s, q, 60_000).unwrap();
        let Value::Vector(v) = &r.value else { panic!() };
        assert_eq!(v[0].labels.get("__name__"), Some("renamed"));
    }

    #[test]
    fn extreme_inputs_error_or_evaluate_without_panicking() {
        let s = store(&[("m", &[(0, 1.0), (1000, 2.0)]), ("m_bucket", &[(0, 1.0)])]);
        let e = Engine::new(EngineOptions {
            max_samples: 1000,
            ..EngineOptions::default()
        });
        for q in [
            "m[292277024y]",
            "rate(m[292277024y])",
            "m offset 292277024y",
            "m offset -292277024y",
            "m @ 9223372036854775",
            "sum_over_time(m[1m:1ms])",
            "topk(1e300, m)",
            "quantile(2, m)",
            "histogram_quantile(0.5, m_bucket)",
            "histogram_fraction(NaN, Inf, m_bucket)",
            "round(m, 0)",
            "label_replace(m, \"x\", \"$9$name\", \"__name__\", \"(.*\")",
            "count_values(\"\", m)",
            "year(vector(1e300))",
            "m / on() group_left m",
        ] {
            let _ = e.instant_query(&s, q, 1000);
            let _ = e.range_query(&s, q, -10_000, 10_000, 1000);
        }
        assert!(e.range_query(&s, "m", 0, 10, 0).is_err());
        assert!(e.range_query(&s, "m", 10, 0, 1).is_err());
        assert!(e.range_query(&s, "m", i64::MAX - 5, i64::MAX, 2).is_ok());
    }
}
