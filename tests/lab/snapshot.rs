//! zferry's own snapshots on real pools: one atomic `zfs snapshot -r` per tree with every
//! period due, as a delegated user; nothing when current; children made later covered.

use crate::common::{lab, USER};

/// (name, createtxg) of the snapshots of `ds` alone.
fn snaps(vm: &str, ds: &str) -> Vec<(String, String)> {
    lab()
        .ok(
            vm,
            &format!("zfs list -Hp -t snapshot -d 1 -s createtxg -o name,createtxg {ds}"),
        )
        .lines()
        .map(|l| {
            let (n, t) = l.split_once('\t').unwrap();
            (n.split_once('@').unwrap().1.to_string(), t.to_string())
        })
        .collect()
}

#[test]
fn snapshots_are_taken_atomically_per_tree_and_only_when_due() {
    let lab = lab();
    let c = "sn1c";
    lab.pool("client", c);
    lab.ok(
        "client",
        &format!(
            "zfs create {c}/data; zfs create {c}/data/kid; zfs allow -u {USER} snapshot {c}/data"
        ),
    );
    let cfg = format!("/home/{USER}/{c}.toml");
    lab.ok_as(
        "client",
        USER,
        &format!(
            "cat > {cfg} <<EOF
[snapshots.data]
datasets = [\"{c}/data\"]
periods = [\"hourly\", \"daily\"]
EOF"
        ),
    );
    let run = || lab.sh_as("client", USER, &format!("zferry snapshot --config {cfg}"));
    let first = run();
    assert_eq!(first.code, Some(0), "{first:?}");
    let root = snaps("client", &format!("{c}/data"));
    let kid = snaps("client", &format!("{c}/data/kid"));
    assert_eq!(root.len(), 2, "{root:?}");
    assert_eq!(
        root, kid,
        "same names, same txg: one atomic command for the tree"
    );
    let names: Vec<&str> = root.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("_hourly")) && names.iter().any(|n| n.ends_with("_daily")),
        "{names:?}"
    );
    for n in &names {
        assert!(
            n.starts_with("autosnap_")
                && n.len()
                    == "autosnap_2026-11-30_12:34:56_".len() + n.rsplit('_').next().unwrap().len(),
            "sanoid's format: {n}"
        );
    }

    // Current: nothing is taken, and it says so.
    let again = run();
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("nothing due"), "{again:?}");
    assert_eq!(snaps("client", &format!("{c}/data")).len(), 2);

    // A child made later is in the next snapshot of the tree.
    let hourly = names.iter().find(|n| n.ends_with("_hourly")).unwrap();
    lab.ok(
        "client",
        &format!("zfs create {c}/data/later; zfs destroy -r {c}/data@{hourly}"),
    );
    let third = run();
    assert_eq!(third.code, Some(0), "{third:?}");
    let later = snaps("client", &format!("{c}/data/later"));
    assert_eq!(later.len(), 1, "{later:?}");
    assert!(later[0].0.ends_with("_hourly"), "{later:?}");
    assert_eq!(snaps("client", &format!("{c}/data")).len(), 2);

    // Without the delegation, a due snapshot fails loudly with the hint.
    lab.ok(
        "client",
        &format!(
            "zfs unallow -u {USER} snapshot {c}/data; zfs destroy -r {c}/data@{}",
            later[0].0
        ),
    );
    let denied = run();
    assert_eq!(denied.code, Some(1), "{denied:?}");
    assert!(denied.stderr.contains("'snapshot' delegated"), "{denied:?}");
}

/// Snapshot names of `ds` alone, oldest first.
fn names(vm: &str, ds: &str) -> Vec<String> {
    snaps(vm, ds).into_iter().map(|(n, _)| n).collect()
}

fn hourly(i: u32) -> String {
    format!("autosnap_2026-11-01_{i:02}:00:00_hourly")
}

/// Writes a little and takes `hourly(i)` on the client for each `i`.
fn take(c: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        lab().write_and_snap("client", &format!("{c}/data"), &hourly(i), 1);
    }
}

