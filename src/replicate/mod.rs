//! Executes plans: lists both sides once, plans, streams, verifies, moves holds.
//!
//! Each dataset succeeds or fails on its own; a failure is reported with both sides'
//! exit codes and stderr, the receiving side first (it usually holds the reason).

pub mod audit;
pub mod stream;
mod verify;

use crate::clock::now;
use crate::config::{BwLimit, Job, Kind};
use crate::host::{CommandFailed, Host, Output, Pool};
use crate::human::human_bytes;
use crate::log;
use crate::plan::{self, DatasetPlan, Options, Step, Verdict};
use crate::progress::{self, Progress};
use crate::report::{Action, DatasetReport, RunReport};
use crate::sides::cache::{JobCache, SideCache};
use crate::sides::holds::{EarlyHolds, HoldBook};
use crate::sides::{complete_owned, list_cached, list_owned, relist, unmountable, Cached, Sides};
use crate::zfs::cmd;
use crate::zfs::list::{DatasetInfo, Listing};
use crate::zfs::name::Dataset;
use anyhow::{anyhow, bail, Result};
use futures_util::future::join_all;
use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use stream::{Pace, Wire};
use tokio::sync::{watch, Semaphore};

/// A resume that keeps failing is given up after this many tries in one run.
const MAX_RESUMES: usize = 3;

/// How a run behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Plan and estimate only; change nothing.
    pub dry_run: bool,
}

/// Runs one job over the run's connections and reports; never panics on a remote
/// failure, never returns early without saying why.
///
/// With `cache` (the job's snapshots at its last run, see [`crate::sides::cache`]),
/// snapshots are listed only where they changed, and `cache` is updated for the next
/// run; it is left empty when the run failed as a whole.
pub async fn run_job(
    name: &str,
    job: &Job,
    opts: RunOptions,
    pool: &mut Pool,
    mut cache: Option<&mut JobCache>,
) -> RunReport {
    let mut report = RunReport {
        job: name.to_string(),
        kind: job.kind,
        host: job.ssh.label(),
        dry_run: opts.dry_run,
        bwlimit: job.bwlimit.map(BwLimit::bytes_per_sec),
        compress: (!job.compress.is_none()).then(|| job.compress.to_string()),
        started: now(),
        ..RunReport::default()
    };
    match connect_and_list(job, pool, cache.as_deref()).await {
        Err(e) => report.error = Some(format!("{e:#}")),
        Ok((sides, lists)) => {
            let run = async {
                let lists = lists?;
                run_listed(name, job, &sides, opts, cache.as_deref_mut(), lists).await
            };
            match run.await {
                Ok(ds) => report.datasets = ds,
                Err(e) => {
                    if let Some(c) = cache {
                        *c = JobCache::default();
                    }
                    report.error = Some(format!("{e:#}"))
                }
            }
        }
    }
    report.finished = now();
    report
}

/// Connects to the job's host and lists both sides; this machine's side is listed
/// while the connection is being made (it does not need it). `Err` only when the
/// connection fails; the listing's outcome is the second part.
async fn connect_and_list(
    job: &Job,
    pool: &mut Pool,
    cache: Option<&JobCache>,
) -> Result<(Sides, Result<Lists>)> {
    let source_here = job.kind == Kind::Push;
    let far = async {
        // A job opens no more sessions than it streams datasets at once.
        let remote = pool.get(&job.ssh).await?.at_most(job.parallel());
        let listed = list_side(job, &remote, !source_here, cache).await;
        anyhow::Ok((remote, listed))
    };
    let (far, near) = tokio::join!(far, list_side(job, &Host::Local, source_here, cache));
    let (remote, far) = far?;
    let sides = job.kind.sides(&remote);
    let (src, dst) = if source_here {
        (near, far)
    } else {
        (far, near)
    };
    let lists = both_listed(job, &sides, src, dst, cache).await;
    Ok((sides, lists))
}

/// Both sides listed for one run.
struct Lists {
    src: Listing,
    dst: Listing,
    /// The entries to keep for the next run, when listed through a cache.
    fresh: Option<JobCache>,
    /// Datasets whose snapshots came from the cache, both sides.
    reused: usize,
    /// Whether the target reports `snapshots_changed` (see [`crate::sides::Cached`]).
    dst_tracks: bool,
    /// Each side's holds asked with its listing (see [`crate::sides::Cached`]).
    early_holds: (Option<EarlyHolds>, Option<EarlyHolds>),
}

/// Lists both sides at once (different hosts).
async fn list_sides(job: &Job, sides: &Sides, cache: Option<&JobCache>) -> Result<Lists> {
    let (src, dst) = tokio::join!(
        list_side(job, &sides.source, true, cache),
        list_side(job, &sides.target, false, cache)
    );
    both_listed(job, sides, src, dst, cache).await
}

