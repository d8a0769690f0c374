//! argv builders: the only place that knows zfs's command-line syntax.
//!
//! They take validated names, return argv vectors and never touch a shell.

use super::name::{Dataset, Snapshot};
use std::collections::BTreeSet;

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// What a send stream covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendSpan {
    /// Everything up to `to`.
    Full {
        /// The snapshot sent.
        to: Snapshot,
    },
    /// From `from` (snapshot or bookmark) to `to`; `intermediates` sends every snapshot
    /// between them (`-I`), otherwise only `to` (`-i`).
    Incremental {
        /// The common base on both sides.
        from: Snapshot,
        /// The newest snapshot sent.
        to: Snapshot,
        /// `-I` rather than `-i`.
        intermediates: bool,
    },
    /// Continue an interrupted receive from its resume token.
    Resume {
        /// `receive_resume_token` of the target.
        token: String,
    },
}

/// The highest zstd level zferry uses: the highest zstd takes without `--ultra`,
/// which needs far more memory on both ends.
pub const ZSTD_MAX_LEVEL: u8 = 19;

/// A zstd level as zferry uses them (1 to [`ZSTD_MAX_LEVEL`]), from its digits.
pub fn zstd_level(digits: &str) -> Option<u8> {
    digits
        .parse::<u8>()
        .ok()
        .filter(|l| (1..=ZSTD_MAX_LEVEL).contains(l))
}

/// What the sending side pipes a plain stream through for wire compression at `level`.
pub fn zstd_compress(level: u8) -> Vec<String> {
    vec!["zstd".into(), "-c".into(), format!("-{level}")]
}

/// Asks whether the sending side has `zstd` before a compressed stream depends on it.
pub fn zstd_version() -> Vec<String> {
    argv(&["zstd", "-V"])
}

/// `zfs send` for `span`; `raw` keeps encrypted data encrypted (`-w`); `dry_run` only
/// estimates (`-nP`).
pub fn send(span: &SendSpan, raw: bool, dry_run: bool) -> Vec<String> {
    let mut a = argv(&["zfs", "send"]);
    if dry_run {
        a.push("-nP".into());
    }
    match span {
        SendSpan::Resume { token } => {
            // A token carries the original flags (raw included); adding -w is an error.
            a.push("-t".into());
            a.push(token.clone());
            return a;
        }
        SendSpan::Full { to } => {
            if raw {
                a.push("-w".into());
            }
            a.push(to.to_string());
        }
        SendSpan::Incremental {
            from,
            to,
            intermediates,
        } => {
            if raw {
                a.push("-w".into());
            }
            a.push(if *intermediates { "-I" } else { "-i" }.into());
            a.push(from.to_string());
            a.push(to.to_string());
        }
    }
    a
}

/// What a receive does to its target's `canmount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canmount {
    /// Set it to `noauto` (`-o canmount=noauto`), so the copy never mounts at boot: for a
    /// new dataset, and for one whose own `canmount` would let it mount.
    Noauto,
    /// Leave it: only for an incremental into a target whose own (`local`) `canmount` is
    /// already `noauto` or `off`. A stream's properties would replace that (measured in
    /// the lab), so this rests on the relay and the guard refusing every stream that
    /// carries them ([`crate::zfs::begin`]). `-o` costs a property update per received
    /// snapshot (~0.2 s each under TCG: a quarter of a 100-snapshot incremental).
    Kept,
}

/// `zfs receive` into `target`: not mounted now (`-u`, only root may mount on Linux),
/// resumable (`-s`), and never at boot either (see [`Canmount`]). Never `-F`: rolling
/// back is a separate, explicit step.
pub fn receive(target: &Dataset, canmount: Canmount) -> Vec<String> {
    let mut a = argv(&["zfs", "receive", "-u", "-s"]);
    if canmount == Canmount::Noauto {
        a.extend(argv(&["-o", "canmount=noauto"]));
    }
    a.push(target.to_string());
    a
}

/// argv asking which of `targets` have a `canmount` of their own (`local`); parsed by
/// [`parse_unmountable`].
pub fn get_local_canmount(targets: &[Dataset]) -> Vec<String> {
    let mut a = argv(&[
        "zfs",
        "get",
        "-Hp",
        "-s",
        "local",
        "-o",
        "name,value",
        "canmount",
    ]);
    a.extend(targets.iter().map(|t| t.to_string()));
    a
}

