//! Engine values to wire messages and back.

use trawl_model::Sample;
use trawl_promql::{Annotations, QueryResult, RangeSeries, Value, VecSample};
use trawl_proto::v1::{self, QueryResponse, SeriesSamples, query_response::ResultType};
use trawl_proto::{labels_from_proto, labels_to_proto};

use crate::Error;

/// The response of an instant query. `t` is the evaluation time (of scalars and strings).
pub fn instant_response(r: QueryResult, t: i64) -> QueryResponse {
    let mut m = QueryResponse {
        warnings: r.annotations.warnings,
        infos: r.annotations.infos,
        ..Default::default()
    };
    match r.value {
        Value::Scalar(v) => {
            m.set_result_type(ResultType::Scalar);
            m.scalar = Some(Sample::new(t, v).into());
        }
        Value::String(s) => {
            m.set_result_type(ResultType::String);
            m.string_value = s;
            m.string_timestamp_ms = t;
        }
        Value::Vector(v) => {
            m.set_result_type(ResultType::Vector);
            m.series = v
                .into_iter()
                // Prometheus stamps every element of an instant vector with the evaluation
                // time, whatever the time of the sample it came from (as the HTTP API does).
                .map(|s| SeriesSamples {
                    labels: labels_to_proto(&s.labels),
                    samples: vec![Sample::new(t, s.v).into()],
                })
                .collect();
        }
        Value::Matrix(ms) => {
            m.set_result_type(ResultType::Matrix);
            m.series = ms.into_iter().map(series_to_proto).collect();
        }
    }
    m
}

pub(crate) fn series_to_proto(s: RangeSeries) -> SeriesSamples {
    SeriesSamples {
        labels: labels_to_proto(&s.labels),
        samples: s.samples.into_iter().map(v1::Sample::from).collect(),
    }
}

/// Splits a matrix into messages of whole series holding about `batch_samples` samples each
/// (a series is never split; at least one message, the first with the annotations).
pub(crate) fn matrix_batches(
    m: Vec<RangeSeries>,
    ann: Annotations,
    batch_samples: usize,
) -> impl Iterator<Item = QueryResponse> + Send {
    let mut series = m.into_iter().peekable();
    let mut ann = Some(ann);
    std::iter::from_fn(move || {
        let first = ann.take();
        if first.is_none() && series.peek().is_none() {
            return None;
        }
        let mut msg = QueryResponse::default();
        msg.set_result_type(ResultType::Matrix);
        if let Some(a) = first {
            msg.warnings = a.warnings;
            msg.infos = a.infos;
        }
        let mut n = 0usize;
        while n < batch_samples.max(1) {
            let Some(s) = series.next() else { break };
            n += s.samples.len().max(1);
            msg.series.push(series_to_proto(s));
        }
        Some(msg)
    })
}

/// Collects one or more responses (a range stream, or one instant answer) into the engine's
/// result type.
#[derive(Debug, Default)]
pub struct ResultCollector {
    kind: Option<ResultType>,
    value: Option<Value>,
    ann: Annotations,
}

impl ResultCollector {
    /// Adds a message; every message of one answer must have the same result type.
    pub fn push(&mut self, m: QueryResponse) -> Result<(), Error> {
        let kind = ResultType::try_from(m.result_type)
            .map_err(|_| Error::Response(format!("unknown result type {}", m.result_type)))?;
        if self.kind.is_some_and(|k| k != kind) {
            return Err(Error::Response("result type changed mid-stream".into()));
        }
        self.kind = Some(kind);
        self.ann.warnings.extend(m.warnings);
        self.ann.infos.extend(m.infos);
        match kind {
            ResultType::Scalar => {
                let v = m.scalar.and_then(|s| s.value).unwrap_or(0.0);
                self.value = Some(Value::Scalar(v));
            }
            ResultType::String => self.value = Some(Value::String(m.string_value)),
            ResultType::Vector => {
                let mut out = match self.value.take() {
                    Some(Value::Vector(v)) => v,
                    _ => Vec::new(),
                };
                for s in m.series {
                    let labels = labels_from_proto(s.labels);
                    let Some(p) = s.samples.into_iter().next() else {
                        return Err(Error::Response("vector element without a sample".into()));
                    };
                    let p = Sample::from(p);
                    out.push(VecSample {
                        labels,
                        t: p.t,
                        v: p.v,
                        drop_name: false,
                    });
                }
                self.value = Some(Value::Vector(out));
            }
            ResultType::Matrix => {
                let mut out = match self.value.take() {
                    Some(Value::Matrix(v)) => v,
                    _ => Vec::new(),
                };
                out.extend(m.series.into_iter().map(|s| RangeSeries {
                    labels: labels_from_proto(s.labels),
                    samples: s.samples.into_iter().map(Sample::from).collect(),
                    drop_name: false,
                }));
                self.value = Some(Value::Matrix(out));
            }
        }
        Ok(())
    }

    /// The collected result (an empty matrix if nothing arrived).
    pub fn finish(self) -> QueryResult {
        QueryResult {
            value: self.value.unwrap_or(Value::Matrix(Vec::new())),
            annotations: self.ann,
        }
    }
}

/// Timestamps of scalar and string results, which [`QueryResult`] does not keep.
pub(crate) fn scalar_time(m: &QueryResponse) -> Option<i64> {
    match ResultType::try_from(m.result_type) {
        Ok(ResultType::Scalar) => m.scalar.as_ref().map(|s| s.timestamp_ms),
        Ok(ResultType::String) => Some(m.string_timestamp_ms),
        _ => None,
    }
}