/// Both sides' listings as one run's [`Lists`], the target's first completed where it
/// was listed by name: the source's listing says which copies the job needs.
async fn both_listed(
    job: &Job,
    sides: &Sides,
    src: Result<Cached>,
    dst: Result<Cached>,
    cache: Option<&JobCache>,
) -> Result<Lists> {
    let (src, mut dst) = (src?, dst?);
    if dst.only.is_some() {
        let wanted = plan::expand(&src.listing, &job.datasets, |s| job.target_of(s))?;
        let targets = wanted.pairs.into_iter().map(|(_, t)| t);
        complete_owned(&sides.target, &mut dst, targets, cache.map(|c| &c.target)).await?;
    }
    lists_of(job, sides, src, dst, cache)
}

/// One side's listing: the `source`'s datasets, or what the job owns on the target.
/// Every target lies under its root's target, so those are known before the source is
/// listed.
async fn list_side(
    job: &Job,
    host: &Host,
    source: bool,
    cache: Option<&JobCache>,
) -> Result<Cached> {
    if source {
        return list_cached(host, &job.datasets, cache.map(|c| &c.source)).await;
    }
    let roots = job.target_roots()?;
    list_owned(host, &job.destination, &roots, cache.map(|c| &c.target)).await
}

/// Both sides' listings as one run's [`Lists`]; a missing destination is an error.
fn lists_of(
    job: &Job,
    sides: &Sides,
    src: Cached,
    dst: Cached,
    cache: Option<&JobCache>,
) -> Result<Lists> {
    if dst.missing.iter().any(|m| m == job.destination.as_str()) {
        bail!(
            "destination {} does not exist on {}; create it first (encrypted, if the copies should be), zferry never creates the backup root",
            job.destination,
            sides.target.label()
        );
    }
    Ok(Lists {
        reused: src.reused + dst.reused,
        dst_tracks: dst.tracks,
        early_holds: (src.early_holds, dst.early_holds),
        fresh: cache.map(|_| JobCache {
            saved: now(),
            source: src.fresh,
            target: dst.fresh,
        }),
        src: src.listing,
        dst: dst.listing,
    })
}

/// A plan that destroys or refuses is made from a full listing, never from the cache.
fn needs_fresh_listing(p: &DatasetPlan) -> bool {
    matches!(p.verdict, Verdict::Refuse(_))
        || p.steps
            .iter()
            .any(|s| matches!(s, Step::Rollback { .. } | Step::DestroyTarget { .. }))
}

/// Lists both sides, then runs the job's datasets ([`run_listed`]).
#[cfg(test)]
async fn run_datasets(
    name: &str,
    job: &Job,
    sides: &Sides,
    opts: RunOptions,
    cache: Option<&mut JobCache>,
) -> Result<Vec<DatasetReport>> {
    let lists = list_sides(job, sides, cache.as_deref()).await?;
    run_listed(name, job, sides, opts, cache, lists).await
}

