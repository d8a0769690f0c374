//! Trust no peer, on real hosts. The SSH guard (`zferry serve` as a forced command):
//! zferry's own pulls and pushes pass through it; anything else is refused and changes
//! nothing. The replicator: what a hostile receiver writes (resume tokens) never makes
//! the sender leak plaintext or another dataset.

use crate::common::zferry::{zferry, Run};
use crate::common::{lab, Lab, DST_PERMS, SRC_PERMS, USER};
use zferry::zfs::token::{build, parse};

/// Text that any plaintext stream of a dataset holding it carries verbatim.
const MARKER: &str = "ZFERRY-PLAINTEXT-MARKER";

/// Writes 2 MiB of [`MARKER`] lines into `ds` and snapshots it.
fn write_marker_and_snap(lab: &Lab, vm: &str, ds: &str, snap: &str) {
    lab.ok(
        vm,
        &format!(
            "mp=$(zfs get -Ho value mountpoint {ds})
             yes {MARKER} | head -c 2M > \"$mp/{snap}.txt\"
             zfs snapshot {ds}@{snap}"
        ),
    );
}

/// Pipes `send`, run on the server, into `zfs receive ARGS` through `user`'s key on the
/// offsite: it must be refused, saying `why`.
fn refused_receive(lab: &Lab, send: &str, user: &str, args: &str, why: &str) {
    let oport = lab.port("offsite");
    let out = lab.sh_as(
        "server",
        USER,
        &format!("{send} | ssh -p {oport} {user}@10.0.2.2 zfs receive {args}"),
    );
    assert_ne!(out.code, Some(0), "{send} | {args}: {out:?}");
    assert!(out.stderr.contains(why), "{send} | {args}: {out:?}");
}

fn guid(lab: &Lab, vm: &str, snap: &str) -> u64 {
    lab.prop(vm, snap, "guid").parse().unwrap()
}

/// A user on `vm` whose only key runs `zferry serve ARGS` (with `restrict`), holding `perms` on `ds`.
fn guarded_user(lab: &Lab, vm: &str, user: &str, serve_args: &str, perms: &str, ds: &str) {
    let command = format!("/usr/local/bin/zferry serve {serve_args}");
    forced_user(lab, vm, user, &command, perms, ds);
}

/// A user on `vm` whose only key runs `command` (with `restrict`), holding `perms` on `ds`.
fn forced_user(lab: &Lab, vm: &str, user: &str, command: &str, perms: &str, ds: &str) {
    lab.ok(
        vm,
        &format!(
            "id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}
             install -d -o {user} -g {user} -m 700 /home/{user}/.ssh
             printf 'command=\"{command}\",restrict %s\\n' \"$(cat /root/lab_key.pub)\" > /home/{user}/.ssh/authorized_keys
             chown {user}: /home/{user}/.ssh/authorized_keys
             zfs allow -u {user} {perms} {ds}"
        ),
    );
}

