//! The pure part of a scrape: parsed body → labels → limits → storage appender, with the
//! per-target series cache and staleness bookkeeping. No I/O, no clock.

use std::collections::{HashMap, HashSet};

use trawl_config::{Limits, RelabelRules};
use trawl_exposition::{Entry, Format, Parser, ParserOptions};
use trawl_model::{Labels, LabelsBuilder, METRIC_NAME, STALE_NAN};
use trawl_relabel::Relabeler;
use trawl_storage::{Appender, SeriesRef};

use crate::ScrapeError;

/// Fixed per-target settings the append step needs.
#[derive(Debug, Clone)]
pub struct AppendContext {
    /// Labels of the target attached to every sample.
    pub target_labels: Labels,
    /// Keep scraped labels on conflict instead of renaming them `exported_*`.
    pub honor_labels: bool,
    /// Use timestamps from the body.
    pub honor_timestamps: bool,
    /// Write staleness markers for series with explicit timestamps too.
    pub track_timestamps_staleness: bool,
    /// `metric_relabel_configs`.
    pub metric_relabel: RelabelRules,
    /// Limits (0 = none).
    pub limits: Limits,
}

/// A cached series: its storage reference (`None`: dropped by metric relabeling) and
/// whether staleness is tracked for it (no explicit timestamp, or tracking asked), packed
/// into one word (storage refs start at 1, so 0 is free for "dropped").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheEntry(u64);

const TRACK_BIT: u64 = 1 << 63;

impl CacheEntry {
    fn new(sref: Option<SeriesRef>, track: bool) -> Self {
        let r = sref.map_or(0, |r| r.0 & !TRACK_BIT);
        CacheEntry(if track && r != 0 { r | TRACK_BIT } else { r })
    }

    fn sref(self) -> Option<SeriesRef> {
        let r = self.0 & !TRACK_BIT;
        (r != 0).then_some(SeriesRef(r))
    }

    /// The reference when staleness is tracked for the series.
    fn tracked(self) -> Option<SeriesRef> {
        if self.0 & TRACK_BIT != 0 {
            self.sref()
        } else {
            None
        }
    }
}

/// The cache key of a series: XXH3-128 of its raw text (`name{labels}` as exposed).
///
/// Why a hash and not the text (Prometheus keys by the string): the text keys were a heap
/// allocation per series and a cache-cold `memcmp` per sample, together over a quarter of the
/// scrape CPU with 500 targets × 1000 series, and ~60 bytes per series of memory. Two
/// different texts of one target colliding on 128 bits has probability about `n² / 2¹²⁹`
/// (below 1e-26 for a million series), far below the rate of undetected memory errors.
type SeriesKey = u128;

fn series_key(raw: &[u8]) -> SeriesKey {
    xxhash_rust::xxh3::xxh3_128(raw)
}

/// rustc-hash's Fx hasher for the cache and the seen sets: the keys are already uniform
/// (XXH3) or storage-assigned refs, so SipHash's DoS resistance buys nothing, and it was a
/// visible share of the per-sample cost.
type Mix = rustc_hash::FxBuildHasher;

/// Per-target cache from raw series text to its storage reference, plus the series of the
/// last successful scrape in body order. The cache is valid for one config: a changed
/// config starts a new loop and a new cache.
///
/// Why the ordered list next to the map: exporters write their series in the same order
/// every scrape, so the series at position `i` is almost always the one that was at `i`
/// last time. Checking that first walks memory sequentially; the map (a cache-cold random
/// access per sample, most of the per-sample cost with 500 targets × 1000 series) is only
/// consulted when the order changes. When the whole body matched in order, the set of
/// series is the same as last time and no staleness bookkeeping is needed either.
#[derive(Debug, Default)]
pub struct ScrapeCache {
    series: HashMap<SeriesKey, CacheEntry, Mix>,
    order: Vec<(SeriesKey, CacheEntry)>,
    next: Vec<(SeriesKey, CacheEntry)>,
    report_refs: HashMap<&'static str, SeriesRef>,
    relabeler: Relabeler,
    failed_stats: AppendStats,
    steady: bool,
}

/// What one append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Samples in the body.
    pub scraped: u64,
    /// Samples left after metric relabeling.
    pub post_relabel: u64,
    /// Series not seen before by this target.
    pub series_added: u64,
    /// Staleness markers written.
    pub stale_markers: u64,
}

