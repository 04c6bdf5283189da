//! Remote write 1.0: decoding a request and appending it through the storage traits.

use std::collections::HashMap;

use prost::Message;
use trawl_model::{Labels, METRIC_NAME};
use trawl_storage::{RejectReason, SeriesRef, Storage, StorageError};

use crate::RemoteError;
use crate::proto::{Label, WriteRequest};

/// The media type of remote-write protobuf bodies.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/x-protobuf";
/// The `proto=` parameter naming the 1.0 message.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// The `proto=` parameter naming the 2.0 message, which this receiver does not accept.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// Checks the `Content-Type` of a write request: absent or `application/x-protobuf` with no
/// `proto=` parameter or `proto=prometheus.WriteRequest` is remote write 1.0; anything else
/// is answered 415 with Prometheus's wording.
pub fn check_content_type(ct: Option<&str>) -> Result<(), RemoteError> {
    let Some(ct) = ct else {
        // 1.0 senders that set no header are accepted, as Prometheus does.
        return Ok(());
    };
    let ct = ct.trim();
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if media != PROTOBUF_MEDIA_TYPE {
        return Err(RemoteError::UnsupportedMediaType(format!(
            "expected {PROTOBUF_MEDIA_TYPE} as the first (media) part, got {ct} content-type"
        )));
    }
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            return Err(RemoteError::UnsupportedMediaType(format!(
                "as per https://www.rfc-editor.org/rfc/rfc9110#parameter expected parameters to be key-values, got {p} in {ct} content-type"
            )));
        };
        if k.trim() != "proto" {
            continue;
        }
        return match v.trim() {
            PROTO_V1 => Ok(()),
            PROTO_V2 => Err(RemoteError::UnsupportedMediaType(format!(
                "{PROTO_V2} protobuf message is not accepted by this server; accepted [{PROTO_V1}]"
            ))),
            other => Err(RemoteError::UnsupportedMediaType(format!(
                "got {ct} content type; unknown remote write protobuf message {other}, supported: {PROTO_V1}, {PROTO_V2}"
            ))),
        };
    }
    Ok(())
}

/// Checks the `Content-Encoding`: absent (assumed snappy, as Prometheus does) or `snappy`.
pub fn check_content_encoding(enc: Option<&str>) -> Result<(), RemoteError> {
    match enc.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(RemoteError::UnsupportedMediaType(format!(
            "{e} encoding (compression) is not accepted by this server; only snappy is acceptable"
        ))),
    }
}

/// Snappy block decompression with a bound on the decoded size.
pub fn snappy_decode(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, RemoteError> {
    let len = snap::raw::decompress_len(body).map_err(|e| RemoteError::Decode(e.to_string()))?;
    if len > max_decoded {
        return Err(RemoteError::Decode(format!(
            "decoded message of {len} bytes exceeds the limit of {max_decoded} bytes"
        )));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RemoteError::Decode(e.to_string()))
}

/// Snappy block compression (the remote protocols' framing-free "raw" format).
pub fn snappy_encode(data: &[u8]) -> Vec<u8> {
    // Compressing into a buffer of max_compress_len cannot fail.
    snap::raw::Encoder::new()
        .compress_vec(data)
        .unwrap_or_default()
}

/// Decodes a snappy-compressed `WriteRequest` body.
pub fn decode_write_request(body: &[u8], max_decoded: usize) -> Result<WriteRequest, RemoteError> {
    let raw = snappy_decode(body, max_decoded)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| RemoteError::Decode(e.to_string()))
}

/// Encodes a `WriteRequest` as a remote-write body (protobuf, then snappy).
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    snappy_encode(&req.encode_to_vec())
}

/// Builds a series' labels, or `None` when Prometheus would skip the series: no metric
/// name, an empty label name, or a name given twice. Empty values are dropped (an empty
/// value is an absent label).
pub fn series_labels(proto: &[Label]) -> Option<Labels> {
    let mut v: Vec<trawl_model::Label> = proto
        .iter()
        .map(|l| trawl_model::Label::new(l.name.as_str(), l.value.as_str()))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    if v.windows(2).any(|w| w[0].name == w[1].name) || v.iter().any(|l| l.name.is_empty()) {
        return None;
    }
    if !v
        .iter()
        .any(|l| l.name == METRIC_NAME && !l.value.is_empty())
    {
        return None;
    }
    Some(Labels::from_vec(v))
}

