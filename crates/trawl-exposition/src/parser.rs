//! The line-oriented pull parser shared by both formats.
//!
//! Neither format allows a raw newline inside a token (newlines in label values and HELP
//! text are escaped), so the body is cut into lines with `memchr` and each line is parsed
//! by hand at byte level. Slices are converted to `&str` through the body's `&str` when the
//! whole body is valid UTF-8 (one fast check up front; slicing at ASCII delimiters then
//! costs a boundary check). Otherwise each handed-out slice is validated on its own, so an
//! invalid byte is only an error where Prometheus would report one.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use crate::lex::{
    LABEL_CONT, METRIC_CONT, go_quote, is_label_start, is_metric_start, parse_float, parse_i64,
    unescape_help, unescape_label,
};
use crate::strict::Strict;
use crate::{
    Entry, Exemplar, ExpositionError, Format, LabelRef, MetricType, ParserOptions, Series,
};

type Result<T> = std::result::Result<T, ExpositionError>;

#[derive(Clone, Copy)]
struct Src<'a> {
    bytes: &'a [u8],
    text: Option<&'a str>,
}

impl<'a> Src<'a> {
    #[inline]
    fn str(self, a: usize, b: usize) -> Option<&'a str> {
        match self.text {
            Some(t) => t.get(a..b),
            None => std::str::from_utf8(self.bytes.get(a..b)?).ok(),
        }
    }
}

/// One line: its bytes (without the newline), offset in the body and number.
#[derive(Clone, Copy, Debug)]
struct Line<'a> {
    b: &'a [u8],
    start: usize,
    no: usize,
    /// Whether a `\n` ended the line (shown as the "got" token at line end).
    nl: bool,
}