/// Plans and runs the job's datasets from `lists`, checks the copies, moves the holds
/// and updates the `cache`.
async fn run_listed(
    name: &str,
    job: &Job,
    sides: &Sides,
    opts: RunOptions,
    cache: Option<&mut JobCache>,
    mut lists: Lists,
) -> Result<Vec<DatasetReport>> {
    let popts = Options {
        raw: job.raw_mode(),
        on_divergence: job.on_divergence,
    };
    let plan_all = |l: &Lists| -> Result<Vec<DatasetPlan>> {
        let mapping = plan::expand(&l.src, &job.datasets, |s| job.target_of(s))?;
        Ok(plan::plan_job(
            &l.src,
            &l.dst,
            &mapping,
            &job.destination,
            popts,
        ))
    };
    let mut plans = plan_all(&lists)?;
    if lists.reused > 0 && plans.iter().any(needs_fresh_listing) {
        log::debug!("{name}: a plan destroys or refuses: listing both sides in full");
        lists = list_sides(job, sides, None).await?;
        plans = plan_all(&lists)?;
    }
    let Lists {
        src: src_list,
        dst: dst_list,
        fresh,
        reused,
        dst_tracks,
        early_holds: (src_early, dst_early),
    } = lists;
    if cache.is_some() {
        log::debug!("{name}: snapshots of {reused} datasets taken from the last run's listing");
    }
    let tag = job.hold_tag(name);
    let wire = Wire::new(
        job.bwlimit.map(|b| Pace::new(b.bytes_per_sec())),
        job.compress,
    );
    // Asked only of copies that exist and will receive an incremental: a run that sends
    // nothing costs no more commands than before. A copy this run makes gets the flag
    // with its full stream (see `execute_steps`).
    let incremental: Vec<Dataset> = plans
        .iter()
        .filter(|p| dst_list.datasets.contains_key(&p.target))
        .filter(|p| p.steps.iter().any(receives_incremental))
        .map(|p| p.target.clone())
        .collect();
    let kept_unmounted = if !opts.dry_run && !incremental.is_empty() {
        unmountable(&sides.target, &incremental).await
    } else {
        BTreeSet::new()
    };
    log::debug!(
        "{name}: {} datasets, {} at once",
        plans.len(),
        job.parallel()
    );
    let pairs: Vec<(Dataset, Dataset)> = plans
        .iter()
        .map(|p| (p.source.clone(), p.target.clone()))
        .collect();
    let shared = Shared {
        sides,
        popts,
        opts,
        wire: &wire,
        unmountable: &kept_unmounted,
    };
    // The holds are first needed to move them after the streams, and a stream that
    // destroys nothing changes none (the job's lock keeps its other runs out): then
    // they are read while the streams run. A plan that rolls back or destroys reads
    // them first, so the book is what the run started from.
    let holds_first = plans.iter().any(needs_fresh_listing);
    let load_holds = async {
        tokio::join!(
            HoldBook::load(&sides.source, &src_list, &tag, src_early.as_ref()),
            HoldBook::load(&sides.target, &dst_list, &tag, dst_early.as_ref()),
        )
    };
    let streams = run_plans(
        plans,
        job.parallel(),
        |p, herald| execute_dataset(&shared, p, herald),
        |parent| !dst_list.datasets.contains_key(parent),
    );
    let (mut reports, (mut src_holds, mut dst_holds)) = if holds_first {
        let holds = load_holds.await;
        (streams.await, holds)
    } else {
        tokio::join!(streams, load_holds)
    };
    // What the cache needs to follow the run: the holds as they were, and the copies'
    // other snapshots read with their check. Whether the target reports
    // snapshots_changed is asked of the host, not of its datasets: before an initial
    // run none of the job's targets exists, and parents without snapshots have none yet.
    let held_before = |book: &HoldBook, ds: &Dataset| book.held(ds).map(<[String]>::to_vec);
    let before: Vec<_> = pairs
        .iter()
        .map(|(s, t)| (held_before(&src_holds, s), held_before(&dst_holds, t)))
        .collect();
    // Every dataset with a base moves its holds there, once its copy is proven: the
    // new bases are held while the copies are checked (a hold is a sync task, ~1 s
    // under TCG), and a base whose copy then fails has its new hold withdrawn in the
    // same `zfs release` that frees the proven ones' old bases.
    let mut moved = Vec::new();
    let (mut src_moves, mut dst_moves) = (Vec::new(), Vec::new());
    for (i, (rep, (source, target))) in reports.iter_mut().zip(&pairs).enumerate() {
        rep.base_creation = rep.base.as_ref().and_then(|b| {
            let snaps = &src_list.get(source)?.snapshots;
            Some(snaps.iter().find(|s| &s.name == b)?.creation)
        });
        if let (false, false, Some(base)) = (opts.dry_run, rep.failed(), &rep.base) {
            src_moves.push((source.clone(), base.clone()));
            dst_moves.push((target.clone(), base.clone()));
            moved.push(i);
        }
    }
    let track = cache.is_some() && dst_tracks;
    let also = |rep: &DatasetReport, i: usize| match (&before[i].1, track) {
        (Some(held), true) => rep.snapshots.iter().chain(held).cloned().collect(),
        _ => Vec::new(),
    };
    let (read_back, src_placed, dst_placed) = tokio::join!(
        async {
            if opts.dry_run {
                None
            } else {
                check_copies(sides, &src_list, &pairs, &mut reports, also).await
            }
        },
        src_holds.hold_bases(&sides.source, &src_moves),
        dst_holds.hold_bases(&sides.target, &dst_moves)
    );
    let kept: Vec<bool> = moved.iter().map(|&i| !reports[i].failed()).collect();
    let (a, b) = tokio::join!(
        src_holds.release_replaced(&sides.source, &src_moves, src_placed, &kept),
        dst_holds.release_replaced(&sides.target, &dst_moves, dst_placed, &kept)
    );
    for ((&i, a), b) in moved.iter().zip(a).zip(b) {
        for r in [a, b] {
            match r {
                Ok(changed) => reports[i].holds_changed |= changed,
                Err(e) => reports[i].warnings.push(format!("{e:#}")),
            }
        }
    }
    for rep in &reports {
        log::debug!(
            "{} -> {}: {}{}",
            rep.source,
            rep.target,
            rep.action,
            rep.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(c) = cache {
        *c = fresh.unwrap_or_default();
        for ((r, (source, target)), before) in reports.iter().zip(&pairs).zip(&before) {
            follow_run(c, r, (source, target), (&src_holds, &dst_holds), before);
        }
        if let Some(read) = &read_back {
            let received = Received {
                reports: &reports,
                pairs: &pairs,
                before: &before,
                book: &dst_holds,
                start: &dst_list,
                source: &src_list,
                read,
            };
            follow_receives(&mut c.target, &sides.target, received);
        }
    }
    Ok(reports)
}

/// The snapshots carrying the job's tag when the run started, source and target
/// (`None`: the holds could not be read).
type HeldBefore = (Option<Vec<String>>, Option<Vec<String>>);

/// Proves every copy the run made ([`verify`]): one that is not what was sent fails
/// its dataset, and no hold moves to it. `also(report, i)` names other snapshots of
/// copy `i` to read with its check, for the listing cache (asked only of copies due a
/// check); returns what that read gave (`None`: it failed, and each copy was checked
/// alone).
async fn check_copies(
    sides: &Sides,
    src_list: &Listing,
    pairs: &[(Dataset, Dataset)],
    reports: &mut [DatasetReport],
    also: impl Fn(&DatasetReport, usize) -> Vec<String>,
) -> Option<Listing> {
    let (mut due, mut whose) = (Vec::new(), Vec::new());
    for (i, (rep, (source, target))) in reports.iter_mut().zip(pairs).enumerate() {
        let Some(base) = rep.base.clone() else {
            continue;
        };
        if rep.failed() || !rep.action.transferred() {
            continue;
        }
        let want = verify::source_guid(sides, src_list, source, &base).await;
        match want.and_then(|want| Ok((target.snapshot(&base)?, want))) {
            Ok((snap, want)) => {
                let also = also(rep, i);
                due.push(verify::Due { snap, want, also });
                whose.push(i);
            }
            Err(e) => fail(rep, e),
        }
    }
    let (checked, read) = verify::verify_all(&sides.target, &due).await;
    for (i, got) in whose.into_iter().zip(checked) {
        if let Err(e) = got {
            fail(&mut reports[i], e);
        }
    }
    read
}

/// Marks a dataset failed after its streams: it has no new base.
fn fail(rep: &mut DatasetReport, e: anyhow::Error) {
    rep.action = Action::Failed;
    rep.error = Some(format!("{e:#}"));
    rep.base = None;
}

/// What [`follow_receives`] reads of a run.
struct Received<'a> {
    reports: &'a [DatasetReport],
    pairs: &'a [(Dataset, Dataset)],
    before: &'a [HeldBefore],
    /// The target's holds after they moved.
    book: &'a HoldBook,
    /// The target as the run listed it.
    start: &'a Listing,
    /// The source as the run listed it: what the copies' snapshots must match.
    source: &'a Listing,
    /// The copies and their received and held snapshots, read with their check.
    read: &'a Listing,
}

/// Gives each target that received cleanly an entry without listing its snapshots
/// again ([`SideCache::received`]), from what the check of the copies read (the copy,
/// its received snapshots and those the run held before), with the run's hold moves
/// applied. Any doubt, and the target is listed afresh next run as before.
fn follow_receives(side: &mut SideCache, host: &Host, run: Received<'_>) {
    for ((r, (s, t)), (_, before)) in run.reports.iter().zip(run.pairs).zip(run.before) {
        let clean = matches!(r.action, Action::Full | Action::Incremental)
            && !r.failed()
            && r.warnings.is_empty()
            && r.destroyed.is_empty();
        let (Some(e), Some(before), Some(after), true) =
            (run.read.get(t), before, run.book.held(t), clean)
        else {
            continue;
        };
        // The peer's answer decides what later runs plan from.
        if !same_as_source(&r.snapshots, e, run.source.get(s)) {
            log::warn!("{} answered for {t} snapshots whose GUIDs are not the source's; it is listed afresh next run", host.label());
            side.datasets.remove(t);
            continue;
        }
        side.received(run.start.get(t), e, &r.snapshots);
        side.move_holds(t, before, Some(after));
    }
}

/// Whether every one of `received` is in `copy` with the GUID it has in `source`: what
/// a peer reads back of a copy is taken only if it is what was sent.
fn same_as_source(received: &[String], copy: &DatasetInfo, source: Option<&DatasetInfo>) -> bool {
    let guid =
        |d: &DatasetInfo, n: &String| d.snapshots.iter().find(|p| &p.name == n).map(|p| p.guid);
    received.iter().all(|n| {
        let want = source.and_then(|s| guid(s, n));
        want.is_some() && guid(copy, n) == want
    })
}

/// Keeps a dataset's cache entries true after the run. A run changes a source's
/// snapshots only by this job's holds, so its entry stays, with the holds moved: a
/// snapshot taken meanwhile moves `snapshots_changed` past the entry's. A target that
/// received, rolled back or failed changed, and is listed afresh next time. A warning
/// may mean a hold in an unknown state: both entries go.
fn follow_run(
    c: &mut JobCache,
    r: &DatasetReport,
    (source, target): (&Dataset, &Dataset),
    (src_holds, dst_holds): (&HoldBook, &HoldBook),
    (src_before, dst_before): &HeldBefore,
) {
    if !r.warnings.is_empty() {
        c.source.datasets.remove(source);
        c.target.datasets.remove(target);
        return;
    }
    let moved = |side: &mut SideCache, ds, before: &Option<Vec<String>>, book: &HoldBook| {
        side.move_holds(
            ds,
            before.as_deref().unwrap_or(&[]),
            before.as_ref().and(book.held(ds)),
        )
    };
    moved(&mut c.source, source, src_before, src_holds);
    if r.action == Action::UpToDate {
        moved(&mut c.target, target, dst_before, dst_holds);
    } else {
        c.target.datasets.remove(target);
    }
}

/// Runs `plans` (parents before children) with `execute`, at most `parallel` at once,
/// and returns their reports in the plans' order.
///
/// A plan waits for the plan that brings the nearest dataset above its target into
/// being ([`waits_for`]), only as long as it must ([`Need`]): not at all below a
/// target that existed and only takes incremental streams, until the first stream
/// arrives below a new one, until the parents are created below one that another plan
/// creates, and until the end below a plan that destroys or rolls back. When the plan
/// *for* that dataset failed and the dataset does not exist (`missing`), the child is
/// not attempted: it could not arrive there; the report names the dataset where it
/// started. A parent that another plan created is there unless creating it failed,
/// which that plan reports and the child's receive reports in zfs's words. A permit is
/// taken only after the wait, so a waiting child never holds one its parent needs.
async fn run_plans<F, Fut>(
    plans: Vec<DatasetPlan>,
    parallel: usize,
    execute: F,
    missing: impl Fn(&Dataset) -> bool,
) -> Vec<DatasetReport>
where
    F: Fn(DatasetPlan, Herald) -> Fut,
    Fut: std::future::Future<Output = DatasetReport>,
{
    let after = needs(&plans, &missing);
    let reached: Vec<_> = plans
        .iter()
        .map(|_| {
            let (tx, rx) = watch::channel(Reached::default());
            (Arc::new(tx), rx)
        })
        .collect();
    let permits = Semaphore::new(parallel.max(1));
    let (execute, missing, after, reached, permits) =
        (&execute, &missing, &after, &reached, &permits);
    join_all(plans.into_iter().enumerate().map(|(i, plan)| async move {
        let target = plan.target.clone();
        let blocked = match after[i] {
            None => None,
            Some((w, need)) => {
                // The sender lives in `reached` until every plan is finished.
                let mut rx = reached[w.plan].1.clone();
                let got = rx.wait_for(|r| r.satisfies(need)).await.map(|r| r.clone());
                match got.ok().and_then(|r| r.end).unwrap_or_default() {
                    (Some(origin), _) => Some(origin),
                    (None, itself) if w.for_its_target => itself,
                    (None, _) => None,
                }
            }
        };
        let tx = &reached[i].0;
        let rep = match &blocked {
            Some(origin) => DatasetReport {
                source: plan.source.to_string(),
                target: plan.target.to_string(),
                action: Action::Failed,
                error: Some(format!("not attempted: its parent {origin} failed above")),
                ..DatasetReport::default()
            },
            None => {
                let _permit = permits.acquire().await.expect("never closed");
                execute(plan, Herald(Some(tx.clone()))).await
            }
        };
        let itself = (blocked.is_none() && rep.failed() && missing(&target)).then_some(target);
        tx.send_modify(|r| r.end = Some((blocked, itself)));
        rep
    }))
    .await
}

/// How far a plan has come, for the plans waiting on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Nothing done yet.
    #[default]
    Started,
    /// Its missing parents are created.
    ParentsMade,
    /// Its first stream was received: its target exists.
    TargetMade,
}

