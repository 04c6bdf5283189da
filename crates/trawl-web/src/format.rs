//! Prometheus's JSON encodings of floats, timestamps and times.

use std::fmt::Write;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// A sample value as Prometheus writes it (inside the JSON string): Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`, switching to `'e'` for magnitudes below 1e-6 or from
/// 1e21 on; `+Inf`, `-Inf`, `NaN`.
pub fn format_float(v: f64) -> String {
    let mut s = String::new();
    write_float(&mut s, v);
    s
}

/// Appends [`format_float`]'s text to `out`.
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` gives the shortest round-trip mantissa with a bare exponent
        // ("1.5e-7"); Go writes the exponent signed with at least two digits ("1.5e-07").
        let e = format!("{v:e}");
        let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push_str(mant);
        out.push('e');
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    // Display of f64 is the shortest round-trip text without an exponent, as Go's 'f', -1.
    let _ = write!(out, "{v}");
}

/// A millisecond timestamp as Prometheus writes it in query results: seconds, with the
/// millisecond fraction always as three digits when not zero (`1.500`, `-0.001`).
pub fn write_timestamp(out: &mut String, t: i64) {
    let neg = t < 0;
    let a = t.unsigned_abs();
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{}", a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// [`write_timestamp`] into a new string.
pub fn format_timestamp(t: i64) -> String {
    let mut s = String::new();
    write_timestamp(&mut s, t);
    s
}

/// A time as Go's `time.Time` marshals to JSON (RFC 3339 with nanoseconds, trailing zeros of
/// the fraction trimmed), in UTC. `None` is Go's zero time.
pub fn format_time(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".to_owned();
    };
    let dt: DateTime<Utc> = t.into();
    let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    let ns = dt.timestamp_subsec_nanos();
    if ns != 0 {
        let frac = format!("{ns:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Appends `v` as a JSON string literal.
pub fn write_json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Go's encoder escapes HTML-significant characters and the JS line separators.
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_formats_them() {
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e-6, "0.000001"),
            (1e-7, "1e-07"),
            (1.5e-10, "1.5e-10"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.2345e300, "1.2345e+300"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.30000000000000004, "0.30000000000000004"),
            (123456789.125, "123456789.125"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float(v), want, "{v:?}");
        }
    }

    #[test]
    fn timestamps_keep_three_fraction_digits() {
        assert_eq!(format_timestamp(1_500), "1.500");
        assert_eq!(format_timestamp(1_000), "1");
        assert_eq!(format_timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_timestamp(-1), "-0.001");
        assert_eq!(format_timestamp(5), "0.005");
    }

    #[test]
    fn times_as_go_rfc3339nano() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        assert_eq!(format_time(Some(t)), "1970-01-01T00:00:01.5Z");
        assert_eq!(
            format_time(Some(SystemTime::UNIX_EPOCH)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(format_time(None), "0001-01-01T00:00:00Z");
    }
}
