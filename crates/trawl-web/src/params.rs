//! Request parameters as Prometheus reads them: `r.FormValue` / `r.Form[...]` over the URL
//! query and a form-encoded body, times, durations, limits and `match[]` selectors.

use trawl_model::{MatchOp, Matcher, PromDuration};

/// Form values of one request. Like Go's `r.Form`, body values come before URL values, so
/// [`Form::get`] prefers the body.
#[derive(Debug, Default, Clone)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses a form body (when given) and the URL query.
    pub(crate) fn parse(query: Option<&str>, body: Option<&[u8]>) -> Self {
        let mut pairs = Vec::new();
        if let Some(b) = body {
            pairs.extend(form_urlencoded::parse(b).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Self { pairs }
    }

    /// The first value of `name`, `""` when absent (Go's `FormValue`).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Prometheus's `MinTime` / `MaxTime` in milliseconds: the range Go's `time.Time` can hold
/// when built from int64 milliseconds.
pub(crate) const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
pub(crate) const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;

/// Go's `time.Time.Format(time.RFC3339Nano)` of MinTime and MaxTime; Go's parser cannot read
/// them back (years beyond 4 digits), so Prometheus special-cases them.
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";

/// Prometheus's `parseTime`: float seconds (rounded to milliseconds) or RFC 3339.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    if let Some(f) = parse_go_float(s) {
        return Ok(float_seconds_to_ms(f));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        // Go's time.Parse with RFC3339Nano requires 'T' and an uppercase zone designator,
        // which chrono also accepts in other forms; those differences are harmless.
        return Ok(t.timestamp_millis());
    }
    match s {
        MIN_TIME_TEXT => Ok(MIN_TIME_MS),
        MAX_TIME_TEXT => Ok(MAX_TIME_MS),
        _ => Err(format!("cannot parse {} to a valid timestamp", go_quote(s))),
    }
}

/// Float seconds to milliseconds as Prometheus does it: integer seconds plus the fraction
/// rounded to milliseconds, floored to a millisecond.
fn float_seconds_to_ms(f: f64) -> i64 {
    let secs = f.trunc();
    let frac = ((f - secs) * 1000.0).round() / 1000.0;
    // Go converts out-of-range floats to int64::MIN on amd64; saturate instead.
    let secs = secs as i64;
    let ns = (frac * 1e9) as i64;
    let total_ns = i128::from(secs) * 1_000_000_000 + i128::from(ns);
    let ms = total_ns.div_euclid(1_000_000);
    ms.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A time parameter with a default when empty (Prometheus's `parseTimeParam`).
pub(crate) fn parse_time_param(form: &Form, name: &str, default: i64) -> Result<i64, String> {
    let v = form.get(name);
    if v.is_empty() {
        return Ok(default);
    }
    parse_time(v).map_err(|e| format!("Invalid time value for '{name}': {e}"))
}

/// Prometheus's `parseDuration`, in nanoseconds (Go's `time.Duration`): float seconds or a
/// Prometheus duration (`5m`, `1h30m`). Negative float values are kept (the caller rejects
/// them with its own text).
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    if let Some(f) = parse_go_float(s) {
        let ns = f * 1e9;
        if !(ns <= i64::MAX as f64 && ns >= i64::MIN as f64) {
            return Err(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                go_quote(s)
            ));
        }
        return Ok(ns as i64);
    }
    if let Ok(d) = PromDuration::parse(s) {
        return Ok(i64::try_from(d.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000));
    }
    Err(format!("cannot parse {} to a valid duration", go_quote(s)))
}

/// Prometheus's `parseLimitParam`: empty is 0 (no limit).
pub(crate) fn parse_limit(s: &str) -> Result<usize, String> {
    if s.is_empty() {
        return Ok(0);
    }
    let n: i64 = parse_go_int(s)?;
    if n < 0 {
        return Err("limit must be non-negative".to_owned());
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn parse_go_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", go_quote(s)))
}

/// Go's `strconv.ParseFloat(s, 64)` for what matters here: decimal floats, `Inf`/`NaN`
/// spellings; rejects what Rust accepts but Go does not (nothing relevant) and what neither does.
fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return s.parse::<f64>().ok();
    }
    // Rust accepts only decimal floats here, which is the subset Prometheus users send; Go's
    // hexadecimal floats and digit underscores are not supported.
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    // Go reports a literal beyond the float range as an error (ErrRange); Rust gives ±Inf.
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Go's `%q` of a string (enough for parameter echoes: quotes, backslashes, controls).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses a PromQL expression, with parse errors in Prometheus's `line:col: parse error: msg`
/// form where the position is known: `promql-parser` reports none, but errors about the end
/// of the input are located at the end of the input, as Prometheus's parser locates them.
pub(crate) fn parse_expr(src: &str) -> Result<trawl_promql::promql_parser::parser::Expr, String> {
    trawl_promql::promql_parser::parser::parse(src).map_err(|e| parse_error_text(src, &e))
}

