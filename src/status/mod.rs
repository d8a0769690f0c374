//! `zferry status`: the latest reports and history joined with one live listing per
//! side, classified by [`classify::classify`]. The same [`JobStatus`] feeds MQTT and
//! the Prometheus textfile after every run.

pub mod classify;

use crate::config::{Config, Job, Overrides, StateSettings};
use crate::host::Pool;
use crate::human::human_secs;
use crate::report::{Action, RunReport};
use crate::sides::list;
use crate::state::lock::{self, Wedged};
use crate::state::store::{self, History};
use crate::zfs::list::Listing;
use crate::zfs::name::Dataset;
use anyhow::Result;
use classify::{classify, Facts, Snap, State, Thresholds};
use serde::Serialize;
use std::collections::BTreeMap;

/// One dataset's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetStatus {
    /// Source dataset.
    pub source: String,
    /// Target dataset.
    pub target: String,
    /// `ok`, `stale`, `missing` or `failed`.
    pub state: State,
    /// Why it is not ok.
    pub reason: Option<String>,
    /// Last successful replication, Unix seconds.
    pub last_success: Option<u64>,
    /// Newest snapshot on the source (live listing only).
    pub source_newest: Option<String>,
    /// Newest snapshot on the target (live listing only).
    pub target_newest: Option<String>,
    /// Seconds the copy is behind (see [`classify::lag`]).
    pub lag: Option<u64>,
    /// When the target's newest snapshot was taken, Unix seconds: the recovery point.
    pub newest_copy: Option<u64>,
    /// Bytes moved by the last run.
    pub bytes: u64,
    /// Duration of the last run for it, ms.
    pub duration_ms: u64,
}

/// One job's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// Job name.
    pub job: String,
    /// `pull` or `push`.
    pub kind: String,
    /// Remote host label.
    pub host: String,
    /// True when the job and every dataset are `ok`.
    pub ok: bool,
    /// A failure of the whole job: its last run's, or this status's own listing.
    pub error: Option<String>,
    /// End of the last run, Unix seconds.
    pub last_run: Option<u64>,
    /// A run holding the job's lock right now (`pid N started T`, for how long).
    pub running: Option<String>,
    /// When this status was computed.
    pub checked: u64,
    /// Per dataset.
    pub datasets: Vec<DatasetStatus>,
}

impl JobStatus {
    /// Source names of datasets in state `s`.
    pub fn in_state(&self, s: State) -> Vec<String> {
        self.datasets
            .iter()
            .filter(|d| d.state == s)
            .map(|d| d.source.clone())
            .collect()
    }

    /// The first reason it is not ok, for one-line sinks (ping body, MQTT `failure`).
    pub fn failure(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        self.datasets
            .iter()
            .find(|d| d.state != State::Ok)
            .map(|d| {
                format!(
                    "{}: {}: {}",
                    d.source,
                    d.state.as_str(),
                    d.reason.as_deref().unwrap_or("")
                )
            })
    }

    /// Human lines.
    pub fn human(&self, now: u64) -> String {
        let mut s = format!(
            "{} {} {} ({}), last run {}\n",
            if self.ok { "OK" } else { "NOT OK" },
            self.kind,
            self.job,
            self.host,
            self.last_run.map_or("never".into(), |t| ago(now, t))
        );
        if let Some(r) = &self.running {
            s.push_str(&format!("  running: {r}\n"));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("  error: {e}\n"));
        }
        for d in &self.datasets {
            s.push_str(&format!(
                "  {:<7} {} -> {}: last success {}, source @{} target @{} (taken {}), lag {}\n",
                d.state.as_str(),
                d.source,
                d.target,
                d.last_success.map_or("never".into(), |t| ago(now, t)),
                d.source_newest.as_deref().unwrap_or("?"),
                d.target_newest.as_deref().unwrap_or("-"),
                d.newest_copy.map_or("?".into(), |t| format!(
                    "{} ago",
                    human_secs(now.saturating_sub(t))
                )),
                d.lag.map_or("?".into(), human_secs),
            ));
            if let Some(r) = &d.reason {
                s.push_str(&format!("          {}\n", r.replace('\n', "\n          ")));
            }
        }
        s
    }
}

fn ago(now: u64, t: u64) -> String {
    format!("{} ({} ago)", utc(t), human_secs(now.saturating_sub(t)))
}

use crate::clock::utc;

/// One side's datasets and their snapshots (oldest first) from a live listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    /// By dataset name.
    pub datasets: BTreeMap<String, Vec<Snap>>,
}

