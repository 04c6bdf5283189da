//! The fan-out: every read goes to every worker in parallel, each bounded by the shard
//! timeout; answers are decoded, merged per label set and deduplicated ([`crate::dedup`]).
//!
//! The engine and the metadata endpoints call in synchronously from tokio's blocking pool;
//! [`FanOut`] blocks that thread on the async fan-out through the runtime [`Handle`] it
//! captured at construction. It must not be called from a reactor thread.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::runtime::Handle;
use trawl_model::{Labels, Matcher, Sample};
use trawl_promql::{QueryError, Queryable, Series};
use trawl_proto::v1;
use trawl_web::LabelSource;

use crate::cluster::{ClusterView, Membership, Worker};
use crate::metrics::Metrics;

/// Largest message accepted from a shard (a Select batch).
const MAX_SHARD_MESSAGE: usize = 256 << 20;

/// How shard failures are handled.
#[derive(Debug, Clone)]
pub struct FanOutOptions {
    /// `--query.shard-timeout`: the longest one shard may take to answer.
    pub shard_timeout: Duration,
    /// `--query.partial-response`: answer from the shards that did answer, with a warning
    /// naming the others (true), or fail the query (false).
    pub partial_response: bool,
}

impl Default for FanOutOptions {
    fn default() -> Self {
        Self {
            shard_timeout: Duration::from_secs(30),
            partial_response: true,
        }
    }
}

/// A shard that did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFailure {
    /// Worker id.
    pub id: String,
    /// Its gRPC address.
    pub address: String,
    /// Why (error text or timeout).
    pub reason: String,
}

impl ShardFailure {
    /// The text shown in warnings and errors.
    pub fn message(&self) -> String {
        format!(
            "partial response: shard {} ({}) unavailable: {}",
            self.id, self.address, self.reason
        )
    }
}