/// The targets [`get_local_canmount`] says keep themselves unmounted (`noauto` or
/// `off`). The host may be hostile: a line that is not `name<TAB>value` for a name
/// asked is an error.
pub fn parse_unmountable(out: &str, asked: &[Dataset]) -> Result<BTreeSet<Dataset>, String> {
    let mut kept = BTreeSet::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || format!("unexpected canmount line '{}'", line.escape_debug());
        let (name, value) = line.split_once('\t').ok_or_else(bad)?;
        let ds = asked.iter().find(|a| a.as_str() == name).ok_or_else(bad)?;
        match value {
            "noauto" | "off" => {
                kept.insert(ds.clone());
            }
            "on" => {}
            _ => return Err(bad()),
        }
    }
    Ok(kept)
}

/// Abort an interrupted resumable receive, discarding its partial state.
pub fn receive_abort(target: &Dataset) -> Vec<String> {
    argv(&["zfs", "receive", "-A", target.as_str()])
}

/// Create an unmounted placeholder parent; it inherits encryption from its own parent.
pub fn create_parent(ds: &Dataset) -> Vec<String> {
    argv(&["zfs", "create", "-u", "-o", "canmount=off", ds.as_str()])
}

/// Snapshot `root` and everything below it as `name`, atomically.
pub fn snapshot_recursive(root: &Dataset, name: &str) -> Vec<String> {
    argv(&["zfs", "snapshot", "-r", &format!("{root}@{name}")])
}

/// Destroy the snapshots of `ds` that `spec` names (`a,b%d`: a list, `%` a range) in
/// one command; `dry_run` only reports what would go and the space freed (`-nvp`).
/// Never a dataset, never `-r`.
pub fn destroy_snapshots(ds: &Dataset, spec: &str, dry_run: bool) -> Vec<String> {
    let mut a = argv(&["zfs", "destroy"]);
    if dry_run {
        a.push("-nvp".into());
    }
    a.push(format!("{ds}@{spec}"));
    a
}

/// The bytes `zfs destroy -nvp` says it would free (its `reclaim` line).
pub fn parse_reclaim(out: &str) -> Option<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("reclaim\t"))
        .find_map(|v| v.trim().parse().ok())
}

/// Place hold `tag` on `snap`.
pub fn hold(tag: &str, snap: &Snapshot) -> Vec<String> {
    hold_all(tag, std::slice::from_ref(snap))
}

/// Place hold `tag` on every one of `snaps` in one command. zfs holds them one by one
/// and goes on past one it cannot hold, exiting non-zero: not all or nothing.
pub fn hold_all(tag: &str, snaps: &[Snapshot]) -> Vec<String> {
    let mut a = argv(&["zfs", "hold", tag]);
    a.extend(snaps.iter().map(|s| s.to_string()));
    a
}

/// Release hold `tag` from `snap`.
pub fn release(tag: &str, snap: &Snapshot) -> Vec<String> {
    release_all(tag, std::slice::from_ref(snap))
}

/// Release hold `tag` from every one of `snaps` in one command (one by one, like
/// [`hold_all`]).
pub fn release_all(tag: &str, snaps: &[Snapshot]) -> Vec<String> {
    let mut a = argv(&["zfs", "release", tag]);
    a.extend(snaps.iter().map(|s| s.to_string()));
    a
}

/// List the holds on `snaps`.
pub fn holds(snaps: &[Snapshot]) -> Vec<String> {
    let mut a = argv(&["zfs", "holds", "-H"]);
    a.extend(snaps.iter().map(|s| s.to_string()));
    a
}

/// Roll `ds` back to `snap`, destroying later snapshots (`-r`).
pub fn rollback(snap: &Snapshot) -> Vec<String> {
    argv(&["zfs", "rollback", "-r", &snap.to_string()])
}

/// Destroy `ds` and everything below it.
pub fn destroy_recursive(ds: &Dataset) -> Vec<String> {
    argv(&["zfs", "destroy", "-r", ds.as_str()])
}

/// Every snapshot and bookmark of `ds` with its GUID (the guard's check of a token).
pub fn list_points(ds: &Dataset) -> Vec<String> {
    argv(&[
        "zfs",
        "list",
        "-Hp",
        "-t",
        "snapshot,bookmark",
        "-o",
        "name,guid",
        "-d",
        "1",
        ds.as_str(),
    ])
}

/// The GUID of one snapshot: the check after a receive, one value instead of a listing.
pub fn get_guid(snap: &Snapshot) -> Vec<String> {
    argv(&[
        "zfs",
        "get",
        "-Hp",
        "-o",
        "value",
        "guid",
        &snap.to_string(),
    ])
}