impl Line<'_> {
    /// Prometheus-style "expected X, got T while parsing: CONTEXT" where T is the byte at
    /// `i` (or the line end).
    #[cold]
    fn expected(&self, what: &str, i: usize) -> ExpositionError {
        // Prometheus shows an invalid byte alone, and a valid token with one byte after it.
        let valid_token = self.b.get(i).is_some_and(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b'=' | b'{' | b'}' | b'"')
        });
        self.expected_span(what, i, if valid_token { i + 2 } else { i + 1 })
    }

    /// Like [`Line::expected`], with T running to the end of the line (an unterminated
    /// quoted string).
    #[cold]
    fn expected_rest(&self, what: &str, i: usize) -> ExpositionError {
        self.expected_span(what, i, self.b.len() + 1)
    }

    fn expected_span(&self, what: &str, i: usize, j: usize) -> ExpositionError {
        let b = self.b;
        let mut got: Vec<u8> = b[i.min(b.len())..j.min(b.len())].to_vec();
        let mut ctx = b[..j.min(b.len())].to_vec();
        if j > b.len() && self.nl {
            got.push(b'\n');
            ctx.push(b'\n');
        }
        ExpositionError::syntax(
            self.no,
            format!(
                "expected {what}, got {} while parsing: {}",
                go_quote(&got),
                go_quote(&ctx)
            ),
        )
    }

    #[cold]
    fn while_parsing(&self, msg: String, end: usize) -> ExpositionError {
        let end = end.min(self.b.len());
        ExpositionError::syntax(
            self.no,
            format!("{msg} while parsing: {}", go_quote(&self.b[..end])),
        )
    }
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` outside `class` (or `b.len()`).
#[inline]
fn scan(b: &[u8], i: usize, class: &[bool; 256]) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .position(|&c| !class[c as usize])
        .unwrap_or(rest.len())
}

/// The index of the first space at or after `i` (or `b.len()`).
#[inline]
fn until_space(b: &[u8], i: usize) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    i + rest.iter().position(|&c| c == b' ').unwrap_or(rest.len())
}

/// The index of the first space or tab at or after `i` (or `b.len()`).
#[inline]
fn until_blank(b: &[u8], i: usize) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .position(|&c| c == b' ' || c == b'\t')
        .unwrap_or(rest.len())
}

/// The index after the `}` closing the label set that opens at `i` (a `{`), skipping quoted
/// strings with their escapes; `None` when the line ends first. For a label set that
/// parses, this is where the parse ends: names cannot hold `}` and values are quoted.
fn label_set_end(b: &[u8], i: usize) -> Option<usize> {
    // A byte loop: label sets are a few dozen bytes, too short for memchr to pay off.
    let mut j = i + 1;
    let mut quoted = false;
    while let Some(&c) = b.get(j) {
        match c {
            b'\\' if quoted => j += 1,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(j + 1),
            _ => {}
        }
        j += 1;
    }
    None
}

enum Kind<'a> {
    Type(MetricType),
    Help(Cow<'a, str>),
    Unit(&'a str),
    Comment(&'a str),
    Series,
    Created,
    Eof,
    Skip,
}

/// A pull parser over one exposition body.
///
/// ```
/// use trawl_exposition::{Entry, Format, Parser, ParserOptions};
/// let body = b"# TYPE up gauge\nup{job=\"a\"} 1 1700000000000\n";
/// let mut p = Parser::new(body, Format::PrometheusText, ParserOptions::default());
/// let mut samples = 0;
/// while let Some(entry) = p.next_entry() {
///     if let Entry::Series(s) = entry.unwrap() {
///         assert_eq!((s.name, s.labels[0].value.as_ref(), s.value), ("up", "a", 1.0));
///         samples += 1;
///     }
/// }
/// assert_eq!(samples, 1);
/// ```
#[derive(Debug)]
pub struct Parser<'a> {
    src_bytes: &'a [u8],
    src_text: Option<&'a str>,
    format: Format,
    opts: ParserOptions,
    pos: usize,
    line: usize,
    done: bool,
    // Reused across entries: series labels first, then exemplar labels.
    labels: Vec<LabelRef<'a>>,
    n_series_labels: usize,
    name: Cow<'a, str>,
    raw: &'a [u8],
    value: f64,
    ts: Option<i64>,
    exemplar: Option<(f64, Option<i64>)>,
    // The family named by the last OpenMetrics TYPE line, to recognise `_created`.
    family: Cow<'a, str>,
    family_type: MetricType,
    strict: Option<Box<Strict>>,
    lazy: bool,
    // In lazy mode: the line and brace index of a label set not parsed yet.
    deferred: Option<(Line<'a>, usize)>,
}

impl<'a> Parser<'a> {
    /// A parser over `body` in `format`.
    pub fn new(body: &'a [u8], format: Format, opts: ParserOptions) -> Self {
        Parser {
            src_bytes: body,
            src_text: std::str::from_utf8(body).ok(),
            format,
            opts,
            pos: 0,
            line: 1,
            done: false,
            labels: Vec::with_capacity(16),
            n_series_labels: 0,
            name: Cow::Borrowed(""),
            raw: &[],
            value: 0.0,
            ts: None,
            exemplar: None,
            family: Cow::Borrowed(""),
            family_type: MetricType::Unknown,
            strict: opts.strict.then(|| Box::new(Strict::new(format))),
            lazy: false,
            deferred: None,
        }
    }

    /// Lazy labels: series entries come with `raw`, value and timestamp but without their
    /// labels (`labels` is empty) until [`Parser::parse_labels`] asks for them. A scraper
    /// that caches by `raw` parses labels only for series it has not seen: a `raw` it has
    /// seen before came from a line that parsed, and the same bytes parse the same way, so
    /// skipping them validates nothing less. Errors in a value or timestamp are still
    /// found at once, and where the labels are wrong too their error is the one reported,
    /// as without lazy mode. No effect in strict mode (its checks need the labels).
    pub fn lazy_labels(mut self, on: bool) -> Self {
        self.lazy = on && self.strict.is_none();
        self
    }

    /// Whether the current series entry's labels are still unparsed (lazy mode).
    pub fn labels_pending(&self) -> bool {
        self.deferred.is_some()
    }

