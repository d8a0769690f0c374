//! The replicator's decisions as scenarios against fake hosts (`host::fake`): what a run
//! reports, what the target ends up with, and which commands went to which side.

use super::*;
use crate::config::{Compress, Kind};
use crate::host::fake::Fake;
use crate::host::{Host, SshTarget};
use crate::report::DatasetReport;
use crate::sides::cache::JobCache;
use crate::zfs::name::Snapshot;
use crate::zfs::token;
use std::sync::Arc;
use stream::COMPRESS_MIN;

const TAG: &str = "zferry:job";

/// The prefix of a listing by name (`list_named_argv`).
const NAMED: &str = "zfs list -Hp -t filesystem,volume,snapshot -o";

/// The prefix of a listing of whole subtrees' filesystems (`Depth::Filesystems`).
const SUBTREES: &str = "zfs list -Hp -t filesystem,volume -s createtxg";

fn ds(n: &str) -> Dataset {
    Dataset::new(n).expect("a valid test dataset name")
}

/// A pull job from host `client` into `backup`: `tank/x` lands at `backup/client/tank/x`.
fn job(datasets: &[&str]) -> Job {
    Job {
        kind: Kind::Pull,
        ssh: SshTarget {
            host: "client".into(),
            ..SshTarget::default()
        },
        datasets: datasets.iter().map(|d| ds(d)).collect(),
        destination: ds("backup"),
        name: None,
        strip_prefix: None,
        raw: Default::default(),
        on_divergence: Default::default(),
        hold_tag: None,
        max_snapshot_age: None,
        bwlimit: None,
        parallel: None,
        compress: Default::default(),
    }
}

/// A source with `datasets` and a target with only the destination root.
fn hosts(datasets: &[(&str, &[&str])]) -> (Arc<Fake>, Arc<Fake>) {
    (
        Arc::new(Fake::new(datasets)),
        Arc::new(Fake::new(&[("backup", &[])])),
    )
}

async fn run(job: &Job, src: &Arc<Fake>, dst: &Arc<Fake>) -> Vec<DatasetReport> {
    let sides = Sides {
        source: Host::Fake(src.clone()),
        target: Host::Fake(dst.clone()),
    };
    run_datasets("job", job, &sides, RunOptions::default(), None)
        .await
        .expect("the run itself does not fail")
}

/// `run` of a pull job of `datasets` with `parallel = 4`.
async fn run_in_parallel(
    datasets: &[&str],
    src: &Arc<Fake>,
    dst: &Arc<Fake>,
) -> Vec<DatasetReport> {
    let j = Job {
        parallel: Some(4),
        ..job(datasets)
    };
    run(&j, src, dst).await
}

fn report<'a>(reports: &'a [DatasetReport], source: &str) -> &'a DatasetReport {
    reports
        .iter()
        .find(|r| r.source == source)
        .expect("a report for every source dataset")
}

/// The commands `host` ran that start with `words`, in order.
fn starting(host: &Fake, words: &str) -> Vec<String> {
    host.commands()
        .into_iter()
        .filter(|c| c.starts_with(words))
        .collect()
}

fn position(commands: &[String], cmd: &str) -> usize {
    commands
        .iter()
        .position(|c| c == cmd)
        .unwrap_or_else(|| panic!("'{cmd}' was not run; ran: {commands:#?}"))
}

#[tokio::test]
async fn a_first_run_copies_every_dataset_with_its_guids_and_holds_both_ends() {
    let (src, dst) = hosts(&[("tank/a", &["s1", "s2"]), ("tank/a/kid", &["s1"])]);
    let reps = run(&job(&["tank/a"]), &src, &dst).await;
    assert_eq!(reps.len(), 2);
    for r in &reps {
        assert_eq!(r.action, Action::Full, "{r:?}");
        assert_eq!(r.error, None);
    }
    assert_eq!(
        dst.snapshots("backup/client/tank/a"),
        src.snapshots("tank/a")
    );
    assert_eq!(
        dst.snapshots("backup/client/tank/a/kid"),
        src.snapshots("tank/a/kid")
    );
    assert!(dst.exists("backup/client/tank"), "placeholder parent");
    assert_eq!(src.held("tank/a", TAG), ["s2"]);
    assert_eq!(dst.held("backup/client/tank/a", TAG), ["s2"]);
}

#[tokio::test]
async fn an_incremental_leaves_canmount_only_where_the_target_keeps_itself_unmounted() {
    let (src, dst) = hosts(&[
        ("tank/a", &["s0", "s1"]),
        ("tank/b", &["s0", "s1"]),
        ("tank/c", &["s0", "s1"]),
    ]);
    let j = job(&["tank/a", "tank/b", "tank/c"]);
    let recv = |kept: bool, d: &str| {
        let o = if kept { "" } else { "-o canmount=noauto " };
        format!("zfs receive -u -s {o}backup/client/tank/{d}")
    };
    let asked = |cmds: &[String]| {
        cmds.iter()
            .filter(|c| c.contains("zfs get -Hp -s local -o name,value canmount"))
            .cloned()
            .collect::<Vec<_>>()
    };
    // New datasets are made with canmount=noauto by their full stream, which the
    // incremental after it leaves; nothing is asked.
    run(&j, &src, &dst).await;
    let cmds = dst.commands();
    for d in ["a", "b", "c"] {
        assert!(position(&cmds, &recv(false, d)) < position(&cmds, &recv(true, d)));
        assert_eq!(
            dst.canmount(&format!("backup/client/tank/{d}")).as_deref(),
            Some("noauto")
        );
    }
    assert_eq!(asked(&cmds), Vec::<String>::new());
    // An admin let b mount again and c went back to the default: only a keeps it.
    dst.set_canmount("backup/client/tank/b", Some("on"));
    dst.set_canmount("backup/client/tank/c", None);
    for d in ["tank/a", "tank/b", "tank/c"] {
        src.snapshot(d, "s2");
    }
    dst.clear_log();
    let reps = run(&j, &src, &dst).await;
    assert!(
        reps.iter().all(|r| r.action == Action::Incremental),
        "{reps:?}"
    );
    let cmds = dst.commands();
    assert_eq!(
        asked(&cmds),
        ["zfs get -Hp -s local -o name,value canmount backup/client/tank/a backup/client/tank/b backup/client/tank/c"]
    );
    position(&cmds, &recv(true, "a"));
    position(&cmds, &recv(false, "b"));
    position(&cmds, &recv(false, "c"));
    for d in ["a", "b", "c"] {
        assert_eq!(
            dst.canmount(&format!("backup/client/tank/{d}")).as_deref(),
            Some("noauto")
        );
    }
    // A run with nothing to send asks nothing.
    dst.clear_log();
    run(&j, &src, &dst).await;
    assert_eq!(asked(&dst.commands()), Vec::<String>::new());
}

