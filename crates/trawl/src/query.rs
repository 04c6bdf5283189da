//! `trawl query`: the gRPC Query API client users script against (like `promtool query`).
//!
//! `trawl query EXPR` runs an instant query (at `--time`, default now); any of `--start`,
//! `--end`, `--step` makes it a range query (end defaults to now, start to end-5m, step to
//! promtool's `max(floor((end-start)/250), 1s)`). `trawl query labels [NAME]` lists label
//! names or the values of NAME; `trawl query series --match SEL...` lists series. Times are
//! RFC3339, Unix seconds (fractions allowed) or `now`, `now-1h`, `now+5m`. Output is a
//! readable table or, with `-o json`, Prometheus's HTTP API JSON. (A query that is literally
//! `labels` or `series` is written `trawl query -- labels`.)

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use trawl_model::{Labels, PromDuration};
use trawl_promql::Value;
use trawl_query::{Answer, Client, Listing, MetadataQuery, json};

/// Address `trawl query` connects to unless `--addr` or `TRAWL_QUERY_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9095";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QueryArgs {
    #[command(subcommand)]
    sub: Option<QuerySub>,
    #[command(flatten)]
    expr: ExprArgs,
}

#[derive(Debug, Subcommand)]
enum QuerySub {
    /// Label names, or with NAME the values of that label.
    Labels(LabelsArgs),
    /// Series matching the selectors.
    Series(SeriesArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// host:port of a Query service (standalone's or a querier's --grpc.listen-address).
    #[arg(long, env = "TRAWL_QUERY_ADDR", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Give up after this long (Prometheus duration, e.g. 30s).
    #[arg(long)]
    timeout: Option<String>,
    /// TLS to a server run with `--grpc.tls-*`: the same three flags, the client presenting
    /// the certificate and verifying the server against the CA.
    #[command(flatten)]
    tls: trawl_proto::tls::TlsFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct ExprArgs {
    /// PromQL expression.
    expr: Option<String>,
    /// Evaluation time of an instant query (RFC3339, Unix seconds, now-1h).
    #[arg(long, conflicts_with_all = ["start", "end", "step"])]
    time: Option<String>,
    /// Start of a range query.
    #[arg(long)]
    start: Option<String>,
    /// End of a range query.
    #[arg(long)]
    end: Option<String>,
    /// Step of a range query (duration like 15s, or seconds).
    #[arg(long)]
    step: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct Bounds {
    /// Series selector (repeatable).
    #[arg(long = "match")]
    matchers: Vec<String>,
    /// Start of the time range (default: unbounded).
    #[arg(long)]
    start: Option<String>,
    /// End of the time range (default: unbounded).
    #[arg(long)]
    end: Option<String>,
    /// Return at most this many results (0: all).
    #[arg(long, default_value_t = 0)]
    limit: u64,
}

#[derive(Debug, Args)]
struct LabelsArgs {
    /// Label whose values to list; without it, label names are listed.
    name: Option<String>,
    #[command(flatten)]
    bounds: Bounds,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct SeriesArgs {
    #[command(flatten)]
    bounds: Bounds,
    #[command(flatten)]
    common: Common,
}

/// What one invocation asks for, times resolved.
enum Request {
    Instant {
        expr: String,
        time: Option<i64>,
    },
    Range {
        expr: String,
        start: i64,
        end: i64,
        step: i64,
    },
    Labels {
        name: Option<String>,
        q: MetadataQuery,
    },
    Series(MetadataQuery),
}

impl QueryArgs {
    pub fn run(self) -> ExitCode {
        let now = trawl_promql::system_time_ms(&SystemTime::now());
        let (req, common) = match self.request(now) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        };
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: starting the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let timeout = match common.timeout.as_deref().map(parse_duration_ms).transpose() {
            Ok(t) => t.map(|ms| Duration::from_millis(ms.unsigned_abs())),
            Err(e) => {
                eprintln!("error: --timeout: {e:#}");
                return ExitCode::from(2);
            }
        };
        let tls = match common.tls.load() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let client_tls = tls.as_ref().map(|t| t.client());
        match rt.block_on(execute(&common.addr, client_tls, timeout, req)) {
            Ok(out) => {
                let (stdout, warnings) = match common.output {
                    Output::Json => (out.json(), Vec::new()),
                    Output::Table => (out.table(), out.warnings()),
                };
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                print!("{stdout}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                match (common.output, e.downcast_ref::<trawl_query::Error>()) {
                    (Output::Json, Some(qe)) => println!("{}", json::error_json(qe)),
                    (_, Some(qe @ trawl_query::Error::Api { .. })) => {
                        eprintln!("error: {}: {qe}", qe.error_type())
                    }
                    _ => eprintln!("error: {e:#}"),
                }
                ExitCode::FAILURE
            }
        }
    }

    fn request(self, now: i64) -> anyhow::Result<(Request, Common)> {
        match self.sub {
            Some(QuerySub::Labels(a)) => Ok((
                Request::Labels {
                    name: a.name,
                    q: a.bounds.resolve(now)?,
                },
                a.common,
            )),
            Some(QuerySub::Series(a)) => {
                if a.bounds.matchers.is_empty() {
                    bail!("series needs at least one --match selector");
                }
                Ok((Request::Series(a.bounds.resolve(now)?), a.common))
            }
            None => {
                let e = self.expr;
                let Some(expr) = e.expr else {
                    bail!("no query given: trawl query 'EXPR' (or trawl query labels|series)");
                };
                if e.start.is_none() && e.end.is_none() && e.step.is_none() {
                    let time = e.time.as_deref().map(|t| parse_time(t, now)).transpose()?;
                    return Ok((Request::Instant { expr, time }, e.common));
                }
                let end = opt_time(e.end.as_deref(), now)?.unwrap_or(now);
                let start = opt_time(e.start.as_deref(), now)?.unwrap_or(end - 300_000);
                if end < start {
                    bail!("--end must not be before --start");
                }
                let step = match e.step.as_deref() {
                    Some(s) => parse_duration_ms(s).context("--step")?,
                    None => ((end - start) / 1000 / 250).max(1) * 1000,
                };
                Ok((
                    Request::Range {
                        expr,
                        start,
                        end,
                        step,
                    },
                    e.common,
                ))
            }
        }
    }
}

impl Bounds {
    fn resolve(self, now: i64) -> anyhow::Result<MetadataQuery> {
        Ok(MetadataQuery {
            matchers: self.matchers,
            start_ms: opt_time(self.start.as_deref(), now).context("--start")?,
            end_ms: opt_time(self.end.as_deref(), now).context("--end")?,
            limit: self.limit,
        })
    }
}

fn opt_time(s: Option<&str>, now: i64) -> anyhow::Result<Option<i64>> {
    s.map(|s| parse_time(s, now)).transpose()
}

/// RFC3339, Unix seconds (with fractions), or `now` optionally followed by `+D`/`-D` with a
/// Prometheus duration D. Milliseconds.
pub fn parse_time(s: &str, now: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, d) = match rest.split_at(1) {
            ("-", d) => (-1, d),
            ("+", d) => (1, d),
            _ => bail!("cannot parse {s:?} to a valid timestamp"),
        };
        let ms = PromDuration::parse(d)
            .with_context(|| format!("cannot parse {s:?} to a valid timestamp"))?
            .as_millis();
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        return Ok(now.saturating_add(sign * ms));
    }
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    bail!("cannot parse {s:?} to a valid timestamp")
}

/// A Prometheus duration (`15s`, `1m30s`) or a number of seconds. Milliseconds, positive.
pub fn parse_duration_ms(s: &str) -> anyhow::Result<i64> {
    let ms = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs <= 0.0 {
            bail!("cannot parse {s:?} to a valid duration");
        }
        (secs * 1000.0).round() as i64
    } else {
        let d = PromDuration::parse(s)
            .with_context(|| format!("cannot parse {s:?} to a valid duration"))?;
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    };
    if ms <= 0 {
        bail!("cannot parse {s:?} to a valid duration");
    }
    Ok(ms)
}