#[test]
fn pull_and_push_through_the_guard_and_nothing_else() {
    let lab = lab();
    let (c, s, o) = ("gd1c", "gd1s", "gd1o");
    lab.pool("client", c);
    lab.pool("server", s);
    lab.pool("offsite", o);
    lab.encrypted("client", &format!("{c}/data"));
    lab.write_and_snap("client", &format!("{c}/data"), "s1", 2);
    guarded_user(
        lab,
        "client",
        "zfsend",
        &format!("--mode send --root {c}/data"),
        "send,hold,release",
        &format!("{c}/data"),
    );
    lab.create_allowed(
        "server",
        &format!("{s}/backup"),
        "create,mount,canmount,receive,send,hold,release",
    );
    lab.ok("offsite", &format!("zfs create {o}/off"));
    guarded_user(
        lab,
        "offsite",
        "zfrecv",
        &format!("--mode receive --root {o}/off"),
        "create,mount,canmount,receive,hold,release",
        &format!("{o}/off"),
    );

    let cport = lab.port("client");
    let oport = lab.port("offsite");
    let pull = format!(
        "pull --host 10.0.2.2 --port {cport} --user zfsend --name client --datasets {c}/data --destination {s}/backup --job-name g-{c}"
    );
    let r = zferry(lab, "server", &pull);
    assert_eq!(r.code, Some(0), "pull through the send guard: {r:?}");
    lab.write_and_snap("client", &format!("{c}/data"), "s2", 1);
    let r = zferry(lab, "server", &pull);
    assert_eq!(r.action(&format!("{c}/data")), "incremental", "{r:?}");

    let push = format!(
        "push --host 10.0.2.2 --port {oport} --user zfrecv --datasets {s}/backup/client --destination {o}/off --strip-prefix {s}/backup --job-name g-{o}"
    );
    let r = zferry(lab, "server", &push);
    assert_eq!(r.code, Some(0), "push through the receive guard: {r:?}");
    let copy = format!("{o}/off/client/{c}/data");
    assert_eq!(lab.prop("offsite", &copy, "keystatus"), "unavailable");
    assert_eq!(
        lab.guids("offsite", &copy),
        lab.guids("client", &format!("{c}/data"))
    );
    // The listing cache through the receive guard: a push of a settled snapshot checks
    // the copy's GUID and reads back what the cache wants of it (its snapshots_changed,
    // the received snapshot, the one it held) in one listing by name, so the push after
    // it lists no snapshot on either side.
    let settle = || std::thread::sleep(std::time::Duration::from_secs(2));
    lab.write_and_snap("client", &format!("{c}/data"), "s3", 1);
    let r = zferry(lab, "server", &pull);
    assert_eq!(r.action(&format!("{c}/data")), "incremental", "{r:?}");
    settle();
    let backup = format!("{s}/backup/client/{c}/data");
    let r = zferry(lab, "server", &format!("-v {push}"));
    assert_eq!(r.action(&backup), "incremental", "{r:?}");
    // (The copies themselves are listed by name too, through the guard: no snapshot
    // named; the host's label has an `@`, the command after it none.)
    let snapshot_named = |l: &str| l.split("] ").nth(1).is_some_and(|c| c.contains('@'));
    let named = |l: &&str| l.contains("-t filesystem,volume,snapshot -o") && snapshot_named(l);
    let checked = format!("{copy} {copy}@s2 {copy}@s3");
    assert!(
        r.stderr
            .lines()
            .filter(named)
            .any(|l| l.ends_with(&checked))
            && r.stderr.lines().filter(named).count() == 1
            && !r.stderr.contains("guid,snapshots_changed"),
        "{}",
        r.stderr
    );
    let copies_by_name = |r: &Run| {
        r.stderr.lines().any(|l| {
            l.contains("-t filesystem,volume,snapshot -o")
                && !snapshot_named(l)
                && l.ends_with(&format!(" {copy}"))
        })
    };
    assert!(copies_by_name(&r), "{}", r.stderr);
    let r = zferry(lab, "server", &format!("-v {push}"));
    assert_eq!(r.action(&backup), "up_to_date", "{r:?}");
    // (The parents without snapshots of their own are listed every run: an unset
    // snapshots_changed proves nothing.)
    let data_listed = r
        .stderr
        .lines()
        .any(|l| l.contains("-t snapshot,bookmark") && l.contains(&format!("{c}/data")));
    assert!(!data_listed, "{}", r.stderr);
    assert!(!r.stderr.contains("rejected"), "{}", r.stderr);
    assert!(copies_by_name(&r), "{}", r.stderr);
    assert_eq!(
        lab.guids("offsite", &copy),
        lab.guids("client", &format!("{c}/data"))
    );

    // `zferry status` reads the same listing through both guards: everything ok.
    let cfg = format!("/home/{USER}/{c}.toml");
    lab.ok_as(
        "server",
        USER,
        &format!(
            "cat > {cfg} <<EOF
[jobs.g-{c}]
kind = \"pull\"
host = \"10.0.2.2\"
port = {cport}
user = \"zfsend\"
name = \"client\"
datasets = [\"{c}/data\"]
destination = \"{s}/backup\"

[jobs.g-{o}]
kind = \"push\"
host = \"10.0.2.2\"
port = {oport}
user = \"zfrecv\"
datasets = [\"{s}/backup/client\"]
destination = \"{o}/off\"
EOF
zferry check --config {cfg}"
        ),
    );
    let st = lab.sh_as(
        "server",
        USER,
        &format!("zferry status --config {cfg} --json"),
    );
    assert_eq!(st.code, Some(0), "status through the guards: {st:?}");
    let jobs: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let states: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| {
            j["datasets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["state"].to_string())
        })
        .collect();
    assert!(
        !states.is_empty() && states.iter().all(|s| s == "\"ok\""),
        "{states:?}: {}",
        st.stdout
    );

    // Refusals, run as the server's zferry user with the same key zferry uses.
    let attempt = |port: u16, user: &str, remote_cmd: &str| {
        lab.sh_as(
            "server",
            USER,
            &format!("ssh -p {port} {user}@10.0.2.2 {remote_cmd}"),
        )
    };
    let refused = [
        (cport, "zfsend", format!("zfs destroy -r {c}/data")),
        (
            cport,
            "zfsend",
            format!("'zfs list -Hp -r {c}/data\nzfs destroy -r {c}/data'"),
        ),
        (cport, "zfsend", format!("'zfs send -w {c}/data@s1; id'")),
        (cport, "zfsend", format!("zfs receive -u -s {c}/data/x")),
        (cport, "zfsend", "id".to_string()),
        (oport, "zfrecv", format!("zfs receive -u -s -F {copy}")),
        (oport, "zfrecv", format!("zfs rollback -r {copy}@s1")),
        (oport, "zfrecv", format!("zfs send -w {copy}@s1")),
        (oport, "zfrecv", format!("zfs receive -u -s {o}/elsewhere")),
    ];
    for (port, user, cmd) in &refused {
        let out = attempt(*port, user, cmd);
        assert_ne!(out.code, Some(0), "{user}: {cmd:?} was allowed: {out:?}");
        assert!(
            out.stderr.contains("zferry serve: rejected"),
            "{cmd:?}: {out:?}"
        );
    }
    // Nothing was destroyed or rolled back.
    assert_eq!(lab.guids("client", &format!("{c}/data")).len(), 3);
    assert_eq!(lab.guids("offsite", &copy).len(), 3);
    // The key cannot get a shell or forward ports either (restrict).
    let shell = lab.sh_as(
        "server",
        USER,
        &format!("ssh -p {cport} zfsend@10.0.2.2 < /dev/null"),
    );
    assert_ne!(shell.code, Some(0), "{shell:?}");
}

/// Plays the compromised offsite of issue 11: a `zfs` earlier in the zferry user's PATH
/// passes everything to the real one, but puts `token` into the listing of `target`,
/// pretends `zfs receive -A` worked, and keeps a copy of every stream it receives.
fn hostile_offsite(lab: &Lab, pool: &str, target: &str, token: &str) {
    let wrapper = format!(
        r#"#!/bin/sh
real=/usr/sbin/zfs
case " $* " in *" {pool}/"*) ;; *) exec $real "$@" ;; esac
[ "$(id -un)" = {USER} ] || exec $real "$@"
case "$1 $2" in
  'list -Hp') $real "$@" | awk -F '\t' -v OFS='\t' -v t="$(cat /var/tmp/{pool}.token)" '$1 == "{target}" {{ $8 = t }} {{ print }}'; exit 0 ;;
  'receive -A') exit 0 ;;
  'receive -u') tee -a /var/tmp/{pool}.captured | $real "$@"; exit $? ;;
