//! The `Query` service over the PromQL engine.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, metadata::MetadataMap};
use trawl_model::{Labels, MatchOp, Matcher};
use trawl_promql::promql_parser::parser::{Expr, value::ValueType};
use trawl_promql::{Engine, EngineOptions, QueryResult, Queryable, Value};
use trawl_proto::v1::{
    InstantQueryRequest, LabelNamesQueryRequest, LabelValuesQueryRequest, QueryResponse,
    RangeQueryRequest, SeriesRequest, SeriesResponse, StringsResponse,
    query_server::{Query, QueryServer},
};

use crate::convert::{instant_response, matrix_batches};
use crate::{Error, LabelSource};

fn source_err(e: trawl_web::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Prometheus's lower bound of a time parameter (`minTime` in its API), in ms.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Prometheus's upper bound of a time parameter (`maxTime` in its API), in ms.
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;
/// Prometheus's cap on the points per series of a range query.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Server settings.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Engine settings; `engine.timeout` is `--query.timeout`, the longest any query runs.
    pub engine: EngineOptions,
    /// `--query.max-concurrency`: evaluations running at once; further ones queue.
    pub max_concurrency: usize,
    /// Samples per message of a streamed range result (whole series per message).
    pub range_batch_samples: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            engine: EngineOptions::default(),
            max_concurrency: 20,
            range_batch_samples: 16_384,
        }
    }
}

/// The `trawl.v1.Query` service: engine queries run on the blocking pool, at most
/// `max_concurrency` at once, each bounded by the smallest of `--query.timeout`, the
/// request's `timeout_ms` and the call's gRPC deadline.
#[derive(Clone)]
pub struct QueryService {
    queryable: Arc<dyn Queryable>,
    labels: Arc<dyn LabelSource>,
    opts: QueryOptions,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for QueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryService")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// The service ready to add to a tonic router (`Server::builder().add_service(...)`).
pub fn service(
    queryable: Arc<dyn Queryable>,
    labels: Arc<dyn LabelSource>,
    opts: QueryOptions,
) -> QueryServer<QueryService> {
    QueryServer::new(QueryService::new(queryable, labels, opts))
}

/// Serves the Query service alone on `listener` until `shutdown` resolves: what
/// `trawl standalone` runs on `--grpc.listen-address`. A tower timeout layer stops calls
/// that outlive `--query.timeout` by more than a second (the engine stops itself at the
/// timeout; this also covers the metadata calls), and each connection carries at most
/// `max_concurrency` calls at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    queryable: Arc<dyn Queryable>,
    labels: Arc<dyn LabelSource>,
    opts: QueryOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let timeout = opts.engine.timeout.saturating_add(Duration::from_secs(1));
    let per_conn = opts.max_concurrency.max(1);
    tonic::transport::Server::builder()
        .timeout(timeout)
        .concurrency_limit_per_connection(per_conn)
        .add_service(service(queryable, labels, opts))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

/// [`serve`] behind a role's gRPC limits (`trawl querier`): a global concurrency limit
/// that sheds with RESOURCE_EXHAUSTED once `--grpc.max-concurrent-requests` calls run, and
/// the shorter of `--grpc.request-timeout` and `--query.timeout` plus a second. Evaluation
/// itself still waits for one of `max_concurrency` slots inside the service.
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    queryable: Arc<dyn Queryable>,
    labels: Arc<dyn LabelSource>,
    opts: QueryOptions,
    limits: &trawl_proto::server::GrpcLimits,
    tls: Option<&tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let timeout = opts
        .engine
        .timeout
        .saturating_add(Duration::from_secs(1))
        .min(limits.request_timeout.as_std());
    trawl_proto::tls::with_tls(limits.server(), tls)?
        .timeout(timeout)
        .add_service(service(queryable, labels, opts))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

impl QueryService {
    pub fn new(
        queryable: Arc<dyn Queryable>,
        labels: Arc<dyn LabelSource>,
        opts: QueryOptions,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(opts.max_concurrency.max(1)));
        Self {
            queryable,
            labels,
            opts,
            slots,
        }
    }

    /// Runs `f` on the blocking pool once a slot is free.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::Storage("query service shut down".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Storage(format!("query task failed: {e}")))?
    }

    fn engine(&self, timeout_ms: i64, md: &MetadataMap) -> Engine {
        let mut timeout = self.opts.engine.timeout;
        if timeout_ms > 0 {
            timeout = timeout.min(Duration::from_millis(timeout_ms.unsigned_abs()));
        }
        if let Some(d) = grpc_timeout(md) {
            timeout = timeout.min(d);
        }
        Engine::new(EngineOptions {
            timeout,
            ..self.opts.engine.clone()
        })
    }

    async fn run_query(
        &self,
        engine: Engine,
        expr: Expr,
        text: String,
        range: Option<(i64, i64, i64)>,
        t: i64,
    ) -> Result<QueryResult, Error> {
        let q = self.queryable.clone();
        self.blocking(move || {
            let r = match range {
                None => engine.instant_with_source(q.as_ref(), &expr, Some(&text), t),
                Some((s, e, st)) => {
                    engine.range_with_source(q.as_ref(), &expr, Some(&text), s, e, st)
                }
            };
            r.map_err(Error::from_query)
        })
        .await
    }
}

