//! Proves the copies a run made: exit codes are not trusted alone, the target's copy of
//! each new base must have the source's GUID.
//!
//! One listing by name reads every copy at once, with the other snapshots the listing
//! cache wants of it, so a run checks its copies with one command however many
//! datasets moved. Where that listing fails (a copy missing, a host without
//! `snapshots_changed` before OpenZFS 2.2, a guard of an older zferry), or does not
//! settle a copy, each such copy is read alone with `zfs get`, which then names what
//! is wrong.

use crate::host::{shell_quote, Host};
use crate::log;
use crate::sides::{relist, reread, Sides};
use crate::zfs::cmd;
use crate::zfs::list::{DatasetInfo, Listing};
use crate::zfs::name::{Dataset, Snapshot};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeSet;

/// A copy to prove: the target's new base and the GUID the source gave it.
pub(super) struct Due {
    pub snap: Snapshot,
    pub want: u64,
    /// Other snapshots of the copy (short names) to read along, for the listing cache.
    pub also: Vec<String>,
}

/// The GUID of `source@base`: from the run's listing, or listed again when a resume
/// moved the plan to a snapshot taken since.
pub(super) async fn source_guid(
    sides: &Sides,
    src_list: &Listing,
    source: &Dataset,
    base: &str,
) -> Result<u64> {
    let listed = |d: Option<&DatasetInfo>| {
        d.and_then(|d| d.snapshots.iter().find(|p| p.name == base))
            .map(|p| p.guid)
    };
    match listed(src_list.get(source)) {
        Some(g) => Ok(g),
        None => listed(relist(&sides.source, source).await?.as_ref())
            .ok_or_else(|| anyhow!("{source}@{base} is gone from the source")),
    }
}

/// Checks each of `due` on `target`, in order: `Ok`, or why the copy is not what was
/// sent. Also returns the listing that read them all (`None`: it failed).
pub(super) async fn verify_all(target: &Host, due: &[Due]) -> (Vec<Result<()>>, Option<Listing>) {
    let read = if due.is_empty() {
        None
    } else {
        let groups: Vec<Vec<String>> = due.iter().map(names).collect();
        match reread(target, &groups).await {
            Ok(l) => Some(l),
            Err(e) => {
                // A copy missing fails the whole listing: each is asked alone then.
                log::debug!("{}: {e:#}; checking each copy alone", target.label());
                None
            }
        }
    };
    let mut out = Vec::with_capacity(due.len());
    for d in due {
        let listed = read.as_ref().and_then(|l| {
            let copy = l.get(d.snap.dataset())?;
            let p = copy.snapshots.iter().find(|p| p.name == d.snap.short())?;
            Some(p.guid)
        });
        let got = match listed {
            Some(g) => Ok(g),
            None => read_guid(target, &d.snap)
                .await
                .map_err(|e| anyhow!("{e:#}; check '{}'", check(d.snap.dataset()))),
        };
        out.push(got.and_then(|guid| {
            if guid != d.want {
                bail!(
                    "after receiving, {} on {} has GUID {guid} but the source's @{} has GUID {}; check '{}'",
                    d.snap,
                    target.label(),
                    d.snap.short(),
                    d.want,
                    check(d.snap.dataset())
                );
            }
            Ok(())
        }));
    }
    (out, read)
}

/// The names a copy's check reads: the dataset, its new base, and what it `also` wants.
fn names(d: &Due) -> Vec<String> {
    let ds = d.snap.dataset();
    let mut snaps: BTreeSet<&str> = d.also.iter().map(String::as_str).collect();
    snaps.insert(d.snap.short());
    std::iter::once(ds.to_string())
        .chain(snaps.into_iter().map(|s| format!("{ds}@{s}")))
        .collect()
}

/// The command a user runs to look, named only when something is wrong.
fn check(ds: &Dataset) -> String {
    shell_quote(&[
        "zfs",
        "list",
        "-t",
        "snapshot",
        "-o",
        "name,guid",
        ds.as_str(),
    ])
}

/// The GUID of the received `snap`, read alone.
async fn read_guid(target: &Host, snap: &Snapshot) -> Result<u64> {
    let out = target.run_ok(&cmd::get_guid(snap)).await.map_err(|e| {
        anyhow!(
            "after receiving, {snap} cannot be read on {}: {e:#}",
            target.label()
        )
    })?;
    cmd::parse_guid(&out.stdout)
        .map_err(|e| anyhow!("reading the GUID of {snap} on {}: {e}", target.label()))
}
