//! Where series and label metadata come from.
//!
//! `trawl-web` (the HTTP API) defines a `LabelSource` of the same shape with its own error
//! type; this crate has its own so the gRPC server does not depend on the HTTP stack. Both
//! are implemented for every `trawl_storage::Storage`.

use std::collections::BTreeSet;
use std::sync::Arc;

use trawl_model::{Labels, Matcher};
use trawl_promql::Queryable;
use trawl_storage::Storage;

use crate::Error;

/// Label names, label values and series for the metadata calls. One call covers one matcher
/// set (the service unions several selectors); ranges are inclusive milliseconds.
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

fn storage_err(e: trawl_storage::StorageError) -> Error {
    Error::Storage(e.to_string())
}

/// [`LabelSource`] over a shared storage shard (its `Querier`'s index lookups).
#[derive(Debug, Clone)]
pub struct StorageLabels<S: ?Sized>(pub Arc<S>);

impl<S: Storage + ?Sized> LabelSource for StorageLabels<S> {
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        self.0
            .querier()
            .and_then(|q| q.label_names(matchers, mint, maxt))
            .map_err(storage_err)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, Error> {
        self.0
            .querier()
            .and_then(|q| q.label_values(name, matchers, mint, maxt))
            .map_err(storage_err)
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>, Error> {
        self.0
            .querier()
            .and_then(|q| q.series(matchers, mint, maxt))
            .map_err(storage_err)
    }
}

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
            .map_err(|e| Error::Storage(e.to_string()))?
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
