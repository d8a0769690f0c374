//! Delegations that newer OpenZFS added, and what an older host grants instead.
//!
//! The roles ask for the narrowest delegation (`send:raw`, `receive:append`); a host whose
//! kernel module predates a name refuses it. With `older_zfs: fallback` the `zfs_allow`
//! module grants the older, wider permission instead and says so in a warning, so a mixed
//! site converges while nobody is left thinking the narrow one is in force.

use std::collections::BTreeSet;
use std::fmt;

/// An OpenZFS release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Each newer name, the first release that knows it, and the older permission that covers
/// what it allows (and more). `receive:append` was merged 2025-01-31 (openzfs#17015), after
/// 2.3.0 was tagged, so it first shipped in 2.3.1; the lab's 2.3.2 enforces it.
/// `send:raw`/`send:encrypted` are 2.4.0's (the lab's 2.3.2 refuses them, 2.4.4 enforces them).
const NEWER: &[(&str, Version, &str)] = &[
    ("send:raw", Version(2, 4, 0), "send"),
    ("send:encrypted", Version(2, 4, 0), "send"),
    ("receive:append", Version(2, 3, 1), "receive"),
];

/// `zfs version` → the kernel module's release (it is the module that enforces a
/// delegation): the `zfs-kmod-X.Y.Z[-…]` line. `None` when there is no such line.
pub fn kmod_version(zfs_version_stdout: &str) -> Option<Version> {
    let line = zfs_version_stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("zfs-kmod-"))?;
    let release = line.split(['-', '_']).next()?;
    let mut parts = release.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next()??, parts.next()??);
    let patch = parts.next().unwrap_or(Some(0))?;
    Some(Version(major, minor, patch))
}

/// One replacement made for an older host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The name asked for (e.g. `send:raw`).
    pub wanted: &'static str,
    /// What was granted instead (e.g. `send`).
    pub granted: &'static str,
    /// The first release that knows `wanted`.
    pub since: Version,
}

impl Fallback {
    /// The warning the module shows: what was granted, and what that lets a key do.
    pub fn warning(&self, host: Version) -> String {
        let wider = match self.granted {
            "send" => "also allows sends that are not raw (plaintext of a dataset whose key is loaded)",
            _ => "also allows forced receives (receive -F), which can destroy snapshots and datasets on the target",
        };
        format!(
            "OpenZFS {host} on this host does not know the delegation {} (new in {}); granted {} instead, which {wider}. Upgrade OpenZFS to {} or later for the narrower delegation.",
            self.wanted, self.since, self.granted, self.since
        )
    }
}

/// `perms` with every name `host` does not know replaced by its older equivalent, and the
/// replacements made (each once).
pub fn for_host(perms: &BTreeSet<String>, host: Version) -> (BTreeSet<String>, Vec<Fallback>) {
    let mut out = BTreeSet::new();
    let mut made = Vec::new();
    for p in perms {
        match NEWER
            .iter()
            .find(|(name, since, _)| p == name && host < *since)
        {
            Some(&(wanted, since, granted)) => {
                out.insert(granted.to_string());
                made.push(Fallback {
                    wanted,
                    granted,
                    since,
                });
            }
            None => {
                out.insert(p.clone());
            }
        }
    }
    (out, made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn reads_the_kernel_module_line_of_real_outputs() {
        // The lab's two images, as `zfs version` printed them.
        let v23 = "zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n";
        let v24 = "zfs-2.4.4-1~bpo13+1\nzfs-kmod-2.4.4-1~bpo13+1\n";
        assert_eq!(kmod_version(v23), Some(Version(2, 3, 2)));
        assert_eq!(kmod_version(v24), Some(Version(2, 4, 4)));
        // Userland newer than the loaded module: the module decides.
        let mixed = "zfs-2.4.0-1\nzfs-kmod-2.2.7-1\n";
        assert_eq!(kmod_version(mixed), Some(Version(2, 2, 7)));
        assert_eq!(kmod_version("zfs-kmod-2.4\n"), Some(Version(2, 4, 0)));
        assert_eq!(kmod_version("zfs-2.3.2-1\n"), None);
        assert_eq!(kmod_version("zfs-kmod-two\n"), None);
        assert_eq!(kmod_version(""), None);
    }

    #[test]
    fn older_hosts_get_the_wider_names_and_a_warning_each() {
        let want = set(&["hold", "release", "send:raw", "receive:append"]);
        let (got, made) = for_host(&want, Version(2, 3, 2));
        assert_eq!(got, set(&["hold", "release", "send", "receive:append"]));
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].wanted, "send:raw");
        let w = made[0].warning(Version(2, 3, 2));
        assert!(
            w.contains("OpenZFS 2.3.2") && w.contains("granted send instead"),
            "{w}"
        );

        let (got, made) = for_host(&want, Version(2, 2, 7));
        assert_eq!(got, set(&["hold", "release", "send", "receive"]));
        assert_eq!(made.len(), 2);
        let receive = made.iter().find(|f| f.wanted == "receive:append").unwrap();
        assert!(receive.warning(Version(2, 2, 7)).contains("receive -F"));
    }

    #[test]
    fn current_hosts_keep_every_name() {
        let want = set(&["send:raw", "send:encrypted", "receive:append", "hold"]);
        let (got, made) = for_host(&want, Version(2, 4, 0));
        assert_eq!(got, want);
        assert!(made.is_empty());
    }

    #[test]
    fn both_send_names_fold_into_one_send() {
        let (got, made) = for_host(&set(&["send:raw", "send:encrypted"]), Version(2, 3, 2));
        assert_eq!(got, set(&["send"]));
        assert_eq!(made.len(), 2);
    }
}
