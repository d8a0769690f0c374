//! The amd64 .deb (packaging/deb.sh) on a real Debian with OpenZFS: it installs with
//! dpkg, its /usr/bin/zferry replicates from one VM to another over SSH (GUIDs equal on
//! both sides), its man pages, completions and examples are where Debian looks for them and
//! work, and `dpkg -r` takes it all away again. Two of the lab's VMs: client and server.

use crate::common::{lab, Lab, DST_PERMS, SRC_PERMS, USER};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Every subcommand users see; each has its own man page.
const SUBCOMMANDS: [&str; 10] = [
    "pull", "push", "run", "plan", "serve", "holds", "check", "snapshot", "prune", "status",
];

/// What the package must ship besides /usr/bin/zferry.
const SHIPPED: [&str; 7] = [
    "/usr/share/man/man1/zferry.1.gz",
    "/usr/share/bash-completion/completions/zferry",
    "/usr/share/zsh/vendor-completions/_zferry",
    "/usr/share/fish/vendor_completions.d/zferry.fish",
    "/usr/share/doc/zferry/copyright",
    "/usr/share/doc/zferry/examples/zferry.toml",
    "/usr/share/doc/zferry/examples/zferry@.service",
];

/// target/deb/zferry_<version>_amd64.deb, built once per test binary by packaging/deb.sh
/// (which builds the static binary with ansible/build.sh when it is missing or stale).
fn deb() -> &'static PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let o = Command::new(root.join("packaging/deb.sh"))
            .arg("x86_64")
            .output()
            .expect("cannot run packaging/deb.sh");
        assert!(
            o.status.success(),
            "packaging/deb.sh x86_64 failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let version = env!("CARGO_PKG_VERSION").replace('-', "~");
        let deb = root.join(format!("target/deb/zferry_{version}_amd64.deb"));
        assert!(deb.is_file(), "deb.sh did not write {}", deb.display());
        deb
    })
}

