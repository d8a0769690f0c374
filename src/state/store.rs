//! The state directory: each job's latest run report (`<job>.json`), the history a
//! failed run must not erase (`<job>.history.json`: per dataset, the last success), and
//! the snapshots listed at the last run (`<job>.cache.json`, see `sides::cache`).
//!
//! Every file is written atomically (temp file, fsync, rename, fsync of the directory),
//! so a reader never sees half a report and a crash leaves the previous one.

use crate::config::file_stem;
use crate::report::{Action, RunReport};
use crate::sides::cache::JobCache;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What is remembered about one dataset across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// Target dataset.
    pub target: String,
    /// Last successful run for it (Unix seconds).
    #[serde(default)]
    pub last_success: Option<u64>,
    /// The copy's newest snapshot after that success.
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// Per job: every dataset it has handled, by source name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// By source dataset.
    #[serde(default)]
    pub datasets: BTreeMap<String, Known>,
}

impl History {
    /// Folds a finished (not dry) run in: successes move `last_success`, failures keep
    /// the previous one, datasets with nothing to replicate (no snapshots) are not tracked.
    pub fn record(&mut self, r: &RunReport) {
        for d in &r.datasets {
            if d.action == Action::Skipped && !d.failed() {
                continue;
            }
            let k = self.datasets.entry(d.source.clone()).or_default();
            k.target = d.target.clone();
            if !d.failed() {
                k.last_success = Some(r.finished);
                if let Some(b) = &d.base {
                    k.snapshot = Some(b.clone());
                }
            }
        }
    }
}

/// Path of `<job><suffix>` in `dir`.
pub fn job_path(dir: &Path, job: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", file_stem(job)))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is synced.
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        e.context(format!("cannot write {} atomically", path.display()))
    })
}

/// Creates the state directory if needed (owner-only: reports name datasets and hosts).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))
}

/// Saves a finished run: the report as the job's latest, and the updated history.
pub fn save_run(dir: &Path, r: &RunReport) -> Result<History> {
    ensure_dir(dir)?;
    let mut h = load_history(dir, &r.job)?;
    h.record(r);
    write_atomic(
        &job_path(dir, &r.job, ".json"),
        &serde_json::to_vec_pretty(r).expect("report serializes"),
    )?;
    write_atomic(
        &job_path(dir, &r.job, ".history.json"),
        &serde_json::to_vec_pretty(&h).expect("history serializes"),
    )?;
    Ok(h)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("{} is not a zferry state file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The job's listing cache (`<job>.cache.json`), if it has one.
pub fn load_cache(dir: &Path, job: &str) -> Result<Option<JobCache>> {
    read_json(&job_path(dir, job, ".cache.json"))
}

/// Saves the job's listing cache.
pub fn save_cache(dir: &Path, job: &str, cache: &JobCache) -> Result<()> {
    ensure_dir(dir)?;
    write_atomic(
        &job_path(dir, job, ".cache.json"),
        &serde_json::to_vec(cache).expect("cache serializes"),
    )
}

/// The job's latest report, if it ever ran.
pub fn load_report(dir: &Path, job: &str) -> Result<Option<RunReport>> {
    read_json(&job_path(dir, job, ".json"))
}

/// The job's history (empty if it never ran).
pub fn load_history(dir: &Path, job: &str) -> Result<History> {
    Ok(read_json(&job_path(dir, job, ".history.json"))?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DatasetReport;

    fn ds(src: &str, action: Action, err: Option<&str>) -> DatasetReport {
        DatasetReport {
            source: src.into(),
            target: format!("b/{src}"),
            action,
            base: err.is_none().then(|| "s2".to_string()),
            error: err.map(String::from),
            ..DatasetReport::default()
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success() {
        let dir = std::env::temp_dir().join(format!("zferry-store-{}", std::process::id()));
        let ok = RunReport {
            job: "j/1".into(),
            finished: 100,
            datasets: vec![
                ds("t/a", Action::Full, None),
                ds("t/e", Action::Skipped, None),
            ],
            ..RunReport::default()
        };
        save_run(&dir, &ok).unwrap();
        let bad = RunReport {
            job: "j/1".into(),
            finished: 200,
            datasets: vec![
                ds("t/a", Action::Failed, Some("boom")),
                ds("t/n", Action::Refused, Some("x")),
            ],
            ..RunReport::default()
        };
        let h = save_run(&dir, &bad).unwrap();
        assert_eq!(h.datasets["t/a"].last_success, Some(100));
        assert_eq!(h.datasets["t/a"].snapshot.as_deref(), Some("s2"));
        assert_eq!(h.datasets["t/n"].last_success, None);
        assert!(
            !h.datasets.contains_key("t/e"),
            "nothing to replicate: not tracked"
        );
        assert_eq!(load_report(&dir, "j/1").unwrap().unwrap(), bad);
        assert_eq!(load_history(&dir, "j/1").unwrap(), h);
        assert!(
            dir.join("j_1.json").exists(),
            "job names are safe file names"
        );
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(load_report(&dir, "never").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
