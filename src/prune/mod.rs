//! Replication-aware pruning: keep the policy's counts per period and never break a
//! replication.
//!
//! The decision ([`decide`]) is pure and runs where the snapshots are, on every tier
//! (client sources, the server's copies, the offsite's copies), from one listing and the
//! holds on it. What replication needs is visible there without asking another host:
//! zferry holds each job's common base on both sides (`zferry:<job>`), so
//!
//! - a held snapshot (any tag: zferry's, an admin's, another tool's) is never destroyed;
//! - neither is the newest snapshot of a dataset (the next base);
//! - neither is any snapshot newer than the *oldest* zferry-held one: the slowest job
//!   has not received it yet (on the server, the push base is older than the pull base,
//!   so what the offsite still lacks is kept). A job that stopped cannot pin a source
//!   forever: once its held base is older than `max_pin_age`, the pin is lifted and
//!   the run warns (and fails), instead of pruning silently;
//! - only snapshots named in the scheme (`autosnap_<time>_<period>`) of a period the
//!   policy names are touched; manual snapshots and other tools' only when the policy
//!   opts in by prefix (`keep_prefix`), never otherwise.

use crate::host::Host;
use crate::sides::holds::read_holds;
use crate::snapshot::{period_of, Period};
use crate::zfs::cmd;
use crate::zfs::list::{list_argv, parse_listing, Point};
use crate::zfs::name::Dataset;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Tag prefix of the holds replication places (see [`crate::guard::HOLD_PREFIX`]).
const ZFERRY_HOLD: &str = crate::guard::HOLD_PREFIX;

/// One pruned tree set in the config: `[prune.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunePolicy {
    /// Roots; each is pruned with all its children.
    pub datasets: Vec<Dataset>,
    /// Snapshots to keep per period, newest first; periods not named are not touched.
    #[serde(default)]
    pub keep: BTreeMap<Period, usize>,
    /// Seconds a zferry-held base may be old and still pin the snapshots after it
    /// (default: never lifted).
    #[serde(default)]
    pub max_pin_age: Option<u64>,
    /// Snapshots outside the naming scheme (manual ones, other tools'), opted in by name
    /// prefix: keep the newest N of each prefix. A snapshot no prefix names is never touched.
    #[serde(default)]
    pub keep_prefix: BTreeMap<String, usize>,
}

impl PrunePolicy {
    /// Refuses a policy that would prune nothing or match more than it says: no datasets,
    /// no counts, or a prefix that is empty, not a snapshot name's start, would also match
    /// zferry's own `autosnap_` names, or overlaps another prefix (a snapshot counted twice).
    pub fn validate(&self, name: &str) -> Result<()> {
        if self.datasets.is_empty() || (self.keep.is_empty() && self.keep_prefix.is_empty()) {
            bail!("prune policy '{name}': datasets and keep (or keep_prefix) must both name at least one");
        }
        for p in self.keep_prefix.keys() {
            let field = format!("prune policy '{name}', keep_prefix '{p}'");
            if p.is_empty() || !p.chars().all(crate::zfs::name::valid_char) {
                bail!("{field}: a prefix is the start of a snapshot name: letters, digits, '_', '-', '.', ':' (an empty one would match every snapshot)");
            }
            if SCHEME.starts_with(p.as_str()) || p.starts_with(SCHEME) {
                bail!("{field}: it would match zferry's own {SCHEME} snapshots, which keep counts per period; use a longer prefix");
            }
            if let Some(q) = self
                .keep_prefix
                .keys()
                .find(|q| *q != p && p.starts_with(q.as_str()))
            {
                bail!("{field}: every name it matches also matches '{q}'; use prefixes that do not overlap");
            }
        }
        Ok(())
    }
}

/// The start of every name in the scheme (zferry's and sanoid's).
const SCHEME: &str = "autosnap_";

/// Why a snapshot outlives the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protected {
    /// Someone holds it.
    Held,
    /// The dataset's newest snapshot.
    Newest,
    /// A replication job has not received it yet.
    Unreplicated,
}

