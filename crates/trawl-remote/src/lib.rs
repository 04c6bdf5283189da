//! `trawl-remote`: Prometheus's remote write 1.0 receiver (`POST /api/v1/write`) and remote
//! read endpoint (`POST /api/v1/read`) over Trawl's storage traits.
//!
//! The crate holds the protocol messages ([`proto`], written with `prost` derives from the
//! public protocol), pure decode/encode and ingest/read functions ([`write`], [`read`],
//! [`xor`]) and an axum [`router`] that wires them to HTTP. It opens no sockets itself.
//!
//! Invariants and Prometheus behaviour followed (Prometheus's receiver as of 2.42–3.x for
//! remote write 1.0):
//! - One write request is appended through one [`trawl_storage::Appender`] and one commit.
//! - Answers: 204 on success; 400 for undecodable bodies and for samples the store refuses
//!   (out of order, out of bounds/too old, duplicate timestamp with another value, too far in
//!   the future) with the first refused sample's error text; 415 for a remote-write 2.0 (or
//!   otherwise unknown) content type or an encoding other than snappy; 5xx only when the
//!   store fails, after rolling the request back, so the sender retries.
//! - Samples not newer than an earlier sample of the same series in the same request are
//!   dropped without error, as Prometheus's head drops them at commit.
//! - Series without a metric name, with an empty or repeated label name are skipped and the
//!   request still succeeds (Prometheus 3.x; 2.42 answered 500 for some of these).
//! - Exemplars, metadata and native histograms are accepted and ignored.
//! - Reads: response type negotiated from the client's list (`SAMPLES` or
//!   `STREAMED_XOR_CHUNKS`, first supported wins, `SAMPLES` when the list is empty); query
//!   ranges are inclusive; the sample limit spans the whole request.
//!
//! Deliberate difference: when some samples of a request are refused, Prometheus rolls the
//! whole request back (its append errors surface before commit); Trawl's store applies the
//! append rules at commit, so the accepted samples of the request stay stored. The status
//! code and error text are Prometheus's.

pub mod proto;
pub mod read;
pub mod write;
pub mod xor;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use trawl_storage::{Storage, StorageError};

use crate::proto::ResponseType;

/// The crate's error type; [`RemoteError::status`] is the HTTP status Prometheus answers.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The body is not valid snappy or protobuf.
    #[error("{0}")]
    Decode(String),
    /// Content type or encoding not accepted.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// None of the requested read response types is supported.
    #[error("{0}")]
    Negotiation(String),
    /// A samples the store refused (write); the text is Prometheus's.
    #[error("{0}")]
    Rejected(String),
    /// A read matcher that does not compile.
    #[error("{0}")]
    BadMatcher(String),
    /// A read would return more samples than allowed.
    #[error("exceeded sample limit ({0})")]
    TooManySamples(usize),
    /// The write endpoint is disabled.
    #[error("remote write receiver needs to be enabled with --web.enable-remote-write-receiver")]
    WriteDisabled,
    /// The store failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// A blocking task failed.
    #[error("{0}")]
    Internal(String),
}

impl RemoteError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            RemoteError::Decode(_)
            | RemoteError::Negotiation(_)
            | RemoteError::Rejected(_)
            | RemoteError::TooManySamples(_) => 400,
            RemoteError::WriteDisabled => 404,
            RemoteError::UnsupportedMediaType(_) => 415,
            // Prometheus answers an invalid read matcher (bad regex) with 500.
            RemoteError::BadMatcher(_) | RemoteError::Storage(_) | RemoteError::Internal(_) => 500,
        }
    }
}

