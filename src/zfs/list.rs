//! One batched `zfs list -Hp` per side per run, parsed into plain data the planner reads.

use super::name::{Dataset, Snapshot};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Properties asked for, in column order.
pub const LIST_PROPS: &[&str] = &[
    "name",
    "type",
    "guid",
    "createtxg",
    "encryption",
    "keystatus",
    "written",
    "receive_resume_token",
    "userrefs",
    "creation",
];

/// Property that changes whenever a dataset gains or loses a snapshot (OpenZFS >= 2.2):
/// asked after [`LIST_PROPS`] in a [`Depth::Filesystems`] listing.
pub const SNAPSHOTS_CHANGED: &str = "snapshots_changed";

/// How much of each root a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The root, its snapshots and bookmarks, and everything below it (`-r`).
    Recursive,
    /// The root alone, without its snapshots (`-d 0`): enough to know it exists.
    Only,
    /// The root and the filesystems and volumes below it, without snapshots, each with
    /// its `snapshots_changed` as an extra last column.
    Filesystems,
    /// The snapshots and bookmarks of each root alone (`-d 1`), not of its children.
    Snapshots,
}

/// argv for the one listing of `roots` and everything below them.
pub fn list_argv(roots: &[Dataset]) -> Vec<String> {
    list_argv_at(roots, Depth::Recursive)
}

/// argv for a listing of `roots` to `depth`.
pub fn list_argv_at(roots: &[Dataset], depth: Depth) -> Vec<String> {
    let types = match depth {
        Depth::Recursive | Depth::Only => "filesystem,volume,snapshot,bookmark",
        Depth::Filesystems => "filesystem,volume",
        Depth::Snapshots => "snapshot,bookmark",
    };
    let mut argv: Vec<String> = ["zfs", "list", "-Hp", "-t", types, "-s", "createtxg", "-o"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut props = LIST_PROPS.join(",");
    if depth == Depth::Filesystems {
        props = format!("{props},{SNAPSHOTS_CHANGED}");
    }
    argv.push(props);
    match depth {
        Depth::Recursive | Depth::Filesystems => argv.push("-r".into()),
        Depth::Only => argv.extend(["-d".into(), "0".into()]),
        Depth::Snapshots => argv.extend(["-d".into(), "1".into()]),
    }
    argv.extend(roots.iter().map(|r| r.to_string()));
    argv
}

/// argv for a listing of exactly `names` (filesystems, volumes, snapshots), each with
/// its `snapshots_changed` as an extra last column (`-` for snapshots); parsed by
/// [`parse_named`].
pub fn list_named_argv(names: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "zfs",
        "list",
        "-Hp",
        "-t",
        "filesystem,volume,snapshot",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(format!("{},{SNAPSHOTS_CHANGED}", LIST_PROPS.join(",")));
    argv.extend(names.iter().cloned());
    argv
}

/// A snapshot or bookmark: a point in a dataset's history that streams start or end at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The part after `@` or `#`.
    pub name: String,
    /// Identity across pools: a received snapshot keeps its source's GUID.
    pub guid: u64,
    /// Creation order within the pool.
    pub createtxg: u64,
    /// True for a bookmark.
    pub bookmark: bool,
    /// Number of user holds (0 for bookmarks).
    pub userrefs: u64,
    /// Creation time, Unix seconds (for lag in `zferry status`).
    pub creation: u64,
}

/// A filesystem or volume and its history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetInfo {
    /// Full name.
    pub name: Dataset,
    /// The dataset's own GUID (a dataset destroyed and made again under the same name
    /// has another); 0 when it was not listed.
    pub guid: u64,
    /// `snapshots_changed` (Unix seconds) from a [`Depth::Filesystems`] listing, `None`
    /// otherwise or when the host does not track it.
    pub snapshots_changed: Option<u64>,
    /// `encryption` is not `off`.
    pub encrypted: bool,
    /// `keystatus` (`available`/`unavailable`), `None` when unencrypted.
    pub keystatus: Option<String>,
    /// Bytes written since the newest snapshot: non-zero means modified.
    pub written: u64,
    /// `receive_resume_token` of an interrupted resumable receive.
    pub resume_token: Option<String>,
    /// Snapshots ordered by createtxg.
    pub snapshots: Vec<Point>,
    /// Bookmarks ordered by createtxg.
    pub bookmarks: Vec<Point>,
}