esac
exec $real "$@"
"#
    );
    lab.ok(
        "offsite",
        &format!(
            "test -x /usr/sbin/zfs
             printf '%s' '{token}' > /var/tmp/{pool}.token
             cat > /usr/local/bin/zfs <<'WRAPPER'
{wrapper}WRAPPER
             chmod 755 /usr/local/bin/zfs
             touch /var/tmp/{pool}.captured; chmod 666 /var/tmp/{pool}.captured"
        ),
    );
}

/// Bytes the hostile offsite captured, and whether they hold plaintext.
fn captured(lab: &Lab, pool: &str) -> (u64, bool) {
    let size = lab.ok("offsite", &format!("stat -c %s /var/tmp/{pool}.captured"));
    let leaked = lab.sh(
        "offsite",
        &format!("grep -q {MARKER} /var/tmp/{pool}.captured"),
    );
    (size.parse().unwrap(), leaked.code == Some(0))
}

#[test]
fn a_hostile_offsite_gets_no_plaintext_and_no_other_dataset_from_a_forged_token() {
    let lab = lab();
    let (s, o) = ("tr1s", "tr1o");
    lab.pool("server", s);
    lab.pool("offsite", o);
    let eb = format!("{s}/eb");
    lab.encrypted("server", &eb);
    lab.encrypted("server", &format!("{s}/secret"));
    write_marker_and_snap(lab, "server", &eb, "s1");
    write_marker_and_snap(lab, "server", &format!("{s}/secret"), "x");
    lab.allow("server", SRC_PERMS, s);
    lab.create_allowed(
        "offsite",
        &format!("{o}/off"),
        &format!("{DST_PERMS},destroy"),
    );
    let push = format!(
        "push --host 10.0.2.2 --port {} --user {USER} --datasets {eb} --destination {o}/off --strip-prefix {s} --job-name tr1",
        lab.port("offsite")
    );
    let first = zferry(lab, "server", &push);
    assert_eq!(first.code, Some(0), "{first:?}");
    let target = format!("{o}/off/eb");

    // A real token, written by OpenZFS for an interrupted raw receive, decodes to what
    // was sent (the parser's unit tests carry one such token as a fixture).
    let real = lab.ok(
        "offsite",
        &format!(
            "zfs create {o}/scratch
             zfs send -w {target}@s1 | head -c 2000 | zfs receive -s {o}/scratch/x || true
             zfs get -H -o value receive_resume_token {o}/scratch/x"
        ),
    );
    eprintln!("real resume token from the lab: {real}");
    let t = parse(&real).unwrap_or_else(|e| panic!("{real}: {e}"));
    assert_eq!(t.toname.to_string(), format!("{target}@s1"));
    assert_eq!(t.toguid, guid(lab, "offsite", &format!("{target}@s1")));
    assert!(t.raw && t.fromguid.is_none(), "{t:?}");

    // The offsite forges a token without rawok for the server's next snapshot. Had
    // zferry obeyed it (`zfs send -t` without -w), the key loaded on the server would
    // decrypt: a plain send of the same span carries the marker.
    write_marker_and_snap(lab, "server", &eb, "s2");
    let g1 = guid(lab, "server", &format!("{eb}@s1"));
    let g2 = guid(lab, "server", &format!("{eb}@s2"));
    let plain = lab.ok(
        "server",
        &format!("zfs send -i {eb}@s1 {eb}@s2 | grep -c {MARKER} || true"),
    );
    assert_ne!(plain, "0", "the marker must show in a plaintext stream");
    let forged = build::token(&format!("{eb}@s2"), g2, Some(g1), false);
    hostile_offsite(lab, o, &target, &forged);
    let second = zferry(lab, "server", &push);
    assert_eq!(second.code, Some(0), "{second:?}");
    let d = second.dataset(&eb);
    assert_eq!(d["action"], "incremental", "{second:?}");
    assert!(
        d["warnings"]
            .to_string()
            .contains("asks for a non-raw stream"),
        "{second:?}"
    );
    let (size, leaked) = captured(lab, o);
    assert!(size > 0, "the stream went through the hostile zfs");
    assert!(!leaked, "plaintext reached the offsite");
    assert_eq!(lab.prop("offsite", &target, "keystatus"), "unavailable");
    assert_eq!(lab.guids("offsite", &target), lab.guids("server", &eb));

    // A token for another dataset is never legitimate: the run fails naming the host,
    // the token's snapshot and the target, and not one byte is sent.
    write_marker_and_snap(lab, "server", &eb, "s3");
    let gx = guid(lab, "server", &format!("{s}/secret@x"));
    let foreign = build::token(&format!("{s}/secret@x"), gx, None, true);
    hostile_offsite(lab, o, &target, &foreign);
    let third = zferry(lab, "server", &push);
    lab.ok("offsite", "rm -f /usr/local/bin/zfs");
    assert_eq!(third.code, Some(1), "{third:?}");
    let err = third.dataset(&eb)["error"].as_str().unwrap().to_string();
    for part in [format!("{s}/secret@x"), target.clone(), "10.0.2.2".into()] {
        assert!(err.contains(&part), "{part} missing in: {err}");
    }
    assert_eq!(captured(lab, o), (size, false), "nothing may be sent");

    // Why a raw-only receive key may judge a stream by its first substream: the kernel
    // refuses non-raw data into the raw copy, whose key is not on the offsite.
    let plain_into_raw = lab.sh_as(
        "server",
        USER,
        &format!(
            "zfs send -i {eb}@s2 {eb}@s3 | ssh -p {} {USER}@10.0.2.2 zfs receive -u {target}",
            lab.port("offsite")
        ),
    );
    assert_ne!(plain_into_raw.code, Some(0), "{plain_into_raw:?}");
    assert!(
        !lab.guids("offsite", &target).iter().any(|(n, _)| n == "s3"),
        "{plain_into_raw:?}"
    );
}