impl IntoResponse for RemoteError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Go's http.Error: text/plain, nosniff, message plus newline.
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// Limits and switches of the endpoints; defaults are Prometheus's where it has one.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Serve `/api/v1/write` (Prometheus: `--web.enable-remote-write-receiver`); when false
    /// it answers 404.
    pub enable_write: bool,
    /// Largest request body accepted (compressed), in bytes.
    pub max_body_bytes: usize,
    /// Largest decompressed request, in bytes.
    pub max_decoded_bytes: usize,
    /// `--storage.remote.read-sample-limit` (0 = unlimited).
    pub read_sample_limit: usize,
    /// Target size of one streamed read frame.
    pub max_frame_bytes: usize,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            enable_write: true,
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 256 << 20,
            read_sample_limit: 50_000_000,
            max_frame_bytes: 1 << 20,
        }
    }
}

/// What the handlers share: the store and the options.
#[derive(Clone)]
pub struct RemoteState {
    storage: Arc<dyn Storage>,
    opts: RemoteOptions,
}

impl RemoteState {
    /// State over `storage`.
    pub fn new(storage: Arc<dyn Storage>, opts: RemoteOptions) -> Self {
        Self { storage, opts }
    }

    /// The store.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
}

impl fmt::Debug for RemoteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteState")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/write` and `POST /api/v1/read`.
pub fn router(state: RemoteState) -> Router {
    let limit = state.opts.max_body_bytes;
    Router::new()
        .route("/api/v1/write", post(write_handler))
        .route("/api/v1/read", post(read_handler))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RemoteError> + Send + 'static,
) -> Result<T, RemoteError> {
    // Storage calls block (RocksDB I/O), so they leave the async workers.
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RemoteError::Internal(e.to_string()))?
}

async fn write_handler(
    State(st): State<RemoteState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, RemoteError> {
    if !st.opts.enable_write {
        return Err(RemoteError::WriteDisabled);
    }
    let checked =
        write::check_content_type(header_str(&headers, header::CONTENT_TYPE)).and_then(|()| {
            write::check_content_encoding(header_str(&headers, header::CONTENT_ENCODING))
        });
    if let Err(e) = checked {
        tracing::error!(err = %e, "Error decoding remote write request");
        return Err(e);
    }
    let max = st.opts.max_decoded_bytes;
    let storage = Arc::clone(&st.storage);
    blocking(move || {
        let req = write::decode_write_request(&body, max).inspect_err(|e| {
            tracing::error!(err = %e, "Error decoding remote write request");
        })?;
        let report = write::ingest(storage.as_ref(), &req).map_err(|e| {
            tracing::error!(err = %e, "Error appending remote write");
            RemoteError::Storage(e)
        })?;
        if let Some(r) = &report.first_rejection {
            tracing::error!(
                err = %r.message(),
                series = %r.labels,
                timestamp = r.timestamp,
                rejected = report.rejected,
                "Out of order sample from remote write"
            );
            return Err(RemoteError::Rejected(r.message()));
        }
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn read_handler(State(st): State<RemoteState>, body: Bytes) -> Result<Response, RemoteError> {
    let opts = st.opts.clone();
    let storage = Arc::clone(&st.storage);
    let (kind, bytes) = blocking(move || {
        let req = read::decode_read_request(&body, opts.max_decoded_bytes)?;
        let kind = read::negotiate(&req.accepted_response_types)?;
        let bytes = match kind {
            ResponseType::Samples => read::encode_read_response(&read::read_samples(
                storage.as_ref(),
                &req,
                opts.read_sample_limit,
            )?),
            ResponseType::StreamedXorChunks => read::read_streamed(
                storage.as_ref(),
                &req,
                opts.read_sample_limit,
                opts.max_frame_bytes,
            )?,
        };
        Ok((kind, bytes))
    })
    .await
    .inspect_err(|e| {
        if e.status() >= 500 {
            tracing::error!(err = %e, "Error serving remote read");
        }
    })?;
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    match kind {
        ResponseType::Samples => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(read::SAMPLED_CONTENT_TYPE),
            );
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        }
        ResponseType::StreamedXorChunks => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(read::STREAMED_CONTENT_TYPE),
            );
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests;
