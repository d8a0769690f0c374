//! The replication engine on real pools: zferry runs as an unprivileged user with only
//! delegated permissions, and every assertion reads the real state of the target.

use crate::common::zferry::{remote, zferry, Run};
use crate::common::{lab, Lab, DST_PERMS, SRC_PERMS, USER};

/// client pool `c` with encrypted `c/data` (+ child `kid`) and plain `c/plain`;
/// server pool `s` with an empty `s/backup` destination.
fn setup_pull(lab: &Lab, c: &str, s: &str) {
    lab.pool("client", c);
    lab.pool("server", s);
    lab.encrypted("client", &format!("{c}/data"));
    lab.ok(
        "client",
        &format!("zfs create {c}/data/kid; zfs create {c}/plain"),
    );
    for ds in ["data", "data/kid", "plain"] {
        lab.write_and_snap("client", &format!("{c}/{ds}"), "s1", 2);
        lab.write_and_snap("client", &format!("{c}/{ds}"), "s2", 1);
    }
    lab.allow("client", SRC_PERMS, c);
    lab.create_allowed("server", &format!("{s}/backup"), DST_PERMS);
}

fn pull_args(lab: &Lab, c: &str, s: &str, datasets: &str) -> String {
    format!(
        "pull {} --name client --datasets {datasets} --destination {s}/backup --job-name t-{c}",
        remote(lab, "client")
    )
}

#[test]
fn pull_full_then_noop_then_one_incremental() {
    let lab = lab();
    let (c, s) = ("e1c", "e1s");
    setup_pull(lab, c, s);
    let args = pull_args(lab, c, s, &format!("{c}/data {c}/plain"));

    let r = zferry(lab, "server", &args);
    assert_eq!(r.code, Some(0), "{r:?}");
    for ds in ["data", "data/kid", "plain"] {
        let src = format!("{c}/{ds}");
        let dst = format!("{s}/backup/client/{c}/{ds}");
        assert_eq!(r.action(&src), "full", "{r:?}");
        assert_eq!(
            lab.guids("server", &dst),
            lab.guids("client", &src),
            "{dst}"
        );
    }
    let enc = format!("{s}/backup/client/{c}/data");
    assert_eq!(
        lab.prop("server", &enc, "keystatus"),
        "unavailable",
        "raw by default for encrypted"
    );
    assert_eq!(
        lab.prop("server", &format!("{enc}/kid"), "encryptionroot"),
        format!("{enc}/kid")
    );
    assert_eq!(
        lab.prop(
            "server",
            &format!("{s}/backup/client/{c}/plain"),
            "encryption"
        ),
        "off"
    );
    // Missing parents were created unmounted placeholders.
    assert_eq!(
        lab.prop("server", &format!("{s}/backup/client"), "canmount"),
        "off"
    );

    let again = zferry(lab, "server", &args);
    assert_eq!(again.code, Some(0), "{again:?}");
    for ds in ["data", "data/kid", "plain"] {
        let d = again.dataset(&format!("{c}/{ds}"));
        assert_eq!(d["action"], "up_to_date", "{again:?}");
        assert_eq!(d["bytes"], 0);
    }

    lab.write_and_snap("client", &format!("{c}/data"), "s3", 1);
    lab.write_and_snap("client", &format!("{c}/data"), "s4", 1);
    let inc = zferry(lab, "server", &format!("-v {args}"));
    assert_eq!(inc.code, Some(0), "{inc:?}");
    let d = inc.dataset(&format!("{c}/data"));
    assert_eq!(d["action"], "incremental");
    assert_eq!(d["snapshots"], serde_json::json!(["s3", "s4"]));
    // One -I stream carried both snapshots.
    assert_eq!(
        inc.stderr.matches("zfs send -w -I").count(),
        1,
        "{}",
        inc.stderr
    );
    assert_eq!(
        lab.guids("server", &enc),
        lab.guids("client", &format!("{c}/data"))
    );
    assert_eq!(inc.action(&format!("{c}/plain")), "up_to_date");
}

