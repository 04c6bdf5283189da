//! The crate's error enum and the mapping between errors, Prometheus `errorType`s and gRPC
//! status codes (docs/ARCHITECTURE.md, "The gRPC contract").

use prost::Message;
use tonic::{Code, Status, metadata::MetadataValue};
use trawl_promql::QueryError;
use trawl_proto::v1::QueryErrorDetail;

/// Response metadata key carrying Prometheus's `errorType` of a failed call.
pub const ERROR_TYPE_METADATA: &str = "trawl-error-type";

/// Prometheus's API error types (`errorType` in the HTTP API's JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// A parameter is invalid (HTTP 400).
    BadData,
    /// Evaluation failed on valid input (HTTP 422).
    Execution,
    /// The query ran out of time (HTTP 503).
    Timeout,
    /// The query was cancelled (HTTP 503).
    Canceled,
    /// Anything else (HTTP 500).
    Internal,
    /// A shard or the server is unavailable (HTTP 503).
    Unavailable,
    /// Not found (HTTP 404).
    NotFound,
}

impl ErrorType {
    /// The `errorType` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadData => "bad_data",
            Self::Execution => "execution",
            Self::Timeout => "timeout",
            Self::Canceled => "canceled",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
        }
    }

    /// The inverse of [`ErrorType::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bad_data" => Self::BadData,
            "execution" => Self::Execution,
            "timeout" => Self::Timeout,
            "canceled" => Self::Canceled,
            "internal" => Self::Internal,
            "unavailable" => Self::Unavailable,
            "not_found" => Self::NotFound,
            _ => return None,
        })
    }

    /// The HTTP status Prometheus answers this error type with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadData => 400,
            Self::Execution => 422,
            Self::Timeout | Self::Canceled | Self::Unavailable => 503,
            Self::Internal => 500,
            Self::NotFound => 404,
        }
    }

    /// The error type a status without Trawl's annotation stands for (a status produced by
    /// the transport or a tower layer rather than by the service).
    pub fn from_code(c: Code) -> Self {
        match c {
            Code::InvalidArgument | Code::OutOfRange => Self::BadData,
            Code::ResourceExhausted | Code::FailedPrecondition => Self::Execution,
            Code::DeadlineExceeded => Self::Timeout,
            Code::Cancelled => Self::Canceled,
            Code::Unavailable => Self::Unavailable,
            Code::NotFound => Self::NotFound,
            _ => Self::Internal,
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error enum for the crate: API errors answered by the server, and what a client sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error the service answers with: gRPC `code`, Prometheus `error_type`, message.
    #[error("{message}")]
    Api {
        code: Code,
        error_type: ErrorType,
        message: String,
    },
    /// The storage behind a label source failed.
    #[error("{0}")]
    Storage(String),
    /// The client could not reach the server, or the server could not bind.
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The address given to the client is not a valid endpoint.
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    /// A response that breaks the contract (e.g. an unknown result type).
    #[error("invalid response: {0}")]
    Response(String),
    /// The server's TLS configuration cannot be used.
    #[error("{0}")]
    Tls(#[from] trawl_proto::tls::TlsError),
}

impl Error {
    /// A `bad_data` error (INVALID_ARGUMENT).
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::Api {
            code: Code::InvalidArgument,
            error_type: ErrorType::BadData,
            message: message.into(),
        }
    }

    /// Prometheus's text for an invalid parameter.
    pub fn param(name: &str, err: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter \"{name}\": {err}"))
    }

    /// The Prometheus error type of this error.
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::Api { error_type, .. } => *error_type,
            Self::Storage(_) | Self::Response(_) | Self::Tls(_) => ErrorType::Internal,
            Self::Transport(_) | Self::Address(..) => ErrorType::Unavailable,
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            Self::Api { code, .. } => *code,
            Self::Storage(_) | Self::Response(_) | Self::Tls(_) => Code::Internal,
            Self::Transport(_) | Self::Address(..) => Code::Unavailable,
        }
    }

    /// An evaluation error of the engine. Parse errors are `bad_data`; execution errors keep
    /// `execution` with INVALID_ARGUMENT (the query cannot succeed over this data; retrying
    /// does not help), limits RESOURCE_EXHAUSTED, timeouts DEADLINE_EXCEEDED, storage
    /// failures INTERNAL, as Prometheus's API classifies them.
    pub fn from_query(e: QueryError) -> Self {
        let (code, error_type) = match &e {
            QueryError::Parse(_) => (Code::InvalidArgument, ErrorType::BadData),
            QueryError::Eval(_) => (Code::InvalidArgument, ErrorType::Execution),
            QueryError::TooManySamples(_) => (Code::ResourceExhausted, ErrorType::Execution),
            QueryError::Timeout(_) => (Code::DeadlineExceeded, ErrorType::Timeout),
            QueryError::Storage(_) => (Code::Internal, ErrorType::Internal),
        };
        Self::Api {
            code,
            error_type,
            message: e.to_string(),
        }
    }

    /// The client-side error of a failed call: the `errorType` from the metadata, else from
    /// the status details, else inferred from the code.
    pub fn from_status(s: &Status) -> Self {
        let from_meta = s
            .metadata()
            .get(ERROR_TYPE_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorType::parse);
        let from_details = || {
            QueryErrorDetail::decode(s.details())
                .ok()
                .and_then(|d| ErrorType::parse(&d.error_type))
        };
        let error_type = from_meta
            .or_else(from_details)
            .unwrap_or_else(|| ErrorType::from_code(s.code()));
        Self::Api {
            code: s.code(),
            error_type,
            message: s.message().to_owned(),
        }
    }

    /// The gRPC status for this error, with the `errorType` in metadata and details.
    pub fn to_status(&self) -> Status {
        let et = self.error_type();
        let detail = QueryErrorDetail {
            error_type: et.as_str().to_owned(),
        };
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(ERROR_TYPE_METADATA, MetadataValue::from_static(et.as_str()));
        Status::with_details_and_metadata(
            self.code(),
            self.to_string(),
            detail.encode_to_vec().into(),
            md,
        )
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Self::from_status(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_map_to_codes_and_types_and_survive_a_status() {
        let cases = [
            (
                QueryError::Parse("1:1: parse error".into()),
                Code::InvalidArgument,
                "bad_data",
            ),
            (
                QueryError::Eval("dup".into()),
                Code::InvalidArgument,
                "execution",
            ),
            (
                QueryError::TooManySamples("x"),
                Code::ResourceExhausted,
                "execution",
            ),
            (QueryError::Timeout("x"), Code::DeadlineExceeded, "timeout"),
            (QueryError::Storage("io".into()), Code::Internal, "internal"),
        ];
        for (qe, code, et) in cases {
            let msg = qe.to_string();
            let st = Error::from_query(qe).to_status();
            assert_eq!(st.code(), code);
            let back = Error::from_status(&st);
            assert_eq!(back.error_type().as_str(), et);
            assert_eq!(back.code(), code);
            assert!(back.to_string().ends_with(&msg), "{back} / {msg}");
            // Without metadata the details still carry the type.
            let bare = Status::with_details(st.code(), st.message(), st.details().to_vec().into());
            assert_eq!(Error::from_status(&bare).error_type().as_str(), et);
        }
        assert_eq!(
            Error::from_status(&Status::deadline_exceeded("t")).error_type(),
            ErrorType::Timeout
        );
        for t in [
            ErrorType::BadData,
            ErrorType::Execution,
            ErrorType::Timeout,
            ErrorType::Canceled,
            ErrorType::Internal,
            ErrorType::Unavailable,
            ErrorType::NotFound,
        ] {
            assert_eq!(ErrorType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ErrorType::Execution.http_status(), 422);
    }
}
