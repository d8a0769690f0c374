//! The two ends of a job and what is read from them: one `zfs list -Hp` of the source
//! (`list`), one of what the job owns on the target (`list_owned`), the holds on the
//! listed snapshots ([`holds`]); with the job's [`cache`], filesystems first and then
//! only the snapshots that changed (`list_cached`), and the holds the cache knows of
//! asked meanwhile.
//!
//! Below `replicate`, `status` and `prune`, which all read a side the same way, so a
//! status costs the same listing a run makes and goes through the same SSH guard.

pub mod cache;
pub mod holds;

use crate::clock::now;
use crate::host::{Host, Output};
use crate::log;
use crate::zfs::cmd;
use crate::zfs::list::{
    list_argv_at, list_named_argv, missing_from_stderr, parse_filesystems, parse_listing,
    parse_named, DatasetInfo, Depth, Listing, SNAPSHOTS_CHANGED,
};
use crate::zfs::name::Dataset;
use anyhow::{anyhow, bail, Result};
use cache::SideCache;
use futures_util::future::join_all;
use holds::EarlyHolds;
use std::collections::BTreeSet;

/// Both ends of a job.
pub(crate) struct Sides {
    /// Where the snapshots are sent from.
    pub source: Host,
    /// Where they are received.
    pub target: Host,
}

/// Lists `roots` on `host`; roots that do not exist are returned apart.
pub(crate) async fn list(host: &Host, roots: &[Dataset]) -> Result<(Listing, Vec<String>)> {
    list_at(host, roots, Depth::Recursive).await
}

/// A side's listing through its cache.
pub(crate) struct Cached {
    /// Everything under the roots, as [`list`] gives it.
    pub listing: Listing,
    /// Roots that do not exist.
    pub missing: Vec<String>,
    /// The entries to keep for the next run (none when the host has no
    /// `snapshots_changed`).
    pub fresh: SideCache,
    /// Datasets whose snapshots came from the cache.
    pub reused: usize,
    /// Whether the host answered with `snapshots_changed` (OpenZFS >= 2.2), so what a
    /// receive leaves can be kept for the next run, also on datasets the run makes.
    pub tracks: bool,
    /// The holds on the snapshots the cache says are held, asked with the listing.
    pub early_holds: Option<EarlyHolds>,
    /// Set when only these datasets were asked (by name), not everything under the
    /// roots: a dataset not in it was not seen, whether it exists or not.
    pub only: Option<BTreeSet<Dataset>>,
}

/// [`list`] as a [`Cached`] that keeps nothing.
async fn uncached(host: &Host, roots: &[Dataset]) -> Result<Cached> {
    let (listing, missing) = list(host, roots).await?;
    Ok(Cached {
        listing,
        missing,
        fresh: SideCache::default(),
        reused: 0,
        tracks: false,
        early_holds: None,
        only: None,
    })
}

/// Lists `roots` on `host` like [`list`], but with a `cache` snapshots only of the
/// datasets it does not describe any more: one filesystem listing, then (if any
/// changed) one snapshot listing of those datasets alone.
pub(crate) async fn list_cached(
    host: &Host,
    roots: &[Dataset],
    cache: Option<&SideCache>,
) -> Result<Cached> {
    let Some(cache) = cache else {
        return uncached(host, roots).await;
    };
    let (c, early) = tokio::join!(
        filesystems_through(host, roots, cache),
        EarlyHolds::ask(host, cache)
    );
    Ok(c?.with_early(early))
}

/// [`list_cached`] without the early holds: one filesystem listing of `roots`, made
/// whole [`through_cache`].
async fn filesystems_through(host: &Host, roots: &[Dataset], cache: &SideCache) -> Result<Cached> {
    let out = host.run(&list_argv_at(roots, Depth::Filesystems)).await?;
    if lacks_changed(host, &out) {
        return uncached(host, roots).await;
    }
    let missing = missing_roots(host, &out)?;
    through_cache(host, parse_filesystems(&out.stdout)?, missing, cache).await
}