impl DatasetInfo {
    fn new(name: Dataset) -> Self {
        DatasetInfo {
            name,
            guid: 0,
            snapshots_changed: None,
            encrypted: false,
            keystatus: None,
            written: 0,
            resume_token: None,
            snapshots: Vec::new(),
            bookmarks: Vec::new(),
        }
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<&Point> {
        self.snapshots.last()
    }

    /// The full name of snapshot or bookmark `p` of this dataset.
    pub fn point_name(&self, p: &Point) -> Snapshot {
        let sep = if p.bookmark { '#' } else { '@' };
        Snapshot::new(&format!("{}{}{}", self.name, sep, p.name))
            .expect("names parsed from zfs list are valid")
    }
}

/// Every dataset one side has under the listed roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// By name; iteration order puts parents before children.
    pub datasets: BTreeMap<Dataset, DatasetInfo>,
}

impl Listing {
    /// The dataset `name`, if it exists.
    pub fn get(&self, name: &Dataset) -> Option<&DatasetInfo> {
        self.datasets.get(name)
    }

    /// `root` and all its descendants, parents first.
    pub fn subtree<'a>(&'a self, root: &Dataset) -> impl Iterator<Item = &'a DatasetInfo> {
        // Every name below `root` starts with `root/`, and names sharing a prefix sort
        // next to each other: one range, never visiting `root-old` or `root2` (a scan
        // from `root` would, and would cost a wide tree's job a pass per dataset).
        let below = format!("{root}/");
        let descendants = self
            .datasets
            .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
            .take_while(move |(n, _)| n.as_str().starts_with(&below))
            .map(|(_, d)| d);
        self.datasets.get(root).into_iter().chain(descendants)
    }
}

fn opt(s: &str) -> Option<&str> {
    (s != "-" && !s.is_empty()).then_some(s)
}

fn num(field: &str, s: &str, line: &str) -> Result<u64> {
    match opt(s) {
        None => Ok(0),
        Some(v) => v
            .parse()
            .with_context(|| format!("bad {field} '{v}' in zfs list line: {line}")),
    }
}

/// Parses `zfs list -Hp -o <LIST_PROPS>` output (any [`Depth`] but
/// [`Depth::Filesystems`]).
pub fn parse_listing(out: &str) -> Result<Listing> {
    parse_columns(out, false, true)
}

/// Parses the output of a [`Depth::Filesystems`] listing.
pub fn parse_filesystems(out: &str) -> Result<Listing> {
    parse_columns(out, true, false)
}

/// Parses the output of a [`list_named_argv`] listing.
pub fn parse_named(out: &str) -> Result<Listing> {
    parse_columns(out, true, true)
}

fn parse_columns(out: &str, with_changed: bool, with_snapshots: bool) -> Result<Listing> {
    let want = LIST_PROPS.len() + usize::from(with_changed);
    let mut listing = Listing::default();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != want {
            bail!(
                "zfs list line has {} fields, expected {want}: {line}",
                f.len()
            );
        }
        match f[1] {
            "filesystem" | "volume" => {
                let name = Dataset::new(f[0])?;
                let d = listing
                    .datasets
                    .entry(name.clone())
                    .or_insert_with(|| DatasetInfo::new(name));
                d.guid = num("guid", f[2], line)?;
                if with_changed {
                    d.snapshots_changed = opt(f[10])
                        .map(|_| num(SNAPSHOTS_CHANGED, f[10], line))
                        .transpose()?;
                }
                d.encrypted = opt(f[4]).is_some_and(|e| e != "off");
                d.keystatus = opt(f[5]).map(str::to_string);
                d.written = num("written", f[6], line)?;
                d.resume_token = opt(f[7]).map(str::to_string);
            }
            "snapshot" | "bookmark" if with_snapshots => {
                let snap = Snapshot::new(f[0])?;
                let p = Point {
                    name: snap.short().to_string(),
                    guid: num("guid", f[2], line)?,
                    createtxg: num("createtxg", f[3], line)?,
                    bookmark: snap.is_bookmark(),
                    userrefs: num("userrefs", f[8], line)?,
                    creation: num("creation", f[9], line)?,
                };
                let ds = snap.dataset().clone();
                let d = listing
                    .datasets
                    .entry(ds.clone())
                    .or_insert_with(|| DatasetInfo::new(ds));
                if p.bookmark {
                    d.bookmarks.push(p);
                } else {
                    d.snapshots.push(p);
                }
            }
            other => bail!("unexpected dataset type '{other}' in zfs list line: {line}"),
        }
    }
    for d in listing.datasets.values_mut() {
        d.snapshots.sort_by_key(|p| p.createtxg);
        d.bookmarks.sort_by_key(|p| p.createtxg);
    }
    Ok(listing)
}

