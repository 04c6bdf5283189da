//! The routes and handlers.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};
use trawl_model::{Labels, Matcher};
use trawl_promql::promql_parser::parser::{Expr, value::ValueType};
use trawl_promql::{Engine, QueryError, QueryResult, Value};

use crate::ApiState;
use crate::format::{format_time, write_float, write_json_str, write_timestamp};
use crate::params::{
    Form, MAX_TIME_MS, MIN_TIME_MS, go_quote, parse_duration, parse_expr, parse_limit,
    parse_match_params, parse_time, parse_time_param,
};
use crate::source::union_sorted;
use crate::targets::TargetsSnapshot;

/// Largest form body read (Go's `ParseForm` limit).
const MAX_FORM_BYTES: usize = 10 << 20;
/// Warnings and infos shown per response before the rest is summarised (Prometheus's limit).
const MAX_ANNOTATIONS: usize = 10;

/// The whole HTTP surface: `/api/v1/*`, `/-/healthy`, `/-/ready`, `/-/reload`, `/metrics`.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/labels", get(label_names).post(label_names))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/metadata", get(targets_metadata))
        .route("/api/v1/scrape_pools", get(scrape_pools))
        .route("/api/v1/alertmanagers", get(alertmanagers))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/status/config", get(status_config))
        .route("/api/v1/status/buildinfo", get(status_buildinfo))
        .route("/api/v1/status/flags", get(status_flags))
        .route("/api/v1/status/runtimeinfo", get(status_runtimeinfo))
        .route("/api/v1/status/tsdb", get(status_tsdb))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_ready));
    Router::new()
        .merge(api)
        .route("/api/v1/status/walreplay", get(status_walreplay))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/-/quit", post(quit).put(quit))
        .route("/metrics", get(metrics))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------
// Responses

/// Prometheus's API error classes that Trawl produces (`canceled`, `not_found` and
/// `unavailable` have no cause here yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Internal,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
struct ApiError {
    typ: ErrorType,
    msg: String,
}

impl ApiError {
    fn bad_data(msg: impl Into<String>) -> Self {
        Self {
            typ: ErrorType::BadData,
            msg: msg.into(),
        }
    }

    /// Prometheus's `invalidParamError`.
    fn param(name: &str, err: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {}: {err}", go_quote(name)))
    }

    fn from_query(e: QueryError) -> Self {
        let typ = match &e {
            QueryError::Parse(_) => ErrorType::BadData,
            QueryError::Timeout(_) => ErrorType::Timeout,
            QueryError::Storage(_) => ErrorType::Internal,
            QueryError::Eval(_) | QueryError::TooManySamples(_) => ErrorType::Execution,
        };
        Self {
            typ,
            msg: e.to_string(),
        }
    }

    fn from_source(e: crate::Error) -> Self {
        Self {
            typ: ErrorType::Execution,
            msg: e.to_string(),
        }
    }
}

/// A successful answer: `data` as raw JSON, plus annotations.
#[derive(Debug, Default)]
struct Success {
    data: String,
    warnings: Vec<String>,
    infos: Vec<String>,
}

impl Success {
    fn json(v: &impl serde::Serialize) -> Self {
        Self {
            data: serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned()),
            ..Self::default()
        }
    }
}

/// What a handler returns; `Ok(None)` is Prometheus's `204 No Content`.
type ApiResult = Result<Option<Success>, ApiError>;

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn respond(res: ApiResult) -> Response {
    match res {
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(s)) => {
            let mut body = String::with_capacity(s.data.len() + 64);
            body.push_str("{\"status\":\"success\",\"data\":");
            body.push_str(&s.data);
            write_annotations(&mut body, "warnings", &s.warnings, "warning");
            write_annotations(&mut body, "infos", &s.infos, "info");
            body.push('}');
            json_response(StatusCode::OK, body)
        }
        Err(e) => {
            let mut body = String::from("{\"status\":\"error\",\"errorType\":");
            write_json_str(&mut body, e.typ.as_str());
            body.push_str(",\"error\":");
            write_json_str(&mut body, &e.msg);
            body.push('}');
            json_response(e.typ.status(), body)
        }
    }
}

