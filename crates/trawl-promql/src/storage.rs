//! The read interface the engine evaluates over, and an in-memory implementation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use trawl_model::{Labels, Matcher, Sample};

use crate::QueryError;

/// A stored series: its labels and its float samples in ascending time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// What the engine needs from storage: every series matching all `matchers`, with its samples
/// in `[mint, maxt]` (inclusive, ms). Series without samples in the range may be omitted.
/// Stale markers must be returned as stored (the engine interprets them).
pub trait Queryable: Send + Sync {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64)
    -> Result<Vec<Series>, QueryError>;

    /// Like [`Queryable::select`], also pushing warnings about the answer onto `warnings`
    /// (a fan-out names the shards that did not answer). The engine passes them to the
    /// response's `warnings` as given, once each. The default has none.
    fn select_warn(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Series>, QueryError> {
        let _ = warnings;
        self.select(matchers, mint, maxt)
    }
}

/// In-memory storage for tests and small embeddings. Samples per series are kept sorted;
/// appending a sample at an existing timestamp replaces it. Series are indexed by metric
/// name so a selector with `__name__="..."` touches only that metric's series.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<Sample>>,
    by_name: HashMap<String, BTreeSet<Labels>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn append(&mut self, labels: Labels, t: i64, v: f64) {
        if !self.series.contains_key(&labels) {
            let name = labels.metric_name().to_owned();
            self.by_name.entry(name).or_default().insert(labels.clone());
        }
        let samples = self.series.entry(labels).or_default();
        match samples.last() {
            Some(last) if last.t < t => samples.push(Sample::new(t, v)),
            None => samples.push(Sample::new(t, v)),
            _ => match samples.binary_search_by_key(&t, |s| s.t) {
                Ok(i) => samples[i] = Sample::new(t, v),
                Err(i) => samples.insert(i, Sample::new(t, v)),
            },
        }
    }

    pub fn clear(&mut self) {
        self.series.clear();
        self.by_name.clear();
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let name = matchers
            .iter()
            .find(|m| m.name == trawl_model::METRIC_NAME && m.op == trawl_model::MatchOp::Equal);
        let candidates: Box<dyn Iterator<Item = (&Labels, &Vec<Sample>)>> = match name {
            Some(m) => Box::new(
                self.by_name
                    .get(&m.value)
                    .into_iter()
                    .flatten()
                    .filter_map(|l| self.series.get_key_value(l)),
            ),
            None => Box::new(self.series.iter()),
        };
        let mut out = Vec::new();
        for (labels, samples) in candidates {
            if !matchers
                .iter()
                .all(|m| m.matches(labels.get_or_empty(&m.name)))
            {
                continue;
            }
            let lo = samples.partition_point(|s| s.t < mint);
            let hi = samples.partition_point(|s| s.t <= maxt);
            if lo >= hi {
                continue;
            }
            out.push(Series {
                labels: labels.clone(),
                samples: samples[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trawl_model::MatchOp;

    #[test]
    fn select_filters_by_matchers_and_range() {
        let mut s = MemStorage::new();
        let a = Labels::from_pairs([("__name__", "m"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "m"), ("job", "b")]);
        for t in 0..10 {
            s.append(a.clone(), t * 10, t as f64);
            s.append(b.clone(), t * 10, -(t as f64));
        }
        s.append(a.clone(), 50, 100.0);
        let m = [
            Matcher::equal("__name__", "m"),
            Matcher::new(MatchOp::RegexMatch, "job", "a|c").unwrap(),
        ];
        let got = s.select(&m, 20, 50).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels, a);
        let vs: Vec<f64> = got[0].samples.iter().map(|x| x.v).collect();
        assert_eq!(vs, vec![2.0, 3.0, 4.0, 100.0]);
        assert!(s.select(&m, 1000, 2000).unwrap().is_empty());
        // Without a name matcher every series is a candidate.
        let by_job = [Matcher::new(MatchOp::RegexMatch, "job", "b").unwrap()];
        let got = s.select(&by_job, 0, 100).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels, b);
        s.clear();
        assert!(s.select(&m, 0, 100).unwrap().is_empty());
    }
}
