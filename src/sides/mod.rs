//! The two ends of a job and what is read from them: one `zfs list -Hp` per side
//! (`list`), and the holds on the listed snapshots ([`holds`]).
//!
//! Below `replicate`, `status` and `prune`, which all read a side the same way, so a
//! status costs the same listing a run makes and goes through the same SSH guard.

pub mod holds;

use crate::host::Host;
use crate::zfs::list::{list_argv, missing_from_stderr, parse_listing, DatasetInfo, Listing};
use crate::zfs::name::Dataset;
use anyhow::{anyhow, Result};

/// Both ends of a job.
pub(crate) struct Sides {
    /// Where the snapshots are sent from.
    pub source: Host,
    /// Where they are received.
    pub target: Host,
}

/// Lists `roots` on `host`; roots that do not exist are returned apart.
pub(crate) async fn list(host: &Host, roots: &[Dataset]) -> Result<(Listing, Vec<String>)> {
    let out = host.run(&list_argv(roots)).await?;
    let missing = if out.ok() {
        Vec::new()
    } else {
        missing_from_stderr(&out.stderr).map_err(|e| anyhow!("on {}: {e}", host.label()))?
    };
    Ok((parse_listing(&out.stdout)?, missing))
}

/// Lists one dataset again (after a resume), `None` if it does not exist.
pub(crate) async fn relist(host: &Host, ds: &Dataset) -> Result<Option<DatasetInfo>> {
    let (l, _) = list(host, std::slice::from_ref(ds)).await?;
    Ok(l.get(ds).cloned())
}