#[test]
fn raw_only_keys_and_hostile_commands_on_real_hosts() {
    let lab = lab();
    let (c, s, o) = ("tr2c", "tr2s", "tr2o");
    lab.pool("client", c);
    lab.pool("server", s);
    lab.pool("offsite", o);
    let data = format!("{c}/data");
    let secret = format!("{c}/secret");
    lab.encrypted("client", &data);
    lab.encrypted("client", &secret);
    write_marker_and_snap(lab, "client", &data, "s1");
    write_marker_and_snap(lab, "client", &secret, "x");
    lab.ok("client", &format!("zfs hold keep {data}@s1"));
    guarded_user(
        lab,
        "client",
        "zfraw",
        &format!("--mode send --root {data} --raw-only"),
        SRC_PERMS,
        c,
    );
    lab.create_allowed(
        "server",
        &format!("{s}/backup"),
        &format!("{DST_PERMS},send,hold,release"),
    );
    let cport = lab.port("client");
    let pull = format!(
        "pull --host 10.0.2.2 --port {cport} --user zfraw --name client --datasets {data} --destination {s}/backup --job-name r-{c}"
    );
    let r = zferry(lab, "server", &pull);
    assert_eq!(r.code, Some(0), "a raw pull passes the raw-only key: {r:?}");

    let attempt = |port: u16, user: &str, remote_cmd: &str| {
        lab.sh_as(
            "server",
            USER,
            &format!("ssh -p {port} {user}@10.0.2.2 {remote_cmd}"),
        )
    };
    let g1 = guid(lab, "client", &format!("{data}@s1"));
    let gx = guid(lab, "client", &format!("{secret}@x"));
    let send_t = |toname: &str, guid: u64, raw: bool| {
        format!("zfs send -t {}", build::token(toname, guid, None, raw))
    };
    let refused = [
        (format!("zfs send {data}@s1"), "raw only"),
        (format!("zfs send -nP {data}@s1"), "raw only"),
        (send_t(&format!("{secret}@x"), gx, true), "outside the allowed roots"),
        (send_t(&format!("{data}@s1"), gx, true), "not that snapshot here"),
        (send_t(&format!("{data}@s1"), g1, false), "non-raw"),
        (
            "zfs list -Hp -t filesystem,volume,snapshot,bookmark -s createtxg -o name,type,guid,createtxg,encryption,keystatus,written,receive_resume_token,userrefs,creation -r".into(),
            "must name datasets",
        ),
        (format!("zfs release keep {data}@s1"), "prefix"),
        (format!("zfs hold -r {data}@s1"), "may not start with '-'"),
    ];
    for (cmd, why) in &refused {
        let out = attempt(cport, "zfraw", cmd);
        assert_ne!(out.code, Some(0), "{cmd:?} was allowed: {out:?}");
        assert!(
            out.stderr.contains("zferry serve: rejected") && out.stderr.contains(why),
            "{cmd:?}: {out:?}"
        );
        assert!(!out.stdout.contains(MARKER), "{cmd:?} leaked: {out:?}");
    }
    // The admin's hold survived, and the rejections reached syslog with the client.
    assert!(lab
        .ok("client", &format!("zfs holds -H {data}@s1"))
        .contains("keep"));
    let log = lab.ok(
        "client",
        "journalctl -q --no-pager -t zferry-serve -n 50 || true",
    );
    assert!(
        log.contains("from 10.0.2.2") && log.contains("raw only"),
        "{log}"
    );

    // A raw-only receive key takes raw pushes and refuses a plaintext stream before
    // zfs receive sees a byte: nothing is created.
    lab.ok("offsite", &format!("zfs create {o}/off"));
    guarded_user(
        lab,
        "offsite",
        "zfrawrecv",
        &format!("--mode receive --root {o}/off --raw-only"),
        DST_PERMS,
        &format!("{o}/off"),
    );
    let oport = lab.port("offsite");
    let push = format!(
        "push --host 10.0.2.2 --port {oport} --user zfrawrecv --datasets {s}/backup/client --destination {o}/off --strip-prefix {s}/backup --job-name r-{o}"
    );
    let p = zferry(lab, "server", &push);
    assert_eq!(
        p.code,
        Some(0),
        "a raw push passes the raw-only receive key: {p:?}"
    );
    let loaded = format!("{s}/backup/loaded");
    lab.encrypted("server", &loaded);
    write_marker_and_snap(lab, "server", &loaded, "p1");
    write_marker_and_snap(lab, "server", &loaded, "p2");
    for (name, send) in [
        ("full", format!("zfs send {loaded}@p1")),
        ("compound", format!("zfs send -I {loaded}@p1 {loaded}@p2")),
    ] {
        let args = format!("-u -s -o canmount=noauto {o}/off/{name}");
        refused_receive(lab, &send, "zfrawrecv", &args, "is not raw");
        let exists = lab.sh("offsite", &format!("zfs list {o}/off/{name}"));
        assert_ne!(exists.code, Some(0), "{name} was created: {exists:?}");
    }
}

