//! The Store gRPC service: the worker's shard as the querier reads and writes it.
//!
//! Chunks leave the worker exactly as stored (never decoded or re-encoded here); storage
//! calls are blocking, so each request runs on tokio's blocking pool, and `Select` streams
//! its batches through a small channel so a slow reader holds back the storage scan instead
//! of the worker buffering the whole answer.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use trawl_model::Matcher;
use trawl_proto::v1::store_server::{Store, StoreServer};
use trawl_proto::v1::{
    ChunkedSeries, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse,
    SelectRequest, SelectResponse, WriteRequest, WriteResponse,
};
use trawl_storage::{RejectReason, SelectHints, Storage, StorageError};

/// At most this many series per `SelectResponse`.
pub const BATCH_SERIES: usize = 256;
/// A batch is sent once its encoded chunks reach about this many bytes.
pub const BATCH_BYTES: usize = 1 << 20;
/// Largest request accepted (a big remote-write batch routed by a querier).
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The Store service over one storage shard.
#[derive(Clone)]
pub struct StoreService {
    storage: Arc<dyn Storage>,
}

impl std::fmt::Debug for StoreService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreService").finish_non_exhaustive()
    }
}

impl StoreService {
    /// The service over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }
}

/// The tonic server of the Store service over `storage`, accepting requests up to
/// [`MAX_REQUEST_BYTES`] and sending answers of any size.
pub fn store_server(storage: Arc<dyn Storage>) -> StoreServer<StoreService> {
    StoreServer::new(StoreService::new(storage))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(usize::MAX)
}

