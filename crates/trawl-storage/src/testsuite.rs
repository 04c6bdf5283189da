//! The conformance suite every [`Storage`] implementation must pass.
//!
//! Each case takes a [`Factory`] and a scratch directory; [`storage_testsuite!`](crate::storage_testsuite) expands to
//! one `#[test]` per case. Expectations are computed from the written data (and, for
//! matchers, from [`Matcher::matches`] applied to the written label sets), not hard-coded.
//! The suite panics on failure, like any test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use trawl_model::{Labels, MatchOp, Matcher, STALE_NAN_BITS, Sample};

use crate::{Clock, RejectReason, SelectHints, SeriesRef, Storage, StorageError, StorageOptions};

/// Opens (or reopens) a store in a directory.
pub trait Factory {
    /// Opens the store kept in `dir` (creating it when empty).
    fn open(&self, dir: &Path, opts: StorageOptions) -> Result<Box<dyn Storage>, StorageError>;
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl TestDir {
    /// A fresh, empty directory under the system temp dir.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("trawl-storage-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create test dir");
        Self(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Expands to one `#[test]` per suite case for the factory expression.
#[macro_export]
macro_rules! storage_testsuite {
    ($factory:expr) => {
        $crate::storage_testsuite!(@cases $factory;
            roundtrip, chunk_boundaries, matchers, empty_value_semantics, staleness_bits,
            append_rules, retention, label_apis, time_range_filter, restart_recovery,
            rollback_and_unknown_refs, raw_chunks, head_gc, head_gc_restart, head_memory, size_retention);
    };
    (@cases $factory:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let dir = $crate::testsuite::TestDir::new(stringify!($case));
                let factory = $factory;
                $crate::testsuite::$case(&factory, dir.path());
                println!("storage suite case {} passed", stringify!($case));
            }
        )*
    };
}

/// A clock the test moves by hand.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock at `t`.
    pub fn new(t: i64) -> Self {
        Self(Arc::new(AtomicI64::new(t)))
    }
    /// Moves it.
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
    /// As a [`Clock`].
    pub fn clock(&self) -> Clock {
        let c = self.0.clone();
        Clock::from_fn(move || c.load(Ordering::SeqCst))
    }
}

/// Base timestamp of the suite's data (2023-11-14T22:13:20Z).
pub const T0: i64 = 1_700_000_000_000;

/// Options for the suite: the too-old window is widened so the fixtures may write series
/// whose time ranges differ by hours (`append_rules` tests the window itself).
fn opts(clock: &ManualClock) -> StorageOptions {
    StorageOptions {
        clock: clock.clock(),
        too_old_window_ms: 30 * 86_400_000,
        ..StorageOptions::default()
    }
}

fn lbl(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
    Matcher::new(op, n, v).expect("valid matcher")
}

/// Writes `(labels, samples)` in one commit per 100 timestamps; returns the refs.
fn write(s: &dyn Storage, data: &[(Labels, Vec<Sample>)]) -> Vec<SeriesRef> {
    let mut app = s.appender();
    let refs: Vec<SeriesRef> = data
        .iter()
        .map(|(l, _)| app.series_ref(l).expect("series_ref"))
        .collect();
    let max_len = data.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let mut i = 0;
    while i < max_len {
        for (r, (_, samples)) in refs.iter().zip(data) {
            for s in samples.iter().skip(i).take(100) {
                app.append(*r, s.t, s.v).expect("append");
            }
        }
        let rep = app.commit().expect("commit");
        assert_eq!(
            rep.rejected_total(),
            0,
            "unexpected rejection {:?}",
            rep.first_rejection
        );
        i += 100;
    }
    refs
}