/// Wire compression on real hosts: the client pipes `zfs send` through `zstd -c` (by its
/// login shell for an unguarded key, by `zferry serve` for a guarded one), the server's
/// relay decompresses, the copy has the source's GUIDs and the report says what crossed
/// the wire. A client whose key cannot reach zstd fails the dataset naming it, quickly,
/// and nothing is received.
#[test]
fn compressed_pulls_by_shell_and_by_guard_and_a_missing_zstd_is_named() {
    let lab = lab();
    let (c, s) = ("cz1c", "cz1s");
    lab.pool("client", c);
    lab.pool("server", s);
    let data = format!("{c}/data");
    lab.run_ok("client", &["zfs", "create", &data]);
    write_marker_and_snap(lab, "client", &data, "s1");
    lab.allow("client", SRC_PERMS, c);
    guarded_user(
        lab,
        "client",
        "zfzstd",
        &format!("--mode send --root {data}"),
        SRC_PERMS,
        &data,
    );
    // The same guard, started with a PATH that has zfs but not zstd.
    let no_zstd =
        format!("PATH=/usr/sbin:/sbin /usr/local/bin/zferry serve --mode send --root {data}");
    forced_user(lab, "client", "zfnozstd", &no_zstd, SRC_PERMS, &data);
    lab.create_allowed("server", &format!("{s}/backup"), DST_PERMS);
    let port = lab.port("client");
    let pull = |user: &str, how: &str| {
        format!(
            "-v pull --host 10.0.2.2 --port {port} --user {user} --name client --datasets {data} --destination {s}/backup --job-name z-{c} --compress {how}"
        )
    };
    let copy = format!("{s}/backup/client/{data}");

    // Unguarded (the user's bash runs the pipeline), default level, and a bwlimit that
    // the plain stream would need over 30 s for.
    let r = zferry(
        lab,
        "server",
        &format!("{} --bwlimit 64K", pull(USER, "zstd")),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.action(&data), "full", "{r:?}");
    assert_eq!(r.report["compress"], "zstd:3", "{r:?}");
    let d = r.dataset(&data);
    let (bytes, wire) = (
        d["bytes"].as_u64().unwrap(),
        d["wire_bytes"].as_u64().unwrap(),
    );
    // 2 MiB of one repeated line: zstd makes it a small fraction.
    assert!(bytes > 2 << 20 && wire * 20 < bytes, "{bytes} {wire}");
    // bwlimit paces the wire, so the stream moved faster than 64 KiB/s of its own bytes.
    let ms = d["duration_ms"].as_u64().unwrap();
    assert!(
        ms < (bytes - (64 << 10)) * 1000 / (64 << 10),
        "{bytes} bytes in {ms} ms"
    );
    assert!(
        r.stderr
            .contains(&format!("zfs send {data}@s1 | zstd -c -3")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("crossed the wire as"), "{}", r.stderr);
    assert_eq!(lab.guids("server", &copy), lab.guids("client", &data));

    // Guarded: zferry serve pipes it itself; level 19.
    write_marker_and_snap(lab, "client", &data, "s2");
    let r = zferry(lab, "server", &pull("zfzstd", "zstd:19"));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.action(&data), "incremental", "{r:?}");
    let d = r.dataset(&data);
    assert!(
        d["wire_bytes"].as_u64().unwrap() * 20 < d["bytes"].as_u64().unwrap(),
        "{d}"
    );
    assert_eq!(lab.guids("server", &copy), lab.guids("client", &data));

    // No zstd behind the key: named, nothing received, and the run ends.
    write_marker_and_snap(lab, "client", &data, "s3");
    let before = lab.guids("server", &copy);
    let r = zferry(lab, "server", &pull("zfnozstd", "zstd"));
    assert_eq!(r.code, Some(1), "{r:?}");
    let e = r.dataset(&data)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        e.contains("compress = \"zstd:3\" needs the zstd program on zfnozstd@10.0.2.2")
            && e.contains("cannot run zstd")
            && e.contains("apt-get install zstd"),
        "{e}"
    );
    assert_eq!(lab.guids("server", &copy), before, "nothing received");
    // Without compression the same key replicates.
    let r = zferry(lab, "server", &pull("zfnozstd", "none"));
    assert_eq!(r.action(&data), "incremental", "{r:?}");
    assert!(r.dataset(&data).get("wire_bytes").is_none(), "{r:?}");
}