/// Both sides of a job, listed now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Source side.
    pub source: Side,
    /// Target side.
    pub target: Side,
    /// (source, target) for every source dataset under the job's roots.
    pub pairs: Vec<(String, String)>,
}

/// A side's snapshots (oldest first) from the same `zfs list -Hp` a run makes, so
/// status works through the SSH guard and costs one listing per side.
pub fn side_from(listing: &Listing) -> Side {
    Side {
        datasets: listing
            .datasets
            .values()
            .map(|d| {
                let snaps = d
                    .snapshots
                    .iter()
                    .map(|p| Snap {
                        name: p.name.clone(),
                        guid: p.guid,
                        creation: p.creation,
                    })
                    .collect();
                (d.name.to_string(), snaps)
            })
            .collect(),
    }
}

/// Lists both sides of `job` now: one `zfs list` per side, over the pool's connection.
pub async fn live(job: &Job, pool: &mut Pool) -> Result<Live> {
    let remote = pool.get(&job.ssh).await?;
    let sides = job.kind.sides(&remote);
    let target_roots = job.target_roots()?;
    // Missing roots are fine here (a gone source, a never-replicated target).
    let (source, target) = tokio::join!(
        list(&sides.source, &job.datasets),
        list(&sides.target, &target_roots)
    );
    let ((source, _), (target, _)) = (source?, target?);
    let (source, target) = (side_from(&source), side_from(&target));
    let mut pairs = Vec::new();
    for name in source.datasets.keys() {
        let ds = Dataset::new(name)?;
        if job.datasets.iter().any(|r| ds.is_within(r)) {
            if let Ok(t) = job.target_of(&ds) {
                pairs.push((name.clone(), t.to_string()));
            }
        }
    }
    Ok(Live {
        source,
        target,
        pairs,
    })
}

/// `child` is a descendant of `parent` (dataset names).
fn is_below(child: &str, parent: &str) -> bool {
    child
        .strip_prefix(parent)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// How the sides were seen for a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Listed now (`zferry status`).
    Listed(&'a Live),
    /// The listing now failed; why (a job error in the status).
    Unlisted(String),
    /// Not listed: the report is the run that just ended (the sinks after a run), so
    /// its successes are in sync now (lag 0) without listing again.
    JustRan,
}

/// Everything [`job_status`] joins for one job.
#[derive(Debug, Clone)]
pub struct JobFacts<'a> {
    /// Job name.
    pub job: &'a str,
    /// Its latest report, if it ever ran.
    pub report: Option<&'a RunReport>,
    /// Per dataset, its last success.
    pub history: &'a History,
    /// The sides now, or why not.
    pub seen: Seen<'a>,
    /// Now, Unix seconds.
    pub now: u64,
    /// What the datasets are judged against.
    pub thresholds: Thresholds,
    /// The job's configured source roots: datasets the history or an older report knows
    /// outside them were dropped from the config and are no longer the job's. `None`
    /// (roots unknown) keeps everything: a status never hides a dataset by mistake.
    pub roots: Option<&'a [Dataset]>,
}

