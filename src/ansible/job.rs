//! `zfs_pull` and `zfs_push`: one replication job, with the options of the CLI and the
//! TOML config. The options deserialize into [`crate::config::Job`] itself, so the three
//! doors cannot drift apart; the module adds only `job_name`.

use super::args::{self, Opt, Type};
use super::{Diff, Failure, Module, Outcome};
use crate::config::{Job, Kind};
use crate::host::Pool;
use crate::replicate::{run_job, RunOptions};
use crate::report::RunReport;
use crate::zfs::name::Dataset;
use serde_json::{json, Value};

/// The options; `ansible/plugins/modules/zfs_pull.py` and `zfs_push.py` document
/// exactly these (a unit test checks it).
pub const SPEC: &[Opt] = &[
    Opt::new("host", Type::Str).required(),
    Opt::new("user", Type::Str),
    Opt::new("port", Type::Int),
    Opt::new("identity_file", Type::Str),
    Opt::new("known_hosts_file", Type::Str),
    Opt::new("datasets", Type::List).required(),
    Opt::new("destination", Type::Str).required(),
    Opt::new("name", Type::Str),
    Opt::new("strip_prefix", Type::Str),
    Opt::new("raw", Type::Str).choices(&["auto", "always", "never"]),
    Opt::new("on_divergence", Type::Str).choices(&[
        "refuse",
        "rollback_to_common",
        "destroy_target_and_resend",
    ]),
    Opt::new("hold_tag", Type::Str),
    Opt::new("bwlimit", Type::Str),
    Opt::new("parallel", Type::Int),
    Opt::new("compress", Type::Str),
    Opt::new("job_name", Type::Str),
];

/// The options of `module` as a validated job and its name.
pub fn job_from(module: Module, text: &str) -> Result<(String, Job, args::ModuleArgs), String> {
    let mut a = args::parse(module.name(), text, SPEC)?;
    let kind = match module {
        Module::Pull => Kind::Pull,
        _ => Kind::Push,
    };
    let mut fields = a.options.clone();
    let job_name = fields
        .remove("job_name")
        .and_then(|v| v.as_str().map(String::from));
    let host = fields.get("host").and_then(Value::as_str).unwrap_or("");
    let name = job_name.unwrap_or_else(|| format!("{}-{host}", kind.as_str()));
    check_values(&fields).map_err(|e| format!("job '{name}': {e}"))?;
    // The module's name says which way the data goes.
    fields.insert("kind".into(), json!(kind.as_str()));
    let job: Job =
        serde_json::from_value(Value::Object(fields)).map_err(|e| format!("job '{name}': {e}"))?;
    job.validate(&name).map_err(|e| format!("{e:#}"))?;
    a.options.insert("job_name".into(), json!(name));
    Ok((name, job, a))
}