/// Writes `,"key":[...]` when `list` is not empty, at most [`MAX_ANNOTATIONS`] entries and a
/// count of the omitted ones, as Prometheus does.
fn write_annotations(out: &mut String, key: &str, list: &[String], kind: &str) {
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
        write_json_str(
            out,
            &format!(
                "{} more {kind} annotations omitted",
                list.len() - MAX_ANNOTATIONS
            ),
        );
    }
    out.push(']');
}

fn text_response(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = (status, body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// What wraps every `/api/v1/*` route: the readiness gate, `OPTIONS` preflight answers and
/// CORS headers (Prometheus's default `--web.cors.origin=".*"`).
async fn require_ready(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    if !st.ready.load(Ordering::Acquire) {
        return not_ready();
    }
    let has_origin = req.headers().contains_key(header::ORIGIN);
    let mut res = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    if has_origin {
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Date"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    res
}

fn not_ready() -> Response {
    let mut r = text_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    r.headers_mut()
        .insert("X-Prometheus-Stopping", HeaderValue::from_static("false"));
    r
}

/// Reads the form values of a request: the URL query plus, for POST/PUT with a form
/// content type, the body (body values first, as Go's `r.Form`).
async fn read_form(req: Request) -> Result<Form, ApiError> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().map(str::to_owned);
    let is_form = (parts.method == Method::POST
        || parts.method == Method::PUT
        || parts.method == Method::PATCH)
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
            .unwrap_or(false);
    let body: Option<Bytes> = if is_form {
        match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => Some(b),
            Err(e) => {
                return Err(ApiError::bad_data(format!(
                    "error parsing form values: {e}"
                )));
            }
        }
    } else {
        None
    };
    Ok(Form::parse(query.as_deref(), body.as_deref()))
}

/// Runs a handler over the request's form.
async fn with_form<F, Fut>(req: Request, f: F) -> Response
where
    F: FnOnce(Form) -> Fut,
    Fut: std::future::Future<Output = ApiResult>,
{
    match read_form(req).await {
        Ok(form) => respond(f(form).await),
        Err(e) => respond(Err(e)),
    }
}

/// Runs blocking work (engine, storage) off the reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ApiError {
            typ: ErrorType::Internal,
            msg: format!("query failed: {e}"),
        }),
    }
}

// ---------------------------------------------------------------------------------------
// PromQL

/// Options shared by instant and range queries.
struct QueryOpts {
    engine: Engine,
    stats: bool,
    /// Series kept in a vector or matrix result (0: all).
    limit: usize,
}

fn query_opts(st: &ApiState, form: &Form) -> Result<QueryOpts, ApiError> {
    let limit = parse_limit(form.get("limit")).map_err(|e| ApiError::param("limit", e))?;
    let mut opts = st.engine.clone();
    let to = form.get("timeout");
    if !to.is_empty() {
        let ns = parse_duration(to).map_err(|e| ApiError::param("timeout", e))?;
        let d = std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
        opts.timeout = opts.timeout.min(d);
    }
    let lb = form.get("lookback_delta");
    if !lb.is_empty() {
        let ns = parse_duration(lb).map_err(|e| {
            ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
        })?;
        // Zero or less keeps the engine's default, as in Prometheus.
        if ns > 0 {
            opts.lookback_delta = std::time::Duration::from_nanos(ns.unsigned_abs());
        }
    }
    Ok(QueryOpts {
        engine: Engine::new(opts),
        stats: !form.get("stats").is_empty(),
        limit,
    })
}

/// Runs a query on the blocking pool once one of the state's query slots is free; waiting
/// for a slot counts against the query's timeout, as Prometheus's query queue does.
async fn run_query(
    st: &ApiState,
    opts: &QueryOpts,
    f: impl FnOnce() -> Result<QueryResult, QueryError> + Send + 'static,
) -> Result<QueryResult, ApiError> {
    let timeout = opts.engine.options().timeout;
    let permit = match tokio::time::timeout(timeout, st.query_slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => {
            return Err(ApiError {
                typ: ErrorType::Internal,
                msg: "query queue closed".to_owned(),
            });
        }
        Err(_) => return Err(ApiError::from_query(QueryError::Timeout("query queue"))),
    };
    blocking(move || {
        let r = f().map_err(ApiError::from_query);
        drop(permit);
        r
    })
    .await
}

