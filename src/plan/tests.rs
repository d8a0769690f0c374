use super::*;
use proptest::prelude::*;

fn ds(n: &str) -> Dataset {
    Dataset::new(n).unwrap()
}

fn snap(name: &str, guid: u64, txg: u64) -> Point {
    Point {
        name: name.into(),
        guid,
        createtxg: txg,
        bookmark: false,
        userrefs: 0,
        creation: 0,
    }
}

fn info(name: &str, snaps: Vec<Point>) -> DatasetInfo {
    DatasetInfo {
        guid: 0,
        snapshots_changed: None,
        name: ds(name),
        encrypted: true,
        keystatus: Some("available".into()),
        written: 0,
        resume_token: None,
        snapshots: snaps,
        bookmarks: vec![],
    }
}

fn plan1(src: &DatasetInfo, tgt: Option<&DatasetInfo>, opts: Options) -> DatasetPlan {
    plan_dataset(
        Pair {
            source_name: &src.name,
            source: Some(src),
            target_name: &ds("b/t"),
            target: tgt,
            target_children: &[],
            source_has_children: false,
        },
        &[],
        opts,
    )
}

/// Applies a plan to a target the way ZFS would, from the source's state.
fn apply(plan: &DatasetPlan, src: &DatasetInfo, tgt: Option<DatasetInfo>) -> Option<DatasetInfo> {
    let mut tgt = tgt;
    let mut txg = tgt
        .as_ref()
        .and_then(|t| t.snapshots.last().map(|p| p.createtxg))
        .unwrap_or(1000)
        + 1000;
    for step in &plan.steps {
        match step {
            Step::CreateParent { .. } => {}
            Step::AbortResume { .. } => {
                if let Some(t) = tgt.as_mut() {
                    t.resume_token = None;
                }
            }
            Step::Rollback { to, .. } => {
                let t = tgt.as_mut().unwrap();
                let keep = t
                    .snapshots
                    .iter()
                    .position(|p| p.name == to.short())
                    .unwrap();
                t.snapshots.truncate(keep + 1);
                t.written = 0;
            }
            Step::DestroyTarget { .. } => tgt = None,
            Step::Send { span, .. } => {
                let t = tgt.get_or_insert_with(|| info("b/t", vec![]));
                let names: Vec<String> = match span {
                    SendSpan::Full { to } => {
                        assert!(
                            t.snapshots.is_empty(),
                            "full send into a dataset with snapshots"
                        );
                        vec![to.short().to_string()]
                    }
                    SendSpan::Incremental {
                        from,
                        to,
                        intermediates,
                    } => {
                        let from_p = src
                            .snapshots
                            .iter()
                            .chain(&src.bookmarks)
                            .find(|p| p.name == from.short() && p.bookmark == from.is_bookmark())
                            .expect("base exists on source");
                        let latest = t.snapshots.last().expect("target has a base");
                        assert_eq!(latest.guid, from_p.guid, "base is target's newest snapshot");
                        let to_p = src.snapshots.iter().find(|p| p.name == to.short()).unwrap();
                        src.snapshots
                            .iter()
                            .filter(|p| {
                                p.createtxg > from_p.createtxg && p.createtxg <= to_p.createtxg
                            })
                            .filter(|p| *intermediates || p.guid == to_p.guid)
                            .map(|p| p.name.clone())
                            .collect()
                    }
                    SendSpan::Resume { .. } => vec![],
                };
                for n in names {
                    let p = src.snapshots.iter().find(|p| p.name == n).unwrap();
                    txg += 1;
                    t.snapshots.push(snap(&p.name, p.guid, txg));
                }
            }
        }
    }
    tgt
}

#[test]
fn initial_sync_is_full_then_one_incremental() {
    let src = info(
        "t/a",
        vec![snap("1", 11, 1), snap("2", 12, 2), snap("3", 13, 3)],
    );
    let p = plan1(&src, None, Options::default());
    assert_eq!(
        p.verdict,
        Verdict::Transfer {
            full: true,
            snapshots: 3
        }
    );
    assert_eq!(p.steps.len(), 2);
    assert!(
        matches!(&p.steps[0], Step::Send { span: SendSpan::Full { to }, raw: true, .. } if to.short() == "1")
    );
    assert!(matches!(
        &p.steps[1],
        Step::Send {
            span: SendSpan::Incremental {
                intermediates: true,
                ..
            },
            ..
        }
    ));
    assert_eq!(p.base_after.as_deref(), Some("3"));
}