#[tokio::test]
async fn a_source_whose_streams_carry_properties_gets_nothing_received() {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    let j = job(&["tank/a", "tank/b"]);
    run(&j, &src, &dst).await;
    let before = dst.snapshots("backup/client/tank/a");
    // The source turns hostile: its zfs send answers with properties (zfs send -p).
    src.send_properties();
    src.snapshot("tank/a", "s2");
    src.create("tank/c");
    src.snapshot("tank/c", "s1");
    let reps = run(&job(&["tank/a", "tank/b", "tank/c"]), &src, &dst).await;
    for d in ["tank/a", "tank/c"] {
        let r = report(&reps, d);
        assert_eq!(r.action, Action::Failed, "{r:?}");
        let e = r.error.as_deref().unwrap_or_default();
        assert!(
            e.contains("a payload") && e.contains("never sends -p"),
            "{e}"
        );
    }
    assert_eq!(report(&reps, "tank/b").action, Action::UpToDate);
    assert_eq!(dst.snapshots("backup/client/tank/a"), before);
    assert_eq!(
        dst.canmount("backup/client/tank/a").as_deref(),
        Some("noauto")
    );
    assert!(!dst.exists("backup/client/tank/c"));
}

#[tokio::test]
async fn a_target_that_cannot_say_its_canmount_gets_it_set_again() {
    let (src, dst) = hosts(&[("tank/a", &["s1"])]);
    let j = job(&["tank/a"]);
    run(&j, &src, &dst).await;
    src.snapshot("tank/a", "s2");
    // An older guard refuses the question; the receive then takes the long form.
    dst.behind_old_guard();
    dst.clear_log();
    let reps = run(&j, &src, &dst).await;
    assert_eq!(reps[0].action, Action::Incremental, "{reps:?}");
    position(
        &dst.commands(),
        "zfs receive -u -s -o canmount=noauto backup/client/tank/a",
    );
}

/// `tank/a@s1` half received into `backup/client/tank/a`: the target has a resume token
/// for the full stream and no snapshot yet.
fn interrupted_full_receive() -> (Arc<Fake>, Arc<Fake>) {
    let (src, dst) = hosts(&[("tank/a", &["s1"])]);
    for d in [
        "backup/client",
        "backup/client/tank",
        "backup/client/tank/a",
    ] {
        dst.create(d);
    }
    let toguid = src.guid("tank/a", "s1");
    dst.set_token(
        "backup/client/tank/a",
        &token::build::token("tank/a@s1", toguid, None, false),
    );
    (src, dst)
}

#[tokio::test]
async fn a_receive_that_keeps_leaving_a_token_is_given_up_naming_the_target() {
    let (src, dst) = interrupted_full_receive();
    dst.receive_stays_partial("backup/client/tank/a");
    let reps = run(&job(&["tank/a"]), &src, &dst).await;
    let r = report(&reps, "tank/a");
    assert_eq!(r.action, Action::Failed);
    let err = r.error.as_deref().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "resuming into backup/client/tank/a did not complete after {MAX_RESUMES} tries"
        )),
        "{err}"
    );
    assert!(err.contains("zfs receive -A backup/client/tank/a"), "{err}");
    let resumes = starting(&src, "zfs send -t ").len();
    assert_eq!(resumes, MAX_RESUMES, "one stream per try, then it stops");
    assert!(dst.held("backup/client/tank/a", TAG).is_empty());
}

#[tokio::test]
async fn a_resume_that_completes_is_reported_as_a_resume_and_verified() {
    let (src, dst) = interrupted_full_receive();
    let toguid = src.guid("tank/a", "s1");
    let reps = run(&job(&["tank/a"]), &src, &dst).await;
    let r = report(&reps, "tank/a");
    assert_eq!((r.action, r.error.as_deref()), (Action::Resume, None));
    assert_eq!(
        dst.snapshots("backup/client/tank/a"),
        vec![("s1".to_string(), toguid)]
    );
}

#[tokio::test]
async fn a_child_whose_parent_failed_is_not_attempted() {
    let (src, dst) = hosts(&[
        ("tank/a", &["s1"]),
        ("tank/a/kid", &["s1"]),
        ("tank/a/kid/grandkid", &["s1"]),
    ]);
    dst.fail_receive("backup/client/tank/a", "cannot receive: out of space");
    let reps = run(&job(&["tank/a"]), &src, &dst).await;
    let parent = report(&reps, "tank/a");
    assert_eq!(parent.action, Action::Failed);
    assert!(parent
        .error
        .as_deref()
        .is_some_and(|e| e.contains("cannot receive: out of space")));
    for below in ["tank/a/kid", "tank/a/kid/grandkid"] {
        let r = report(&reps, below);
        assert_eq!(r.action, Action::Failed);
        assert_eq!(
            r.error.as_deref(),
            Some("not attempted: its parent backup/client/tank/a failed above"),
            "names where it started"
        );
    }
    assert!(
        !dst.commands().iter().any(|c| c.contains("tank/a/kid")),
        "nothing was tried for the child: {:#?}",
        dst.commands()
    );
    assert!(src.held("tank/a/kid", TAG).is_empty());
}