#[test]
fn push_raw_with_strip_prefix_keeps_offsite_locked() {
    let lab = lab();
    let (c, s, o) = ("e2c", "e2s", "e2o");
    setup_pull(lab, c, s);
    let r = zferry(lab, "server", &pull_args(lab, c, s, &format!("{c}/data")));
    assert_eq!(r.code, Some(0), "{r:?}");

    lab.allow("server", SRC_PERMS, &format!("{s}/backup"));
    lab.pool("offsite", o);
    lab.create_allowed("offsite", &format!("{o}/offsite"), DST_PERMS);
    let push = format!(
        "push {} --datasets {s}/backup/client --destination {o}/offsite --strip-prefix {s}/backup --job-name off-{o}",
        remote(lab, "offsite")
    );
    let p = zferry(lab, "server", &push);
    assert_eq!(p.code, Some(0), "{p:?}");
    let off = format!("{o}/offsite/client/{c}/data");
    assert_eq!(lab.prop("offsite", &off, "keystatus"), "unavailable");
    assert_eq!(
        lab.prop("offsite", &format!("{off}/kid"), "keystatus"),
        "unavailable"
    );
    assert_eq!(
        lab.guids("offsite", &off),
        lab.guids("client", &format!("{c}/data"))
    );
    // The placeholder parents (client, client/e2c) have no snapshots and are skipped
    // with a note, not a warning: they are skipped every run.
    let parent = p.dataset(&format!("{s}/backup/client"));
    assert_eq!(parent["action"], "skipped", "{p:?}");
    assert_eq!(parent["warnings"], serde_json::json!([]), "{p:?}");
    assert!(
        parent["note"]
            .as_str()
            .is_some_and(|n| n.contains("only its children are replicated")),
        "{p:?}"
    );
    let again = zferry(lab, "server", &push);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(
        again.action(&format!("{s}/backup/client/{c}/data")),
        "up_to_date"
    );

    // A dataset outside the strip prefix is refused before anything runs.
    let bad = zferry(
        lab,
        "server",
        &format!(
            "push {} --datasets {c}/other --destination {o}/offsite --strip-prefix {s}/backup",
            remote(lab, "offsite")
        ),
    );
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(
        bad.stderr.contains("not under strip_prefix"),
        "{}",
        bad.stderr
    );
}

#[test]
fn same_name_different_guid_is_refused_and_nothing_changes() {
    let lab = lab();
    let (c, s) = ("e3c", "e3s");
    setup_pull(lab, c, s);
    // A target with a snapshot named like the source's, but made locally.
    let dst = format!("{s}/backup/client/{c}/plain");
    lab.ok(
        "server",
        &format!("zfs create -p {dst}; zfs snapshot {dst}@s1"),
    );
    let before = lab.guids("server", &dst);
    let r = zferry(lab, "server", &pull_args(lab, c, s, &format!("{c}/plain")));
    assert_eq!(r.code, Some(1), "{r:?}");
    let d = r.dataset(&format!("{c}/plain"));
    assert_eq!(d["action"], "refused");
    let msg = d["error"].as_str().unwrap();
    assert!(
        msg.contains("no snapshot in common")
            && msg.contains("@s1")
            && msg.contains("destroy_target_and_resend"),
        "{msg}"
    );
    assert_eq!(lab.guids("server", &dst), before, "target untouched");
}