/// Reads every matching series in range as (labels, samples as (t, bits)).
pub fn read(
    s: &dyn Storage,
    ms: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(Labels, Vec<(i64, u64)>)> {
    let q = s.querier().expect("querier");
    let set = q
        .select(ms, mint, maxt, &SelectHints::default())
        .expect("select");
    set.map(|r| {
        let series = r.expect("series");
        let samples = series
            .samples()
            .map(|x| x.map(|x| (x.t, x.v.to_bits())).expect("decode"))
            .collect();
        (series.labels.clone(), samples)
    })
    .collect()
}

fn bits(v: &[Sample]) -> Vec<(i64, u64)> {
    v.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

fn counter(n: usize, start: i64, step: i64) -> Vec<Sample> {
    (0..n as i64)
        .map(|i| Sample::new(start + i * step, (i * 7 % 13 + i * 3) as f64))
        .collect()
}

fn all() -> Vec<Matcher> {
    vec![m(MatchOp::RegexMatch, "__name__", ".+")]
}

/// Writes several series over many chunks and reads them back exactly, whole and by range.
pub fn roundtrip(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let data: Vec<(Labels, Vec<Sample>)> = (0..5)
        .map(|i| {
            let l = lbl(&[
                ("__name__", "up"),
                ("job", "node"),
                ("instance", &format!("host-{i}")),
            ]);
            let samples = (0..1000i64)
                .map(|k| Sample::new(T0 + k * 15_000 + i, (k as f64).sin() * 1e3 + i as f64))
                .collect::<Vec<_>>();
            (l, samples)
        })
        .collect();
    write(s.as_ref(), &data);
    let got = read(s.as_ref(), &all(), i64::MIN, i64::MAX);
    let mut want: Vec<(Labels, Vec<(i64, u64)>)> =
        data.iter().map(|(l, v)| (l.clone(), bits(v))).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    // Sub-ranges, including ones starting and ending mid-chunk.
    for (mint, maxt) in [
        (T0 + 1_000_000, T0 + 3_000_000),
        (T0 + 7_000_001, T0 + 7_000_002),
        (T0 - 5, T0 + 15_000),
    ] {
        let got = read(
            s.as_ref(),
            &[Matcher::equal("instance", "host-3")],
            mint,
            maxt,
        );
        let want: Vec<(i64, u64)> = bits(&data[3].1)
            .into_iter()
            .filter(|(t, _)| *t >= mint && *t <= maxt)
            .collect();
        if want.is_empty() {
            assert!(
                got.is_empty(),
                "series without samples in range must not be selected"
            );
        } else {
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].1, want);
        }
    }
    let met = s.metrics();
    assert_eq!(met.appended_samples, 5000);
    assert_eq!(met.head_series, 5);
    assert!(met.head_chunks >= 5);
}

/// Chunks are cut at the sample limit and at partition boundaries without losing samples.
pub fn chunk_boundaries(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let o = StorageOptions {
        chunk_samples: 7,
        partition_ms: 60_000,
        ..opts(&clock)
    };
    let s = f.open(dir, o).expect("open");
    // Irregular intervals: some cross a partition boundary, some land on it exactly.
    let mut t = T0 - T0 % 60_000 - 1;
    let mut samples = Vec::new();
    for k in 0..400i64 {
        samples.push(Sample::new(t, k as f64));
        t += [1, 13_000, 59_999, 60_000, 7, 1_000][k as usize % 6];
    }
    write(s.as_ref(), &[(lbl(&[("__name__", "x")]), samples.clone())]);
    let got = read(s.as_ref(), &all(), i64::MIN, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, bits(&samples));
    let q = s.querier().expect("querier");
    let set: Vec<_> = q
        .select(&all(), i64::MIN, i64::MAX, &SelectHints::default())
        .expect("select")
        .collect();
    let series = set.into_iter().next().expect("one").expect("ok");
    for c in series.chunks() {
        let ts: Vec<i64> = c
            .samples()
            .expect("chunk")
            .map(|x| x.expect("ok").t)
            .collect();
        assert!(ts.len() <= 7 && !ts.is_empty());
        assert_eq!((ts[0], ts[ts.len() - 1]), (c.min_t, c.max_t));
        assert_eq!(
            ts[0].div_euclid(60_000),
            c.max_t.div_euclid(60_000),
            "chunk crosses a partition"
        );
    }
}

fn matcher_fixture() -> Vec<(Labels, Vec<Sample>)> {
    let sets: Vec<Labels> = vec![
        lbl(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "200"),
            ("method", "get"),
        ]),
        lbl(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "500"),
            ("method", "post"),
        ]),
        lbl(&[
            ("__name__", "http_requests_total"),
            ("job", "web"),
            ("code", "200"),
        ]),
        lbl(&[("__name__", "up"), ("job", "api")]),
        lbl(&[("__name__", "up"), ("job", "web"), ("a", "x")]),
        lbl(&[("__name__", "up"), ("job", "db"), ("a", "")]),
        lbl(&[
            ("__name__", "node_cpu"),
            ("cpu", "0"),
            ("mode", "idle"),
            ("job", "node"),
        ]),
        lbl(&[
            ("__name__", "node_cpu"),
            ("cpu", "1"),
            ("mode", "idle"),
            ("job", "node"),
        ]),
        lbl(&[
            ("__name__", "node_cpu"),
            ("cpu", "10"),
            ("mode", "user"),
            ("job", "node"),
            ("a", "xx"),
        ]),
        lbl(&[("__name__", "weird"), ("job", "line\nbreak"), ("a", "ünï")]),
    ];
    sets.into_iter()
        .enumerate()
        .map(|(i, l)| (l, counter(10, T0 + i as i64, 15_000)))
        .collect()
}

fn check_matchers(s: &dyn Storage, data: &[(Labels, Vec<Sample>)], ms: &[Matcher]) -> usize {
    let got: Vec<Labels> = read(s, ms, i64::MIN, i64::MAX)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    let mut want: Vec<Labels> = data
        .iter()
        .filter(|(l, _)| ms.iter().all(|m| m.matches(l.get_or_empty(&m.name))))
        .map(|(l, _)| l.clone())
        .collect();
    want.sort();
    let shown: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
    assert_eq!(got, want, "matchers {shown:?}");
    got.len()
}

