//! Pure replication decisions: listings in, steps out, no I/O.
//!
//! The base of an incremental is found by GUID (ordered by createtxg), never by name.
//! Every refusal is a typed reason that names the dataset, the snapshots involved and
//! the option that would resolve it. Destructive steps are planned only when the
//! matching [`OnDivergence`] option asks for them.

use crate::zfs::cmd::SendSpan;
use crate::zfs::list::{DatasetInfo, Listing, Point};
use crate::zfs::name::{Dataset, NameError, Snapshot};
use crate::zfs::token;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};

#[cfg(test)]
mod tests;

/// Whether streams are raw (`zfs send -w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    /// Raw for encrypted sources, plain otherwise.
    #[default]
    Auto,
    /// Always raw: the key never reaches the target.
    Always,
    /// Never raw: needs the source key loaded and yields an unencrypted copy.
    Never,
}

/// What may be done to a target that diverged from its source. Graded: each level
/// allows the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDivergence {
    /// Change nothing and say why (the default).
    #[default]
    Refuse,
    /// `zfs rollback -r` the target to the common base, then receive normally.
    RollbackToCommon,
    /// Destroy the target (never one with children) and send everything again.
    DestroyTargetAndResend,
}

/// Planner options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Raw sends.
    pub raw: RawMode,
    /// Divergence policy.
    pub on_divergence: OnDivergence,
}

/// What the target's resume token turned out to be, judged against the source's
/// listing and the job's raw mode ([`check_token`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Resume it: it names the planned source snapshot, GUIDs and raw mode match.
    Valid {
        /// GUID of the snapshot being received.
        toguid: u64,
    },
    /// It must not or cannot be resumed: discard the partial receive and plan again.
    Discard {
        /// Why, for the warning.
        why: String,
    },
    /// It names a snapshot of another dataset: never something zferry asked for.
    Foreign {
        /// The snapshot the token asks the source to send.
        toname: Snapshot,
    },
}

/// Judges a target's resume token. The receiver wrote it, so it decides nothing here:
/// it is resumed only when it names the planned source dataset, its snapshot's name and
/// GUID match the source's, its base is a snapshot both sides share, and its raw flag
/// is the job's (a token without `rawok` would make the source decrypt).
pub fn check_token(text: &str, src: &DatasetInfo, tgt: &DatasetInfo, raw: bool) -> TokenCheck {
    let discard = |why: String| TokenCheck::Discard { why };
    let t = match token::parse(text) {
        Ok(t) => t,
        Err(e) => return discard(format!("its resume token is unreadable ({e})")),
    };
    if t.toname.dataset() != &src.name {
        return TokenCheck::Foreign { toname: t.toname };
    }
    match src.snapshots.iter().find(|p| p.name == t.toname.short()) {
        None => {
            return discard(format!(
                "its snapshot @{} is no longer on the source",
                t.toname.short()
            ))
        }
        Some(p) if p.guid != t.toguid => {
            return discard(format!(
                "the token's GUID {} is not the source's @{} ({})",
                t.toguid, p.name, p.guid
            ))
        }
        Some(_) => {}
    }
    match t.fromguid {
        Some(from) => {
            let on_source = src
                .snapshots
                .iter()
                .chain(&src.bookmarks)
                .any(|p| p.guid == from);
            let on_target = tgt.snapshots.iter().any(|p| p.guid == from);
            if !(on_source && on_target) {
                return discard(format!(
                    "its base (GUID {from}) is not a snapshot both sides share"
                ));
            }
        }
        None if !tgt.snapshots.is_empty() => {
            return discard("it resumes a full stream into a dataset that has snapshots".into())
        }
        None => {}
    }
    if t.raw != raw {
        let mode = |r: bool| if r { "raw" } else { "non-raw" };
        return discard(format!(
            "the token asks for a {} stream but this job sends {} streams",
            mode(t.raw),
            mode(raw)
        ));
    }
    TokenCheck::Valid { toguid: t.toguid }
}

