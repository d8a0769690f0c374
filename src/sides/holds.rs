//! This job's holds: exactly one held snapshot per dataset per job, on each side.

use super::cache::SideCache;
use crate::host::{CommandFailed, Host};
use crate::zfs::cmd;
use crate::zfs::list::Listing;
use crate::zfs::name::{Dataset, Snapshot};
use anyhow::{anyhow, Result};
use std::collections::{BTreeMap, BTreeSet};

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

/// The snapshots of `listing` that carry any hold: its `userrefs` says which.
fn held_in(listing: &Listing) -> Vec<Snapshot> {
    listing
        .datasets
        .values()
        .flat_map(|d| {
            d.snapshots
                .iter()
                .filter(|p| p.userrefs > 0)
                .map(|p| d.point_name(p))
        })
        .collect()
}

/// Every (snapshot, tag) hold on the snapshots of `listing`: the listing's `userrefs`
/// says which snapshots have any, so this is one `zfs holds` call (none if no holds).
pub async fn read_holds(host: &Host, listing: &Listing) -> Result<Vec<(Snapshot, String)>> {
    holds_of(host, &held_in(listing)).await
}

/// Every (snapshot, tag) hold on `snaps`, in one `zfs holds` call (none for none).
async fn holds_of(host: &Host, snaps: &[Snapshot]) -> Result<Vec<(Snapshot, String)>> {
    if snaps.is_empty() {
        return Ok(Vec::new());
    }
    let out = host.run_ok(&cmd::holds(snaps)).await?;
    Ok(parse_holds(&out.stdout))
}

/// The holds on the snapshots a side's cache says carry any, asked while the side is
/// listed: a run with nothing new then pays the listing alone, not the listing and
/// then `zfs holds`. Used only when the listing names no held snapshot that was not
/// asked about ([`HoldBook::load`]).
pub struct EarlyHolds {
    asked: BTreeSet<Snapshot>,
    /// `None`: the command failed (a snapshot of the cache gone, say).
    answer: Option<Vec<(Snapshot, String)>>,
}

impl EarlyHolds {
    /// Asks `host` about the held snapshots of `cache` (its entries for this host).
    pub async fn ask(host: &Host, cache: &SideCache) -> EarlyHolds {
        let asked: BTreeSet<Snapshot> = if cache.host == host.label() {
            cache
                .datasets
                .iter()
                .flat_map(|(ds, e)| {
                    e.snapshots
                        .iter()
                        .filter(|p| p.userrefs > 0)
                        .filter_map(|p| ds.snapshot(&p.name).ok())
                })
                .collect()
        } else {
            BTreeSet::new()
        };
        let list: Vec<Snapshot> = asked.iter().cloned().collect();
        let answer = holds_of(host, &list).await.ok();
        EarlyHolds { asked, answer }
    }

    /// The holds on `needed`, if each of them was asked about and the answer came; rows
    /// for names not needed (asked in vain, or never asked) are dropped.
    fn answer_for(&self, needed: &[Snapshot]) -> Option<Vec<(Snapshot, String)>> {
        let rows = self.answer.as_ref()?;
        if !needed.iter().all(|s| self.asked.contains(s)) {
            return None;
        }
        let needed: BTreeSet<&Snapshot> = needed.iter().collect();
        Some(
            rows.iter()
                .filter(|(s, _)| needed.contains(s))
                .cloned()
                .collect(),
        )
    }
}