/// Prometheus's `limit` on query results: the first `limit` series of a vector or matrix.
fn limit_result(res: &mut QueryResult, limit: usize) -> bool {
    if limit == 0 {
        return false;
    }
    match &mut res.value {
        Value::Vector(v) if v.len() > limit => {
            v.truncate(limit);
            true
        }
        Value::Matrix(m) if m.len() > limit => {
            m.truncate(limit);
            true
        }
        _ => false,
    }
}

fn parse_query_param(q: &str) -> Result<Expr, ApiError> {
    parse_expr(q).map_err(|e| ApiError::param("query", e))
}

async fn query(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        let now = (st.now)();
        let t = parse_time_param(&form, "time", now).map_err(|e| ApiError::param("time", e))?;
        let opts = query_opts(&st, &form)?;
        let src = form.get("query").to_owned();
        let expr = parse_query_param(&src)?;
        let q = st.queryable.clone();
        let started = Instant::now();
        let engine = opts.engine.clone();
        let mut res = run_query(&st, &opts, move || {
            engine.instant_with_source(q.as_ref(), &expr, Some(&src), t)
        })
        .await?;
        let elapsed = started.elapsed().as_secs_f64();
        let truncated = limit_result(&mut res, opts.limit);
        // Prometheus stamps every element of an instant vector with the evaluation time,
        // whatever the time of the sample it came from.
        if let Value::Vector(v) = &mut res.value {
            for s in v {
                s.t = t;
            }
        }
        let mut ok = query_success(&res, t, opts.stats.then_some(elapsed));
        if truncated {
            ok.warnings.push(TRUNCATED.to_owned());
        }
        Ok(Some(ok))
    })
    .await
}

