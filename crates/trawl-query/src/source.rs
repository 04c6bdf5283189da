//! Where series and label metadata come from: `trawl-web`'s [`LabelSource`] (shared with the
//! HTTP API, implemented for every storage through [`trawl_web::StorageLabels`]), plus an
//! adapter over any [`Queryable`].

use std::collections::BTreeSet;
use std::sync::Arc;

use trawl_model::{Labels, Matcher};
use trawl_promql::Queryable;
use trawl_web::{Error, LabelSource};

/// [`LabelSource`] computed from a [`Queryable`]'s `select` (samples are read and thrown
/// away): for the in-memory store and for tests, not for large stores. An empty matcher
/// list is passed through as is, which the `MemStorage` reads as "every series".
#[derive(Clone)]
pub struct QueryableLabels(pub Arc<dyn Queryable>);

impl std::fmt::Debug for QueryableLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryableLabels")
    }
}

impl QueryableLabels {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>, Error> {
        let mut v: Vec<Labels> = self
            .0
            .select(matchers, mint, maxt)
            .map_err(|e| Error::Source(e.to_string()))?
            .into_iter()
            .filter(|s| !s.samples.is_empty())
            .map(|s| s.labels)
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

impl LabelSource for QueryableLabels {
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        let set: BTreeSet<String> = self
            .select(matchers, mint, maxt)?
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()))
            .collect();
        Ok(set.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        let set: BTreeSet<String> = self
            .select(matchers, mint, maxt)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_owned))
            .collect();
        Ok(set.into_iter().collect())
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>, Error> {
        self.select(matchers, mint, maxt)
    }
}