/// One action on one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Create a missing target parent (unmounted, `canmount=off`).
    CreateParent {
        /// The parent to create.
        dataset: Dataset,
    },
    /// Discard an interrupted receive whose token can no longer be resumed.
    AbortResume {
        /// Target holding the partial state.
        target: Dataset,
        /// Why it cannot resume.
        why: String,
    },
    /// Roll the target back to the common base, destroying what is newer there.
    Rollback {
        /// Target snapshot to roll back to.
        to: Snapshot,
        /// Target snapshots this destroys.
        destroys: Vec<String>,
    },
    /// Destroy the target dataset before a full resend.
    DestroyTarget {
        /// The dataset destroyed.
        target: Dataset,
        /// Its snapshots, destroyed with it.
        destroys: Vec<String>,
    },
    /// One stream from source to target.
    Send {
        /// What the stream covers.
        #[serde(skip)]
        span: SendSpan,
        /// `-w`.
        raw: bool,
        /// Receiving dataset.
        target: Dataset,
        /// Snapshots that arrive with this stream, oldest first.
        snapshots: Vec<String>,
    },
}

impl Step {
    /// True for steps that destroy data on the target.
    pub fn is_destructive(&self) -> bool {
        matches!(self, Step::Rollback { .. } | Step::DestroyTarget { .. })
    }
}

/// Why a dataset was not replicated, with what would fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The requested source dataset does not exist.
    #[error("source dataset {source_name} does not exist")]
    SourceMissing {
        /// The missing dataset.
        source_name: Dataset,
    },
    /// Target was written to after its newest snapshot.
    #[error("target {target} was modified after its newest snapshot @{latest} ({written} bytes written); set on_divergence=rollback_to_common to discard the changes")]
    Modified {
        /// Target dataset.
        target: Dataset,
        /// Its newest snapshot.
        latest: String,
        /// Bytes written since.
        written: u64,
    },
    /// Target has snapshots the source does not, newer than the common base.
    #[error("target {target} has snapshots newer than the common base @{base} that the source does not have: {}; set on_divergence=rollback_to_common to destroy them", newer.join(", "))]
    NewerOnTarget {
        /// Target dataset.
        target: Dataset,
        /// Common base.
        base: String,
        /// Target-only snapshots after it.
        newer: Vec<String>,
    },
    /// Target has snapshots but none shares a GUID with the source.
    #[error("target {target} has no snapshot in common with {source_name} (compared by GUID{}); set on_divergence=destroy_target_and_resend to replace it", same_name_note(same_name))]
    NoCommonBase {
        /// Source dataset.
        source_name: Dataset,
        /// Target dataset.
        target: Dataset,
        /// Snapshot names present on both sides with different GUIDs.
        same_name: Vec<String>,
    },
    /// Target exists without snapshots: zferry never replicated into it.
    #[error("target {target} exists but has no snapshots, so it was never replicated by zferry; set on_divergence=destroy_target_and_resend to replace it, or choose another destination")]
    NotReplicated {
        /// Target dataset.
        target: Dataset,
    },
    /// The target's resume token asks for a snapshot of another dataset.
    #[error("the resume token on target {target} asks for {toname}, which is not its source {source_name}: zferry never writes such a token, so the receiving host is broken or hostile; nothing was sent. Inspect it ('zfs get receive_resume_token {target}' there) and discard it with 'zfs receive -A {target}'")]
    ForeignToken {
        /// Target dataset holding the token.
        target: Dataset,
        /// What the token asks for.
        toname: Snapshot,
        /// The dataset the target is a copy of.
        source_name: Dataset,
    },
    /// Destroying the target would take its children with it.
    #[error("target {target} would have to be destroyed and resent, but it has child datasets ({}); zferry never destroys those, resolve it by hand", children.join(", "))]
    HasChildren {
        /// Target dataset.
        target: Dataset,
        /// Its children.
        children: Vec<String>,
    },
}

