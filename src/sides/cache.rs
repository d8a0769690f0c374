//! The snapshots each side had at the job's last run, so a run lists snapshots only of
//! the datasets whose `snapshots_changed` moved since.
//!
//! Listing snapshots is what a run pays for: in the lab a snapshot row costs ~14 ms,
//! a filesystem listing of the same tree 12× less (bench/listing-columns.md). With the
//! cache a no-op run lists filesystems only. What is trusted, and why it is safe:
//!
//! - An entry is used only while the dataset's GUID and `snapshots_changed` are what
//!   they were, and the cache is younger than [`MAX_AGE`]: a dataset made again under
//!   the same name, or any snapshot made or destroyed, lists afresh.
//! - `snapshots_changed` has one-second resolution: a snapshot taken in the same second
//!   as the listing, just after it, would leave it unchanged. Entries of datasets that
//!   changed within [`SETTLE`] of the listing are therefore not kept.
//! - A peer that lies about `snapshots_changed` only keeps zferry's own view of that
//!   peer stale; the worst it gets is a stream that fails against it. Any plan that
//!   would destroy or refuse is made again from a full listing before it runs.
//! - A run changes a source only by its own holds, which do not move `snapshots_changed`
//!   either: its entries outlive the run, with this job's hold moves applied
//!   ([`SideCache::move_holds`]), so the next run needs no snapshot listing of a source
//!   that sent. A target that received gets its entry from what the run knows: the
//!   snapshots it started with, plus the received ones and the ones it held, read back
//!   by name with the copy's check ([`SideCache::received`]), its hold moves applied.
//!   So the run after a transfer lists no snapshots at all where nothing else changed:
//!   on a backup server that matters, as the copies are not mounted and listing the
//!   snapshots of an unmounted filesystem costs ~5x a mounted one
//!   (bench/noop-after-send.md).
//! - Bookmarks do not move `snapshots_changed`: a new one is seen at the next snapshot
//!   change, which is also when it could first matter (its snapshot pruned).

use crate::zfs::list::{DatasetInfo, Listing, Point};
use crate::zfs::name::Dataset;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The cache is ignored once this old (seconds): a full listing at least once a day.
pub const MAX_AGE: u64 = 24 * 3600;

/// Datasets whose snapshots changed this recently (seconds, by this host's clock) are not
/// cached: their `snapshots_changed` might not show a snapshot of the same second.
pub const SETTLE: u64 = 2;

/// One dataset's snapshots when it was listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The dataset's GUID.
    pub guid: u64,
    /// Its `snapshots_changed` then.
    pub changed: u64,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<Point>,
    /// Its bookmarks, oldest first.
    pub bookmarks: Vec<Point>,
}

/// One side's entries, for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideCache {
    /// The host they were listed on (a job moved to another host starts afresh).
    pub host: String,
    /// By dataset.
    pub datasets: BTreeMap<Dataset, Entry>,
    /// Every dataset the side had, with an entry or not (a parent without snapshots has
    /// no `snapshots_changed`, so no entry): what a run lists by name on a target.
    #[serde(default)]
    pub names: BTreeSet<Dataset>,
}

/// Both sides of one job, as saved in its state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCache {
    /// When it was saved (Unix seconds).
    pub saved: u64,
    /// The source's entries.
    pub source: SideCache,
    /// The target's entries.
    pub target: SideCache,
}

impl JobCache {
    /// The cache as it may be used `now`: empty when too old or from the future.
    pub fn usable(self, now: u64) -> JobCache {
        if self.saved > now || now - self.saved > MAX_AGE {
            return JobCache::default();
        }
        self
    }
}

impl SideCache {
    /// The entry for `name` if it still describes it: same GUID, same
    /// `snapshots_changed`, listed on `host`.
    pub fn valid(
        &self,
        host: &str,
        name: &Dataset,
        guid: u64,
        changed: Option<u64>,
    ) -> Option<&Entry> {
        let e = self.datasets.get(name)?;
        (self.host == host && changed == Some(e.changed) && e.guid == guid && guid != 0)
            .then_some(e)
    }

    /// Brings the entry of `ds` up to date with this job's own hold moves (`before` and
    /// `after`: the snapshots carrying the job's tag at the start and at the end of the
    /// run), or forgets it when `after` is unknown. Holds do not move `snapshots_changed`,
    /// so without this the entry would validate with stale `userrefs`, and `userrefs` is
    /// what tells a run which snapshots to ask `zfs holds` about. Holds placed by others
    /// are not tracked here; they do not decide anything for this job. A target's new
    /// base is held while the copy's check reads it back, so that read may already
    /// count the hold: the count is then one too high, never too low, and one snapshot
    /// too many asked about costs nothing.
    pub fn move_holds(&mut self, ds: &Dataset, before: &[String], after: Option<&[String]>) {
        let Some(after) = after else {
            self.datasets.remove(ds);
            return;
        };
        let Some(e) = self.datasets.get_mut(ds) else {
            return;
        };
        for p in &mut e.snapshots {
            let (was, is) = (before.contains(&p.name), after.contains(&p.name));
            if is && !was {
                p.userrefs += 1;
            } else if was && !is {
                p.userrefs = p.userrefs.saturating_sub(1);
            }
        }
        // A tag on a snapshot the entry does not have: the entry is not what the run saw.
        if after
            .iter()
            .any(|h| !e.snapshots.iter().any(|p| &p.name == h))
        {
            self.datasets.remove(ds);
        }
    }