    /// Parses the labels the last series entry deferred (lazy mode) and returns that entry
    /// complete; an error ends the walk as it would have without lazy mode. Without
    /// deferred labels it returns the last series as it is.
    pub fn parse_labels(&mut self) -> std::result::Result<Series<'_, 'a>, ExpositionError> {
        if let Some((l, i)) = self.deferred.take()
            && let Err(e) = self.finish_labels(l, i)
        {
            self.done = true;
            return Err(e);
        }
        Ok(self.series())
    }

    /// Parses a deferred label set into place before any exemplar labels.
    fn finish_labels(&mut self, l: Line<'a>, i: usize) -> Result<()> {
        let exemplar: Vec<LabelRef<'a>> = self.labels.drain(..).collect();
        let mut name = Some(std::mem::take(&mut self.name));
        let om = self.format == Format::OpenMetrics;
        self.label_set(l, i, om, false, &mut name)?;
        self.name = name.unwrap_or_default();
        self.n_series_labels = self.labels.len();
        check_unique(&self.labels, l.no)?;
        self.labels.extend(exemplar);
        Ok(())
    }

    /// The format being parsed.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The next entry, `None` at the end, or the error that ends the walk (after an error
    /// the parser returns `None`).
    #[allow(clippy::should_implement_trait)]
    pub fn next_entry(&mut self) -> Option<std::result::Result<Entry<'_, 'a>, ExpositionError>> {
        let kind = loop {
            if self.done {
                return None;
            }
            match self.step() {
                Ok(Some(Kind::Skip)) => continue,
                Ok(Some(k)) => break k,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        };
        Some(Ok(self.entry(kind)))
    }

    /// Walks the whole body and returns the number of samples (series and `_created`
    /// entries), or the first error. Handy for validation and benchmarks.
    pub fn count_samples(&mut self) -> std::result::Result<usize, ExpositionError> {
        let mut n = 0;
        while let Some(e) = self.next_entry() {
            if matches!(e?, Entry::Series(_) | Entry::Created(_)) {
                n += 1;
            }
        }
        Ok(n)
    }

    fn entry(&self, kind: Kind<'a>) -> Entry<'_, 'a> {
        match kind {
            Kind::Type(t) => Entry::Type {
                family: &self.name,
                metric_type: t,
            },
            Kind::Help(text) => Entry::Help {
                family: &self.name,
                text,
            },
            Kind::Unit(unit) => Entry::Unit {
                family: &self.name,
                unit,
            },
            Kind::Comment(c) => Entry::Comment(c),
            Kind::Series => Entry::Series(self.series()),
            Kind::Created => Entry::Created(self.series()),
            Kind::Eof | Kind::Skip => Entry::Eof,
        }
    }

    fn series(&self) -> Series<'_, 'a> {
        let (labels, ex_labels) = self
            .labels
            .split_at(self.n_series_labels.min(self.labels.len()));
        Series {
            name: &self.name,
            labels,
            value: self.value,
            timestamp_ms: self.ts,
            exemplar: self.exemplar.map(|(value, timestamp_ms)| Exemplar {
                labels: ex_labels,
                value,
                timestamp_ms,
            }),
            raw: self.raw,
        }
    }

    fn src(&self) -> Src<'a> {
        Src {
            bytes: self.src_bytes,
            text: self.src_text,
        }
    }

