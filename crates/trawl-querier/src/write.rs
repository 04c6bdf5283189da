//! `POST /api/v1/write`: Prometheus remote write 1.0, routed per series to R workers.
//!
//! Routing is rendezvous (highest random weight) hashing of the series' stable label hash
//! over the ids of the workers that are up: deterministic, the same on every querier, and a
//! worker joining or leaving moves only the series it gains or loses. Answers follow
//! Prometheus's receiver: 204 on success, 400 for undecodable bodies and refused samples,
//! 415 for other protocols, and 5xx only for what a retry may fix (a worker unreachable,
//! no worker up), so the sender retries exactly then.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use trawl_proto::v1;
use trawl_remote::RemoteError;

use crate::fanout::{FanOut, server_deadline, status_reason, store_client};

/// Largest decompressed write request, as `trawl-remote`'s default.
const MAX_DECODED: usize = 256 << 20;

/// The up to `r` owners of a series hash among `ids` (rendezvous hashing, pure): the ids
/// with the highest `xxh64(id, seed = hash)`, ties broken by id.
pub fn owners<'a>(hash: u64, ids: &[&'a str], r: usize) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &str)> = ids
        .iter()
        .map(|id| (xxhash_rust::xxh64::xxh64(id.as_bytes(), hash), *id))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(r).map(|(_, id)| id).collect()
}

/// The text Prometheus answers for a refused sample, by the worker's reason key.
fn rejection_text(reason: &str) -> String {
    match reason {
        "out_of_order" => "out of order sample".into(),
        "duplicate" => "duplicate sample for timestamp".into(),
        "too_old" => "out of bounds".into(),
        "too_far_in_future" => "out of bounds: timestamp is too far in the future".into(),
        other => other.replace('_', " "),
    }
}

fn text(status: StatusCode, msg: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{msg}\n"),
    )
        .into_response()
}

/// How one worker's part of a write ended.
enum Outcome {
    Ok { rejected: Option<String> },
    Invalid(String),
    Retriable(String),
}

/// Decodes, routes and forwards one remote-write request.
pub async fn handle(fanout: Arc<FanOut>, headers: HeaderMap, body: Bytes) -> Response {
    let metrics = fanout.metrics().clone();
    metrics.write_requests.inc();
    let resp = handle_inner(&fanout, &headers, body).await;
    if !resp.status().is_success() {
        metrics.write_failures.inc();
    }
    resp
}