/// All four matcher kinds, alone and combined, against a brute-force evaluation.
pub fn matchers(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let data = matcher_fixture();
    write(s.as_ref(), &data);
    use MatchOp::*;
    let cases: Vec<Vec<Matcher>> = vec![
        vec![m(Equal, "__name__", "up")],
        vec![
            m(Equal, "__name__", "http_requests_total"),
            m(Equal, "code", "200"),
        ],
        vec![m(NotEqual, "job", "api")],
        vec![m(Equal, "__name__", "up"), m(NotEqual, "job", "api")],
        vec![m(RegexMatch, "__name__", "http_.*")],
        vec![
            m(RegexMatch, "__name__", "http_.*|up"),
            m(RegexMatch, "job", "a.i"),
        ],
        vec![m(RegexMatch, "code", "2..")],
        vec![m(RegexMatch, "code", "2")],
        vec![m(RegexMatch, "cpu", "1.*")],
        vec![m(RegexNoMatch, "__name__", "up|node_.+")],
        vec![m(RegexNoMatch, "job", ".*")],
        vec![m(RegexMatch, "job", ".*")],
        vec![m(RegexMatch, "job", "line.break")],
        vec![
            m(Equal, "__name__", "node_cpu"),
            m(RegexNoMatch, "mode", "idle"),
            m(NotEqual, "cpu", "0"),
        ],
        vec![m(RegexMatch, "a", "x+"), m(RegexMatch, "__name__", ".+")],
        vec![m(RegexMatch, "a", "ü.*")],
        vec![m(Equal, "nonexistent", "x")],
        vec![m(RegexMatch, "__name__", "(?i)UP")],
    ];
    let mut total = 0;
    for c in &cases {
        total += check_matchers(s.as_ref(), &data, c);
    }
    assert!(
        total > 20,
        "fixture selects too little to be meaningful ({total})"
    );
    // Explicit anchoring check: "2" must not match "200".
    assert!(
        read(
            s.as_ref(),
            &[m(RegexMatch, "code", "2")],
            i64::MIN,
            i64::MAX
        )
        .is_empty()
    );
}

/// `{a=""}` selects series without `a`, `{a!=""}` those with it, and regexes that accept
/// the empty string behave the same way.
pub fn empty_value_semantics(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let data = matcher_fixture();
    write(s.as_ref(), &data);
    use MatchOp::*;
    let without_a = data.iter().filter(|(l, _)| !l.has("a")).count();
    let with_a = data.len() - without_a;
    assert!(without_a > 0 && with_a > 0);
    let name = m(RegexMatch, "__name__", ".+");
    assert_eq!(
        check_matchers(s.as_ref(), &data, &[name.clone(), m(Equal, "a", "")]),
        without_a
    );
    assert_eq!(
        check_matchers(s.as_ref(), &data, &[m(NotEqual, "a", "")]),
        with_a
    );
    assert_eq!(
        check_matchers(s.as_ref(), &data, &[m(RegexMatch, "a", "x|")]),
        without_a + 1
    );
    assert_eq!(
        check_matchers(s.as_ref(), &data, &[m(RegexNoMatch, "a", "")]),
        with_a
    );
    assert_eq!(
        check_matchers(s.as_ref(), &data, &[m(RegexMatch, "a", ".+")]),
        with_a
    );
    assert_eq!(
        check_matchers(
            s.as_ref(),
            &data,
            &[name.clone(), m(RegexNoMatch, "a", ".+")]
        ),
        without_a
    );
    check_matchers(s.as_ref(), &data, &[name.clone(), m(NotEqual, "a", "x")]);
    check_matchers(s.as_ref(), &data, &[name, m(Equal, "nonexistent", "")]);
    // The explicitly empty `a=""` in the fixture was never stored as a label.
    let db = read(s.as_ref(), &[m(Equal, "job", "db")], i64::MIN, i64::MAX);
    assert_eq!(db.len(), 1);
    assert!(!db[0].0.has("a"));
}