    /// The entry of a dataset this run received `received` into, made without listing
    /// its snapshots again: the snapshots the run started with (`start`, `None` for a
    /// dataset the run made), with `end` (the dataset, its received snapshots and those
    /// it held, read back by name with the copy's check after the run's streams) laid
    /// over them; the caller then applies its hold moves ([`SideCache::move_holds`]).
    /// Kept only when `end` has a `snapshots_changed`, the dataset is the one the run
    /// started with, and every received snapshot is in `end`. Otherwise it is forgotten
    /// and listed afresh.
    ///
    /// A receive without `-F` adds snapshots and removes none, and fails if the
    /// dataset's newest snapshot is not its base; a plan that rolls back or destroys is
    /// never passed here. What this cannot see: a snapshot someone else makes on the
    /// copy between the receive and the check. The worst that does is fail the next
    /// incremental once, loudly (its base is then not the copy's newest), which forgets
    /// the entry; the copy had diverged, which the run after reports anyway.
    pub fn received(
        &mut self,
        start: Option<&DatasetInfo>,
        end: &DatasetInfo,
        received: &[String],
    ) {
        let same = start.is_none_or(|s| s.guid == end.guid);
        let all_in = received
            .iter()
            .all(|r| end.snapshots.iter().any(|p| &p.name == r));
        let mark = end
            .snapshots_changed
            .filter(|_| end.guid != 0 && same && all_in);
        self.names.insert(end.name.clone());
        let Some(mark) = mark else {
            self.datasets.remove(&end.name);
            return;
        };
        let mut snapshots: Vec<Point> = start
            .map(|s| s.snapshots.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !end.snapshots.iter().any(|e| e.name == p.name))
            .chain(end.snapshots.iter().cloned())
            .collect();
        snapshots.sort_by_key(|p| p.createtxg);
        let entry = Entry {
            guid: end.guid,
            changed: mark,
            snapshots,
            bookmarks: start.map(|s| s.bookmarks.clone()).unwrap_or_default(),
        };
        self.datasets.insert(end.name.clone(), entry);
    }

