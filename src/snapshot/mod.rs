//! zferry's own snapshots, so a site needs no second tool to have something to replicate.
//!
//! Names are sanoid's, `autosnap_<YYYY-MM-DD_HH:MM:SS>_<period>`, in **UTC**, so both
//! tools understand each other's snapshots during a migration. Each configured tree
//! gets one `zfs snapshot -r` per period due, all with the same timestamp: atomic
//! across the tree (ZFS refuses two snapshots of one dataset in one command, measured),
//! and children created later are covered by `-r`.
//!
//! Whether a period is due is decided from creation times (not names, which another
//! tool may have written in local time): due when the tree's root has no snapshot of
//! that period since the period's current bucket began (this quarter hour, hour, day,
//! ISO week, month or year).

use crate::clock;
use crate::host::{CommandFailed, Host};
use crate::zfs::cmd;
use crate::zfs::list::{list_argv, parse_listing, DatasetInfo, Listing};
use crate::zfs::name::Dataset;
use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

/// How often a snapshot of a kind is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Every quarter hour.
    Frequently,
    /// Every hour.
    Hourly,
    /// Every day (UTC).
    Daily,
    /// Every ISO week (from Monday, UTC).
    Weekly,
    /// Every month.
    Monthly,
    /// Every year.
    Yearly,
}

impl Period {
    /// The name's suffix: `hourly`, `daily`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Frequently => "frequently",
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The longest a bucket of this period lasts, seconds.
    pub fn longest(self) -> u64 {
        match self {
            Period::Frequently => 900,
            Period::Hourly => 3600,
            Period::Daily => 86400,
            Period::Weekly => 7 * 86400,
            Period::Monthly => 31 * 86400,
            Period::Yearly => 366 * 86400,
        }
    }

    /// Start of the bucket holding `t` (Unix seconds, UTC).
    pub fn bucket_start(self, t: u64) -> u64 {
        let day = t / 86400;
        match self {
            Period::Frequently => t - t % 900,
            Period::Hourly => t - t % 3600,
            Period::Daily => day * 86400,
            // 1970-01-01 was a Thursday: (day + 3) % 7 is the days since Monday.
            Period::Weekly => (day - (day + 3) % 7) * 86400,
            Period::Monthly | Period::Yearly => {
                let (y, m, _) = clock::civil_from_days(day as i64);
                let m = if self == Period::Yearly { 1 } else { m };
                clock::days_from_civil(y, m, 1) as u64 * 86400
            }
        }
    }
}

/// One tree set in the config: `[snapshots.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSet {
    /// Roots; each is snapshotted with all its children (`zfs snapshot -r`).
    pub datasets: Vec<Dataset>,
    /// Periods to take.
    pub periods: Vec<Period>,
    /// Skip a period when nothing was written in the tree since its newest snapshot;
    /// a period without any snapshot is always taken.
    #[serde(default)]
    pub skip_unchanged: bool,
}

/// `autosnap_2026-11-30_12:00:00_hourly`.
pub fn name(t: u64, p: Period) -> String {
    let (y, m, d) = clock::civil_from_days((t / 86400) as i64);
    let s = t % 86400;
    format!(
        "autosnap_{y:04}-{m:02}-{d:02}_{:02}:{:02}:{:02}_{}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        p.as_str()
    )
}

/// The period of a snapshot named in the scheme (sanoid's or zferry's), if it is.
pub fn period_of(snapshot: &str) -> Option<Period> {
    let rest = snapshot.strip_prefix("autosnap_")?;
    let (stamp, period) = rest.rsplit_once('_')?;
    let ok_stamp = stamp.len() == 19
        && stamp.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'_',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !ok_stamp {
        return None;
    }
    [
        Period::Frequently,
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ]
    .into_iter()
    .find(|p| p.as_str() == period)
}

/// What one tree gets now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Due {
    /// The tree's root.
    pub root: Dataset,
    /// Snapshot names to take, one `zfs snapshot -r` each.
    pub names: Vec<String>,
    /// Periods not due, or skipped, and why.
    pub notes: Vec<String>,
}