fn same_name_note(same: &[String]) -> String {
    if same.is_empty() {
        String::new()
    } else {
        format!(
            "; same name but different GUID: {}",
            same.iter()
                .map(|s| format!("@{s}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The planner's conclusion for one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing to send.
    UpToDate,
    /// Snapshots will be sent.
    Transfer {
        /// A full stream starts the copy.
        full: bool,
        /// Number of snapshots that arrive.
        snapshots: usize,
    },
    /// An interrupted receive continues; plan again after it.
    Resume,
    /// Nothing to do, and not an error (e.g. no snapshots yet).
    Skip {
        /// Why.
        why: String,
        /// Worth a warning: a dataset with no snapshots that is not merely the parent of
        /// replicated children (those parents are skipped every run; warning about them
        /// would teach users to ignore warnings).
        warn: bool,
    },
    /// Not replicated until someone acts.
    Refuse(Refusal),
}

/// The plan for one source dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetPlan {
    /// Source dataset.
    pub source: Dataset,
    /// Target dataset.
    pub target: Dataset,
    /// Conclusion.
    pub verdict: Verdict,
    /// Steps to execute, in order.
    pub steps: Vec<Step>,
    /// Snapshot the copy will end at (the next base), if any.
    pub base_after: Option<String>,
}

/// Everything known about one source/target pair.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    /// Source dataset name.
    pub source_name: &'a Dataset,
    /// Source state, `None` when it does not exist.
    pub source: Option<&'a DatasetInfo>,
    /// Target dataset name.
    pub target_name: &'a Dataset,
    /// Target state, `None` when it does not exist.
    pub target: Option<&'a DatasetInfo>,
    /// Target's child datasets (they forbid destroying it).
    pub target_children: &'a [Dataset],
    /// The job replicates children of the source: without snapshots of its own, it is
    /// only their parent (skipped every run, so no warning).
    pub source_has_children: bool,
}

/// Decides what to do for one dataset. `missing_parents` are target parents that do
/// not exist yet; they are created first.
pub fn plan_dataset(pair: Pair<'_>, missing_parents: &[Dataset], opts: Options) -> DatasetPlan {
    let mut plan = DatasetPlan {
        source: pair.source_name.clone(),
        target: pair.target_name.clone(),
        verdict: Verdict::UpToDate,
        steps: Vec::new(),
        base_after: None,
    };
    let Some(src) = pair.source else {
        plan.verdict = Verdict::Refuse(Refusal::SourceMissing {
            source_name: pair.source_name.clone(),
        });
        return plan;
    };
    let raw = match opts.raw {
        RawMode::Auto => src.encrypted,
        RawMode::Always => true,
        RawMode::Never => false,
    };

    // An interrupted receive is dealt with before anything else.
    let mut target = pair.target;
    if let Some(t) = target {
        if let Some(token) = &t.resume_token {
            match check_token(token, src, t, raw) {
                TokenCheck::Valid { toguid } => {
                    plan.steps.push(Step::Send {
                        span: SendSpan::Resume {
                            token: token.clone(),
                        },
                        raw,
                        target: pair.target_name.clone(),
                        snapshots: src
                            .snapshots
                            .iter()
                            .filter(|p| p.guid == toguid)
                            .map(|p| p.name.clone())
                            .collect(),
                    });
                    plan.verdict = Verdict::Resume;
                    return plan;
                }
                TokenCheck::Foreign { toname } => {
                    plan.verdict = Verdict::Refuse(Refusal::ForeignToken {
                        target: pair.target_name.clone(),
                        toname,
                        source_name: pair.source_name.clone(),
                    });
                    return plan;
                }
                TokenCheck::Discard { why } => {
                    plan.steps.push(Step::AbortResume {
                        target: pair.target_name.clone(),
                        why,
                    });
                    // An aborted first receive leaves no dataset behind.
                    if t.snapshots.is_empty() {
                        target = None;
                    }
                }
            }
        }
    }

    if src.snapshots.is_empty() {
        plan.verdict = match pair.source_has_children {
            true => Verdict::Skip {
                why: format!(
                    "{} has no snapshots of its own; only its children are replicated",
                    src.name
                ),
                warn: false,
            },
            false => Verdict::Skip {
                why: format!("source {} has no snapshots yet", src.name),
                warn: true,
            },
        };
        return plan;
    }

    match target {
        None => {
            plan.steps.extend(
                missing_parents
                    .iter()
                    .map(|d| Step::CreateParent { dataset: d.clone() }),
            );
            push_full(&mut plan, src, raw);
        }
        Some(t) => plan_existing(&mut plan, pair, src, t, raw, opts),
    }
    plan
}

/// Full send of the earliest snapshot, then one `-I` to the latest.
fn push_full(plan: &mut DatasetPlan, src: &DatasetInfo, raw: bool) {
    let first = &src.snapshots[0];
    plan.steps.push(Step::Send {
        span: SendSpan::Full {
            to: src.point_name(first),
        },
        raw,
        target: plan.target.clone(),
        snapshots: vec![first.name.clone()],
    });
    push_incremental(plan, src, first, raw);
    plan.verdict = Verdict::Transfer {
        full: true,
        snapshots: src.snapshots.len(),
    };
    plan.base_after = src.latest().map(|p| p.name.clone());
}

/// Steps from source point `base` (snapshot or bookmark) to the source's latest
/// snapshot. Returns the number of snapshots sent.
fn push_incremental(plan: &mut DatasetPlan, src: &DatasetInfo, base: &Point, raw: bool) -> usize {
    let newer: Vec<&Point> = src
        .snapshots
        .iter()
        .filter(|p| p.createtxg > base.createtxg)
        .collect();
    let Some(last) = newer.last() else { return 0 };
    let mut from = base;
    if base.bookmark {
        // -I does not take a bookmark: -i to the first snapshot after it, then -I.
        let first = newer[0];
        plan.steps.push(Step::Send {
            span: SendSpan::Incremental {
                from: src.point_name(base),
                to: src.point_name(first),
                intermediates: false,
            },
            raw,
            target: plan.target.clone(),
            snapshots: vec![first.name.clone()],
        });
        from = first;
    }
    if from.guid != last.guid {
        plan.steps.push(Step::Send {
            span: SendSpan::Incremental {
                from: src.point_name(from),
                to: src.point_name(last),
                intermediates: true,
            },
            raw,
            target: plan.target.clone(),
            snapshots: newer
                .iter()
                .filter(|p| p.createtxg > from.createtxg)
                .map(|p| p.name.clone())
                .collect(),
        });
    }
    newer.len()
}

fn plan_existing(
    plan: &mut DatasetPlan,
    pair: Pair<'_>,
    src: &DatasetInfo,
    t: &DatasetInfo,
    raw: bool,
    opts: Options,
) {
    let refuse = |plan: &mut DatasetPlan, r: Refusal| {
        plan.steps.retain(|s| matches!(s, Step::AbortResume { .. }));
        plan.verdict = Verdict::Refuse(r);
    };
    // The newest target snapshot whose GUID the source still has (as snapshot or bookmark;
    // the snapshot wins: inserted last). One map, so a deep common base costs one pass
    // over each side, not a scan of the source per target snapshot.
    let source_points: HashMap<u64, &Point> = src
        .bookmarks
        .iter()
        .chain(&src.snapshots)
        .map(|p| (p.guid, p))
        .collect();
    let common = t
        .snapshots
        .iter()
        .rev()
        .find_map(|tp| source_points.get(&tp.guid).map(|&sp| (tp, sp)));

    let Some((t_base, s_base)) = common else {
        let source_names: HashSet<&str> = src.snapshots.iter().map(|p| p.name.as_str()).collect();
        let r = if t.snapshots.is_empty() {
            Refusal::NotReplicated {
                target: t.name.clone(),
            }
        } else {
            Refusal::NoCommonBase {
                source_name: src.name.clone(),
                target: t.name.clone(),
                same_name: t
                    .snapshots
                    .iter()
                    .filter(|tp| source_names.contains(tp.name.as_str()))
                    .map(|tp| tp.name.clone())
                    .collect(),
            }
        };
        if opts.on_divergence < OnDivergence::DestroyTargetAndResend {
            return refuse(plan, r);
        }
        if !pair.target_children.is_empty() {
            return refuse(
                plan,
                Refusal::HasChildren {
                    target: t.name.clone(),
                    children: pair.target_children.iter().map(|c| c.to_string()).collect(),
                },
            );
        }
        plan.steps.push(Step::DestroyTarget {
            target: t.name.clone(),
            destroys: t.snapshots.iter().map(|p| p.name.clone()).collect(),
        });
        return push_full(plan, src, raw);
    };

    let newer_on_target: Vec<String> = t
        .snapshots
        .iter()
        .filter(|p| p.createtxg > t_base.createtxg)
        .map(|p| p.name.clone())
        .collect();
    if !newer_on_target.is_empty() || t.written > 0 {
        let r = if !newer_on_target.is_empty() {
            Refusal::NewerOnTarget {
                target: t.name.clone(),
                base: t_base.name.clone(),
                newer: newer_on_target.clone(),
            }
        } else {
            Refusal::Modified {
                target: t.name.clone(),
                latest: t_base.name.clone(),
                written: t.written,
            }
        };
        if opts.on_divergence < OnDivergence::RollbackToCommon {
            return refuse(plan, r);
        }
        plan.steps.push(Step::Rollback {
            to: t.point_name(t_base),
            destroys: newer_on_target,
        });
    }

    let sent = push_incremental(plan, src, s_base, raw);
    plan.base_after = Some(
        src.snapshots
            .iter()
            .rev()
            .find(|p| p.createtxg >= s_base.createtxg)
            .map_or_else(|| t_base.name.clone(), |p| p.name.clone()),
    );
    plan.verdict = if sent == 0 {
        Verdict::UpToDate
    } else {
        Verdict::Transfer {
            full: false,
            snapshots: sent,
        }
    };
}

/// Source datasets requested by a job, mapped to their targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// (source, target) pairs, parents before children.
    pub pairs: Vec<(Dataset, Dataset)>,
}

/// Maps every dataset under the requested roots (`requested` as given; missing ones
/// stay in so they fail on their own) through `map`.
pub fn expand<E>(
    source: &Listing,
    requested: &[Dataset],
    map: impl Fn(&Dataset) -> Result<Dataset, E>,
) -> Result<Mapping, E> {
    let mut seen = BTreeSet::new();
    let mut pairs = Vec::new();
    for root in requested {
        let mut names: Vec<Dataset> = source.subtree(root).map(|d| d.name.clone()).collect();
        if names.is_empty() {
            names.push(root.clone());
        }
        for n in names {
            if seen.insert(n.clone()) {
                let t = map(&n)?;
                pairs.push((n, t));
            }
        }
    }
    pairs.sort();
    Ok(Mapping { pairs })
}

/// Plans a whole job. Target parents are created once, and not at all for datasets
/// that this plan receives earlier (parents sort before children).
pub fn plan_job(
    source: &Listing,
    target: &Listing,
    mapping: &Mapping,
    target_root: &Dataset,
    opts: Options,
) -> Vec<DatasetPlan> {
    let mut will_exist: BTreeSet<Dataset> = target.datasets.keys().cloned().collect();
    // The sources with another source below them, in one pass (asking each pair of
    // every other pair made a wide tree's plan quadratic).
    let source_parents: HashSet<&str> = mapping
        .pairs
        .iter()
        .flat_map(|(s, _)| s.ancestor_names())
        .collect();
    let mut plans = Vec::new();
    for (s, t) in &mapping.pairs {
        let missing: Vec<Dataset> = t
            .ancestors()
            .into_iter()
            .filter(|a| a.is_within(target_root) && !will_exist.contains(a))
            .collect();
        let children: Vec<Dataset> = target
            .subtree(t)
            .filter(|d| &d.name != t)
            .map(|d| d.name.clone())
            .collect();
        let pair = Pair {
            source_name: s,
            source: source.get(s),
            target_name: t,
            target: target.get(t),
            target_children: &children,
            source_has_children: source_parents.contains(s.as_str()),
        };
        let p = plan_dataset(pair, &missing, opts);
        for step in &p.steps {
            match step {
                Step::CreateParent { dataset } => {
                    will_exist.insert(dataset.clone());
                }
                Step::Send { target, .. } => {
                    will_exist.insert(target.clone());
                }
                _ => {}
            }
        }
        plans.push(p);
    }
    plans
}

/// Why a source dataset has no target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A pushed dataset outside the strip prefix: never a silent full path.
    #[error("dataset {dataset} is not under the strip prefix {strip}; push only datasets below it or change strip_prefix")]
    OutsideStripPrefix {
        /// The source dataset.
        dataset: Dataset,
        /// The job's strip prefix.
        strip: Dataset,
    },
    /// A push job without `strip_prefix` (config validation refuses these first).
    #[error("push job without strip_prefix")]
    NoStripPrefix,
    /// The joined target is not a valid dataset name (e.g. too long).
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Target of a pulled dataset: `dest/<name>/<source path>`.
pub fn pull_target(dest: &Dataset, name: &str, source: &Dataset) -> Result<Dataset, MappingError> {
    Ok(dest.join(name)?.join(source.as_str())?)
}

/// Target of a pushed dataset: `dest/<source with prefix stripped>`. A dataset
/// outside the prefix is an error, never a silent full path.
pub fn push_target(
    dest: &Dataset,
    strip: &Dataset,
    source: &Dataset,
) -> Result<Dataset, MappingError> {
    let rel = source
        .relative_to(strip)
        .ok_or_else(|| MappingError::OutsideStripPrefix {
            dataset: source.clone(),
            strip: strip.clone(),
        })?;
    Ok(dest.join(rel)?)
}
