//! Prometheus textfile for node_exporter's textfile collector, written atomically.
//!
//! One file per job (`zferry_<job>.prom`), so jobs that run apart never overwrite each
//! other's lines.

use crate::config::file_stem;
use crate::state::store::write_atomic;
use crate::status::classify::State;
use crate::status::{DatasetStatus, JobStatus};
use anyhow::Result;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The file for `job` in `dir`.
pub fn path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("zferry_{}.prom", file_stem(job)))
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for one job.
pub fn render(s: &JobStatus) -> String {
    let mut out = String::new();
    let job = esc(&s.job);
    let mut family = |name: &str, help: &str, rows: Vec<(String, String)>| {
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let ds_labels = |d: &DatasetStatus| {
        format!(
            "job=\"{job}\",source=\"{}\",target=\"{}\"",
            esc(&d.source),
            esc(&d.target)
        )
    };
    let rows = |f: &dyn Fn(&DatasetStatus) -> Option<String>| {
        s.datasets
            .iter()
            .filter_map(|d| f(d).map(|v| (ds_labels(d), v)))
            .collect::<Vec<_>>()
    };
    family(
        "zferry_job_failed",
        "1 when the job's last run failed or any dataset is not ok.",
        vec![(format!("job=\"{job}\""), u8::from(!s.ok).to_string())],
    );
    family(
        "zferry_job_last_run_timestamp_seconds",
        "End of the job's last run, Unix time.",
        s.last_run
            .map(|t| vec![(format!("job=\"{job}\""), t.to_string())])
            .unwrap_or_default(),
    );
    family(
        "zferry_dataset_failed",
        "1 when the dataset is not ok (failed, stale or never replicated).",
        rows(&|d| Some(u8::from(d.state != State::Ok).to_string())),
    );
    family(
        "zferry_dataset_last_success_timestamp_seconds",
        "Last successful replication of the dataset, Unix time.",
        rows(&|d| d.last_success.map(|t| t.to_string())),
    );
    family(
        "zferry_dataset_lag_seconds",
        "How long the copy has been behind the source.",
        rows(&|d| d.lag.map(|l| l.to_string())),
    );
    family(
        "zferry_dataset_newest_copy_timestamp_seconds",
        "When the copy's newest snapshot was taken (the recovery point), Unix time.",
        rows(&|d| d.newest_copy.map(|t| t.to_string())),
    );
    family(
        "zferry_dataset_transferred_bytes",
        "Bytes streamed for the dataset by the last run.",
        rows(&|d| Some(d.bytes.to_string())),
    );
    family(
        "zferry_dataset_duration_seconds",
        "Wall time the last run spent on the dataset.",
        rows(&|d| Some(format!("{:.3}", d.duration_ms as f64 / 1000.0))),
    );
    family(
        "zferry_dataset_state",
        "The dataset's state as a label: ok, stale, missing or failed.",
        s.datasets
            .iter()
            .map(|d| {
                (
                    format!("{},state=\"{}\"", ds_labels(d), d.state.as_str()),
                    "1".into(),
                )
            })
            .collect(),
    );
    out
}

/// Writes the job's textfile into `dir` atomically.
pub fn write(dir: &Path, s: &JobStatus) -> Result<PathBuf> {
    let p = path(dir, &s.job);
    write_atomic(&p, render(s).as_bytes())?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_with_escaped_labels() {
        let s = JobStatus {
            job: "pull-a".into(),
            kind: "pull".into(),
            host: "h".into(),
            ok: false,
            error: None,
            running: None,
            last_run: Some(1000),
            checked: 1000,
            datasets: vec![DatasetStatus {
                source: "t/a\"b".into(),
                target: "b/t/a".into(),
                state: State::Failed,
                reason: Some("x".into()),
                last_success: None,
                source_newest: None,
                target_newest: None,
                lag: Some(5),
                newest_copy: Some(900),
                bytes: 7,
                duration_ms: 1500,
            }],
        };
        let t = render(&s);
        assert!(t.contains("zferry_job_failed{job=\"pull-a\"} 1\n"), "{t}");
        assert!(
            t.contains(
                "zferry_dataset_failed{job=\"pull-a\",source=\"t/a\\\"b\",target=\"b/t/a\"} 1\n"
            ),
            "{t}"
        );
        assert!(t.contains("zferry_dataset_duration_seconds{job=\"pull-a\",source=\"t/a\\\"b\",target=\"b/t/a\"} 1.500\n"), "{t}");
        assert!(
            !t.contains("zferry_dataset_last_success_timestamp_seconds"),
            "no success, no sample: {t}"
        );
        assert!(t.contains("state=\"failed\"} 1"), "{t}");
        assert!(
            t.contains("zferry_dataset_newest_copy_timestamp_seconds{job=\"pull-a\",source=\"t/a\\\"b\",target=\"b/t/a\"} 900\n"),
            "{t}"
        );
    }
}