#[test]
fn up_to_date_sends_nothing() {
    let src = info("t/a", vec![snap("1", 11, 1), snap("2", 12, 2)]);
    let tgt = info("b/t", vec![snap("1", 11, 5), snap("2", 12, 6)]);
    let p = plan1(&src, Some(&tgt), Options::default());
    assert_eq!(p.verdict, Verdict::UpToDate);
    assert!(p.steps.is_empty());
    assert_eq!(p.base_after.as_deref(), Some("2"));
}

#[test]
fn same_name_different_guid_is_not_a_base() {
    let src = info("t/a", vec![snap("1", 11, 1), snap("2", 12, 2)]);
    let tgt = info("b/t", vec![snap("2", 99, 6)]);
    let p = plan1(&src, Some(&tgt), Options::default());
    match p.verdict {
        Verdict::Refuse(r @ Refusal::NoCommonBase { .. }) => {
            let msg = r.to_string();
            assert!(
                msg.contains("@2") && msg.contains("destroy_target_and_resend"),
                "{msg}"
            );
        }
        v => panic!("expected refusal, got {v:?}"),
    }
    assert!(p.steps.is_empty());
}

#[test]
fn bookmark_serves_as_base_after_pruning() {
    let mut src = info("t/a", vec![snap("3", 13, 3)]);
    src.bookmarks.push(Point {
        bookmark: true,
        ..snap("1", 11, 1)
    });
    let tgt = info("b/t", vec![snap("1", 11, 5)]);
    let p = plan1(&src, Some(&tgt), Options::default());
    assert_eq!(
        p.verdict,
        Verdict::Transfer {
            full: false,
            snapshots: 1
        }
    );
    assert!(
        matches!(&p.steps[0], Step::Send { span: SendSpan::Incremental { from, intermediates: false, .. }, .. } if from.is_bookmark())
    );
}

#[test]
fn divergence_refused_by_default_and_rolled_back_on_request() {
    let src = info("t/a", vec![snap("1", 11, 1), snap("2", 12, 2)]);
    let tgt = info("b/t", vec![snap("1", 11, 5), snap("local", 77, 6)]);
    let p = plan1(&src, Some(&tgt), Options::default());
    assert!(matches!(
        p.verdict,
        Verdict::Refuse(Refusal::NewerOnTarget { .. })
    ));
    assert!(p.steps.is_empty());
    let opts = Options {
        on_divergence: OnDivergence::RollbackToCommon,
        ..Options::default()
    };
    let p = plan1(&src, Some(&tgt), opts);
    assert!(
        matches!(&p.steps[0], Step::Rollback { to, destroys } if to.short() == "1" && destroys == &["local"])
    );
    let after = apply(&p, &src, Some(tgt)).unwrap();
    assert_eq!(
        after.snapshots.iter().map(|p| p.guid).collect::<Vec<_>>(),
        [11, 12]
    );
}

#[test]
fn modified_target_refused() {
    let src = info("t/a", vec![snap("1", 11, 1), snap("2", 12, 2)]);
    let mut tgt = info("b/t", vec![snap("1", 11, 5)]);
    tgt.written = 4096;
    let p = plan1(&src, Some(&tgt), Options::default());
    let Verdict::Refuse(r) = &p.verdict else {
        panic!("{p:?}")
    };
    assert!(r.to_string().contains("rollback_to_common"));
}

#[test]
fn destroy_never_takes_children() {
    let src = info("t/a", vec![snap("1", 11, 1)]);
    let tgt = info("b/t", vec![snap("x", 5, 1)]);
    let kids = [ds("b/t/kid")];
    let p = plan_dataset(
        Pair {
            source_name: &src.name,
            source: Some(&src),
            target_name: &tgt.name,
            target: Some(&tgt),
            target_children: &kids,
            source_has_children: false,
        },
        &[],
        Options {
            on_divergence: OnDivergence::DestroyTargetAndResend,
            ..Options::default()
        },
    );
    assert!(matches!(
        p.verdict,
        Verdict::Refuse(Refusal::HasChildren { .. })
    ));
    assert!(p.steps.iter().all(|s| !s.is_destructive()));
}

