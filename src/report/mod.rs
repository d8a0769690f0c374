//! Run reports: what happened to each dataset, for humans and as JSON.
//!
//! Plain data: the state directory ([`crate::state`]) saves them, `status` and the
//! sinks read them, the front doors print them.

use crate::config::Kind;
use crate::human::human_bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened to one dataset; in JSON, the snake_case name (`up_to_date`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The copy already ends at the source's newest snapshot.
    UpToDate,
    /// First sync: a full stream (and the incrementals after it).
    Full,
    /// An incremental stream from the common base.
    Incremental,
    /// An interrupted receive was completed.
    Resume,
    /// Nothing to do by design (e.g. a parent without snapshots); see the note.
    Skipped,
    /// Refused before anything was sent (e.g. a diverged target); see the error.
    Refused,
    /// Tried and failed (or not attempted because its parent failed). The default,
    /// so a report is failed until something says what happened.
    #[default]
    Failed,
}

impl Action {
    /// The name in JSON and in human lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::UpToDate => "up_to_date",
            Action::Full => "full",
            Action::Incremental => "incremental",
            Action::Resume => "resume",
            Action::Skipped => "skipped",
            Action::Refused => "refused",
            Action::Failed => "failed",
        }
    }

    /// Data arrived: a full, incremental or resumed stream.
    pub fn transferred(self) -> bool {
        matches!(self, Action::Full | Action::Incremental | Action::Resume)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetReport {
    /// Source dataset.
    pub source: String,
    /// Target dataset.
    pub target: String,
    /// What happened.
    pub action: Action,
    /// Snapshots that arrived (or would, in a dry run).
    pub snapshots: Vec<String>,
    /// Bytes streamed (in a dry run: the `zfs send -nP` estimate).
    pub bytes: u64,
    /// Bytes that crossed the wire for the streams that were compressed (`compress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_bytes: Option<u64>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The common base the copy ends at.
    pub base: Option<String>,
    /// When the base was created on the source, Unix seconds: the copy's recovery point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_creation: Option<u64>,
    /// Snapshots or datasets destroyed on the target by an explicit option.
    pub destroyed: Vec<String>,
    /// Why it failed or was refused.
    pub error: Option<String>,
    /// Things that went wrong without failing the transfer (e.g. a hold not placed).
    pub warnings: Vec<String>,
    /// Why nothing was done, when that is expected (e.g. a parent without snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Whether holds moved.
    pub holds_changed: bool,
}

impl DatasetReport {
    /// True when the dataset ended failed or refused.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// True when data or holds moved.
    pub fn changed(&self) -> bool {
        !self.snapshots.is_empty() && self.action != Action::UpToDate || self.holds_changed
    }
}

/// One run of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Job name.
    pub job: String,
    /// `pull` or `push`.
    pub kind: Kind,
    /// Remote host label.
    pub host: String,
    /// Only planned, nothing changed.
    pub dry_run: bool,
    /// Start, Unix seconds.
    pub started: u64,
    /// End, Unix seconds.
    pub finished: u64,
    /// A failure of the whole job (e.g. SSH unreachable), before any dataset.
    pub error: Option<String>,
    /// The job's bandwidth limit, bytes per second, when it has one (`bwlimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<u64>,
    /// The job's wire compression (`zstd:LEVEL`), when it has one (`compress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<String>,
    /// Per dataset.
    pub datasets: Vec<DatasetReport>,
}