impl Cached {
    /// With the holds asked meanwhile, where the listing went through the cache.
    fn with_early(mut self, early: EarlyHolds) -> Cached {
        if self.tracks {
            self.early_holds = Some(early);
        }
        self
    }
}

/// Whether `out` is a listing's refusal of `snapshots_changed` (OpenZFS < 2.2).
fn lacks_changed(host: &Host, out: &Output) -> bool {
    let lacks = !out.ok() && out.stderr.contains(SNAPSHOTS_CHANGED);
    if lacks {
        let label = host.label();
        log::debug!("{label} has no {SNAPSHOTS_CHANGED} (OpenZFS < 2.2): listing every snapshot");
    }
    lacks
}

/// A filesystem listing with `snapshots_changed` made whole: each dataset's snapshots
/// from `cache` while its entry still describes it, else listed (one listing of the
/// datasets that changed).
async fn through_cache(
    host: &Host,
    mut listing: Listing,
    missing: Vec<String>,
    cache: &SideCache,
) -> Result<Cached> {
    let label = host.label();
    let mut stale = BTreeSet::new();
    for d in listing.datasets.values_mut() {
        match cache.valid(label, &d.name, d.guid, d.snapshots_changed) {
            Some(e) => {
                d.snapshots = e.snapshots.clone();
                d.bookmarks = e.bookmarks.clone();
            }
            None => {
                stale.insert(d.name.clone());
            }
        }
    }
    let reused = listing.datasets.len() - stale.len();
    // In parts: every dataset of a big source is stale after a `zfs snapshot -r`, and
    // one command over SSH holds at most 128 KiB of names.
    let names: Vec<Dataset> = stale.iter().cloned().collect();
    let snapshots = |part: &[Dataset]| list_argv_at(part, Depth::Snapshots);
    for part in in_parts(host, &names, snapshots).await {
        let out = host.succeeded(&part.argv, part.out?)?;
        for (name, s) in parse_listing(&out.stdout)?.datasets {
            match listing.datasets.get_mut(&name) {
                Some(d) if part.names.contains(&name) => {
                    d.snapshots = s.snapshots;
                    d.bookmarks = s.bookmarks;
                }
                _ => bail!("{label} listed snapshots of {name}, which it was not asked for"),
            }
        }
    }
    let fresh = SideCache::from_listing(label, &listing, now());
    Ok(Cached {
        listing,
        missing,
        fresh,
        reused,
        tracks: true,
        early_holds: None,
        only: None,
    })
}

/// At most this many listings by name go at once: each is an SSH session on the
/// host's one connection, and sshd allows 10 by default (`MaxSessions`).
const PARTS_AT_ONCE: usize = 4;

/// A listing by name gets at least this many names before the names are split.
const NAMES_PER_PART: usize = 32;

/// The datasets `cache` knows under `roots` on `host`: what a listing by name asks.
fn known_below(host: &Host, roots: &[Dataset], cache: &SideCache) -> Vec<Dataset> {
    if cache.host != host.label() {
        return Vec::new();
    }
    let named: BTreeSet<&Dataset> = cache.names.iter().chain(cache.datasets.keys()).collect();
    named
        .into_iter()
        .filter(|d| roots.iter().any(|r| d.is_within(r)))
        .cloned()
        .collect()
}

/// `names` in parts for the listings by name: one part for a few, up to
/// [`PARTS_AT_ONCE`] for many, and more where a part's names would not fit one command.
fn parts_of(names: &[Dataset]) -> Vec<&[Dataset]> {
    let per = names
        .len()
        .div_ceil((names.len() / NAMES_PER_PART).clamp(1, PARTS_AT_ONCE));
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, n) in names.iter().enumerate() {
        let len = n.as_str().len() + 1;
        if i > start && (i - start == per || bytes + len > NAMES_PER_COMMAND) {
            parts.push(&names[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < names.len() {
        parts.push(&names[start..]);
    }
    parts
}

/// One part of a listing in parts: its names, its argv and what it gave.
struct Part<'a> {
    names: &'a [Dataset],
    argv: Vec<String>,
    out: Result<Output>,
}

/// Runs the argv `argv_of` builds for each part of `names` ([`parts_of`]),
/// [`PARTS_AT_ONCE`] at a time; the parts in order.
async fn in_parts<'a>(
    host: &Host,
    names: &'a [Dataset],
    argv_of: impl Fn(&[Dataset]) -> Vec<String>,
) -> Vec<Part<'a>> {
    let mut parts = Vec::new();
    for wave in parts_of(names).chunks(PARTS_AT_ONCE) {
        let argvs: Vec<Vec<String>> = wave.iter().map(|p| argv_of(p)).collect();
        let outs = join_all(argvs.iter().map(|a| host.run(a))).await;
        for ((names, argv), out) in wave.iter().zip(argvs).zip(outs) {
            parts.push(Part { names, argv, out });
        }
    }
    parts
}