fn parse_error_text(src: &str, msg: &str) -> String {
    let positioned = msg
        .split_once(':')
        .is_some_and(|(l, _)| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    if positioned {
        return msg.to_owned();
    }
    let at_end = msg.contains("end of input")
        || msg.starts_with("unclosed")
        || msg.contains("no expression found in input");
    if !at_end {
        return format!("parse error: {msg}");
    }
    let line = src.matches('\n').count() + 1;
    let col = src.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}: parse error: {msg}")
}

/// Parses `match[]` selectors (Prometheus's `parseMatchersParam`): each must be a vector
/// selector, and each set must hold at least one matcher that does not match the empty string.
/// `{a="1" or b="2"}` yields one set per alternative.
pub(crate) fn parse_match_params(values: &[&str]) -> Result<Vec<Vec<Matcher>>, String> {
    const EMPTY: &str = "match[] must contain at least one non-empty matcher";
    let mut sets = Vec::new();
    for v in values {
        let expr = match parse_expr(v) {
            Ok(e) => e,
            // promql-parser checks what Prometheus's metric-selector parser leaves to this
            // function; answer with this function's text.
            Err(e) if e.contains("at least one non-empty matcher") => return Err(EMPTY.into()),
            Err(e) => return Err(e),
        };
        let trawl_promql::promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err("parse error: expected a series selector".to_owned());
        };
        sets.extend(selector_matchers(&vs)?);
    }
    for set in &sets {
        if !set.iter().any(|m| !m.matches("")) {
            return Err(EMPTY.to_owned());
        }
    }
    Ok(sets)
}

/// The matcher sets of a parsed vector selector (one per `or` alternative).
pub(crate) fn selector_matchers(
    vs: &trawl_promql::promql_parser::parser::VectorSelector,
) -> Result<Vec<Vec<Matcher>>, String> {
    use trawl_promql::promql_parser::label::MatchOp as P;
    let conv = |m: &trawl_promql::promql_parser::label::Matcher| -> Result<Matcher, String> {
        let op = match m.op {
            P::Equal => MatchOp::Equal,
            P::NotEqual => MatchOp::NotEqual,
            P::Re(_) => MatchOp::RegexMatch,
            P::NotRe(_) => MatchOp::RegexNoMatch,
        };
        Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
    };
    let mut base = Vec::new();
    if let Some(n) = &vs.name {
        base.push(Matcher::equal(trawl_model::METRIC_NAME, n.clone()));
    }
    let mut sets = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        let mut set = base;
        for m in &vs.matchers.matchers {
            set.push(conv(m)?);
        }
        sets.push(set);
    } else {
        for alt in &vs.matchers.or_matchers {
            let mut set = base.clone();
            for m in alt {
                set.push(conv(m)?);
            }
            sets.push(set);
        }
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1.5"), Ok(1500));
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("0.0004"), Ok(0));
        assert_eq!(parse_time("0.0005"), Ok(1));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00"),
            Ok(1_435_781_451_000)
        );
        assert_eq!(
            parse_time("x"),
            Err("cannot parse \"x\" to a valid timestamp".to_owned())
        );
        assert_eq!(parse_time(MIN_TIME_TEXT), Ok(MIN_TIME_MS));
        assert!(parse_time("1e9999").is_err());
        assert_eq!(parse_time(MAX_TIME_TEXT), Ok(MAX_TIME_MS));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15"), Ok(15_000_000_000));
        assert_eq!(parse_duration("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration("0.0001"), Ok(100_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("-1"), Ok(-1_000_000_000));
        assert_eq!(
            parse_duration("1e300"),
            Err("cannot parse \"1e300\" to a valid duration. It overflows int64".to_owned())
        );
        assert_eq!(
            parse_duration("x"),
            Err("cannot parse \"x\" to a valid duration".to_owned())
        );
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(""), Ok(0));
        assert_eq!(parse_limit("5"), Ok(5));
        assert_eq!(
            parse_limit("-1"),
            Err("limit must be non-negative".to_owned())
        );
        assert_eq!(
            parse_limit("x"),
            Err("strconv.Atoi: parsing \"x\": invalid syntax".to_owned())
        );
    }

    #[test]
    fn form_prefers_body() {
        let f = Form::parse(Some("a=1&m=x&m=y"), Some(b"a=2&m=z"));
        assert_eq!(f.get("a"), "2");
        assert_eq!(f.all("m"), vec!["z", "x", "y"]);
        assert_eq!(f.get("none"), "");
    }

    #[test]
    fn parse_errors_located_at_the_end() {
        assert_eq!(
            parse_expr("sum(up").unwrap_err(),
            "1:7: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            parse_expr("").unwrap_err(),
            "1:1: parse error: no expression found in input"
        );
        assert_eq!(
            parse_expr("up{").unwrap_err(),
            "1:4: parse error: unexpected end of input inside braces"
        );
        assert!(
            parse_expr("1 +* 2")
                .unwrap_err()
                .starts_with("parse error: ")
        );
    }

    #[test]
    fn match_params() {
        let sets = parse_match_params(&["up{job=\"a\"}", "{x=~\".+\"}"]).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(
            parse_match_params(&["{x=\"\"}"]),
            Err("match[] must contain at least one non-empty matcher".to_owned())
        );
        assert!(parse_match_params(&["sum(up)"]).is_err());
    }
}