    /// The entries to keep from `listing` (made on `host` at `now`): every dataset
    /// with a `snapshots_changed` older than [`SETTLE`].
    pub fn from_listing(host: &str, listing: &Listing, now: u64) -> SideCache {
        let datasets = listing
            .datasets
            .values()
            .filter_map(|d| {
                let changed = d.snapshots_changed?;
                (changed + SETTLE <= now && d.guid != 0).then(|| {
                    (
                        d.name.clone(),
                        Entry {
                            guid: d.guid,
                            changed,
                            snapshots: d.snapshots.clone(),
                            bookmarks: d.bookmarks.clone(),
                        },
                    )
                })
            })
            .collect();
        SideCache {
            host: host.to_string(),
            datasets,
            names: listing.datasets.keys().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::list::{parse_filesystems, parse_listing};

    fn ds(n: &str) -> Dataset {
        Dataset::new(n).unwrap()
    }

    #[test]
    fn an_entry_holds_only_for_the_same_host_dataset_and_change() {
        let listing = parse_filesystems(
            "t/a\tfilesystem\t11\t5\toff\t-\t0\t-\t-\t1\t1000\n\
             t/b\tfilesystem\t12\t6\toff\t-\t0\t-\t-\t1\t1999\n\
             t/c\tfilesystem\t13\t7\toff\t-\t0\t-\t-\t1\t-\n",
        )
        .unwrap();
        // At 2000, t/b changed within SETTLE and t/c has no snapshots_changed.
        let c = SideCache::from_listing("h", &listing, 2000);
        assert_eq!(c.datasets.keys().collect::<Vec<_>>(), [&ds("t/a")]);
        // Every name is kept all the same: a run lists them by name.
        let names: Vec<&Dataset> = c.names.iter().collect();
        assert_eq!(names, [&ds("t/a"), &ds("t/b"), &ds("t/c")]);
        assert!(c.valid("h", &ds("t/a"), 11, Some(1000)).is_some());
        assert!(
            c.valid("other", &ds("t/a"), 11, Some(1000)).is_none(),
            "host"
        );
        assert!(
            c.valid("h", &ds("t/a"), 99, Some(1000)).is_none(),
            "made again"
        );
        assert!(
            c.valid("h", &ds("t/a"), 11, Some(1001)).is_none(),
            "changed"
        );
        assert!(c.valid("h", &ds("t/a"), 11, None).is_none(), "not told");
    }

    #[test]
    fn an_entry_follows_the_jobs_hold_moves_or_is_forgotten() {
        let listing = parse_listing(
            "t/a\tfilesystem\t11\t5\toff\t-\t0\t-\t-\t1\n\
             t/a@s1\tsnapshot\t21\t6\t-\t-\t-\t-\t2\t1\n\
             t/a@s2\tsnapshot\t22\t7\t-\t-\t-\t-\t0\t1\n",
        )
        .unwrap();
        let mut listing = listing;
        listing
            .datasets
            .get_mut(&ds("t/a"))
            .unwrap()
            .snapshots_changed = Some(1000);
        let mut c = SideCache::from_listing("h", &listing, 2000);
        let refs = |c: &SideCache| -> Vec<u64> {
            c.datasets[&ds("t/a")]
                .snapshots
                .iter()
                .map(|p| p.userrefs)
                .collect()
        };
        let held = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // s1 also carries another job's hold: only this job's count moves.
        c.move_holds(&ds("t/a"), &held(&["s1"]), Some(&held(&["s2"])));
        assert_eq!(refs(&c), [1, 1]);
        c.move_holds(&ds("t/a"), &held(&["s2"]), Some(&held(&["s2"])));
        assert_eq!(refs(&c), [1, 1], "nothing moved");
        // A tag on a snapshot the entry lacks, or holds that could not be read: gone.
        let mut d = c.clone();
        d.move_holds(&ds("t/a"), &held(&["s2"]), Some(&held(&["s9"])));
        assert!(d.datasets.is_empty());
        c.move_holds(&ds("t/a"), &held(&["s2"]), None);
        assert!(c.datasets.is_empty());
    }

    #[test]
    fn a_received_copy_is_kept_only_when_read_back_whole() {
        let start = parse_listing(
            "b/a\tfilesystem\t11\t5\toff\t-\t0\t-\t-\t1\n\
             b/a@s1\tsnapshot\t21\t6\t-\t-\t-\t-\t1\t1\n",
        )
        .unwrap();
        // Read back by name: the dataset, the old base (released), the received one.
        let end = crate::zfs::list::parse_named(
            "b/a\tfilesystem\t11\t5\toff\t-\t0\t-\t-\t1\t1000\n\
             b/a@s1\tsnapshot\t21\t6\t-\t-\t-\t-\t0\t1\t-\n\
             b/a@s2\tsnapshot\t22\t9\t-\t-\t-\t-\t1\t1\t-\n",
        )
        .unwrap();
        let (s, e) = (start.get(&ds("b/a")), &end.datasets[&ds("b/a")]);
        let got = |e: &DatasetInfo, received: &[&str], start| {
            let mut c = SideCache::default();
            let r: Vec<String> = received.iter().map(|x| x.to_string()).collect();
            c.received(start, e, &r);
            c.datasets.get(&ds("b/a")).cloned()
        };
        let kept = got(e, &["s2"], s).expect("kept");
        let names: Vec<_> = kept
            .snapshots
            .iter()
            .map(|p| (p.name.as_str(), p.userrefs))
            .collect();
        assert_eq!(names, [("s1", 0), ("s2", 1)]);
        assert_eq!((kept.guid, kept.changed), (11, 1000));
        let mut untracked = e.clone();
        untracked.snapshots_changed = None;
        assert!(
            got(&untracked, &["s2"], s).is_none(),
            "no snapshots_changed"
        );
        assert!(got(e, &["s3"], s).is_none(), "a received one missing");
        let mut other = start.clone();
        other.datasets.get_mut(&ds("b/a")).unwrap().guid = 99;
        assert!(
            got(e, &["s2"], other.get(&ds("b/a"))).is_none(),
            "made again"
        );
        assert!(got(e, &["s2"], None).is_some(), "made by the run");
    }

    #[test]
    fn an_old_or_future_cache_is_not_used() {
        let mut c = JobCache {
            saved: 10_000,
            ..JobCache::default()
        };
        c.source.host = "h".into();
        assert_eq!(c.clone().usable(10_000 + MAX_AGE).source.host, "h");
        assert_eq!(c.clone().usable(10_001 + MAX_AGE), JobCache::default());
        assert_eq!(c.usable(9_999), JobCache::default(), "saved in the future");
    }

    #[test]
    fn a_filesystem_listing_with_snapshot_lines_is_refused() {
        let e = parse_filesystems("t/a@s\tsnapshot\t1\t1\t-\t-\t-\t-\t0\t1\t5\n").unwrap_err();
        assert!(format!("{e}").contains("unexpected dataset type"), "{e}");
        let e = parse_filesystems("t/a\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t1\tsoon\n").unwrap_err();
        assert!(format!("{e:#}").contains("snapshots_changed"), "{e:#}");
    }
}