/// Lists the filesystems `cache` knows under `roots` by name, in parts at once, then
/// goes on as [`list_cached`]. On a backup server the copies are not mounted, and
/// listing an unmounted filesystem by name costs a third of listing it with `-r` (which
/// opens it again to look for children), less again in parts at once
/// (bench/split-listing.md). A dataset the cache does not know is not seen: the
/// listing says which names it covered ([`Cached::only`]) and [`complete_owned`]
/// lists the job's others.
async fn list_known(
    host: &Host,
    roots: &[Dataset],
    names: Vec<Dataset>,
    cache: &SideCache,
) -> Result<Cached> {
    let (listed, early) = tokio::join!(by_name(host, &names), EarlyHolds::ask(host, cache));
    let c = match listed? {
        Some((listing, missing)) => Cached {
            only: Some(names.into_iter().collect()),
            ..through_cache(host, listing, missing, cache).await?
        },
        None => filesystems_through(host, roots, cache).await?,
    };
    Ok(c.with_early(early))
}

/// The filesystems `names` (each with its `snapshots_changed`) and the names that do
/// not exist, listed in parts ([`parts_of`]), [`PARTS_AT_ONCE`] at a time. `None` when
/// the host would not list by name (no `snapshots_changed`, or the guard of an older
/// zferry). Rows for names not asked are refused ([`parse_asked`]).
async fn by_name(host: &Host, names: &[Dataset]) -> Result<Option<(Listing, Vec<String>)>> {
    let (mut listing, mut missing) = (Listing::default(), Vec::new());
    let named = |part: &[Dataset]| list_named_argv(&strings(part));
    for Part {
        names: part, out, ..
    } in in_parts(host, names, named).await
    {
        let out = out?;
        let Ok(m) = missing_roots(host, &out) else {
            log::debug!(
                "{}: no listing by name ({}): listing whole subtrees",
                host.label(),
                out.stderr.trim()
            );
            return Ok(None);
        };
        listing
            .datasets
            .extend(parse_asked(host, &out.stdout, &strings(part))?.datasets);
        missing.extend(m);
    }
    Ok(Some((listing, missing)))
}

fn strings(names: &[Dataset]) -> Vec<String> {
    names.iter().map(Dataset::to_string).collect()
}

/// Adds to `owned`, a listing by name ([`list_known`]), the job's targets it did not
/// cover (`wanted`, every copy the source's listing calls for: a new dataset's, or one
/// the cache dropped), by name too; nothing below them matters to the job that is not
/// in `wanted`. Nothing to do after a listing of whole subtrees, or when every target
/// was asked.
pub(crate) async fn complete_owned(
    host: &Host,
    owned: &mut Cached,
    wanted: impl IntoIterator<Item = Dataset>,
    cache: Option<&SideCache>,
) -> Result<()> {
    let (Some(asked), Some(cache)) = (&owned.only, cache) else {
        return Ok(());
    };
    let unseen: Vec<Dataset> = wanted
        .into_iter()
        .filter(|t| !asked.contains(t))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if unseen.is_empty() {
        return Ok(());
    }
    let label = host.label();
    log::debug!(
        "{label}: {} targets the last run's listing did not have, listed apart",
        unseen.len()
    );
    let Some((listing, missing)) = by_name(host, &unseen).await? else {
        bail!("{label} listed datasets by name, then refused to");
    };
    let more = through_cache(host, listing, missing, cache).await?;
    owned.listing.datasets.extend(more.listing.datasets);
    owned.missing.extend(more.missing);
    owned.fresh.datasets.extend(more.fresh.datasets);
    owned.fresh.names.extend(more.fresh.names);
    owned.reused += more.reused;
    Ok(())
}

