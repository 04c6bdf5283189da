//! Remote read: decoding a request, choosing the response type and answering each query
//! from the storage traits.

use prost::Message;
use trawl_model::{MatchOp, Matcher, Sample};
use trawl_storage::{SelectHints, Storage};

use crate::RemoteError;
use crate::proto::{
    Chunk, ChunkEncoding, ChunkedReadResponse, ChunkedSeries, Label, LabelMatcher, MatcherType,
    Query, QueryResult, ReadRequest, ReadResponse, ResponseType, TimeSeries,
};
use crate::write::{snappy_decode, snappy_encode};
use crate::xor;

/// Content type of a sampled response (the body is also snappy-encoded).
pub const SAMPLED_CONTENT_TYPE: &str = "application/x-protobuf";
/// Content type of a streamed response.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Decodes a snappy-compressed `ReadRequest` body.
pub fn decode_read_request(body: &[u8], max_decoded: usize) -> Result<ReadRequest, RemoteError> {
    let raw = snappy_decode(body, max_decoded)?;
    ReadRequest::decode(raw.as_slice()).map_err(|e| RemoteError::Decode(e.to_string()))
}

/// Encodes a `ReadRequest` as a remote-read body.
pub fn encode_read_request(req: &ReadRequest) -> Vec<u8> {
    snappy_encode(&req.encode_to_vec())
}

/// Encodes a sampled response body (protobuf, then snappy).
pub fn encode_read_response(resp: &ReadResponse) -> Vec<u8> {
    snappy_encode(&resp.encode_to_vec())
}

/// Decodes a sampled response body.
pub fn decode_read_response(body: &[u8], max_decoded: usize) -> Result<ReadResponse, RemoteError> {
    let raw = snappy_decode(body, max_decoded)?;
    ReadResponse::decode(raw.as_slice()).map_err(|e| RemoteError::Decode(e.to_string()))
}

/// The first accepted response type this server supports; `SAMPLES` when the client lists
/// none (pre-2.13 clients).
pub fn negotiate(accepted: &[i32]) -> Result<ResponseType, RemoteError> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    if let Some(t) = accepted
        .iter()
        .find_map(|t| ResponseType::try_from(*t).ok())
    {
        return Ok(t);
    }
    let names: Vec<String> = accepted.iter().map(i32::to_string).collect();
    Err(RemoteError::Negotiation(format!(
        "server does not support any of the requested response types: [{}]; supported: [SAMPLES STREAMED_XOR_CHUNKS]",
        names.join(" ")
    )))
}

/// Converts protocol matchers to Trawl's.
pub fn to_matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, RemoteError> {
    ms.iter()
        .map(|m| {
            let op = match MatcherType::try_from(m.r#type) {
                Ok(MatcherType::Eq) => MatchOp::Equal,
                Ok(MatcherType::Neq) => MatchOp::NotEqual,
                Ok(MatcherType::Re) => MatchOp::RegexMatch,
                Ok(MatcherType::Nre) => MatchOp::RegexNoMatch,
                Err(_) => {
                    return Err(RemoteError::BadMatcher(format!(
                        "invalid matcher type {}",
                        m.r#type
                    )));
                }
            };
            Matcher::new(op, m.name.as_str(), m.value.as_str())
                .map_err(|e| RemoteError::BadMatcher(e.to_string()))
        })
        .collect()
}

