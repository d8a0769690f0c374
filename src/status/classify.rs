//! The one decision `status`, MQTT and the metrics share: is a dataset's copy `ok`,
//! `stale`, `missing` or `failed`? Pure functions over plain facts, no I/O.

use crate::human::human_secs;
use serde::{Deserialize, Serialize};

/// A dataset's replication state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Replicated, and the copy is within the staleness threshold.
    Ok,
    /// Replicated once, but the copy lags the source by more than the threshold.
    Stale,
    /// Never replicated: no success on record and no snapshot on the target.
    Missing,
    /// The last run failed for this dataset (or the whole job failed).
    Failed,
}

impl State {
    /// `ok`, `stale`, `missing` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Stale => "stale",
            State::Missing => "missing",
            State::Failed => "failed",
        }
    }
}

/// A snapshot as `status` sees it: identity and creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snap {
    /// The part after `@`.
    pub name: String,
    /// GUID, equal on source and copy.
    pub guid: u64,
    /// `creation`, Unix seconds (a received snapshot keeps the source's).
    pub creation: u64,
}

/// How long the copy has been behind: 0 when the target's newest snapshot is the
/// source's newest; otherwise the age of the oldest source snapshot the target lacks.
/// `None` when the target has no snapshot at all.
///
/// `source` is ordered oldest first.
pub fn lag(source: &[Snap], target_newest: Option<&Snap>, now: u64) -> Option<u64> {
    let t = target_newest?;
    let Some(newest) = source.last() else {
        // The source has nothing (left): nothing newer is waiting.
        return Some(0);
    };
    if newest.guid == t.guid {
        return Some(0);
    }
    // By GUID first (exact), by creation time when the target's newest was pruned at
    // the source.
    let waiting = match source.iter().position(|s| s.guid == t.guid) {
        Some(i) => source.get(i + 1),
        None => source.iter().find(|s| s.creation > t.creation),
    };
    Some(waiting.map_or(0, |w| now.saturating_sub(w.creation)))
}

/// What is known about one dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Why the last run failed for it (its own error, or the job's).
    pub error: Option<String>,
    /// When it last replicated successfully, Unix seconds.
    pub last_success: Option<u64>,
    /// Lag from a live listing (see [`lag`]), or `None` when no listing was possible.
    pub lag: Option<u64>,
    /// The target has at least one snapshot (from a live listing; `None` when unknown).
    pub target_has_snapshot: Option<bool>,
    /// The source has a snapshot to replicate (`None` when unknown).
    pub source_has_snapshot: Option<bool>,
    /// Age of the target's newest snapshot, the recovery point (`None` when unknown).
    pub newest_copy_age: Option<u64>,
}

/// What a dataset is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Seconds the copy may lag the source's newest snapshot.
    pub stale_after: u64,
    /// Seconds the newest copy may be old, however in sync it is: a source that stopped
    /// taking snapshots leaves a copy "in sync" with an ever older past.
    pub max_snapshot_age: u64,
}

/// The state and, unless `ok`, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The state.
    pub state: State,
    /// Lag used for the decision: live, or else the time since the last success.
    pub lag: Option<u64>,
    /// Why it is not `ok`.
    pub reason: Option<String>,
}