async fn list_at(host: &Host, roots: &[Dataset], depth: Depth) -> Result<(Listing, Vec<String>)> {
    let out = host.run(&list_argv_at(roots, depth)).await?;
    let missing = missing_roots(host, &out)?;
    Ok((parse_listing(&out.stdout)?, missing))
}

/// The listed roots that do not exist, from a listing's exit and stderr; any other
/// failure is an error naming the host.
fn missing_roots(host: &Host, out: &Output) -> Result<Vec<String>> {
    if out.ok() {
        return Ok(Vec::new());
    }
    missing_from_stderr(&out.stderr).map_err(|e| anyhow!("on {}: {e}", host.label()))
}

/// Lists what a job owns on its target: each of `roots` (the job's datasets, mapped)
/// with everything below it, and, without their snapshots, the datasets from `top`
/// (the destination) down to them, which the planner needs to know exist. Nothing
/// else under `top` is read: other jobs' copies cost this job nothing. Names that do
/// not exist, from either listing, are returned apart.
pub(crate) async fn list_owned(
    host: &Host,
    top: &Dataset,
    roots: &[Dataset],
    cache: Option<&SideCache>,
) -> Result<Cached> {
    // A root below another is already in its listing (and would be listed twice).
    let roots: Vec<Dataset> = roots
        .iter()
        .filter(|r| !roots.iter().any(|o| o != *r && r.is_within(o)))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let covered = |d: &Dataset| roots.iter().any(|r| d.is_within(r));
    let chain: Vec<Dataset> = roots
        .iter()
        .flat_map(|r| r.ancestors())
        .chain([top.clone()])
        .filter(|a| a.is_within(top) && !covered(a))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let owned = async {
        let known = cache.map(|c| (c, known_below(host, &roots, c)));
        match known {
            Some((c, names)) if !names.is_empty() => list_known(host, &roots, names, c).await,
            _ => list_cached(host, &roots, cache).await,
        }
    };
    let (owned, chain) = tokio::join!(owned, async {
        if chain.is_empty() {
            Ok((Listing::default(), Vec::new()))
        } else {
            list_at(host, &chain, Depth::Only).await
        }
    });
    let (mut owned, (chain, chain_missing)) = (owned?, chain?);
    owned.listing.datasets.extend(chain.datasets);
    owned.missing.extend(chain_missing);
    Ok(owned)
}

/// At most this many bytes of names go on one command line: over SSH the whole command
/// is one argument to the remote shell, which Linux caps at 128 KiB.
const NAMES_PER_COMMAND: usize = 32 * 1024;

/// Lists exactly the names of `groups` on `host` (datasets with their
/// `snapshots_changed`, and snapshots): what a run reads back of what it changed. A group
/// (one dataset's names) is never split; groups go together up to [`NAMES_PER_COMMAND`]
/// bytes a command, and a group larger than that is left out (listed afresh next run).
pub(crate) async fn reread(host: &Host, groups: &[Vec<String>]) -> Result<Listing> {
    let mut listing = Listing::default();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    let size = |names: &[String]| names.iter().map(|n| n.len() + 1).sum::<usize>();
    for g in groups {
        let n = size(g);
        if n > NAMES_PER_COMMAND {
            continue;
        }
        if bytes + n > NAMES_PER_COMMAND {
            listing
                .datasets
                .extend(reread_names(host, &batch).await?.datasets);
            (batch, bytes) = (Vec::new(), 0);
        }
        batch.extend(g.iter().cloned());
        bytes += n;
    }
    if !batch.is_empty() {
        listing
            .datasets
            .extend(reread_names(host, &batch).await?.datasets);
    }
    Ok(listing)
}

/// One [`list_named_argv`] listing.
async fn reread_names(host: &Host, names: &[String]) -> Result<Listing> {
    let out = host.run_ok(&list_named_argv(names)).await?;
    parse_asked(host, &out.stdout, names)
}