/// Joins what is known about a job into its status.
pub fn job_status(facts: JobFacts<'_>) -> JobStatus {
    let JobFacts {
        job,
        report,
        history: hist,
        seen,
        now,
        thresholds,
        roots,
    } = facts;
    let (live, live_error, fresh) = match seen {
        Seen::Listed(l) => (Some(l), None, false),
        Seen::Unlisted(why) => (None, Some(why), false),
        Seen::JustRan => (None, None, true),
    };
    // source -> target, from everything that knows about the dataset.
    let mut pairs: BTreeMap<String, String> = BTreeMap::new();
    for (s, k) in &hist.datasets {
        pairs.insert(s.clone(), k.target.clone());
    }
    if let Some(r) = report {
        for d in r
            .datasets
            .iter()
            .filter(|d| d.action != Action::Skipped || d.failed())
        {
            pairs.insert(d.source.clone(), d.target.clone());
        }
    }
    if let Some(l) = live {
        for (s, t) in &l.pairs {
            // A source without snapshots is only skipped when it is the parent of
            // replicated children; a leaf without any is missing, never silently absent.
            let has_snapshots = l.source.datasets.get(s).is_some_and(|v| !v.is_empty());
            let parent = l.pairs.iter().any(|(c, _)| is_below(c, s));
            if has_snapshots || !parent {
                pairs.insert(s.clone(), t.clone());
            }
        }
    }
    if let Some(roots) = roots {
        pairs.retain(|source, _| {
            Dataset::new(source).map_or(true, |d| roots.iter().any(|r| d.is_within(r)))
        });
    }
    let job_error = report.and_then(|r| r.error.clone());
    let mut datasets = Vec::new();
    for (source, target) in pairs {
        let in_report = report.and_then(|r| r.datasets.iter().find(|d| d.source == source));
        let mut facts = Facts {
            error: in_report
                .and_then(|d| d.error.clone())
                .or_else(|| job_error.clone()),
            last_success: hist.datasets.get(&source).and_then(|k| k.last_success),
            ..Facts::default()
        };
        let (mut source_newest, mut target_newest, mut newest_copy) = (None, None, None);
        if let Some(l) = live {
            let src = l
                .source
                .datasets
                .get(&source)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let dst = l.target.datasets.get(&target).and_then(|v| v.last());
            facts.lag = classify::lag(src, dst, now);
            facts.target_has_snapshot = Some(dst.is_some());
            facts.source_has_snapshot = Some(!src.is_empty());
            newest_copy = dst.map(|d| d.creation);
            source_newest = src.last().map(|s| s.name.clone());
            target_newest = dst.map(|s| s.name.clone());
        } else if fresh && in_report.is_some_and(|d| !d.failed()) {
            facts.lag = Some(0);
            facts.target_has_snapshot = Some(true);
            newest_copy = in_report.and_then(|d| d.base_creation);
            target_newest = in_report.and_then(|d| d.base.clone());
            source_newest = target_newest.clone();
        }
        facts.newest_copy_age = newest_copy.map(|c| now.saturating_sub(c));
        let v = classify(&facts, now, thresholds);
        datasets.push(DatasetStatus {
            source,
            target,
            state: v.state,
            reason: v.reason,
            last_success: facts.last_success,
            source_newest,
            target_newest,
            lag: v.lag,
            newest_copy,
            bytes: in_report.map_or(0, |d| d.bytes),
            duration_ms: in_report.map_or(0, |d| d.duration_ms),
        });
    }
    let error = match (job_error, live_error) {
        (Some(a), Some(b)) => Some(format!("{a}; and listing now: {b}")),
        (a, b) => a.or(b),
    };
    JobStatus {
        job: job.to_string(),
        kind: report.map_or(String::new(), |r| r.kind.as_str().to_string()),
        host: report.map_or(String::new(), |r| r.host.clone()),
        ok: error.is_none() && datasets.iter().all(|d| d.state == State::Ok),
        error,
        last_run: report.map(|r| r.finished),
        running: None,
        checked: now,
        datasets,
    }
}

/// `zferry status` as the command line calls it.
#[derive(Debug, Clone)]
pub struct StatusCmd {
    /// Config file.
    pub config: std::path::PathBuf,
    /// Jobs to show (default all).
    pub jobs: Vec<String>,
    /// JSON on stdout instead of text.
    pub json: bool,
    /// Override of the config's `stale_after`.
    pub stale_after: Option<u64>,
    /// Override of the config's `lock_max_age`.
    pub lock_max_age: Option<u64>,
    /// Override of the config's `state_dir`.
    pub state_dir: Option<std::path::PathBuf>,
}

/// What `zferry status` found, for the command line to map to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every dataset of every job shown is `ok`.
    AllOk,
    /// Something is `stale`, `missing` or `failed`.
    NotOk,
    /// A run holds a job's lock past `lock_max_age` right now.
    Wedged,
}

/// Runs `zferry status` and prints it. An error (config, unknown job, unreadable
/// state) is a usage error: nothing was looked at.
pub fn command(c: StatusCmd) -> Result<Outcome> {
    let cfg = Config::load(&c.config)?;
    if let Some(bad) = c.jobs.iter().find(|j| !cfg.jobs.contains_key(*j)) {
        anyhow::bail!("no job '{bad}' in {}", c.config.display());
    }
    let StateSettings {
        state_dir: dir,
        stale_after,
        lock_max_age,
    } = cfg.state_settings(Overrides {
        state_dir: c.state_dir,
        stale_after: c.stale_after,
        lock_max_age: c.lock_max_age,
    });
    let rt = crate::host::runtime().expect("tokio runtime");
    let mut out = Vec::new();
    let mut wedged = false;
    let mut pool = Pool::default();
    for (name, job) in &cfg.jobs {
        if !c.jobs.is_empty() && !c.jobs.contains(name) {
            continue;
        }
        let (report, hist) = match (
            store::load_report(&dir, name),
            store::load_history(&dir, name),
        ) {
            (Ok(r), Ok(h)) => (r, h),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let listed = rt.block_on(live(job, &mut pool));
        let mut st = job_status(JobFacts {
            job: name,
            report: report.as_ref(),
            history: &hist,
            seen: match &listed {
                Ok(l) => Seen::Listed(l),
                Err(e) => Seen::Unlisted(format!("cannot list now: {e:#}")),
            },
            now: crate::clock::now(),
            thresholds: Thresholds {
                stale_after,
                max_snapshot_age: cfg.max_snapshot_age(job).unwrap_or(stale_after),
            },
            roots: Some(&job.datasets),
        });
        if st.kind.is_empty() {
            st.kind = job.kind.as_str().to_string();
            st.host = job.ssh.label();
        }
        wedged |= show_lock(&mut st, &dir, lock_max_age, report.as_ref());
        out.push(st);
    }
    rt.block_on(pool.close());
    if c.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("status serializes")
        );
    } else {
        let now = crate::clock::now();
        for s in &out {
            print!("{}", s.human(now));
        }
    }
    Ok(if wedged {
        Outcome::Wedged
    } else if out.iter().all(|s| s.ok) {
        Outcome::AllOk
    } else {
        Outcome::NotOk
    })
}