/// Classifies one dataset. A failure always wins (a failed run must never look green
/// because an older copy is recent); then never-replicated; then staleness.
pub fn classify(f: &Facts, now: u64, t: Thresholds) -> Verdict {
    let lag = f
        .lag
        .or_else(|| f.last_success.map(|t| now.saturating_sub(t)));
    if let Some(e) = &f.error {
        return Verdict {
            state: State::Failed,
            lag,
            reason: Some(e.clone()),
        };
    }
    if f.source_has_snapshot == Some(false) && f.target_has_snapshot != Some(true) {
        return Verdict {
            state: State::Missing,
            lag: None,
            reason: Some(
                "the source has no snapshot: nothing can be replicated until one is taken".into(),
            ),
        };
    }
    let never = f.last_success.is_none() && f.target_has_snapshot != Some(true);
    if never || f.target_has_snapshot == Some(false) {
        return Verdict {
            state: State::Missing,
            lag: None,
            reason: Some(if never {
                "never replicated".into()
            } else {
                "the target has no snapshot".into()
            }),
        };
    }
    match (lag, f.newest_copy_age) {
        (Some(l), _) if l > t.stale_after => Verdict {
            state: State::Stale,
            lag,
            reason: Some(format!(
                "the copy is {} behind (threshold {})",
                human_secs(l),
                human_secs(t.stale_after)
            )),
        },
        (_, Some(age)) if age > t.max_snapshot_age => Verdict {
            state: State::Stale,
            lag,
            reason: Some(format!(
                "newest copy is {} old (threshold {}){}",
                human_secs(age),
                human_secs(t.max_snapshot_age),
                if lag == Some(0) {
                    "; no new snapshot on the source since then"
                } else {
                    ""
                }
            )),
        },
        _ => Verdict {
            state: State::Ok,
            lag,
            reason: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, guid: u64, creation: u64) -> Snap {
        Snap {
            name: name.into(),
            guid,
            creation,
        }
    }

    const NOW: u64 = 1_000_000;
    const DAY: u64 = 86_400;

    #[test]
    fn lag_is_zero_in_sync_and_the_wait_of_the_oldest_missing_snapshot_otherwise() {
        let src = [
            snap("a", 1, NOW - 3 * DAY),
            snap("b", 2, NOW - 2 * DAY),
            snap("c", 3, NOW - 60),
        ];
        assert_eq!(lag(&src, Some(&snap("c", 3, NOW - 60)), NOW), Some(0));
        // Target ends at a: b has waited two days.
        assert_eq!(
            lag(&src, Some(&snap("a", 1, NOW - 3 * DAY)), NOW),
            Some(2 * DAY)
        );
        // Target ends at a snapshot the source pruned: by creation time.
        assert_eq!(
            lag(&src, Some(&snap("x", 9, NOW - 2 * DAY - 5)), NOW),
            Some(2 * DAY)
        );
        assert_eq!(lag(&src, None, NOW), None);
        assert_eq!(lag(&[], Some(&snap("a", 1, 5)), NOW), Some(0));
    }

    fn t(stale_after: u64) -> Thresholds {
        Thresholds {
            stale_after,
            max_snapshot_age: 2 * stale_after,
        }
    }

    #[test]
    fn an_old_recovery_point_is_stale_however_in_sync() {
        let at = |lag, age| Facts {
            lag: Some(lag),
            newest_copy_age: Some(age),
            target_has_snapshot: Some(true),
            last_success: Some(NOW - 60),
            ..Facts::default()
        };
        assert_eq!(classify(&at(0, 2 * DAY), NOW, t(DAY)).state, State::Ok);
        let v = classify(&at(0, 2 * DAY + 1), NOW, t(DAY));
        assert_eq!(v.state, State::Stale);
        let why = v.reason.unwrap();
        assert!(
            why.contains("newest copy is 2d0h old")
                && why.contains("no new snapshot on the source"),
            "{why}"
        );
        // Lag over its threshold is said first.
        let v = classify(&at(DAY + 1, 3 * DAY), NOW, t(DAY));
        assert!(v.reason.unwrap().contains("behind"));
    }

    #[test]
    fn a_source_without_snapshots_is_missing() {
        let f = Facts {
            source_has_snapshot: Some(false),
            target_has_snapshot: Some(false),
            ..Facts::default()
        };
        let v = classify(&f, NOW, t(DAY));
        assert_eq!(v.state, State::Missing);
        assert!(v.reason.unwrap().contains("source has no snapshot"));
    }

    #[test]
    fn failure_wins_over_a_recent_success() {
        let v = classify(
            &Facts {
                error: Some("ssh: connection refused".into()),
                last_success: Some(NOW - 10),
                lag: Some(0),
                target_has_snapshot: Some(true),
                ..Facts::default()
            },
            NOW,
            t(DAY),
        );
        assert_eq!(v.state, State::Failed);
        assert_eq!(v.reason.as_deref(), Some("ssh: connection refused"));
    }

    #[test]
    fn never_replicated_is_missing_not_stale() {
        let f = Facts::default();
        assert_eq!(classify(&f, NOW, t(DAY)).state, State::Missing);
        let f = Facts {
            target_has_snapshot: Some(false),
            lag: None,
            ..Facts::default()
        };
        let v = classify(&f, NOW, t(DAY));
        assert_eq!(
            (v.state, v.reason.as_deref()),
            (State::Missing, Some("never replicated"))
        );
        // Success on record but the copy vanished.
        let f = Facts {
            last_success: Some(NOW - 5),
            target_has_snapshot: Some(false),
            ..Facts::default()
        };
        assert_eq!(classify(&f, NOW, t(DAY)).state, State::Missing);
    }

    #[test]
    fn stale_only_over_the_threshold() {
        let at = |lag| Facts {
            lag: Some(lag),
            target_has_snapshot: Some(true),
            ..Facts::default()
        };
        assert_eq!(classify(&at(DAY), NOW, t(DAY)).state, State::Ok);
        let v = classify(&at(DAY + 1), NOW, t(DAY));
        assert_eq!(v.state, State::Stale);
        assert!(v.reason.unwrap().contains("1d0h behind"));
        // A copy made by something else (no success on record) still counts by lag.
        assert_eq!(classify(&at(5), NOW, t(DAY)).state, State::Ok);
    }

    #[test]
    fn without_a_listing_the_last_success_age_stands_in_for_lag() {
        let f = Facts {
            last_success: Some(NOW - 2 * DAY),
            ..Facts::default()
        };
        let v = classify(&f, NOW, t(DAY));
        assert_eq!((v.state, v.lag), (State::Stale, Some(2 * DAY)));
        let f = Facts {
            last_success: Some(NOW - 60),
            ..Facts::default()
        };
        assert_eq!(classify(&f, NOW, t(DAY)).state, State::Ok);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(45), "45s");
        assert_eq!(human_secs(125), "2m5s");
        assert_eq!(human_secs(3 * 3600 + 720), "3h12m");
        assert_eq!(human_secs(2 * DAY + 4 * 3600), "2d4h");
    }
}
