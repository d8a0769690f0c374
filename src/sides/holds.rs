//! This job's holds: exactly one held snapshot per dataset per job, on each side.

use crate::host::Host;
use crate::zfs::cmd;
use crate::zfs::list::Listing;
use crate::zfs::name::{Dataset, Snapshot};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;

/// Which snapshots carry this job's tag on one side, loaded with one `zfs holds` call.
pub struct HoldBook {
    tag: String,
    held: BTreeMap<Dataset, Vec<String>>,
    /// Why the holds could not be read, reported as a warning on each dataset.
    load_error: Option<String>,
}

/// Parses `zfs holds -H` lines (`name<TAB>tag<TAB>timestamp`) into (snapshot, tag).
pub fn parse_holds(out: &str) -> Vec<(Snapshot, String)> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let snap = Snapshot::new(f.next()?.trim()).ok()?;
            let tag = f.next()?.trim().to_string();
            Some((snap, tag))
        })
        .collect()
}

/// Every (snapshot, tag) hold on the snapshots of `listing`: the listing's `userrefs`
/// says which snapshots have any, so this is one `zfs holds` call (none if no holds).
pub async fn read_holds(host: &Host, listing: &Listing) -> Result<Vec<(Snapshot, String)>> {
    let held: Vec<Snapshot> = listing
        .datasets
        .values()
        .flat_map(|d| {
            d.snapshots
                .iter()
                .filter(|p| p.userrefs > 0)
                .map(|p| d.point_name(p))
        })
        .collect();
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let out = host.run_ok(&cmd::holds(&held)).await?;
    Ok(parse_holds(&out.stdout))
}

impl HoldBook {
    /// Reads this tag's holds on the snapshots of `listing`.
    pub async fn load(host: &Host, listing: &Listing, tag: &str) -> HoldBook {
        let mut book = HoldBook {
            tag: tag.to_string(),
            held: BTreeMap::new(),
            load_error: None,
        };
        match read_holds(host, listing).await {
            Ok(all) => {
                for (snap, _) in all.into_iter().filter(|(_, t)| *t == book.tag) {
                    book.held
                        .entry(snap.dataset().clone())
                        .or_default()
                        .push(snap.short().to_string());
                }
            }
            Err(e) => book.load_error = Some(format!("{e:#}")),
        }
        book
    }

    /// Holds `ds@base` and releases this tag everywhere else on `ds`. Holding first
    /// means there is never a moment without a held base. Returns whether anything changed.
    pub async fn move_to(&mut self, host: &Host, ds: &Dataset, base: &str) -> Result<bool> {
        if let Some(e) = &self.load_error {
            return Err(anyhow!("holds on {} could not be read: {e}", host.label()));
        }
        let held = self.held.entry(ds.clone()).or_default();
        let mut changed = false;
        if !held.iter().any(|s| s == base) {
            let snap = ds.snapshot(base)?;
            host.run_ok(&cmd::hold(&self.tag, &snap))
                .await
                .map_err(|e| anyhow!("hold {} not placed: {e:#}", self.tag))?;
            held.push(base.to_string());
            changed = true;
        }
        let stale: Vec<String> = held.iter().filter(|s| *s != base).cloned().collect();
        for s in stale {
            let snap = ds.snapshot(&s)?;
            host.run_ok(&cmd::release(&self.tag, &snap))
                .await
                .map_err(|e| anyhow!("old hold {} on {snap} not released: {e:#}", self.tag))?;
            held.retain(|x| x != &s);
            changed = true;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_holds_output() {
        let out =
            "tank/a@1\tzferry:job\tThu Nov 26 08:00 2026\ntank/a@2\tother\tThu Nov 26 08:01 2026\n";
        let h = parse_holds(out);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].0.to_string(), "tank/a@1");
        assert_eq!(h[0].1, "zferry:job");
    }
}
