//! Replication safety on real pools: held bases survive pruning, interrupted transfers
//! resume, stale tokens are discarded, diverged targets are refused until an explicit
//! option allows the smallest fix.

use crate::common::zferry::{remote, zferry, Run};
use crate::common::{lab, Lab, DST_PERMS, SRC_PERMS, USER};

fn setup(lab: &Lab, c: &str, s: &str) {
    lab.pool("client", c);
    lab.pool("server", s);
    lab.allow("client", SRC_PERMS, c);
    lab.create_allowed("server", &format!("{s}/backup"), DST_PERMS);
}

fn pull(lab: &Lab, c: &str, s: &str, ds: &str, extra: &str) -> Run {
    zferry(
        lab,
        "server",
        &format!(
            "pull {} --name client --datasets {c}/{ds} --destination {s}/backup --job-name safety-{c} {extra}",
            remote(lab, "client")
        ),
    )
}

/// (snapshot, tag) of every hold on `ds`'s snapshots.
fn holds(lab: &Lab, vm: &str, ds: &str) -> Vec<(String, String)> {
    let out = lab.ok(
        vm,
        &format!("zfs list -H -t snapshot -d 1 -o name {ds} | xargs -r zfs holds -H"),
    );
    let mut h: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].split_once('@').unwrap().1.to_string(),
                f[1].to_string(),
            )
        })
        .collect();
    h.sort();
    h
}

#[test]
fn held_base_survives_pruning_and_holds_stay_one_per_job() {
    let lab = lab();
    let (c, s) = ("sa1c", "sa1s");
    setup(lab, c, s);
    let src = format!("{c}/data");
    let dst = format!("{s}/backup/client/{c}/data");
    lab.ok("client", &format!("zfs create {src}"));
    for snap in ["s1", "s2"] {
        lab.write_and_snap("client", &src, snap, 1);
    }
    assert_eq!(pull(lab, c, s, "data", "").code, Some(0));
    let tag = format!("zferry:safety-{c}");
    assert_eq!(
        holds(lab, "client", &src),
        [("s2".to_string(), tag.clone())]
    );
    assert_eq!(
        holds(lab, "server", &dst),
        [("s2".to_string(), tag.clone())]
    );

    // Retention prunes everything it can on both sides: the held base survives.
    lab.ok(
        "client",
        &format!("for x in s1 s2; do zfs destroy {src}@$x 2>/dev/null || true; done"),
    );
    lab.ok(
        "server",
        &format!("for x in s1 s2; do zfs destroy {dst}@$x 2>/dev/null || true; done"),
    );
    assert_eq!(
        lab.guids("client", &src).len(),
        1,
        "only the held base is left"
    );

    lab.write_and_snap("client", &src, "s3", 1);
    let r = pull(lab, c, s, "data", "");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.action(&src), "incremental");
    assert_eq!(r.dataset(&src)["holds_changed"], true);
    assert_eq!(
        holds(lab, "client", &src),
        [("s3".to_string(), tag.clone())]
    );
    assert_eq!(
        holds(lab, "server", &dst),
        [("s3".to_string(), tag.clone())]
    );
    // An up-to-date run keeps exactly one hold and reports no change.
    let r = pull(lab, c, s, "data", "");
    assert_eq!(r.action(&src), "up_to_date");
    assert_eq!(r.dataset(&src)["holds_changed"], false);
    assert_eq!(holds(lab, "client", &src).len(), 1);
    // Someone else's hold is never touched.
    lab.ok("client", &format!("zfs hold other-tool {src}@s3"));
    lab.write_and_snap("client", &src, "s4", 1);
    assert_eq!(pull(lab, c, s, "data", "").code, Some(0));
    assert_eq!(
        holds(lab, "client", &src),
        [
            ("s3".to_string(), "other-tool".to_string()),
            ("s4".to_string(), tag)
        ]
    );
}

/// A client-side script that waits for this test's `zfs send` to run for 7 s (past a
/// txg sync, so the receiver has saved progress to resume from),
/// then runs `kill` (which sees the pattern as `$pat`) and fails if nothing was killed.
fn send_killer(c: &str, kill: &str) -> String {
    format!(
        "pat='^zfs send.* {c}/'
         for i in $(seq 150); do pgrep -f \"$pat\" >/dev/null && break; sleep 0.2; done
         sleep 7
         {kill}"
    )
}