async fn query_range(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        let start = parse_time(form.get("start")).map_err(|e| ApiError::param("start", e))?;
        let end = parse_time(form.get("end")).map_err(|e| ApiError::param("end", e))?;
        if end < start {
            return Err(ApiError::param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step_ns =
            parse_duration(form.get("step")).map_err(|e| ApiError::param("step", e))?;
        if step_ns <= 0 {
            return Err(ApiError::param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        // Prometheus's safety limit on points per series (Go duration division).
        if (i128::from(end) - i128::from(start)) * 1_000_000 / i128::from(step_ns) > 11_000 {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        // The engine works in milliseconds; a sub-millisecond step that passed the check
        // above can only span a range shorter than 11 ms.
        let step = (step_ns / 1_000_000).max(1);
        let opts = query_opts(&st, &form)?;
        let src = form.get("query").to_owned();
        // Unlike the instant endpoint, Prometheus reports range-query construction errors
        // (parse, result type) without naming the parameter.
        let expr =
            parse_expr(&src).map_err(ApiError::bad_data)?;
        if matches!(expr.value_type(), ValueType::Matrix | ValueType::String) {
            let tn = if expr.value_type() == ValueType::String {
                "string"
            } else {
                "range vector"
            };
            return Err(ApiError::bad_data(format!(
                "invalid expression type \"{tn}\" for range query, must be Scalar or instant Vector"
            )));
        }
        let q = st.queryable.clone();
        let started = Instant::now();
        let engine = opts.engine.clone();
        let mut res = run_query(&st, &opts, move || {
            engine.range_with_source(q.as_ref(), &expr, Some(&src), start, end, step)
        })
        .await?;
        let elapsed = started.elapsed().as_secs_f64();
        let truncated = limit_result(&mut res, opts.limit);
        let mut ok = query_success(&res, end, opts.stats.then_some(elapsed));
        if truncated {
            ok.warnings.push(TRUNCATED.to_owned());
        }
        Ok(Some(ok))
    })
    .await
}

/// `{"resultType":..,"result":..[,"stats":..]}` with Prometheus's encodings.
fn query_success(res: &QueryResult, t: i64, stats: Option<f64>) -> Success {
    let mut out = String::new();
    out.push_str("{\"resultType\":\"");
    out.push_str(res.value.type_name());
    out.push_str("\",\"result\":");
    let mut samples = 0usize;
    match &res.value {
        // Prometheus marshals scalars and strings with Go's generic encoder: the time as a
        // plain float of seconds and a scalar's value in 'f' format (no exponent), unlike
        // vector and matrix points.
        Value::Scalar(v) => {
            samples = 1;
            let _ = write!(out, "[{},\"", t as f64 / 1000.0);
            if v.is_nan() {
                out.push_str("NaN");
            } else if v.is_infinite() {
                out.push_str(if *v > 0.0 { "+Inf" } else { "-Inf" });
            } else {
                let _ = write!(out, "{v}");
            }
            out.push_str("\"]");
        }
        Value::String(s) => {
            let _ = write!(out, "[{},", t as f64 / 1000.0);
            write_json_str(&mut out, s);
            out.push(']');
        }
        Value::Vector(v) => {
            samples = v.len();
            out.push('[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                write_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(m) => {
            out.push('[');
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, p.t, p.v);
                }
                samples += s.samples.len();
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    if let Some(secs) = stats {
        // Trawl's engine does not break its time down: every phase but evaluation is 0.
        let _ = write!(
            out,
            ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{secs},\"resultSortTime\":0,\"queryPreparationTime\":0,\"innerEvalTime\":{secs},\"execQueueTime\":0,\"execTotalTime\":{secs}}},\"samples\":{{\"totalQueryableSamples\":{samples},\"peakSamples\":{samples}}}}}"
        );
    }
    out.push('}');
    Success {
        data: out,
        warnings: res.annotations.warnings.clone(),
        infos: res.annotations.infos.clone(),
    }
}

fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    write_float(out, v);
    out.push_str("\"]");
}

fn write_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, lb) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, &lb.name);
        out.push(':');
        write_json_str(out, &lb.value);
    }
    out.push('}');
}

async fn query_exemplars(req: Request) -> Response {
    with_form(req, |form| async move {
        let start = parse_time_param(&form, "start", MIN_TIME_MS)
            .map_err(|e| ApiError::param("start", e))?;
        let end =
            parse_time_param(&form, "end", MAX_TIME_MS).map_err(|e| ApiError::param("end", e))?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start timestamp",
            ));
        }
        let expr = parse_expr(form.get("query")).map_err(ApiError::bad_data)?;
        if !has_selector(&expr) {
            return Ok(None);
        }
        // No exemplar storage: every selector has no exemplars.
        Ok(Some(Success::json(&json!([]))))
    })
    .await
}