type RangeStream = Pin<Box<dyn Stream<Item = Result<QueryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Query for QueryService {
    async fn instant(
        &self,
        req: Request<InstantQueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let engine = self.engine(req.get_ref().timeout_ms, req.metadata());
        let r = req.into_inner();
        let t = r.time_ms.unwrap_or_else(now_ms);
        let expr = parse_query(&r.query)?;
        let res = self.run_query(engine, expr, r.query, None, t).await?;
        Ok(Response::new(instant_response(res, t)))
    }

    type RangeStream = RangeStream;

    async fn range(
        &self,
        req: Request<RangeQueryRequest>,
    ) -> Result<Response<RangeStream>, Status> {
        let engine = self.engine(req.get_ref().timeout_ms, req.metadata());
        let r = req.into_inner();
        if r.end_ms < r.start_ms {
            return Err(Error::param("end", "end timestamp must not be before start time").into());
        }
        if r.step_ms <= 0 {
            return Err(Error::param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            )
            .into());
        }
        if (r.end_ms as i128 - r.start_ms as i128) / r.step_ms as i128
            > MAX_POINTS_PER_SERIES as i128
        {
            return Err(Error::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            )
            .into());
        }
        let expr = parse_query(&r.query)?;
        let vt = expr.value_type();
        if !matches!(vt, ValueType::Scalar | ValueType::Vector) {
            let name = match vt {
                ValueType::Matrix => "range vector",
                ValueType::String => "string",
                _ => "unknown",
            };
            return Err(Error::bad_data(format!(
                "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
            ))
            .into());
        }
        let range = Some((r.start_ms, r.end_ms, r.step_ms));
        let res = self
            .run_query(engine, expr, r.query, range, r.start_ms)
            .await?;
        let Value::Matrix(m) = res.value else {
            return Err(Error::Storage("range query did not return a matrix".into()).into());
        };
        let batches = matrix_batches(m, res.annotations, self.opts.range_batch_samples);
        Ok(Response::new(Box::pin(tokio_stream::iter(batches.map(Ok)))))
    }

    async fn series(
        &self,
        req: Request<SeriesRequest>,
    ) -> Result<Response<SeriesResponse>, Status> {
        let r = req.into_inner();
        if r.matchers.is_empty() {
            return Err(Error::bad_data("no match[] parameter provided").into());
        }
        let sets = parse_selectors(&r.matchers)?;
        let (mint, maxt) = time_bounds(r.start_ms, r.end_ms)?;
        let src = self.labels.clone();
        let mut all = self
            .blocking(move || {
                let mut all: Vec<Labels> = Vec::new();
                for set in &sets {
                    all.extend(src.series(set, mint, maxt).map_err(source_err)?);
                }
                Ok(all)
            })
            .await?;
        all.sort();
        all.dedup();
        let warnings = truncate(&mut all, r.limit);
        Ok(Response::new(SeriesResponse {
            series: all
                .iter()
                .map(|l| trawl_proto::v1::Labels {
                    labels: trawl_proto::labels_to_proto(l),
                })
                .collect(),
            warnings,
        }))
    }

    async fn label_names(
        &self,
        req: Request<LabelNamesQueryRequest>,
    ) -> Result<Response<StringsResponse>, Status> {
        let r = req.into_inner();
        let sets = parse_selectors(&r.matchers)?;
        let (mint, maxt) = time_bounds(r.start_ms, r.end_ms)?;
        let src = self.labels.clone();
        let values = self
            .blocking(move || {
                if sets.is_empty() {
                    return src.label_names(&[], mint, maxt).map_err(source_err);
                }
                let mut all = Vec::new();
                for set in &sets {
                    all.extend(src.label_names(set, mint, maxt).map_err(source_err)?);
                }
                Ok(all)
            })
            .await?;
        Ok(Response::new(strings(values, r.limit)))
    }

    async fn label_values(
        &self,
        req: Request<LabelValuesQueryRequest>,
    ) -> Result<Response<StringsResponse>, Status> {
        let r = req.into_inner();
        if r.name.is_empty() {
            return Err(Error::bad_data(format!("invalid label name: {:?}", r.name)).into());
        }
        let sets = parse_selectors(&r.matchers)?;
        let (mint, maxt) = time_bounds(r.start_ms, r.end_ms)?;
        let src = self.labels.clone();
        let name = r.name;
        let values = self
            .blocking(move || {
                if sets.is_empty() {
                    return src.label_values(&name, &[], mint, maxt).map_err(source_err);
                }
                let mut all = Vec::new();
                for set in &sets {
                    all.extend(
                        src.label_values(&name, set, mint, maxt)
                            .map_err(source_err)?,
                    );
                }
                Ok(all)
            })
            .await?;
        Ok(Response::new(strings(values, r.limit)))
    }
}