async fn handle_inner(fanout: &FanOut, headers: &HeaderMap, body: Bytes) -> Response {
    let h = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let checked = trawl_remote::write::check_content_type(h(header::CONTENT_TYPE))
        .and_then(|()| trawl_remote::write::check_content_encoding(h(header::CONTENT_ENCODING)));
    if let Err(e) = checked {
        tracing::error!(error = %e, "error decoding remote write request");
        return e.into_response();
    }
    let req = match trawl_remote::write::decode_write_request(&body, MAX_DECODED) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "error decoding remote write request");
            return e.into_response();
        }
    };
    let Some(view) = fanout.membership().snapshot() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "querier has no cluster state yet".into(),
        );
    };
    let up = view.up_ids();
    if up.is_empty() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no worker is up".into());
    }
    let r = usize::try_from(view.replication_factor)
        .unwrap_or(1)
        .clamp(1, up.len());
    let mut per_worker: BTreeMap<&str, Vec<v1::TimeSeries>> = BTreeMap::new();
    for ts in &req.timeseries {
        // Series Prometheus would skip (no name, empty or repeated label names) are skipped.
        let Some(labels) = trawl_remote::write::series_labels(&ts.labels) else {
            continue;
        };
        if ts.samples.is_empty() {
            continue;
        }
        let wire = v1::TimeSeries {
            labels: trawl_proto::labels_to_proto(&labels),
            samples: ts
                .samples
                .iter()
                .map(|s| v1::Sample {
                    timestamp_ms: s.timestamp,
                    value: Some(s.value),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        for id in owners(labels.stable_hash(), &up, r) {
            per_worker.entry(id).or_default().push(wire.clone());
        }
    }
    let timeout = fanout.options().shard_timeout;
    let calls = per_worker.into_iter().filter_map(|(id, series)| {
        let w = view.workers.iter().find(|w| w.id == id)?.clone();
        let samples: usize = series.iter().map(|s| s.samples.len()).sum();
        let metrics = fanout.metrics().clone();
        Some(async move {
            let mut c = store_client(&w);
            let mut req = tonic::Request::new(v1::WriteRequest {
                series,
                ..Default::default()
            });
            req.set_timeout(server_deadline(timeout));
            let out = match tokio::time::timeout(timeout, c.write(req)).await {
                Err(_) => {
                    Outcome::Retriable(format!("worker {} ({}): timed out", w.id, w.grpc_address))
                }
                Ok(Err(s)) if s.code() == tonic::Code::InvalidArgument => {
                    Outcome::Invalid(status_reason(&s))
                }
                Ok(Err(s)) => Outcome::Retriable(format!(
                    "worker {} ({}): {}",
                    w.id,
                    w.grpc_address,
                    status_reason(&s)
                )),
                Ok(Ok(resp)) => {
                    metrics.write_samples.add(samples as u64);
                    let resp = resp.into_inner();
                    let rejected = resp
                        .samples_rejected
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(k, _)| k.clone())
                        .min()
                        .map(|k| rejection_text(&k));
                    Outcome::Ok { rejected }
                }
            };
            (w, out)
        })
    });
    let mut invalid = None;
    let mut retriable = None;
    for (w, out) in join_all(calls).await {
        match out {
            Outcome::Ok { rejected: None } => {}
            Outcome::Ok { rejected: Some(r) } | Outcome::Invalid(r) => {
                tracing::error!(worker = %w.id, error = %r, "remote write samples refused");
                invalid.get_or_insert(r);
            }
            Outcome::Retriable(r) => {
                tracing::error!(worker = %w.id, error = %r, "remote write forwarding failed");
                retriable.get_or_insert(r);
            }
        }
    }
    // A retry fixes an unreachable worker; the refused samples would be refused again.
    if let Some(r) = retriable {
        return text(StatusCode::SERVICE_UNAVAILABLE, r);
    }
    if let Some(r) = invalid {
        return RemoteError::Rejected(r).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_deterministic_distinct_and_stable_on_join() {
        let ids = ["w1", "w2", "w3", "w4"];
        for h in 0..500u64 {
            let hash = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let o = owners(hash, &ids, 2);
            assert_eq!(o.len(), 2);
            assert_ne!(o[0], o[1]);
            let mut shuffled = ids;
            shuffled.reverse();
            assert_eq!(owners(hash, &shuffled, 2), o);
            // A fifth worker only takes ownership; it never reorders the others.
            let grown = owners(hash, &["w1", "w2", "w3", "w4", "w5"], 2);
            let kept: Vec<&str> = grown.iter().copied().filter(|i| *i != "w5").collect();
            assert!(o.starts_with(&kept), "{o:?} vs {grown:?}");
        }
        assert_eq!(owners(1, &ids, 9).len(), 4);
        assert!(owners(1, &[], 2).is_empty());
    }

    #[test]
    fn owners_spread_over_workers() {
        let ids = ["a", "b", "c"];
        let mut counts = BTreeMap::new();
        for h in 0..3000u64 {
            *counts.entry(owners(h, &ids, 1)[0]).or_insert(0) += 1;
        }
        for id in ids {
            let n = counts.get(id).copied().unwrap_or(0);
            assert!((700..1300).contains(&n), "{id}: {n}");
        }
    }

    #[test]
    fn rejection_texts_are_prometheus() {
        assert_eq!(rejection_text("out_of_order"), "out of order sample");
        assert_eq!(rejection_text("too_old"), "out of bounds");
    }
}