fn has_selector(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Aggregate(a) => has_selector(&a.expr) || a.param.as_deref().is_some_and(has_selector),
        Expr::Unary(u) => has_selector(&u.expr),
        Expr::Binary(b) => has_selector(&b.lhs) || has_selector(&b.rhs),
        Expr::Paren(p) => has_selector(&p.expr),
        Expr::Subquery(s) => has_selector(&s.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| has_selector(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => false,
        Expr::Extension(_) => true,
    }
}

async fn format_query(req: Request) -> Response {
    with_form(req, |form| async move {
        let expr = parse_query_param(form.get("query"))?;
        Ok(Some(Success::json(&expr.prettify())))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Metadata

/// `start`, `end` (default: all time), `limit` and `match[]` of the metadata endpoints.
struct MetaParams {
    start: i64,
    end: i64,
    limit: usize,
    sets: Vec<Vec<Matcher>>,
}

fn meta_params(form: &Form) -> Result<MetaParams, ApiError> {
    let limit = parse_limit(form.get("limit")).map_err(|e| ApiError::param("limit", e))?;
    let start =
        parse_time_param(form, "start", MIN_TIME_MS).map_err(|e| ApiError::param("start", e))?;
    let end = parse_time_param(form, "end", MAX_TIME_MS).map_err(|e| ApiError::param("end", e))?;
    let sets =
        parse_match_params(&form.all("match[]")).map_err(|e| ApiError::param("match[]", e))?;
    Ok(MetaParams {
        start,
        end,
        limit,
        sets,
    })
}

const TRUNCATED: &str = "results truncated due to limit";

fn truncate<T>(v: &mut Vec<T>, limit: usize) -> Vec<String> {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        vec![TRUNCATED.to_owned()]
    } else {
        Vec::new()
    }
}

async fn label_names(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        let p = meta_params(&form)?;
        let src = st.labels.clone();
        let mut names = blocking(move || {
            let lists = if p.sets.is_empty() {
                vec![src.label_names(&[], p.start, p.end)]
            } else {
                p.sets
                    .iter()
                    .map(|m| src.label_names(m, p.start, p.end))
                    .collect()
            };
            let lists: Vec<Vec<String>> = lists
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(ApiError::from_source)?;
            Ok(union_sorted(lists))
        })
        .await?;
        let warnings = truncate(&mut names, p.limit);
        Ok(Some(Success {
            warnings,
            ..Success::json(&names)
        }))
    })
    .await
}

/// Undoes Prometheus's `U__` escaping of label names in URL paths: `_` stays for `__`, and
/// `_<hex>_` is the code point.
fn unescape_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("U__")?;
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            if !(c.is_ascii_alphanumeric()) {
                return None;
            }
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return None,
            }
        }
        let cp = u32::from_str_radix(&hex, 16).ok()?;
        out.push(char::from_u32(cp)?);
    }
    Some(out)
}

async fn label_values(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    with_form(req, |form| async move {
        let name = if name.starts_with("U__") {
            unescape_name(&name).unwrap_or(name)
        } else {
            name
        };
        if name.is_empty() {
            return Err(ApiError::bad_data(format!(
                "invalid label name: {}",
                go_quote(&name)
            )));
        }
        let p = meta_params(&form)?;
        let src = st.labels.clone();
        let mut vals = blocking(move || {
            let lists = if p.sets.is_empty() {
                vec![src.label_values(&name, &[], p.start, p.end)]
            } else {
                p.sets
                    .iter()
                    .map(|m| src.label_values(&name, m, p.start, p.end))
                    .collect()
            };
            let lists: Vec<Vec<String>> = lists
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(ApiError::from_source)?;
            Ok(union_sorted(lists))
        })
        .await?;
        let warnings = truncate(&mut vals, p.limit);
        Ok(Some(Success {
            warnings,
            ..Success::json(&vals)
        }))
    })
    .await
}

async fn series(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        if form.all("match[]").is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let p = meta_params(&form)?;
        let src = st.labels.clone();
        let mut all = blocking(move || {
            let mut all: Vec<Labels> = Vec::new();
            for m in &p.sets {
                all.extend(
                    src.series(m, p.start, p.end)
                        .map_err(ApiError::from_source)?,
                );
            }
            if p.sets.len() > 1 {
                all.sort();
                all.dedup();
            }
            Ok(all)
        })
        .await?;
        let warnings = truncate(&mut all, p.limit);
        let mut out = String::from("[");
        for (i, l) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_labels(&mut out, l);
        }
        out.push(']');
        Ok(Some(Success {
            data: out,
            warnings,
            infos: Vec::new(),
        }))
    })
    .await
}

/// Prometheus's metadata limits: empty means none (-1); not a number is its own error.
fn metadata_limit(form: &Form, name: &str) -> Result<i64, ApiError> {
    let s = form.get(name);
    if s.is_empty() {
        return Ok(-1);
    }
    s.parse::<i64>()
        .map_err(|_| ApiError::bad_data(format!("{name} must be a number")))
}