/// Starts a pull in the background on the server, kills `what` once the receive has
/// moved some data, and returns the interrupted run's output. The pull is paced
/// (`--bwlimit 4M`: a 64 MiB stream takes 16 s) so the kill, 7 s after the send starts,
/// lands mid-stream however fast the machine: unpaced, a quiet run once finished first.
fn interrupted_pull(lab: &Lab, c: &str, s: &str, ds: &str, kill: &str) -> String {
    lab.ok_as(
        "server",
        USER,
        &format!(
            "zferry pull {} --name client --datasets {c}/{ds} --destination {s}/backup --job-name safety-{c} --bwlimit 4M --json > /tmp/{c}-{ds}.out 2>&1 &
             echo $! > /tmp/{c}-{ds}.pid",
            remote(lab, "client")
        ),
    );
    // Wait until bytes are flowing (the receive exists and the target has grown), then cut.
    lab.ok(
        "server",
        &format!(
            "for i in $(seq 150); do pgrep -f 'zfs receive -u -s (-o canmount=noauto )?{s}/' >/dev/null && break; sleep 0.2; done"
        ),
    );
    lab.ok("client", kill);
    // Other tests run zferry too: wait for this run's own process.
    lab.ok_as(
        "server",
        USER,
        &format!("p=$(cat /tmp/{c}-{ds}.pid); for i in $(seq 600); do kill -0 $p 2>/dev/null || break; sleep 0.2; done; ! kill -0 $p 2>/dev/null"),
    );
    lab.ok("server", &format!("cat /tmp/{c}-{ds}.out"))
}

#[test]
fn interrupted_transfers_resume_to_identical_copies() {
    let lab = lab();
    let (c, s) = ("sa2c", "sa2s");
    setup(lab, c, s);
    // Kill only this test's processes (other tests run in parallel on the same VMs), and
    // only once the send runs: under load its SSH session can take seconds to start.
    let kill_send = send_killer(c, "pkill -f \"$pat\"");
    // The sshd monitor and session carrying this test's send: the whole TCP link drops.
    let kill_ssh = send_killer(
        c,
        "p=$(pgrep -f \"$pat\"); s=$(ps -o ppid= $p); m=$(ps -o ppid= $s); kill $s $m",
    );
    let cases = [("full", kill_send.as_str()), ("ssh", kill_ssh.as_str())];
    for (ds, kill) in cases {
        let src = format!("{c}/{ds}");
        let dst = format!("{s}/backup/client/{c}/{ds}");
        lab.ok("client", &format!("zfs create {src}"));
        lab.write_and_snap("client", &src, "s1", 64);
        let out = interrupted_pull(lab, c, s, ds, kill);
        assert!(
            out.contains("\"failed\""),
            "the interrupted run reports failure: {out}"
        );
        let token = lab.prop("server", &dst, "receive_resume_token");
        assert_ne!(token, "-", "{ds}: a resumable receive left a token");

        let r = pull(lab, c, s, ds, "");
        assert_eq!(r.code, Some(0), "{ds}: {r:?}");
        assert_eq!(r.action(&src), "resume", "{r:?}");
        assert!(
            r.dataset(&src)["bytes"].as_u64().unwrap() < 62 << 20,
            "resumed, not restarted: {r:?}"
        );
        assert_eq!(lab.guids("server", &dst), lab.guids("client", &src));
        assert_eq!(lab.prop("server", &dst, "receive_resume_token"), "-");
    }

    // An interrupted incremental resumes too, then the rest follows in the same run.
    let src = format!("{c}/full");
    lab.write_and_snap("client", &src, "s2", 64);
    lab.write_and_snap("client", &src, "s3", 1);
    interrupted_pull(lab, c, s, "full", &kill_send);
    let r = pull(lab, c, s, "full", "");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        lab.guids("server", &format!("{s}/backup/client/{c}/full")),
        lab.guids("client", &src)
    );
}

#[test]
fn stale_resume_token_is_discarded() {
    let lab = lab();
    let (c, s) = ("sa3c", "sa3s");
    setup(lab, c, s);
    let src = format!("{c}/data");
    let dst = format!("{s}/backup/client/{c}/data");
    lab.ok("client", &format!("zfs create {src}"));
    lab.write_and_snap("client", &src, "s1", 2);
    assert_eq!(pull(lab, c, s, "data", "").code, Some(0));
    lab.write_and_snap("client", &src, "s2", 64);
    interrupted_pull(lab, c, s, "data", &send_killer(c, "pkill -f \"$pat\""));
    assert_ne!(lab.prop("server", &dst, "receive_resume_token"), "-");
    // The snapshot being received disappears from the source.
    lab.ok("client", &format!("zfs destroy {src}@s2"));
    lab.write_and_snap("client", &src, "s3", 1);

    // Discarding partial state (zfs receive -A) needs `destroy`: without it, a clear error.
    let r = pull(lab, c, s, "data", "");
    assert_eq!(r.code, Some(1), "{r:?}");
    let msg = r.dataset(&src)["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("zfs receive -A") && msg.contains("destroy"),
        "{msg}"
    );
    assert_ne!(
        lab.prop("server", &dst, "receive_resume_token"),
        "-",
        "nothing changed"
    );

    lab.allow("server", "destroy", &format!("{s}/backup"));
    let r = pull(lab, c, s, "data", "");
    assert_eq!(r.code, Some(0), "{r:?}");
    let d = r.dataset(&src);
    assert_eq!(d["action"], "incremental");
    assert!(
        d["warnings"][0]
            .as_str()
            .unwrap()
            .contains("discarded interrupted receive"),
        "{r:?}"
    );
    assert_eq!(lab.prop("server", &dst, "receive_resume_token"), "-");
    assert_eq!(lab.guids("server", &dst), lab.guids("client", &src));
}