/// A sample the store refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// The series.
    pub labels: Labels,
    /// The sample's timestamp.
    pub timestamp: i64,
    /// Why.
    pub reason: RejectReason,
}

impl Rejection {
    /// The error text Prometheus answers for this reason (the storage error's text).
    pub fn message(&self) -> String {
        match self.reason {
            RejectReason::OutOfOrder => "out of order sample".into(),
            RejectReason::TooOld => "out of bounds".into(),
            RejectReason::DuplicateSample => "duplicate sample for timestamp".into(),
            RejectReason::TooFarInFuture => {
                "out of bounds: timestamp is too far in the future".into()
            }
        }
    }
}

/// What one write request did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestReport {
    /// Samples stored.
    pub appended: u64,
    /// Samples equal to their series' newest stored sample, accepted and ignored.
    pub duplicates_ignored: u64,
    /// Samples not newer than an earlier sample of the same series in the same request:
    /// dropped without error, as Prometheus's head drops them at commit.
    pub dropped_in_request: u64,
    /// Samples of series skipped for invalid labels.
    pub invalid_series_samples: u64,
    /// Exemplars received (Trawl stores none).
    pub exemplars_ignored: u64,
    /// Samples the store rejected.
    pub rejected: u64,
    /// The first rejected sample; its presence makes the answer HTTP 400.
    pub first_rejection: Option<Rejection>,
}