impl ScrapeCache {
    /// Number of cached series (dropped ones included).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Whether the last scrape succeeded with every series found in the order of the one
    /// before: the next scrape of an unchanged target creates no series.
    pub fn is_steady(&self) -> bool {
        self.steady
    }

    /// Appends every sample of `body` at default timestamp `t`, then staleness markers for
    /// series of the previous scrape that are absent now. On error nothing is committed by
    /// this function; the caller rolls back and calls [`ScrapeCache::append_failed`].
    pub fn append_body(
        &mut self,
        app: &mut dyn Appender,
        ctx: &AppendContext,
        body: &[u8],
        format: Format,
        t: i64,
    ) -> Result<AppendStats, ScrapeError> {
        let mut stats = AppendStats::default();
        let mut added: Vec<SeriesKey> = Vec::new();
        self.next.clear();
        self.failed_stats = AppendStats::default();
        self.steady = false;
        let res = self.append_inner(app, ctx, body, format, t, &mut stats, &mut added);
        let res = match res {
            Ok(_)
                if ctx.limits.sample_limit > 0 && stats.post_relabel > ctx.limits.sample_limit =>
            {
                Err(ScrapeError::SampleLimit)
            }
            r => r,
        };
        let in_order = match res {
            Ok(in_order) => in_order,
            Err(e) => {
                // Series created by a rolled-back scrape must not stay cached.
                for k in added {
                    self.series.remove(&k);
                }
                self.next.clear();
                self.failed_stats = stats;
                return Err(e);
            }
        };
        if !in_order {
            let now: HashSet<SeriesRef, Mix> =
                self.next.iter().filter_map(|(_, e)| e.tracked()).collect();
            let mut gone: HashSet<SeriesRef, Mix> = HashSet::default();
            for r in self.order.iter().filter_map(|(_, e)| e.tracked()) {
                if !now.contains(&r) && gone.insert(r) {
                    app.append(r, t, STALE_NAN)?;
                    stats.stale_markers += 1;
                }
            }
        }
        std::mem::swap(&mut self.order, &mut self.next);
        self.next.clear();
        self.steady = in_order;
        Ok(stats)
    }

    /// Counts of the last failed [`ScrapeCache::append_body`]: over `sample_limit` the
    /// body is still read to the end, so, as in Prometheus, the report shows how many
    /// samples the target exposed (zero for parse errors that stop early).
    pub fn failed_stats(&self) -> AppendStats {
        self.failed_stats
    }

    /// Appends the body's samples; returns whether every series matched the previous
    /// scrape's order exactly (same series, same order, same count).
    #[allow(clippy::too_many_arguments)]
    fn append_inner(
        &mut self,
        app: &mut dyn Appender,
        ctx: &AppendContext,
        body: &[u8],
        format: Format,
        t: i64,
        stats: &mut AppendStats,
        added: &mut Vec<SeriesKey>,
    ) -> Result<bool, ScrapeError> {
        // Lazy labels: a series found in the cache never has its labels parsed.
        let mut parser = Parser::new(body, format, ParserOptions::default()).lazy_labels(true);
        let limit = ctx.limits.sample_limit;
        let mut pos = 0usize;
        let mut in_order = true;
        loop {
            let (key, value, timestamp_ms) = match parser.next_entry() {
                None => break,
                Some(entry) => {
                    let entry = entry.map_err(|e| ScrapeError::Parse(e.to_string()))?;
                    let Entry::Series(s) = entry else { continue };
                    (series_key(s.raw), s.value, s.timestamp_ms)
                }
            };
            stats.scraped += 1;
            let cached = match self.order.get(pos) {
                Some(&(k, e)) if in_order && k == key => Some(e),
                _ => {
                    in_order = false;
                    self.series.get(&key).copied()
                }
            };
            let over = limit > 0 && stats.post_relabel >= limit;
            if over {
                // Past the limit nothing is stored and no series is created; only count
                // what metric relabeling keeps, as Prometheus's report does.
                let keeps = match cached {
                    Some(e) => e.sref().is_some(),
                    None => {
                        let s = parser
                            .parse_labels()
                            .map_err(|e| ScrapeError::Parse(e.to_string()))?;
                        self.relabeled(ctx, &s).is_some()
                    }
                };
                if keeps {
                    stats.post_relabel += 1;
                }
                continue;
            }
            let ts = match timestamp_ms {
                Some(ts) if ctx.honor_timestamps => ts,
                _ => t,
            };
            let entry = match cached {
                Some(e) => e,
                None => {
                    let s = parser
                        .parse_labels()
                        .map_err(|e| ScrapeError::Parse(e.to_string()))?;
                    let sref = match self.relabeled(ctx, &s) {
                        Some(l) => {
                            check_label_limits(&l, &ctx.limits)?;
                            Some(app.series_ref(&l)?)
                        }
                        None => None,
                    };
                    let e = CacheEntry::new(
                        sref,
                        timestamp_ms.is_none()
                            || !ctx.honor_timestamps
                            || ctx.track_timestamps_staleness,
                    );
                    self.series.insert(key, e);
                    if sref.is_some() {
                        stats.series_added += 1;
                    }
                    added.push(key);
                    e
                }
            };
            pos += 1;
            self.next.push((key, entry));
            let Some(sref) = entry.sref() else { continue };
            stats.post_relabel += 1;
            app.append(sref, ts, value)?;
        }
        Ok(in_order && pos == self.order.len())
    }

