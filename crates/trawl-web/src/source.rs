//! Adapters from the storage traits to what the API and the engine read.

use std::collections::BTreeSet;
use std::sync::Arc;

use trawl_model::{Labels, Matcher, Sample};
use trawl_promql::{QueryError, Queryable, Series};
use trawl_storage::{SelectHints, Storage};

use crate::Error;

/// Label names, label values and series for the metadata endpoints. One call covers one
/// matcher set (the API unions several `match[]`); ranges are inclusive milliseconds.
pub trait LabelSource: Send + Sync {
    /// Sorted label names of series matching `matchers` (all series if empty) with data in range.
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64)
    -> Result<Vec<String>, Error>;
    /// Sorted values of `name` over series matching `matchers` (all if empty) with data in range.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error>;
    /// Sorted label sets of series matching `matchers` with data in range.
    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>, Error>;
}

impl<S: Storage + ?Sized> LabelSource for S {
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        Ok(self.querier()?.label_names(matchers, mint, maxt)?)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        Ok(self.querier()?.label_values(name, matchers, mint, maxt)?)
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>, Error> {
        Ok(self.querier()?.series(matchers, mint, maxt)?)
    }
}

/// [`LabelSource`] over a shared storage, for `Arc<dyn Storage>` (which cannot be cast to
/// `Arc<dyn LabelSource>` directly).
#[derive(Debug, Clone)]
pub struct StorageLabels<S: ?Sized>(pub Arc<S>);

impl<S: Storage + ?Sized> LabelSource for StorageLabels<S> {
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        self.0.as_ref().label_names(matchers, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        self.0.as_ref().label_values(name, matchers, mint, maxt)
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>, Error> {
        LabelSource::series(self.0.as_ref(), matchers, mint, maxt)
    }
}

/// The PromQL engine's [`Queryable`] over a storage shard: selects the series and decodes
/// their chunks into samples (stale markers included, as stored).
#[derive(Debug, Clone)]
pub struct StorageQueryable<S: ?Sized>(pub Arc<S>);

impl<S: Storage + ?Sized> Queryable for StorageQueryable<S> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let storage_err = |e: trawl_storage::StorageError| QueryError::Storage(e.to_string());
        let q = self.0.querier().map_err(storage_err)?;
        let set = q
            .select(matchers, mint, maxt, &SelectHints::default())
            .map_err(storage_err)?;
        let mut out = Vec::new();
        for s in set {
            let s = s.map_err(storage_err)?;
            let samples: Vec<Sample> =
                s.samples().collect::<Result<_, _>>().map_err(storage_err)?;
            if samples.is_empty() {
                continue;
            }
            out.push(Series {
                labels: s.labels,
                samples,
            });
        }
        Ok(out)
    }
}

/// Union of sorted string lists, sorted.
pub(crate) fn union_sorted(lists: Vec<Vec<String>>) -> Vec<String> {
    if lists.len() == 1 {
        return lists.into_iter().next().unwrap_or_default();
    }
    let set: BTreeSet<String> = lists.into_iter().flatten().collect();
    set.into_iter().collect()
}