/// What to do with a fan-out in which `failures` of `shards` shards did not answer, with
/// replication factor `rf` (pure; the rule of the crate docs).
///
/// - No failure: complete.
/// - With `min(rf, shards)` ≥ 2 and at most `min(rf, shards) - 1` failures: complete, since
///   every series has a copy on at least one shard that answered.
/// - Every shard failed: an error (an answer from nothing is not an answer).
/// - Otherwise partial: the warnings naming each missing shard, or with `allow_partial`
///   false an error with the same text.
pub fn partial_policy(
    failures: &[ShardFailure],
    shards: usize,
    rf: u32,
    allow_partial: bool,
) -> Result<Vec<String>, String> {
    if failures.is_empty() {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = failures.iter().map(ShardFailure::message).collect();
    if failures.len() >= shards {
        return Err(msgs.join("; "));
    }
    let effective = usize::try_from(rf).unwrap_or(usize::MAX).min(shards);
    if effective >= 2 && failures.len() < effective {
        return Ok(Vec::new());
    }
    if allow_partial {
        Ok(msgs)
    } else {
        Err(msgs.join("; "))
    }
}

/// The deadline sent to a shard (`grpc-timeout`): a little after the querier's own, so a
/// shard stops work it will not be thanked for, yet the querier's timeout always fires first
/// and names the timeout as such.
pub(crate) fn server_deadline(shard_timeout: Duration) -> Duration {
    shard_timeout.saturating_add(Duration::from_secs(1))
}

/// The reason text of a gRPC status from a shard.
pub(crate) fn status_reason(s: &tonic::Status) -> String {
    if s.message().is_empty() {
        s.code().description().to_string()
    } else {
        s.message().to_string()
    }
}

/// One shard's decoded series: (labels, samples in range) plus its warnings.
type ShardSeries = (Vec<(Labels, Vec<Sample>)>, Vec<String>);

/// The fan-out over the cluster's workers: PromQL's [`Queryable`] and the API's
/// [`LabelSource`].
#[derive(Debug, Clone)]
pub struct FanOut {
    membership: Arc<Membership>,
    handle: Handle,
    opts: FanOutOptions,
    metrics: Arc<Metrics>,
}

impl FanOut {
    /// A fan-out over `membership`'s workers; async work runs on `handle`'s runtime.
    pub fn new(
        membership: Arc<Membership>,
        handle: Handle,
        opts: FanOutOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            membership,
            handle,
            opts,
            metrics,
        }
    }

    /// The membership it fans out over.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// The options.
    pub fn options(&self) -> &FanOutOptions {
        &self.opts
    }

    /// The counters this fan-out updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn view(&self) -> Result<Arc<ClusterView>, String> {
        self.membership
            .snapshot()
            .ok_or_else(|| "querier has no cluster state yet".to_string())
    }

    /// Calls `f` on every worker at once, each bounded by the shard timeout; then applies
    /// [`partial_policy`]. Returns the answers (in worker order) and the warnings.
    pub async fn fan<T, F, Fut>(&self, f: F) -> Result<(Vec<T>, Vec<String>), String>
    where
        F: Fn(Worker) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let view = self.view()?;
        let timeout = self.opts.shard_timeout;
        let calls = view.workers.iter().map(|w| {
            let fut = f(w.clone());
            let m = &self.metrics;
            async move {
                m.shard_requests.inc();
                let r = match tokio::time::timeout(timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {}", fmt_duration(timeout))),
                };
                if r.is_err() {
                    m.shard_failures.inc();
                }
                (w, r)
            }
        });
        let mut ok = Vec::new();
        let mut failures = Vec::new();
        for (w, r) in join_all(calls).await {
            match r {
                Ok(v) => ok.push(v),
                Err(reason) => {
                    if w.up {
                        tracing::warn!(worker = %w.id, address = %w.grpc_address, error = %reason, "shard request failed");
                    } else {
                        tracing::debug!(worker = %w.id, address = %w.grpc_address, error = %reason, "down shard did not answer");
                    }
                    failures.push(ShardFailure {
                        id: w.id.clone(),
                        address: w.grpc_address.clone(),
                        reason,
                    });
                }
            }
        }
        let warnings = partial_policy(
            &failures,
            view.workers.len(),
            view.replication_factor,
            self.opts.partial_response,
        )
        .inspect_err(|_| self.metrics.failed_queries.inc())?;
        if !warnings.is_empty() {
            self.metrics.partial_responses.inc();
        }
        Ok((ok, warnings))
    }

    /// Store `Select` on every shard, decoded and merged: series sorted by labels.
    pub async fn select_async(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        skip_chunks: bool,
    ) -> Result<(Vec<Series>, Vec<String>), String> {
        let req = v1::SelectRequest {
            matchers: matchers.iter().map(v1::Matcher::from).collect(),
            min_time_ms: mint,
            max_time_ms: maxt,
            skip_chunks,
            ..Default::default()
        };
        let timeout = self.opts.shard_timeout;
        let (answers, mut warnings) = self
            .fan(|w| select_shard(w, req.clone(), mint, maxt, skip_chunks, timeout))
            .await?;
        let mut by_labels: BTreeMap<Labels, Vec<Vec<Sample>>> = BTreeMap::new();
        for (series, shard_warnings) in answers {
            for w in shard_warnings {
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            for (labels, samples) in series {
                by_labels.entry(labels).or_default().push(samples);
            }
        }
        let mut out = Vec::with_capacity(by_labels.len());
        for (labels, sources) in by_labels {
            if skip_chunks {
                out.push(Series {
                    labels,
                    samples: Vec::new(),
                });
                continue;
            }
            let samples = if sources.len() == 1 {
                sources.into_iter().next().unwrap_or_default()
            } else {
                let before: usize = sources.iter().map(Vec::len).sum();
                let merged = crate::dedup::dedup(&sources);
                self.metrics.dedup_series.inc();
                self.metrics
                    .dedup_samples_dropped
                    .add(before.saturating_sub(merged.len()) as u64);
                merged
            };
            if samples.is_empty() {
                continue;
            }
            out.push(Series { labels, samples });
        }
        Ok((out, warnings))
    }

    /// Blocks the calling (blocking-pool) thread on `fut`.
    fn block<T>(&self, fut: impl Future<Output = T>) -> T {
        self.handle.block_on(fut)
    }

    async fn label_names_async(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, String> {
        let req = v1::LabelNamesRequest {
            matchers: matchers.iter().map(v1::Matcher::from).collect(),
            min_time_ms: mint,
            max_time_ms: maxt,
            ..Default::default()
        };
        let (lists, _) = self
            .fan(|w| {
                let req = req.clone();
                async move {
                    let mut c = store_client(&w);
                    let mut r = tonic::Request::new(req);
                    r.set_timeout(server_deadline(self.opts.shard_timeout));
                    c.label_names(r)
                        .await
                        .map(|r| r.into_inner().names)
                        .map_err(|s| status_reason(&s))
                }
            })
            .await?;
        Ok(union(lists))
    }

    async fn label_values_async(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, String> {
        let req = v1::LabelValuesRequest {
            name: name.to_string(),
            matchers: matchers.iter().map(v1::Matcher::from).collect(),
            min_time_ms: mint,
            max_time_ms: maxt,
            ..Default::default()
        };
        let (lists, _) = self
            .fan(|w| {
                let req = req.clone();
                async move {
                    let mut c = store_client(&w);
                    let mut r = tonic::Request::new(req);
                    r.set_timeout(server_deadline(self.opts.shard_timeout));
                    c.label_values(r)
                        .await
                        .map(|r| r.into_inner().values)
                        .map_err(|s| status_reason(&s))
                }
            })
            .await?;
        Ok(union(lists))
    }
}

fn union(lists: Vec<Vec<String>>) -> Vec<String> {
    let set: BTreeSet<String> = lists.into_iter().flatten().collect();
    set.into_iter().collect()
}

/// `30s`, `1.5s`, `250ms`: how durations read in messages.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

pub(crate) fn store_client(w: &Worker) -> v1::store_client::StoreClient<tonic::transport::Channel> {
    v1::store_client::StoreClient::new(w.channel.clone())
        .max_decoding_message_size(MAX_SHARD_MESSAGE)
        .max_encoding_message_size(MAX_SHARD_MESSAGE)
}

/// One shard's Select, its chunks decoded and restricted to `[mint, maxt]`. A chunk that
/// does not decode fails the shard: its answer cannot be trusted.
async fn select_shard(
    w: Worker,
    req: v1::SelectRequest,
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
    timeout: Duration,
) -> Result<ShardSeries, String> {
    let mut c = store_client(&w);
    let mut r = tonic::Request::new(req);
    r.set_timeout(server_deadline(timeout));
    let mut stream = c
        .select(r)
        .await
        .map_err(|s| status_reason(&s))?
        .into_inner();
    let mut series = Vec::new();
    let mut warnings = Vec::new();
    while let Some(msg) = stream.message().await.map_err(|s| status_reason(&s))? {
        warnings.extend(msg.warnings);
        for s in msg.series {
            let labels = trawl_proto::labels_from_proto(s.labels);
            if skip_chunks {
                series.push((labels, Vec::new()));
                continue;
            }
            series.push((labels.clone(), decode_series(labels, s.chunks, mint, maxt)?));
        }
    }
    Ok((series, warnings))
}

/// The samples in `[mint, maxt]` of a series' wire chunks.
pub fn decode_series(
    labels: Labels,
    chunks: Vec<v1::Chunk>,
    mint: i64,
    maxt: i64,
) -> Result<Vec<Sample>, String> {
    let mut cs = chunks
        .into_iter()
        .map(trawl_proto::chunk_from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("series {labels}: {e}"))?;
    // The series iterator expects chunks in time order; do not trust the peer for it.
    cs.sort_by_key(|c| (c.min_t, c.max_t));
    let s = trawl_storage::Series::new(labels, cs, mint, maxt);
    let mut out: Vec<Sample> = Vec::new();
    for x in s.samples() {
        let x = x.map_err(|e| format!("series {}: {e}", s.labels))?;
        // Overlapping chunks from a misbehaving peer: keep time strictly increasing.
        if out.last().is_none_or(|l| l.t < x.t) {
            out.push(x);
        }
    }
    Ok(out)
}

impl Queryable for FanOut {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let mut warnings = Vec::new();
        self.select_warn(matchers, mint, maxt, &mut warnings)
    }

    fn select_warn(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Series>, QueryError> {
        let (series, w) = self
            .block(self.select_async(matchers, mint, maxt, false))
            .map_err(QueryError::Storage)?;
        for x in w {
            if !warnings.contains(&x) {
                warnings.push(x);
            }
        }
        Ok(series)
    }
}

/// Metadata has no warnings channel in the HTTP API's [`LabelSource`]: with partial
/// responses allowed, missing shards are left out silently (counted in `/metrics`).
impl LabelSource for FanOut {
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, trawl_web::Error> {
        self.block(self.label_names_async(matchers, mint, maxt))
            .map_err(trawl_web::Error::Source)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, trawl_web::Error> {
        self.block(self.label_values_async(name, matchers, mint, maxt))
            .map_err(trawl_web::Error::Source)
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, trawl_web::Error> {
        let (series, _) = self
            .block(self.select_async(matchers, mint, maxt, true))
            .map_err(trawl_web::Error::Source)?;
        Ok(series.into_iter().map(|s| s.labels).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(id: &str) -> ShardFailure {
        ShardFailure {
            id: id.into(),
            address: format!("127.0.0.1:{}", id.len()),
            reason: "connection refused".into(),
        }
    }

    #[test]
    fn policy_follows_the_replication_rule() {
        assert_eq!(partial_policy(&[], 3, 1, false), Ok(vec![]));
        // R=1: any missing shard is a partial answer.
        let one = [fail("w2")];
        assert_eq!(
            partial_policy(&one, 3, 1, true),
            Ok(vec![
                "partial response: shard w2 (127.0.0.1:2) unavailable: connection refused".into()
            ])
        );
        assert_eq!(
            partial_policy(&one, 3, 1, false),
            Err("partial response: shard w2 (127.0.0.1:2) unavailable: connection refused".into())
        );
        // R=2: one missing shard is covered, two are not.
        assert_eq!(partial_policy(&one, 3, 2, false), Ok(vec![]));
        let two = [fail("w1"), fail("w2")];
        assert_eq!(partial_policy(&two, 3, 2, true).map(|w| w.len()), Ok(2));
        assert!(partial_policy(&two, 3, 2, false).is_err());
        assert_eq!(partial_policy(&two, 3, 3, false), Ok(vec![]));
        // R larger than the cluster counts as the cluster size.
        assert_eq!(partial_policy(&one, 2, 5, false), Ok(vec![]));
        assert!(partial_policy(&one, 1, 2, true).is_err());
        // Nothing answered: an error whatever the policy.
        assert!(partial_policy(&two, 2, 1, true).is_err());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn bad_chunks_fail_the_series() {
        let l = Labels::from_pairs([("__name__", "m")]);
        let bad = v1::Chunk {
            encoding: 0,
            ..Default::default()
        };
        let e = decode_series(l.clone(), vec![bad], 0, 10).expect_err("unknown encoding");
        assert!(e.contains("unknown chunk encoding"), "{e}");
        assert_eq!(decode_series(l, vec![], 0, 10), Ok(vec![]));
    }
}