/// What to do with one dataset's snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Snapshot names to destroy, oldest first.
    pub destroy: Vec<String>,
    /// Snapshots the policy would drop but that are protected, with why.
    pub protected: Vec<(String, Protected)>,
    /// Things an admin must know (a lifted pin).
    pub warnings: Vec<String>,
}

/// Decides for one dataset (pure). `snaps` oldest first (by createtxg); `zferry_held`
/// names the snapshots held by a replication tag.
pub fn decide(
    snaps: &[Point],
    zferry_held: &BTreeSet<String>,
    policy: &PrunePolicy,
    now: u64,
) -> Decision {
    let mut d = Decision::default();
    let newest = snaps.last().map(|p| p.name.as_str());
    let oldest_base = snaps.iter().find(|p| zferry_held.contains(&p.name));
    let pin_from = match (oldest_base, policy.max_pin_age) {
        (Some(b), Some(max)) if now.saturating_sub(b.creation) > max => {
            d.warnings.push(format!(
                "the replication base @{} is {} old (max_pin_age {}): its job seems stalled, so snapshots after it are pruned by the policy",
                b.name,
                crate::human::human_secs(now.saturating_sub(b.creation)),
                crate::human::human_secs(max)
            ));
            None
        }
        (Some(b), _) => Some(b.createtxg),
        (None, _) => None,
    };
    let protection = |p: &Point| {
        if p.userrefs > 0 {
            Some(Protected::Held)
        } else if Some(p.name.as_str()) == newest {
            Some(Protected::Newest)
        } else if pin_from.is_some_and(|txg| p.createtxg > txg) {
            Some(Protected::Unreplicated)
        } else {
            None
        }
    };
    let mut groups: Vec<(Vec<&Point>, usize)> = Vec::new();
    for (&period, &keep) in &policy.keep {
        let of_period = snaps
            .iter()
            .filter(|p| !p.bookmark && period_of(&p.name) == Some(period));
        groups.push((of_period.collect(), keep));
    }
    for (prefix, &keep) in &policy.keep_prefix {
        let named = snaps.iter().filter(|p| {
            !p.bookmark && p.name.starts_with(prefix.as_str()) && period_of(&p.name).is_none()
        });
        groups.push((named.collect(), keep));
    }
    for (group, keep) in groups {
        // Newest first: the first `keep` stay.
        for p in group.iter().rev().skip(keep) {
            match protection(p) {
                Some(why) => d.protected.push((p.name.clone(), why)),
                None => d.destroy.push(p.name.clone()),
            }
        }
    }
    // Oldest first, as the listing orders them.
    let order: BTreeMap<&str, u64> = snaps
        .iter()
        .map(|p| (p.name.as_str(), p.createtxg))
        .collect();
    d.destroy.sort_by_key(|n| order.get(n.as_str()).copied());
    d
}

/// Longest snapshot list put in one `zfs destroy` argument: Linux refuses a single
/// argument over 128 KiB, and an SSH command line has its limits too.
const MAX_SPEC: usize = 64 * 1024;

/// The `zfs destroy` snapshot specs for `destroy`, shortest form first: a run of
/// snapshots that are all destroyed and adjacent in `snaps` (oldest first) becomes
/// `first%last`; the specs are split so that none exceeds `MAX_SPEC` (64 KiB). A snapshot made
/// after the listing is newer than all of them, so it never falls inside a range.
pub fn destroy_specs(snaps: &[Point], destroy: &[String]) -> Vec<String> {
    let gone: BTreeSet<&str> = destroy.iter().map(String::as_str).collect();
    let mut parts: Vec<String> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    let mut flush = |run: &mut Vec<&str>| {
        match run.as_slice() {
            [] => {}
            [one] => parts.push(one.to_string()),
            [first, .., last] => parts.push(format!("{first}%{last}")),
        }
        run.clear();
    };
    for p in snaps.iter().filter(|p| !p.bookmark) {
        if gone.contains(p.name.as_str()) {
            run.push(&p.name);
        } else {
            flush(&mut run);
        }
    }
    flush(&mut run);
    let mut specs: Vec<String> = Vec::new();
    for part in parts {
        match specs.last_mut() {
            Some(s) if s.len() + 1 + part.len() <= MAX_SPEC => {
                s.push(',');
                s.push_str(&part);
            }
            _ => specs.push(part),
        }
    }
    specs
}