/// Parses [`get_guid`]'s output: exactly one line holding a decimal u64. The peer may
/// be hostile, so anything else is an error that quotes (a bounded part of) what came.
pub fn parse_guid(out: &str) -> Result<u64, String> {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    match (lines.next().map(str::trim), lines.next()) {
        (Some(v), None) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse()
            .map_err(|_| format!("GUID '{v}' does not fit in 64 bits")),
        _ => Err(format!(
            "expected one GUID, got '{}'",
            out.chars().take(80).collect::<String>().escape_debug()
        )),
    }
}

/// argv reading, in one call, the GUID of `snap` and the `snapshots_changed` of its
/// dataset: how zferry checked each copy before it checked them all in one listing by
/// name. Only the guard uses it now, to admit it from a zferry not yet upgraded.
pub fn get_guid_and_changed(snap: &Snapshot) -> Vec<String> {
    argv(&[
        "zfs",
        "get",
        "-Hp",
        "-o",
        "name,property,value",
        "guid,snapshots_changed",
        &snap.to_string(),
        snap.dataset().as_str(),
    ])
}

/// Parses the estimated size from `zfs send -nP` output (the `size` line).
pub fn parse_send_size(out: &str) -> Option<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("size\t"))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &str) -> Snapshot {
        Snapshot::new(n).unwrap()
    }

    #[test]
    fn send_variants() {
        let full = SendSpan::Full { to: s("t/a@1") };
        assert_eq!(send(&full, true, false), ["zfs", "send", "-w", "t/a@1"]);
        let inc = SendSpan::Incremental {
            from: s("t/a#1"),
            to: s("t/a@3"),
            intermediates: false,
        };
        assert_eq!(
            send(&inc, false, true),
            ["zfs", "send", "-nP", "-i", "t/a#1", "t/a@3"]
        );
        let res = SendSpan::Resume {
            token: "1-x".into(),
        };
        assert_eq!(send(&res, true, false), ["zfs", "send", "-t", "1-x"]);
    }

    #[test]
    fn receive_is_never_forced() {
        let d = Dataset::new("b/a").unwrap();
        let r = receive(&d, Canmount::Noauto);
        assert_eq!(
            r,
            ["zfs", "receive", "-u", "-s", "-o", "canmount=noauto", "b/a"]
        );
        assert_eq!(
            receive(&d, Canmount::Kept),
            ["zfs", "receive", "-u", "-s", "b/a"]
        );
    }

    #[test]
    fn only_asked_targets_that_keep_themselves_unmounted_are_kept() {
        let asked = [
            Dataset::new("b/a").unwrap(),
            Dataset::new("b/a/c").unwrap(),
            Dataset::new("b/d").unwrap(),
        ];
        assert_eq!(
            get_local_canmount(&asked[..2]).join(" "),
            "zfs get -Hp -s local -o name,value canmount b/a b/a/c"
        );
        let kept = parse_unmountable("b/a\tnoauto\nb/a/c\ton\nb/d\toff\n", &asked).unwrap();
        assert_eq!(kept, BTreeSet::from([asked[0].clone(), asked[2].clone()]));
        assert_eq!(parse_unmountable("", &asked), Ok(BTreeSet::new()));
        for bad in [
            "b/other\tnoauto\n",
            "b/a noauto\n",
            "b/a\tnoauto\textra\n",
            "b/a\tmaybe\n",
            "b/a/\tnoauto\n",
        ] {
            assert!(parse_unmountable(bad, &asked).is_err(), "{bad:?} was read");
        }
    }

    #[test]
    fn a_guid_is_one_decimal_u64_and_nothing_else() {
        assert_eq!(
            get_guid(&s("b/a@1")),
            ["zfs", "get", "-Hp", "-o", "value", "guid", "b/a@1"]
        );
        assert_eq!(
            parse_guid("12345678901234567890\n"),
            Ok(12345678901234567890)
        );
        for bad in [
            "",
            "-",
            "-1\n",
            "+5\n",
            "0x10\n",
            "1 2\n",
            "1\n2\n",
            "18446744073709551616\n",
            "guid\t1\n",
        ] {
            assert!(parse_guid(bad).is_err(), "{bad:?} was read as a GUID");
        }
    }

    #[test]
    fn parses_estimates() {
        let out = "full\tt/a@1\t123\nsize\t123\n";
        assert_eq!(parse_send_size(out), Some(123));
        let inc = "incremental\ta\tt/a@2\t10\nincremental\tb\tt/a@3\t20\nsize\t30\n";
        assert_eq!(parse_send_size(inc), Some(30));
        assert_eq!(parse_send_size("garbage"), None);
    }
}