/// Names in `zfs list` stderr that do not exist; `Err` if stderr says anything else.
///
/// One listing covers many roots; a missing root must fail only its own datasets.
pub fn missing_from_stderr(stderr: &str) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let name = line
            .strip_prefix("cannot open '")
            .and_then(|r| r.strip_suffix("': dataset does not exist"));
        match name {
            Some(n) => missing.push(n.to_string()),
            None => bail!("zfs list failed: {}", stderr.trim()),
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
tank/data\tfilesystem\t111\t5\taes-256-gcm\tavailable\t0\t-\t-\t1700000000
tank/data@a\tsnapshot\t201\t6\t-\t-\t-\t-\t0\t1700000000
tank/data#a\tbookmark\t201\t6\t-\t-\t-\t-\t-\t1700000000
tank/data/kid\tfilesystem\t112\t7\taes-256-gcm\tavailable\t4096\t1-abc-def\t-\t1700000000
tank/data@b\tsnapshot\t202\t9\t-\t-\t-\t-\t1\t1700000000
tank/dataz\tfilesystem\t113\t10\toff\t-\t0\t-\t-\t1700000000
";

    #[test]
    fn parses_datasets_snapshots_bookmarks() {
        let l = parse_listing(SAMPLE).unwrap();
        let d = l.get(&Dataset::new("tank/data").unwrap()).unwrap();
        assert!(d.encrypted);
        assert_eq!(d.keystatus.as_deref(), Some("available"));
        assert_eq!(
            d.snapshots.iter().map(|p| p.guid).collect::<Vec<_>>(),
            [201, 202]
        );
        assert_eq!(d.snapshots[1].userrefs, 1);
        assert_eq!(d.bookmarks.len(), 1);
        assert!(d.bookmarks[0].bookmark);
        let kid = l.get(&Dataset::new("tank/data/kid").unwrap()).unwrap();
        assert_eq!(kid.written, 4096);
        assert_eq!(kid.resume_token.as_deref(), Some("1-abc-def"));
        let plain = l.get(&Dataset::new("tank/dataz").unwrap()).unwrap();
        assert!(!plain.encrypted);
        assert_eq!(plain.keystatus, None);
    }

    #[test]
    fn subtree_does_not_include_name_prefix_siblings() {
        let l = parse_listing(SAMPLE).unwrap();
        let root = Dataset::new("tank/data").unwrap();
        let names: Vec<_> = l.subtree(&root).map(|d| d.name.to_string()).collect();
        assert_eq!(names, ["tank/data", "tank/data/kid"]);
    }

    #[test]
    fn subtree_is_the_root_if_listed_and_every_name_below_it() {
        let l = parse_listing(SAMPLE).unwrap();
        let names: Vec<_> = l
            .subtree(&Dataset::new("tank").unwrap())
            .map(|d| d.name.to_string())
            .collect();
        assert_eq!(names, ["tank/data", "tank/data/kid", "tank/dataz"]);
        let gone = Dataset::new("tank/data/kid/none").unwrap();
        assert_eq!(l.subtree(&gone).count(), 0);
        let names: Vec<_> = l
            .subtree(&Dataset::new("tank/data/kid").unwrap())
            .map(|d| d.name.to_string())
            .collect();
        assert_eq!(names, ["tank/data/kid"]);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_listing("tank\tfilesystem\t1\n").is_err());
        assert!(parse_listing("tank@a\tsnapshot\tx\t1\t-\t-\t-\t-\t0\t1\n").is_err());
        assert!(parse_listing("tank;x\tfilesystem\t1\t1\toff\t-\t0\t-\t-\t-\n").is_err());
    }

    #[test]
    fn missing_roots_are_told_apart_from_other_errors() {
        assert_eq!(
            missing_from_stderr("cannot open 'tank/gone': dataset does not exist\n").unwrap(),
            ["tank/gone"]
        );
        assert!(missing_from_stderr("permission denied\n").is_err());
    }

    #[test]
    fn argv_lists_roots_recursively() {
        let argv = list_argv(&[Dataset::new("tank/a").unwrap()]);
        assert_eq!(argv[..3], ["zfs", "list", "-Hp"]);
        assert_eq!(argv.last().unwrap(), "tank/a");
        assert!(argv.contains(&"-r".to_string()));
        let only = list_argv_at(&[Dataset::new("tank/a").unwrap()], Depth::Only);
        assert!(only.windows(3).any(|w| w == ["-d", "0", "tank/a"]));
        assert!(!only.contains(&"-r".to_string()));
    }
}
