//! OpenZFS 2.4 in the lab (image zfs24: Debian 13, OpenZFS 2.4 from trixie-backports) next to
//! the 2.3 VMs: a mixed chain with zferry, and the 2.4 delegations `send:raw` (PR 17543) and
//! `receive:append` (PR 17015), probed by name and proven in the kernel.
//!
//! VMs: the 2.3 `client` of the shared lab, `server24` and `offsite24` of their own. Each test
//! makes its own file-backed pools (names `z4…`), so it can run next to the other lab tests.

use crate::common::zferry::{remote, zferry};
use crate::common::zfs24::{install_as, lab24, zfs_version};
use crate::common::{Lab, DST_PERMS, SRC_PERMS, USER};

/// The 2.4 target permissions: [`DST_PERMS`] with `receive:append` for `receive`.
const DST_PERMS_24: &str = "create,mount,canmount,receive:append,hold,release";

/// The 2.4 source permissions: [`SRC_PERMS`] with `send:raw` for `send`.
const SRC_PERMS_24: &str = "send:raw,hold,release";

fn assert_denied(o: &crate::common::Out, what: &str) {
    assert_ne!(o.code, Some(0), "{what} must be refused: {o:?}");
    assert!(
        o.stderr.contains("permission denied"),
        "{what}: expected 'permission denied': {o:?}"
    );
}

#[test]
fn the_24_vms_run_openzfs_24_and_the_client_23() {
    let lab = lab24();
    for vm in ["server24", "offsite24"] {
        let v = lab.ok(vm, "zfs version");
        let mut lines = v.lines();
        assert!(lines.next().unwrap().starts_with("zfs-2.4."), "{vm}: {v}");
        assert!(
            lines.next().unwrap().starts_with("zfs-kmod-2.4."),
            "{vm}: {v}"
        );
        println!("{vm}: {}", v.replace('\n', ", "));
    }
    let v = zfs_version(lab, "client");
    assert!(v.starts_with("zfs-2.3."), "client: {v}");
}

/// client `c` (2.3): encrypted `c/data` with child `kid`, snapshots s1, s2, delegated to
/// the user with `src_perms`.
fn client_source(lab: &Lab, c: &str, src_perms: &str) {
    lab.pool("client", c);
    lab.encrypted("client", &format!("{c}/data"));
    lab.ok("client", &format!("zfs create {c}/data/kid"));
    for ds in ["data", "data/kid"] {
        lab.write_and_snap("client", &format!("{c}/{ds}"), "s1", 2);
        lab.write_and_snap("client", &format!("{c}/{ds}"), "s2", 1);
    }
    lab.allow("client", src_perms, c);
}