/// Plans `t/a` -> `b/t` whose target holds `token`; the source has @1 (GUID 11) and @2
/// (GUID 12), the target @1.
fn plan_with_token(token: &str, raw: RawMode) -> DatasetPlan {
    let src = info("t/a", vec![snap("1", 11, 1), snap("2", 12, 2)]);
    let mut tgt = info("b/t", vec![snap("1", 11, 5)]);
    tgt.resume_token = Some(token.into());
    plan1(
        &src,
        Some(&tgt),
        Options {
            raw,
            ..Options::default()
        },
    )
}

fn discarded_because(p: &DatasetPlan, why: &str) -> bool {
    matches!(&p.steps[0], Step::AbortResume { why: w, .. } if w.contains(why))
        && p.verdict
            == Verdict::Transfer {
                full: false,
                snapshots: 1,
            }
}

#[test]
fn resumes_only_a_token_that_matches_the_plan() {
    use crate::zfs::token::build::token;
    let good = token("t/a@2", 12, Some(11), true);
    let p = plan_with_token(&good, RawMode::Auto);
    assert_eq!(p.verdict, Verdict::Resume);
    assert!(
        matches!(&p.steps[0], Step::Send { span: SendSpan::Resume { token }, raw: true, snapshots, .. } if *token == good && snapshots == &["2"])
    );
    // The source's snapshot is gone, or its GUID is not the token's.
    let gone = plan_with_token(&token("t/a@3", 13, Some(11), true), RawMode::Auto);
    assert!(
        discarded_because(&gone, "no longer on the source"),
        "{gone:?}"
    );
    let other_guid = plan_with_token(&token("t/a@2", 999, Some(11), true), RawMode::Auto);
    assert!(discarded_because(&other_guid, "GUID 999"), "{other_guid:?}");
    // A base the target does not have, or a full stream into a dataset with snapshots.
    let base = plan_with_token(&token("t/a@2", 12, Some(77), true), RawMode::Auto);
    assert!(discarded_because(&base, "GUID 77"), "{base:?}");
    let full = plan_with_token(&token("t/a@2", 12, None, true), RawMode::Auto);
    assert!(discarded_because(&full, "full stream"), "{full:?}");
    // The receiver asks for plaintext from a raw job, or the other way round.
    let plain = plan_with_token(&token("t/a@2", 12, Some(11), false), RawMode::Always);
    assert!(discarded_because(&plain, "non-raw stream"), "{plain:?}");
    let raw = plan_with_token(&token("t/a@2", 12, Some(11), true), RawMode::Never);
    assert!(discarded_because(&raw, "raw stream"), "{raw:?}");
    // Garbage is discarded, never sent.
    let junk = plan_with_token("1-abc", RawMode::Auto);
    assert!(discarded_because(&junk, "unreadable"), "{junk:?}");
}

#[test]
fn a_token_for_another_dataset_is_refused_and_nothing_runs() {
    use crate::zfs::token::build::token;
    let p = plan_with_token(&token("tank/secret@2", 12, Some(11), true), RawMode::Auto);
    assert!(p.steps.is_empty(), "{p:?}");
    let Verdict::Refuse(r) = &p.verdict else {
        panic!("{p:?}")
    };
    assert!(matches!(r, Refusal::ForeignToken { .. }));
    let msg = r.to_string();
    assert!(
        msg.contains("tank/secret@2") && msg.contains("b/t") && msg.contains("t/a"),
        "{msg}"
    );
}

#[test]
fn mapping_pull_and_push() {
    let dest = ds("backup");
    assert_eq!(
        pull_target(&dest, "client", &ds("tank/data")).unwrap(),
        ds("backup/client/tank/data")
    );
    let strip = ds("slowpool/encryptedbackups");
    let s = ds("slowpool/encryptedbackups/host-storage/tank/data");
    assert_eq!(
        push_target(&ds("tank/backups"), &strip, &s).unwrap(),
        ds("tank/backups/host-storage/tank/data")
    );
    let err = push_target(&dest, &strip, &ds("slowpool/other")).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("not under the strip prefix"), "{err}");
}