/// Staleness markers, other NaN payloads, ±Inf and -0.0 come back bit for bit, and
/// duplicate detection compares bits.
pub fn staleness_bits(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let specials = [
        STALE_NAN_BITS,
        f64::NAN.to_bits(),
        0x7ff8_0000_dead_beef,
        0xfff8_0000_0000_0001,
        f64::INFINITY.to_bits(),
        f64::NEG_INFINITY.to_bits(),
        (-0.0f64).to_bits(),
        0.0f64.to_bits(),
        1.5f64.to_bits(),
        STALE_NAN_BITS,
    ];
    let samples: Vec<Sample> = (0..300)
        .map(|i| {
            Sample::new(
                T0 + i as i64 * 10_000,
                f64::from_bits(specials[i % specials.len()]),
            )
        })
        .collect();
    let refs = write(s.as_ref(), &[(lbl(&[("__name__", "s")]), samples.clone())]);
    let got = read(s.as_ref(), &all(), i64::MIN, i64::MAX);
    assert_eq!(got[0].1, bits(&samples));
    let last = samples[samples.len() - 1];
    let mut app = s.appender();
    // Same timestamp, same bits (stale marker): accepted as a no-op.
    app.append(refs[0], last.t, f64::from_bits(STALE_NAN_BITS))
        .expect("append");
    let rep = app.commit().expect("commit");
    assert_eq!(
        (rep.appended, rep.duplicates_ignored, rep.rejected_total()),
        (0, 1, 0)
    );
    // Same timestamp, an ordinary NaN: a different value.
    app.append(refs[0], last.t, f64::NAN).expect("append");
    let rep = app.commit().expect("commit");
    assert_eq!(rep.rejected(RejectReason::DuplicateSample), 1);
    assert_eq!(
        read(s.as_ref(), &all(), i64::MIN, i64::MAX)[0].1,
        bits(&samples)
    );
}

/// Out of order, duplicate, too old and too far in the future are rejected and counted.
pub fn append_rules(f: &dyn Factory, dir: &Path) {
    let now = T0 + 3_600_000 * 5;
    let clock = ManualClock::new(now);
    let o = StorageOptions {
        too_old_window_ms: 3_600_000,
        ..opts(&clock)
    };
    let (window, future) = (o.too_old_window_ms, o.max_future_ms);
    let s = f.open(dir, o).expect("open");
    let mut app = s.appender();
    let a = app.series_ref(&lbl(&[("__name__", "a")])).expect("ref");
    let b = app.series_ref(&lbl(&[("__name__", "b")])).expect("ref");
    assert_eq!(
        app.series_ref(&lbl(&[("__name__", "a")])).expect("ref"),
        a,
        "refs are stable"
    );
    let base = now - 1000;
    app.append(a, base, 1.0).expect("append");
    app.append(a, base + 10, 2.0).expect("append");
    app.append(a, base + 5, 3.0).expect("append"); // out of order within the batch
    app.append(a, base + 10, 4.0).expect("append"); // duplicate timestamp, new value
    app.append(a, base + 10, 2.0).expect("append"); // exact duplicate: ignored
    app.append(b, now + future + 1, 1.0).expect("append"); // too far in the future
    app.append(b, now + future, 1.0).expect("append"); // just acceptable
    app.append(b, base + 10 - window - 1, 1.0).expect("append"); // older than the window
    let rep = app.commit().expect("commit");
    assert_eq!(rep.appended, 3);
    assert_eq!(rep.duplicates_ignored, 1);
    assert_eq!(rep.rejected(RejectReason::OutOfOrder), 1);
    assert_eq!(rep.rejected(RejectReason::DuplicateSample), 1);
    assert_eq!(rep.rejected(RejectReason::TooFarInFuture), 1);
    assert_eq!(rep.rejected(RejectReason::TooOld), 1);
    assert_eq!(
        rep.first_rejection,
        Some((a, base + 5, RejectReason::OutOfOrder))
    );
    // Across batches as well.
    app.append(a, base + 9, 5.0).expect("append");
    let rep = app.commit().expect("commit");
    assert_eq!(rep.rejected(RejectReason::OutOfOrder), 1);
    let met = s.metrics();
    assert_eq!(met.appended_samples, 3);
    assert_eq!(met.rejected(RejectReason::OutOfOrder), 2);
    assert_eq!(met.rejected(RejectReason::DuplicateSample), 1);
    assert_eq!(met.rejected(RejectReason::TooFarInFuture), 1);
    assert_eq!(met.rejected(RejectReason::TooOld), 1);
    let got = read(s.as_ref(), &all(), i64::MIN, i64::MAX);
    assert_eq!(
        got[0].1,
        vec![(base, 1.0f64.to_bits()), (base + 10, 2.0f64.to_bits())]
    );
    assert_eq!(got[1].1, vec![(now + future, 1.0f64.to_bits())]);
}