/// A [`list_named_argv`] listing's rows, refused (naming `host`) if any is not one of
/// `names`: the peer may be hostile, and what it adds must not reach the plan or cache.
fn parse_asked(host: &Host, stdout: &str, names: &[String]) -> Result<Listing> {
    let listing = parse_named(stdout)?;
    only_asked(&listing, names)
        .map_err(|row| anyhow!("{} listed {row}, which it was not asked for", host.label()))?;
    Ok(listing)
}

/// The first row of `listing` that is not one of `names` (or repeats one), as an error:
/// the peer may be hostile, and what it adds must not reach the cache.
fn only_asked(listing: &Listing, names: &[String]) -> std::result::Result<(), String> {
    let mut asked: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    for d in listing.datasets.values() {
        // A dataset only named by its snapshots' rows has no row (GUID 0) of its own.
        let own = (d.guid != 0).then(|| d.name.to_string());
        let points = d.snapshots.iter().chain(&d.bookmarks);
        for row in own
            .into_iter()
            .chain(points.map(|p| d.point_name(p).to_string()))
        {
            // Each name answers once: a second row for it is not asked for either.
            if !asked.remove(row.as_str()) {
                return Err(row);
            }
        }
    }
    Ok(())
}

/// Which of `targets` keep themselves unmounted with a `canmount` of their own (see
/// [`Canmount::Kept`](crate::zfs::cmd::Canmount::Kept)). When `host` cannot say (a target
/// went away meanwhile, or it answered what was not asked), none of a batch: their
/// receives set it again, as they always may.
pub(crate) async fn unmountable(host: &Host, targets: &[Dataset]) -> BTreeSet<Dataset> {
    let mut kept = BTreeSet::new();
    // A dataset name has at most 255 bytes: a batch stays within NAMES_PER_COMMAND.
    for batch in targets.chunks(NAMES_PER_COMMAND / 256) {
        let answer = host
            .run_ok(&cmd::get_local_canmount(batch))
            .await
            .map_err(|e| format!("{e:#}"))
            .and_then(|o| cmd::parse_unmountable(&o.stdout, batch));
        match answer {
            Ok(k) => kept.extend(k),
            Err(e) => log::debug!(
                "{}: canmount of {} targets unknown, their receives set it: {e}",
                host.label(),
                batch.len()
            ),
        }
    }
    kept
}