/// What came back.
enum Outcome {
    Query(Answer),
    Strings(Listing<String>),
    Series(Listing<Labels>),
}

async fn execute(
    addr: &str,
    tls: Option<&trawl_proto::tls::ClientTls>,
    timeout: Option<Duration>,
    req: Request,
) -> anyhow::Result<Outcome> {
    let mut c = Client::connect_tls(addr, tls)
        .await
        .with_context(|| format!("connecting to {addr}"))?
        .with_timeout(timeout);
    Ok(match req {
        Request::Instant { expr, time } => Outcome::Query(c.instant(&expr, time).await?),
        Request::Range {
            expr,
            start,
            end,
            step,
        } => Outcome::Query(c.range(&expr, start, end, step).await?),
        Request::Labels { name: None, q } => Outcome::Strings(c.label_names(&q).await?),
        Request::Labels { name: Some(n), q } => Outcome::Strings(c.label_values(&n, &q).await?),
        Request::Series(q) => Outcome::Series(c.series(&q).await?),
    })
}

impl Outcome {
    fn json(&self) -> String {
        let mut s = match self {
            Outcome::Query(a) => json::answer_json(a),
            Outcome::Strings(l) => json::strings_json(l),
            Outcome::Series(l) => json::series_json(l),
        };
        s.push('\n');
        s
    }