/// Retention hides everything older than now - retention, drops whole partitions, rejects
/// new samples behind the watermark and survives a restart.
pub fn retention(f: &dyn Factory, dir: &Path) {
    let day = 86_400_000i64;
    let clock = ManualClock::new(T0 + 3 * day);
    let o = StorageOptions {
        retention_ms: day,
        too_old_window_ms: 10 * day,
        ..opts(&clock)
    };
    let s = f.open(dir, o.clone()).expect("open");
    let samples = counter(3 * 24 * 60, T0, 60_000); // three days, one per minute
    let data = vec![(lbl(&[("__name__", "r"), ("job", "j")]), samples.clone())];
    let refs = write(s.as_ref(), &data);
    let before = s.metrics().retention_runs;
    let rep = s.apply_retention().expect("retention");
    let cutoff = T0 + 2 * day;
    assert_eq!(rep.watermark, cutoff);
    assert!(
        rep.dropped > 0,
        "whole partitions older than the cutoff must be dropped"
    );
    assert_eq!(s.metrics().retention_runs, before + 1);
    let want: Vec<(i64, u64)> = bits(&samples)
        .into_iter()
        .filter(|(t, _)| *t >= cutoff)
        .collect();
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX)[0].1, want);
    assert!(read(s.as_ref(), &all(), T0, cutoff - 1).is_empty());
    let mut app = s.appender();
    app.append(refs[0], cutoff - 1, 1.0).expect("append");
    assert_eq!(
        app.commit().expect("commit").rejected(RejectReason::TooOld),
        1
    );
    drop(app);
    drop(s);
    let s = f.open(dir, o).expect("reopen");
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX)[0].1, want);
}

/// label_names, label_values and series, with and without matchers and ranges.
pub fn label_apis(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let data = matcher_fixture();
    write(s.as_ref(), &data);
    let q = s.querier().expect("querier");
    let mut names: Vec<String> = data
        .iter()
        .flat_map(|(l, _)| l.iter().map(|l| l.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        q.label_names(&[], i64::MIN, i64::MAX).expect("names"),
        names
    );
    let mut jobs: Vec<String> = data
        .iter()
        .filter_map(|(l, _)| l.get("job").map(str::to_string))
        .collect();
    jobs.sort();
    jobs.dedup();
    assert_eq!(
        q.label_values("job", &[], i64::MIN, i64::MAX)
            .expect("values"),
        jobs
    );
    let up = [Matcher::equal("__name__", "up")];
    let mut up_jobs: Vec<String> = data
        .iter()
        .filter(|(l, _)| l.metric_name() == "up")
        .filter_map(|(l, _)| l.get("job").map(str::to_string))
        .collect();
    up_jobs.sort();
    assert_eq!(
        q.label_values("job", &up, i64::MIN, i64::MAX)
            .expect("values"),
        up_jobs
    );
    let mut up_names: Vec<String> = data
        .iter()
        .filter(|(l, _)| l.metric_name() == "up")
        .flat_map(|(l, _)| l.iter().map(|l| l.name.clone()))
        .collect();
    up_names.sort();
    up_names.dedup();
    assert_eq!(
        q.label_names(&up, i64::MIN, i64::MAX).expect("names"),
        up_names
    );
    assert!(
        q.label_values("nonexistent", &[], i64::MIN, i64::MAX)
            .expect("values")
            .is_empty()
    );
    let mut up_series: Vec<Labels> = data
        .iter()
        .filter(|(l, _)| l.metric_name() == "up")
        .map(|(l, _)| l.clone())
        .collect();
    up_series.sort();
    assert_eq!(
        q.series(&up, i64::MIN, i64::MAX).expect("series"),
        up_series
    );
    // A range with no data yields nothing.
    assert!(
        q.label_names(&[], T0 - 10_000, T0 - 1)
            .expect("names")
            .is_empty()
    );
    assert!(
        q.label_values("job", &[], T0 + 86_400_000, i64::MAX)
            .expect("values")
            .is_empty()
    );
    assert!(
        q.series(&up, T0 + 86_400_000, i64::MAX)
            .expect("series")
            .is_empty()
    );
}

/// Series without a sample in the query range are not selected; samples outside it are cut.
pub fn time_range_filter(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let early = counter(100, T0, 15_000);
    let late = counter(100, T0 + 10_000_000, 15_000);
    let gap = vec![Sample::new(T0, 1.0), Sample::new(T0 + 20_000_000, 2.0)];
    let data = vec![
        (lbl(&[("__name__", "m"), ("w", "early")]), early.clone()),
        (lbl(&[("__name__", "m"), ("w", "late")]), late.clone()),
        (lbl(&[("__name__", "m"), ("w", "gap")]), gap),
    ];
    write(s.as_ref(), &data);
    let got = read(s.as_ref(), &all(), T0 + 10_000_000, T0 + 10_030_000);
    assert_eq!(got.len(), 1, "only the late series has samples in range");
    assert_eq!(got[0].1, bits(&late[..3]));
    let got = read(s.as_ref(), &all(), T0 + 100_000, T0 + 200_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.get("w"), Some("early"));
    // The gap series' chunk spans this range but has no sample in it.
    assert!(read(s.as_ref(), &all(), T0 + 1, T0 + 1_000).is_empty());
    let got = read(s.as_ref(), &all(), T0 + 19_000_000, T0 + 20_000_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.get("w"), Some("gap"));
}

/// Everything acknowledged is there after reopening, with or without a flush; references and
/// append rules carry over.
pub fn restart_recovery(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let data: Vec<(Labels, Vec<Sample>)> = (0..20)
        .map(|i| {
            (
                lbl(&[("__name__", "rr"), ("i", &i.to_string())]),
                counter(500, T0 + i, 15_000),
            )
        })
        .collect();
    let refs = {
        let s = f.open(dir, opts(&clock)).expect("open");
        write(s.as_ref(), &data[..10])
    };
    let mut want: Vec<(Labels, Vec<(i64, u64)>)> = data[..10]
        .iter()
        .map(|(l, v)| (l.clone(), bits(v)))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    {
        let s = f.open(dir, opts(&clock)).expect("reopen without flush");
        assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), want);
        let mut app = s.appender();
        for (i, (l, _)) in data[..10].iter().enumerate() {
            assert_eq!(
                app.series_ref(l).expect("ref"),
                refs[i],
                "series refs survive a restart"
            );
        }
        // The newest timestamp survives too: older samples are still out of order.
        app.append(refs[0], data[0].1[400].t, 99.0).expect("append");
        assert_eq!(
            app.commit()
                .expect("commit")
                .rejected(RejectReason::OutOfOrder),
            1
        );
        drop(app);
        write(s.as_ref(), &data[10..]);
        s.flush().expect("flush");
        // Appends after the flush must also survive.
        let mut app = s.appender();
        let r = app.series_ref(&data[0].0).expect("ref");
        app.append(r, T0 + 600 * 15_000, 12345.0).expect("append");
        assert_eq!(app.commit().expect("commit").appended, 1);
    }
    let mut want: Vec<(Labels, Vec<(i64, u64)>)> =
        data.iter().map(|(l, v)| (l.clone(), bits(v))).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = want.iter_mut().find(|(l, _)| *l == data[0].0) {
        w.1.push((T0 + 600 * 15_000, 12345.0f64.to_bits()));
    }
    let s = f.open(dir, opts(&clock)).expect("reopen after flush");
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), want);
    assert_eq!(s.metrics().head_series, 20);
}

