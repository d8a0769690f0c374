//! The two ends of a job and what is read from them: one `zfs list -Hp` of the source
//! (`list`), one of what the job owns on the target (`list_owned`), and the holds on
//! the listed snapshots ([`holds`]).
//!
//! Below `replicate`, `status` and `prune`, which all read a side the same way, so a
//! status costs the same listing a run makes and goes through the same SSH guard.

pub mod holds;

use crate::host::Host;
use crate::zfs::list::{
    list_argv_at, missing_from_stderr, parse_listing, DatasetInfo, Depth, Listing,
};
use crate::zfs::name::Dataset;
use anyhow::{anyhow, Result};
use std::collections::BTreeSet;

/// Both ends of a job.
pub(crate) struct Sides {
    /// Where the snapshots are sent from.
    pub source: Host,
    /// Where they are received.
    pub target: Host,
}

/// Lists `roots` on `host`; roots that do not exist are returned apart.
pub(crate) async fn list(host: &Host, roots: &[Dataset]) -> Result<(Listing, Vec<String>)> {
    list_at(host, roots, Depth::Recursive).await
}

async fn list_at(host: &Host, roots: &[Dataset], depth: Depth) -> Result<(Listing, Vec<String>)> {
    let out = host.run(&list_argv_at(roots, depth)).await?;
    let missing = if out.ok() {
        Vec::new()
    } else {
        missing_from_stderr(&out.stderr).map_err(|e| anyhow!("on {}: {e}", host.label()))?
    };
    Ok((parse_listing(&out.stdout)?, missing))
}

/// Lists what a job owns on its target: each of `roots` (the job's datasets, mapped)
/// with everything below it, and, without their snapshots, the datasets from `top`
/// (the destination) down to them, which the planner needs to know exist. Nothing
/// else under `top` is read: other jobs' copies cost this job nothing. Names that do
/// not exist, from either listing, are returned apart.
pub(crate) async fn list_owned(
    host: &Host,
    top: &Dataset,
    roots: &[Dataset],
) -> Result<(Listing, Vec<String>)> {
    // A root below another is already in its listing (and would be listed twice).
    let roots: Vec<Dataset> = roots
        .iter()
        .filter(|r| !roots.iter().any(|o| o != *r && r.is_within(o)))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let covered = |d: &Dataset| roots.iter().any(|r| d.is_within(r));
    let chain: Vec<Dataset> = roots
        .iter()
        .flat_map(|r| r.ancestors())
        .chain([top.clone()])
        .filter(|a| a.is_within(top) && !covered(a))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (owned, chain) = tokio::join!(list_at(host, &roots, Depth::Recursive), async {
        if chain.is_empty() {
            Ok((Listing::default(), Vec::new()))
        } else {
            list_at(host, &chain, Depth::Only).await
        }
    });
    let ((mut listing, mut missing), (chain, chain_missing)) = (owned?, chain?);
    listing.datasets.extend(chain.datasets);
    missing.extend(chain_missing);
    Ok((listing, missing))
}

/// Lists one dataset again (after a resume), `None` if it does not exist.
pub(crate) async fn relist(host: &Host, ds: &Dataset) -> Result<Option<DatasetInfo>> {
    let (l, _) = list(host, std::slice::from_ref(ds)).await?;
    Ok(l.get(ds).cloned())
}