#[test]
fn one_broken_dataset_does_not_stop_the_others() {
    let lab = lab();
    let (c, s) = ("e4c", "e4s");
    setup_pull(lab, c, s);
    lab.ok("client", &format!("zfs create {c}/empty"));
    let r = zferry(
        lab,
        "server",
        &pull_args(lab, c, s, &format!("{c}/gone {c}/empty {c}/plain")),
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.action(&format!("{c}/gone")), "refused");
    assert!(r.dataset(&format!("{c}/gone"))["error"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    assert_eq!(r.action(&format!("{c}/empty")), "skipped");
    assert!(
        r.dataset(&format!("{c}/empty"))["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("has no snapshots yet")),
        "a dataset that is never snapshotted is a warning: {r:?}"
    );
    assert_eq!(r.action(&format!("{c}/plain")), "full");
    assert_eq!(
        lab.guids("server", &format!("{s}/backup/client/{c}/plain")),
        lab.guids("client", &format!("{c}/plain"))
    );
}

#[test]
fn parents_under_an_encrypted_root_are_encrypted() {
    let lab = lab();
    let (c, s) = ("e5c", "e5s");
    setup_pull(lab, c, s);
    // An encrypted backup root with its key loaded, as on the backup server.
    lab.encrypted("server", &format!("{s}/enc"));
    lab.allow("server", DST_PERMS, &format!("{s}/enc"));
    let r = zferry(
        lab,
        "server",
        &format!(
            "pull {} --name client --datasets {c}/plain --destination {s}/enc --job-name enc-{c}",
            remote(lab, "client")
        ),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    for parent in ["client", &format!("client/{c}")] {
        let p = format!("{s}/enc/{parent}");
        assert_eq!(
            lab.prop("server", &p, "encryption"),
            "aes-256-gcm",
            "{p} never unencrypted"
        );
        assert_eq!(lab.prop("server", &p, "encryptionroot"), format!("{s}/enc"));
    }
    // A plain (non-raw) stream received under it inherits the root's encryption.
    assert_eq!(
        lab.prop("server", &format!("{s}/enc/client/{c}/plain"), "encryption"),
        "aes-256-gcm"
    );

    // A missing destination root is an error naming it; zferry does not create it.
    let r = zferry(
        lab,
        "server",
        &format!(
            "pull {} --datasets {c}/plain --destination {s}/nope --job-name nope-{c}",
            remote(lab, "client")
        ),
    );
    assert_eq!(r.code, Some(1));
    assert!(
        r.report["error"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{r:?}"
    );
    assert!(lab.sh("server", &format!("zfs list {s}/nope")).code != Some(0));
}

#[test]
fn bookmark_serves_as_base_after_the_snapshot_is_pruned() {
    let lab = lab();
    let (c, s) = ("e6c", "e6s");
    setup_pull(lab, c, s);
    let args = pull_args(lab, c, s, &format!("{c}/plain"));
    assert_eq!(zferry(lab, "server", &args).code, Some(0));
    // Retention keeps a bookmark of the base but destroys the snapshot (root can).
    let src = format!("{c}/plain");
    lab.ok(
        "client",
        &format!("zfs bookmark {src}@s2 {src}#s2; zfs release zferry:t-{c} {src}@s2; zfs destroy {src}@s2"),
    );
    lab.write_and_snap("client", &src, "s3", 1);
    lab.write_and_snap("client", &src, "s4", 1);
    let r = zferry(lab, "server", &format!("-v {args}"));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.action(&src), "incremental");
    assert!(
        r.stderr
            .contains(&format!("zfs send -i '{src}#s2' {src}@s3")),
        "{}",
        r.stderr
    );
    let dst = format!("{s}/backup/client/{src}");
    let names: Vec<String> = lab
        .guids("server", &dst)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["s1", "s2", "s3", "s4"]);
    let src_guids = lab.guids("client", &src);
    assert_eq!(lab.guids("server", &dst)[2..], src_guids[1..]);
}

#[test]
fn a_hold_that_cannot_be_placed_is_a_warning_not_a_failure() {
    let lab = lab();
    let (c, s) = ("e7c", "e7s");
    setup_pull(lab, c, s);
    // A target root without hold/release delegated.
    lab.create_allowed(
        "server",
        &format!("{s}/nohold"),
        "create,mount,canmount,receive",
    );
    let r = zferry(
        lab,
        "server",
        &format!(
            "pull {} --name client --datasets {c}/plain --destination {s}/nohold --job-name nh-{c}",
            remote(lab, "client")
        ),
    );
    assert_eq!(r.code, Some(0), "data arrived, so the run succeeds: {r:?}");
    let d = r.dataset(&format!("{c}/plain"));
    assert_eq!(d["action"], "full");
    let w = d["warnings"].to_string();
    assert!(w.contains("hold") && w.contains("permission denied"), "{w}");
    assert_eq!(
        lab.guids("server", &format!("{s}/nohold/client/{c}/plain")),
        lab.guids("client", &format!("{c}/plain"))
    );
}

#[test]
fn jobs_to_the_same_host_share_one_ssh_connection() {
    let lab = lab();
    let (c, s) = ("e9c", "e9s");
    setup_pull(lab, c, s);
    let port = lab.port("client");
    let job = |name: &str, ds: &str| {
        format!("[jobs.{name}]\nkind = \"pull\"\nhost = \"10.0.2.2\"\nport = {port}\nuser = \"{USER}\"\nname = \"client\"\ndatasets = [\"{c}/{ds}\"]\ndestination = \"{s}/backup\"\n")
    };
    let config = format!("/home/{USER}/{c}.toml");
    lab.ok_as(
        "server",
        USER,
        &format!(
            "cat > {config} <<'EOF'\nstate_dir = \"/home/{USER}/state-{c}\"\n{}{}EOF",
            job("e9-data", "data"),
            job("e9-plain", "plain")
        ),
    );
    let r = zferry(lab, "server", &format!("-v run --config {config}"));
    assert_eq!(r.code, Some(0), "{r:?}");
    let jobs = r.report.as_array().expect("one report per job");
    assert_eq!(jobs.len(), 2, "{r:?}");
    for j in jobs {
        assert_eq!(j["error"], serde_json::Value::Null, "{j}");
        assert!(
            j["datasets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["action"] == "full"),
            "{j}"
        );
    }
    assert_eq!(
        lab.guids("server", &format!("{s}/backup/client/{c}/plain")),
        lab.guids("client", &format!("{c}/plain"))
    );
    let connects = r.stderr.matches("ssh: connecting to").count();
    assert_eq!(
        connects, 1,
        "one control connection for both jobs:\n{}",
        r.stderr
    );
}

#[test]
fn bwlimit_paces_the_stream_in_the_relay() {
    let lab = lab();
    let (c, s) = ("e10c", "e10s");
    lab.pool("client", c);
    lab.pool("server", s);
    lab.run_ok("client", &["zfs", "create", &format!("{c}/data")]);
    lab.write_and_snap("client", &format!("{c}/data"), "s1", 4);
    lab.allow("client", SRC_PERMS, c);
    lab.create_allowed("server", &format!("{s}/backup"), DST_PERMS);
    // 256 KiB/s: the ~4 MiB stream needs 16 s or more, several times what it takes here
    // unpaced, so a run this long shows the relay paced it (a busy machine only adds).
    let r = zferry(
        lab,
        "server",
        &format!(
            "-v {} --bwlimit 256K",
            pull_args(lab, c, s, &format!("{c}/data"))
        ),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let src = format!("{c}/data");
    assert_eq!(r.action(&src), "full", "{r:?}");
    assert_eq!(
        r.report["bwlimit"],
        256 * 1024,
        "the report carries the limit"
    );
    let d = r.dataset(&src);
    let (bytes, ms) = (
        d["bytes"].as_u64().unwrap(),
        d["duration_ms"].as_u64().unwrap(),
    );
    assert!(bytes > 4 << 20, "{d}");
    let floor_ms = (bytes - (256 << 10)) * 1000 / (256 << 10);
    assert!(
        ms >= floor_ms,
        "{bytes} bytes in {ms} ms: faster than 256 KiB/s"
    );
    assert!(
        r.stderr.contains("at most 256.0 KiB/s (bwlimit)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        lab.guids("server", &format!("{s}/backup/client/{src}")),
        lab.guids("client", &src)
    );
}

#[test]
fn parallel_datasets_match_a_sequential_run_and_a_failure_stays_its_own() {
    let lab = lab();
    let (c, s) = ("e11c", "e11s");
    lab.pool("client", c);
    lab.pool("server", s);
    let kids: Vec<String> = (0..6).map(|i| format!("{c}/t/k{i}")).collect();
    // Every dataset gets two snapshots, taken at once over the tree; `u` too, but only
    // `t` is delegated: sending `u` fails (permission denied), a real failure of one
    // dataset while the others run.
    lab.script(
        "client",
        r#"t="$1"; u="$2"; shift 2
           zfs create "$t"; zfs create "$u"
           for k in "$@"; do zfs create "$k"; done
           for s in s1 s2; do
             for d in "$t" "$u" "$@"; do head -c 65536 /dev/urandom > "/$d/$s.bin"; done
             zfs snapshot -r "$t@$s"; zfs snapshot "$u@$s"
           done
           zfs allow -u zferry send,hold,release "$t""#,
        &[&[format!("{c}/t"), format!("{c}/u")], kids.as_slice()]
            .concat()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let pull = |dest: &str, parallel: usize| {
        zferry(
            lab,
            "server",
            &format!(
                "-v pull {} --name client --datasets {c}/t {c}/u --destination {s}/{dest} --job-name {dest} --parallel {parallel}",
                remote(lab, "client")
            ),
        )
    };
    let mut runs = Vec::new();
    for (dest, parallel) in [("seq", 1), ("par", 4)] {
        lab.create_allowed("server", &format!("{s}/{dest}"), DST_PERMS);
        let r = pull(dest, parallel);
        assert_eq!(r.code, Some(1), "u failed: {r:?}");
        assert!(
            r.stderr
                .contains(&format!("8 datasets, {parallel} at once")),
            "{}",
            r.stderr
        );
        runs.push((dest, r));
    }
    let outcome = |r: &crate::common::zferry::Run| -> Vec<(String, String, bool)> {
        r.report["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["source"].as_str().unwrap().to_string(),
                    d["action"].as_str().unwrap().to_string(),
                    d["error"].is_string(),
                )
            })
            .collect()
    };
    let (seq, par) = (outcome(&runs[0].1), outcome(&runs[1].1));
    assert_eq!(seq, par, "the same reports, in the same order");
    for (src, action, failed) in &par {
        let u = src == &format!("{c}/u");
        assert_eq!(*failed, u, "only u fails: {src} {action}");
        assert_eq!(action, if u { "failed" } else { "full" }, "{src}");
    }
    assert!(
        runs[1].1.dataset(&format!("{c}/u"))["error"]
            .as_str()
            .is_some_and(|e| e.contains("permission denied")),
        "{:?}",
        runs[1].1
    );
    for src in [format!("{c}/t"), format!("{c}/u")].iter().chain(&kids) {
        let u = src == &format!("{c}/u");
        let want = if u { vec![] } else { lab.guids("client", src) };
        for (dest, _) in &runs {
            let copy = format!("{s}/{dest}/client/{src}");
            if u {
                assert_eq!(lab.run("server", &["zfs", "list", &copy]).code, Some(1));
                continue;
            }
            assert_eq!(lab.guids("server", &copy), want, "{copy}");
            let held = lab.run_ok("server", &["zfs", "holds", "-H", &format!("{copy}@s2")]);
            assert_eq!(held.lines().count(), 1, "one hold per copy: {held}");
        }
        // On the source, one hold per job on the base, none on u.
        let held = lab.run_ok("client", &["zfs", "holds", "-H", &format!("{src}@s2")]);
        let tags: Vec<&str> = held.lines().filter_map(|l| l.split('\t').nth(1)).collect();
        let want: &[&str] = if u {
            &[]
        } else {
            &["zferry:par", "zferry:seq"]
        };
        let mut tags = tags;
        tags.sort();
        assert_eq!(tags, want, "{src}");
    }
    // Incremental, in parallel: the copies of t exist, so its children's receives run
    // beside its own (they do not wait for it).
    lab.run_ok("client", &["zfs", "snapshot", "-r", &format!("{c}/t@s3")]);
    let r = pull("par", 4);
    assert_eq!(r.code, Some(1), "u failed again: {r:?}");
    for src in std::iter::once(&format!("{c}/t")).chain(&kids) {
        assert_eq!(r.dataset(src)["action"], "incremental", "{src}: {r:?}");
        let copy = format!("{s}/par/client/{src}");
        assert_eq!(
            lab.guids("server", &copy),
            lab.guids("client", src),
            "{copy}"
        );
        let held = lab.run_ok("server", &["zfs", "holds", "-H", &format!("{copy}@s3")]);
        assert_eq!(held.lines().count(), 1, "the hold moved to s3: {held}");
    }
}

/// The `zfs list` commands a `-v` run traced, with the host they went to.
fn listings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("+ [") && l.contains("] zfs list "))
        .collect()
}

#[test]
fn snapshots_changed_moves_with_snapshots_not_with_holds_or_bookmarks() {
    // What the listing cache relies on (src/sides/cache.rs), on this OpenZFS.
    let lab = lab();
    let c = "e12p";
    lab.pool("client", c);
    lab.run_ok("client", &["zfs", "create", &format!("{c}/d")]);
    let changed = || lab.prop("client", &format!("{c}/d"), "snapshots_changed");
    assert_eq!(changed(), "-", "never snapshotted: not set");
    let snap = |s: &str| lab.run_ok("client", &["zfs", "snapshot", &format!("{c}/d@{s}")]);
    snap("s1");
    let after_s1 = changed();
    assert!(after_s1.parse::<u64>().is_ok(), "{after_s1}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    snap("s2");
    let after_s2 = changed();
    assert_ne!(after_s2, after_s1, "a new snapshot moves it");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lab.run_ok("client", &["zfs", "hold", "keep", &format!("{c}/d@s2")]);
    lab.run_ok(
        "client",
        &[
            "zfs",
            "bookmark",
            &format!("{c}/d@s1"),
            &format!("{c}/d#b1"),
        ],
    );
    assert_eq!(changed(), after_s2, "holds and bookmarks leave it");
    lab.run_ok("client", &["zfs", "destroy", &format!("{c}/d@s1")]);
    assert_ne!(changed(), after_s2, "a destroyed snapshot moves it");
}

#[test]
fn a_cached_run_lists_snapshots_only_where_they_changed() {
    let lab = lab();
    let (c, s) = ("e13c", "e13s");
    lab.pool("client", c);
    lab.pool("server", s);
    lab.script(
        "client",
        r#"zfs create "$1"; zfs create "$1/k0"; zfs create "$1/k1"
           zfs snapshot -r "$1@s1"; zfs snapshot -r "$1@s2""#,
        &[&format!("{c}/data")],
    );
    lab.allow("client", SRC_PERMS, c);
    lab.create_allowed("server", &format!("{s}/backup"), DST_PERMS);
    let pull = || {
        let r = zferry(
            lab,
            "server",
            &format!("-v {}", pull_args(lab, c, s, &format!("{c}/data"))),
        );
        assert_eq!(r.code, Some(0), "{r:?}");
        r
    };
    // Entries are kept only of datasets whose snapshots_changed is SETTLE seconds old.
    let settle = || std::thread::sleep(std::time::Duration::from_secs(2));
    settle();
    // Copies everything into copies the run makes. The sources' entries survive it,
    // with the holds the run placed (a run changes a source only by its holds), and
    // so do the new copies', read back by name with their check.
    pull();
    settle();
    let r = pull();
    assert!(
        r.stderr
            .contains("snapshots of 6 datasets taken from the last run's listing"),
        "{}",
        r.stderr
    );
    let snapshot_lists = |r: &Run| -> Vec<String> {
        listings(&r.stderr)
            .into_iter()
            .filter(|l| l.contains("-t snapshot,bookmark"))
            .map(str::to_string)
            .collect()
    };
    let lists = snapshot_lists(&r);
    assert!(
        lists.is_empty(),
        "no snapshot listed after the initial run: {lists:#?}"
    );
    // Its holds were found where the entries said: nothing placed or released again.
    assert!(!r.stderr.contains("zfs hold "), "{}", r.stderr);
    assert!(!r.stderr.contains("zfs release "), "{}", r.stderr);
    // A no-op run: filesystems only, on both sides (the `-d 0` chain has no snapshots);
    // the source's with `-r` (new datasets show), the copies by the names the cache
    // knows (an unmounted copy listed with `-r` is opened again to look for children).
    let r = pull();
    assert_eq!(r.action(&format!("{c}/data/k1")), "up_to_date");
    let lists = listings(&r.stderr);
    let copies = format!("{s}/backup/client/{c}/data");
    let by_name = format!(" {copies} {copies}/k0 {copies}/k1");
    assert!(
        lists.iter().all(|l| l.contains(" -d 0 ")
            || l.contains("-t filesystem,volume -s") && l.ends_with(&format!(" -r {c}/data"))
            || l.contains("-t filesystem,volume,snapshot -o") && l.ends_with(&by_name)),
        "{lists:#?}"
    );
    assert_eq!(lists.len(), 3, "{lists:#?}");
    assert!(
        r.stderr
            .contains("snapshots of 6 datasets taken from the last run's listing"),
        "{}",
        r.stderr
    );
    // The holds the entries know of were asked while each side listed, before the run
    // planned from the listings: one `zfs holds` per side, none after.
    let planned = r
        .stderr
        .find("taken from the last run's listing")
        .expect("the line asserted above");
    let asked: Vec<usize> = r
        .stderr
        .match_indices("zfs holds -H")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(asked.len(), 2, "{}", r.stderr);
    assert!(asked.iter().all(|&i| i < planned), "{}", r.stderr);
    // A new snapshot right away: seen, sent, and only its dataset's snapshots listed.
    lab.run_ok("client", &["zfs", "snapshot", &format!("{c}/data/k1@s3")]);
    let r = pull();
    assert_eq!(r.action(&format!("{c}/data/k1")), "incremental", "{r:?}");
    assert_eq!(r.action(&format!("{c}/data/k0")), "up_to_date");
    let lists = snapshot_lists(&r);
    assert_eq!(lists.len(), 1, "{lists:#?}");
    assert!(
        lists[0].ends_with(&format!(" -d 1 {c}/data/k1")),
        "{lists:#?}"
    );
    assert_eq!(
        lab.guids("server", &format!("{s}/backup/client/{c}/data/k1")),
        lab.guids("client", &format!("{c}/data/k1"))
    );

    // The newest snapshot of a copy destroyed behind zferry's back is seen, and sent
    // again (a stale cache would call it up to date).
    let copy = format!("{s}/backup/client/{c}/data/k0@s2");
    lab.run_ok(
        "server",
        &["zfs", "release", &format!("zferry:t-{c}"), &copy],
    );
    lab.run_ok("server", &["zfs", "destroy", &copy]);
    let r = pull();
    assert_eq!(r.action(&format!("{c}/data/k0")), "incremental", "{r:?}");
    assert_eq!(
        lab.guids("server", &format!("{s}/backup/client/{c}/data/k0")),
        lab.guids("client", &format!("{c}/data/k0"))
    );
    // A settled new snapshot: the run that sends it keeps the source's entry with the
    // hold moved from s3 to s4, and the copy's with s4 and its hold read back by name;
    // the run after finds both there: no snapshot listed on either side, nothing held
    // or released again, one hold of the job's tag on each side, on s4.
    lab.run_ok("client", &["zfs", "snapshot", &format!("{c}/data/k1@s4")]);
    settle();
    let r = pull();
    assert_eq!(r.action(&format!("{c}/data/k1")), "incremental", "{r:?}");
    settle();
    let r = pull();
    assert_eq!(r.action(&format!("{c}/data/k1")), "up_to_date", "{r:?}");
    assert!(snapshot_lists(&r).is_empty(), "{:#?}", snapshot_lists(&r));
    assert!(
        r.stderr
            .contains("snapshots of 6 datasets taken from the last run's listing"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("zfs hold "), "{}", r.stderr);
    assert!(!r.stderr.contains("zfs release "), "{}", r.stderr);
    let tag = format!("zferry:t-{c}");
    let holds = |snap: &str| {
        lab.run_ok(
            "client",
            &["zfs", "holds", "-H", &format!("{c}/data/k1@{snap}")],
        )
    };
    assert!(
        !holds("s3").contains(&tag),
        "the old base was released: {}",
        holds("s3")
    );
    assert_eq!(holds("s4").matches(&tag).count(), 1, "{}", holds("s4"));
    let copy = format!("{s}/backup/client/{c}/data/k1");
    let held = lab.run_ok("server", &["zfs", "holds", "-H", &format!("{copy}@s4")]);
    assert_eq!(held.matches(&tag).count(), 1, "{held}");
    let held = lab.run_ok("server", &["zfs", "holds", "-H", &format!("{copy}@s3")]);
    assert!(!held.contains(&tag), "{held}");
    // Something else changing the copy after all is seen: a snapshot destroyed there
    // moves its snapshots_changed past the entry's, so it is listed and sent again.
    lab.run_ok("server", &["zfs", "release", &tag, &format!("{copy}@s4")]);
    lab.run_ok("server", &["zfs", "destroy", &format!("{copy}@s4")]);
    let r = pull();
    assert_eq!(r.action(&format!("{c}/data/k1")), "incremental", "{r:?}");
    assert_eq!(
        lab.guids("server", &copy),
        lab.guids("client", &format!("{c}/data/k1"))
    );
    // A copy destroyed behind zferry's back: the listing by name says it does not exist
    // (and still lists the others), and it is made again. A new dataset on the client,
    // which the cache cannot know: its copy is listed apart (it does not exist), and made.
    let k0 = format!("{copies}/k0");
    lab.run_ok("server", &["zfs", "release", &tag, &format!("{k0}@s2")]);
    lab.run_ok("server", &["zfs", "destroy", "-r", &k0]);
    lab.script(
        "client",
        r#"zfs create "$1"; zfs snapshot "$1@s1""#,
        &[&format!("{c}/data/k2")],
    );
    let r = pull();
    assert_eq!(r.action(&format!("{c}/data/k0")), "full", "{r:?}");
    assert_eq!(r.action(&format!("{c}/data/k2")), "full", "{r:?}");
    assert_eq!(r.action(&format!("{c}/data/k1")), "up_to_date", "{r:?}");
    let lists = listings(&r.stderr);
    assert!(
        lists
            .iter()
            .any(|l| l.contains("-t filesystem,volume,snapshot -o") && l.ends_with(&by_name)),
        "{lists:#?}"
    );
    // The new copy alone, by name, after the source's listing showed it.
    let apart = format!(",snapshots_changed {copies}/k2");
    assert!(lists.iter().any(|l| l.ends_with(&apart)), "{lists:#?}");
    for k in ["k0", "k2"] {
        assert_eq!(
            lab.guids("server", &format!("{copies}/{k}")),
            lab.guids("client", &format!("{c}/data/{k}"))
        );
    }
}

/// Makes `c`'s zfs on the client answer the lab user's `zfs send` of `c`'s datasets with
/// the flags in /var/tmp/`c`.flag added (`-p`, `-R`): a hostile client.
fn hostile_client(lab: &Lab, c: &str) {
    let wrapper = format!(
        r#"#!/bin/sh
real=/usr/sbin/zfs
case " $* " in *" {c}/"*) ;; *) exec $real "$@" ;; esac
[ "$(id -un)" = {USER} ] || exec $real "$@"
if [ "$1" = send ] && [ "$2" != -nP ]; then shift; exec $real send $(cat /var/tmp/{c}.flag) "$@"; fi
exec $real "$@"
"#
    );
    lab.ok(
        "client",
        &format!(
            "test -x /usr/sbin/zfs
             cat > /usr/local/bin/zfs.new <<'WRAPPER'
{wrapper}WRAPPER
             chmod 755 /usr/local/bin/zfs.new && mv /usr/local/bin/zfs.new /usr/local/bin/zfs"
        ),
    );
}

/// `canmount=noauto` is set where a copy is made, and left out of an incremental into a
/// copy that keeps it locally; a copy whose `canmount` an admin set back to `on` gets it
/// set again. A stream with properties, which would outrank the local value, never
/// reaches `zfs receive`: a hostile client's `zfs send -p`/`-R` is refused by the relay.
#[test]
fn an_incremental_leaves_canmount_and_a_stream_with_properties_is_refused() {
    let lab = lab();
    let (c, s) = ("e14c", "e14s");
    setup_pull(lab, c, s);
    let args = pull_args(lab, c, s, &format!("{c}/plain"));
    let copy = format!("{s}/backup/client/{c}/plain");
    let canmount = || {
        lab.ok(
            "server",
            &format!("zfs get -H -o value,source canmount {copy}"),
        )
        .trim()
        .to_string()
    };
    let pull = |snap: &str| {
        lab.write_and_snap("client", &format!("{c}/plain"), snap, 1);
        let r = zferry(lab, "server", &args);
        assert_eq!(r.code, Some(0), "{r:?}");
        r
    };
    assert_eq!(pull("s3").action(&format!("{c}/plain")), "full");
    assert_eq!(canmount(), "noauto\tlocal");
    // The full stream of s1 sets it; the -I to s3 after it leaves it.
    assert_eq!(
        lab.receives("server", &copy),
        ["-u -s -o canmount=noauto", "-u -s"]
    );

    assert_eq!(pull("s4").action(&format!("{c}/plain")), "incremental");
    assert_eq!(canmount(), "noauto\tlocal");
    assert_eq!(lab.receives("server", &copy).last().unwrap(), "-u -s");

    // An admin lets the copy mount: the next receive sets noauto again.
    lab.ok("server", &format!("zfs set canmount=on {copy}"));
    assert_eq!(pull("s5").action(&format!("{c}/plain")), "incremental");
    assert_eq!(canmount(), "noauto\tlocal");
    assert_eq!(
        lab.receives("server", &copy).last().unwrap(),
        "-u -s -o canmount=noauto"
    );

    // A hostile client: its zfs answers zferry's `zfs send` with properties (-p, then
    // -R) that ask to mount the copy over a directory of the server. The relay refuses
    // each stream before zfs receive sees a byte: nothing received, nothing set.
    lab.ok(
        "server",
        "mkdir -p /srv/e14-evil && touch /srv/e14-evil/keep",
    );
    lab.ok(
        "client",
        &format!("zfs set canmount=on mountpoint=/srv/e14-evil {c}/plain"),
    );
    hostile_client(lab, c);
    let before = lab.guids("server", &copy);
    for (flag, snap) in [("-p", "s6"), ("-R", "s7")] {
        lab.ok("client", &format!("echo '{flag}' > /var/tmp/{c}.flag"));
        lab.write_and_snap("client", &format!("{c}/plain"), snap, 1);
        let r = zferry(lab, "server", &args);
        assert_eq!(r.code, Some(1), "{flag}: {r:?}");
        let e = r.dataset(&format!("{c}/plain"))["error"].to_string();
        assert!(
            e.contains("a payload") && e.contains("refused before zfs receive saw a byte"),
            "{flag}: {e}"
        );
        assert_eq!(lab.guids("server", &copy), before, "{flag}");
        assert_eq!(canmount(), "noauto\tlocal", "{flag}");
        let mp = lab.ok(
            "server",
            &format!("zfs get -H -o value,source mountpoint {copy}"),
        );
        assert!(
            !mp.contains("e14-evil") && !mp.contains("received"),
            "{flag}: {mp}"
        );
    }
    lab.ok("client", "rm -f /usr/local/bin/zfs");
    assert_eq!(lab.ok("server", "ls /srv/e14-evil").trim(), "keep");

    // Why the relay must refuse them: received as zferry's incremental is, without -o,
    // such a stream sets canmount from its properties over the copy's local value (here
    // on a scratch copy of a dataset of the server, destroyed at once).
    let (evil, scratch) = (format!("{s}/e14evil"), format!("{s}/e14scratch"));
    lab.ok(
        "server",
        &format!(
            "zfs create -o canmount=on -o mountpoint=/srv/e14-src {evil}
             zfs snapshot {evil}@1
             zfs send {evil}@1 | zfs receive -u -s -o canmount=noauto {scratch}
             zfs snapshot {evil}@2
             zfs send -p -i @1 {evil}@2 | zfs receive -u -s {scratch}"
        ),
    );
    let taken = lab.ok(
        "server",
        &format!("zfs get -H -o value,source canmount {scratch}"),
    );
    lab.ok(
        "server",
        &format!("zfs destroy -r {scratch}; zfs destroy -r {evil}"),
    );
    assert_eq!(taken.trim(), "on\treceived");
}

/// A host whose sshd allows 2 sessions per connection: `parallel = 2` opens no more than
/// that (a late size estimate only in a free session), and `parallel = 4` fails the
/// datasets whose session was refused with an error naming `MaxSessions` and `parallel`.
/// Runs in one VM: zferry pulls from a second sshd there (port 2299, `MaxSessions 2`,
/// the lab user's own key).
#[test]
fn a_job_opens_no_more_sessions_than_its_parallel_and_a_refusal_says_so() {
    let lab = lab();
    let m = "e15m";
    lab.pool("client", m);
    let kids: Vec<String> = (0..6).map(|i| format!("{m}/t/k{i}")).collect();
    lab.script(
        "client",
        r#"m="$1"; shift
           zfs create "$m/t"
           for k in "$@"; do zfs create "$k"; done
           # Ten snapshots each: streams long enough under TCG for -v's late estimate.
           for s in s0 s1 s2 s3 s4 s5 s6 s7 s8 s9; do
             for d in "$m/t" "$@"; do head -c 65536 /dev/urandom > "/$d/$s.bin"; done
             zfs snapshot -r "$m/t@$s"
           done
           zfs allow -u zferry send,hold,release "$m/t"
           h=/home/zferry/e15; rm -rf "$h"; mkdir -p "$h"
           ssh-keygen -q -t ed25519 -N '' -f "$h/hostkey"
           [ ! -f /run/sshd-e15.pid ] || kill "$(cat /run/sshd-e15.pid)" 2>/dev/null || true
           mkdir -p /run/sshd
           /usr/sbin/sshd -p 2299 -o ListenAddress=127.0.0.1 -o MaxSessions=2 \
             -o HostKey="$h/hostkey" -o PidFile=/run/sshd-e15.pid
           echo "[127.0.0.1]:2299 $(cut -d' ' -f1,2 "$h/hostkey.pub")" > "$h/known_hosts"
           chown -R zferry "$h""#,
        &[&[m.to_string()], kids.as_slice()]
            .concat()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let pull = |dest: &str, parallel: usize| {
        lab.create_allowed("client", &format!("{m}/{dest}"), DST_PERMS);
        zferry(
            lab,
            "client",
            &format!(
                "-v pull --host 127.0.0.1 --port 2299 --user {USER} --known-hosts-file /home/zferry/e15/known_hosts --name c --datasets {m}/t --destination {m}/{dest} --job-name {dest} --parallel {parallel}"
            ),
        )
    };
    let two = pull("two", 2);
    let four = pull("four", 4);
    lab.ok(
        "client",
        "kill $(cat /run/sshd-e15.pid); rm -f /run/sshd-e15.pid",
    );
    assert_eq!(
        two.code,
        Some(0),
        "parallel 2 within MaxSessions 2: {two:?}"
    );
    for d in std::iter::once(format!("{m}/t")).chain(kids.iter().cloned()) {
        let copy = format!("{m}/two/c/{d}@s9");
        let guid = |ds: &str| lab.run_ok("client", &["zfs", "get", "-Hpo", "value", "guid", ds]);
        assert_eq!(guid(&copy), guid(&format!("{d}@s9")), "{copy}");
    }
    assert_eq!(
        four.code,
        Some(1),
        "parallel 4 above MaxSessions 2: {four:?}"
    );
    assert!(
        four.stderr.contains("MaxSessions") && four.stderr.contains("lower parallel"),
        "a refused session names MaxSessions and parallel: {}",
        four.stderr
    );
}