    fn step(&mut self) -> Result<Option<Kind<'a>>> {
        let bytes = self.src_bytes;
        if self.pos >= bytes.len() {
            if self.format == Format::OpenMetrics {
                return Err(ExpositionError::MissingEof { line: self.line });
            }
            if let Some(s) = self.strict.as_mut() {
                s.finish(self.line)?;
            }
            return Ok(None);
        }
        let start = self.pos;
        let rest = &bytes[start..];
        let (end, nl) = match memchr(b'\n', rest) {
            Some(i) => (start + i, true),
            None => (bytes.len(), false),
        };
        self.pos = end + 1;
        // Prometheus appends a newline to a text-format body that lacks one, which shows in
        // its error messages; pretend the same.
        let nl = nl || self.format == Format::PrometheusText;
        let line = Line {
            b: &bytes[start..end],
            start,
            no: self.line,
            nl,
        };
        self.line += 1;
        match self.format {
            Format::PrometheusText => self.prom_line(line).map(Some),
            Format::OpenMetrics => self.om_line(line).map(Some),
        }
    }

    // ---------------------------------------------------------------- Prometheus text

    fn prom_line(&mut self, l: Line<'a>) -> Result<Kind<'a>> {
        let b = l.b;
        let i = skip_ws(b, 0);
        match b.get(i) {
            None => Ok(Kind::Skip),
            Some(b'#') => self.prom_comment(l, i + 1),
            Some(_) => self.sample(l, i, false),
        }
    }

    fn prom_comment(&mut self, l: Line<'a>, i: usize) -> Result<Kind<'a>> {
        let b = l.b;
        let i = skip_ws(b, i);
        let rest = &b[i..];
        let keyword = if rest.starts_with(b"HELP") {
            Some("HELP")
        } else if rest.starts_with(b"TYPE") {
            Some("TYPE")
        } else {
            None
        };
        let keyword = match keyword {
            Some(k) if matches!(rest.get(4), Some(b' ' | b'\t')) => k,
            _ => {
                let text = self.src().str(l.start + i, l.start + b.len());
                return Ok(text.map_or(Kind::Skip, Kind::Comment));
            }
        };
        let i = skip_ws(b, i + 4);
        let (family, i) = self
            .family_name(l, i)?
            .ok_or_else(|| l.expected(&format!("metric name after {keyword}"), i))?;
        self.name = family;
        if keyword == "HELP" {
            let text = if i >= b.len() {
                ""
            } else if b[i] == b' ' || b[i] == b'\t' {
                let j = skip_ws(b, i);
                self.src()
                    .str(l.start + j, l.start + b.len())
                    .ok_or_else(|| ExpositionError::invalid(l.no, "invalid UTF-8 in HELP text"))?
            } else {
                return Err(l.expected("text in HELP", i));
            };
            if let Some(s) = self.strict.as_mut() {
                s.help(&self.name, l.no)?;
            }
            return Ok(Kind::Help(unescape_help(text, false)));
        }
        if i >= b.len() || !(b[i] == b' ' || b[i] == b'\t') {
            return Err(ExpositionError::syntax(l.no, "expected text in TYPE"));
        }
        let j = skip_ws(b, i);
        let mut k = b.len();
        while k > j && (b[k - 1] == b' ' || b[k - 1] == b'\t') {
            k -= 1;
        }
        if j == k {
            return Err(ExpositionError::syntax(l.no, "expected text in TYPE"));
        }
        let t = self.metric_type(l, j, k)?;
        if let Some(s) = self.strict.as_mut() {
            s.type_line(&self.name, t, l.no)?;
        }
        Ok(Kind::Type(t))
    }

    fn metric_type(&self, l: Line<'a>, a: usize, b: usize) -> Result<MetricType> {
        let word = &l.b[a..b];
        std::str::from_utf8(word)
            .ok()
            .and_then(|w| MetricType::parse(w, self.format))
            .ok_or_else(|| {
                ExpositionError::invalid(l.no, format!("invalid metric type {}", go_quote(word)))
            })
    }

    /// A family name in a metadata line: a legacy metric name or a quoted UTF-8 name.
    fn family_name(&self, l: Line<'a>, i: usize) -> Result<Option<(Cow<'a, str>, usize)>> {
        let b = l.b;
        match b.get(i) {
            Some(&c) if is_metric_start(c) => {
                let j = scan(b, i + 1, &METRIC_CONT);
                let s = self.src().str(l.start + i, l.start + j).unwrap_or_default();
                Ok(Some((Cow::Borrowed(s), j)))
            }
            Some(b'"') => {
                let (s, j) = self.quoted(l, i, "metric name")?;
                if s.is_empty() {
                    return Err(l.expected("metric name", i));
                }
                Ok(Some((s, j)))
            }
            _ => Ok(None),
        }
    }

    // ---------------------------------------------------------------- OpenMetrics

    fn om_line(&mut self, l: Line<'a>) -> Result<Kind<'a>> {
        let b = l.b;
        match b.first() {
            Some(b'#') => self.om_comment(l),
            Some(&c) if is_metric_start(c) || c == b'{' => self.sample(l, 0, true),
            _ => Err(l.expected_span("a valid start token", 0, 1)),
        }
    }

    fn om_comment(&mut self, l: Line<'a>) -> Result<Kind<'a>> {
        let b = l.b;
        if b.starts_with(b"# EOF") {
            if b.len() != 5 || self.pos < self.src_bytes.len() {
                return Err(ExpositionError::DataAfterEof { line: l.no });
            }
            if let Some(s) = self.strict.as_mut() {
                s.finish(l.no)?;
            }
            self.done = true;
            return Ok(Kind::Eof);
        }
        let keyword = if b.starts_with(b"# HELP ") {
            "HELP"
        } else if b.starts_with(b"# TYPE ") {
            "TYPE"
        } else if b.starts_with(b"# UNIT ") {
            "UNIT"
        } else {
            let n = b.len().min(if b.get(1) == Some(&b' ') { 3 } else { 2 });
            return Err(ExpositionError::syntax(
                l.no,
                format!(
                    "expected a valid start token, got {} while parsing: {}",
                    go_quote(&b[..n]),
                    go_quote(&b[..n])
                ),
            ));
        };
        let (family, i) = self
            .family_name(l, 7)?
            .ok_or_else(|| l.expected(&format!("metric name after {keyword}"), 7))?;
        if i >= b.len() || b[i] != b' ' {
            return Err(ExpositionError::syntax(
                l.no,
                format!("expected text in {keyword}"),
            ));
        }
        let text = self
            .src()
            .str(l.start + i + 1, l.start + b.len())
            .ok_or_else(|| ExpositionError::invalid(l.no, format!("invalid UTF-8 in {keyword}")))?;
        self.name = family;
        match keyword {
            "HELP" => {
                if let Some(s) = self.strict.as_mut() {
                    s.help(&self.name, l.no)?;
                }
                if self.family != self.name {
                    self.family = self.name.clone();
                    self.family_type = MetricType::Unknown;
                }
                Ok(Kind::Help(unescape_help(text, true)))
            }
            "TYPE" => {
                let t = self.metric_type(l, i + 1, b.len())?;
                if let Some(s) = self.strict.as_mut() {
                    s.type_line(&self.name, t, l.no)?;
                }
                self.family = self.name.clone();
                self.family_type = t;
                Ok(Kind::Type(t))
            }
            _ => {
                // An empty unit is allowed (it means "no unit"); otherwise the family name
                // must end in `_<unit>`.
                let name: &str = &self.name;
                if !unit_matches(name, text) {
                    return Err(ExpositionError::invalid(
                        l.no,
                        format!(
                            "unit {} not a suffix of metric {}",
                            go_quote(text.as_bytes()),
                            go_quote(name.as_bytes())
                        ),
                    ));
                }
                if let Some(s) = self.strict.as_mut() {
                    s.unit(&self.name, text, l.no)?;
                }
                if self.family != self.name {
                    self.family = self.name.clone();
                    self.family_type = MetricType::Unknown;
                }
                Ok(Kind::Unit(text))
            }
        }
    }

    // ---------------------------------------------------------------- samples

    fn sample(&mut self, l: Line<'a>, start: usize, om: bool) -> Result<Kind<'a>> {
        let b = l.b;
        self.labels.clear();
        self.n_series_labels = 0;
        self.exemplar = None;
        self.ts = None;
        self.deferred = None;
        let mut i = start;
        let mut name: Option<Cow<'a, str>> = None;
        if b.get(i).is_some_and(|&c| is_metric_start(c)) {
            let j = scan(b, i + 1, &METRIC_CONT);
            name = Some(Cow::Borrowed(
                self.src().str(l.start + i, l.start + j).unwrap_or_default(),
            ));
            i = j;
        }
        let mut deferred = None;
        if b.get(i) == Some(&b'{') {
            match label_set_end(b, i) {
                // A name inside the braces (`{"name"}`) is only known after parsing them.
                Some(end) if self.lazy && name.is_some() => {
                    deferred = Some(i);
                    i = end;
                }
                _ => i = self.label_set(l, i, om, false, &mut name)?,
            }
        }
        self.raw = &b[start..i];
        self.n_series_labels = self.labels.len();
        let Some(name) = name else {
            return Err(l.while_parsing("metric name not set".to_owned(), b.len()));
        };
        self.name = name;
        if deferred.is_none() {
            check_unique(&self.labels, l.no)?;
        }
        match self.value_and_tail(l, i, om) {
            Ok(()) => {}
            Err(e) => {
                // Report what the full parse would: the labels' error comes first.
                if let Some(at) = deferred {
                    self.finish_labels(l, at)?;
                }
                return Err(e);
            }
        }
        self.deferred = deferred.map(|at| (l, at));
        // `_created` lines are rare; resolve them now so Created entries are complete.
        if om
            && self.is_created()
            && let Some((l, at)) = self.deferred.take()
        {
            self.finish_labels(l, at)?;
        }

        if let Some(s) = self.strict.as_mut() {
            let ex = self
                .exemplar
                .is_some()
                .then(|| &self.labels[self.n_series_labels..]);
            s.sample(
                &self.name,
                &self.labels[..self.n_series_labels],
                self.value,
                self.ts,
                ex,
                l.no,
            )?;
        }
        if om && self.is_created() {
            return Ok(if self.opts.skip_created {
                Kind::Skip
            } else {
                Kind::Created
            });
        }
        Ok(Kind::Series)
    }

    /// The value and what follows it (timestamp, exemplar) from `i`, the end of the series.
    fn value_and_tail(&mut self, l: Line<'a>, mut i: usize, om: bool) -> Result<()> {
        let b = l.b;

        // Value.
        if om {
            if b.get(i) != Some(&b' ') {
                return Err(l.expected("value after metric", i));
            }
            i += 1;
        } else {
            let j = skip_ws(b, i);
            if j == i {
                return Err(l.expected("value after metric", i));
            }
            i = j;
        }
        let vs = i;
        i = if om {
            until_space(b, i)
        } else {
            until_blank(b, i)
        };
        if vs == i {
            return Err(l.expected("value after metric", i));
        }
        self.value = parse_float(&b[vs..i]).map_err(|e| l.while_parsing(e.render(&b[vs..i]), i))?;

        if om {
            self.om_tail(l, i)
        } else {
            self.prom_tail(l, i)
        }
    }

    fn is_created(&self) -> bool {
        matches!(
            self.family_type,
            MetricType::Counter | MetricType::Summary | MetricType::Histogram
        ) && self.name.len() == self.family.len() + 8
            && self.name.starts_with(&*self.family)
            && self.name.ends_with("_created")
    }

    fn prom_tail(&mut self, l: Line<'a>, i: usize) -> Result<()> {
        let b = l.b;
        let j = skip_ws(b, i);
        if j >= b.len() {
            return Ok(());
        }
        let mut k = j;
        if b[k] == b'-' {
            k += 1;
        }
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        if k == j || (k == j + 1 && b[j] == b'-') {
            return Err(l.expected("timestamp or new record", j));
        }
        self.ts = Some(parse_i64(&b[j..k]).ok_or_else(|| {
            ExpositionError::invalid(
                l.no,
                format!("invalid timestamp {}", String::from_utf8_lossy(&b[j..k])),
            )
        })?);
        let m = skip_ws(b, k);
        if m < b.len() {
            return Err(l.expected_span("next entry after timestamp", k, k + 1));
        }
        Ok(())
    }

    fn om_tail(&mut self, l: Line<'a>, mut i: usize) -> Result<()> {
        let b = l.b;
        if i >= b.len() {
            return Ok(());
        }
        // b[i] is the single space after the value.
        i += 1;
        let mut after_ts = None;
        if b.get(i) != Some(&b'#') {
            let ts_start = i;
            i = until_space(b, i);
            if ts_start == i {
                return Err(l.expected("timestamp or # symbol", i));
            }
            self.ts = Some(om_timestamp(l, &b[ts_start..i], i, "timestamp")?);
            if i >= b.len() {
                return Ok(());
            }
            after_ts = Some(i);
            i += 1;
            if b.get(i) != Some(&b'#') {
                return Err(l.expected_rest("next entry after timestamp", i - 1));
            }
        }
        // Exemplar: `# {labels} value [timestamp]`.
        if b.get(i + 1) != Some(&b' ') || b.get(i + 2) != Some(&b'{') {
            return Err(match after_ts {
                Some(space) => l.expected_rest("next entry after timestamp", space),
                None => l.expected("exemplar labels after #", i),
            });
        }
        let mut none = None;
        i = self.label_set(l, i + 2, true, true, &mut none)?;
        if b.get(i) != Some(&b' ') {
            return Err(l.expected("value after exemplar labels", i));
        }
        i += 1;
        let vs = i;
        i = until_space(b, i);
        if vs == i {
            return Err(l.expected("value after exemplar labels", i));
        }
        let value = parse_float(&b[vs..i]).map_err(|e| l.while_parsing(e.render(&b[vs..i]), i))?;
        let mut ts = None;
        if i < b.len() {
            i += 1;
            let ts_start = i;
            i = until_space(b, i);
            if ts_start == i {
                return Err(l.expected("exemplar timestamp", i));
            }
            ts = Some(om_timestamp(l, &b[ts_start..i], i, "exemplar timestamp")?);
            if i < b.len() {
                return Err(l.expected("end of line after exemplar", i));
            }
        }
        self.exemplar = Some((value, ts));
        Ok(())
    }

    // ---------------------------------------------------------------- labels

    /// Parses `{...}` starting at `i` (the brace) and returns the index after `}`. Label
    /// pairs are appended to `self.labels`; a quoted name without `=` sets `name`.
    fn label_set(
        &mut self,
        l: Line<'a>,
        mut i: usize,
        om: bool,
        exemplar: bool,
        name: &mut Option<Cow<'a, str>>,
    ) -> Result<usize> {
        let b = l.b;
        i += 1;
        let mut after_comma = false;
        loop {
            if !om {
                i = skip_ws(b, i);
            }
            let lname: Cow<'a, str> = match b.get(i) {
                Some(b'}') => {
                    if after_comma && om && self.opts.strict {
                        return Err(l.expected("label name", i));
                    }
                    return Ok(i + 1);
                }
                Some(b'"') => {
                    let (q, j) = self.quoted(l, i, "label name")?;
                    let k = if om { j } else { skip_ws(b, j) };
                    match b.get(k) {
                        Some(b'=') => {
                            if q.is_empty() {
                                return Err(l.expected("label name", i));
                            }
                            i = k + 1;
                            q
                        }
                        Some(b',' | b'}') if !exemplar => {
                            if name.is_some() || q.is_empty() {
                                return Err(l.while_parsing("metric name already set".into(), k));
                            }
                            *name = Some(q);
                            i = k;
                            after_comma = false;
                            if b[i] == b',' {
                                i += 1;
                                after_comma = true;
                            }
                            continue;
                        }
                        _ => return Err(l.expected("equal", j)),
                    }
                }
                Some(&c) if is_label_start(c) => {
                    let j = scan(b, i + 1, &LABEL_CONT);
                    let n = self.src().str(l.start + i, l.start + j).unwrap_or_default();
                    let k = if om { j } else { skip_ws(b, j) };
                    if b.get(k) != Some(&b'=') {
                        return Err(l.expected("equal", k));
                    }
                    i = k + 1;
                    Cow::Borrowed(n)
                }
                _ => return Err(l.expected("label name", i)),
            };
            if !om {
                i = skip_ws(b, i);
            }
            if b.get(i) != Some(&b'"') {
                return Err(l.expected_span("label value", i, i + 1));
            }
            let (value, j) = self.quoted(l, i, "label value")?;
            if exemplar && value.as_bytes().contains(&0) {
                return Err(l.expected("label value", i));
            }
            self.labels.push(LabelRef { name: lname, value });
            i = if om { j } else { skip_ws(b, j) };
            match b.get(i) {
                Some(b',') => {
                    i += 1;
                    after_comma = true;
                }
                Some(b'}') => return Ok(i + 1),
                _ => return Err(l.expected("comma or brace close", i)),
            }
        }
    }

    /// A quoted string at `i` (the opening quote); returns it unescaped and the index after
    /// the closing quote.
    #[inline]
    fn quoted(&self, l: Line<'a>, i: usize, what: &str) -> Result<(Cow<'a, str>, usize)> {
        let b = l.b;
        let mut j = i + 1;
        let mut escaped = false;
        let close = loop {
            match b.get(j..).and_then(|r| memchr2(b'"', b'\\', r)) {
                Some(k) if b[j + k] == b'\\' => {
                    escaped = true;
                    j += k + 2;
                }
                Some(k) => break j + k,
                None => return Err(l.expected_rest(what, i)),
            }
        };
        let s = self
            .src()
            .str(l.start + i + 1, l.start + close)
            .ok_or_else(|| {
                ExpositionError::invalid(
                    l.no,
                    format!("invalid UTF-8 {what}: {}", go_quote(&b[i..=close])),
                )
            })?;
        let v = if escaped {
            unescape_label(s)
        } else {
            Cow::Borrowed(s)
        };
        Ok((v, close + 1))
    }
}

/// An empty unit means "no unit"; otherwise the family name must end in `_<unit>`.
fn unit_matches(name: &str, unit: &str) -> bool {
    unit.is_empty()
        || name
            .strip_suffix(unit)
            .is_some_and(|stem| stem.ends_with('_'))
}

fn om_timestamp(l: Line<'_>, tok: &[u8], end: usize, what: &str) -> Result<i64> {
    let t = parse_float(tok).map_err(|e| l.while_parsing(e.render(tok), end))?;
    if t.is_nan() {
        return Err(ExpositionError::invalid(
            l.no,
            format!("invalid {what} NaN"),
        ));
    }
    if t.is_infinite() {
        let s = if t > 0.0 { "+Inf" } else { "-Inf" };
        return Err(ExpositionError::invalid(
            l.no,
            format!("invalid {what} {s}"),
        ));
    }
    // Prometheus converts with int64(seconds*1000): truncation, saturating here.
    Ok((t * 1000.0) as i64)
}

/// Rejects repeated label names. Exporters almost always write labels sorted, so a strictly
/// increasing run proves uniqueness in one pass; otherwise compare pairs (label sets are
/// small).
#[inline]
fn check_unique(labels: &[LabelRef<'_>], line: usize) -> Result<()> {
    if labels.windows(2).all(|w| w[0].name < w[1].name) {
        return Ok(());
    }
    for (n, a) in labels.iter().enumerate() {
        if labels[n + 1..].iter().any(|b| b.name == a.name) {
            return Err(ExpositionError::invalid(
                line,
                format!("duplicate label name {}", go_quote(a.name.as_bytes())),
            ));
        }
    }
    Ok(())
}