/// The outcome for one dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// The dataset.
    pub dataset: Dataset,
    /// What was (or, in a dry run, would be) destroyed and why others stayed.
    #[serde(flatten)]
    pub decision: Decision,
    /// Bytes freed (a dry run's `zfs destroy -nvp` estimate).
    pub reclaimed: Option<u64>,
    /// Why destroying failed.
    pub error: Option<String>,
}

/// Prunes every tree of `policy` on `host`: one listing, one `zfs holds`, one
/// `zfs destroy ds@a,b,c` per dataset with something to destroy.
pub async fn prune(
    host: &Host,
    policy: &PrunePolicy,
    now: u64,
    dry_run: bool,
) -> Result<Vec<Pruned>> {
    let out = host.run_ok(&list_argv(&policy.datasets)).await?;
    let listing = parse_listing(&out.stdout)?;
    let held: BTreeMap<Dataset, BTreeSet<String>> = read_holds(host, &listing)
        .await?
        .into_iter()
        .filter(|(_, tag)| tag.starts_with(ZFERRY_HOLD))
        .fold(BTreeMap::new(), |mut m, (snap, _)| {
            m.entry(snap.dataset().clone())
                .or_insert_with(BTreeSet::new)
                .insert(snap.short().to_string());
            m
        });
    let none = BTreeSet::new();
    let mut results = Vec::new();
    for info in listing.datasets.values() {
        let decision = decide(
            &info.snapshots,
            held.get(&info.name).unwrap_or(&none),
            policy,
            now,
        );
        let mut r = Pruned {
            dataset: info.name.clone(),
            decision,
            reclaimed: None,
            error: None,
        };
        for spec in destroy_specs(&info.snapshots, &r.decision.destroy) {
            let argv = cmd::destroy_snapshots(&info.name, &spec, dry_run);
            match host.run_ok(&argv).await {
                Ok(o) if dry_run => {
                    let freed = cmd::parse_reclaim(&o.stdout);
                    r.reclaimed = Some(r.reclaimed.unwrap_or(0) + freed.unwrap_or(0));
                }
                Ok(_) => {}
                Err(e) => {
                    r.error = Some(format!(
                        "{e:#}\n  hint: pruning needs 'destroy,mount' delegated on {} (zfs allow)",
                        info.name
                    ));
                    break;
                }
            }
        }
        results.push(r);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_796_042_096;

    fn p(name: &str, txg: u64, userrefs: u64) -> Point {
        Point {
            name: name.into(),
            guid: txg,
            createtxg: txg,
            bookmark: false,
            userrefs,
            creation: NOW - 100_000 + txg,
        }
    }

    fn hourly(i: u64) -> String {
        format!("autosnap_2026-11-29_{:02}:00:00_hourly", i % 24)
    }

    fn policy(keep: &[(Period, usize)], max_pin_age: Option<u64>) -> PrunePolicy {
        PrunePolicy {
            datasets: vec![Dataset::new("t/a").unwrap()],
            keep: keep.iter().copied().collect(),
            max_pin_age,
            keep_prefix: BTreeMap::new(),
        }
    }

    #[test]
    fn foreign_names_only_by_prefix_newest_first_and_held_ones_stay() {
        let snaps = vec![
            p("manual-1", 1, 0),
            p("manual-2", 2, 1),
            p("manualX", 3, 0),
            p("manual-3", 4, 0),
            p(&hourly(1), 5, 0),
            p("manual-4", 6, 0),
            p("other", 7, 0),
            p(&hourly(2), 8, 0),
        ];
        let mut pol = policy(&[], None);
        pol.keep_prefix.insert("manual-".into(), 1);
        let d = decide(&snaps, &BTreeSet::new(), &pol, NOW);
        // manual-4 is the newest kept; manual-2 is held; manualX, other and the
        // scheme's snapshots (no period in keep) are not the policy's.
        assert_eq!(d.destroy, ["manual-1", "manual-3"]);
        assert_eq!(d.protected, [("manual-2".to_string(), Protected::Held)]);
    }

    #[test]
    fn prefixes_that_match_too_much_are_refused_naming_policy_and_prefix() {
        for (prefix, why) in [
            ("", "empty one would match every snapshot"),
            ("a/b", "start of a snapshot name"),
            ("auto", "zferry's own autosnap_"),
            ("autosnap_x", "zferry's own autosnap_"),
            ("man", "also matches 'm'"),
        ] {
            let mut pol = policy(&[(Period::Daily, 1)], None);
            pol.keep_prefix.insert(prefix.into(), 1);
            if prefix == "man" {
                pol.keep_prefix.insert("m".into(), 1);
            }
            let e = pol.validate("offsite").unwrap_err().to_string();
            assert!(
                e.contains(&format!("prune policy 'offsite', keep_prefix '{prefix}'"))
                    && e.contains(why),
                "{prefix}: {e}"
            );
        }
        let mut ok = policy(&[], None);
        ok.keep_prefix.insert("zfs-auto-snap_".into(), 3);
        ok.keep_prefix.insert("manual-".into(), 3);
        ok.validate("p").unwrap();
        assert!(policy(&[], None)
            .validate("p")
            .unwrap_err()
            .to_string()
            .contains("keep_prefix"));
    }

    #[test]
    fn keeps_the_newest_per_period_and_never_foreign_names() {
        let snaps = vec![
            p("manual", 1, 0),
            p(&hourly(1), 2, 0),
            p(&hourly(2), 3, 0),
            p("autosnap_2026-11-29_03:00:00_daily", 4, 0),
            p(&hourly(3), 5, 0),
            p(&hourly(4), 6, 0),
        ];
        let d = decide(
            &snaps,
            &BTreeSet::new(),
            &policy(&[(Period::Hourly, 2)], None),
            NOW,
        );
        assert_eq!(d.destroy, [hourly(1), hourly(2)]);
        assert!(d.protected.is_empty() && d.warnings.is_empty());
    }

    #[test]
    fn holds_the_newest_and_what_a_job_lacks_survive() {
        // @2 is a job's base (held); @3..@5 arrived after it and are not replicated yet.
        let snaps: Vec<Point> = (1..=5)
            .map(|i| p(&hourly(i), i, u64::from(i == 2)))
            .collect();
        let held: BTreeSet<String> = [hourly(2)].into();
        let d = decide(&snaps, &held, &policy(&[(Period::Hourly, 0)], None), NOW);
        assert_eq!(d.destroy, [hourly(1)]);
        assert_eq!(
            d.protected,
            [
                (hourly(5), Protected::Newest),
                (hourly(4), Protected::Unreplicated),
                (hourly(3), Protected::Unreplicated),
                (hourly(2), Protected::Held),
            ]
        );
        // A stalled job's pin is lifted past max_pin_age, loudly.
        let d = decide(
            &snaps,
            &held,
            &policy(&[(Period::Hourly, 0)], Some(60)),
            NOW,
        );
        assert_eq!(d.destroy, [hourly(1), hourly(3), hourly(4)]);
        assert!(d.warnings[0].contains("seems stalled"), "{d:?}");
    }

    #[test]
    fn contiguous_runs_become_ranges_and_long_lists_split() {
        let snaps: Vec<Point> = (1..=6).map(|i| p(&hourly(i), i, 0)).collect();
        let gone = [hourly(1), hourly(2), hourly(3), hourly(5)];
        assert_eq!(
            destroy_specs(&snaps, &gone),
            [format!("{}%{},{}", hourly(1), hourly(3), hourly(5))]
        );
        // 10,000 snapshots, every 40th kept: ~250 ranges, a few commands, none too long.
        let many: Vec<Point> = (0..10_000u64)
            .map(|i| {
                p(
                    &format!("autosnap_2026-01-01_00:00:00_hourly{i:05}"),
                    i + 1,
                    0,
                )
            })
            .collect();
        let drop: Vec<String> = many
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 40 != 0)
            .map(|(_, p)| p.name.clone())
            .collect();
        let specs = destroy_specs(&many, &drop);
        assert!(!specs.is_empty() && specs.len() <= 3, "{}", specs.len());
        assert!(specs.iter().all(|s| s.len() <= MAX_SPEC));
        let alone: Vec<String> = many.iter().step_by(2).map(|p| p.name.clone()).collect();
        let split = destroy_specs(&many, &alone);
        assert!(split.len() > 1 && split.iter().all(|s| s.len() <= MAX_SPEC));
        assert_eq!(split.join(",").split(',').count(), 5000, "every one, once");
    }

    fn history() -> impl Strategy<Value = (Vec<Point>, BTreeSet<String>)> {
        proptest::collection::vec((0usize..5, any::<bool>(), any::<bool>()), 0..40).prop_map(|v| {
            let mut held = BTreeSet::new();
            let snaps = v
                .iter()
                .enumerate()
                .map(|(i, &(k, hold, zferry))| {
                    let stamp = format!("2026-01-01_00:{:02}:{:02}", i / 60, i % 60);
                    let name = match k {
                        0 => format!("autosnap_{stamp}_hourly"),
                        1 => format!("autosnap_{stamp}_daily"),
                        2 => format!("autosnap_{stamp}_monthly"),
                        3 => format!("manual{i}"),
                        _ => format!("other{i}"),
                    };
                    if hold && zferry {
                        held.insert(name.clone());
                    }
                    p(&name, i as u64 + 1, u64::from(hold))
                })
                .collect();
            (snaps, held)
        })
    }

    proptest! {
        /// For any history: nothing protected is destroyed, nothing outside the scheme
        /// or the policy's periods and prefixes, and of each period (and prefix) exactly the
        /// newest `keep` plus the protected ones remain, so the next replication still finds
        /// its base.
        #[test]
        fn never_a_protected_snapshot_exactly_the_counts_otherwise(
            (snaps, held) in history(), h in 0usize..5, dly in 0usize..5, m in 0usize..5
        ) {
            let mut pol = policy(&[(Period::Hourly, h), (Period::Daily, dly)], None);
            pol.keep_prefix.insert("manual".into(), m);
            let d = decide(&snaps, &held, &pol, NOW);
            let gone: BTreeSet<&str> = d.destroy.iter().map(String::as_str).collect();
            let oldest_base = snaps.iter().find(|p| held.contains(&p.name)).map(|p| p.createtxg);
            for p in &snaps {
                if !gone.contains(p.name.as_str()) { continue; }
                prop_assert_eq!(p.userrefs, 0, "held {}", p.name);
                prop_assert!(Some(p) != snaps.last(), "newest {}", p.name);
                prop_assert!(oldest_base.is_none_or(|t| p.createtxg < t), "unreplicated {}", p.name);
                prop_assert!(
                    matches!(period_of(&p.name), Some(Period::Hourly | Period::Daily)) || p.name.starts_with("manual"),
                    "{}", p.name
                );
            }
            let in_group = |p: &Point, g: usize| match g {
                0 => period_of(&p.name) == Some(Period::Hourly),
                1 => period_of(&p.name) == Some(Period::Daily),
                _ => p.name.starts_with("manual"),
            };
            for (g, keep) in [(0, h), (1, dly), (2, m)] {
                let of: Vec<&Point> = snaps.iter().filter(|p| in_group(p, g)).collect();
                let newest_keep: BTreeSet<&str> = of.iter().rev().take(keep).map(|p| p.name.as_str()).collect();
                for p in &of {
                    let protected = d.protected.iter().any(|(n, _)| n == &p.name);
                    let destroyed = gone.contains(p.name.as_str());
                    prop_assert_eq!(destroyed, !newest_keep.contains(p.name.as_str()) && !protected, "{}", p.name);
                }
            }
            // The next incremental's base survives on this side.
            if let Some(base) = snaps.iter().rev().find(|p| held.contains(&p.name)) {
                prop_assert!(!gone.contains(base.name.as_str()));
            }
        }
    }
}
