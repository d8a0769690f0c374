//! The SSH guard (`zferry serve` as a forced command) on real hosts: zferry's own
//! pulls and pushes pass through it; anything else is refused and changes nothing.

mod common;
use common::zferry::zferry;
use common::{lab, Lab, USER};

/// A user on `vm` whose only key runs `zferry serve ARGS` (with `restrict`), holding `perms` on `ds`.
fn guarded_user(lab: &Lab, vm: &str, user: &str, serve_args: &str, perms: &str, ds: &str) {
    lab.ok(
        vm,
        &format!(
            "id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}
             install -d -o {user} -g {user} -m 700 /home/{user}/.ssh
             printf 'command=\"/usr/local/bin/zferry serve {serve_args}\",restrict %s\\n' \"$(cat /root/lab_key.pub)\" > /home/{user}/.ssh/authorized_keys
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
    lab.ok("server", &format!("zfs create {s}/backup; zfs allow -u {USER} create,mount,canmount,receive,send,hold,release {s}/backup"));
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
    assert_eq!(lab.guids("client", &format!("{c}/data")).len(), 2);
    assert_eq!(lab.guids("offsite", &copy).len(), 2);
    // The key cannot get a shell or forward ports either (restrict).
    let shell = lab.sh_as(
        "server",
        USER,
        &format!("ssh -p {cport} zfsend@10.0.2.2 < /dev/null"),
    );
    assert_ne!(shell.code, Some(0), "{shell:?}");
}
