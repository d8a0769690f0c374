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
//! - Bookmarks do not move `snapshots_changed`: a new one is seen at the next snapshot
//!   change, which is also when it could first matter (its snapshot pruned).

use crate::zfs::list::{Listing, Point};
use crate::zfs::name::Dataset;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

    /// Forgets the datasets a run touched (new snapshots, holds moved): their entries
    /// describe them before the run.
    pub fn forget(&mut self, source: &Dataset, target: &Dataset) {
        self.source.datasets.remove(source);
        self.target.datasets.remove(target);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::list::parse_filesystems;

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
