//! Merging one series' samples from several shards and deduplicating replicas (pure).
//!
//! # The rule
//!
//! Input: the sample lists ("sources") of one label set as the shards returned them. Each
//! source is one worker's copy: a replica's independent scrapes (R ≥ 2), or one part of the
//! history of a target that moved between workers.
//!
//! 1. **Window.** `w` = half the median of the gaps between consecutive samples *within*
//!    each source (all sources' gaps pooled, lower median), at least 1 ms; 1 ms when no
//!    source has two samples. Within one source the gap is the scrape interval, so `w` is
//!    half of it, well above scrape jitter (a few ms) and well below the interval.
//! 2. **Merge.** All samples are sorted by (timestamp, markers first, value bits).
//!    Samples equal in timestamp and bits are one sample belonging to every source that
//!    holds it.
//! 3. **Keep.** Walking in that order, a sample is kept when it shares a source with the last
//!    kept one (a worker's own consecutive scrapes are never duplicates of each other), or
//!    when it is at least `w` after the last kept one. Anything else is another replica's
//!    copy of a scrape already kept, and is dropped.
//! 4. **Staleness.** A staleness marker about to be kept gives way to the first live sample
//!    of *another* source within `w` after it: one replica's failed scrape (which writes
//!    markers) must not hide the other replica's live data. When every replica's marker
//!    is in the window, the first marker is kept: the series ended on all of them.
//!
//! This is Thanos's "keep one replica, switch only on a gap" idea with the penalty
//! replaced by a fixed per-series window, and VictoriaMetrics's `-dedup.minScrapeInterval`
//! with the interval measured instead of configured (and anchored at the kept sample
//! instead of a fixed time grid, so jitter across a grid boundary cannot keep both copies).
//! The result depends only on the set of samples per source, never on shard order or on
//! which shard answered first; a single source passes unchanged (rule 3), hence
//! `dedup(dedup(x)) = dedup(x)`; histories of a moved target that do not overlap are kept
//! whole as long as the handoff gap is at least `w`.

use trawl_model::Sample;

/// Samples per series, deduplicated by the rule in the module docs.
pub fn dedup(sources: &[Vec<Sample>]) -> Vec<Sample> {
    dedup_with_window(sources, window(sources))
}

/// The dedup window (ms) of a series: half the lower median of the within-source gaps,
/// at least 1.
pub fn window(sources: &[Vec<Sample>]) -> i64 {
    let mut gaps: Vec<i64> = sources
        .iter()
        .flat_map(|s| s.windows(2).map(|w| w[1].t.saturating_sub(w[0].t)))
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return 1;
    }
    let mid = (gaps.len() - 1) / 2;
    let (_, median, _) = gaps.select_nth_unstable(mid);
    (*median / 2).max(1)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    t: i64,
    stale: bool,
    bits: u64,
    src: u32,
}

impl Entry {
    /// Markers sort before live samples of the same timestamp, so that a marker opening a
    /// slot finds them in its look-ahead (rule 4) and gives way to them.
    fn key(&self) -> (i64, bool, u64, u32) {
        (self.t, !self.stale, self.bits, self.src)
    }
}

/// A distinct sample: `entries[start..end]` are its copies, one per source (sorted by source).
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