/// Rolled-back samples are not stored; unknown references and empty label sets are refused.
pub fn rollback_and_unknown_refs(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let mut app = s.appender();
    let r = app.series_ref(&lbl(&[("__name__", "x")])).expect("ref");
    app.append(r, T0, 1.0).expect("append");
    app.rollback();
    assert_eq!(app.commit().expect("commit").appended, 0);
    assert!(read(s.as_ref(), &all(), i64::MIN, i64::MAX).is_empty());
    assert!(matches!(
        app.append(SeriesRef(r.0 + 1000), T0, 1.0),
        Err(StorageError::UnknownSeries(_))
    ));
    assert!(matches!(
        app.append(SeriesRef(0), T0, 1.0),
        Err(StorageError::UnknownSeries(_))
    ));
    assert!(matches!(
        app.series_ref(&Labels::empty()),
        Err(StorageError::InvalidSeries(_))
    ));
    app.append_batch(&[(r, Sample::new(T0, 1.0)), (r, Sample::new(T0 + 1, 2.0))])
        .expect("batch");
    assert_eq!(app.commit().expect("commit").appended, 2);
}

/// The raw chunks of a selected series decode to exactly its samples.
pub fn raw_chunks(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, opts(&clock)).expect("open");
    let samples = counter(1000, T0, 15_000);
    write(s.as_ref(), &[(lbl(&[("__name__", "c")]), samples.clone())]);
    let q = s.querier().expect("querier");
    let series: Vec<_> = q
        .select(&all(), i64::MIN, i64::MAX, &SelectHints::default())
        .expect("select")
        .collect::<Result<_, _>>()
        .expect("ok");
    assert_eq!(series.len(), 1);
    let chunks = series[0].chunks();
    assert!(chunks.len() >= 1000 / 120);
    let mut decoded = Vec::new();
    for w in chunks.windows(2) {
        assert!(w[0].max_t < w[1].min_t, "chunks sorted and disjoint");
    }
    for c in chunks {
        for x in c.samples().expect("chunk") {
            decoded.push(x.expect("sample"));
        }
    }
    assert_eq!(bits(&decoded), bits(&samples));
    let limited = q
        .select(
            &[m(MatchOp::RegexMatch, "__name__", ".*")],
            i64::MIN,
            i64::MAX,
            &SelectHints {
                limit: Some(0),
                ..Default::default()
            },
        )
        .expect("select")
        .count();
    assert_eq!(limited, 0);
}

/// Options for the GC cases: Prometheus-like windows (1 h too old, 2 h GC).
fn gc_opts(clock: &ManualClock) -> StorageOptions {
    StorageOptions {
        clock: clock.clock(),
        too_old_window_ms: 3_600_000,
        head_gc_after_ms: 2 * 3_600_000,
        ..StorageOptions::default()
    }
}

