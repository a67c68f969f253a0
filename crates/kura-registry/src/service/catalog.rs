//! The catalog (`/v2/_catalog`): the account's repositories, filtered to
//! those the caller may see, in name order, a page at a time.

use std::sync::Arc;

use crate::error::ApiResult;
use crate::service::Registry;

/// Decides which repositories a caller may see in the catalog. The ECR guard
/// puts one (as [`CatalogFilter`]) in the request's extensions; without one
/// every repository of the account is listed.
#[async_trait::async_trait]
pub trait RepoFilter: Send + Sync + 'static {
    /// For each of `names` (repositories of `account`, in order), whether
    /// the caller may see it.
    async fn visible(&self, account: &str, names: &[String]) -> ApiResult<Vec<bool>>;
}

/// The catalog filter of one request (a request extension).
#[derive(Clone)]
pub struct CatalogFilter(pub Arc<dyn RepoFilter>);

impl std::fmt::Debug for CatalogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogFilter")
    }
}

/// The page size when the client names none.
const DEFAULT_PAGE: i64 = 1000;
/// Repositories read from the store per step while a filtered page fills.
const SCAN_BATCH: i64 = 500;
/// The most repositories read from the store in one step.
const MAX_BATCH: i64 = 5000;

impl Registry {
    /// Repositories of the account the filter lets the caller see: up to `n`
    /// after `last`; the bool says whether more (visible ones) follow. A page
    /// is only short at the end: hidden repositories are skipped by reading
    /// on through the store until the page is full.
    pub async fn catalog(
        &self,
        account: &str,
        n: Option<u32>,
        last: Option<&str>,
        filter: Option<&dyn RepoFilter>,
    ) -> ApiResult<(Vec<String>, bool)> {
        let limit = n.map(i64::from).unwrap_or(DEFAULT_PAGE);
        if limit == 0 {
            return Ok((Vec::new(), false));
        }
        let mut out: Vec<String> = Vec::new();
        let mut after = last.map(str::to_string);
        loop {
            // One more than the page needs, to know whether more follow.
            let want = limit + 1 - out.len() as i64;
            let batch = if filter.is_some() { want.max(SCAN_BATCH) } else { want }.min(MAX_BATCH);
            let names = self.meta.repo_list(account, after.as_deref(), batch).await?;
            let exhausted = (names.len() as i64) < batch;
            after = names.last().cloned().or(after);
            match filter {
                Some(f) => {
                    let keep = f.visible(account, &names).await?;
                    out.extend(names.into_iter().zip(keep).filter(|(_, k)| *k).map(|(n, _)| n));
                }
                None => out.extend(names),
            }
            if out.len() as i64 > limit || exhausted {
                break;
            }
        }
        let more = out.len() as i64 > limit;
        out.truncate(limit as usize);
        Ok((out, more))
    }
}