fn dpkg_deb(args: &[&str]) -> String {
    let o = Command::new("dpkg-deb")
        .args(args)
        .arg(deb())
        .output()
        .expect("cannot run dpkg-deb");
    assert!(
        o.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_deb_declares_what_it_needs_and_ships_pages_completions_and_docs() {
    let control = dpkg_deb(&["--field"]);
    let field = |f: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{f}: ")))
            .map(str::to_string)
    };
    assert_eq!(field("Package").as_deref(), Some("zferry"));
    assert_eq!(
        field("Version").as_deref(),
        Some(env!("CARGO_PKG_VERSION").replace('-', "~").as_str())
    );
    assert_eq!(field("Architecture").as_deref(), Some("amd64"));
    assert_eq!(field("Section").as_deref(), Some("admin"));
    let depends = field("Depends").unwrap_or_default();
    for dep in ["zfsutils-linux", "openssh-client"] {
        assert!(depends.contains(dep), "Depends: {depends}");
    }

    let contents = dpkg_deb(&["--contents"]);
    let files: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.'))
        .collect();
    let mut want: Vec<String> = SHIPPED.iter().map(|s| s.to_string()).collect();
    want.push("/usr/bin/zferry".into());
    want.extend(
        SUBCOMMANDS
            .iter()
            .map(|s| format!("/usr/share/man/man1/zferry-{s}.1.gz")),
    );
    for w in &want {
        assert!(
            files.contains(&w.as_str()),
            "{w} is not in the deb:\n{contents}"
        );
    }
    // Everything root-owned, whoever built it (--root-owner-group).
    for l in contents.lines() {
        assert_eq!(l.split_whitespace().nth(1), Some("root/root"), "{l}");
    }
}

/// Pool `c` on the client with an encrypted `c/data` of two snapshots, delegated for sending;
/// pool `s` on the server with an empty `s/backup`, delegated for receiving.
fn pools(lab: &Lab, c: &str, s: &str) {
    lab.pool("client", c);
    lab.pool("server", s);
    lab.encrypted("client", &format!("{c}/data"));
    lab.write_and_snap("client", &format!("{c}/data"), "s1", 2);
    lab.write_and_snap("client", &format!("{c}/data"), "s2", 1);
    lab.allow("client", SRC_PERMS, c);
    lab.create_allowed("server", &format!("{s}/backup"), DST_PERMS);
}

#[test]
fn installed_deb_replicates_between_vms_and_removes_cleanly() {
    let deb = deb();
    let lab = lab();
    let name = deb.file_name().unwrap().to_str().unwrap();
    let (c, s) = ("pkc", "pks");

    // A package a failed earlier run left installed would hide a missing file.
    lab.ok(
        "server",
        "dpkg -P zferry >/dev/null 2>&1 || true; ! test -e /usr/bin/zferry",
    );
    lab.copy_to("server", deb, &format!("/root/{name}"));
    lab.ok("server", &format!("dpkg -i /root/{name}"));
    assert_eq!(
        lab.ok("server", "dpkg-query -W -f '${Status} ${Version}' zferry"),
        format!(
            "install ok installed {}",
            env!("CARGO_PKG_VERSION").replace('-', "~")
        )
    );
    assert_eq!(
        lab.ok("server", "/usr/bin/zferry --version"),
        format!("zferry {}", env!("CARGO_PKG_VERSION"))
    );
    for f in SHIPPED {
        lab.ok("server", &format!("test -s {f}"));
    }
    for sub in SUBCOMMANDS {
        lab.ok(
            "server",
            &format!("gzip -t /usr/share/man/man1/zferry-{sub}.1.gz"),
        );
    }
    let main_page = lab.ok("server", "gzip -dc /usr/share/man/man1/zferry.1.gz");
    for sub in SUBCOMMANDS {
        assert!(main_page.contains(&format!("zferry\\-{sub}(1)")), "{sub}");
    }
    // The bash completion works in a plain bash: `zferry pr<TAB>` offers prune.
    let offered = lab.ok(
        "server",
        "bash -c '. /usr/share/bash-completion/completions/zferry
                  COMP_WORDS=(zferry pr); COMP_CWORD=1; _zferry zferry pr zferry
                  echo \"${COMPREPLY[*]}\"'",
    );
    assert_eq!(offered, "prune");
    // The examples are valid: the config passes zferry's own check, the units systemd's.
    lab.ok(
        "server",
        "/usr/bin/zferry check --config /usr/share/doc/zferry/examples/zferry.toml",
    );
    lab.ok(
        "server",
        "d=$(mktemp -d); cp /usr/share/doc/zferry/examples/zferry*.service \
                              /usr/share/doc/zferry/examples/zferry*.timer \"$d\"
         cp \"$d/zferry@.service\" \"$d/zferry@pull-client1.service\"
         cd \"$d\"
         SYSTEMD_UNIT_PATH=\"$d:\" systemd-analyze verify --man=no ./zferry-cycle.service \
           ./zferry-cycle.timer ./zferry-status.service ./zferry-status.timer \
           ./zferry@pull-client1.service ./zferry-failure@.service
         rm -rf \"$d\"",
    );

    // A real pull with the packaged binary (named by path: /usr/local/bin/zferry from the
    // lab's provisioning comes first in PATH), as the unprivileged user.
    pools(lab, c, s);
    let o = lab.sh_as(
        "server",
        USER,
        &format!(
            "/usr/bin/zferry pull --host 10.0.2.2 --port {} --user {USER} --name client \
             --datasets {c}/data --destination {s}/backup --job-name pkg-{c} --json",
            lab.port("client")
        ),
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let report: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON report");
    assert_eq!(
        report["datasets"][0]["source"],
        format!("{c}/data"),
        "{report}"
    );
    assert_eq!(report["datasets"][0]["action"], "full", "{report}");
    let copy = format!("{s}/backup/client/{c}/data");
    let got = lab.guids("server", &copy);
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    assert_eq!(got, lab.guids("client", &format!("{c}/data")));
    assert_eq!(lab.prop("server", &copy, "keystatus"), "unavailable");

    lab.ok("server", "dpkg -r zferry");
    lab.ok("server", "! test -e /usr/bin/zferry");
    for f in SHIPPED {
        lab.ok("server", &format!("! test -e {f}"));
    }
    // Fully gone: with no conffiles nothing stays behind for a purge.
    let status = lab.sh("server", "dpkg -s zferry");
    assert_ne!(
        status.code,
        Some(0),
        "zferry is still known to dpkg: {status:?}"
    );
    // The lab's own binary is not the package's to remove.
    lab.ok("server", "test -x /usr/local/bin/zferry");
    lab.ok("server", &format!("rm -f /root/{name}"));
}