/// What a plan has published: its stage, and once done, where a failure above it
/// started and whether it failed itself leaving its target missing.
#[derive(Debug, Clone, Default)]
struct Reached {
    stage: Stage,
    end: Option<(Option<Dataset>, Option<Dataset>)>,
}

impl Reached {
    /// Whether a plan that `need`s this one may go on.
    fn satisfies(&self, need: Need) -> bool {
        self.end.is_some()
            || match need {
                Need::Parents => self.stage >= Stage::ParentsMade,
                Need::Target => self.stage >= Stage::TargetMade,
                Need::Done => false,
            }
    }
}

/// Lets a running plan tell those waiting on it how far it has come (`None`: nobody
/// listens).
#[derive(Clone)]
struct Herald(Option<Arc<watch::Sender<Reached>>>);

impl Herald {
    fn reached(&self, stage: Stage) {
        if let Some(tx) = &self.0 {
            tx.send_if_modified(|r| {
                let later = stage > r.stage;
                r.stage = r.stage.max(stage);
                later
            });
        }
    }
}

/// How long a plan waits for the one it waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Until that plan has created its missing parents.
    Parents,
    /// Until its first stream has arrived.
    Target,
    /// Until it is done.
    Done,
}

/// Per plan, the plan it waits on and for how long; `None`: it goes at once.
///
/// Below a target that existed (not `missing` at the start) and only takes incremental
/// streams, a child does not wait for it but for what that plan waits on: a `destroy -r`
/// or rollback further up must never race a receive below it.
fn needs(plans: &[DatasetPlan], missing: impl Fn(&Dataset) -> bool) -> Vec<Option<(Wait, Need)>> {
    let mut out: Vec<Option<(Wait, Need)>> = Vec::with_capacity(plans.len());
    for w in waits_for(plans) {
        let resolved = w.and_then(|w| {
            let by = &plans[w.plan];
            match need_of(w, by, missing(&by.target)) {
                Some(need) => Some((w, need)),
                None => out[w.plan],
            }
        });
        out.push(resolved);
    }
    out
}