/// Decides which periods `root` is due for at `now` (pure). `tree` is the root and
/// everything below it, from one listing.
pub fn due(root: &DatasetInfo, tree_written: u64, set: &SnapshotSet, now: u64) -> Due {
    let mut out = Due {
        root: root.name.clone(),
        names: Vec::new(),
        notes: Vec::new(),
    };
    for &p in &set.periods {
        let newest = root
            .snapshots
            .iter()
            .filter(|s| period_of(&s.name) == Some(p))
            .max_by_key(|s| s.creation);
        match newest {
            Some(s) if s.creation >= p.bucket_start(now) => {
                out.notes
                    .push(format!("{}: @{} is current", p.as_str(), s.name))
            }
            Some(s) if set.skip_unchanged && tree_written == 0 => out.notes.push(format!(
                "{}: nothing written since @{}, skipped",
                p.as_str(),
                s.name
            )),
            _ => out.names.push(name(now, p)),
        }
    }
    out
}

/// Bytes written under `root` since each dataset's newest snapshot.
fn tree_written(listing: &Listing, root: &Dataset) -> u64 {
    listing.subtree(root).map(|d| d.written).sum()
}

/// The result for one tree.
#[derive(Debug, Clone, Serialize)]
pub struct Taken {
    /// What was due.
    #[serde(flatten)]
    pub due: Due,
    /// Why taking them failed.
    pub error: Option<String>,
}