impl RunReport {
    /// True when the job and every dataset succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.datasets.iter().all(|d| !d.failed())
    }

    /// True when anything moved.
    pub fn changed(&self) -> bool {
        self.datasets.iter().any(DatasetReport::changed)
    }

    /// Human summary, one line per dataset.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} {} {} ({}){}\n",
            if self.ok() { "OK" } else { "FAILED" },
            self.kind.as_str(),
            self.job,
            self.host,
            if self.dry_run { " [dry run]" } else { "" }
        );
        if let Some(e) = &self.error {
            s.push_str(&format!("  error: {e}\n"));
        }
        for d in &self.datasets {
            let what = match d.action {
                Action::UpToDate => "up to date".to_string(),
                a if d.snapshots.is_empty() => a.to_string(),
                a => format!(
                    "{a}, {}, {}{}{}",
                    snapshot_span(&d.snapshots),
                    if self.dry_run { "about " } else { "" },
                    human_bytes(d.bytes),
                    d.wire_bytes
                        .map(|w| format!(" ({} on the wire)", human_bytes(w)))
                        .unwrap_or_default()
                ),
            };
            s.push_str(&format!("  {} -> {}: {what}", d.source, d.target));
            match &d.note {
                Some(n) => s.push_str(&format!(" ({n})\n")),
                None => s.push('\n'),
            }
            if let Some(e) = &d.error {
                s.push_str(&format!("    error: {e}\n"));
            }
            for w in &d.warnings {
                s.push_str(&format!("    warning: {w}\n"));
            }
            for x in &d.destroyed {
                s.push_str(&format!("    destroyed: {x}\n"));
            }
        }
        s
    }
}

/// `1 snapshot @a` or `3 snapshots @a..@c`; `snaps` is not empty.
fn snapshot_span(snaps: &[String]) -> String {
    match snaps {
        [one] => format!("1 snapshot @{one}"),
        [first, .., last] => format!("{} snapshots @{first}..@{last}", snaps.len()),
        [] => "no snapshots".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(action: Action, snapshots: &[&str], bytes: u64) -> DatasetReport {
        DatasetReport {
            source: "tank/a".into(),
            target: "b/tank/a".into(),
            action,
            snapshots: snapshots.iter().map(|s| s.to_string()).collect(),
            bytes,
            ..DatasetReport::default()
        }
    }

    #[test]
    fn human_names_the_snapshot_span_and_sizes_with_units() {
        let mut r = RunReport {
            job: "pull-a".into(),
            kind: Kind::Pull,
            host: "z@h".into(),
            datasets: vec![
                ds(Action::Full, &["s1", "s2", "s3"], 6_335_032),
                ds(Action::Incremental, &["s4"], 2_588),
                ds(Action::UpToDate, &[], 0),
            ],
            ..RunReport::default()
        };
        r.datasets[2].warnings.push("hold not placed".into());
        let mut parent = ds(Action::Skipped, &[], 0);
        parent.note = Some("parent only".into());
        r.datasets.push(parent);
        assert_eq!(
            r.human(),
            "OK pull pull-a (z@h)\n\
             \x20 tank/a -> b/tank/a: full, 3 snapshots @s1..@s3, 6.0 MiB\n\
             \x20 tank/a -> b/tank/a: incremental, 1 snapshot @s4, 2.5 KiB\n\
             \x20 tank/a -> b/tank/a: up to date\n\
             \x20   warning: hold not placed\n\
             \x20 tank/a -> b/tank/a: skipped (parent only)\n"
        );
        r.dry_run = true;
        assert!(r
            .human()
            .contains("incremental, 1 snapshot @s4, about 2.5 KiB\n"));
    }

    #[test]
    fn actions_and_kinds_are_the_json_strings_reports_always_had() {
        for (a, name) in [
            (Action::UpToDate, "up_to_date"),
            (Action::Full, "full"),
            (Action::Incremental, "incremental"),
            (Action::Resume, "resume"),
            (Action::Skipped, "skipped"),
            (Action::Refused, "refused"),
            (Action::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{name}\""));
            assert_eq!(a.to_string(), name);
            assert_eq!(
                serde_json::from_str::<Action>(&format!("\"{name}\"")).unwrap(),
                a
            );
        }
        let r = RunReport {
            kind: Kind::Push,
            ..RunReport::default()
        };
        assert!(serde_json::to_string(&r)
            .unwrap()
            .contains(r#""kind":"push""#));
    }
}