/// How long a plan waits for `by`, the plan `w` names; `None`: not at all.
fn need_of(w: Wait, by: &DatasetPlan, missing: bool) -> Option<Need> {
    if !w.for_its_target {
        return Some(Need::Parents);
    }
    let reshapes = by.verdict == Verdict::Resume
        || by.steps.iter().any(|s| {
            matches!(
                s,
                Step::Rollback { .. } | Step::DestroyTarget { .. } | Step::AbortResume { .. }
            )
        });
    let spans: Vec<_> = by
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Send { span, .. } => Some(span),
            _ => None,
        })
        .collect();
    let incremental = spans
        .iter()
        .all(|s| matches!(s, cmd::SendSpan::Incremental { .. }));
    match () {
        _ if reshapes => Some(Need::Done),
        _ if !missing && incremental => None,
        _ if missing && !spans.is_empty() => Some(Need::Target),
        _ => Some(Need::Done),
    }
}

/// Which earlier plan a plan waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wait {
    /// Its index in the plans.
    plan: usize,
    /// Whether the dataset waited for is that plan's target, not a parent it creates.
    for_its_target: bool,
}

/// Per plan, the plan that brings the nearest dataset above its target into being:
/// the plan for that dataset, or the one whose steps create it as a missing parent.
/// Only an earlier plan counts, so waits never go round in a circle: parents sort
/// before children, and a later plan creates a dataset above an earlier one only when
/// that one sends nothing (a source without snapshots of its own).
fn waits_for(plans: &[DatasetPlan]) -> Vec<Option<Wait>> {
    let mut makes: HashMap<&Dataset, Wait> = HashMap::new();
    for (i, p) in plans.iter().enumerate() {
        for step in &p.steps {
            if let Step::CreateParent { dataset } = step {
                // Over the plan for it, if any: that one did not create it (a source
                // without snapshots of its own sends nothing).
                let w = Wait {
                    plan: i,
                    for_its_target: false,
                };
                makes.insert(dataset, w);
            }
        }
        let w = Wait {
            plan: i,
            for_its_target: true,
        };
        makes.insert(&p.target, w);
    }
    plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let above = p.target.ancestors();
            above
                .iter()
                .rev()
                .find_map(|a| makes.get(a).filter(|w| w.plan < i).copied())
        })
        .collect()
}