/// Takes what is due for every root of `set` on `host` (one listing, one command per
/// tree); `dry_run` only says what would be taken.
pub async fn take(host: &Host, set: &SnapshotSet, now: u64, dry_run: bool) -> Result<Vec<Taken>> {
    let out = host.run_ok(&list_argv(&set.datasets)).await?;
    let listing = parse_listing(&out.stdout)?;
    let mut taken = Vec::new();
    for root in &set.datasets {
        let info = listing
            .get(root)
            .ok_or_else(|| anyhow!("dataset {root} does not exist on {}", host.label()))?;
        let due = due(info, tree_written(&listing, root), set, now);
        let mut error = None;
        for n in due.names.iter().filter(|_| !dry_run) {
            if let Err(e) = host.run_ok(&cmd::snapshot_recursive(root, n)).await {
                let hint = if CommandFailed::is_permission_denied(&e) {
                    format!("\n  hint: the user needs 'snapshot' delegated on {root} (zfs allow)")
                } else {
                    String::new()
                };
                error = Some(format!("{e:#}{hint}"));
                break;
            }
        }
        taken.push(Taken { due, error });
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::list::Point;
    use proptest::prelude::*;

    /// 2026-11-30 (a Monday) 12:34:56 UTC.
    const NOW: u64 = 1_796_042_096;

    fn root(snaps: &[(&str, u64)]) -> DatasetInfo {
        let mut d = parse_listing("t/a\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t1\n")
            .unwrap()
            .datasets
            .remove(&Dataset::new("t/a").unwrap())
            .unwrap();
        d.snapshots = snaps
            .iter()
            .enumerate()
            .map(|(i, (n, c))| Point {
                name: n.to_string(),
                guid: i as u64 + 1,
                createtxg: i as u64 + 1,
                bookmark: false,
                userrefs: 0,
                creation: *c,
            })
            .collect();
        d
    }

    fn set(periods: &[Period], skip_unchanged: bool) -> SnapshotSet {
        SnapshotSet {
            datasets: vec![Dataset::new("t/a").unwrap()],
            periods: periods.to_vec(),
            skip_unchanged,
        }
    }

    #[test]
    fn names_are_sanoids_in_utc() {
        assert_eq!(
            name(NOW, Period::Hourly),
            "autosnap_2026-11-30_12:34:56_hourly"
        );
        assert_eq!(
            period_of("autosnap_2026-11-30_12:34:56_daily"),
            Some(Period::Daily)
        );
        for other in [
            "manual",
            "autosnap_2026-11-30_12:34_daily",
            "autosnap_2026-11-30_12:34:56_often",
            "zfs-auto-snap_daily-2026",
        ] {
            assert_eq!(period_of(other), None, "{other}");
        }
    }

    #[test]
    fn buckets_start_where_the_calendar_says() {
        let at = |y, m, d, h: u64, min: u64| {
            clock::days_from_civil(y, m, d) as u64 * 86400 + h * 3600 + min * 60
        };
        assert_eq!(NOW, at(2026, 11, 30, 12, 34) + 56);
        assert_eq!(
            Period::Frequently.bucket_start(NOW),
            at(2026, 11, 30, 12, 30)
        );
        assert_eq!(Period::Hourly.bucket_start(NOW), at(2026, 11, 30, 12, 0));
        assert_eq!(Period::Daily.bucket_start(NOW), at(2026, 11, 30, 0, 0));
        assert_eq!(Period::Weekly.bucket_start(NOW), at(2026, 11, 30, 0, 0));
        assert_eq!(
            Period::Weekly.bucket_start(at(2026, 12, 6, 23, 0)),
            at(2026, 11, 30, 0, 0)
        );
        assert_eq!(Period::Monthly.bucket_start(NOW), at(2026, 11, 1, 0, 0));
        assert_eq!(Period::Yearly.bucket_start(NOW), at(2026, 1, 1, 0, 0));
    }

    #[test]
    fn every_due_period_is_taken_and_current_ones_left_alone() {
        let hour_ago = NOW - 3600;
        let r = root(&[
            ("autosnap_2026-11-30_11:34:56_hourly", hour_ago),
            ("autosnap_2026-11-30_00:00:01_daily", NOW - 12 * 3600),
            ("manual-keep", NOW - 10),
        ]);
        let d = due(
            &r,
            5,
            &set(&[Period::Hourly, Period::Daily, Period::Monthly], false),
            NOW,
        );
        assert_eq!(
            d.names,
            [
                "autosnap_2026-11-30_12:34:56_hourly",
                "autosnap_2026-11-30_12:34:56_monthly"
            ]
        );
        assert!(
            d.notes[0].contains("daily") && d.notes[0].contains("current"),
            "{d:?}"
        );
    }

    #[test]
    fn unchanged_trees_skip_only_periods_that_have_a_snapshot() {
        let r = root(&[("autosnap_2026-11-30_11:00:00_hourly", NOW - 5000)]);
        let s = set(&[Period::Hourly, Period::Daily], true);
        let d = due(&r, 0, &s, NOW);
        assert_eq!(d.names, ["autosnap_2026-11-30_12:34:56_daily"], "{d:?}");
        assert!(d.notes[0].contains("nothing written"), "{d:?}");
        // Written anywhere in the tree: taken.
        assert_eq!(due(&r, 1, &s, NOW).names.len(), 2);
    }

    proptest! {
        /// Taking what is due makes nothing due in the same bucket, and every period
        /// is due again once its bucket has passed.
        #[test]
        fn due_once_per_bucket(now in 1_700_000_000u64..1_900_000_000, which in 0usize..6) {
            let p = [Period::Frequently, Period::Hourly, Period::Daily, Period::Weekly, Period::Monthly, Period::Yearly][which];
            let s = set(&[p], false);
            let first = due(&root(&[]), 0, &s, now);
            prop_assert_eq!(first.names.len(), 1);
            let r = root(&[(first.names[0].as_str(), now)]);
            prop_assert!(due(&r, 9, &s, now).names.is_empty());
            // The longest bucket of each period: past it, the period is due again.
            let longest = p.longest();
            prop_assert!(p.bucket_start(now) <= now && now - p.bucket_start(now) < longest);
            prop_assert_eq!(due(&r, 9, &s, now + longest).names.len(), 1);
        }
    }
}