#[tokio::test]
async fn parallel_runs_at_most_n_datasets_at_once_and_reports_in_order() {
    let names: Vec<String> = (0..7).map(|i| format!("tank/d{i}")).collect();
    let spec: Vec<(&str, &[&str])> = names.iter().map(|d| (d.as_str(), &["s1"][..])).collect();
    let sources: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut outcomes = Vec::new();
    for parallel in [1, 3] {
        let (src, dst) = hosts(&spec);
        let j = Job {
            parallel: Some(parallel),
            ..job(&sources)
        };
        let reps = run(&j, &src, &dst).await;
        assert_eq!(dst.most_receiving(), parallel, "at most {parallel} at once");
        let order: Vec<&str> = reps.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(order, sources, "reports in the datasets' order");
        for d in &sources {
            let copy = dst.snapshots(&format!("backup/client/{d}"));
            assert_eq!(copy, src.snapshots(d));
            assert_eq!(src.held(d, TAG), ["s1"], "one hold per dataset");
        }
        outcomes.push(
            reps.iter()
                .map(|r| (r.action, r.error.clone(), r.base.clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "parallel changes nothing but time"
    );
}

/// How long a slow stream takes in the tests below, on tokio's paused clock.
const STREAM: std::time::Duration = std::time::Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn in_parallel_children_of_a_new_parent_start_once_its_first_stream_is_received() {
    let (src, dst) = hosts(&[
        ("tank/a", &["s1", "s2"]),
        ("tank/a/k1", &["s1"]),
        ("tank/a/k2", &["s1"]),
        ("tank/b", &["s1"]),
    ]);
    for t in ["tank/a", "tank/a/k1", "tank/a/k2"] {
        dst.receive_lasts(&format!("backup/client/{t}"), STREAM);
    }
    let started = tokio::time::Instant::now();
    let reps = run_in_parallel(&["tank/a", "tank/b"], &src, &dst).await;
    // The fake refuses a receive whose parent does not exist yet: none was early.
    assert!(reps.iter().all(|r| r.action == Action::Full), "{reps:?}");
    // The parent's full stream, then its -I beside the children's: two streams long.
    // Waiting for the parent to finish would have taken three.
    let took = started.elapsed();
    assert!(
        took >= STREAM * 2 && took < STREAM * 5 / 2,
        "took {took:?}: {:#?}",
        dst.commands()
    );
}

#[tokio::test(start_paused = true)]
async fn in_parallel_children_of_a_parent_that_existed_do_not_wait_for_it() {
    let tree: &[(&str, &[&str])] = &[
        ("tank/a", &["s1"]),
        ("tank/a/k1", &["s1"]),
        ("tank/a/k2", &["s1"]),
    ];
    let (src, dst) = hosts(tree);
    run_in_parallel(&["tank/a"], &src, &dst).await;
    for (d, _) in tree {
        src.snapshot(d, "s2");
        dst.receive_lasts(&format!("backup/client/{d}"), STREAM);
    }
    let started = tokio::time::Instant::now();
    let reps = run_in_parallel(&["tank/a"], &src, &dst).await;
    assert!(
        reps.iter().all(|r| r.action == Action::Incremental),
        "{reps:?}"
    );
    // All three streams at once: one stream long, not two.
    let took = started.elapsed();
    assert!(took >= STREAM && took < STREAM * 3 / 2, "took {took:?}");
    for (d, _) in tree {
        let copy = dst.snapshots(&format!("backup/client/{d}"));
        assert_eq!(copy, src.snapshots(d));
    }
}

#[tokio::test]
async fn in_parallel_siblings_wait_for_the_parent_that_one_of_them_creates() {
    // CI's failure: tank/a creates backup/client/tank; tank/b must not receive first.
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    let reps = run_in_parallel(&["tank/a", "tank/b"], &src, &dst).await;
    assert!(reps.iter().all(|r| r.action == Action::Full), "{reps:?}");
    let cmds = dst.commands();
    let created = position(&cmds, "zfs create -u -o canmount=off backup/client/tank");
    let recv = position(
        &cmds,
        "zfs receive -u -s -o canmount=noauto backup/client/tank/b",
    );
    assert!(created < recv, "{cmds:#?}");
    let creates = cmds.iter().filter(|c| c.starts_with("zfs create")).count();
    assert_eq!(
        creates, 2,
        "backup/client and backup/client/tank, once each"
    );
}

#[tokio::test]
async fn in_parallel_children_of_a_source_without_snapshots_wait_for_its_copy() {
    // tank has no snapshots: its copy is made by tank/a's plan as a parent.
    let (src, dst) = hosts(&[("tank", &[]), ("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    let reps = run_in_parallel(&["tank"], &src, &dst).await;
    assert_eq!(report(&reps, "tank").action, Action::Skipped);
    for kid in ["tank/a", "tank/b"] {
        assert_eq!(report(&reps, kid).action, Action::Full, "{reps:?}");
    }
}

#[tokio::test]
async fn a_sibling_runs_when_the_one_that_created_their_parent_fails_after() {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    dst.fail_receive("backup/client/tank/a", "cannot receive: I/O error");
    let reps = run_in_parallel(&["tank/a", "tank/b"], &src, &dst).await;
    assert_eq!(report(&reps, "tank/a").action, Action::Failed);
    assert_eq!(report(&reps, "tank/b").action, Action::Full, "{reps:?}");
    assert_eq!(
        dst.snapshots("backup/client/tank/b"),
        src.snapshots("tank/b")
    );
}

#[test]
fn a_plan_waits_for_the_plan_for_its_parent_or_the_one_creating_it() {
    let p = |target: &str, creates: &[&str]| DatasetPlan {
        target: ds(target),
        steps: creates
            .iter()
            .map(|d| Step::CreateParent { dataset: ds(d) })
            .collect(),
        source: ds("tank/x"),
        verdict: Verdict::UpToDate,
        base_after: None,
    };
    let plans = [
        p("b/c/x", &["b/c"]),
        p("b/c/x/k", &[]),
        p("b/c/y", &[]),
        p("b/z", &[]),
    ];
    let w = |plan, for_its_target| {
        Some(Wait {
            plan,
            for_its_target,
        })
    };
    assert_eq!(
        waits_for(&plans),
        [None, w(0, true), w(0, false), None],
        "b exists: b/z waits for nothing"
    );
    // b/c's source has no snapshots of its own: b/c/x creates b/c, and b/c/y waits for it.
    let plans = [p("b/c", &[]), p("b/c/x", &["b/c"]), p("b/c/y", &[])];
    assert_eq!(waits_for(&plans), [None, None, w(1, false)]);
}

#[test]
fn a_child_waits_for_its_parents_plan_only_as_long_as_it_must() {
    let snap = |n: &str| Snapshot::new(n).expect("a valid test snapshot");
    let full = || Step::Send {
        span: cmd::SendSpan::Full { to: snap("b/p@s1") },
        raw: false,
        target: ds("b/p"),
        snapshots: vec!["s1".into()],
    };
    let incremental = || Step::Send {
        span: cmd::SendSpan::Incremental {
            from: snap("b/p@s1"),
            to: snap("b/p@s2"),
            intermediates: true,
        },
        raw: false,
        target: ds("b/p"),
        snapshots: vec!["s2".into()],
    };
    let rollback = || Step::Rollback {
        to: snap("b/p@s1"),
        destroys: vec!["x".into()],
    };
    let destroy = || Step::DestroyTarget {
        target: ds("b/p"),
        destroys: vec!["x".into()],
    };
    let plan = |target: &str, verdict: Verdict, steps: Vec<Step>| DatasetPlan {
        target: ds(target),
        steps,
        source: ds("tank/x"),
        verdict,
        base_after: None,
    };
    let inc = || Verdict::Transfer {
        full: false,
        snapshots: 1,
    };
    let new = || Verdict::Transfer {
        full: true,
        snapshots: 1,
    };
    let up = || Verdict::UpToDate;
    let on = |plan, for_its_target, need| {
        Some((
            Wait {
                plan,
                for_its_target,
            },
            need,
        ))
    };
    // (the parent's plan, whether its target was missing) -> what its child waits for.
    let cases = [
        (
            plan("b/p", new(), vec![full(), incremental()]),
            true,
            on(0, true, Need::Target),
        ),
        (plan("b/p", inc(), vec![incremental()]), false, None),
        (plan("b/p", up(), vec![]), false, None),
        (
            plan("b/p", inc(), vec![rollback(), incremental()]),
            false,
            on(0, true, Need::Done),
        ),
        (
            plan("b/p", new(), vec![destroy(), full()]),
            false,
            on(0, true, Need::Done),
        ),
        (
            plan("b/p", Verdict::Resume, vec![]),
            false,
            on(0, true, Need::Done),
        ),
        (
            plan("b/p", new(), vec![full()]),
            false,
            on(0, true, Need::Done),
        ),
        (plan("b/p", up(), vec![]), true, on(0, true, Need::Done)),
    ];
    for (parent, missing, want) in cases {
        let desc = format!("{:?}, missing: {missing}", parent.steps);
        let plans = [parent, plan("b/p/c", inc(), vec![])];
        let got = needs(&plans, |_| missing);
        assert_eq!(got, [None, want], "{desc}");
    }
    // Created as a parent by another plan: until its parents are made.
    let creates = plan(
        "b/q/x",
        new(),
        vec![Step::CreateParent { dataset: ds("b/q") }, full()],
    );
    let plans = [creates, plan("b/q/y", new(), vec![full()])];
    assert_eq!(needs(&plans, |_| true)[1], on(0, false, Need::Parents));
    // A child below an unchanged parent waits for what that parent waits for: a
    // destroy further up must never race its receive.
    let plans = [
        plan("b/p", new(), vec![destroy(), full()]),
        plan("b/p/c", inc(), vec![incremental()]),
        plan("b/p/c/k", inc(), vec![incremental()]),
    ];
    let got = needs(&plans, |_| false);
    assert_eq!(
        got,
        [None, on(0, true, Need::Done), on(0, true, Need::Done)]
    );
}

#[tokio::test]
async fn a_received_copy_with_another_guid_fails_naming_both_guids() {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    dst.receive_wrong_guid("backup/client/tank/a");
    let reps = run(&job(&["tank/a", "tank/b"]), &src, &dst).await;
    // The copies are checked together; the good one is not failed with the bad.
    let b = report(&reps, "tank/b");
    assert_eq!((b.action, b.base.as_deref()), (Action::Full, Some("s1")));
    assert_eq!(dst.held("backup/client/tank/b", TAG), ["s1"]);
    let r = report(&reps, "tank/a");
    assert_eq!(r.action, Action::Failed);
    let got = dst.guid("backup/client/tank/a", "s1");
    let want = src.guid("tank/a", "s1");
    assert_ne!(got, want);
    let err = r.error.as_deref().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "backup/client/tank/a@s1 on fake has GUID {got} but the source's @s1 has GUID {want}"
        )),
        "{err}"
    );
    assert!(
        r.base.is_none(),
        "a copy that is not the source's is no base"
    );
    assert!(src.held("tank/a", TAG).is_empty());
    assert!(dst.held("backup/client/tank/a", TAG).is_empty());
}

#[tokio::test]
async fn the_new_hold_is_placed_before_the_old_one_is_released_on_both_sides() {
    let (src, dst) = hosts(&[("tank/a", &["s1"])]);
    let j = job(&["tank/a"]);
    run(&j, &src, &dst).await;
    src.snapshot("tank/a", "s2");
    src.clear_log();
    dst.clear_log();
    let reps = run(&j, &src, &dst).await;
    assert_eq!(report(&reps, "tank/a").action, Action::Incremental);
    assert!(report(&reps, "tank/a").holds_changed);
    for (host, ds) in [(&src, "tank/a"), (&dst, "backup/client/tank/a")] {
        let cmds = host.commands();
        let hold = position(&cmds, &format!("zfs hold {TAG} {ds}@s2"));
        let release = position(&cmds, &format!("zfs release {TAG} {ds}@s1"));
        assert!(hold < release, "{cmds:#?}");
        assert_eq!(host.held(ds, TAG), ["s2"]);
    }
}

#[tokio::test]
async fn one_failing_dataset_does_not_stop_the_others() {
    let (src, dst) = hosts(&[
        ("tank/a", &["s1"]),
        ("tank/b", &["s1"]),
        ("tank/c", &["s1"]),
    ]);
    dst.fail_receive("backup/client/tank/b", "cannot receive: I/O error");
    let reps = run(&job(&["tank/a", "tank/b", "tank/c"]), &src, &dst).await;
    assert_eq!(report(&reps, "tank/b").action, Action::Failed);
    for ok in ["tank/a", "tank/c"] {
        let r = report(&reps, ok);
        assert_eq!((r.action, r.error.as_deref()), (Action::Full, None));
        assert_eq!(
            dst.snapshots(&format!("backup/client/{ok}")),
            src.snapshots(ok)
        );
        assert_eq!(src.held(ok, TAG), ["s1"]);
    }
    assert!(!dst.exists("backup/client/tank/b"));
}

/// The commands of a run after a first one, per side, for `n` datasets of which the
/// first `new` got one new snapshot (none: a no-op run).
async fn second_run_commands(n: usize, new: usize) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = (0..n).map(|i| format!("tank/d{i}")).collect();
    let spec: Vec<(&str, &[&str])> = names.iter().map(|d| (d.as_str(), &["s1"][..])).collect();
    let (src, dst) = hosts(&spec);
    let j = job(&names.iter().map(String::as_str).collect::<Vec<_>>());
    run(&j, &src, &dst).await;
    for d in &names[..new] {
        src.snapshot(d, "s2");
    }
    src.clear_log();
    dst.clear_log();
    let reps = run(&j, &src, &dst).await;
    assert!(reps.iter().all(|r| !r.failed()), "{reps:#?}");
    (src.commands(), dst.commands())
}

/// `zfs list -Hp`, `zfs send -i`, ...: a command's verb and its first argument. The
/// `zfs send -nP` size estimate for the progress bar is left out: it depends on the
/// log level, a process-wide setting other tests may change.
fn verbs(commands: &[String]) -> Vec<String> {
    commands
        .iter()
        .filter(|c| !c.starts_with("zfs send -nP"))
        .map(|c| c.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn a_no_op_run_costs_the_same_few_commands_however_many_datasets() {
    let one = second_run_commands(1, 0).await;
    let many = second_run_commands(8, 0).await;
    assert_eq!((one.0.len(), one.1.len()), (many.0.len(), many.1.len()));
    assert_eq!(verbs(&many.0), ["zfs list -Hp", "zfs holds -H"]);
    // The job's subtrees, and the chain from the destination down to them.
    assert_eq!(
        verbs(&many.1),
        ["zfs list -Hp", "zfs list -Hp", "zfs holds -H"]
    );
}

#[tokio::test]
async fn one_new_snapshot_costs_one_stream_one_check_and_one_hold_move() {
    let (src, dst) = second_run_commands(4, 1).await;
    assert_eq!(
        verbs(&src),
        [
            "zfs list -Hp",
            // The holds are read while the stream runs (nothing is destroyed).
            "zfs send -I",
            "zfs holds -H",
            "zfs hold zferry:job",
            "zfs release zferry:job"
        ]
    );
    assert_eq!(
        verbs(&dst),
        [
            "zfs list -Hp",
            "zfs list -Hp",
            // Whether the copy keeps canmount itself: its receive then leaves out -o.
            "zfs get -Hp",
            "zfs receive -u",
            "zfs holds -H",
            // The copy's GUID, read back by name.
            "zfs list -Hp",
            "zfs hold zferry:job",
            "zfs release zferry:job"
        ]
    );
}

#[tokio::test]
async fn datasets_that_moved_cost_a_stream_each_and_share_one_check() {
    let (one_src, one_dst) = second_run_commands(6, 1).await;
    let (all_src, all_dst) = second_run_commands(6, 6).await;
    let streams = |c: &[String], verb: &str| c.iter().filter(|c| c.starts_with(verb)).count();
    assert_eq!(streams(&all_src, "zfs send -I"), 6);
    assert_eq!(streams(&all_dst, "zfs receive"), 6);
    let others = |c: &[String]| {
        let mut v = verbs(c);
        v.retain(|c| !c.starts_with("zfs send -I") && !c.starts_with("zfs receive"));
        v
    };
    assert_eq!(others(&all_src), others(&one_src));
    assert_eq!(others(&all_dst), others(&one_dst));
}

/// Plain progress lines (no terminal) ask for a stream's size only of a stream still
/// going halfway to the second line: a short stream costs no `zfs send -nP`.
#[tokio::test(start_paused = true)]
async fn only_a_stream_still_going_after_the_first_line_asks_for_its_size() {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    let long = progress::LINE_EVERY * 3;
    dst.receive_lasts("backup/client/tank/b", long);
    let reps = run(&job(&["tank/a", "tank/b"]), &src, &dst).await;
    assert!(reps.iter().all(|r| r.action == Action::Full), "{reps:?}");
    let asked = starting(&src, "zfs send -nP");
    let for_b = ["zfs send -nP tank/b@s1".to_string()];
    if progress::draws_bar() {
        // `cargo test` on a terminal: a bar asks first, for every stream.
        assert_eq!(asked.len(), 2, "{asked:?}");
    } else {
        assert_eq!(asked, for_b);
    }
}

#[tokio::test]
async fn the_target_listing_reads_only_what_the_job_owns() {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/a/kid", &["s1"])]);
    dst.create("backup/other");
    dst.create("backup/other/big");
    dst.snapshot("backup/other/big", "x");
    let j = job(&["tank/a", "tank/a/kid"]);
    run(&j, &src, &dst).await;
    dst.clear_log();
    run(&j, &src, &dst).await;
    let listings: Vec<String> = dst
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("zfs list"))
        .map(|c| c.split(" -o ").nth(1).unwrap_or_default().to_string())
        .map(|c| {
            c.split_once(' ')
                .map(|(_, roots)| roots.to_string())
                .unwrap_or(c)
        })
        .collect();
    assert_eq!(
        listings,
        [
            "-r backup/client/tank/a",
            "-d 0 backup backup/client backup/client/tank"
        ]
    );
}

#[tokio::test]
async fn a_missing_destination_fails_the_run_naming_it() {
    let src = Arc::new(Fake::new(&[("tank/a", &["s1"])]));
    let dst = Arc::new(Fake::new(&[("elsewhere", &[])]));
    let sides = Sides {
        source: Host::Fake(src.clone()),
        target: Host::Fake(dst.clone()),
    };
    let err = run_datasets(
        "job",
        &job(&["tank/a"]),
        &sides,
        RunOptions::default(),
        None,
    )
    .await
    .expect_err("no destination, no run");
    assert!(
        format!("{err:#}")
            .starts_with("destination backup does not exist on fake; create it first"),
        "{err:#}"
    );
    assert!(!dst
        .commands()
        .iter()
        .any(|c| c.starts_with("zfs receive") || c.starts_with("zfs create")));
}

#[tokio::test]
async fn the_planner_still_sees_a_targets_children_and_missing_parents() {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    for d in [
        "backup/client",
        "backup/client/tank",
        "backup/client/tank/a",
        "backup/client/tank/a/extra",
    ] {
        dst.create(d);
    }
    dst.snapshot("backup/client/tank/a", "s0");
    let mut j = job(&["tank/a", "tank/b"]);
    j.on_divergence = plan::OnDivergence::DestroyTargetAndResend;
    let reps = run(&j, &src, &dst).await;
    let a = report(&reps, "tank/a");
    assert_eq!(a.action, Action::Refused);
    assert!(
        a.error
            .as_deref()
            .is_some_and(|e| e.contains("child datasets (backup/client/tank/a/extra)")),
        "{a:?}"
    );
    assert_eq!(
        dst.snapshots("backup/client/tank/a").len(),
        1,
        "not destroyed"
    );
    assert_eq!(report(&reps, "tank/b").action, Action::Full);
    assert!(
        !dst.commands().iter().any(|c| c.starts_with("zfs create")),
        "the parents exist and were seen: {:#?}",
        dst.commands()
    );
}

#[tokio::test]
async fn holds_move_with_one_hold_and_one_release_per_side_however_many_datasets() {
    let names: Vec<String> = (0..5).map(|i| format!("tank/d{i}")).collect();
    let spec: Vec<(&str, &[&str])> = names.iter().map(|d| (d.as_str(), &["s1"][..])).collect();
    let (src, dst) = hosts(&spec);
    let j = job(&names.iter().map(String::as_str).collect::<Vec<_>>());
    run(&j, &src, &dst).await;
    for d in &names {
        src.snapshot(d, "s2");
    }
    src.clear_log();
    dst.clear_log();
    let reps = run(&j, &src, &dst).await;
    assert!(reps
        .iter()
        .all(|r| r.holds_changed && r.warnings.is_empty()));
    for (host, prefix) in [(&src, ""), (&dst, "backup/client/")] {
        let cmds = host.commands();
        let hold = position(
            &cmds,
            &format!(
                "zfs hold {TAG} {}",
                names
                    .iter()
                    .map(|d| format!("{prefix}{d}@s2"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        let release = cmds
            .iter()
            .position(|c| c.starts_with("zfs release"))
            .expect("the old holds are released");
        assert!(hold < release);
        assert_eq!(
            verbs(&cmds)
                .iter()
                .filter(|v| v.starts_with("zfs hold "))
                .count(),
            1
        );
        assert_eq!(
            verbs(&cmds)
                .iter()
                .filter(|v| v.starts_with("zfs release"))
                .count(),
            1
        );
        for d in &names {
            assert_eq!(host.held(&format!("{prefix}{d}"), TAG), ["s2"]);
        }
    }
}

/// `tank/a` and `tank/b` copied at `s1` by a first run, then `s2` taken on both.
async fn two_copied_then_s2() -> (Arc<Fake>, Arc<Fake>, Job) {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    let j = job(&["tank/a", "tank/b"]);
    run(&j, &src, &dst).await;
    src.snapshot("tank/a", "s2");
    src.snapshot("tank/b", "s2");
    (src, dst, j)
}

/// The new bases are held while the copies are checked: with the check, the hold and
/// the release a second each (sync tasks on a real pool), the run after the streams
/// takes two seconds, not three; the release still waits for the hold.
#[tokio::test(start_paused = true)]
async fn the_new_bases_are_held_while_the_copies_are_checked() {
    let (src, dst, j) = two_copied_then_s2().await;
    let second = std::time::Duration::from_secs(1);
    for host in [&src, &dst] {
        host.command_lasts("zfs hold ", second);
        host.command_lasts("zfs release ", second);
    }
    // The check's listing by name (a run's own listings add bookmarks to the types).
    dst.command_lasts(NAMED, second);
    let start = tokio::time::Instant::now();
    let reps = run(&j, &src, &dst).await;
    let took = start.elapsed();
    assert!(
        reps.iter()
            .all(|r| r.action == Action::Incremental && r.holds_changed && r.warnings.is_empty()),
        "{reps:#?}"
    );
    assert!(took >= 2 * second && took < 3 * second, "{took:?}");
    for (host, prefix) in [(&src, ""), (&dst, "backup/client/")] {
        for d in ["tank/a", "tank/b"] {
            assert_eq!(host.held(&format!("{prefix}{d}"), TAG), ["s2"]);
        }
    }
}

/// A copy that fails its check gets no hold on the new base: the hold placed meanwhile
/// is withdrawn in the one `zfs release` that frees the good copies' old bases, and its
/// old base stays held on both sides.
#[tokio::test]
async fn a_copy_failing_its_check_has_its_new_hold_withdrawn_with_the_others_release() {
    let (src, dst, j) = two_copied_then_s2().await;
    dst.receive_wrong_guid("backup/client/tank/b");
    dst.clear_log();
    let reps = run(&j, &src, &dst).await;
    let a = report(&reps, "tank/a");
    assert_eq!((a.action, a.holds_changed), (Action::Incremental, true));
    let b = report(&reps, "tank/b");
    assert_eq!((b.action, b.base.as_deref()), (Action::Failed, None));
    assert!(b.warnings.is_empty(), "{b:?}");
    for (host, prefix) in [(&src, ""), (&dst, "backup/client/")] {
        assert_eq!(host.held(&format!("{prefix}tank/a"), TAG), ["s2"]);
        assert_eq!(host.held(&format!("{prefix}tank/b"), TAG), ["s1"]);
    }
    assert_eq!(
        starting(&dst, "zfs release"),
        [format!(
            "zfs release {TAG} backup/client/tank/a@s1 backup/client/tank/b@s2"
        )]
    );
}

#[tokio::test]
async fn a_hold_refused_on_one_snapshot_warns_for_its_dataset_and_keeps_its_old_hold() {
    let (src, dst, j) = two_copied_then_s2().await;
    dst.refuse_holds("backup/client/tank/a@s2");
    let reps = run(&j, &src, &dst).await;
    let a = report(&reps, "tank/a");
    assert_eq!((a.action, a.error.as_deref()), (Action::Incremental, None));
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("hold zferry:job not placed") && w.contains("permission denied")),
        "{a:?}"
    );
    assert_eq!(
        dst.held("backup/client/tank/a", TAG),
        ["s1"],
        "the old base stays held"
    );
    assert_eq!(src.held("tank/a", TAG), ["s2"]);
    let b = report(&reps, "tank/b");
    assert!(b.warnings.is_empty(), "{b:?}");
    assert_eq!(dst.held("backup/client/tank/b", TAG), ["s2"]);
}

/// A run with the job's listing cache, as `zferry run` makes it.
async fn run_cached(
    job: &Job,
    src: &Arc<Fake>,
    dst: &Arc<Fake>,
    cache: &mut JobCache,
) -> Vec<DatasetReport> {
    let sides = Sides {
        source: Host::Fake(src.clone()),
        target: Host::Fake(dst.clone()),
    };
    run_datasets("job", job, &sides, RunOptions::default(), Some(cache))
        .await
        .expect("the run itself does not fail")
}

/// With the cache, the holds it knows of are asked while each side lists: with a
/// listing and `zfs holds` a second each, a run with nothing new takes one second, not
/// two. A snapshot held since, which the cache could not know of, is asked about
/// after the listing as before.
#[tokio::test(start_paused = true)]
async fn with_the_cache_the_holds_are_asked_while_the_sides_list() {
    let (src, dst) = hosts(&[("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    let j = job(&["tank/a", "tank/b"]);
    let mut cache = JobCache::default();
    run_cached(&j, &src, &dst, &mut cache).await;
    let second = std::time::Duration::from_secs(1);
    for host in [&src, &dst] {
        host.command_lasts("zfs list ", second);
        host.command_lasts("zfs holds ", second);
        host.clear_log();
    }
    let start = tokio::time::Instant::now();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    let took = start.elapsed();
    assert!(reps
        .iter()
        .all(|r| r.action == Action::UpToDate && r.warnings.is_empty()));
    assert!(took >= second && took < 2 * second, "{took:?}");
    let holds = |host: &Fake| starting(host, "zfs holds");
    assert_eq!(holds(&dst).len(), 1, "{:?}", holds(&dst));
    assert_eq!(holds(&src), ["zfs holds -H tank/a@s1 tank/b@s1"]);
    // Someone holds a new snapshot: its dataset is listed afresh, and its holds read.
    src.snapshot("tank/b", "s2");
    let other = Snapshot::new("tank/b@s2").expect("a valid name");
    Host::Fake(src.clone())
        .run_ok(&cmd::hold_all("other", &[other]))
        .await
        .expect("the fake holds");
    src.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert_eq!(report(&reps, "tank/b").action, Action::Incremental);
    assert_eq!(src.held("tank/b", TAG), ["s2"]);
    assert_eq!(src.held("tank/b", "other"), ["s2"]);
    assert_eq!(
        holds(&src),
        [
            "zfs holds -H tank/a@s1 tank/b@s1",
            "zfs holds -H tank/a@s1 tank/b@s1 tank/b@s2"
        ]
    );
}

/// The snapshot listings a host was asked for, as the datasets they name.
fn snapshot_listings(commands: &[String]) -> Vec<String> {
    commands
        .iter()
        .filter(|c| c.starts_with("zfs list -Hp -t snapshot,bookmark"))
        .map(|c| {
            c.rsplit_once(" -d 1 ")
                .map_or(c.clone(), |(_, n)| n.to_string())
        })
        .collect()
}

#[tokio::test]
async fn with_the_cache_snapshots_are_listed_only_where_they_changed() {
    let names: Vec<String> = (0..5).map(|i| format!("tank/d{i}")).collect();
    let spec: Vec<(&str, &[&str])> = names.iter().map(|d| (d.as_str(), &["s1"][..])).collect();
    let (src, dst) = hosts(&spec);
    let j = job(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut cache = JobCache::default();
    // The first run copies everything into targets it makes. It keeps the sources (a
    // run changes them only by its holds, which it follows) and the copies it made,
    // read back by name: none of them existed when it listed the target.
    run_cached(&j, &src, &dst, &mut cache).await;
    assert_eq!(cache.source.datasets.len(), 5, "{cache:?}");
    assert_eq!(cache.target.datasets.len(), 5, "{cache:?}");
    for side in [&cache.source, &cache.target] {
        assert!(
            side.datasets
                .values()
                .all(|e| e.snapshots.len() == 1 && e.snapshots[0].userrefs == 1),
            "the snapshot sent and the hold placed are in the entries: {cache:?}"
        );
    }
    for (i, d) in names.iter().enumerate() {
        let copy = &cache.target.datasets[&ds(&format!("backup/client/{d}"))];
        assert_eq!(copy.snapshots[0].guid, src.snapshots(d)[0].1, "copy {i}");
    }
    // So the second lists no snapshot on either side, and finds the holds where the
    // entries say they are.
    src.clear_log();
    dst.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert!(reps.iter().all(|r| r.action == Action::UpToDate));
    assert!(reps.iter().all(|r| !r.holds_changed), "{reps:?}");
    assert_eq!(snapshot_listings(&src.commands()), Vec::<String>::new());
    assert_eq!(snapshot_listings(&dst.commands()), Vec::<String>::new());
    assert_eq!(cache.source.datasets.len(), 5);
    assert_eq!(cache.target.datasets.len(), 5);
    // A no-op run: filesystems only, on both sides.
    src.clear_log();
    dst.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert!(reps.iter().all(|r| r.action == Action::UpToDate));
    assert_eq!(snapshot_listings(&src.commands()), Vec::<String>::new());
    assert_eq!(snapshot_listings(&dst.commands()), Vec::<String>::new());
    assert_eq!(verbs(&src.commands()), ["zfs list -Hp", "zfs holds -H"]);
    // One new snapshot: only that dataset's snapshots are listed, and it is sent.
    src.snapshot("tank/d3", "s2");
    src.clear_log();
    dst.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert_eq!(
        report(&reps, "tank/d3").action,
        Action::Incremental,
        "{:?}",
        report(&reps, "tank/d3")
    );
    assert_eq!(snapshot_listings(&src.commands()), ["tank/d3"]);
    assert_eq!(snapshot_listings(&dst.commands()), Vec::<String>::new());
    assert_eq!(
        dst.snapshots("backup/client/tank/d3"),
        src.snapshots("tank/d3")
    );
    // Both entries follow the run: the source's with its hold moved from s1 to s2,
    // the copy's with what it received and its hold, read back by name, not listed.
    let refs = |e: &crate::sides::cache::Entry| -> Vec<(String, u64)> {
        e.snapshots
            .iter()
            .map(|p| (p.name.clone(), p.userrefs))
            .collect()
    };
    let want = [("s1".to_string(), 0), ("s2".to_string(), 1)];
    assert_eq!(refs(&cache.source.datasets[&ds("tank/d3")]), want);
    let copy = &cache.target.datasets[&ds("backup/client/tank/d3")];
    assert_eq!(refs(copy), want);
    assert_eq!(
        copy.snapshots.iter().map(|p| p.guid).collect::<Vec<_>>(),
        src.snapshots("tank/d3")
            .iter()
            .map(|(_, g)| *g)
            .collect::<Vec<_>>()
    );
    // The copies are listed by the names the cache knows, and one listing checks the
    // copy and reads it back.
    let named = starting(&dst, NAMED);
    assert_eq!(named.len(), 2, "{named:#?}");
    let copies: Vec<String> = names.iter().map(|d| format!("backup/client/{d}")).collect();
    assert!(named[0].ends_with(&copies.join(" ")), "{named:#?}");
    assert!(
        named[1]
            .ends_with("backup/client/tank/d3 backup/client/tank/d3@s1 backup/client/tank/d3@s2"),
        "{named:#?}"
    );
    // So the run after it lists no snapshot on either side and moves no hold.
    src.clear_log();
    dst.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert!(
        reps.iter()
            .all(|r| r.action == Action::UpToDate && !r.holds_changed),
        "{reps:?}"
    );
    assert_eq!(snapshot_listings(&src.commands()), Vec::<String>::new());
    assert_eq!(snapshot_listings(&dst.commands()), Vec::<String>::new());
}

#[test]
fn a_read_back_is_taken_only_with_the_sources_guids() {
    use crate::zfs::list::parse_listing;
    let l = |rows: &str| parse_listing(rows).unwrap();
    let src = l("t/a\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t1\n\
                 t/a@s1\tsnapshot\t21\t2\t-\t-\t-\t-\t0\t1\n\
                 t/a@s2\tsnapshot\t22\t3\t-\t-\t-\t-\t0\t1\n");
    let copy = |g2: u64| {
        l(&format!(
            "b/a\tfilesystem\t9\t1\toff\t-\t0\t-\t-\t1\n\
             b/a@s1\tsnapshot\t21\t5\t-\t-\t-\t-\t0\t1\n\
             b/a@s2\tsnapshot\t{g2}\t6\t-\t-\t-\t-\t1\t1\n"
        ))
    };
    let s = src.get(&ds("t/a"));
    let got = |c: &Listing, names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        same_as_source(&names, c.get(&ds("b/a")).unwrap(), s)
    };
    assert!(got(&copy(22), &["s1", "s2"]));
    assert!(
        !got(&copy(99), &["s1", "s2"]),
        "an intermediate's GUID is not the source's"
    );
    assert!(
        !got(&copy(22), &["s3"]),
        "not in the answer, nor on the source"
    );
    assert!(!same_as_source(
        &["s1".into()],
        copy(22).get(&ds("b/a")).unwrap(),
        None
    ));
}

/// `tank/a@s1` copied, then a second run that fills the cache with both sides.
async fn copied_and_cached() -> (Arc<Fake>, Arc<Fake>, Job, JobCache) {
    let (src, dst) = hosts(&[("tank/a", &["s1"])]);
    let j = job(&["tank/a"]);
    let mut cache = JobCache::default();
    run_cached(&j, &src, &dst, &mut cache).await;
    run_cached(&j, &src, &dst, &mut cache).await;
    (src, dst, j, cache)
}

#[tokio::test]
async fn a_target_behind_an_older_guard_is_checked_by_guid_alone_and_listed_next_time() {
    let (src, dst, j, mut cache) = copied_and_cached().await;
    dst.behind_old_guard();
    src.snapshot("tank/a", "s2");
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert_eq!(
        (reps[0].action, reps[0].error.as_deref()),
        (Action::Incremental, None)
    );
    assert!(
        dst.commands()
            .iter()
            .any(|c| c == "zfs get -Hp -o value guid backup/client/tank/a@s2"),
        "{:#?}",
        dst.commands()
    );
    assert!(cache.target.datasets.is_empty(), "{cache:?}");
}

#[tokio::test]
async fn a_plan_that_would_refuse_from_the_cache_is_made_again_from_a_full_listing() {
    let (src, dst, j, mut cache) = copied_and_cached().await;
    // A stale (or lied-about) entry: the copy seems to hold a snapshot the source never
    // had, which is a divergence the planner refuses.
    let entry = cache
        .target
        .datasets
        .get_mut(&ds("backup/client/tank/a"))
        .expect("cached");
    let mut extra = entry.snapshots[0].clone();
    extra.name = "foreign".into();
    extra.guid = 42;
    extra.createtxg += 1000;
    entry.snapshots.push(extra);
    dst.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert_eq!(
        (reps[0].action, reps[0].error.as_deref()),
        (Action::UpToDate, None),
        "decided from the real listing"
    );
    assert!(
        dst.commands()
            .iter()
            .any(|c| c.starts_with("zfs list -Hp -t filesystem,volume,snapshot,bookmark")),
        "{:#?}",
        dst.commands()
    );
}

/// A pull of `tank/a` (and its child) with `compress = "zstd:5"`, streams estimated at
/// `size` bytes.
async fn compressed_run(
    size: u64,
    src_setup: impl Fn(&Fake),
) -> (Vec<DatasetReport>, Arc<Fake>, Arc<Fake>) {
    let (src, dst) = hosts(&[("tank/a", &["s1", "s2"]), ("tank/a/kid", &["s1"])]);
    src.set_send_size(size);
    src_setup(&src);
    let j = Job {
        compress: Compress::Zstd(5),
        ..job(&["tank/a"])
    };
    let reps = run(&j, &src, &dst).await;
    (reps, src, dst)
}

#[tokio::test]
async fn a_compressed_pull_pipes_each_send_through_zstd_and_reports_the_wire() {
    let (reps, src, dst) = compressed_run(2 << 20, |_| {}).await;
    for r in &reps {
        assert_eq!(r.action, Action::Full, "{r:?}");
    }
    for d in ["tank/a", "tank/a/kid"] {
        assert_eq!(
            dst.snapshots(&format!("backup/client/{d}")),
            src.snapshots(d)
        );
    }
    let cmds = src.commands();
    assert!(
        cmds.contains(&"zfs send tank/a@s1 | zstd -c -5".to_string()),
        "{cmds:#?}"
    );
    // The far side's zstd is asked about once per run, before the first stream.
    assert_eq!(
        cmds.iter().filter(|c| *c == "zstd -V").count(),
        1,
        "{cmds:#?}"
    );
    assert!(position(&cmds, "zstd -V") < position(&cmds, "zfs send tank/a@s1 | zstd -c -5"));
    // What crossed the wire is what the far side's zstd wrote, dataset by dataset.
    let wire: u64 = reps.iter().map(|r| r.wire_bytes.expect("compressed")).sum();
    assert_eq!(wire, src.zstd_out());
    assert!(reps
        .iter()
        .all(|r| r.bytes > 0 && r.wire_bytes != Some(r.bytes)));
}

#[tokio::test]
async fn small_streams_cross_as_they_are() {
    let (reps, src, _) = compressed_run(COMPRESS_MIN - 1, |_| {}).await;
    assert!(reps
        .iter()
        .all(|r| r.action == Action::Full && r.wire_bytes.is_none()));
    assert!(!src.commands().iter().any(|c| c.contains("zstd")));
}

#[tokio::test]
async fn a_missing_compressor_is_named_and_nothing_is_sent() {
    let (reps, src, dst) = compressed_run(2 << 20, |s| s.remove_zstd()).await;
    let r = report(&reps, "tank/a");
    let e = r.error.as_deref().unwrap_or_default();
    assert!(
        e.contains("compress = \"zstd:5\" needs the zstd program on fake")
            && e.contains("'zstd -V' exit 127: sh: 1: zstd: not found")
            && e.contains("apt-get install zstd"),
        "{r:?}"
    );
    assert!(report(&reps, "tank/a/kid").failed());
    let cmds = src.commands();
    assert!(
        !cmds.iter().any(|c| c.starts_with("zfs send t")),
        "{cmds:#?}"
    );
    assert_eq!(cmds.iter().filter(|c| *c == "zstd -V").count(), 1);
    assert!(dst.snapshots("backup/client/tank/a").is_empty());
}

/// The names a listing by name asked for (the words after its columns).
fn named_in(command: &str) -> Vec<String> {
    command.split(' ').skip(7).map(str::to_string).collect()
}

/// With the cache, the copies it knows are listed by name, in parts at once (an
/// unmounted copy listed with `-r` is opened again to look for children): 101 copies
/// go in three listings of about a third each, with each listing a second long the
/// run takes one second, and no subtree is listed on the target.
#[tokio::test(start_paused = true)]
async fn with_the_cache_the_copies_are_listed_by_name_in_parts_at_once() {
    let names: Vec<String> = std::iter::once("tank/w".to_string())
        .chain((0..100).map(|i| format!("tank/w/c{i:03}")))
        .collect();
    let spec: Vec<(&str, &[&str])> = names.iter().map(|d| (d.as_str(), &["s1"][..])).collect();
    let (src, dst) = hosts(&spec);
    let j = Job {
        parallel: Some(8),
        ..job(&["tank/w"])
    };
    let mut cache = JobCache::default();
    run_cached(&j, &src, &dst, &mut cache).await;
    assert_eq!(cache.target.datasets.len(), 101);
    dst.clear_log();
    let second = std::time::Duration::from_secs(1);
    dst.command_lasts(NAMED, second);
    let started = tokio::time::Instant::now();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    let took = started.elapsed();
    assert!(
        reps.iter().all(|r| r.action == Action::UpToDate),
        "{reps:?}"
    );
    let parts = starting(&dst, NAMED);
    let sizes: Vec<usize> = parts.iter().map(|c| named_in(c).len()).collect();
    assert_eq!(sizes, [34, 34, 33], "{parts:#?}");
    let mut asked: Vec<String> = parts.iter().flat_map(|c| named_in(c)).collect();
    asked.sort();
    let copies: Vec<String> = names.iter().map(|d| format!("backup/client/{d}")).collect();
    assert_eq!(asked, copies);
    assert!(took >= second && took < 2 * second, "{took:?}");
    assert_eq!(starting(&dst, SUBTREES), Vec::<String>::new());
}

/// A listing by name sees only the copies the cache knows. The job's others, from the
/// source's listing, are listed apart, by name too: a copy the cache forgot is found
/// and gets its incremental, a new dataset's copy (which does not exist) its full
/// stream, and the copy of a source without snapshots (a parent the run created, with
/// no entry of its own) is known by name from then on. The run after lists by name
/// alone again.
#[tokio::test]
async fn copies_the_cache_does_not_know_are_listed_apart() {
    let (src, dst) = hosts(&[("tank", &[]), ("tank/a", &["s1"]), ("tank/b", &["s1"])]);
    let j = job(&["tank"]);
    let mut cache = JobCache::default();
    run_cached(&j, &src, &dst, &mut cache).await;
    dst.clear_log();
    run_cached(&j, &src, &dst, &mut cache).await;
    let apart = |dst: &Fake| {
        starting(dst, NAMED)
            .iter()
            .skip(1)
            .map(|c| named_in(c))
            .collect::<Vec<_>>()
    };
    assert_eq!(apart(&dst), [["backup/client/tank"]], "the parent, once");
    let b = ds("backup/client/tank/b");
    cache.target.datasets.remove(&b);
    cache.target.names.remove(&b);
    src.snapshot("tank/b", "s2");
    src.create("tank/c");
    src.snapshot("tank/c", "s1");
    dst.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert_eq!(
        report(&reps, "tank/b").action,
        Action::Incremental,
        "{reps:?}"
    );
    assert_eq!(report(&reps, "tank/c").action, Action::Full, "{reps:?}");
    assert_eq!(report(&reps, "tank/a").action, Action::UpToDate, "{reps:?}");
    assert_eq!(
        named_in(&starting(&dst, NAMED)[0]),
        ["backup/client/tank", "backup/client/tank/a"]
    );
    assert_eq!(
        apart(&dst)[0],
        ["backup/client/tank/b", "backup/client/tank/c"]
    );
    assert_eq!(starting(&dst, SUBTREES), Vec::<String>::new());
    for d in ["tank/b", "tank/c"] {
        assert_eq!(
            dst.snapshots(&format!("backup/client/{d}")),
            src.snapshots(d)
        );
    }
    dst.clear_log();
    let reps = run_cached(&j, &src, &dst, &mut cache).await;
    assert!(
        reps.iter()
            .all(|r| matches!(r.action, Action::UpToDate | Action::Skipped)),
        "{reps:?}"
    );
    assert_eq!(starting(&dst, NAMED).len(), 1);
    assert_eq!(named_in(&starting(&dst, NAMED)[0]).len(), 4);
}