/// Fixture for the GC cases: `idle` stops after 30 min, `busy` runs 5 h, `empty` never gets
/// a sample.
fn gc_fixture() -> Vec<(Labels, Vec<Sample>)> {
    vec![
        (
            lbl(&[("__name__", "g"), ("s", "idle")]),
            counter(120, T0, 15_000),
        ),
        (
            lbl(&[("__name__", "g"), ("s", "busy")]),
            counter(1200, T0, 15_000),
        ),
        (lbl(&[("__name__", "g"), ("s", "empty")]), Vec::new()),
    ]
}

/// Head GC drops idle (and sample-less) series from memory only: their data stays readable,
/// their cached refs stay valid and bring them back, samples older than what they stored are
/// still refused, and new series never reuse their ids.
pub fn head_gc(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 6 * 3_600_000);
    let s = f.open(dir, gc_opts(&clock)).expect("open");
    let data = gc_fixture();
    let refs = write(s.as_ref(), &data);
    let before = read(s.as_ref(), &all(), i64::MIN, i64::MAX);
    assert_eq!(s.metrics().head_series, 3);
    let busy_last = data[1].1.last().expect("busy").t;
    let rep = s.gc_head().expect("gc");
    assert_eq!(rep.cutoff, busy_last - 2 * 3_600_000);
    assert_eq!((rep.removed, rep.remaining), (2, 1));
    let met = s.metrics();
    assert_eq!(met.head_series, 1);
    assert_eq!(met.head_series_removed, 2);
    assert_eq!(met.head_chunks, 1);
    // Everything is still readable, through every read API.
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), before);
    let q = s.querier().expect("querier");
    assert_eq!(
        q.label_values("s", &[], i64::MIN, i64::MAX)
            .expect("values"),
        vec!["busy".to_string(), "idle".to_string()]
    );
    drop(q);
    // Refs survive: series_ref finds the same ids, new series get new ones.
    let mut app = s.appender();
    for (r, (l, _)) in refs.iter().zip(&data) {
        assert_eq!(app.series_ref(l).expect("ref"), *r);
    }
    let fresh = app
        .series_ref(&lbl(&[("__name__", "g"), ("s", "new")]))
        .expect("ref");
    assert!(refs.iter().all(|r| *r != fresh), "ids are never reused");
    drop(app);
    s.gc_head().expect("gc");
    // A cached ref of a dropped series: older samples are refused, newer ones appended to
    // the same series.
    let idle_last = data[0].1.last().expect("idle").t;
    let mut app = s.appender();
    app.append(refs[0], idle_last - 15_000, 1.0)
        .expect("append");
    app.append(refs[0], idle_last, 1.0).expect("append");
    let rep = app.commit().expect("commit");
    assert_eq!(rep.appended, 0);
    assert_eq!(rep.rejected(RejectReason::TooOld), 2);
    let t_new = busy_last + 15_000;
    app.append(refs[0], t_new, 42.0).expect("append");
    app.append(refs[2], t_new, 7.0).expect("append");
    assert_eq!(app.commit().expect("commit").appended, 2);
    drop(app);
    let got = read(
        s.as_ref(),
        &[Matcher::equal("s", "idle")],
        i64::MIN,
        i64::MAX,
    );
    let mut want = bits(&data[0].1);
    want.push((t_new, 42.0f64.to_bits()));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, want);
    let got = read(
        s.as_ref(),
        &[Matcher::equal("s", "empty")],
        i64::MIN,
        i64::MAX,
    );
    assert_eq!(got[0].1, vec![(t_new, 7.0f64.to_bits())]);
    assert_eq!(s.metrics().head_series, 3, "idle, busy and empty are back");
}

/// After head GC and a restart, dropped series are still readable, their refs still valid,
/// and the too-old bound still protects them.
pub fn head_gc_restart(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 12 * 3_600_000);
    let data = gc_fixture();
    let (refs, before) = {
        let s = f.open(dir, gc_opts(&clock)).expect("open");
        let refs = write(s.as_ref(), &data);
        // Move the head on with a series far ahead: now busy is idle too.
        let late = vec![(
            lbl(&[("__name__", "g"), ("s", "late")]),
            counter(3, data[1].1.last().expect("busy").t + 3 * 3_600_000, 15_000),
        )];
        write(s.as_ref(), &late);
        assert_eq!(s.gc_head().expect("gc").removed, 3);
        (refs, read(s.as_ref(), &all(), i64::MIN, i64::MAX))
    };
    let s = f.open(dir, gc_opts(&clock)).expect("reopen");
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), before);
    assert!(
        s.metrics().head_series <= 1,
        "dropped series stay out of the head"
    );
    let busy_last = data[1].1.last().expect("busy").t;
    let mut app = s.appender();
    app.append(refs[1], busy_last - 15_000, 1.0)
        .expect("append");
    app.append(refs[1], busy_last + 1, 1.0).expect("append");
    let rep = app.commit().expect("commit");
    assert_eq!(rep.appended, 0);
    assert_eq!(rep.rejected(RejectReason::TooOld), 2);
    for (r, (l, _)) in refs.iter().zip(&data) {
        assert_eq!(app.series_ref(l).expect("ref"), *r);
    }
    drop(app);
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), before);
}