impl HoldBook {
    /// Reads this tag's holds on the snapshots of `listing`, from `early` when it
    /// answers for every held one.
    pub async fn load(
        host: &Host,
        listing: &Listing,
        tag: &str,
        early: Option<&EarlyHolds>,
    ) -> HoldBook {
        let mut book = HoldBook {
            tag: tag.to_string(),
            held: BTreeMap::new(),
            load_error: None,
        };
        let needed = held_in(listing);
        let read = match early.and_then(|e| e.answer_for(&needed)) {
            Some(rows) => Ok(rows),
            None => holds_of(host, &needed).await,
        };
        match read {
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

    /// The snapshots of `ds` (short names) that carry this tag as far as this book
    /// knows; `None` when the holds could not be read.
    pub fn held(&self, ds: &Dataset) -> Option<&[String]> {
        if self.load_error.is_some() {
            return None;
        }
        Some(self.held.get(ds).map_or(&[], Vec::as_slice))
    }

    /// The first half of moving this tag to each dataset's new base: one `zfs hold` of
    /// every base not yet held. Returns, for each `(dataset, base)` in order, whether
    /// this placed it, or why not. [`HoldBook::release_replaced`] finishes the move.
    pub async fn hold_bases(
        &mut self,
        host: &Host,
        moves: &[(Dataset, String)],
    ) -> Vec<Result<bool>> {
        if let Some(e) = &self.load_error {
            return moves
                .iter()
                .map(|_| Err(anyhow!("holds on {} could not be read: {e}", host.label())))
                .collect();
        }
        let mut out: Vec<Result<bool>> = Vec::with_capacity(moves.len());
        let mut to_hold = Vec::new();
        for (i, (ds, base)) in moves.iter().enumerate() {
            let held = self.held.get(ds).is_some_and(|h| h.contains(base));
            match ds.snapshot(base) {
                Ok(snap) if !held => to_hold.push((i, snap)),
                Ok(_) => {}
                Err(e) => {
                    out.push(Err(e.into()));
                    continue;
                }
            }
            out.push(Ok(false));
        }
        let failed = self.apply(host, true, &to_hold).await;
        for (i, snap) in &to_hold {
            match failed.get(snap) {
                Some(e) => out[*i] = Err(anyhow!("hold {} not placed: {e}", self.tag)),
                None => {
                    let (ds, base) = &moves[*i];
                    self.held.entry(ds.clone()).or_default().push(base.clone());
                    out[*i] = Ok(true);
                }
            }
        }
        out
    }

    /// The second half, with one `zfs release`: a move that is `kept` releases the
    /// bases its new one replaces (holding first means there is never a moment without
    /// a held base); one that is not (its copy failed its check meanwhile) withdraws the
    /// hold [`HoldBook::hold_bases`] `placed`, and keeps its old one. Returns, per move,
    /// whether a kept move changed anything, or why it did not move (a dataset whose new
    /// base could not be held keeps its old hold); for a move not kept, only why its new
    /// hold could not be withdrawn.
    pub async fn release_replaced(
        &mut self,
        host: &Host,
        moves: &[(Dataset, String)],
        mut placed: Vec<Result<bool>>,
        kept: &[bool],
    ) -> Vec<Result<bool>> {
        let mut to_release = Vec::new();
        for (i, (ds, base)) in moves.iter().enumerate() {
            if !kept[i] {
                if let (Ok(true), Ok(snap)) = (&placed[i], ds.snapshot(base)) {
                    to_release.push((i, snap));
                }
                placed[i] = Ok(false);
                continue;
            }
            if placed[i].is_err() {
                continue;
            }
            for old in self
                .held
                .get(ds)
                .into_iter()
                .flatten()
                .filter(|s| *s != base)
            {
                if let Ok(snap) = ds.snapshot(old) {
                    to_release.push((i, snap));
                }
            }
        }
        let failed = self.apply(host, false, &to_release).await;
        for (i, snap) in &to_release {
            match failed.get(snap) {
                Some(e) if kept[*i] => {
                    placed[*i] = Err(anyhow!("old hold {} on {snap} not released: {e}", self.tag))
                }
                Some(e) => {
                    placed[*i] = Err(anyhow!(
                        "hold {} on {snap}, whose copy failed its check, not withdrawn: {e}",
                        self.tag
                    ))
                }
                None => {
                    if let Some(h) = self.held.get_mut(snap.dataset()) {
                        h.retain(|x| x != snap.short());
                    }
                    if let (true, Ok(changed)) = (kept[*i], &mut placed[*i]) {
                        *changed = true;
                    }
                }
            }
        }
        placed
    }

    /// Places (or releases) this tag on all of `snaps` with one command. zfs goes on past
    /// a snapshot it cannot handle and exits non-zero, so after a failure the holds are
    /// read back to learn which ones took. Returns the snapshots that did not, with why.
    async fn apply(
        &self,
        host: &Host,
        place: bool,
        snaps: &[(usize, Snapshot)],
    ) -> BTreeMap<Snapshot, String> {
        let list: Vec<Snapshot> = snaps.iter().map(|(_, s)| s.clone()).collect();
        if list.is_empty() {
            return BTreeMap::new();
        }
        let argv = if place {
            cmd::hold_all(&self.tag, &list)
        } else {
            cmd::release_all(&self.tag, &list)
        };
        let (err, stderr) = match host.run_ok(&argv).await {
            Ok(_) => return BTreeMap::new(),
            Err(e) => {
                let stderr = e
                    .downcast_ref::<CommandFailed>()
                    .map(|c| c.stderr.clone())
                    .unwrap_or_default();
                (format!("{e:#}"), stderr)
            }
        };
        // zfs names each snapshot it failed on: that line is the dataset's own reason.
        let why = |s: &Snapshot| {
            let quoted = format!("'{s}'");
            stderr
                .lines()
                .find(|l| l.contains(&quoted))
                .map(|l| format!("{} (on {})", l.trim(), host.label()))
                .unwrap_or_else(|| err.clone())
        };
        // Unreadable holds: none counts as moved, so the old hold is kept.
        let now: Option<BTreeSet<Snapshot>> = match host.run_ok(&cmd::holds(&list)).await {
            Ok(out) => Some(
                parse_holds(&out.stdout)
                    .into_iter()
                    .filter(|(_, t)| *t == self.tag)
                    .map(|(s, _)| s)
                    .collect(),
            ),
            Err(_) => None,
        };
        list.into_iter()
            .filter(|s| now.as_ref().is_none_or(|held| held.contains(s) != place))
            .map(|s| {
                let w = why(&s);
                (s, w)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(n: &str) -> Snapshot {
        Snapshot::new(n).expect("a valid test name")
    }

    fn early(asked: &[&str], answer: Option<&[(&str, &str)]>) -> EarlyHolds {
        EarlyHolds {
            asked: asked.iter().map(|n| snap(n)).collect(),
            answer: answer.map(|a| a.iter().map(|(s, t)| (snap(s), t.to_string())).collect()),
        }
    }

    #[test]
    fn an_early_answer_serves_only_names_it_was_asked_and_drops_rows_not_needed() {
        let e = early(
            &["t/a@1", "t/b@1"],
            Some(&[
                ("t/a@1", "zferry:job"),
                ("t/b@1", "zferry:job"),
                ("t/x@9", "zferry:job"),
            ]),
        );
        // Asked of more than the listing now holds: the rows for the rest are dropped,
        // and so is a row the host answered unasked.
        assert_eq!(
            e.answer_for(&[snap("t/a@1")]),
            Some(vec![(snap("t/a@1"), "zferry:job".to_string())])
        );
        assert_eq!(e.answer_for(&[]), Some(vec![]));
        // A held snapshot it was not asked about: the holds are read again.
        assert_eq!(e.answer_for(&[snap("t/a@1"), snap("t/a@2")]), None);
        // It failed: read again.
        assert_eq!(early(&["t/a@1"], None).answer_for(&[snap("t/a@1")]), None);
    }

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