fn storage_status(e: StorageError) -> Status {
    match e {
        StorageError::InvalidSeries(_) | StorageError::Rejected(_) => {
            Status::invalid_argument(e.to_string())
        }
        StorageError::Poisoned(_) => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

fn matchers(ms: Vec<trawl_proto::v1::Matcher>) -> Result<Vec<Matcher>, Status> {
    ms.into_iter()
        .map(|m| Matcher::try_from(m).map_err(|e| Status::invalid_argument(e.to_string())))
        .collect()
}

/// `limit` 0 means no limit, as in Prometheus's API.
fn truncate(mut v: Vec<String>, limit: u64) -> Vec<String> {
    if limit > 0 {
        v.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    v
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("storage task failed: {e}")))?
}

type SelectStream = Pin<Box<dyn Stream<Item = Result<SelectResponse, Status>> + Send>>;

/// Reads the selected series and hands batches to `send`; stops early (returning `Ok`)
/// when `send` reports the reader is gone.
fn select_batches(
    storage: &dyn Storage,
    req: &SelectRequest,
    ms: &[Matcher],
    mut send: impl FnMut(SelectResponse) -> bool,
) -> Result<(), StorageError> {
    let q = storage.querier()?;
    let hints = SelectHints {
        step_ms: req.step_ms,
        func: (!req.func.is_empty()).then(|| req.func.clone()),
        limit: None,
    };
    let set = q.select(ms, req.min_time_ms, req.max_time_ms, &hints)?;
    let mut batch: Vec<ChunkedSeries> = Vec::new();
    let mut bytes = 0usize;
    for s in set {
        let s = s?;
        let chunks: Vec<trawl_proto::v1::Chunk> = if req.skip_chunks {
            Vec::new()
        } else {
            s.chunks().iter().map(trawl_proto::chunk_to_proto).collect()
        };
        bytes += chunks.iter().map(|c| c.data.len() + 24).sum::<usize>();
        bytes += s
            .labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 4)
            .sum::<usize>();
        batch.push(ChunkedSeries {
            labels: trawl_proto::labels_to_proto(&s.labels),
            chunks,
            ..Default::default()
        });
        if batch.len() >= BATCH_SERIES || bytes >= BATCH_BYTES {
            let full = SelectResponse {
                series: std::mem::take(&mut batch),
                ..Default::default()
            };
            bytes = 0;
            if !send(full) {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        send(SelectResponse {
            series: batch,
            ..Default::default()
        });
    }
    Ok(())
}

#[tonic::async_trait]
impl Store for StoreService {
    type SelectStream = SelectStream;

    async fn select(&self, req: Request<SelectRequest>) -> Result<Response<SelectStream>, Status> {
        let mut req = req.into_inner();
        let ms = matchers(std::mem::take(&mut req.matchers))?;
        let storage = self.storage.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<SelectResponse, Status>>(2);
        tokio::task::spawn_blocking(move || {
            let r = select_batches(storage.as_ref(), &req, &ms, |b| {
                tx.blocking_send(Ok(b)).is_ok()
            });
            if let Err(e) = r {
                tracing::warn!(error = %e, "store select failed");
                let _ = tx.blocking_send(Err(storage_status(e)));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn label_names(
        &self,
        req: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let r = req.into_inner();
        let ms = matchers(r.matchers)?;
        let storage = self.storage.clone();
        let names = blocking(move || {
            let q = storage.querier().map_err(storage_status)?;
            q.label_names(&ms, r.min_time_ms, r.max_time_ms)
                .map_err(storage_status)
        })
        .await?;
        Ok(Response::new(LabelNamesResponse {
            names: truncate(names, r.limit),
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        req: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let r = req.into_inner();
        let ms = matchers(r.matchers)?;
        let storage = self.storage.clone();
        let name = r.name;
        let values = blocking(move || {
            let q = storage.querier().map_err(storage_status)?;
            q.label_values(&name, &ms, r.min_time_ms, r.max_time_ms)
                .map_err(storage_status)
        })
        .await?;
        Ok(Response::new(LabelValuesResponse {
            values: truncate(values, r.limit),
            ..Default::default()
        }))
    }

    async fn write(&self, req: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        let r = req.into_inner();
        let storage = self.storage.clone();
        let report = blocking(move || {
            let mut app = storage.appender();
            for ts in r.series {
                let labels = trawl_proto::labels_from_proto(ts.labels);
                if labels.is_empty() {
                    app.rollback();
                    return Err(Status::invalid_argument("series without labels"));
                }
                let series = match app.series_ref(&labels) {
                    Ok(s) => s,
                    Err(e) => {
                        app.rollback();
                        return Err(storage_status(e));
                    }
                };
                for s in ts.samples {
                    let s = trawl_model::Sample::from(s);
                    if let Err(e) = app.append(series, s.t, s.v) {
                        app.rollback();
                        return Err(storage_status(e));
                    }
                }
            }
            app.commit().map_err(storage_status)
        })
        .await?;
        let samples_rejected = RejectReason::ALL
            .iter()
            .filter(|r| report.rejected(**r) > 0)
            .map(|r| (r.as_str().to_string(), report.rejected(*r)))
            .collect();
        Ok(Response::new(WriteResponse {
            // Identical re-sent samples are accepted and ignored, as Prometheus does, so a
            // retried batch counts as written.
            samples_written: report.appended + report.duplicates_ignored,
            samples_rejected,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt as _;
    use trawl_model::{Labels, STALE_NAN_BITS};
    use trawl_proto::v1::{self, matcher::Type};
    use trawl_storage::StorageOptions;
    use trawl_storage::mem::MemStorage;

    fn now() -> i64 {
        trawl_storage::Clock::system().now_ms()
    }

    fn svc() -> StoreService {
        StoreService::new(Arc::new(MemStorage::new(StorageOptions::default())))
    }

    fn m(t: Type, name: &str, value: &str) -> v1::Matcher {
        v1::Matcher {
            r#type: t as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: trawl_proto::labels_to_proto(&Labels::from_pairs(pairs.iter().copied())),
            samples: samples
                .iter()
                .map(|(t, v)| trawl_model::Sample::new(*t, *v).into())
                .collect(),
        }
    }

    async fn select(s: &StoreService, req: SelectRequest) -> Result<Vec<SelectResponse>, Status> {
        let mut stream = s.select(Request::new(req)).await?.into_inner();
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b?);
        }
        Ok(out)
    }

    /// Decoded samples (as bits) of one wire series, per chunk order.
    fn decoded(s: &ChunkedSeries) -> Vec<(i64, u64)> {
        s.chunks
            .iter()
            .flat_map(|c| {
                let c = trawl_proto::chunk_from_proto(c.clone()).expect("valid chunk");
                c.samples()
                    .expect("decodes")
                    .map(|r| r.map(|s| (s.t, s.v.to_bits())).expect("sample"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn written_samples_select_back_bit_for_bit_and_rejections_are_counted() {
        let s = svc();
        let t0 = now() - 60_000;
        let w = s
            .write(Request::new(WriteRequest {
                series: vec![
                    series(
                        &[("__name__", "up"), ("job", "a")],
                        &[
                            (t0, 1.0),
                            (t0 + 1000, -0.0),
                            (t0 + 2000, trawl_model::STALE_NAN),
                        ],
                    ),
                    // The last sample is older than the one before it: out of order.
                    series(
                        &[("__name__", "up"), ("job", "b")],
                        &[(t0, 2.5), (t0 + 1000, 3.0), (t0 + 500, 4.0)],
                    ),
                ],
            }))
            .await
            .expect("write")
            .into_inner();
        assert_eq!(w.samples_written, 5);
        assert_eq!(w.samples_rejected.get("out_of_order"), Some(&1));
        assert_eq!(w.samples_rejected.len(), 1);

        let got = select(
            &s,
            SelectRequest {
                matchers: vec![m(Type::Eq, "__name__", "up")],
                min_time_ms: t0 - 1,
                max_time_ms: t0 + 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("select");
        let all: Vec<&ChunkedSeries> = got.iter().flat_map(|b| &b.series).collect();
        assert_eq!(all.len(), 2);
        let a = trawl_proto::labels_from_proto(all[0].labels.clone());
        assert_eq!(a.get("job"), Some("a"));
        assert_eq!(
            decoded(all[0]),
            vec![
                (t0, 1.0f64.to_bits()),
                (t0 + 1000, (-0.0f64).to_bits()),
                (t0 + 2000, STALE_NAN_BITS)
            ]
        );
        assert_eq!(
            decoded(all[1]),
            vec![(t0, 2.5f64.to_bits()), (t0 + 1000, 3.0f64.to_bits())]
        );
    }

    #[tokio::test]
    async fn matchers_of_every_kind_skip_chunks_and_limits() {
        let s = svc();
        let t = now() - 1000;
        let jobs = ["api", "db", "web"];
        s.write(Request::new(WriteRequest {
            series: jobs
                .iter()
                .map(|j| {
                    series(
                        &[("__name__", "m"), ("job", j), ("zone", "z1")],
                        &[(t, 1.0)],
                    )
                })
                .collect(),
        }))
        .await
        .expect("write");
        let jobs_of = |bs: &[SelectResponse]| -> Vec<String> {
            bs.iter()
                .flat_map(|b| &b.series)
                .map(|s| {
                    trawl_proto::labels_from_proto(s.labels.clone())
                        .get("job")
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        };
        let cases = [
            (m(Type::Eq, "job", "db"), vec!["db"]),
            (m(Type::Neq, "job", "db"), vec!["api", "web"]),
            (m(Type::Re, "job", "a.*|w.*"), vec!["api", "web"]),
            (m(Type::Nre, "job", "a.*"), vec!["db", "web"]),
        ];
        for (matcher, want) in cases {
            let got = select(
                &s,
                SelectRequest {
                    matchers: vec![m(Type::Eq, "__name__", "m"), matcher.clone()],
                    min_time_ms: t - 1,
                    max_time_ms: t + 1,
                    ..Default::default()
                },
            )
            .await
            .expect("select");
            assert_eq!(jobs_of(&got), want, "matcher {matcher:?}");
        }
        let labels_only = select(
            &s,
            SelectRequest {
                matchers: vec![m(Type::Eq, "__name__", "m")],
                min_time_ms: t - 1,
                max_time_ms: t + 1,
                skip_chunks: true,
                ..Default::default()
            },
        )
        .await
        .expect("select");
        assert_eq!(jobs_of(&labels_only), jobs);
        assert!(
            labels_only
                .iter()
                .flat_map(|b| &b.series)
                .all(|s| s.chunks.is_empty())
        );

        let names = |limit| LabelNamesRequest {
            min_time_ms: t - 1,
            max_time_ms: t + 1,
            limit,
            ..Default::default()
        };
        let all = s
            .label_names(Request::new(names(0)))
            .await
            .expect("names")
            .into_inner();
        assert_eq!(all.names, ["__name__", "job", "zone"]);
        let two = s
            .label_names(Request::new(names(2)))
            .await
            .expect("names")
            .into_inner();
        assert_eq!(two.names, ["__name__", "job"]);
        let values = |limit| LabelValuesRequest {
            name: "job".into(),
            matchers: vec![m(Type::Neq, "job", "web")],
            min_time_ms: t - 1,
            max_time_ms: t + 1,
            limit,
        };
        let v = s
            .label_values(Request::new(values(0)))
            .await
            .expect("values")
            .into_inner();
        assert_eq!(v.values, ["api", "db"]);
        let v = s
            .label_values(Request::new(values(1)))
            .await
            .expect("values")
            .into_inner();
        assert_eq!(v.values, ["api"]);
    }

    #[tokio::test]
    async fn bad_matchers_are_invalid_arguments() {
        let s = svc();
        let bad_re = m(Type::Re, "job", "(");
        let bad_type = v1::Matcher {
            r#type: 17,
            name: "a".into(),
            value: "b".into(),
        };
        for bad in [bad_re, bad_type] {
            let e = select(
                &s,
                SelectRequest {
                    matchers: vec![bad.clone()],
                    ..Default::default()
                },
            )
            .await
            .expect_err("bad matcher");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            let e = s
                .label_names(Request::new(LabelNamesRequest {
                    matchers: vec![bad.clone()],
                    ..Default::default()
                }))
                .await
                .expect_err("bad matcher");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            let e = s
                .label_values(Request::new(LabelValuesRequest {
                    name: "x".into(),
                    matchers: vec![bad],
                    ..Default::default()
                }))
                .await
                .expect_err("bad matcher");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
        let e = s
            .write(Request::new(WriteRequest {
                series: vec![series(&[], &[(now(), 1.0)])],
            }))
            .await
            .expect_err("no labels");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn large_selects_are_split_into_bounded_batches() {
        let s = svc();
        let t = now() - 1000;
        let n = BATCH_SERIES * 2 + 3;
        s.write(Request::new(WriteRequest {
            series: (0..n)
                .map(|i| series(&[("__name__", "m"), ("i", &format!("{i:05}"))], &[(t, 1.0)]))
                .collect(),
        }))
        .await
        .expect("write");
        let got = select(
            &s,
            SelectRequest {
                matchers: vec![m(Type::Eq, "__name__", "m")],
                min_time_ms: t,
                max_time_ms: t,
                ..Default::default()
            },
        )
        .await
        .expect("select");
        let sizes: Vec<usize> = got.iter().map(|b| b.series.len()).collect();
        assert_eq!(sizes, [BATCH_SERIES, BATCH_SERIES, 3]);
        let order: Vec<String> = got
            .iter()
            .flat_map(|b| &b.series)
            .map(|s| {
                trawl_proto::labels_from_proto(s.labels.clone())
                    .get_or_empty("i")
                    .to_string()
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }
}