/// client (2.3) --pull--> server24 --raw push--> offsite24 with zferry as `zferry`, then one
/// incremental through the whole chain. `perms`: (client source, server target, server
/// source, offsite target).
fn chain(lab: &Lab, tag: &str, perms: [&str; 4]) {
    let (c, s, o) = (format!("{tag}c"), format!("{tag}s"), format!("{tag}o"));
    client_source(lab, &c, perms[0]);
    lab.pool("server24", &s);
    lab.create_allowed("server24", &format!("{s}/eb"), perms[1]);
    lab.allow("server24", perms[2], &format!("{s}/eb"));
    lab.pool("offsite24", &o);
    lab.create_allowed("offsite24", &format!("{o}/off"), perms[3]);
    let pull = format!(
        "pull {} --name client --datasets {c}/data --destination {s}/eb --job-name pull-{tag}",
        remote(lab, "client")
    );
    let push = format!(
        "push {} --datasets {s}/eb/client --destination {o}/off --strip-prefix {s}/eb --job-name push-{tag}",
        remote(lab, "offsite24")
    );
    let src = format!("{c}/data");
    let mid = format!("{s}/eb/client/{c}/data");
    let off = format!("{o}/off/client/{c}/data");
    let check = |round: &str| {
        for kid in ["", "/kid"] {
            let want = lab.guids("client", &format!("{src}{kid}"));
            assert_eq!(
                lab.guids("server24", &format!("{mid}{kid}")),
                want,
                "{round}: server24{kid}"
            );
            assert_eq!(
                lab.guids("offsite24", &format!("{off}{kid}")),
                want,
                "{round}: offsite24{kid}"
            );
            for (vm, ds) in [("server24", &mid), ("offsite24", &off)] {
                assert_eq!(
                    lab.prop(vm, &format!("{ds}{kid}"), "keystatus"),
                    "unavailable",
                    "{round}: {vm} {ds}{kid} must stay locked"
                );
            }
        }
    };

    let r = zferry(lab, "server24", &pull);
    assert_eq!(r.code, Some(0), "pull: {r:?}");
    assert_eq!(r.action(&src), "full", "{r:?}");
    let p = zferry(lab, "server24", &push);
    assert_eq!(p.code, Some(0), "push: {p:?}");
    assert_eq!(p.action(&mid), "full", "{p:?}");
    check("full");

    for ds in ["data", "data/kid"] {
        lab.write_and_snap("client", &format!("{c}/{ds}"), "s3", 1);
        lab.write_and_snap("client", &format!("{c}/{ds}"), "s4", 1);
    }
    let r = zferry(lab, "server24", &pull);
    assert_eq!(r.code, Some(0), "pull: {r:?}");
    assert_eq!(r.action(&src), "incremental", "{r:?}");
    let p = zferry(lab, "server24", &push);
    assert_eq!(p.code, Some(0), "push: {p:?}");
    assert_eq!(p.action(&mid), "incremental", "{p:?}");
    check("incremental");
    assert_eq!(
        lab.guids("offsite24", &off)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["s1", "s2", "s3", "s4"]
    );
}

/// The mixed chain with the 2.3 permissions everywhere.
#[test]
fn mixed_chain_client23_pull_server24_raw_push_offsite24() {
    chain(lab24(), "z4a", [SRC_PERMS, DST_PERMS, SRC_PERMS, DST_PERMS]);
}

/// The same chain where 2.4 allows it: `receive:append` on both targets and `send:raw` on
/// the server's source (the client is 2.3 and keeps `send`).
#[test]
fn mixed_chain_with_24_delegations() {
    chain(
        lab24(),
        "z4b",
        [SRC_PERMS, DST_PERMS_24, SRC_PERMS_24, DST_PERMS_24],
    );
}

/// Which delegation names each version knows. `zfs allow` refuses a name it does not know
/// ("operation not applicable to datasets of this type", as for `receive:bogus`), so an
/// accepted name is a known one. Measured: 2.4.4 knows `send:raw`, `send:encrypted` and
/// `receive:append`; 2.3.2 (bookworm-backports) already knows `receive:append`, not the
/// `send:` ones. zferry's own parser reads the 2.4 output.
#[test]
fn delegation_names_known_to_24_and_23() {
    let lab = lab24();
    let try_allow = |vm: &str, pool: &str, perm: &str| {
        let o = lab.sh(vm, &format!("zfs allow -u {USER} {perm} {pool}/names"));
        println!(
            "{vm}: zfs allow {perm}: exit {:?} {}",
            o.code,
            o.stderr.trim()
        );
        o
    };
    let unknown = "operation not applicable to datasets of this type";

    lab.pool("server24", "z4n");
    lab.ok("server24", "zfs create z4n/names");
    for perm in ["send:raw", "send:encrypted", "receive:append"] {
        let o = try_allow("server24", "z4n", perm);
        assert_eq!(o.code, Some(0), "2.4 must know {perm}: {o:?}");
    }
    let o = try_allow("server24", "z4n", "receive:bogus");
    assert!(o.code != Some(0) && o.stderr.contains(unknown), "{o:?}");
    let out = lab.ok("server24", "zfs allow z4n/names");
    println!("{out}");
    let ds = zferry::zfs::name::Dataset::new("z4n/names").unwrap();
    let t = zferry::allow::parse(&out, &ds).unwrap();
    let g = &t.grants[&zferry::allow::Who::User(USER.into())];
    let want: std::collections::BTreeSet<String> = ["receive:append", "send:encrypted", "send:raw"]
        .map(String::from)
        .into();
    assert_eq!(g.local, want, "{out}");
    assert_eq!(g.descendent, want, "{out}");

    lab.pool("client", "z4n");
    lab.ok("client", "zfs create z4n/names");
    for perm in ["send:raw", "send:encrypted"] {
        let o = try_allow("client", "z4n", perm);
        assert!(
            o.code != Some(0) && o.stderr.contains(unknown),
            "2.3 is not expected to know {perm}: {o:?}"
        );
    }
    let o = try_allow("client", "z4n", "receive:append");
    assert_eq!(o.code, Some(0), "2.3.2 knows receive:append: {o:?}");
    lab.ok("client", "zpool destroy z4n");
}

