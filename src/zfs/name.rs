//! Validated dataset, snapshot and bookmark names.
//!
//! Every name zferry puts on a command line passes through these types first, so a
//! typo or a hostile string is refused before anything runs, with a message that
//! says which rule it broke.

use serde::{Deserialize, Serialize};
use std::fmt;

/// ZFS refuses names of 256 bytes or more (ZFS_MAX_DATASET_NAME_LEN includes the NUL).
const MAX_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ZFS name '{name}': {why}")]
pub struct NameError {
    /// The name as given.
    pub name: String,
    /// The rule it broke.
    pub why: &'static str,
}

fn err(name: &str, why: &'static str) -> NameError {
    NameError {
        name: name.to_string(),
        why,
    }
}

/// ZFS's own character set for name components (zfs_namecheck.c).
pub fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')
}

fn check_component(full: &str, comp: &str) -> Result<(), NameError> {
    if comp.is_empty() {
        return Err(err(
            full,
            "empty component (doubled, leading or trailing '/')",
        ));
    }
    if comp == "." || comp == ".." {
        return Err(err(full, "'.' and '..' are not allowed as components"));
    }
    if !comp.chars().all(valid_char) {
        return Err(err(
            full,
            "only letters, digits and - _ . : and space are allowed",
        ));
    }
    Ok(())
}

/// A filesystem or volume name such as `tank/data/home`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dataset(String);

impl Dataset {
    /// Validates `name` against ZFS's naming rules.
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.len() > MAX_NAME_LEN {
            return Err(err(name, "longer than 255 bytes"));
        }
        if name.contains(['@', '#', '%']) {
            return Err(err(name, "a dataset name has no '@', '#' or '%'"));
        }
        for comp in name.split('/') {
            check_component(name, comp)?;
        }
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(err(name, "a pool name starts with a letter"));
        }
        Ok(Dataset(name.to_string()))
    }

    /// The name as ZFS spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pool this dataset lives in.
    pub fn pool(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The parent dataset, or `None` for a pool's root.
    pub fn parent(&self) -> Option<Dataset> {
        self.0.rsplit_once('/').map(|(p, _)| Dataset(p.to_string()))
    }

    /// Every ancestor, nearest last: `a/b/c` gives `[a, a/b]`.
    pub fn ancestors(&self) -> Vec<Dataset> {
        self.ancestor_names()
            .map(|a| Dataset(a.to_string()))
            .collect()
    }

    /// The names of every ancestor, nearest last, without allocating.
    pub fn ancestor_names(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('/').map(|(i, _)| &self.0[..i])
    }

    /// True when `self` is `other` or lies below it.
    pub fn is_within(&self, other: &Dataset) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// The path of `self` below `root` (`None` when outside it, `""` when equal).
    pub fn relative_to<'a>(&'a self, root: &Dataset) -> Option<&'a str> {
        if !self.is_within(root) {
            return None;
        }
        Some(self.0[root.0.len()..].trim_start_matches('/'))
    }

    /// `self` with the relative path `rel` appended (`rel` may be empty).
    pub fn join(&self, rel: &str) -> Result<Dataset, NameError> {
        if rel.is_empty() {
            Ok(self.clone())
        } else {
            Dataset::new(&format!("{}/{}", self.0, rel))
        }
    }

    /// The snapshot `self@snap`.
    pub fn snapshot(&self, snap: &str) -> Result<Snapshot, NameError> {
        Snapshot::new(&format!("{}@{}", self.0, snap))
    }
}

impl TryFrom<String> for Dataset {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Dataset::new(&s)
    }
}

impl std::str::FromStr for Dataset {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Dataset::new(s)
    }
}

impl From<Dataset> for String {
    fn from(d: Dataset) -> String {
        d.0
    }
}

/// Maps keyed by `Dataset` can be searched by `str`, e.g. the range of names below a
/// dataset (`a/b/`), which is no valid dataset name itself. Order and hash are the
/// string's, as `Borrow` requires.
impl std::borrow::Borrow<str> for Dataset {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A snapshot (`ds@name`) or bookmark (`ds#name`): a point a stream can start from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Snapshot {
    dataset: Dataset,
    sep: char,
    name: String,
}

impl Snapshot {
    /// Validates a full snapshot (`@`) or bookmark (`#`) name.
    pub fn new(full: &str) -> Result<Self, NameError> {
        let Some(pos) = full.find(['@', '#']) else {
            return Err(err(full, "a snapshot name has the form dataset@name"));
        };
        if full.len() > MAX_NAME_LEN {
            return Err(err(full, "longer than 255 bytes"));
        }
        let dataset = Dataset::new(&full[..pos]).map_err(|e| err(full, e.why))?;
        let name = &full[pos + 1..];
        check_component(full, name)?;
        Ok(Snapshot {
            dataset,
            sep: full[pos..].chars().next().unwrap_or('@'),
            name: name.to_string(),
        })
    }

