//! Answers rendered as Prometheus's HTTP API JSON (`-o json` of `trawl query`), so scripts
//! written against `/api/v1/query` read the CLI's output unchanged. The encodings are
//! `trawl-web`'s (checked against Prometheus 2.42): vector/matrix points as
//! `[seconds.mmm,"value"]` with Go's float format; scalars and strings with Go's generic
//! encoder (time as a plain float of seconds, value in 'f' format); Go's string escaping; at
//! most ten annotations of each kind plus a count of the omitted ones.

use std::fmt::Write;

use trawl_model::Labels;
use trawl_promql::Value;
use trawl_web::format::{write_float, write_json_str, write_timestamp};

use crate::Error;
use crate::client::{Answer, Listing};

/// Annotations of each kind listed before the rest are counted, as Prometheus does.
const MAX_ANNOTATIONS: usize = 10;

/// A float as Prometheus writes sample values.
pub fn format_value(v: f64) -> String {
    trawl_web::format::format_float(v)
}

/// A millisecond timestamp as Prometheus writes sample times.
pub fn format_timestamp(t: i64) -> String {
    trawl_web::format::format_timestamp(t)
}

fn labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, l) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, &l.name);
        out.push(':');
        write_json_str(out, &l.value);
    }
    out.push('}');
}

fn point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    write_float(out, v);
    out.push_str("\"]");
}

fn annotations(out: &mut String, key: &str, list: &[String], kind: &str) {
    if list.is_empty() {
        return;
    }
    let _ = write!(out, ",\"{key}\":[");
    for (i, w) in list.iter().take(MAX_ANNOTATIONS).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, w);
    }
    if list.len() > MAX_ANNOTATIONS {
        out.push(',');
        let more = list.len() - MAX_ANNOTATIONS;
        write_json_str(out, &format!("{more} more {kind} annotations omitted"));
    }
    out.push(']');
}

fn envelope(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = format!("{{\"status\":\"success\",\"data\":{data}");
    annotations(&mut out, "warnings", warnings, "warning");
    annotations(&mut out, "infos", infos, "info");
    out.push('}');
    out
}

/// `{"status":"success","data":{"resultType":...,"result":...}}` of a query answer.
pub fn answer_json(a: &Answer) -> String {
    let mut d = String::new();
    let value = &a.result.value;
    let _ = write!(d, "{{\"resultType\":\"{}\",\"result\":", value.type_name());
    match value {
        Value::Scalar(v) => {
            let _ = write!(d, "[{},\"", a.time_ms as f64 / 1000.0);
            if v.is_nan() || v.is_infinite() {
                write_float(&mut d, *v);
            } else {
                let _ = write!(d, "{v}");
            }
            d.push_str("\"]");
        }
        Value::String(s) => {
            let _ = write!(d, "[{},", a.time_ms as f64 / 1000.0);
            write_json_str(&mut d, s);
            d.push(']');
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
    let ann = &a.result.annotations;
    envelope(&d, &ann.warnings, &ann.infos)
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
    let mut d = String::from("[");
    for (i, s) in l.items.iter().enumerate() {
        if i > 0 {
            d.push(',');
        }
        write_json_str(&mut d, s);
    }
    d.push(']');
    envelope(&d, &l.warnings, &[])
}

/// `{"status":"error","errorType":...,"error":...}`.
pub fn error_json(e: &Error) -> String {
    let mut out = format!(
        "{{\"status\":\"error\",\"errorType\":\"{}\",\"error\":",
        e.error_type()
    );
    write_json_str(&mut out, &e.to_string());
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::Sample;
    use trawl_promql::{Annotations, QueryResult, RangeSeries, VecSample};

    fn answer(value: Value, annotations: Annotations, time_ms: i64) -> Answer {
        Answer {
            result: QueryResult { value, annotations },
            time_ms,
        }
    }

    #[test]
    fn answers_have_the_api_shape() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"<b")]);
        let v = Value::Vector(vec![VecSample {
            labels: l.clone(),
            t: 1500,
            v: 1e-7,
            drop_name: false,
        }]);
        let ann = Annotations {
            warnings: vec!["w".into()],
            infos: vec![],
        };
        assert_eq!(
            answer_json(&answer(v, ann, 1500)),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"\u003cb"},"value":[1.500,"1e-07"]}]},"warnings":["w"]}"#
        );
        let m = Value::Matrix(vec![RangeSeries {
            labels: l,
            samples: vec![Sample::new(0, -0.0), Sample::new(15_000, f64::NAN)],
            drop_name: false,
        }]);
        assert_eq!(
            answer_json(&answer(m, Annotations::default(), 0)),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\"\u003cb"},"values":[[0,"-0"],[15,"NaN"]]}]}}"#
        );
        // Scalars: plain-float time, 'f' value even where points would use an exponent.
        let s = answer(Value::Scalar(1e-7), Annotations::default(), 10_500);
        assert_eq!(
            answer_json(&s),
            r#"{"status":"success","data":{"resultType":"scalar","result":[10.5,"0.0000001"]}}"#
        );
        let s = answer(Value::String("x".into()), Annotations::default(), 2_000);
        assert_eq!(
            answer_json(&s),
            r#"{"status":"success","data":{"resultType":"string","result":[2,"x"]}}"#
        );
        // Eleven infos: ten listed and the rest counted.
        let many = Annotations {
            warnings: vec![],
            infos: (0..11).map(|i| format!("i{i}")).collect(),
        };
        let j = answer_json(&answer(Value::Vector(vec![]), many, 0));
        assert!(
            j.ends_with(r#""i9","1 more info annotations omitted"]}"#),
            "{j}"
        );
    }

    #[test]
    fn lists_and_errors() {
        let e = Error::bad_data("x \"y\"");
        assert_eq!(
            error_json(&e),
            r#"{"status":"error","errorType":"bad_data","error":"x \"y\""}"#
        );
        let names = Listing {
            items: vec!["a".to_string(), "b".to_string()],
            warnings: vec!["results truncated due to limit".into()],
        };
        assert_eq!(
            strings_json(&names),
            r#"{"status":"success","data":["a","b"],"warnings":["results truncated due to limit"]}"#
        );
        let series = Listing {
            items: vec![Labels::from_pairs([("a", "1")])],
            warnings: vec![],
        };
        assert_eq!(
            series_json(&series),
            r#"{"status":"success","data":[{"a":"1"}]}"#
        );
    }
}