fn action_of(v: &Verdict) -> Action {
    match v {
        Verdict::UpToDate => Action::UpToDate,
        Verdict::Transfer { full: true, .. } => Action::Full,
        Verdict::Transfer { full: false, .. } => Action::Incremental,
        Verdict::Resume => Action::Resume,
        Verdict::Skip { .. } => Action::Skipped,
        Verdict::Refuse(_) => Action::Refused,
    }
}

/// What every dataset of one run shares.
struct Shared<'a> {
    sides: &'a Sides,
    popts: Options,
    opts: RunOptions,
    wire: &'a Wire,
    /// Targets that keep themselves unmounted ([`cmd::Canmount::Kept`]).
    unmountable: &'a BTreeSet<Dataset>,
}

/// A step that receives an incremental stream.
fn receives_incremental(s: &Step) -> bool {
    matches!(
        s,
        Step::Send {
            span: cmd::SendSpan::Incremental { .. },
            ..
        }
    )
}

async fn execute_dataset(run: &Shared<'_>, mut plan: DatasetPlan, herald: Herald) -> DatasetReport {
    let Shared {
        sides,
        popts,
        opts,
        wire,
        unmountable,
    } = *run;
    let started = Instant::now();
    let mut rep = DatasetReport {
        source: plan.source.to_string(),
        target: plan.target.to_string(),
        ..DatasetReport::default()
    };
    let mut resumes = 0;
    loop {
        rep.action = action_of(&plan.verdict);
        match &plan.verdict {
            Verdict::Refuse(r) => {
                rep.error = Some(format!("{r} (target host: {})", sides.target.label()))
            }
            Verdict::Skip { why, warn: true } => rep.warnings.push(why.clone()),
            Verdict::Skip { why, warn: false } => rep.note = Some(why.clone()),
            _ => {}
        }
        let result = if opts.dry_run {
            estimate(sides, &plan, &mut rep).await
        } else {
            let kept = unmountable.contains(&plan.target);
            execute_steps(sides, &plan, wire, kept, &mut rep, &herald).await
        };
        if let Err(e) = result {
            rep.action = Action::Failed;
            rep.error = Some(format!("{e:#}"));
            break;
        }
        if opts.dry_run || plan.verdict != Verdict::Resume {
            break;
        }
        resumes += 1;
        match replan_after_resume(sides, &plan, popts, resumes).await {
            Ok(p) => plan = p,
            Err(e) => {
                rep.action = Action::Failed;
                rep.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    // What the user cares about is that an interrupted transfer was completed.
    if resumes > 0 && matches!(rep.action, Action::UpToDate | Action::Resume) {
        rep.action = Action::Resume;
    }
    // The copy is proven with the run's others (check_copies).
    if !rep.failed() {
        rep.base = plan.base_after.clone();
    }
    rep.duration_ms = started.elapsed().as_millis() as u64;
    rep
}

async fn replan_after_resume(
    sides: &Sides,
    plan: &DatasetPlan,
    popts: Options,
    resumes: usize,
) -> Result<DatasetPlan> {
    let src = relist(&sides.source, &plan.source).await?;
    let dst = relist(&sides.target, &plan.target).await?;
    if let Some(t) = dst.as_ref().and_then(|d| d.resume_token.as_ref()) {
        if resumes >= MAX_RESUMES {
            bail!(
                "resuming into {} did not complete after {resumes} tries (token {}...); run again, or abort it with 'zfs receive -A {}'",
                plan.target,
                t.chars().take(24).collect::<String>(),
                plan.target
            );
        }
    }
    Ok(plan::plan_dataset(
        plan::Pair {
            source_name: &plan.source,
            source: src.as_ref(),
            target_name: &plan.target,
            target: dst.as_ref(),
            target_children: &[],
            source_has_children: false,
        },
        &[],
        popts,
    ))
}

/// Dry run: the `zfs send -nP` estimate of each stream.
async fn estimate(sides: &Sides, plan: &DatasetPlan, rep: &mut DatasetReport) -> Result<()> {
    for step in &plan.steps {
        if let Step::Send {
            span,
            raw,
            snapshots,
            ..
        } = step
        {
            let out = sides.source.run_ok(&cmd::send(span, *raw, true)).await?;
            rep.bytes +=
                cmd::parse_send_size(&format!("{}{}", out.stdout, out.stderr)).unwrap_or(0);
            rep.snapshots.extend(snapshots.iter().cloned());
        }
    }
    Ok(())
}

async fn execute_steps(
    sides: &Sides,
    plan: &DatasetPlan,
    wire: &Wire,
    mut kept: bool,
    rep: &mut DatasetReport,
    herald: &Herald,
) -> Result<()> {
    let target = &sides.target;
    for step in &plan.steps {
        if !matches!(step, Step::CreateParent { .. }) {
            herald.reached(Stage::ParentsMade);
        }
        match step {
            Step::CreateParent { dataset } => {
                target.run_ok(&cmd::create_parent(dataset)).await.map_err(|e| {
                    let hint = if CommandFailed::is_permission_denied(&e) {
                        "the user needs create,mount,canmount delegated on the destination (zfs allow)"
                    } else {
                        "if its parent is encrypted, the key must be loaded there; zferry never creates it unencrypted instead"
                    };
                    anyhow!("creating parent {dataset} on {}: {e:#}\n  hint: {hint}", target.label())
                })?;
            }
            Step::AbortResume { target: t, why } => {
                log::warn!(
                    "discarding the interrupted receive into {t} on {}: {why}",
                    target.label()
                );
                target.run_ok(&cmd::receive_abort(t)).await.map_err(|e| {
                    anyhow!("{e:#}\n  hint: discarding a stale partial receive needs 'destroy' delegated on {t}, or run 'zfs receive -A {t}' as root")
                })?;
                rep.warnings
                    .push(format!("discarded interrupted receive: {why}"));
            }
            Step::Rollback { to, destroys } => {
                log::warn!(
                    "rolling {} back to @{} on {} (on_divergence), destroying: {}",
                    to.dataset(),
                    to.short(),
                    target.label(),
                    if destroys.is_empty() {
                        "unsnapshotted changes only".to_string()
                    } else {
                        destroys.join(", ")
                    }
                );
                target.run_ok(&cmd::rollback(to)).await?;
                rep.destroyed
                    .extend(destroys.iter().map(|s| format!("{}@{s}", to.dataset())));
                if destroys.is_empty() {
                    rep.destroyed
                        .push(format!("{}: changes after @{}", to.dataset(), to.short()));
                }
            }
            Step::DestroyTarget {
                target: t,
                destroys,
            } => {
                log::warn!(
                    "destroying {t} on {} to resend it (on_divergence=destroy_target_and_resend); snapshots: {}",
                    target.label(),
                    destroys.join(", ")
                );
                target.run_ok(&cmd::destroy_recursive(t)).await?;
                rep.destroyed.push(t.to_string());
                rep.destroyed
                    .extend(destroys.iter().map(|s| format!("{t}@{s}")));
            }
            Step::Send {
                span,
                raw,
                target: t,
                snapshots,
            } => {
                let send = cmd::send(span, *raw, false);
                // `kept`: the target keeps itself unmounted (see `Shared::unmountable`),
                // or this plan's full stream just made it with canmount=noauto.
                let canmount = match span {
                    cmd::SendSpan::Incremental { .. } if kept => cmd::Canmount::Kept,
                    _ => cmd::Canmount::Noauto,
                };
                let recv = cmd::receive(t, canmount);
                let raw = sends_raw(span, *raw);
                let moved = stream_shown(sides, wire, span, raw, (&send, &recv), t).await?;
                rep.bytes += moved.bytes;
                if let Some(w) = moved.wire {
                    *rep.wire_bytes.get_or_insert(0) += w;
                    log::debug!(
                        "{t}: {} of stream crossed the wire as {} ({})",
                        human_bytes(moved.bytes),
                        human_bytes(w),
                        wire.compress()
                    );
                }
                rep.snapshots.extend(snapshots.iter().cloned());
                kept |=
                    canmount == cmd::Canmount::Noauto && matches!(span, cmd::SendSpan::Full { .. });
                herald.reached(Stage::TargetMade);
            }
        }
    }
    herald.reached(Stage::ParentsMade);
    Ok(())
}

/// Moves one stream (`send` on the source into `recv` on the target, which receives
/// into `t`) with its progress shown.
///
/// A bar, and the choice to compress, want the stream's size first; plain lines ask for
/// it only of a stream still going halfway to their second line (in time for it), so
/// a short stream costs no `zfs send -nP`.
async fn stream_shown(
    sides: &Sides,
    wire: &Wire,
    span: &cmd::SendSpan,
    raw: bool,
    (send, recv): (&[String], &[String]),
    t: &Dataset,
) -> Result<stream::Moved> {
    let src = &sides.source;
    let first = progress::draws_bar() || wire.compresses(src, raw, None);
    let size = estimate_bytes(sides, span, raw, first).await;
    let compress = wire.compresses(src, raw, size);
    let mut progress = Progress::new(t.as_str(), size);
    if let Some(p) = wire.pace() {
        log::debug!("{t}: at most {}/s (bwlimit)", human_bytes(p.limit()));
    }
    let learnt = OnceLock::new();
    let mut count = |n| {
        if let Some(&total) = learnt.get() {
            progress.learn_total(total);
        }
        progress.add(n)
    };
    let transfer = stream::transfer(src, send, &sides.target, recv, wire, compress, &mut count);
    if first || !progress::wanted() {
        return transfer.await;
    }
    let late = async {
        tokio::time::sleep(progress::LINE_EVERY / 2).await;
        if let Some(total) = late_estimate(sides, span, raw).await {
            let _ = learnt.set(total);
        }
        std::future::pending::<Infallible>().await
    };
    tokio::select! {
        biased;
        moved = transfer => moved,
        never = late => match never {},
    }
}

/// Whether a stream is raw: a resumed one as its token says (a token that does not
/// parse counts as raw, so it is never compressed).
fn sends_raw(span: &cmd::SendSpan, raw: bool) -> bool {
    match span {
        cmd::SendSpan::Resume { token } => !crate::zfs::token::parse(token).is_ok_and(|t| !t.raw),
        _ => raw,
    }
}

/// The `zfs send -nP` size of a running stream, for its ETA: only in a session that is
/// free now, as the other datasets' streams and commands must not wait for it.
async fn late_estimate(sides: &Sides, span: &cmd::SendSpan, raw: bool) -> Option<u64> {
    let out = sides
        .source
        .run_if_free(&cmd::send(span, raw, true))
        .await
        .ok()??;
    size_in(&out)
}

/// `zfs send -nP`'s size in `out`, when it succeeded.
fn size_in(out: &Output) -> Option<u64> {
    out.ok()
        .then(|| cmd::parse_send_size(&format!("{}{}", out.stdout, out.stderr)))
        .flatten()
}

/// The `zfs send -nP` size of a stream, for progress's ETA and the choice to compress;
/// `None` when not `wanted` or the estimate fails (progress then shows bytes and rate).
async fn estimate_bytes(
    sides: &Sides,
    span: &cmd::SendSpan,
    raw: bool,
    wanted: bool,
) -> Option<u64> {
    if !wanted {
        return None;
    }
    let out = sides.source.run(&cmd::send(span, raw, true)).await.ok()?;
    size_in(&out)
}

#[cfg(test)]
mod tests;