async fn metadata(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        let limit = metadata_limit(&form, "limit")?;
        let per_metric = metadata_limit(&form, "limit_per_metric")?;
        let metric = form.get("metric");
        // Unique (type, help, unit) per metric over all targets, in first-seen order.
        let mut by_metric: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
        for m in st.targets.metadata() {
            if !metric.is_empty() && m.metric != metric {
                continue;
            }
            let list = by_metric.entry(m.metric).or_default();
            if per_metric > 0 && list.len() as i64 >= per_metric {
                continue;
            }
            let md = (m.typ, m.help, m.unit);
            if !list.contains(&md) {
                list.push(md);
            }
        }
        let mut res = serde_json::Map::new();
        for (name, list) in by_metric {
            if limit >= 0 && res.len() as i64 >= limit {
                break;
            }
            let arr: Vec<Json> = list
                .into_iter()
                .map(|(t, h, u)| json!({"type": t, "help": h, "unit": u}))
                .collect();
            res.insert(name, Json::Array(arr));
        }
        Ok(Some(Success::json(&Json::Object(res))))
    })
    .await
}

async fn targets_metadata(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        let limit = metadata_limit(&form, "limit")?;
        let mt = form.get("match_target");
        let sets = if mt.is_empty() {
            Vec::new()
        } else {
            parse_match_params(&[mt]).map_err(|e| ApiError::param("match_target", e))?
        };
        let metric = form.get("metric");
        let mut res = Vec::new();
        for m in st.targets.metadata() {
            if limit >= 0 && res.len() as i64 >= limit {
                break;
            }
            let target_ok = sets.is_empty()
                || sets.iter().any(|set| {
                    set.iter()
                        .all(|mm| mm.matches(m.target.get_or_empty(&mm.name)))
                });
            if !target_ok || (!metric.is_empty() && m.metric != metric) {
                continue;
            }
            let mut o = serde_json::Map::new();
            o.insert("target".into(), labels_json(&m.target));
            // Prometheus leaves the metric name out when the request named it.
            if metric.is_empty() {
                o.insert("metric".into(), Json::String(m.metric));
            }
            o.insert("type".into(), Json::String(m.typ));
            o.insert("help".into(), Json::String(m.help));
            o.insert("unit".into(), Json::String(m.unit));
            res.push(Json::Object(o));
        }
        Ok(Some(Success::json(&res)))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Targets, rules, status

async fn targets(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        let pool = form.get("scrapePool").to_owned();
        let state = form.get("state").to_ascii_lowercase();
        let any = state.is_empty() || state == "any";
        let show_active = any || state == "active";
        let show_dropped = any || state == "dropped";
        let snap = st.targets.snapshot();
        Ok(Some(Success::json(&targets_json(
            &snap,
            &pool,
            show_active,
            show_dropped,
        ))))
    })
    .await
}

fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|lb| (lb.name.clone(), Json::String(lb.value.clone())))
            .collect(),
    )
}

fn duration_json(secs: f64) -> Json {
    serde_json::Number::from_f64(secs)
        .map(Json::Number)
        .unwrap_or(Json::Null)
}

fn targets_json(snap: &TargetsSnapshot, pool: &str, active: bool, dropped: bool) -> Json {
    let mut res = serde_json::Map::new();
    let mut act: Vec<&crate::ActiveTarget> = Vec::new();
    if active {
        act = snap
            .active
            .iter()
            .filter(|t| pool.is_empty() || t.scrape_pool == pool)
            .collect();
        // Pools in name order; targets keep their order within a pool.
        act.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
    }
    res.insert(
        "activeTargets".into(),
        Json::Array(
            act.iter()
                .map(|t| {
                    json!({
                        "discoveredLabels": labels_json(&t.discovered_labels),
                        "labels": labels_json(&t.labels),
                        "scrapePool": t.scrape_pool,
                        "scrapeUrl": t.scrape_url,
                        "globalUrl": t.global_url,
                        "lastError": t.last_error,
                        "lastScrape": format_time(t.last_scrape),
                        "lastScrapeDuration": duration_json(t.last_scrape_duration),
                        "health": t.health.as_str(),
                        "scrapeInterval": t.scrape_interval,
                        "scrapeTimeout": t.scrape_timeout,
                    })
                })
                .collect(),
        ),
    );
    let mut drop: Vec<&crate::DroppedTarget> = Vec::new();
    let mut counts = Json::Null;
    if dropped {
        drop = snap
            .dropped
            .iter()
            .filter(|t| pool.is_empty() || t.scrape_pool == pool)
            .collect();
        drop.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
        let mut c: BTreeMap<String, usize> = BTreeMap::new();
        for t in &snap.dropped {
            if !snap.dropped_counts.contains_key(&t.scrape_pool) {
                *c.entry(t.scrape_pool.clone()).or_default() += 1;
            }
        }
        c.extend(snap.dropped_counts.iter().map(|(k, v)| (k.clone(), *v)));
        counts = json!(c);
    }
    res.insert(
        "droppedTargets".into(),
        Json::Array(
            drop.iter()
                .map(|t| {
                    json!({
                        "discoveredLabels": labels_json(&t.discovered_labels),
                        "scrapePool": t.scrape_pool,
                    })
                })
                .collect(),
        ),
    );
    res.insert("droppedTargetCounts".into(), counts);
    Json::Object(res)
}