    /// The series' labels after target labels and metric relabeling; `None` if dropped.
    fn relabeled(
        &mut self,
        ctx: &AppendContext,
        s: &trawl_exposition::Series<'_, '_>,
    ) -> Option<Labels> {
        let mut b = LabelsBuilder::new(Labels::empty());
        b.set(METRIC_NAME, s.name);
        for l in s.labels {
            b.set(&l.name, &l.value);
        }
        attach_target_labels(&mut b, &ctx.target_labels, ctx.honor_labels);
        let lset = b.labels();
        if ctx.metric_relabel.is_empty() {
            Some(lset)
        } else {
            self.relabeler
                .relabel(&lset, ctx.metric_relabel.as_slice())
                .filter(|l| !l.is_empty())
        }
    }

    /// Bookkeeping after a failed scrape: every series of the last good scrape goes
    /// stale at `t`, as Prometheus does by appending an empty body.
    pub fn append_failed(&mut self, app: &mut dyn Appender, t: i64) -> Result<u64, ScrapeError> {
        self.append_all_stale(app, t)
    }

    /// Staleness markers for every series of the last scrape (target stopped).
    pub fn append_all_stale(&mut self, app: &mut dyn Appender, t: i64) -> Result<u64, ScrapeError> {
        self.steady = false;
        let mut n = 0;
        let mut done: HashSet<SeriesRef, Mix> = HashSet::default();
        for r in self.order.drain(..).filter_map(|(_, e)| e.tracked()) {
            if done.insert(r) {
                app.append(r, t, STALE_NAN)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Appends the synthetic series of one scrape.
    pub fn append_report(
        &mut self,
        app: &mut dyn Appender,
        ctx: &AppendContext,
        t: i64,
        report: &Report,
    ) -> Result<(), ScrapeError> {
        for (name, v) in report.values() {
            let r = self.report_ref(app, ctx, name)?;
            app.append(r, t, v)?;
        }
        Ok(())
    }

    /// Staleness markers for the synthetic series (target stopped).
    pub fn append_report_stale(
        &mut self,
        app: &mut dyn Appender,
        ctx: &AppendContext,
        t: i64,
    ) -> Result<(), ScrapeError> {
        for name in REPORT_NAMES {
            let r = self.report_ref(app, ctx, name)?;
            app.append(r, t, STALE_NAN)?;
        }
        Ok(())
    }

    fn report_ref(
        &mut self,
        app: &mut dyn Appender,
        ctx: &AppendContext,
        name: &'static str,
    ) -> Result<SeriesRef, ScrapeError> {
        if let Some(r) = self.report_refs.get(name) {
            return Ok(*r);
        }
        let mut b = LabelsBuilder::new(Labels::empty());
        b.set(METRIC_NAME, name);
        // Report series never carry scraped labels, so only `__name__` can conflict.
        attach_target_labels(&mut b, &ctx.target_labels, false);
        let r = app.series_ref(&b.labels())?;
        self.report_refs.insert(name, r);
        Ok(r)
    }
}

const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Values of the synthetic series of one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    /// Whether the scrape succeeded.
    pub up: bool,
    /// Scrape duration.
    pub duration_seconds: f64,
    /// Append statistics (all zero for a failed scrape).
    pub stats: AppendStats,
}

impl Report {
    fn values(&self) -> [(&'static str, f64); 5] {
        [
            ("up", if self.up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", self.duration_seconds),
            ("scrape_samples_scraped", self.stats.scraped as f64),
            (
                "scrape_samples_post_metric_relabeling",
                self.stats.post_relabel as f64,
            ),
            ("scrape_series_added", self.stats.series_added as f64),
        ]
    }
}

/// Attaches target labels. With `honor_labels` a scraped label wins; otherwise a scraped
/// label that clashes is kept as `exported_<name>` (prefixed again while that clashes too).
pub fn attach_target_labels(b: &mut LabelsBuilder, target: &Labels, honor_labels: bool) {
    for l in target.iter() {
        match b.get(&l.name).map(str::to_string) {
            None => b.set(&l.name, &l.value),
            Some(_) if honor_labels => {}
            Some(existing) => {
                let mut name = format!("exported_{}", l.name);
                while b.get(&name).is_some() {
                    name = format!("exported_{name}");
                }
                b.set(&name, &existing);
                b.set(&l.name, &l.value);
            }
        }
    }
    // Empty values mean "absent" in Prometheus.
    let empty: Vec<String> = {
        let mut v = Vec::new();
        b.for_each(|n, val| {
            if val.is_empty() {
                v.push(n.to_string());
            }
        });
        v
    };
    for n in empty {
        b.del(&n);
    }
}

/// Prometheus's label limit checks, with its error texts.
pub fn check_label_limits(l: &Labels, limits: &Limits) -> Result<(), ScrapeError> {
    let metric = trunc(l.metric_name());
    if limits.label_limit > 0 && l.len() as u64 > limits.label_limit {
        return Err(ScrapeError::Limit(format!(
            "label_limit exceeded (metric: {metric}, number of labels: {}, limit: {})",
            l.len(),
            limits.label_limit
        )));
    }
    for lb in l.iter() {
        if limits.label_name_length_limit > 0
            && lb.name.len() as u64 > limits.label_name_length_limit
        {
            return Err(ScrapeError::Limit(format!(
                "label_name_length_limit exceeded (metric: {metric}, label name: {}, length: {}, limit: {})",
                trunc(&lb.name),
                lb.name.len(),
                limits.label_name_length_limit
            )));
        }
        if limits.label_value_length_limit > 0
            && lb.value.len() as u64 > limits.label_value_length_limit
        {
            return Err(ScrapeError::Limit(format!(
                "label_value_length_limit exceeded (metric: {metric}, label name: {}, value: {:?}, length: {}, limit: {})",
                trunc(&lb.name),
                trunc(&lb.value),
                lb.value.len(),
                limits.label_value_length_limit
            )));
        }
    }
    Ok(())
}

/// Go's `%.50s`: at most 50 characters.
fn trunc(s: &str) -> &str {
    match s.char_indices().nth(50) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::{Matcher, Sample, is_stale_nan};
    use trawl_storage::mem::MemStorage;
    use trawl_storage::{SelectHints, Storage, StorageOptions};

    fn ctx() -> AppendContext {
        AppendContext {
            target_labels: Labels::from_pairs([("instance", "h:1"), ("job", "j")]),
            honor_labels: false,
            honor_timestamps: true,
            track_timestamps_staleness: false,
            metric_relabel: RelabelRules::default(),
            limits: Limits::default(),
        }
    }

    fn all(st: &MemStorage) -> Vec<(Labels, Vec<Sample>)> {
        let q = st.querier().expect("querier");
        let m = [Matcher::new(trawl_model::MatchOp::NotEqual, METRIC_NAME, "").expect("m")];
        q.select(&m, i64::MIN, i64::MAX, &SelectHints::default())
            .expect("select")
            .map(|s| {
                let s = s.expect("series");
                let v = s.samples().collect::<Result<Vec<_>, _>>().expect("samples");
                (s.labels.clone(), v)
            })
            .collect()
    }

    fn scrape(
        st: &MemStorage,
        cache: &mut ScrapeCache,
        c: &AppendContext,
        body: &str,
        t: i64,
    ) -> Result<AppendStats, ScrapeError> {
        let mut app = st.appender();
        match cache.append_body(app.as_mut(), c, body.as_bytes(), Format::PrometheusText, t) {
            Ok(s) => {
                app.commit().expect("commit");
                Ok(s)
            }
            Err(e) => {
                app.rollback();
                Err(e)
            }
        }
    }

    #[test]
    fn cache_hits_on_steady_state_and_stale_on_vanish() {
        let st = MemStorage::new(StorageOptions::default());
        let mut cache = ScrapeCache::default();
        let c = ctx();
        let s1 = scrape(&st, &mut cache, &c, "a 1\nb 2\n", 1000).expect("ok");
        assert_eq!((s1.scraped, s1.post_relabel, s1.series_added), (2, 2, 2));
        let s2 = scrape(&st, &mut cache, &c, "a 3\nb 4\n", 2000).expect("ok");
        assert_eq!((s2.series_added, s2.stale_markers), (0, 0));
        let s3 = scrape(&st, &mut cache, &c, "a 5\n", 3000).expect("ok");
        assert_eq!(s3.stale_markers, 1);
        let got = all(&st);
        let b = got.iter().find(|(l, _)| l.metric_name() == "b").expect("b");
        assert_eq!(b.1.len(), 3);
        assert!(is_stale_nan(b.1[2].v) && b.1[2].t == 3000);
        assert_eq!(
            b.0,
            Labels::from_pairs([("__name__", "b"), ("instance", "h:1"), ("job", "j")])
        );
    }

    #[test]
    fn reordered_bodies_use_the_map_and_mark_only_what_vanished() {
        let st = MemStorage::new(StorageOptions::default());
        let mut cache = ScrapeCache::default();
        let c = ctx();
        scrape(&st, &mut cache, &c, "a 1\nb 1\nc 1\n", 1000).expect("ok");
        assert!(!cache.is_steady(), "a first scrape creates series");
        let s = scrape(&st, &mut cache, &c, "a 2\nb 2\nc 2\n", 2000).expect("ok");
        assert_eq!((s.series_added, s.stale_markers), (0, 0));
        assert!(cache.is_steady());
        // Same series in another order: found through the map, nothing stale, not steady.
        let s = scrape(&st, &mut cache, &c, "c 3\na 3\nb 3\n", 3000).expect("ok");
        assert_eq!((s.series_added, s.stale_markers), (0, 0));
        assert!(!cache.is_steady());
        // One gone, one new, the rest shifted: exactly one marker.
        let s = scrape(&st, &mut cache, &c, "d 4\nc 4\nb 4\n", 4000).expect("ok");
        assert_eq!((s.series_added, s.stale_markers), (1, 1));
        // A prefix of the last body: in order so far, but shorter, so the tail goes stale.
        let s = scrape(&st, &mut cache, &c, "d 5\n", 5000).expect("ok");
        assert_eq!(s.stale_markers, 2);
        assert!(!cache.is_steady());
        let got = all(&st);
        let last = |n: &str| {
            let (_, v) = got
                .iter()
                .find(|(l, _)| l.metric_name() == n)
                .expect("series");
            *v.last().expect("samples")
        };
        assert!(is_stale_nan(last("a").v) && last("a").t == 4000);
        assert!(is_stale_nan(last("b").v) && last("b").t == 5000);
        assert!(is_stale_nan(last("c").v) && last("c").t == 5000);
        assert_eq!(last("d"), Sample::new(5000, 5.0));
    }

    #[test]
    fn a_series_twice_in_one_body_is_marked_stale_once() {
        let st = MemStorage::new(StorageOptions::default());
        let mut cache = ScrapeCache::default();
        let c = ctx();
        scrape(&st, &mut cache, &c, "a 1\na 1\nb 1\n", 1000).expect("ok");
        scrape(&st, &mut cache, &c, "a 1\na 1\nb 1\n", 2000).expect("ok");
        let s = scrape(&st, &mut cache, &c, "b 1\n", 3000).expect("ok");
        assert_eq!(s.stale_markers, 1);
        let mut app = st.appender();
        assert_eq!(cache.append_all_stale(app.as_mut(), 4000).expect("ok"), 1);
        app.commit().expect("commit");
    }

    #[test]
    fn honor_timestamps_and_explicit_timestamps_do_not_go_stale() {
        let st = MemStorage::new(StorageOptions::default());
        let mut cache = ScrapeCache::default();
        let c = ctx();
        scrape(&st, &mut cache, &c, "a 1 500\n", 1000).expect("ok");
        let s = scrape(&st, &mut cache, &c, "", 2000).expect("ok");
        assert_eq!(s.stale_markers, 0);
        assert_eq!(all(&st)[0].1, vec![Sample::new(500, 1.0)]);

        let st = MemStorage::new(StorageOptions::default());
        let mut cache = ScrapeCache::default();
        let c = AppendContext {
            honor_timestamps: false,
            ..ctx()
        };
        scrape(&st, &mut cache, &c, "a 1 500\n", 1000).expect("ok");
        let s = scrape(&st, &mut cache, &c, "", 2000).expect("ok");
        assert_eq!(s.stale_markers, 1);
        assert_eq!(all(&st)[0].1[0], Sample::new(1000, 1.0));
    }

    #[test]
    fn target_label_conflicts() {
        let mut b = LabelsBuilder::new(Labels::from_pairs([
            ("job", "inner"),
            ("exported_job", "x"),
            ("empty", ""),
        ]));
        attach_target_labels(&mut b, &Labels::from_pairs([("job", "j")]), false);
        assert_eq!(
            b.labels(),
            Labels::from_pairs([
                ("exported_exported_job", "inner"),
                ("exported_job", "x"),
                ("job", "j")
            ])
        );
        let mut b = LabelsBuilder::new(Labels::from_pairs([("job", "inner")]));
        attach_target_labels(
            &mut b,
            &Labels::from_pairs([("job", "j"), ("instance", "i")]),
            true,
        );
        assert_eq!(
            b.labels(),
            Labels::from_pairs([("instance", "i"), ("job", "inner")])
        );
    }

    #[test]
    fn failed_scrape_rolls_back_and_uncaches() {
        let st = MemStorage::new(StorageOptions::default());
        let mut cache = ScrapeCache::default();
        let c = AppendContext {
            limits: Limits {
                sample_limit: 1,
                ..Limits::default()
            },
            ..ctx()
        };
        scrape(&st, &mut cache, &c, "a 1\n", 1000).expect("ok");
        let e = scrape(&st, &mut cache, &c, "a 1\nb 2\n", 2000).expect_err("limit");
        assert_eq!(e.to_string(), "sample limit exceeded");
        assert_eq!(cache.len(), 1, "b must not stay cached");
        let f = cache.failed_stats();
        assert_eq!(
            (f.scraped, f.post_relabel),
            (2, 2),
            "the whole body is counted past the limit"
        );
        let mut app = st.appender();
        assert_eq!(cache.append_failed(app.as_mut(), 2000).expect("ok"), 1);
        app.commit().expect("commit");
        let got = all(&st);
        assert_eq!(got.len(), 1);
        assert!(is_stale_nan(got[0].1[1].v));
    }

    #[test]
    fn sample_limit_counts_only_what_metric_relabeling_keeps() {
        let st = MemStorage::new(StorageOptions::default());
        let mut cache = ScrapeCache::default();
        let cfg = trawl_config::load_str(
            "scrape_configs:\n  - job_name: j\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: drop_me\n        action: drop\n",
            std::path::Path::new("t.yml"),
            Default::default(),
        )
        .expect("config");
        let c = AppendContext {
            limits: Limits {
                sample_limit: 2,
                ..Limits::default()
            },
            metric_relabel: cfg.scrape_configs[0].metric_relabel_configs.clone(),
            ..ctx()
        };
        let body = "a 1\nb 1\nc 1\ndrop_me 1\nd 1\n";
        scrape(&st, &mut cache, &c, body, 1000).expect_err("limit");
        let f = cache.failed_stats();
        assert_eq!((f.scraped, f.post_relabel, f.series_added), (5, 4, 2));
        assert!(all(&st).is_empty(), "nothing of a failed scrape is stored");
    }

    #[test]
    fn label_limit_texts() {
        let l = Labels::from_pairs([("__name__", "m"), ("long_name", "vvvvv")]);
        let lim = |f: fn(&mut Limits)| {
            let mut x = Limits::default();
            f(&mut x);
            check_label_limits(&l, &x).map_err(|e| e.to_string())
        };
        assert_eq!(lim(|_| {}), Ok(()));
        assert_eq!(
            lim(|x| x.label_limit = 1),
            Err("label_limit exceeded (metric: m, number of labels: 2, limit: 1)".into())
        );
        assert_eq!(
            lim(|x| x.label_name_length_limit = 8),
            Err("label_name_length_limit exceeded (metric: m, label name: long_name, length: 9, limit: 8)".into())
        );
        assert_eq!(
            lim(|x| x.label_value_length_limit = 4),
            Err("label_value_length_limit exceeded (metric: m, label name: long_name, value: \"vvvvv\", length: 5, limit: 4)".into())
        );
        assert_eq!(trunc(&"x".repeat(60)).len(), 50);
    }
}
