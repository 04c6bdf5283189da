//! Property tests: the parsers never panic, and rendered series parse back to themselves.

use proptest::prelude::*;
use trawl_exposition::{Entry, Format, Parser, ParserOptions};

const VALID_PROM: &str = "# HELP a_total Some \\\\ help\\n.\n# TYPE a_total counter\n\
a_total{x=\"1\",y=\"es\\\"c\"} 10 1700000000000\n\
{\"my.metric\",\"label.x\"=\"v\"} NaN\n\
# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";

const VALID_OM: &str = "# TYPE a_seconds counter\n# HELP a_seconds help \\\"x\\\"\n\
# UNIT a_seconds seconds\n\
a_seconds_total{x=\"1\"} 10 1700000000.5 # {trace=\"abc\"} 0.5 1700000000\n\
a_seconds_created{x=\"1\"} 1600000000\n\
# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2 # {} 3\nh_sum 0.7\nh_count 2\n\
# TYPE s stateset\ns{s=\"a\"} 1\n# EOF\n";

fn drain(body: &[u8], format: Format, strict: bool) -> Result<usize, String> {
    let mut p = Parser::new(
        body,
        format,
        ParserOptions {
            strict,
            skip_created: false,
        },
    );
    let mut n = 0;
    while let Some(e) = p.next_entry() {
        let e = e.map_err(|e| {
            // Errors always point at a line of the body.
            let lines = body.iter().filter(|&&c| c == b'\n').count() + 2;
            assert!(
                e.line() >= 1 && e.line() <= lines,
                "line {} of {lines}: {e}",
                e.line()
            );
            e.to_string()
        })?;
        if let Entry::Series(s) | Entry::Created(s) = e {
            n += 1;
            let _ = s.to_labels();
        }
    }
    Ok(n)
}

fn all_modes(body: &[u8]) {
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        for strict in [false, true] {
            let _ = drain(body, format, strict);
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
}

fn mutate(body: &str, muts: &[Mutation]) -> Vec<u8> {
    let mut b = body.as_bytes().to_vec();
    for m in muts {
        match *m {
            Mutation::Insert(i, c) => b.insert(i % (b.len() + 1), c),
            Mutation::Delete(i) if !b.is_empty() => {
                let i = i % b.len();
                b.remove(i);
            }
            Mutation::Replace(i, c) if !b.is_empty() => {
                let i = i % b.len();
                b[i] = c;
            }
            _ => {}
        }
    }
    b
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"{}=,\"\\# \t\n.-+eE0123456789_:aINnf\x00\xff".to_vec()),
        any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), interesting_byte()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), interesting_byte()).prop_map(|(i, c)| Mutation::Replace(i, c)),
    ]
}

/// A series to render: name, labels, value, timestamp in ms.
#[derive(Clone, Debug)]
struct Gen {
    name: String,
    quoted_name: bool,
    labels: Vec<(String, String)>,
    value: f64,
    ts: Option<i64>,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's `{:e}` is the shortest representation that parses back exactly.
        format!("{v:e}")
    }
}

impl Gen {
    fn render(&self, format: Format) -> String {
        let mut parts = Vec::new();
        if self.quoted_name {
            parts.push(format!("\"{}\"", escape(&self.name)));
        }
        for (n, v) in &self.labels {
            let n = if n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                && !n.as_bytes()[0].is_ascii_digit()
            {
                n.clone()
            } else {
                format!("\"{}\"", escape(n))
            };
            parts.push(format!("{n}=\"{}\"", escape(v)));
        }
        let mut line = if self.quoted_name {
            String::new()
        } else {
            self.name.clone()
        };
        if !parts.is_empty() || self.quoted_name {
            line.push('{');
            line.push_str(&parts.join(","));
            line.push('}');
        }
        line.push(' ');
        line.push_str(&render_float(self.value));
        match (self.ts, format) {
            (Some(ts), Format::PrometheusText) => line.push_str(&format!(" {ts}")),
            // Whole seconds: the OpenMetrics seconds-to-ms conversion is exact for them.
            (Some(ts), Format::OpenMetrics) => line.push_str(&format!(" {}", ts / 1000)),
            (None, _) => {}
        }
        line.push('\n');
        line
    }
}