/// A receive that leaves `canmount` as it is passes a receive key only with an
/// incremental stream: zferry's second push takes that form (the copy keeps
/// `canmount=noauto` from its first), and a full stream in it is refused before
/// `zfs receive` sees a byte, so no copy is made that a stream's properties could mount.
/// A stream with properties is refused in any form.
#[test]
fn a_receive_that_leaves_canmount_passes_the_guard_only_as_an_incremental() {
    let lab = lab();
    let (s, o) = ("gk1s", "gk1o");
    lab.pool("server", s);
    lab.pool("offsite", o);
    let src = format!("{s}/data");
    lab.encrypted("server", &src);
    write_marker_and_snap(lab, "server", &src, "p1");
    lab.allow("server", SRC_PERMS, s);
    lab.ok("offsite", &format!("zfs create {o}/off"));
    guarded_user(
        lab,
        "offsite",
        "zfkeep",
        &format!("--mode receive --root {o}/off"),
        DST_PERMS,
        &format!("{o}/off"),
    );
    let oport = lab.port("offsite");
    let push = format!(
        "push --host 10.0.2.2 --port {oport} --user zfkeep --datasets {src} --destination {o}/off --strip-prefix {s} --job-name k-{o}"
    );
    let copy = format!("{o}/off/data");
    let p = zferry(lab, "server", &push);
    assert_eq!(p.code, Some(0), "{p:?}");
    assert_eq!(p.action(&src), "full");
    write_marker_and_snap(lab, "server", &src, "p2");
    let p = zferry(lab, "server", &push);
    assert_eq!(p.code, Some(0), "{p:?}");
    assert_eq!(p.action(&src), "incremental");
    assert_eq!(
        lab.receives("offsite", &copy),
        ["-u -s -o canmount=noauto", "-u -s"]
    );
    assert_eq!(lab.guids("offsite", &copy), lab.guids("server", &src));
    assert_eq!(
        lab.ok(
            "offsite",
            &format!("zfs get -H -o value,source canmount {copy}")
        )
        .trim(),
        "noauto\tlocal"
    );

    let other = format!("{o}/off/other");
    let full = format!("zfs send -w {src}@p1");
    refused_receive(
        lab,
        &full,
        "zfkeep",
        &format!("-u -s {other}"),
        "is a full stream",
    );
    let made = lab.sh("offsite", &format!("zfs list {other}"));
    assert_ne!(made.code, Some(0), "{other} was made: {made:?}");
    // Properties never pass, in either form: refused before zfs receive sees a byte.
    let props = format!("zfs send -w -p -i @p1 {src}@p2");
    for form in ["-u -s", "-u -s -o canmount=noauto"] {
        refused_receive(
            lab,
            &props,
            "zfkeep",
            &format!("{form} {copy}"),
            "a payload",
        );
    }
    // The same stream with zferry's flag for a new copy is received.
    lab.ok_as(
        "server",
        USER,
        &format!("zfs send -w {src}@p1 | ssh -p {oport} zfkeep@10.0.2.2 zfs receive -u -s -o canmount=noauto {other}"),
    );
    assert_eq!(lab.guids("offsite", &other), lab.guids("server", &src)[..1]);
}