#[test]
fn diverged_target_is_refused_until_rollback_is_allowed() {
    let lab = lab();
    let (c, s) = ("sa4c", "sa4s");
    setup(lab, c, s);
    lab.allow("server", "rollback,destroy", &format!("{s}/backup"));
    let src = format!("{c}/data");
    let dst = format!("{s}/backup/client/{c}/data");
    lab.ok("client", &format!("zfs create {src}"));
    lab.write_and_snap("client", &src, "s1", 1);
    assert_eq!(pull(lab, c, s, "data", "").code, Some(0));
    lab.write_and_snap("client", &src, "s2", 1);

    // Someone writes into the copy: refused, nothing changes.
    lab.ok("server", &format!("zfs set mountpoint=/mnt/{s} {dst}; zfs mount {dst} 2>/dev/null || true; echo x > /mnt/{s}/local.txt; sync; zfs umount {dst}"));
    let before = lab.guids("server", &dst);
    let r = pull(lab, c, s, "data", "");
    assert_eq!(r.code, Some(1), "{r:?}");
    let msg = r.dataset(&src)["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("modified") && msg.contains(&dst) && msg.contains("rollback_to_common"),
        "{msg}"
    );
    assert_eq!(lab.guids("server", &dst), before);

    // ...and someone snapshots it: still refused, naming the snapshot.
    lab.ok("server", &format!("zfs snapshot {dst}@mine"));
    let r = pull(lab, c, s, "data", "");
    assert_eq!(r.code, Some(1));
    let msg = r.dataset(&src)["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("newer than the common base @s1") && msg.contains("mine"),
        "{msg}"
    );

    // The explicit option rolls back to the common base, logs what it destroyed, recovers.
    let r = pull(lab, c, s, "data", "--on-divergence rollback-to-common");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.dataset(&src)["destroyed"],
        serde_json::json!([format!("{dst}@mine")])
    );
    assert!(r.stderr.contains("destroying: mine"), "{}", r.stderr);
    assert_eq!(lab.guids("server", &dst), lab.guids("client", &src));
}

#[test]
fn holds_command_lists_and_releases_only_stale_zferry_holds() {
    let lab = lab();
    let (c, s) = ("sa5c", "sa5s");
    setup(lab, c, s);
    let src = format!("{c}/data");
    lab.ok("client", &format!("zfs create {src}"));
    lab.write_and_snap("client", &src, "s1", 1);
    let port = lab.port("client");
    let config = |job: &str| {
        format!(
            "cat > /home/{USER}/{c}.toml <<EOF
[jobs.{job}]
kind = \"pull\"
host = \"10.0.2.2\"
port = {port}
user = \"{USER}\"
name = \"client\"
datasets = [\"{src}\"]
destination = \"{s}/backup\"
EOF"
        )
    };
    let cfg = format!("--config /home/{USER}/{c}.toml");
    // A job runs, then is renamed: its old holds are left behind on both sides.
    lab.ok_as("server", USER, &config(&format!("old-{c}")));
    assert_eq!(zferry(lab, "server", &format!("run {cfg}")).code, Some(0));
    lab.ok_as("server", USER, &config(&format!("new-{c}")));
    assert_eq!(zferry(lab, "server", &format!("run {cfg}")).code, Some(0));
    lab.ok("client", &format!("zfs hold other-tool {src}@s1"));

    let listed = lab.sh_as("server", USER, &format!("zferry holds {cfg}"));
    assert_eq!(
        listed.code,
        Some(1),
        "stale holds are a finding: {listed:?}"
    );
    let stale_lines: Vec<&str> = listed
        .stderr
        .lines()
        .filter(|l| l.contains("stale"))
        .collect();
    assert_eq!(
        stale_lines.len(),
        2,
        "old tag on client and server: {}",
        listed.stderr
    );
    assert!(stale_lines
        .iter()
        .all(|l| l.contains(&format!("zferry:old-{c}"))));
    assert!(!listed.stderr.contains("other-tool"), "{}", listed.stderr);

    let cleaned = lab.sh_as(
        "server",
        USER,
        &format!("zferry holds {cfg} --release-stale"),
    );
    assert_eq!(cleaned.code, Some(0), "{cleaned:?}");
    assert_eq!(
        holds(lab, "client", &src),
        [
            ("s1".to_string(), "other-tool".to_string()),
            ("s1".to_string(), format!("zferry:new-{c}"))
        ]
    );
    assert_eq!(
        holds(lab, "server", &format!("{s}/backup/client/{src}")),
        [("s1".to_string(), format!("zferry:new-{c}"))]
    );
}