    /// The dataset the snapshot belongs to.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The part after `@` or `#`.
    pub fn short(&self) -> &str {
        &self.name
    }

    /// True for a bookmark (`#`).
    pub fn is_bookmark(&self) -> bool {
        self.sep == '#'
    }
}

impl TryFrom<String> for Snapshot {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Snapshot::new(&s)
    }
}

impl From<Snapshot> for String {
    fn from(s: Snapshot) -> String {
        s.to_string()
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.dataset, self.sep, self.name)
    }
}

/// Validates a hold tag (ZFS allows most text; zferry keeps to the name charset).
pub fn check_hold_tag(tag: &str) -> Result<(), NameError> {
    if tag.is_empty() || tag.len() > 255 {
        return Err(err(tag, "a hold tag is 1 to 255 bytes"));
    }
    if !tag.chars().all(valid_char) {
        return Err(err(tag, "hold tags use letters, digits and - _ . : only"));
    }
    // zfs would read it as an option (`zfs hold -r ...`).
    if tag.starts_with('-') {
        return Err(err(tag, "a hold tag may not start with '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["tank", "tank/data", "slow pool/x:y.z_-", "t/a/b/c"] {
            assert_eq!(Dataset::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        for (n, why) in [
            ("", "empty"),
            ("tank//x", "empty"),
            ("tank/", "empty"),
            ("/tank", "empty"),
            ("tank/../x", "'.'"),
            ("tank/x;rm -rf /", "letters"),
            ("tank/x\ny", "letters"),
            ("tank@snap", "no '@'"),
            ("1tank", "starts with a letter"),
            ("tank/$(id)", "letters"),
        ] {
            let e = Dataset::new(n).unwrap_err();
            assert!(e.why.contains(why), "{n:?}: {e}");
        }
        assert!(Dataset::new(&"a".repeat(256)).is_err());
    }

    #[test]
    fn snapshots_and_bookmarks() {
        let s = Snapshot::new("tank/a@zf-1").unwrap();
        assert_eq!(s.dataset().as_str(), "tank/a");
        assert_eq!(s.short(), "zf-1");
        assert!(!s.is_bookmark());
        let b = Snapshot::new("tank/a#bm").unwrap();
        assert!(b.is_bookmark());
        assert_eq!(b.to_string(), "tank/a#bm");
        assert!(Snapshot::new("tank/a").is_err());
        assert!(Snapshot::new("tank/a@").is_err());
        assert!(Snapshot::new("tank/a@b@c").is_err());
        assert!(Snapshot::new("tank/a@b'c").is_err());
    }

    #[test]
    fn paths() {
        let d = Dataset::new("tank/a/b").unwrap();
        let root = Dataset::new("tank/a").unwrap();
        assert_eq!(d.relative_to(&root), Some("b"));
        assert_eq!(root.relative_to(&root), Some(""));
        assert_eq!(
            Dataset::new("tank/ab").unwrap().relative_to(&root),
            None,
            "prefix of a component is not a parent"
        );
        assert_eq!(
            d.ancestors().iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            ["tank", "tank/a"]
        );
        assert_eq!(d.pool(), "tank");
    }

    const FORBIDDEN: [char; 12] = [
        '\'', '"', '$', '`', ';', '|', '&', '\n', '\\', '*', '<', '>',
    ];

    proptest! {
        #[test]
        fn valid_names_round_trip(comps in proptest::collection::vec("[a-zA-Z][a-zA-Z0-9_.:-]{0,12}", 1..6)) {
            let name = comps.join("/");
            let d = Dataset::new(&name).unwrap();
            prop_assert_eq!(d.as_str(), name.as_str());
            let s = d.snapshot("zf_1").unwrap();
            prop_assert_eq!(Snapshot::new(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn no_accepted_name_has_shell_metacharacters(s in ".{0,40}") {
            if let Ok(d) = Dataset::new(&s) {
                prop_assert!(!d.as_str().contains(FORBIDDEN));
            }
        }
    }
}