async fn scrape_pools(State(st): State<ApiState>) -> Response {
    let mut pools = st.targets.snapshot().scrape_pools;
    pools.sort();
    pools.dedup();
    respond(Ok(Some(Success::json(&json!({ "scrapePools": pools })))))
}

async fn alertmanagers() -> Response {
    respond(Ok(Some(Success::json(
        &json!({"activeAlertmanagers": [], "droppedAlertmanagers": []}),
    ))))
}

async fn rules(req: Request) -> Response {
    with_form(req, |form| async move {
        let typ = form.get("type").to_ascii_lowercase();
        if !typ.is_empty() && typ != "alert" && typ != "record" {
            return Err(ApiError::param(
                "type",
                format!("not supported value {}", go_quote(&typ)),
            ));
        }
        Ok(Some(Success::json(&json!({ "groups": [] }))))
    })
    .await
}

async fn alerts() -> Response {
    respond(Ok(Some(Success::json(&json!({ "alerts": [] })))))
}

async fn status_config(State(st): State<ApiState>) -> Response {
    let c = st.status.config();
    respond(Ok(Some(Success::json(&json!({ "yaml": c.yaml })))))
}

async fn status_buildinfo(State(st): State<ApiState>) -> Response {
    let b = &st.status.build;
    respond(Ok(Some(Success::json(&json!({
        "version": b.version,
        "revision": b.revision,
        "branch": b.branch,
        "buildUser": b.build_user,
        "buildDate": b.build_date,
        "goVersion": b.go_version,
    })))))
}

async fn status_flags(State(st): State<ApiState>) -> Response {
    respond(Ok(Some(Success::json(&st.status.flags))))
}

async fn status_runtimeinfo(State(st): State<ApiState>) -> Response {
    let s = &st.status;
    let c = s.config();
    let procs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let tasks = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks())
        .unwrap_or(0);
    respond(Ok(Some(Success::json(&json!({
        "startTime": format_time(Some(s.start_time)),
        "CWD": s.cwd,
        "hostname": s.hostname,
        "serverTime": format_time(Some(std::time::SystemTime::now())),
        "reloadConfigSuccess": c.reload_success,
        "lastConfigTime": format_time(Some(c.last_config_time)),
        "corruptionCount": 0,
        "goroutineCount": tasks,
        "GOMAXPROCS": procs,
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": s.storage_retention,
    })))))
}