/// Appends a decoded request in one appender commit.
///
/// Samples are appended in request order. A storage failure rolls everything back and is an
/// error (answered 5xx so the sender retries); refused samples (out of order, too old,
/// duplicate with another value, too far in the future) are reported in
/// [`IngestReport::first_rejection`] while the accepted samples stay committed.
pub fn ingest(storage: &dyn Storage, req: &WriteRequest) -> Result<IngestReport, StorageError> {
    let mut report = IngestReport::default();
    let mut app = storage.appender();
    let mut refs: HashMap<Labels, SeriesRef> = HashMap::new();
    // Newest timestamp appended per series in this request, and the labels for the log.
    let mut newest: HashMap<SeriesRef, (i64, Labels)> = HashMap::new();
    for ts in &req.timeseries {
        report.exemplars_ignored += ts.exemplars.len() as u64;
        let Some(labels) = series_labels(&ts.labels) else {
            tracing::warn!(
                labels = ?ts.labels.iter().map(|l| (&l.name, &l.value)).collect::<Vec<_>>(),
                "Invalid metric names or labels"
            );
            report.invalid_series_samples += ts.samples.len() as u64;
            continue;
        };
        if ts.samples.is_empty() {
            continue;
        }
        let r = match refs.get(&labels) {
            Some(r) => *r,
            None => match app.series_ref(&labels) {
                Ok(r) => {
                    refs.insert(labels.clone(), r);
                    r
                }
                Err(StorageError::InvalidSeries(msg)) => {
                    tracing::warn!(series = %labels, err = %msg, "Invalid series in remote write");
                    report.invalid_series_samples += ts.samples.len() as u64;
                    continue;
                }
                Err(e) => {
                    app.rollback();
                    return Err(e);
                }
            },
        };
        for s in &ts.samples {
            match newest.get_mut(&r) {
                Some((t, _)) if s.timestamp <= *t => {
                    report.dropped_in_request += 1;
                    continue;
                }
                Some((t, _)) => *t = s.timestamp,
                None => {
                    newest.insert(r, (s.timestamp, labels.clone()));
                }
            }
            if let Err(e) = app.append(r, s.timestamp, s.value) {
                app.rollback();
                return Err(e);
            }
        }
    }
    let c = app.commit()?;
    report.appended = c.appended;
    report.duplicates_ignored = c.duplicates_ignored;
    report.rejected = c.rejected_total();
    if let Some((r, t, reason)) = c.first_rejection {
        let labels = newest
            .get(&r)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(Labels::empty);
        report.first_rejection = Some(Rejection {
            labels,
            timestamp: t,
            reason,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Sample, TimeSeries};
    use trawl_model::Matcher;
    use trawl_storage::mem::MemStorage;
    use trawl_storage::{SelectHints, StorageOptions};

    fn l(n: &str, v: &str) -> Label {
        Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn ts(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![l("job", "j"), l("__name__", name)],
            samples: samples
                .iter()
                .map(|(t, v)| Sample {
                    timestamp: *t,
                    value: *v,
                })
                .collect(),
            exemplars: vec![],
        }
    }

    fn store() -> MemStorage {
        let now = 10_000_000i64;
        MemStorage::new(StorageOptions {
            clock: trawl_storage::Clock::from_fn(move || now),
            ..Default::default()
        })
    }

    fn stored(s: &MemStorage, name: &str) -> Vec<(i64, f64)> {
        let q = s.querier().unwrap();
        let set = q
            .select(
                &[Matcher::equal("__name__", name)],
                i64::MIN,
                i64::MAX,
                &SelectHints::default(),
            )
            .unwrap();
        let mut out = Vec::new();
        for series in set {
            for x in series.unwrap().samples() {
                let x = x.unwrap();
                out.push((x.t, x.v));
            }
        }
        out
    }

    #[test]
    fn content_type_rules() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("application/x-protobuf")).is_ok());
        assert!(
            check_content_type(Some("application/x-protobuf;proto=prometheus.WriteRequest"))
                .is_ok()
        );
        assert!(
            check_content_type(Some(
                " application/x-protobuf; proto=prometheus.WriteRequest "
            ))
            .is_ok()
        );
        let e = check_content_type(Some(
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ))
        .unwrap_err();
        assert_eq!(e.status(), 415);
        assert!(e.to_string().contains("not accepted"), "{e}");
        assert_eq!(
            check_content_type(Some("application/json"))
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(
            check_content_type(Some("application/x-protobuf;proto=foo"))
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(
            check_content_type(Some("application/x-protobuf;garbage"))
                .unwrap_err()
                .status(),
            415
        );
        assert!(check_content_encoding(None).is_ok());
        assert!(check_content_encoding(Some("snappy")).is_ok());
        assert!(check_content_encoding(Some("SNAPPY")).is_ok());
        assert_eq!(
            check_content_encoding(Some("gzip")).unwrap_err().status(),
            415
        );
    }

    #[test]
    fn request_roundtrips_through_snappy_and_protobuf() {
        let req = WriteRequest {
            timeseries: vec![ts(
                "a",
                &[(1, 1.5), (2, f64::from_bits(trawl_model::STALE_NAN_BITS))],
            )],
            metadata: vec![],
        };
        let body = encode_write_request(&req);
        let back = decode_write_request(&body, 1 << 20).unwrap();
        assert_eq!(back.timeseries[0].labels, req.timeseries[0].labels);
        assert_eq!(back.timeseries[0].samples[0], req.timeseries[0].samples[0]);
        assert!(trawl_model::is_stale_nan(
            back.timeseries[0].samples[1].value
        ));
        // Corrupt snappy, valid snappy of garbage protobuf, and a decoded-size bound.
        assert_eq!(
            decode_write_request(b"\xff\xff\xff", 1 << 20)
                .unwrap_err()
                .status(),
            400
        );
        let junk = snappy_encode(b"\x0a\xff\xff\xff\xff");
        assert_eq!(
            decode_write_request(&junk, 1 << 20).unwrap_err().status(),
            400
        );
        assert_eq!(decode_write_request(&body, 4).unwrap_err().status(), 400);
    }

    #[test]
    fn series_labels_validation() {
        let ok =
            series_labels(&[l("b", "2"), l("__name__", "m"), l("a", "1"), l("e", "")]).unwrap();
        assert_eq!(
            ok,
            Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")])
        );
        assert!(series_labels(&[l("a", "1")]).is_none(), "no metric name");
        assert!(
            series_labels(&[l("__name__", "")]).is_none(),
            "empty metric name"
        );
        assert!(series_labels(&[l("__name__", "m"), l("a", "1"), l("a", "2")]).is_none());
        assert!(series_labels(&[l("__name__", "m"), l("", "x")]).is_none());
        assert!(series_labels(&[]).is_none());
    }

    #[test]
    fn ingest_appends_and_drops_in_request_disorder_silently() {
        let s = store();
        // Prometheus's sender puts each sample in its own TimeSeries entry.
        let req = WriteRequest {
            timeseries: vec![
                ts("m", &[(1000, 1.0)]),
                ts("m", &[(2000, 2.0)]),
                ts("m", &[(1500, 9.0)]), // older than an earlier sample of this request
                ts("m", &[(2000, 2.0)]), // repeated
                ts("other", &[(1000, 5.0), (3000, 6.0)]),
            ],
            metadata: vec![],
        };
        let r = ingest(&s, &req).unwrap();
        assert_eq!(r.appended, 4);
        assert_eq!(r.dropped_in_request, 2);
        assert_eq!(r.first_rejection, None);
        assert_eq!(stored(&s, "m"), vec![(1000, 1.0), (2000, 2.0)]);
        assert_eq!(stored(&s, "other"), vec![(1000, 5.0), (3000, 6.0)]);
    }

    #[test]
    fn ingest_reports_first_rejection_and_keeps_good_samples() {
        let s = store();
        ingest(
            &s,
            &WriteRequest {
                timeseries: vec![ts("m", &[(5000, 1.0)])],
                metadata: vec![],
            },
        )
        .unwrap();
        let req = WriteRequest {
            timeseries: vec![
                ts("m", &[(4000, 1.0)]), // out of order against the store
                ts("m", &[(5000, 7.0)]), // not newer than the previous in-request sample: dropped
                ts("n", &[(4000, 3.0)]), // fine
            ],
            metadata: vec![],
        };
        let r = ingest(&s, &req).unwrap();
        let rej = r.first_rejection.clone().unwrap();
        assert_eq!(rej.reason, RejectReason::OutOfOrder);
        assert_eq!(rej.timestamp, 4000);
        assert_eq!(
            rej.labels,
            Labels::from_pairs([("__name__", "m"), ("job", "j")])
        );
        assert_eq!(rej.message(), "out of order sample");
        assert_eq!(r.appended, 1);
        assert_eq!(stored(&s, "n"), vec![(4000, 3.0)]);

        // Duplicate timestamp: same value is accepted and ignored, another value refused.
        let same = ingest(
            &s,
            &WriteRequest {
                timeseries: vec![ts("m", &[(5000, 1.0)])],
                metadata: vec![],
            },
        )
        .unwrap();
        assert_eq!((same.duplicates_ignored, same.first_rejection), (1, None));
        let dup = ingest(
            &s,
            &WriteRequest {
                timeseries: vec![ts("m", &[(5000, 2.0)])],
                metadata: vec![],
            },
        )
        .unwrap();
        assert_eq!(
            dup.first_rejection.unwrap().message(),
            "duplicate sample for timestamp"
        );
        assert_eq!(stored(&s, "m"), vec![(5000, 1.0)]);
    }

    #[test]
    fn ingest_skips_invalid_series_and_counts_exemplars() {
        let s = store();
        let mut bad = ts("x", &[(1, 1.0), (2, 2.0)]);
        bad.labels.retain(|l| l.name != "__name__");
        let mut good = ts("y", &[(1, 1.0)]);
        good.exemplars.push(crate::proto::Exemplar {
            labels: vec![l("trace_id", "abc")],
            value: 1.0,
            timestamp: 1,
        });
        let r = ingest(
            &s,
            &WriteRequest {
                timeseries: vec![bad, good],
                metadata: vec![],
            },
        )
        .unwrap();
        assert_eq!(r.invalid_series_samples, 2);
        assert_eq!(r.exemplars_ignored, 1);
        assert_eq!(r.appended, 1);
    }
}