/// `send:raw` (no `send`): every raw send works (full, `-i`, `-I`, `-R`, on encrypted and
/// plain datasets), every non-raw one is refused by the kernel, including a resume of a
/// non-raw partial receive (`zfs send -t` of a token without `rawok`: the forged-token hole of
/// issue 11). `send:encrypted` also refuses raw sends of unencrypted datasets.
#[test]
fn send_raw_permits_raw_sends_only() {
    let lab = lab24();
    let vm = "server24";
    lab.pool(vm, "z4r");
    lab.ok(vm, "zfs create z4r/src");
    lab.encrypted(vm, "z4r/src/enc");
    lab.ok(vm, "zfs create z4r/src/plain");
    for ds in ["z4r/src/enc", "z4r/src/plain"] {
        for s in ["s1", "s2", "s3"] {
            lab.write_and_snap(vm, ds, s, 1);
        }
    }
    lab.ok(vm, &format!("zfs allow -u {USER} send:raw,hold z4r/src"));
    let send = |args: &str| lab.sh_as(vm, USER, &format!("zfs send {args} > /dev/null"));
    for ds in ["z4r/src/enc", "z4r/src/plain"] {
        for span in [
            format!("{ds}@s1"),
            format!("-i @s1 {ds}@s2"),
            format!("-I @s1 {ds}@s3"),
        ] {
            let o = send(&format!("-w {span}"));
            assert_eq!(o.code, Some(0), "raw send {span}: {o:?}");
            assert_denied(&send(&span), &format!("non-raw send {span}"));
        }
        let o = send(&format!("-w -R {ds}@s3"));
        assert_eq!(o.code, Some(0), "raw -R {ds}: {o:?}");
    }

    // A partial non-raw receive of the encrypted dataset (made by root, whose key is
    // loaded): its token has no rawok, and resuming it would send plaintext.
    let token = lab.ok(
        vm,
        "zfs create z4r/part
         zfs send z4r/src/enc@s1 | head -c 300000 | zfs receive -u -s z4r/part/x || true
         zfs get -H -o value receive_resume_token z4r/part/x",
    );
    assert!(token.starts_with("1-"), "no resume token: {token}");
    let o = lab.ok(vm, &format!("zfs send -nvP -t {token}"));
    assert!(!o.contains("rawok"), "{o}");
    assert_denied(&send(&format!("-t {token}")), "resume without rawok");

    lab.ok(
        vm,
        &format!(
            "zfs create z4r/srcenc
             zfs allow -u {USER} send:encrypted,hold z4r/srcenc
             zfs create -o encryption=on -o keyformat=passphrase -o keylocation=file:///root/enc.key z4r/srcenc/enc
             zfs create z4r/srcenc/plain
             zfs snapshot -r z4r/srcenc@s1"
        ),
    );
    let o = send("-w z4r/srcenc/enc@s1");
    assert_eq!(o.code, Some(0), "send:encrypted, raw, encrypted: {o:?}");
    assert_denied(&send("z4r/srcenc/enc@s1"), "send:encrypted, non-raw");
    assert_denied(
        &send("-w z4r/srcenc/plain@s1"),
        "send:encrypted, raw of a plain dataset",
    );
}