    fn warnings(&self) -> Vec<String> {
        match self {
            Outcome::Query(a) => {
                let ann = &a.result.annotations;
                ann.warnings.iter().chain(&ann.infos).cloned().collect()
            }
            Outcome::Strings(l) => l.warnings.clone(),
            Outcome::Series(l) => l.warnings.clone(),
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        match self {
            Outcome::Strings(l) => {
                for s in &l.items {
                    out.push_str(s);
                    out.push('\n');
                }
            }
            Outcome::Series(l) => {
                for s in &l.items {
                    out.push_str(&metric(s));
                    out.push('\n');
                }
            }
            Outcome::Query(a) => match &a.result.value {
                Value::Scalar(v) => {
                    out = table(
                        &["SCALAR", "TIMESTAMP"],
                        vec![vec![json::format_value(*v), rfc3339(a.time_ms)]],
                    )
                }
                Value::String(s) => {
                    out = table(
                        &["STRING", "TIMESTAMP"],
                        vec![vec![s.clone(), rfc3339(a.time_ms)]],
                    )
                }
                Value::Vector(v) => {
                    if !v.is_empty() {
                        let rows = v
                            .iter()
                            .map(|s| vec![metric(&s.labels), json::format_value(s.v), rfc3339(s.t)])
                            .collect();
                        out = table(&["SERIES", "VALUE", "TIMESTAMP"], rows);
                    }
                }
                Value::Matrix(m) => {
                    for (i, s) in m.iter().enumerate() {
                        if i > 0 {
                            out.push('\n');
                        }
                        out.push_str(&metric(&s.labels));
                        out.push('\n');
                        let rows = s
                            .samples
                            .iter()
                            .map(|p| vec![rfc3339(p.t), json::format_value(p.v)])
                            .collect();
                        for line in table(&["TIMESTAMP", "VALUE"], rows).lines() {
                            out.push_str("  ");
                            out.push_str(line);
                            out.push('\n');
                        }
                    }
                }
            },
        }
        out
    }
}

/// `name{a="b", c="d"}` as Prometheus prints a metric; `{}` for no labels.
fn metric(l: &Labels) -> String {
    let name = l.get(trawl_model::METRIC_NAME).unwrap_or("");
    let rest: Vec<String> = l
        .iter()
        .filter(|l| l.name != trawl_model::METRIC_NAME)
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    if rest.is_empty() && !name.is_empty() {
        return name.to_owned();
    }
    format!("{name}{{{}}}", rest.join(", "))
}

/// UTC RFC3339, with milliseconds only when not zero.
fn rfc3339(t: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(t) {
        Some(d) if t % 1000 == 0 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => json::format_timestamp(t),
    }
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, (c, w)) in cells.into_iter().zip(&width).enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_promtool_plus_relative() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("1700000000", now).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1700000000.25", now).unwrap(), 1_700_000_000_250);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20.5+02:00", now).unwrap(),
            1_700_000_000_500
        );
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("now-1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_time("now+1m30s", now).unwrap(), now + 90_000);
        for bad in ["yesterday", "now*2", "now-", "2023-13-01T00:00:00Z", "NaN"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
        assert_eq!(parse_duration_ms("15s").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("0.5").unwrap(), 500);
        assert!(parse_duration_ms("0").is_err());
        assert!(parse_duration_ms("-1").is_err());
    }

    #[test]
    fn metrics_and_tables_render_readably() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert_eq!(metric(&l), "up{job=\"a\"}");
        assert_eq!(metric(&Labels::from_pairs([("__name__", "up")])), "up");
        assert_eq!(metric(&Labels::from_pairs([("job", "a")])), "{job=\"a\"}");
        assert_eq!(metric(&Labels::empty()), "{}");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_700_000_000_005), "2023-11-14T22:13:20.005Z");
        assert_eq!(
            table(&["A", "BB"], vec![vec!["xyz".into(), "1".into()]]),
            "A    BB\nxyz  1\n"
        );
    }
}
