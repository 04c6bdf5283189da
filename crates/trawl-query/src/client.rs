//! The client behind `trawl query`.

use std::time::Duration;

use tonic::transport::Channel;
use trawl_model::Labels;
use trawl_promql::QueryResult;
use trawl_proto::v1::{
    InstantQueryRequest, LabelNamesQueryRequest, LabelValuesQueryRequest, RangeQueryRequest,
    SeriesRequest, query_client::QueryClient,
};

use crate::Error;
use crate::convert::{ResultCollector, scalar_time};

/// Largest message the client accepts (an instant vector is one message).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A query answer: the engine's result type, plus the evaluation time that scalar and string
/// results are reported at.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub result: QueryResult,
    /// Evaluation time of a scalar or string result; the request's time otherwise.
    pub time_ms: i64,
}

/// A list answer (series, label names, label values) and its warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub warnings: Vec<String>,
}

/// Common bounds of the metadata calls.
#[derive(Debug, Clone, Default)]
pub struct MetadataQuery {
    /// Series selectors (`match[]`).
    pub matchers: Vec<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// 0: no limit.
    pub limit: u64,
}

/// A connection to a Query service.
#[derive(Debug, Clone)]
pub struct Client {
    inner: QueryClient<Channel>,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to `addr`: `host:port`, or a URL `http://host:port`.
    pub async fn connect(addr: &str) -> Result<Self, Error> {
        Self::connect_tls(addr, None).await
    }

    /// Connects to `addr` over TLS when `tls` is given (a server run with `--grpc.tls-*`).
    pub async fn connect_tls(
        addr: &str,
        tls: Option<&trawl_proto::tls::ClientTls>,
    ) -> Result<Self, Error> {
        let ep = trawl_proto::tls::endpoint(addr, tls)
            .map_err(|e| Error::Address(addr.to_owned(), e.to_string()))?
            .connect_timeout(Duration::from_secs(10));
        let ch = ep.connect().await?;
        Ok(Self {
            inner: QueryClient::new(ch).max_decoding_message_size(MAX_MESSAGE_BYTES),
            timeout: None,
        })
    }

    /// Sets a deadline for every call (sent as `grpc-timeout` and as the query timeout).
    pub fn with_timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }

    fn request<T>(&self, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        if let Some(t) = self.timeout {
            r.set_timeout(t);
        }
        r
    }

    fn timeout_ms(&self) -> i64 {
        self.timeout
            .map_or(0, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
    }

    /// An instant query at `time_ms` (the server's now when `None`).
    pub async fn instant(&mut self, query: &str, time_ms: Option<i64>) -> Result<Answer, Error> {
        let req = self.request(InstantQueryRequest {
            query: query.to_owned(),
            time_ms,
            timeout_ms: self.timeout_ms(),
            partial_response: None,
        });
        let m = self.inner.instant(req).await?.into_inner();
        let t = scalar_time(&m).or(time_ms).unwrap_or_default();
        let mut c = ResultCollector::default();
        c.push(m)?;
        Ok(Answer {
            result: c.finish(),
            time_ms: t,
        })
    }

    /// A range query; the streamed batches are collected into one matrix. Returns the number
    /// of messages the result arrived in, too.
    pub async fn range_counted(
        &mut self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<(Answer, usize), Error> {
        let req = self.request(RangeQueryRequest {
            query: query.to_owned(),
            start_ms,
            end_ms,
            step_ms,
            timeout_ms: self.timeout_ms(),
            partial_response: None,
        });
        let mut stream = self.inner.range(req).await?.into_inner();
        let mut c = ResultCollector::default();
        let mut n = 0;
        while let Some(m) = stream.message().await? {
            n += 1;
            c.push(m)?;
        }
        Ok((
            Answer {
                result: c.finish(),
                time_ms: start_ms,
            },
            n,
        ))
    }

    /// A range query; the streamed batches are collected into one matrix.
    pub async fn range(
        &mut self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Answer, Error> {
        Ok(self
            .range_counted(query, start_ms, end_ms, step_ms)
            .await?
            .0)
    }

    /// Label sets of series matching any of the selectors.
    pub async fn series(&mut self, q: &MetadataQuery) -> Result<Listing<Labels>, Error> {
        let req = self.request(SeriesRequest {
            matchers: q.matchers.clone(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            limit: q.limit,
        });
        let r = self.inner.series(req).await?.into_inner();
        Ok(Listing {
            items: r
                .series
                .into_iter()
                .map(|l| trawl_proto::labels_from_proto(l.labels))
                .collect(),
            warnings: r.warnings,
        })
    }

    /// Label names.
    pub async fn label_names(&mut self, q: &MetadataQuery) -> Result<Listing<String>, Error> {
        let req = self.request(LabelNamesQueryRequest {
            matchers: q.matchers.clone(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            limit: q.limit,
        });
        let r = self.inner.label_names(req).await?.into_inner();
        Ok(Listing {
            items: r.values,
            warnings: r.warnings,
        })
    }

    /// Values of label `name`.
    pub async fn label_values(
        &mut self,
        name: &str,
        q: &MetadataQuery,
    ) -> Result<Listing<String>, Error> {
        let req = self.request(LabelValuesQueryRequest {
            name: name.to_owned(),
            matchers: q.matchers.clone(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            limit: q.limit,
        });
        let r = self.inner.label_values(req).await?.into_inner();
        Ok(Listing {
            items: r.values,
            warnings: r.warnings,
        })
    }
}