async fn status_tsdb(State(st): State<ApiState>, req: Request) -> Response {
    with_form(req, |form| async move {
        let limit = match form.get("limit") {
            "" => 10,
            s => match s.parse::<i64>() {
                Ok(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => {
                    return Err(ApiError::bad_data("limit must be a positive number"));
                }
            },
        };
        let src = st.labels.clone();
        let head = st.status.tsdb.clone();
        let data = blocking(move || {
            let all = src
                .series(
                    &[
                        Matcher::new(trawl_model::MatchOp::RegexMatch, "__name__", ".+")
                            .map_err(|e| ApiError::bad_data(e.to_string()))?,
                    ],
                    MIN_TIME_MS,
                    MAX_TIME_MS,
                )
                .map_err(ApiError::from_source)?;
            Ok(tsdb_json(&all, head.map(|f| f()), limit))
        })
        .await?;
        Ok(Some(Success::json(&data)))
    })
    .await
}

fn tsdb_json(all: &[Labels], head: Option<crate::TsdbStatus>, limit: usize) -> Json {
    let mut by_metric: BTreeMap<&str, u64> = BTreeMap::new();
    let mut values_by_name: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut bytes_by_name: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_pair: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for l in all {
        *by_metric.entry(l.metric_name()).or_default() += 1;
        for lb in l.iter() {
            if values_by_name
                .entry(&lb.name)
                .or_default()
                .insert(&lb.value)
            {
                *bytes_by_name.entry(&lb.name).or_default() += lb.value.len() as u64;
            }
            *by_pair.entry((&lb.name, &lb.value)).or_default() += 1;
        }
    }
    fn top(mut v: Vec<(String, u64)>, limit: usize) -> Json {
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        Json::Array(
            v.into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    }
    let head = head.unwrap_or_default();
    let num_pairs = by_pair.len() as u64;
    json!({
        "headStats": {
            "numSeries": if head.num_series > 0 { head.num_series } else { all.len() as u64 },
            "numLabelPairs": if head.num_label_pairs > 0 { head.num_label_pairs } else { num_pairs },
            "chunkCount": head.chunk_count,
            "minTime": head.min_time,
            "maxTime": head.max_time,
        },
        "seriesCountByMetricName": top(by_metric.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), limit),
        "labelValueCountByLabelName": top(values_by_name.into_iter().map(|(k, v)| (k.to_owned(), v.len() as u64)).collect(), limit),
        "memoryInBytesByLabelName": top(bytes_by_name.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), limit),
        "seriesCountByLabelValuePair": top(by_pair.into_iter().map(|((n, v), c)| (format!("{n}={v}"), c)).collect(), limit),
    })
}

/// Trawl replays no WAL at start-up that the API could wait for: always done.
async fn status_walreplay() -> Response {
    respond(Ok(Some(Success::json(
        &json!({"min": 0, "max": 0, "current": 0}),
    ))))
}

// ---------------------------------------------------------------------------------------
// Lifecycle and self-metrics

async fn healthy() -> Response {
    text_response(StatusCode::OK, "Prometheus Server is Healthy.\n")
}

async fn ready(State(st): State<ApiState>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        text_response(StatusCode::OK, "Prometheus Server is Ready.\n")
    } else {
        not_ready()
    }
}

async fn reload(State(st): State<ApiState>) -> Response {
    let Some(f) = st.reload.clone() else {
        return text_response(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    };
    match tokio::task::spawn_blocking(move || f()).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        ),
        Err(e) => text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        ),
    }
}

async fn quit(State(st): State<ApiState>) -> Response {
    let Some(f) = st.quit.clone() else {
        return text_response(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    };
    f();
    text_response(StatusCode::OK, "Requesting termination... Goodbye!")
}

async fn metrics(State(st): State<ApiState>) -> Response {
    let body = (st.metrics)();
    let mut r = (StatusCode::OK, Body::from(body)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_u_names() {
        assert_eq!(unescape_name("U__foo_2e_bar").as_deref(), Some("foo.bar"));
        assert_eq!(unescape_name("U__a__b").as_deref(), Some("a_b"));
        assert_eq!(unescape_name("U__x_zz_"), None);
        assert_eq!(unescape_name("plain"), None);
    }

    #[test]
    fn annotations_are_capped() {
        let list: Vec<String> = (0..12).map(|i| format!("w{i}")).collect();
        let mut out = String::new();
        write_annotations(&mut out, "warnings", &list, "warning");
        let v: Json = serde_json::from_str(&format!("{{{}}}", &out[1..])).unwrap();
        let arr = v["warnings"].as_array().unwrap();
        assert_eq!(arr.len(), 11);
        assert_eq!(arr[10], "2 more warning annotations omitted");
    }
}