/// A prune policy on `vm` for `root`, keeping one hourly (plus `extra` TOML lines);
/// returns the config path.
fn prune_config(vm: &str, name: &str, root: &str, extra: &str) -> String {
    let cfg = format!("/home/{USER}/{name}.toml");
    lab().ok_as(
        vm,
        USER,
        &format!(
            "cat > {cfg} <<EOF
[prune.copies]
datasets = [\"{root}\"]
keep = {{ hourly = 1 }}
{extra}
EOF"
        ),
    );
    cfg
}

#[test]
fn pruning_keeps_what_replication_needs_on_every_tier() {
    use crate::common::zferry::{remote, zferry};
    use crate::common::{DST_PERMS, SRC_PERMS};
    let lab = lab();
    let (c, s, o) = ("pr1c", "pr1s", "pr1o");
    lab.pool("client", c);
    lab.pool("server", s);
    lab.pool("offsite", o);
    lab.encrypted("client", &format!("{c}/data"));
    lab.allow("client", SRC_PERMS, c);
    lab.create_allowed(
        "server",
        &format!("{s}/backup"),
        &format!("{DST_PERMS},send,destroy"),
    );
    lab.create_allowed(
        "offsite",
        &format!("{o}/off"),
        &format!("{DST_PERMS},destroy"),
    );
    let pull = format!(
        "pull {} --name client --datasets {c}/data --destination {s}/backup --job-name pr-pull",
        remote(lab, "client")
    );
    let push = format!(
        "push {} --datasets {s}/backup/client --destination {o}/off --strip-prefix {s}/backup --job-name pr-push",
        remote(lab, "offsite")
    );
    let copy = format!("{s}/backup/client/{c}/data");
    let off = format!("{o}/off/client/{c}/data");

    // @1..@3 reach the offsite; @4..@6 reach only the server. A manual snapshot too.
    take(c, 1..=2);
    lab.write_and_snap("client", &format!("{c}/data"), "manual-keep", 1);
    take(c, 3..=3);
    for args in [&pull, &push] {
        let r = zferry(lab, "server", args);
        assert_eq!(r.code, Some(0), "{r:?}");
    }
    take(c, 4..=6);
    let r = zferry(lab, "server", &pull);
    assert_eq!(r.code, Some(0), "{r:?}");

    // Server tier, keep one hourly: @1 and @2 go; @3 is the push base (held), @4 and
    // @5 have not reached the offsite, @6 is the newest; the manual one is not ours.
    let cfg = prune_config("server", "pr1s", &format!("{s}/backup"), "");
    let dry = lab.sh_as(
        "server",
        USER,
        &format!("zferry prune --config {cfg} --dry-run --json"),
    );
    assert_eq!(dry.code, Some(0), "{dry:?}");
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let entry = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["dataset"] == copy.as_str())
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(
        entry["destroy"],
        serde_json::json!([hourly(1), hourly(2)]),
        "{plan}"
    );
    assert!(entry["reclaimed"].as_u64().is_some_and(|b| b > 0), "{plan}");
    assert_eq!(
        names("server", &copy).len(),
        7,
        "a dry run destroys nothing"
    );
    let real = lab.sh_as("server", USER, &format!("zferry prune --config {cfg}"));
    assert_eq!(real.code, Some(0), "{real:?}");
    let mut want: Vec<String> = vec!["manual-keep".into()];
    want.extend((3..=6).map(hourly));
    assert_eq!(names("server", &copy), want);

    // The next replication is still incremental, on both hops.
    take(c, 7..=7);
    let r = zferry(lab, "server", &pull);
    assert_eq!(r.action(&format!("{c}/data")), "incremental", "{r:?}");
    let r = zferry(lab, "server", &push);
    assert_eq!(r.action(&copy), "incremental", "{r:?}");

    // Offsite tier prunes its own copies: only the push base survives of the hourlies,
    // and this policy opts the manual snapshots in by prefix (keep none), so it goes too.
    let ocfg = prune_config(
        "offsite",
        "pr1o",
        &format!("{o}/off"),
        "keep_prefix = { \"manual-\" = 0 }",
    );
    let pruned = lab.sh_as("offsite", USER, &format!("zferry prune --config {ocfg}"));
    assert_eq!(pruned.code, Some(0), "{pruned:?}");
    assert_eq!(names("offsite", &off), [hourly(7)]);
    take(c, 8..=8);
    for (args, ds) in [(&pull, format!("{c}/data")), (&push, copy.clone())] {
        let r = zferry(lab, "server", args);
        assert_eq!(r.action(&ds), "incremental", "{r:?}");
    }
    assert_eq!(
        lab.guids("offsite", &off).last(),
        lab.guids("client", &format!("{c}/data")).last()
    );
}
