//! `trawl-query`: the gRPC `Query` service (`proto/trawl/v1/query.proto`) over the PromQL
//! engine, and the client library behind `trawl query`.
//!
//! Job: answer instant and range queries, series, label names and label values as
//! Prometheus's HTTP API would, over protobuf: the server evaluates with
//! [`trawl_promql::Engine`] over any [`trawl_promql::Queryable`] and reads metadata from a
//! [`LabelSource`]; the [`Client`] turns answers back into the engine's result types and
//! [`json`] renders them in the HTTP API's JSON shape with `trawl-web`'s encodings (checked
//! against Prometheus 2.42), so `trawl query -o json` prints what `/api/v1/query` answers.
//!
//! Invariants:
//! - Same answers as the engine: values go on the wire bit-exact (staleness NaN, -0.0), label
//!   sets sorted; a range result streams whole series in label order, at least one message,
//!   the first carrying the warnings and infos.
//! - Errors are gRPC statuses with Prometheus's `errorType` in the `trawl-error-type`
//!   metadata and in the status details ([`ErrorType`], [`Error::to_status`]); messages are
//!   Prometheus 2.42's texts, as `trawl-web` answers them.
//! - Engine work runs on tokio's blocking pool, at most `max_concurrency` at once
//!   (`--query.max-concurrency`), each bounded by the smallest of `--query.timeout`, the
//!   request's `timeout_ms` and the call's gRPC deadline.
//!
//! Known differences from Prometheus's HTTP API:
//! - A cancelled call (client gone) does not stop an evaluation already running; the engine
//!   stops at its timeout.
//! - A range result is computed whole before streaming (the engine is not incremental), so
//!   streaming bounds message sizes, not server memory.
//! - Parse errors carry `promql-parser`'s text; `trawl-web` additionally rewrites some into
//!   Prometheus's positioned form (its helper is private to that crate).

mod client;
mod convert;
mod error;
pub mod json;
mod server;
mod source;

pub use client::{Answer, Client, Listing, MetadataQuery};
pub use convert::{ResultCollector, instant_response};
pub use error::{ERROR_TYPE_METADATA, Error, ErrorType};
pub use server::{
    MAX_POINTS_PER_SERIES, MAX_TIME_MS, MIN_TIME_MS, QueryOptions, QueryService, parse_selectors,
    serve, serve_with_limits, service,
};
pub use source::QueryableLabels;
/// The generated server type, for callers composing routers.
pub use trawl_proto::v1::query_server::QueryServer;
/// The metadata source, shared with the HTTP API.
pub use trawl_web::{LabelSource, StorageLabels};