/// Checks each typed option alone, so an error names its option (deserializing the
/// whole job reports a bad value without saying where it was).
fn check_values(fields: &serde_json::Map<String, Value>) -> Result<(), String> {
    fn is<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(v.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    for (k, v) in fields {
        match k.as_str() {
            "destination" | "strip_prefix" => is::<Dataset>(v),
            "datasets" => is::<Vec<Dataset>>(v),
            "port" => is::<u16>(v),
            "parallel" => is::<usize>(v),
            _ => Ok(()),
        }
        .map_err(|e| format!("option '{k}': {e}"))?;
    }
    Ok(())
}

/// What a run changes on the targets, as Ansible's diff: each snapshot that arrives
/// (or would, in check mode) on the after side, each snapshot or dataset an explicit
/// `on_divergence` destroys on the before side.
pub fn diff_of(report: &RunReport, check_mode: bool) -> Diff {
    let mut before = String::new();
    let mut after = String::new();
    for d in &report.datasets {
        for x in &d.destroyed {
            before.push_str(&format!("{x}\n"));
        }
        if d.changed() {
            for s in &d.snapshots {
                after.push_str(&format!("{}@{s}\n", d.target));
            }
        }
    }
    Diff {
        before,
        after,
        before_header: "target snapshots (before)".into(),
        after_header: if check_mode {
            "target snapshots (after, predicted)".into()
        } else {
            "target snapshots (after)".into()
        },
    }
}

/// `changed`, `msg`, `diff` (when asked for) and return values from a run report.
pub fn outcome_from(report: &RunReport, check_mode: bool, diff: bool) -> Outcome {
    let mut out = Outcome {
        changed: report.changed(),
        diff: diff.then(|| diff_of(report, check_mode)),
        ..Outcome::default()
    };
    for d in &report.datasets {
        for w in &d.warnings {
            out.warnings.push(format!("{}: {w}", d.source));
        }
    }
    for (k, v) in [
        ("job", json!(report.job)),
        ("kind", json!(report.kind)),
        ("host", json!(report.host)),
        ("check_mode", json!(check_mode)),
        (
            "datasets",
            serde_json::to_value(&report.datasets).unwrap_or(Value::Null),
        ),
    ] {
        out.extra.insert(k.into(), v);
    }
    let summary = report.human();
    if report.ok() {
        out.msg = Some(summary);
        return out;
    }
    let mut why = Vec::new();
    if let Some(e) = &report.error {
        why.push(format!("job {} failed: {e}", report.job));
    }
    for d in report.datasets.iter().filter(|d| d.failed()) {
        why.push(format!(
            "{} -> {} {}: {}",
            d.source,
            d.target,
            d.action,
            d.error.as_deref().unwrap_or("failed")
        ));
    }
    out.fail(Failure {
        msg: why.join("; "),
        rc: Some(1),
        stderr: summary,
        argv: None,
    })
}

/// Runs the module on this host from the args file text.
pub fn run(module: Module, text: &str) -> Outcome {
    let (name, job, a) = match job_from(module, text) {
        Ok(x) => x,
        Err(e) => return Outcome::default().fail(Failure::msg(e)),
    };
    let rt = match crate::host::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome::default().fail(Failure::msg(format!("cannot start the runtime: {e}")))
        }
    };
    let report = rt.block_on(async {
        let mut pool = Pool::default();
        let opts = RunOptions {
            dry_run: a.check_mode,
        };
        let report = run_job(&name, &job, opts, &mut pool, None).await;
        pool.close().await;
        report
    });
    outcome_from(&report, a.check_mode, a.diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Action, DatasetReport};

    #[test]
    fn options_become_the_same_job_the_cli_runs() {
        let (name, job, _) = job_from(
            Module::Pull,
            &json!({"host": "client", "user": "zferry", "port": "2222", "datasets": "tank/a,tank/b",
                    "destination": "backup", "raw": "always", "_ansible_check_mode": true})
            .to_string(),
        )
        .unwrap();
        assert_eq!(name, "pull-client");
        assert_eq!(job.kind, Kind::Pull);
        assert_eq!(job.ssh.port, Some(2222));
        assert_eq!(job.datasets.len(), 2);
        assert_eq!(job.hold_tag(&name), "zferry:pull-client");
        let (name, job, _) = job_from(
            Module::Push,
            &json!({"host": "off", "datasets": ["b/c"], "destination": "t", "strip_prefix": "b",
                    "job_name": "offsite"})
            .to_string(),
        )
        .unwrap();
        assert_eq!((name.as_str(), job.kind), ("offsite", Kind::Push));
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        for (v, module, needle) in [
            (
                json!({"host": "h", "datasets": ["t/a;x"], "destination": "b"}),
                Module::Pull,
                "invalid ZFS name",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "kind": "push"}),
                Module::Pull,
                "Unsupported parameters for (zfs_pull) module: kind",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b"}),
                Module::Push,
                "strip_prefix",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"]}),
                Module::Pull,
                "missing required arguments: destination",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "port": "ssh"}),
                Module::Pull,
                "'port' is of type str",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "port": 70000}),
                Module::Pull,
                "job 'pull-h': option 'port': invalid value: integer `70000`",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b//c", "job_name": "j"}),
                Module::Pull,
                "job 'j': option 'destination': invalid ZFS name 'b//c'",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "hold_tag": "-r"}),
                Module::Pull,
                "job 'pull-h': hold_tag",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "bwlimit": "0"}),
                Module::Pull,
                "job 'pull-h': bwlimit 0 would stop every transfer",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "bwlimit": "fast"}),
                Module::Pull,
                "job 'pull-h': bwlimit 'fast' is not a size",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "compress": "lz4"}),
                Module::Pull,
                "job 'pull-h': compress 'lz4' is not known",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "strip_prefix": "t", "compress": "zstd"}),
                Module::Push,
                "job 'push-h': compress = \"zstd:3\" would compress nothing: a push",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "parallel": 0}),
                Module::Pull,
                "job 'pull-h': parallel = 0 would replicate nothing",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "parallel": -3}),
                Module::Pull,
                "job 'pull-h': option 'parallel'",
            ),
            (
                json!({"host": "h", "datasets": ["t/a"], "destination": "b", "on_divergence": "yolo"}),
                Module::Pull,
                "must be one of",
            ),
        ] {
            let e = job_from(module, &v.to_string()).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }

    fn ds(action: Action, snaps: &[&str], error: Option<&str>) -> DatasetReport {
        DatasetReport {
            source: format!("c/{action}"),
            target: format!("s/{action}"),
            action,
            snapshots: snaps.iter().map(|s| s.to_string()).collect(),
            error: error.map(String::from),
            ..DatasetReport::default()
        }
    }

    #[test]
    fn changed_only_when_data_moved_and_failures_name_the_dataset() {
        let mut r = RunReport {
            job: "j".into(),
            datasets: vec![ds(Action::UpToDate, &[], None)],
            ..RunReport::default()
        };
        let o = outcome_from(&r, false, false);
        assert!(!o.changed && !o.is_failed());
        r.datasets.push(ds(Action::Incremental, &["s3"], None));
        assert!(outcome_from(&r, true, false).changed);
        r.datasets.push(ds(
            Action::Refused,
            &[],
            Some("diverged: use on_divergence"),
        ));
        let o = outcome_from(&r, false, false);
        assert!(o.is_failed());
        let msg = o.msg.unwrap();
        assert!(
            msg.contains("c/refused -> s/refused refused: diverged"),
            "{msg}"
        );
        assert_eq!(o.extra["datasets"].as_array().unwrap().len(), 3);
        r.datasets.clear();
        r.error = Some("cannot connect".into());
        assert!(outcome_from(&r, false, false)
            .msg
            .unwrap()
            .contains("job j failed: cannot connect"));
    }

    #[test]
    fn diff_shows_arriving_snapshots_after_and_destroyed_ones_before() {
        let mut rolled = ds(Action::Incremental, &["s4"], None);
        rolled.destroyed = vec!["s/incremental@local".into()];
        let r = RunReport {
            datasets: vec![
                ds(Action::UpToDate, &[], None),
                ds(Action::Full, &["s1", "s2"], None),
                rolled,
            ],
            ..RunReport::default()
        };
        let o = outcome_from(&r, true, true);
        let d = o.diff.expect("diff when asked for");
        assert_eq!(d.before, "s/incremental@local\n");
        assert_eq!(d.after, "s/full@s1\ns/full@s2\ns/incremental@s4\n");
        assert_eq!(d.after_header, "target snapshots (after, predicted)");
        assert_eq!(outcome_from(&r, false, false).diff, None);
    }
}