/// Adds a run holding the job's lock to its status; true when it holds it past
/// `max_age` (wedged). Where the lock cannot be looked at, the last run's report decides.
fn show_lock(
    st: &mut JobStatus,
    dir: &std::path::Path,
    max_age: u64,
    report: Option<&RunReport>,
) -> bool {
    match lock::probe(dir, &st.job) {
        Ok(None) => false,
        Ok(Some(held)) => {
            st.running = Some(format!("{}, for {}", held.holder, human_secs(held.age)));
            let path = store::job_path(dir, &st.job, ".lock");
            let Err(wedged) = Wedged::check(held, max_age, path) else {
                return false;
            };
            let why = wedged.to_string();
            st.error = Some(match st.error.take() {
                Some(e) if Wedged::is_saved_as(&e) => why,
                Some(e) => format!("{why}; last run: {e}"),
                None => why,
            });
            st.ok = false;
            true
        }
        Err(e) => {
            crate::log::warn!("job {}: {e:#}", st.job);
            report
                .and_then(|r| r.error.as_deref())
                .is_some_and(Wedged::is_saved_as)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DatasetReport;
    use crate::state::store::Known;
    use crate::zfs::list::parse_listing;

    const NOW: u64 = 2_000_000_000;

    fn report(error: Option<&str>, ds: Vec<DatasetReport>) -> RunReport {
        RunReport {
            job: "j".into(),
            kind: crate::config::Kind::Pull,
            host: "h".into(),
            finished: NOW - 10,
            error: error.map(String::from),
            datasets: ds,
            ..RunReport::default()
        }
    }

    fn hist(src: &str, last: Option<u64>) -> History {
        let mut h = History::default();
        h.datasets.insert(
            src.into(),
            Known {
                target: format!("b/{src}"),
                last_success: last,
                snapshot: None,
            },
        );
        h
    }

    const DAY_THRESHOLDS: Thresholds = Thresholds {
        stale_after: 86400,
        max_snapshot_age: 86400,
    };

    #[test]
    fn live_listing_is_the_runs_listing() {
        let listing = parse_listing(
            "t/a\tfilesystem\t11\t1\toff\t-\t0\t-\t-\t100\n\
             t/a@s1\tsnapshot\t21\t2\t-\t-\t-\t-\t0\t101\n\
             t/a#s1\tbookmark\t21\t2\t-\t-\t-\t-\t-\t101\n\
             t/a@s2\tsnapshot\t22\t3\t-\t-\t-\t-\t0\t102\n\
             t/e\tfilesystem\t12\t4\toff\t-\t0\t-\t-\t103\n",
        )
        .unwrap();
        let side = side_from(&listing);
        assert_eq!(side.datasets["t/a"].len(), 2, "bookmarks are not copies");
        assert_eq!(
            side.datasets["t/a"][1],
            Snap {
                name: "s2".into(),
                guid: 22,
                creation: 102
            }
        );
        assert!(side.datasets["t/e"].is_empty());
    }

    #[test]
    fn a_job_error_fails_every_known_dataset_with_its_reason() {
        let r = report(Some("cannot connect to zferry@h over SSH"), vec![]);
        let s = job_status(JobFacts {
            job: "j",
            report: Some(&r),
            history: &hist("t/a", Some(NOW - 3600)),
            seen: Seen::JustRan,
            now: NOW,
            thresholds: DAY_THRESHOLDS,
            roots: None,
        });
        assert!(!s.ok);
        assert_eq!(s.datasets.len(), 1);
        assert_eq!(s.datasets[0].state, State::Failed);
        assert_eq!(
            s.datasets[0].last_success,
            Some(NOW - 3600),
            "kept across the failure"
        );
        assert!(s.failure().unwrap().contains("cannot connect"));
    }

    #[test]
    fn a_fresh_success_is_ok_and_skipped_datasets_are_not_tracked() {
        let ok = DatasetReport {
            source: "t/a".into(),
            target: "b/t/a".into(),
            action: Action::Incremental,
            base: Some("s2".into()),
            bytes: 42,
            ..DatasetReport::default()
        };
        let skipped = DatasetReport {
            source: "t/e".into(),
            target: "b/t/e".into(),
            action: Action::Skipped,
            ..DatasetReport::default()
        };
        let r = report(None, vec![ok, skipped]);
        let s = job_status(JobFacts {
            job: "j",
            report: Some(&r),
            history: &hist("t/a", Some(NOW - 10)),
            seen: Seen::JustRan,
            now: NOW,
            thresholds: DAY_THRESHOLDS,
            roots: None,
        });
        assert!(s.ok, "{s:?}");
        assert_eq!(s.datasets.len(), 1);
        assert_eq!((s.datasets[0].lag, s.datasets[0].bytes), (Some(0), 42));
        assert_eq!(s.in_state(State::Ok), vec!["t/a".to_string()]);
    }

    #[test]
    fn live_listing_finds_missing_and_stale() {
        let snap = |n: &str, g, c| Snap {
            name: n.into(),
            guid: g,
            creation: c,
        };
        let mut live = Live::default();
        live.source.datasets.insert(
            "t/a".into(),
            vec![
                snap("s1", 1, NOW - 3 * 86400),
                snap("s2", 2, NOW - 2 * 86400),
            ],
        );
        live.source
            .datasets
            .insert("t/n".into(), vec![snap("s1", 5, NOW - 100)]);
        live.source.datasets.insert("t/e".into(), vec![]);
        live.target
            .datasets
            .insert("b/t/a".into(), vec![snap("s1", 1, NOW - 3 * 86400)]);
        // t is only the parent of replicated children: skipped, as in a run.
        live.source.datasets.insert("t".into(), vec![]);
        live.pairs = vec![
            ("t".into(), "b/t".into()),
            ("t/a".into(), "b/t/a".into()),
            ("t/n".into(), "b/t/n".into()),
            ("t/e".into(), "b/t/e".into()),
        ];
        let s = job_status(JobFacts {
            job: "j",
            report: None,
            history: &hist("t/a", Some(NOW - 3 * 86400)),
            seen: Seen::Listed(&live),
            now: NOW,
            thresholds: DAY_THRESHOLDS,
            roots: None,
        });
        assert!(!s.ok);
        assert_eq!(s.in_state(State::Stale), vec!["t/a".to_string()]);
        // t/e has no snapshot at all: missing too, never silently absent.
        assert_eq!(
            s.in_state(State::Missing),
            vec!["t/e".to_string(), "t/n".to_string()]
        );
        let e = s.datasets.iter().find(|d| d.source == "t/e").unwrap();
        assert!(
            e.reason
                .as_deref()
                .unwrap()
                .contains("source has no snapshot"),
            "{e:?}"
        );
        assert_eq!(s.datasets.len(), 3, "{s:?}");
        let a = &s.datasets[0];
        assert_eq!(
            (
                a.source_newest.as_deref(),
                a.target_newest.as_deref(),
                a.lag
            ),
            (Some("s2"), Some("s1"), Some(2 * 86400))
        );
        assert!(
            s.human(NOW).contains("stale   t/a -> b/t/a"),
            "{}",
            s.human(NOW)
        );
    }

    #[test]
    fn utc_formats_unix_seconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn datasets_dropped_from_the_config_leave_the_status() {
        // The history knows t/old (replicated before the config dropped it) and t/a.
        let mut h = hist("t/a", Some(NOW - 60));
        h.datasets
            .extend(hist("t/old", Some(NOW - 86400 * 30)).datasets);
        let r = report(None, vec![]);
        let facts = |roots| JobFacts {
            job: "j",
            report: Some(&r),
            history: &h,
            seen: Seen::JustRan,
            now: NOW,
            thresholds: DAY_THRESHOLDS,
            roots,
        };
        let roots = [Dataset::new("t/a").unwrap()];
        let kept = job_status(facts(Some(&roots)));
        let names: Vec<&str> = kept.datasets.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(names, ["t/a"], "{kept:#?}");
        // Unknown roots keep everything: a stale copy is shown, never hidden.
        let all = job_status(facts(None));
        let names: Vec<&str> = all.datasets.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(names, ["t/a", "t/old"], "{all:#?}");
        assert!(!all.ok, "t/old is a month old: {all:#?}");
    }
}