/// Lists one dataset again (after a resume), `None` if it does not exist.
pub(crate) async fn relist(host: &Host, ds: &Dataset) -> Result<Option<DatasetInfo>> {
    let (l, _) = list(host, std::slice::from_ref(ds)).await?;
    Ok(l.get(ds).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::Fake;
    use std::sync::Arc;

    /// One dataset's read-back names: the dataset and `n` snapshots of ~60 bytes each.
    fn group(ds: &str, n: usize) -> Vec<String> {
        let mut g = vec![ds.to_string()];
        g.extend((0..n).map(|i| format!("{ds}@{i:0>50}")));
        g
    }

    #[test]
    fn a_read_back_with_a_row_not_asked_for_is_refused() {
        let l = parse_named(
            "t/a\tfilesystem\t11\t5\toff\t-\t0\t-\t-\t1\t1000\n\
             t/a@s1\tsnapshot\t21\t6\t-\t-\t-\t-\t0\t1\t-\n",
        )
        .unwrap();
        let asked = |n: &[&str]| n.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(only_asked(&l, &asked(&["t/a", "t/a@s1"])), Ok(()));
        assert_eq!(only_asked(&l, &asked(&["t/a"])), Err("t/a@s1".into()));
        assert_eq!(only_asked(&l, &asked(&["t/a@s1"])), Err("t/a".into()));
        let twice = parse_named(
            "t/a\tfilesystem\t11\t5\toff\t-\t0\t-\t-\t1\t1000\n\
             t/a@s1\tsnapshot\t21\t6\t-\t-\t-\t-\t0\t1\t-\n\
             t/a@s1\tsnapshot\t29\t7\t-\t-\t-\t-\t0\t1\t-\n",
        )
        .unwrap();
        assert_eq!(
            only_asked(&twice, &asked(&["t/a", "t/a@s1"])),
            Err("t/a@s1".into())
        );
    }

    #[test]
    fn names_go_in_parts_of_at_least_32_and_at_most_4_unless_a_command_would_overflow() {
        let names = |k: usize, len: usize| -> Vec<Dataset> {
            (0..k)
                .map(|i| Dataset::new(&format!("p/{i:0>len$}")).unwrap())
                .collect()
        };
        let counts =
            |k, len| -> Vec<usize> { parts_of(&names(k, len)).iter().map(|p| p.len()).collect() };
        assert_eq!(counts(10, 5), [10]);
        assert_eq!(counts(63, 5), [63]);
        assert_eq!(counts(101, 5), [34, 34, 33]);
        assert_eq!(counts(1000, 5), [250; 4]);
        let long = names(3000, 200);
        let parts = parts_of(&long);
        assert!(parts.len() > PARTS_AT_ONCE, "{}", parts.len());
        let bytes = |p: &[Dataset]| p.iter().map(|n| n.as_str().len() + 1).sum::<usize>();
        assert!(parts.iter().all(|p| bytes(p) <= NAMES_PER_COMMAND));
        assert_eq!(parts.concat(), long, "every name once, in order");
    }

    /// Every dataset of a big source is stale after a `zfs snapshot -r`: its snapshots
    /// are listed in parts that each fit one command over SSH, and all of them arrive.
    #[tokio::test]
    async fn the_snapshots_of_many_stale_datasets_are_listed_in_commands_of_bounded_size() {
        let names: Vec<String> = (0..1500).map(|i| format!("t/{i:0>100}")).collect();
        let mut spec: Vec<(&str, &[&str])> = vec![("t", &["s1"])];
        spec.extend(names.iter().map(|n| (n.as_str(), &["s1"][..])));
        let fake = Arc::new(Fake::new(&spec));
        let host = Host::Fake(fake.clone());
        let root = Dataset::new("t").unwrap();
        let c = list_cached(&host, &[root], Some(&SideCache::default()))
            .await
            .unwrap();
        assert_eq!(c.listing.datasets.len(), 1501);
        assert!(c.listing.datasets.values().all(|d| d.snapshots.len() == 1));
        let lists: Vec<String> = fake
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("zfs list -Hp -t snapshot,bookmark"))
            .collect();
        assert!(lists.len() > 4, "{}", lists.len());
        assert!(lists.iter().all(|c| c.len() < NAMES_PER_COMMAND + 1024));
    }

    #[tokio::test]
    async fn a_read_back_goes_in_commands_of_bounded_size_and_never_splits_a_dataset() {
        let names = |n: usize| -> Vec<String> { (0..n).map(|i| format!("{i:0>50}")).collect() };
        let (a, b, big) = (names(300), names(300), names(600));
        let fake = Arc::new(Fake::new(&[
            ("t/a", &a.iter().map(String::as_str).collect::<Vec<_>>()),
            ("t/b", &b.iter().map(String::as_str).collect::<Vec<_>>()),
            ("t/big", &big.iter().map(String::as_str).collect::<Vec<_>>()),
        ]));
        let host = Host::Fake(fake.clone());
        let groups = [group("t/a", 300), group("t/big", 600), group("t/b", 300)];
        let l = reread(&host, &groups).await.unwrap();
        // ~18 KiB a small group, ~36 KiB the big one: one command each for the small,
        // none for the big (listed afresh next run instead).
        let lists: Vec<String> = fake
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("zfs list"))
            .collect();
        assert_eq!(lists.len(), 2, "{}", lists.len());
        assert!(lists.iter().all(|c| c.len() < NAMES_PER_COMMAND + 1024));
        assert_eq!(
            l.get(&Dataset::new("t/a").unwrap())
                .unwrap()
                .snapshots
                .len(),
            300
        );
        assert_eq!(
            l.get(&Dataset::new("t/b").unwrap())
                .unwrap()
                .snapshots
                .len(),
            300
        );
        assert!(l.get(&Dataset::new("t/big").unwrap()).is_none());
    }
}
