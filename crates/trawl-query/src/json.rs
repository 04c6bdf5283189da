//! Answers rendered as Prometheus's HTTP API JSON (`-o json` of `trawl query`), so scripts
//! written against `/api/v1/query` read the CLI's output unchanged: same field order, values
//! as strings formatted like Go's `strconv.FormatFloat(v, 'f', -1, 64)`, timestamps as
//! seconds with millisecond decimals.

use std::fmt::Write;

use trawl_model::Labels;
use trawl_promql::{Annotations, Value};

use crate::Error;
use crate::client::{Answer, Listing};

/// A float as Prometheus writes sample values.
pub fn format_value(v: f64) -> String {
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

/// A millisecond timestamp as Prometheus writes it: seconds, then `.` and three digits when
/// the milliseconds are not zero.
pub fn format_timestamp(t: i64) -> String {
    let sign = if t < 0 { "-" } else { "" };
    let a = t.unsigned_abs();
    let (s, ms) = (a / 1000, a % 1000);
    if ms == 0 {
        format!("{sign}{s}")
    } else {
        format!("{sign}{s}.{ms:03}")
    }
}

fn string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, l) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", string(&l.name), string(&l.value));
    }
    out.push('}');
}

fn point(out: &mut String, t: i64, v: f64) {
    let _ = write!(
        out,
        "[{},{}]",
        format_timestamp(t),
        string(&format_value(v))
    );
}

fn envelope(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = format!("{{\"status\":\"success\",\"data\":{data}");
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|w| string(w)).collect();
            let _ = write!(out, ",\"{key}\":[{}]", items.join(","));
        }
    }
    out.push('}');
    out
}

/// `{"status":"success","data":{"resultType":...,"result":...}}` of a query answer.
pub fn answer_json(a: &Answer) -> String {
    let mut d = String::new();
    let value = &a.result.value;
    let _ = write!(d, "{{\"resultType\":\"{}\",\"result\":", value.type_name());
    match value {
        Value::Scalar(v) => point(&mut d, a.time_ms, *v),
        Value::String(s) => {
            let _ = write!(d, "[{},{}]", format_timestamp(a.time_ms), string(s));
        }
        Value::Vector(v) => {
            d.push('[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    d.push(',');
                }
                d.push_str("{\"metric\":");
                labels(&mut d, &s.labels);
                d.push_str(",\"value\":");
                point(&mut d, s.t, s.v);
                d.push('}');
            }
            d.push(']');
        }
        Value::Matrix(m) => {
            d.push('[');
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    d.push(',');
                }
                d.push_str("{\"metric\":");
                labels(&mut d, &s.labels);
                d.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        d.push(',');
                    }
                    point(&mut d, p.t, p.v);
                }
                d.push_str("]}");
            }
            d.push(']');
        }
    }
    d.push('}');
    let Annotations { warnings, infos } = &a.result.annotations;
    envelope(&d, warnings, infos)
}

/// The `/api/v1/series` answer.
pub fn series_json(l: &Listing<Labels>) -> String {
    let mut d = String::from("[");
    for (i, s) in l.items.iter().enumerate() {
        if i > 0 {
            d.push(',');
        }
        labels(&mut d, s);
    }
    d.push(']');
    envelope(&d, &l.warnings, &[])
}

/// The `/api/v1/labels` and `/api/v1/label/<name>/values` answer.
pub fn strings_json(l: &Listing<String>) -> String {
    let items: Vec<String> = l.items.iter().map(|s| string(s)).collect();
    envelope(&format!("[{}]", items.join(",")), &l.warnings, &[])
}

/// `{"status":"error","errorType":...,"error":...}`.
pub fn error_json(e: &Error) -> String {
    format!(
        "{{\"status\":\"error\",\"errorType\":\"{}\",\"error\":{}}}",
        e.error_type(),
        string(&e.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::Sample;
    use trawl_promql::{QueryResult, RangeSeries, VecSample};

    #[test]
    fn numbers_are_written_as_prometheus_does() {
        assert_eq!(format_timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_timestamp(1_500), "1.500");
        assert_eq!(format_timestamp(1_005), "1.005");
        assert_eq!(format_timestamp(2_000), "2");
        assert_eq!(format_timestamp(-1_500), "-1.500");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn answers_have_the_api_shape() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        let a = Answer {
            result: QueryResult {
                value: Value::Vector(vec![VecSample {
                    labels: l.clone(),
                    t: 1500,
                    v: 1.0,
                    drop_name: false,
                }]),
                annotations: Annotations {
                    warnings: vec!["w".into()],
                    infos: vec![],
                },
            },
            time_ms: 1500,
        };
        assert_eq!(
            answer_json(&a),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1.500,"1"]}]},"warnings":["w"]}"#
        );
        let m = Answer {
            result: QueryResult {
                value: Value::Matrix(vec![RangeSeries {
                    labels: l,
                    samples: vec![Sample::new(0, 1.0), Sample::new(15_000, f64::NAN)],
                    drop_name: false,
                }]),
                annotations: Annotations::default(),
            },
            time_ms: 0,
        };
        let v: serde_json::Value = serde_json::from_str(&answer_json(&m)).unwrap();
        assert_eq!(v["data"]["resultType"], "matrix");
        assert_eq!(v["data"]["result"][0]["values"][1][1], "NaN");
        assert_eq!(v["data"]["result"][0]["values"][1][0], 15);
        let s = Answer {
            result: QueryResult {
                value: Value::Scalar(2.5),
                annotations: Annotations::default(),
            },
            time_ms: 10_000,
        };
        assert_eq!(
            answer_json(&s),
            r#"{"status":"success","data":{"resultType":"scalar","result":[10,"2.5"]}}"#
        );
        let e = Error::bad_data("x \"y\"");
        assert_eq!(
            error_json(&e),
            r#"{"status":"error","errorType":"bad_data","error":"x \"y\""}"#
        );
        let names = Listing {
            items: vec!["a".to_string(), "b".to_string()],
            warnings: vec![],
        };
        assert_eq!(
            strings_json(&names),
            r#"{"status":"success","data":["a","b"]}"#
        );
    }
}