#[test]
fn job_creates_each_parent_once_and_not_for_received_parents() {
    let src = crate::zfs::list::parse_listing(
        "t/a\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t-\n\
         t/a@1\tsnapshot\t11\t2\t-\t-\t-\t-\t0\t-\n\
         t/a/b\tfilesystem\t2\t3\toff\t-\t0\t-\t-\t-\n\
         t/a/b@1\tsnapshot\t21\t4\t-\t-\t-\t-\t0\t-\n\
         t/c\tfilesystem\t3\t5\toff\t-\t0\t-\t-\t-\n\
         t/c@1\tsnapshot\t31\t6\t-\t-\t-\t-\t0\t-\n",
    )
    .unwrap();
    let tgt = crate::zfs::list::parse_listing("b\tfilesystem\t9\t1\toff\t-\t0\t-\t-\t-\n").unwrap();
    let root = ds("b");
    let m = expand(&src, &[ds("t/a"), ds("t/c")], |s| {
        pull_target(&root, "h", s)
    })
    .unwrap();
    let plans = plan_job(&src, &tgt, &m, &root, Options::default());
    let parents: Vec<String> = plans
        .iter()
        .flat_map(|p| &p.steps)
        .filter_map(|s| match s {
            Step::CreateParent { dataset } => Some(dataset.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(parents, ["b/h", "b/h/t"]);
}

/// Plans pulling `roots` from `src` (as host `h`) into an empty `b`.
fn pull_to_empty_target(src: &Listing, roots: &[&str]) -> Vec<DatasetPlan> {
    let root = ds("b");
    let roots: Vec<Dataset> = roots.iter().map(|r| ds(r)).collect();
    let m = expand(src, &roots, |s| pull_target(&root, "h", s)).unwrap();
    plan_job(src, &Listing::default(), &m, &root, Options::default())
}

#[test]
fn a_parent_without_snapshots_is_a_quiet_skip_a_leaf_without_is_a_warning() {
    let src = crate::zfs::list::parse_listing(
        "t/p\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t-\n\
         t/p/kid\tfilesystem\t2\t2\toff\t-\t0\t-\t-\t-\n\
         t/p/kid@1\tsnapshot\t21\t3\t-\t-\t-\t-\t0\t-\n\
         t/p/kid/new\tfilesystem\t3\t4\toff\t-\t0\t-\t-\t-\n",
    )
    .unwrap();
    let plans = pull_to_empty_target(&src, &["t/p"]);
    let verdicts: Vec<(String, &Verdict)> = plans
        .iter()
        .map(|p| (p.source.to_string(), &p.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            (
                "t/p".to_string(),
                &Verdict::Skip {
                    why: "t/p has no snapshots of its own; only its children are replicated".into(),
                    warn: false
                }
            ),
            (
                "t/p/kid".to_string(),
                &Transfer {
                    full: true,
                    snapshots: 1
                }
            ),
            (
                "t/p/kid/new".to_string(),
                &Verdict::Skip {
                    why: "source t/p/kid/new has no snapshots yet".into(),
                    warn: true
                }
            ),
        ]
    );
}

#[test]
fn a_sibling_that_shares_a_name_prefix_is_no_child() {
    let src = crate::zfs::list::parse_listing(
        "t/q\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t-\n\
         t/q-old\tfilesystem\t2\t2\toff\t-\t0\t-\t-\t-\n\
         t/q-old@1\tsnapshot\t21\t3\t-\t-\t-\t-\t0\t-\n",
    )
    .unwrap();
    let plans = pull_to_empty_target(&src, &["t/q", "t/q-old"]);
    assert_eq!(
        plans[0].verdict,
        Verdict::Skip {
            why: "source t/q has no snapshots yet".into(),
            warn: true
        }
    );
    assert!(matches!(plans[1].verdict, Transfer { full: true, .. }));
}

#[test]
fn missing_source_fails_alone() {
    let src = crate::zfs::list::parse_listing(
        "t/a\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t-\nt/a@1\tsnapshot\t11\t2\t-\t-\t-\t-\t0\t-\n",
    )
    .unwrap();
    let plans = pull_to_empty_target(&src, &["t/gone", "t/a"]);
    assert!(
        matches!(plans[0].verdict, Transfer { .. })
            || matches!(plans[1].verdict, Verdict::Transfer { .. })
    );
    assert!(plans
        .iter()
        .any(|p| matches!(p.verdict, Verdict::Refuse(Refusal::SourceMissing { .. }))));
}
use Verdict::Transfer;

/// Arbitrary history: a source with some snapshots (some pruned to bookmarks), and a
/// target that replicated a prefix, maybe with target-only snapshots, renamed
/// collisions or writes.
fn history() -> impl Strategy<Value = (DatasetInfo, Option<DatasetInfo>)> {
    (
        1usize..8,
        0usize..8,
        proptest::collection::vec(any::<bool>(), 8),
        proptest::collection::vec(any::<bool>(), 8),
        0usize..3,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(n, replicated, prune, bookmark, extra, written, collide, exists)| {
                let all: Vec<Point> = (0..n)
                    .map(|i| snap(&format!("s{i}"), 100 + i as u64, i as u64 + 1))
                    .collect();
                let replicated = replicated.min(n);
                let tgt_snaps: Vec<Point> = all[..replicated]
                    .iter()
                    .enumerate()
                    .map(|(i, p)| snap(&p.name, p.guid, 500 + i as u64))
                    .chain((0..extra).map(|i| {
                        let name = if collide {
                            format!("s{}", n - 1)
                        } else {
                            format!("t{i}")
                        };
                        snap(&name, 9000 + i as u64, 600 + i as u64)
                    }))
                    .collect();
                let mut src = info("t/a", vec![]);
                for (i, p) in all.into_iter().enumerate() {
                    if prune[i] && i + 1 < n {
                        if bookmark[i] {
                            src.bookmarks.push(Point {
                                bookmark: true,
                                ..p
                            });
                        }
                    } else {
                        src.snapshots.push(p);
                    }
                }
                let tgt = (exists || replicated > 0).then(|| {
                    let mut t = info("b/t", tgt_snaps);
                    t.written = if written && !t.snapshots.is_empty() {
                        512
                    } else {
                        0
                    };
                    t
                });
                (src, tgt)
            },
        )
}

fn any_options() -> impl Strategy<Value = Options> {
    (0..3u8, 0..3u8).prop_map(|(r, d)| Options {
        raw: [RawMode::Auto, RawMode::Always, RawMode::Never][r as usize],
        on_divergence: [
            OnDivergence::Refuse,
            OnDivergence::RollbackToCommon,
            OnDivergence::DestroyTargetAndResend,
        ][d as usize],
    })
}

proptest! {
    #[test]
    fn incrementals_only_from_a_guid_matched_base((src, tgt) in history(), opts in any_options()) {
        let p = plan1(&src, tgt.as_ref(), opts);
        // apply() asserts that every incremental's base exists on the source and is the
        // target's newest snapshot with the same GUID.
        apply(&p, &src, tgt.clone());
    }

    #[test]
    fn nothing_destroyed_without_the_option((src, tgt) in history(), opts in any_options()) {
        let p = plan1(&src, tgt.as_ref(), opts);
        for s in &p.steps {
            match s {
                Step::Rollback { .. } => prop_assert!(opts.on_divergence >= OnDivergence::RollbackToCommon),
                Step::DestroyTarget { .. } => prop_assert!(opts.on_divergence >= OnDivergence::DestroyTargetAndResend),
                _ => {}
            }
        }
        if let Verdict::Refuse(_) = p.verdict {
            let harmless = p.steps.iter().all(|s| !s.is_destructive() && !matches!(s, Step::Send { .. }));
            prop_assert!(harmless, "refused plan has steps: {:?}", p.steps);
        }
    }

    #[test]
    fn executing_then_replanning_is_up_to_date((src, tgt) in history(), opts in any_options()) {
        let p = plan1(&src, tgt.as_ref(), opts);
        if matches!(p.verdict, Verdict::Transfer { .. } | Verdict::UpToDate) {
            let after = apply(&p, &src, tgt.clone());
            let again = plan1(&src, after.as_ref(), Options::default());
            prop_assert_eq!(again.verdict, Verdict::UpToDate, "first plan: {:?}", p);
            let after = after.unwrap();
            prop_assert_eq!(after.snapshots.last().map(|p| p.guid), src.snapshots.last().map(|p| p.guid));
        }
    }
}
