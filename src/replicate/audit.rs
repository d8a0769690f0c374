//! `zferry holds`: this tool's holds on every host and dataset the configured jobs
//! touch, and releasing the stale ones (left by a removed or renamed job).
//!
//! Only tags this tool places count: the configured jobs' tags, and any `zferry:*`
//! tag. Anyone else's hold is never listed or released.

use crate::config::Job;
use crate::host::{Host, Pool};
use crate::sides::holds::read_holds;
use crate::sides::list;
use crate::zfs::cmd;
use crate::zfs::name::{Dataset, Snapshot};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeSet;

/// One hold of this tool's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldEntry {
    /// Host label (`local` or `user@host:port`).
    pub host: String,
    /// Held snapshot.
    pub snapshot: String,
    /// Hold tag.
    pub tag: String,
    /// No configured job uses this tag any more.
    pub stale: bool,
    /// Released by this run (`--release-stale`).
    pub released: bool,
    /// Why releasing failed.
    pub error: Option<String>,
}

/// True for tags this tool may own: configured ones and the default `zferry:` family.
fn ours(tag: &str, configured: &BTreeSet<String>) -> bool {
    configured.contains(tag) || tag.starts_with("zferry:")
}

/// Lists (and with `release_stale`, releases) this tool's holds on all the jobs' hosts.
/// A host that cannot be reached is an error for the whole audit: half a list would
/// read as "no stale holds".
pub async fn audit(jobs: &[(String, Job)], release_stale: bool) -> Result<Vec<HoldEntry>> {
    let configured: BTreeSet<String> = jobs.iter().map(|(n, j)| j.hold_tag(n)).collect();
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    let mut pool = Pool::default();
    for (_, job) in jobs {
        let remote = pool.get(&job.ssh).await?.at_most(job.parallel());
        let sides = job.kind.sides(&remote);
        let target_roots = std::slice::from_ref(&job.destination);
        for (host, roots) in [
            (&sides.source, &job.datasets[..]),
            (&sides.target, target_roots),
        ] {
            for (snap, tag) in holds_on(host, roots).await? {
                if !ours(&tag, &configured)
                    || !seen.insert((host.label().to_string(), snap.clone(), tag.clone()))
                {
                    continue;
                }
                let stale = !configured.contains(&tag);
                let mut e = HoldEntry {
                    host: host.label().to_string(),
                    snapshot: snap.to_string(),
                    tag: tag.clone(),
                    stale,
                    released: false,
                    error: None,
                };
                if stale && release_stale {
                    match host.run_ok(&cmd::release(&tag, &snap)).await {
                        Ok(_) => e.released = true,
                        Err(err) => e.error = Some(format!("{err:#}")),
                    }
                }
                entries.push(e);
            }
        }
    }
    pool.close().await;
    Ok(entries)
}

/// Every (snapshot, tag) hold under `roots` on `host`.
async fn holds_on(host: &Host, roots: &[Dataset]) -> Result<Vec<(Snapshot, String)>> {
    let (listing, _) = list(host, roots).await?;
    read_holds(host, &listing).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_tags_count() {
        let configured: BTreeSet<String> = ["custom".to_string(), "zferry:a".to_string()].into();
        assert!(ours("custom", &configured));
        assert!(ours("zferry:a", &configured));
        assert!(ours("zferry:removed-job", &configured));
        assert!(!ours("other-tool", &configured));
        assert!(!ours("zfs-auto-snap", &configured));
    }
}