/// [`dedup`] with a given window (ms, values below 1 count as 1).
pub fn dedup_with_window(sources: &[Vec<Sample>], window: i64) -> Vec<Sample> {
    let w = window.max(1);
    let non_empty = sources.iter().filter(|s| !s.is_empty()).count();
    if non_empty == 1
        && let Some(s) = sources.iter().find(|s| !s.is_empty())
        && s.windows(2).all(|p| p[0].t < p[1].t)
    {
        return s.clone();
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(sources.iter().map(Vec::len).sum());
    for (i, s) in sources.iter().enumerate() {
        let src = u32::try_from(i).unwrap_or(u32::MAX);
        entries.extend(s.iter().map(|x| Entry {
            t: x.t,
            stale: x.is_stale(),
            bits: x.v.to_bits(),
            src,
        }));
    }
    entries.sort_unstable_by_key(Entry::key);
    entries.dedup_by_key(|e| e.key());
    let mut groups: Vec<Group> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if entries[g.start].t == e.t && entries[g.start].bits == e.bits => {
                g.end = i + 1
            }
            _ => groups.push(Group {
                start: i,
                end: i + 1,
            }),
        }
    }
    let shares = |a: Group, b: Group| {
        entries[a.start..a.end]
            .iter()
            .any(|x| entries[b.start..b.end].iter().any(|y| x.src == y.src))
    };
    let mut out: Vec<Sample> = Vec::new();
    let mut last: Option<Group> = None;
    let mut i = 0;
    while i < groups.len() {
        let g = groups[i];
        let e = entries[g.start];
        let keep = match last {
            None => true,
            Some(l) => {
                let lt = entries[l.start].t;
                e.t > lt && (shares(g, l) || e.t.saturating_sub(lt) >= w)
            }
        };
        if !keep {
            i += 1;
            continue;
        }
        let mut chosen = i;
        if e.stale {
            let horizon = e.t.saturating_add(w);
            chosen = groups[i + 1..]
                .iter()
                .take_while(|h| entries[h.start].t < horizon)
                .position(|h| !entries[h.start].stale && !shares(*h, g))
                .map_or(i, |p| i + 1 + p);
        }
        let c = groups[chosen];
        let ce = entries[c.start];
        out.push(Sample::new(ce.t, f64::from_bits(ce.bits)));
        last = Some(c);
        i = chosen + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use trawl_model::STALE_NAN;

    fn bits(v: &[Sample]) -> Vec<(i64, u64)> {
        v.iter().map(|s| (s.t, s.v.to_bits())).collect()
    }

    fn series(ts: &[(i64, f64)]) -> Vec<Sample> {
        ts.iter().map(|(t, v)| Sample::new(*t, *v)).collect()
    }

    /// Strictly increasing timestamps from positive gaps.
    fn from_gaps(start: i64, gaps: &[i64], values: &[f64]) -> Vec<Sample> {
        let mut t = start;
        gaps.iter()
            .zip(values.iter().cycle())
            .map(|(g, v)| {
                t += g;
                Sample::new(t, *v)
            })
            .collect()
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -1e6f64..1e6,
            1 => Just(STALE_NAN),
            1 => Just(f64::NAN),
            1 => Just(-0.0),
        ]
    }

    /// 1–4 sources, each strictly increasing, possibly overlapping in time.
    fn sources() -> impl Strategy<Value = Vec<Vec<Sample>>> {
        prop::collection::vec(
            (
                0i64..100_000,
                prop::collection::vec(1i64..40_000, 0..40),
                prop::collection::vec(value(), 1..8),
            )
                .prop_map(|(start, gaps, vals)| from_gaps(start, &gaps, &vals)),
            1..5,
        )
    }

    proptest! {
        #[test]
        fn independent_of_shard_order(srcs in sources(), rot in 0usize..4) {
            let base = dedup(&srcs);
            let mut rotated = srcs.clone();
            let n = rotated.len();
            rotated.rotate_left(rot % n);
            prop_assert_eq!(bits(&dedup(&rotated)), bits(&base));
            let mut reversed = srcs.clone();
            reversed.reverse();
            prop_assert_eq!(bits(&dedup(&reversed)), bits(&base));
        }

        #[test]
        fn idempotent(srcs in sources()) {
            let once = dedup(&srcs);
            let twice = dedup(std::slice::from_ref(&once));
            prop_assert_eq!(bits(&twice), bits(&once));
            // The output is strictly increasing in time.
            prop_assert!(once.windows(2).all(|p| p[0].t < p[1].t));
        }

        #[test]
        fn the_output_as_another_replica_changes_nothing(srcs in sources(), w in 1i64..60_000) {
            // Stronger than dedup(dedup(x)): the deduplicated series, added as one more
            // shard's answer next to the originals, is reproduced exactly.
            let once = dedup_with_window(&srcs, w);
            let mut more = srcs.clone();
            more.push(once.clone());
            prop_assert_eq!(bits(&dedup_with_window(&more, w)), bits(&once));
            more.rotate_right(1);
            prop_assert_eq!(bits(&dedup_with_window(&more, w)), bits(&once));
        }

        #[test]
        fn single_replica_passes_unchanged(
            start in 0i64..1_000_000,
            gaps in prop::collection::vec(1i64..60_000, 0..100),
            vals in prop::collection::vec(value(), 1..10),
        ) {
            let s = from_gaps(start, &gaps, &vals);
            prop_assert_eq!(bits(&dedup(std::slice::from_ref(&s))), bits(&s));
            // Also when other shards answered with nothing for this series.
            let with_empty = vec![Vec::new(), s.clone(), Vec::new()];
            prop_assert_eq!(bits(&dedup(&with_empty)), bits(&s));
        }

        #[test]
        fn jittered_replicas_collapse_to_one_sample_per_interval(
            interval in 1_000i64..120_000,
            n in 2usize..60,
            replicas in 2usize..4,
            jitter in prop::collection::vec(0i64..50, 200),
            vals in prop::collection::vec(-1e9f64..1e9, 1..5),
        ) {
            let srcs: Vec<Vec<Sample>> = (0..replicas)
                .map(|r| {
                    (0..n)
                        .map(|k| {
                            let j = jitter[(r * n + k) % jitter.len()];
                            let v = vals[(k + r) % vals.len()];
                            Sample::new(1_000_000 + k as i64 * interval + j, v)
                        })
                        .collect()
                })
                .collect();
            let out = dedup(&srcs);
            prop_assert_eq!(out.len(), n);
            for (k, s) in out.iter().enumerate() {
                let base = 1_000_000 + k as i64 * interval;
                prop_assert!(s.t >= base && s.t < base + 50, "sample {} at {}", k, s.t);
            }
        }

        #[test]
        fn non_overlapping_histories_are_kept_whole(
            interval in 1_000i64..60_000,
            a_len in 1usize..50,
            b_len in 1usize..50,
            handoff_gaps in 1i64..4,
            jitter in prop::collection::vec(0i64..50, 100),
        ) {
            let at = |k: usize| k as i64 * interval + jitter[k % jitter.len()];
            let a: Vec<Sample> = (0..a_len).map(|k| Sample::new(at(k), k as f64)).collect();
            let b: Vec<Sample> = (0..b_len)
                .map(|k| {
                    let k = k + a_len - 1 + handoff_gaps as usize;
                    Sample::new(at(k), k as f64)
                })
                .collect();
            let mut want = a.clone();
            want.extend(b.iter().copied());
            prop_assert_eq!(bits(&dedup(&[a.clone(), b.clone()])), bits(&want));
            prop_assert_eq!(bits(&dedup(&[b, a])), bits(&want));
        }
    }

    #[test]
    fn handoff_overlap_keeps_one_sample_per_scrape() {
        // A scrapes until 60s, B takes over at 45s (make-before-break overlap).
        let a = series(&[
            (0, 1.0),
            (15_000, 2.0),
            (30_000, 3.0),
            (45_000, 4.0),
            (60_000, 5.0),
        ]);
        let b = series(&[(45_007, 4.0), (60_007, 5.0), (75_007, 6.0), (90_007, 7.0)]);
        let got = dedup(&[b, a]);
        assert_eq!(
            bits(&got),
            bits(&series(&[
                (0, 1.0),
                (15_000, 2.0),
                (30_000, 3.0),
                (45_000, 4.0),
                (60_000, 5.0),
                (75_007, 6.0),
                (90_007, 7.0)
            ]))
        );
    }

    #[test]
    fn a_replicas_stale_marker_does_not_hide_the_others_live_sample() {
        // A's scrape at 15s failed (stale marker); B's scrape 3 ms later succeeded.
        let a = series(&[(0, 1.0), (15_000, STALE_NAN), (30_000, 3.0)]);
        let b = series(&[(3, 1.0), (15_003, 2.0), (30_003, 3.0)]);
        let got = dedup(&[a.clone(), b.clone()]);
        assert_eq!(
            bits(&got),
            bits(&series(&[(0, 1.0), (15_003, 2.0), (30_000, 3.0)]))
        );
        assert_eq!(bits(&dedup(&[b, a])), bits(&got));
        // The marker arriving after the live copy is dropped too.
        let a = series(&[(0, 1.0), (15_005, STALE_NAN)]);
        let b = series(&[(3, 1.0), (15_003, 2.0)]);
        assert_eq!(
            bits(&dedup(&[a, b])),
            bits(&series(&[(0, 1.0), (15_003, 2.0)]))
        );
    }

    #[test]
    fn a_marker_gives_way_to_a_live_copy_at_the_same_timestamp() {
        // A's marker is kept by rule 3 (A's own next scrape) unless B's live sample at the
        // very same millisecond takes its place.
        // B's sample is within the window of A's last kept one, so only the look-ahead can
        // bring it in.
        let a = series(&[(0, 1.0), (50, STALE_NAN)]);
        let b = series(&[(50, 2.0)]);
        let want = series(&[(0, 1.0), (50, 2.0)]);
        assert_eq!(
            bits(&dedup_with_window(&[a.clone(), b.clone()], 100)),
            bits(&want)
        );
        assert_eq!(bits(&dedup_with_window(&[b, a], 100)), bits(&want));
    }

    #[test]
    fn markers_of_every_replica_end_the_series_once() {
        let a = series(&[(0, 1.0), (15_000, 2.0), (30_000, STALE_NAN)]);
        let b = series(&[(4, 1.0), (15_004, 2.0), (30_004, STALE_NAN)]);
        let got = dedup(&[a, b]);
        assert_eq!(got.len(), 3);
        assert!(got[2].is_stale());
        assert_eq!(got[2].t, 30_000);
    }

    #[test]
    fn identical_copies_collapse_and_window_is_measured() {
        let a = series(&[(0, 1.0), (10_000, 2.0), (20_000, 3.0)]);
        assert_eq!(window(&[a.clone(), a.clone()]), 5_000);
        assert_eq!(window(&[series(&[(5, 1.0)])]), 1);
        assert_eq!(bits(&dedup(&[a.clone(), a.clone(), a.clone()])), bits(&a));
        // Same timestamp, different values: one is kept, the same one whatever the order.
        let x = series(&[(100, 1.0)]);
        let y = series(&[(100, 2.0)]);
        assert_eq!(bits(&dedup(&[x.clone(), y.clone()])), bits(&dedup(&[y, x])));
    }
}