fn now_ms() -> i64 {
    trawl_promql::system_time_ms(&SystemTime::now())
}

/// Parse errors are `bad_data` with the parser's text alone, as Prometheus 2.42 answers them.
fn parse_query(q: &str) -> Result<Expr, Error> {
    trawl_promql::parse(q).map_err(|e| Error::bad_data(e.to_string()))
}

fn time_bounds(start: Option<i64>, end: Option<i64>) -> Result<(i64, i64), Error> {
    let mint = start.unwrap_or(MIN_TIME_MS);
    let maxt = end.unwrap_or(MAX_TIME_MS);
    if maxt < mint {
        return Err(Error::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok((mint, maxt))
}

/// Sorted, deduplicated, truncated to `limit` with Prometheus's warning.
fn strings(mut v: Vec<String>, limit: u64) -> StringsResponse {
    v.sort();
    v.dedup();
    let warnings = truncate(&mut v, limit);
    StringsResponse {
        values: v,
        warnings,
    }
}

fn truncate<T>(v: &mut Vec<T>, limit: u64) -> Vec<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        return vec!["results truncated due to limit".to_owned()];
    }
    Vec::new()
}

/// Series selectors (`match[]`) to matcher sets; a selector with `or` alternatives gives one
/// set per alternative.
pub fn parse_selectors(sel: &[String]) -> Result<Vec<Vec<Matcher>>, Error> {
    let mut out = Vec::new();
    for s in sel {
        let bad = |e: String| Error::param("match[]", e);
        let expr = trawl_promql::parse(s).map_err(|e| bad(e.to_string()))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(bad(format!(
                "1:1: parse error: unexpected expression, expected a series selector: {s}"
            )));
        };
        let conv = |m: &trawl_promql::promql_parser::label::Matcher| -> Result<Matcher, Error> {
            let op = match m.op {
                trawl_promql::promql_parser::label::MatchOp::Equal => MatchOp::Equal,
                trawl_promql::promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
                trawl_promql::promql_parser::label::MatchOp::Re(_) => MatchOp::RegexMatch,
                trawl_promql::promql_parser::label::MatchOp::NotRe(_) => MatchOp::RegexNoMatch,
            };
            Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| bad(e.to_string()))
        };
        let mut base = Vec::new();
        if let Some(n) = &vs.name {
            base.push(Matcher::equal(trawl_model::METRIC_NAME, n.clone()));
        }
        for m in &vs.matchers.matchers {
            base.push(conv(m)?);
        }
        if vs.matchers.or_matchers.is_empty() {
            out.push(base);
        } else {
            for alt in &vs.matchers.or_matchers {
                let mut set = base.clone();
                for m in alt {
                    set.push(conv(m)?);
                }
                out.push(set);
            }
        }
    }
    Ok(out)
}

/// The call's deadline from the `grpc-timeout` header (`<digits><unit>`, unit one of
/// `H M S m u n`).
fn grpc_timeout(md: &MetadataMap) -> Option<Duration> {
    let v = md.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_units() {
        let mut md = MetadataMap::new();
        for (v, d) in [
            ("2S", Duration::from_secs(2)),
            ("150m", Duration::from_millis(150)),
            ("1H", Duration::from_secs(3600)),
            ("7n", Duration::from_nanos(7)),
        ] {
            md.insert("grpc-timeout", v.parse().unwrap());
            assert_eq!(grpc_timeout(&md), Some(d));
        }
        md.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(grpc_timeout(&md), None);
    }

    #[test]
    fn selectors_become_matcher_sets() {
        let sets =
            parse_selectors(&[r#"up{job="a"}"#.into(), r#"{__name__=~"x.*"}"#.into()]).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].len(), 2);
        assert!(sets[0][0].matches("up") && sets[0][1].matches("a"));
        assert!(!sets[0][1].matches("b"));
        assert_eq!(sets[1][0].op, MatchOp::RegexMatch);
        for bad in ["rate(up[5m])", "up[5m]", "sum(", "1"] {
            let e = parse_selectors(&[bad.into()]).unwrap_err();
            assert_eq!(e.error_type(), crate::ErrorType::BadData, "{bad}");
        }
    }

    #[test]
    fn truncation_warns_only_when_it_cuts() {
        let mut v = vec![1, 2, 3];
        assert!(truncate(&mut v, 0).is_empty());
        assert!(truncate(&mut v, 3).is_empty());
        assert_eq!(truncate(&mut v, 2), vec!["results truncated due to limit"]);
        assert_eq!(v, vec![1, 2]);
    }
}