/// The head holds an active series (labels, index entry and a half-full open chunk) in at
/// most 1 KiB as the store accounts it, and gives the memory back after GC.
pub fn head_memory(f: &dyn Factory, dir: &Path) {
    let clock = ManualClock::new(T0 + 86_400_000);
    let s = f.open(dir, gc_opts(&clock)).expect("open");
    let n = 2000usize;
    let data: Vec<(Labels, Vec<Sample>)> = (0..n)
        .map(|i| {
            let l = lbl(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", &(i % 8).to_string()),
                ("instance", &format!("host-{:05}:9100", i / 100)),
                ("job", "node"),
                ("mode", ["idle", "user", "system", "iowait"][i / 8 % 4]),
                ("series", &i.to_string()),
            ]);
            let samples = (0..60i64)
                .map(|k| {
                    Sample::new(
                        T0 + k * 15_000,
                        (1_000_000 + k * (i as i64 % 97 + k % 3)) as f64,
                    )
                })
                .collect();
            (l, samples)
        })
        .collect();
    write(s.as_ref(), &data);
    let met = s.metrics();
    assert_eq!(met.head_series, n as u64);
    assert_eq!(met.head_chunks, n as u64);
    let per = met.head_bytes as f64 / n as f64;
    println!("head_memory: {per:.0} bytes per active series (head accounting)");
    assert!(per <= 1024.0, "{per:.0} bytes per active series");
    assert!(per >= 100.0, "accounting cannot be this small: {per:.0}");
    write(
        s.as_ref(),
        &[(
            lbl(&[("__name__", "late")]),
            vec![Sample::new(T0 + 4 * 3_600_000, 1.0)],
        )],
    );
    assert_eq!(s.gc_head().expect("gc").removed, n as u64);
    let after = s.metrics().head_bytes;
    assert!(
        after < met.head_bytes / 10,
        "GC gives memory back: {after} of {} bytes left",
        met.head_bytes
    );
}

/// `retention_bytes`: over the limit, whole oldest partitions go until only the newest one
/// is left; the watermark moves to the first kept partition, everything from it on stays
/// readable, older samples are refused, and the state survives a restart. Under the limit
/// nothing is dropped.
pub fn size_retention(f: &dyn Factory, dir: &Path) {
    let day = 86_400_000i64;
    let clock = ManualClock::new(T0 + 2 * day);
    let data: Vec<(Labels, Vec<Sample>)> = (0..3)
        .map(|i| {
            (
                lbl(&[("__name__", "sz"), ("i", &i.to_string())]),
                counter(24 * 60, T0 + i, 60_000),
            )
        })
        .collect();
    let big = StorageOptions {
        retention_bytes: Some(u64::MAX),
        ..opts(&clock)
    };
    let s = f.open(&dir.join("unlimited"), big).expect("open");
    write(s.as_ref(), &data);
    let want_all = read(s.as_ref(), &all(), i64::MIN, i64::MAX);
    let rep = s.apply_retention().expect("retention");
    assert_eq!(rep.dropped, 0, "under the size limit nothing is dropped");
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), want_all);
    drop(s);

    let o = StorageOptions {
        retention_bytes: Some(1),
        ..opts(&clock)
    };
    let limited = dir.join("limited");
    let s = f.open(&limited, o.clone()).expect("open");
    let refs = write(s.as_ref(), &data);
    let newest_t = data.iter().filter_map(|(_, v)| v.last()).map(|x| x.t).max();
    let newest_t = newest_t.expect("samples");
    let keep_from = newest_t - newest_t.rem_euclid(o.partition_ms);
    let rep = s.apply_retention().expect("retention");
    assert!(rep.dropped > 0);
    assert_eq!(rep.watermark, keep_from);
    let mut want: Vec<(Labels, Vec<(i64, u64)>)> = data
        .iter()
        .map(|(l, v)| {
            let kept = bits(v)
                .into_iter()
                .filter(|(t, _)| *t >= keep_from)
                .collect();
            (l.clone(), kept)
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(want.iter().all(|(_, v)| !v.is_empty()));
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), want);
    let mut app = s.appender();
    app.append(refs[0], keep_from - 1, 1.0).expect("append");
    assert_eq!(
        app.commit().expect("commit").rejected(RejectReason::TooOld),
        1
    );
    drop(app);
    drop(s);
    let s = f.open(&limited, o).expect("reopen");
    assert_eq!(read(s.as_ref(), &all(), i64::MIN, i64::MAX), want);
}