/// Protocol matchers from Trawl's (for clients and tests).
pub fn from_matchers(ms: &[Matcher]) -> Vec<LabelMatcher> {
    ms.iter()
        .map(|m| LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => MatcherType::Eq,
                MatchOp::NotEqual => MatcherType::Neq,
                MatchOp::RegexMatch => MatcherType::Re,
                MatchOp::RegexNoMatch => MatcherType::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

fn hints(q: &Query) -> SelectHints {
    let h = q.hints.clone().unwrap_or_default();
    SelectHints {
        step_ms: h.step_ms,
        func: (!h.func.is_empty()).then_some(h.func),
        limit: None,
    }
}

/// Runs one query, calling `f` with each series' labels and its samples in
/// `[start, end]`. Counts samples against `limit` (Prometheus's
/// `--storage.remote.read-sample-limit`, 0 = none).
fn run_query(
    storage: &dyn Storage,
    q: &Query,
    limit: usize,
    seen: &mut usize,
    mut f: impl FnMut(Vec<Label>, Vec<Sample>) -> Result<(), RemoteError>,
) -> Result<(), RemoteError> {
    let matchers = to_matchers(&q.matchers)?;
    let querier = storage.querier().map_err(RemoteError::Storage)?;
    let set = querier
        .select(
            &matchers,
            q.start_timestamp_ms,
            q.end_timestamp_ms,
            &hints(q),
        )
        .map_err(RemoteError::Storage)?;
    for series in set {
        let series = series.map_err(RemoteError::Storage)?;
        let mut samples = Vec::new();
        for s in series.samples() {
            samples.push(s.map_err(RemoteError::Storage)?);
        }
        *seen += samples.len();
        if limit > 0 && *seen > limit {
            return Err(RemoteError::TooManySamples(limit));
        }
        let labels = series
            .labels
            .iter()
            .map(|l| Label {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect();
        f(labels, samples)?;
    }
    Ok(())
}

/// Answers every query with raw samples, one result per query in request order.
pub fn read_samples(
    storage: &dyn Storage,
    req: &ReadRequest,
    sample_limit: usize,
) -> Result<ReadResponse, RemoteError> {
    let mut seen = 0usize;
    let mut results = Vec::with_capacity(req.queries.len());
    for q in &req.queries {
        let mut timeseries = Vec::new();
        run_query(storage, q, sample_limit, &mut seen, |labels, samples| {
            timeseries.push(TimeSeries {
                labels,
                samples: samples
                    .iter()
                    .map(|s| crate::proto::Sample {
                        value: s.v,
                        timestamp: s.t,
                    })
                    .collect(),
                exemplars: vec![],
            });
            Ok(())
        })?;
        results.push(QueryResult { timeseries });
    }
    Ok(ReadResponse { results })
}

/// Answers every query with Prometheus XOR chunks as a stream of frames: one series per
/// frame, a series split over several frames when its chunks pass `max_frame_bytes`
/// (Prometheus's 1 MiB), each frame tagged with its query's index.
pub fn read_streamed(
    storage: &dyn Storage,
    req: &ReadRequest,
    sample_limit: usize,
    max_frame_bytes: usize,
) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::new();
    let mut seen = 0usize;
    for (qi, q) in req.queries.iter().enumerate() {
        let query_index = qi as i64;
        run_query(storage, q, sample_limit, &mut seen, |labels, samples| {
            let label_bytes: usize = labels.iter().map(Message::encoded_len).sum();
            let budget = max_frame_bytes.saturating_sub(label_bytes).max(1);
            let mut chunks: Vec<Chunk> = Vec::new();
            let mut used = 0usize;
            let mut parts = samples.chunks(xor::SAMPLES_PER_CHUNK).peekable();
            while let Some(part) = parts.next() {
                let (Some(first), Some(last)) = (part.first(), part.last()) else {
                    continue;
                };
                let chunk = Chunk {
                    min_time_ms: first.t,
                    max_time_ms: last.t,
                    r#type: ChunkEncoding::Xor as i32,
                    data: xor::encode_chunk(part),
                };
                used += chunk.encoded_len();
                chunks.push(chunk);
                if used < budget && parts.peek().is_some() {
                    continue;
                }
                let msg = ChunkedReadResponse {
                    chunked_series: vec![ChunkedSeries {
                        labels: labels.clone(),
                        chunks: std::mem::take(&mut chunks),
                    }],
                    query_index,
                };
                xor::write_frame(&mut out, &msg.encode_to_vec());
                used = 0;
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Decodes a streamed response into per-frame messages (for clients and tests).
pub fn decode_streamed(body: &[u8]) -> Result<Vec<ChunkedReadResponse>, RemoteError> {
    xor::read_frames(body)
        .map_err(RemoteError::Decode)?
        .into_iter()
        .map(|m| ChunkedReadResponse::decode(m).map_err(|e| RemoteError::Decode(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::Labels;
    use trawl_storage::StorageOptions;
    use trawl_storage::mem::MemStorage;

    fn store() -> MemStorage {
        let s = MemStorage::new(StorageOptions {
            clock: trawl_storage::Clock::from_fn(|| 10_000_000),
            ..Default::default()
        });
        let mut app = s.appender();
        for (job, inst) in [("a", "1"), ("a", "2"), ("b", "1")] {
            let l = Labels::from_pairs([("__name__", "m"), ("job", job), ("instance", inst)]);
            let r = app.series_ref(&l).unwrap();
            for i in 0..300i64 {
                app.append(r, i * 1000, i as f64 * 0.5).unwrap();
            }
        }
        let l = Labels::from_pairs([("__name__", "other")]);
        let r = app.series_ref(&l).unwrap();
        app.append(r, 0, 1.0).unwrap();
        app.commit().unwrap();
        drop(app);
        s
    }

    fn lm(t: MatcherType, n: &str, v: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: n.into(),
            value: v.into(),
        }
    }

    fn query(start: i64, end: i64, ms: Vec<LabelMatcher>) -> Query {
        Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: ms,
            hints: None,
        }
    }

    fn label(ts: &[Label], name: &str) -> String {
        ts.iter()
            .find(|l| l.name == name)
            .map(|l| l.value.clone())
            .unwrap_or_default()
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(&[]).unwrap(), ResponseType::Samples);
        assert_eq!(negotiate(&[1, 0]).unwrap(), ResponseType::StreamedXorChunks);
        assert_eq!(negotiate(&[0, 1]).unwrap(), ResponseType::Samples);
        assert_eq!(negotiate(&[7, 1]).unwrap(), ResponseType::StreamedXorChunks);
        let e = negotiate(&[7]).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string()
                .starts_with("server does not support any of the requested response types")
        );
    }

    #[test]
    fn matchers_convert_both_ways() {
        let ms = vec![
            lm(MatcherType::Eq, "__name__", "m"),
            lm(MatcherType::Neq, "job", "x"),
            lm(MatcherType::Re, "instance", "1|2"),
            lm(MatcherType::Nre, "zone", "eu.*"),
        ];
        let ours = to_matchers(&ms).unwrap();
        assert_eq!(ours[2].op, MatchOp::RegexMatch);
        assert!(ours[2].matches("2") && !ours[2].matches("12"), "anchored");
        assert_eq!(from_matchers(&ours), ms);
        assert!(to_matchers(&[lm(MatcherType::Re, "a", "(")]).is_err());
        let mut bad = lm(MatcherType::Eq, "a", "b");
        bad.r#type = 9;
        assert!(to_matchers(&[bad]).is_err());
    }

    #[test]
    fn sampled_read_honours_matchers_and_inclusive_range() {
        let s = store();
        let req = ReadRequest {
            queries: vec![
                query(
                    10_000,
                    12_000,
                    vec![
                        lm(MatcherType::Eq, "__name__", "m"),
                        lm(MatcherType::Re, "job", "a"),
                        lm(MatcherType::Neq, "instance", "2"),
                    ],
                ),
                query(0, 1_000_000, vec![lm(MatcherType::Nre, "__name__", "m")]),
                query(
                    0,
                    1_000_000,
                    vec![lm(MatcherType::Eq, "__name__", "missing")],
                ),
            ],
            accepted_response_types: vec![],
        };
        let resp = read_samples(&s, &req, 0).unwrap();
        assert_eq!(resp.results.len(), 3);
        let r0 = &resp.results[0].timeseries;
        assert_eq!(r0.len(), 1);
        assert_eq!(label(&r0[0].labels, "instance"), "1");
        assert_eq!(label(&r0[0].labels, "job"), "a");
        let got: Vec<(i64, f64)> = r0[0]
            .samples
            .iter()
            .map(|x| (x.timestamp, x.value))
            .collect();
        assert_eq!(got, vec![(10_000, 5.0), (11_000, 5.5), (12_000, 6.0)]);
        assert_eq!(resp.results[1].timeseries.len(), 1);
        assert_eq!(
            label(&resp.results[1].timeseries[0].labels, "__name__"),
            "other"
        );
        assert!(resp.results[2].timeseries.is_empty());

        // The sample limit counts over the whole request.
        let e = read_samples(&s, &req, 2).unwrap_err();
        assert_eq!(e.to_string(), "exceeded sample limit (2)");
        assert_eq!(e.status(), 400);

        // Sampled body round trip.
        let body = encode_read_response(&resp);
        assert_eq!(decode_read_response(&body, 1 << 24).unwrap(), resp);
    }

    #[test]
    fn streamed_read_returns_prometheus_xor_chunks_in_range() {
        let s = store();
        let req = ReadRequest {
            queries: vec![
                query(0, 1_000_000, vec![lm(MatcherType::Eq, "__name__", "other")]),
                query(5_500, 250_000, vec![lm(MatcherType::Eq, "job", "a")]),
            ],
            accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
        };
        let body = read_streamed(&s, &req, 0, 1 << 20).unwrap();
        let frames = decode_streamed(&body).unwrap();
        // One series per frame: "other" in query 0, two job="a" series in query 1.
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].query_index, 0);
        assert_eq!(frames[1].query_index, 1);
        assert_eq!(frames[2].query_index, 1);
        let series = &frames[1].chunked_series[0];
        assert_eq!(label(&series.labels, "instance"), "1");
        let mut all = Vec::new();
        for c in &series.chunks {
            assert_eq!(c.r#type, ChunkEncoding::Xor as i32);
            let samples = xor::decode_chunk(&c.data).unwrap();
            assert!(samples.len() <= xor::SAMPLES_PER_CHUNK);
            assert_eq!(samples.first().unwrap().t, c.min_time_ms);
            assert_eq!(samples.last().unwrap().t, c.max_time_ms);
            all.extend(samples);
        }
        let want: Vec<Sample> = (6..=250)
            .map(|i| Sample::new(i * 1000, i as f64 * 0.5))
            .collect();
        assert_eq!(all, want);
        assert_eq!(series.chunks.len(), 3, "245 samples in chunks of 120");

        // A tiny frame budget splits the series over several frames, labels repeated.
        let body = read_streamed(&s, &req, 0, 64).unwrap();
        let frames = decode_streamed(&body).unwrap();
        assert_eq!(frames.len(), 1 + 3 + 3);
        assert!(frames.iter().all(|f| f.chunked_series.len() == 1
            && f.chunked_series[0].chunks.len() == 1
            && !f.chunked_series[0].labels.is_empty()));
    }
}