fn gen_series() -> impl Strategy<Value = Gen> {
    let legacy_name = "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}";
    let label_name = prop_oneof!["[a-zA-Z_][a-zA-Z0-9_]{0,12}", "\\PC{1,8}"];
    let value = prop_oneof![
        any::<f64>(),
        (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
        (-1_000_000i64..1_000_000, 0u32..6).prop_map(|(m, e)| m as f64 / 10f64.powi(e as i32)),
    ];
    (
        prop_oneof![
            legacy_name.prop_map(|n| (n, false)),
            "\\PC{1,16}".prop_map(|n| (n, true))
        ],
        prop::collection::btree_map(label_name, "\\PC{0,16}", 0..8),
        value,
        prop::option::of(-10_000_000_000i64..10_000_000_000_000),
    )
        .prop_map(|((name, quoted_name), labels, value, ts)| Gen {
            name,
            quoted_name,
            labels: labels.into_iter().filter(|(n, _)| !n.is_empty()).collect(),
            value,
            ts: ts.map(|t| t / 1000 * 1000),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        all_modes(&body);
    }

    #[test]
    fn never_panics_on_exposition_like_bytes(body in prop::collection::vec(interesting_byte(), 0..256)) {
        all_modes(&body);
    }

    #[test]
    fn never_panics_on_mutated_valid_bodies(muts in prop::collection::vec(mutation(), 1..6)) {
        all_modes(&mutate(VALID_PROM, &muts));
        all_modes(&mutate(VALID_OM, &muts));
    }

    #[test]
    fn generated_series_round_trip(series in prop::collection::vec(gen_series(), 1..6)) {
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let mut body: String = series.iter().map(|s| s.render(format)).collect();
            if format == Format::OpenMetrics {
                body.push_str("# EOF\n");
            }
            let mut p = Parser::new(body.as_bytes(), format, ParserOptions::default());
            let mut i = 0;
            while let Some(e) = p.next_entry() {
                let e = e.map_err(|e| TestCaseError::fail(format!("{format:?} {body:?}: {e}")))?;
                let s = match e {
                    Entry::Series(s) | Entry::Created(s) => s,
                    Entry::Eof => continue,
                    other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
                };
                let want = &series[i];
                prop_assert_eq!(s.name, want.name.as_str());
                let got: Vec<(String, String)> =
                    s.labels.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
                prop_assert_eq!(&got, &want.labels);
                if want.value.is_nan() {
                    prop_assert!(s.value.is_nan());
                } else {
                    prop_assert_eq!(s.value.to_bits(), want.value.to_bits(), "{}", body);
                }
                prop_assert_eq!(s.timestamp_ms, want.ts);
                i += 1;
            }
            prop_assert_eq!(i, series.len());
        }
    }
}

#[test]
fn valid_bodies_parse() {
    assert_eq!(
        drain(VALID_PROM.as_bytes(), Format::PrometheusText, true),
        Ok(6)
    );
    assert_eq!(drain(VALID_OM.as_bytes(), Format::OpenMetrics, true), Ok(7));
}

/// Every entry (or the error that ends the walk) as text; in lazy mode the deferred labels
/// are parsed right away, so both walks must agree exactly.
fn walk(body: &[u8], format: Format, lazy: bool) -> Vec<String> {
    let mut p = Parser::new(body, format, ParserOptions::default()).lazy_labels(lazy);
    let mut out = Vec::new();
    loop {
        let rendered = match p.next_entry() {
            None => break,
            Some(Err(e)) => {
                out.push(format!("error: {e}"));
                break;
            }
            Some(Ok(e)) => format!("{e:?}"),
        };
        if p.labels_pending() {
            match p.parse_labels() {
                Ok(s) => out.push(format!("{:?}", Entry::Series(s))),
                Err(e) => {
                    out.push(format!("error: {e}"));
                    break;
                }
            }
        } else {
            out.push(rendered);
        }
    }
    out
}

fn lazy_matches_eager(body: &[u8]) -> Result<(), TestCaseError> {
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        prop_assert_eq!(walk(body, format, false), walk(body, format, true));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn lazy_labels_parse_like_eager_ones_on_mutated_bodies(
        muts in prop::collection::vec(mutation(), 0..6),
        om in any::<bool>(),
    ) {
        let body = mutate(if om { VALID_OM } else { VALID_PROM }, &muts);
        lazy_matches_eager(&body)?;
    }

    #[test]
    fn lazy_labels_parse_like_eager_ones_on_exposition_like_bytes(
        body in prop::collection::vec(interesting_byte(), 0..256),
    ) {
        lazy_matches_eager(&body)?;
    }
}

#[test]
fn lazy_labels_skip_the_label_parse_until_asked() {
    let body = b"a{x=\"1\",y=\"}\\\"\"} 2 3\nb 4\n";
    let mut p =
        Parser::new(body, Format::PrometheusText, ParserOptions::default()).lazy_labels(true);
    match p.next_entry() {
        Some(Ok(Entry::Series(s))) => {
            assert_eq!(s.raw, b"a{x=\"1\",y=\"}\\\"\"}");
            assert!(s.labels.is_empty());
            assert_eq!((s.value, s.timestamp_ms), (2.0, Some(3)));
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(p.labels_pending());
    let s = p.parse_labels().expect("labels");
    assert_eq!(s.labels.len(), 2);
    assert_eq!(s.labels[1].value, "}\"");
    match p.next_entry() {
        Some(Ok(Entry::Series(s))) => assert_eq!(s.raw, b"b"),
        e => panic!("unexpected {e:?}"),
    }
    assert!(
        !p.labels_pending(),
        "a series without braces has nothing to defer"
    );
    // A wrong label set is reported when its labels are asked for...
    let mut p = Parser::new(
        b"a{x=1} 2\n",
        Format::PrometheusText,
        ParserOptions::default(),
    )
    .lazy_labels(true);
    assert!(matches!(p.next_entry(), Some(Ok(_))));
    assert!(p.parse_labels().is_err());
    assert!(p.next_entry().is_none(), "the error ends the walk");
    // ...and before a bad value, as the eager parse reports it.
    let eager = walk(b"a{x=1} z\n", Format::PrometheusText, false);
    assert_eq!(eager, walk(b"a{x=1} z\n", Format::PrometheusText, true));
    assert!(eager[0].contains("label value"), "{eager:?}");
}