/// `receive:append` (with create and mount, no `receive`) on `vm`: receives with `-u` and `-s`
/// work, every `-F` is refused and a target-only snapshot survives it; with plain `receive`
/// the same `-F` destroys that snapshot (the 2.3 hole of LAB-NOTES). Aborting a partial
/// receive (`-A`) still needs `destroy`.
fn receive_append_refuses_force(lab: &Lab, vm: &str, pool: &str) {
    lab.pool(vm, pool);
    let st = format!("/var/tmp/{pool}-st");
    lab.ok(
        vm,
        &format!(
            "zfs create {pool}/src
             for s in s1 s2 s3; do dd if=/dev/urandom of=/{pool}/src/$s bs=64k count=8 status=none; zfs snapshot {pool}/src@$s; done
             rm -rf {st}; mkdir -p {st}; cd {st}
             zfs send {pool}/src@s1 > p1
             zfs send -i @s1 {pool}/src@s2 > p12
             zfs send -i @s2 {pool}/src@s3 > p23
             head -c 100000 p1 > p1part
             chmod 755 {st}; chmod 644 {st}/*
             zfs create {pool}/app; zfs allow -u {USER} create,mount,receive:append {pool}/app
             zfs create {pool}/full; zfs allow -u {USER} create,mount,receive {pool}/full"
        ),
    );
    let recv = |args: &str| lab.sh_as(vm, USER, &format!("cd {st}; zfs receive {args}"));
    for root in ["app", "full"] {
        for (args, what) in [
            (format!("-u {pool}/{root}/a < p1"), "full"),
            (format!("-u {pool}/{root}/a < p12"), "incremental"),
        ] {
            let o = recv(&args);
            assert_eq!(o.code, Some(0), "[{vm}] {root}: {what}: {o:?}");
        }
        // A snapshot only the target has: -F would destroy it.
        lab.ok(vm, &format!("zfs snapshot {pool}/{root}/a@target-only"));
    }
    let forced = recv(&format!("-u -F {pool}/app/a < p23"));
    assert_denied(&forced, &format!("[{vm}] receive:append, -F incremental"));
    assert_eq!(
        lab.guids(vm, &format!("{pool}/app/a"))
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["s1", "s2", "target-only"]
    );
    assert_denied(
        &recv(&format!("-u -F {pool}/app/new < p1")),
        &format!("[{vm}] receive:append, -F new"),
    );
    // Resumable receives work; aborting one needs destroy.
    let o = recv(&format!("-u -s {pool}/app/r < p1part"));
    assert_ne!(o.code, Some(0), "a truncated stream cannot complete");
    assert!(
        lab.prop(vm, &format!("{pool}/app/r"), "receive_resume_token")
            .starts_with("1-"),
        "[{vm}] no partial state saved: {o:?}"
    );
    assert_denied(
        &recv(&format!("-A {pool}/app/r")),
        &format!("[{vm}] receive -A without destroy"),
    );

    // The control: full `receive` lets -F destroy the target-only snapshot.
    let o = recv(&format!("-u -F {pool}/full/a < p23"));
    assert_eq!(o.code, Some(0), "[{vm}] receive, -F: {o:?}");
    assert_eq!(
        lab.guids(vm, &format!("{pool}/full/a"))
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["s1", "s2", "s3"]
    );
    lab.ok(
        vm,
        &format!("zpool destroy {pool}; rm -rf {st} /var/tmp/{pool}.img"),
    );
}

#[test]
fn receive_append_refuses_force_on_24() {
    receive_append_refuses_force(lab24(), "server24", "z4f");
}

/// Measured: the 2.3.2 of bookworm-backports already enforces `receive:append`.
#[test]
fn receive_append_refuses_force_on_23() {
    receive_append_refuses_force(lab24(), "client", "z4g");
}

/// The `zfs_allow` module (this build, run as Ansible runs a binary module) with the 2.4
/// names and `exact`: on 2.4 it swaps a 2.3-style delegation for `send:raw` and
/// `receive:append` and is idempotent on the real output; on 2.3 it fails with a message
/// that names the unknown permission, and with `older_zfs: fallback` grants `send` there
/// with a warning (what the roles do on mixed sites).
#[test]
fn zfs_allow_module_with_24_names() {
    let lab = lab24();
    let module = |vm: &str, args: serde_json::Value| -> serde_json::Value {
        let o = lab.sh(
            vm,
            &format!(
                "cat > /tmp/zfs_allow_args.json <<'EOF'\n{args}\nEOF
                 /root/z4m/zfs_allow /tmp/zfs_allow_args.json || true"
            ),
        );
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("[{vm}] {e}: {o:?}"))
    };
    let args = |pool: &str| {
        serde_json::json!({
            "name": format!("{pool}/m"), "users": [USER], "exact": true,
            "permissions": ["create", "mount", "receive:append", "send:raw", "hold", "release"],
        })
    };

    // The module is chosen by the executable's name.
    for vm in ["server24", "client"] {
        lab.ok(vm, "mkdir -p /root/z4m");
        install_as(lab, vm, "/root/z4m/zfs_allow");
    }
    lab.pool("server24", "z4m");
    lab.create_allowed(
        "server24",
        "z4m/m",
        "create,mount,receive,send,hold,release",
    );
    let r = module("server24", args("z4m"));
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(
        r["commands"],
        serde_json::json!([
            format!("zfs allow -u {USER} receive:append,send:raw z4m/m"),
            format!("zfs unallow -u {USER} receive,send z4m/m"),
        ]),
        "{r}"
    );
    assert_eq!(r["warnings"].as_array().map_or(0, Vec::len), 0, "{r}");
    let shown = lab.ok("server24", "zfs allow z4m/m");
    assert!(
        shown.contains(&format!(
            "user {USER} create,hold,mount,receive:append,release,send:raw"
        )),
        "{shown}"
    );
    let again = module("server24", args("z4m"));
    assert_eq!(again["changed"], false, "{again}");
    lab.ok("server24", "zpool destroy z4m");

    lab.pool("client", "z4m");
    lab.ok("client", "zfs create z4m/m");
    let r = module("client", args("z4m"));
    assert_eq!(r["failed"], true, "{r}");
    let msg = r.to_string();
    assert!(
        msg.contains("newer names here: receive:append, send:raw;"),
        "{msg}"
    );

    // older_zfs=fallback, what the roles use: 2.3.2 gets send (it knows receive:append),
    // with a warning naming both; check mode predicts exactly what the real run does.
    let fallback = |check: bool| {
        let mut a = args("z4m");
        a["older_zfs"] = "fallback".into();
        a["_ansible_check_mode"] = check.into();
        a
    };
    let granted =
        format!("zfs allow -u {USER} create,hold,mount,receive:append,release,send z4m/m");
    for check in [true, false] {
        let r = module("client", fallback(check));
        assert_eq!(r["changed"], true, "{r}");
        assert_eq!(r["commands"], serde_json::json!([granted]), "{r}");
        assert_eq!(r["zfs_version"], "2.3.2", "{r}");
        let warnings = r["warnings"].to_string();
        assert!(
            warnings.contains("OpenZFS 2.3.2 on this host does not know the delegation send:raw")
                && warnings.contains("granted send instead"),
            "{r}"
        );
        assert!(!warnings.contains("receive:append (new"), "{r}");
    }
    let shown = lab.ok("client", "zfs allow z4m/m");
    let line = format!("user {USER} create,hold,mount,receive:append,release,send");
    assert!(shown.lines().any(|l| l.trim() == line), "{shown}");
    let again = module("client", fallback(false));
    assert_eq!(again["changed"], false, "{again}");
    lab.ok("client", "zpool destroy z4m; rm -f /var/tmp/z4m.img");

    // On 2.4 the same arguments grant the narrow names, without a warning.
    lab.pool("server24", "z4m");
    lab.ok("server24", "zfs create z4m/m");
    let r = module("server24", fallback(false));
    assert_eq!(r["zfs_version"], "2.4.4", "{r}");
    assert_eq!(r["warnings"].as_array().map_or(0, Vec::len), 0, "{r}");
    assert_eq!(
        r["commands"],
        serde_json::json!([format!(
            "zfs allow -u {USER} create,hold,mount,receive:append,release,send:raw z4m/m"
        )]),
        "{r}"
    );
    lab.ok("server24", "zpool destroy z4m");
}
