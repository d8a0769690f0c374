//! Test harness for the lab: boots (or reuses) the VMs once per run of the lab test binary, installs
//! the freshly built zferry, and gives tests root and user shells in each VM.
//!
//! Lab tests never skip: if the lab cannot boot, they fail with the lab's own output.

pub mod zferry;
pub mod zfs24;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The VMs every lab test can use.
pub const VMS: [&str; 3] = ["client", "server", "offsite"];

/// The unprivileged user zferry runs as in every VM (the Debian user `backup` exists already).
pub const USER: &str = "zferry";

/// Delegations a pulling/pushing source needs (`-I` needs hold; holds move with release).
pub const SRC_PERMS: &str = "send,hold,release";

/// Delegations a receiving target needs (canmount for placeholder parents).
pub const DST_PERMS: &str = "create,mount,canmount,receive,hold,release";

/// Output of a command in a VM.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The trimmed stdout of a command that must have succeeded; panics with both
    /// streams and `what` (the VM and the command) otherwise.
    pub fn expect_ok(self, what: &str) -> String {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self.stdout.trim().to_string()
    }
}

/// The running lab.
pub struct Lab {
    script: PathBuf,
    env: HashMap<String, String>,
}

fn lab_cmd(script: &PathBuf, args: &[&str]) -> std::process::Output {
    Command::new(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

/// The lab, booted on first use.
pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab");
        let mut args = vec!["up"];
        args.extend(VMS);
        let up = lab_cmd(&script, &args);
        assert!(
            up.status.success(),
            "the lab did not come up (tests/lab/lab up {}):\n{}{}",
            VMS.join(" "),
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        let env_out = lab_cmd(&script, &["env"]);
        let env = String::from_utf8_lossy(&env_out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lab = Lab { script, env };
        lab.install();
        lab
    })
}

impl Lab {
    /// The forwarded SSH port of `vm`, as other VMs reach it at 10.0.2.2.
    pub fn port(&self, vm: &str) -> u16 {
        self.env[&format!("ZFERRY_LAB_PORT_{}", vm.to_uppercase())]
            .parse()
            .unwrap()
    }

    /// Runs `argv` in `vm` as `user`. Each argument arrives intact: nothing is
    /// interpolated into a shell script (the lab script quotes each one for the far shell).
    pub fn run_as(&self, vm: &str, user: &str, argv: &[&str]) -> Out {
        let mut args = vec!["ssh", vm, "--user", user, "--"];
        args.extend(argv);
        let o = lab_cmd(&self.script, &args);
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs `script` with `sh -euc` in `vm` as `user`.
    pub fn sh_as(&self, vm: &str, user: &str, script: &str) -> Out {
        self.run_as(vm, user, &["sh", "-euc", script])
    }

    /// Runs `script` as root in `vm`.
    pub fn sh(&self, vm: &str, script: &str) -> Out {
        self.sh_as(vm, "root", script)
    }

    /// Runs `script` as root and returns its trimmed stdout; panics with both streams on failure.
    pub fn ok(&self, vm: &str, script: &str) -> String {
        self.sh(vm, script).expect_ok(&format!("[{vm}] {script}"))
    }

    /// Same as [`Lab::ok`] as the unprivileged user.
    pub fn ok_as(&self, vm: &str, user: &str, script: &str) -> String {
        self.sh_as(vm, user, script)
            .expect_ok(&format!("[{vm} as {user}] {script}"))
    }

    /// Copies the test's zferry binary in and makes the unprivileged user on every VM.
    fn install(&self) {
        let mut args = vec!["provision", env!("CARGO_BIN_EXE_zferry")];
        args.extend(VMS);
        let o = lab_cmd(&self.script, &args);
        assert!(
            o.status.success(),
            "lab provision: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Runs `argv` as root in `vm` (see [`Lab::run_as`]).
    pub fn run(&self, vm: &str, argv: &[&str]) -> Out {
        self.run_as(vm, "root", argv)
    }

    /// [`Lab::run`] that must succeed; returns the trimmed stdout.
    pub fn run_ok(&self, vm: &str, argv: &[&str]) -> String {
        self.run(vm, argv).expect_ok(&format!("[{vm}] {argv:?}"))
    }

    /// Runs the constant `script` (`sh -euc`) as root with `args` as `$1`, `$2`, ...:
    /// names reach the script as data, never as script text.
    pub fn script(&self, vm: &str, script: &str, args: &[&str]) -> String {
        let mut argv = vec!["sh", "-euc", script, "sh"];
        argv.extend(args);
        self.run_ok(vm, &argv)
    }

    /// Delegates `perms` (comma-separated) on `ds` to the lab user.
    pub fn allow(&self, vm: &str, perms: &str, ds: &str) {
        self.run_ok(vm, &["zfs", "allow", "-u", USER, perms, ds]);
    }

    /// Creates `ds` and delegates `perms` on it to the lab user: a job's source or
    /// receiving root.
    pub fn create_allowed(&self, vm: &str, ds: &str, perms: &str) {
        self.run_ok(vm, &["zfs", "create", ds]);
        self.allow(vm, perms, ds);
    }

    /// A fresh file-backed pool `name` in `vm` (destroyed first if a previous run left it).
    pub fn pool(&self, vm: &str, name: &str) {
        self.script(
            vm,
            r#"zpool destroy -f "$1" 2>/dev/null || true
               rm -f "/var/tmp/$1.img"
               truncate -s 1G "/var/tmp/$1.img"
               zpool create -O mountpoint="/$1" "$1" "/var/tmp/$1.img""#,
            &[name],
        );
    }

    /// An encrypted dataset (passphrase from a key file, as the users have it).
    pub fn encrypted(&self, vm: &str, ds: &str) {
        self.script(
            vm,
            r#"echo 'lab passphrase 0123' > /root/enc.key
               zfs create -o encryption=on -o keyformat=passphrase -o keylocation=file:///root/enc.key "$1""#,
            &[ds],
        );
    }

    /// Writes `mb` MiB of random data into a new file in mounted dataset `ds` and snapshots it.
    pub fn write_and_snap(&self, vm: &str, ds: &str, snap: &str, mb: u32) {
        self.script(
            vm,
            r#"mp=$(zfs get -Ho value mountpoint "$1")
               dd if=/dev/urandom of="$mp/$2.bin" bs=1M count="$3" status=none
               zfs snapshot "$1@$2""#,
            &[ds, snap, &mb.to_string()],
        );
    }

    /// `name guid` lines of the snapshots of `ds` (just `ds`, not its children), oldest first.
    pub fn guids(&self, vm: &str, ds: &str) -> Vec<(String, String)> {
        self.run_ok(
            vm,
            &[
                "zfs",
                "list",
                "-Hp",
                "-t",
                "snapshot",
                "-d",
                "1",
                "-s",
                "createtxg",
                "-o",
                "name,guid",
                ds,
            ],
        )
        .lines()
        .map(|l| {
            let (n, g) = l.split_once('\t').unwrap();
            (n.split_once('@').unwrap().1.to_string(), g.to_string())
        })
        .collect()
    }

    /// Copies the host file `src` to `dst` in `vm` (as root).
    pub fn copy_to(&self, vm: &str, src: &std::path::Path, dst: &str) {
        let src = src.to_str().expect("a UTF-8 path");
        let o = lab_cmd(&self.script, &["cp", vm, src, dst]);
        assert!(
            o.status.success(),
            "lab cp {vm} {src} {dst}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// One property of one dataset.
    pub fn prop(&self, vm: &str, ds: &str, prop: &str) -> String {
        self.run_ok(vm, &["zfs", "get", "-Hpo", "value", prop, ds])
    }

    /// The options of every `zfs receive` into `target`, from its pool's own history
    /// (what zfs ran, not what zferry says it ran), oldest first.
    pub fn receives(&self, vm: &str, target: &str) -> Vec<String> {
        let pool = target.split('/').next().expect("a pool");
        let end = format!(" {target}");
        self.run_ok(vm, &["zpool", "history", pool])
            .lines()
            .filter_map(|l| l.split_once(" zfs receive ").map(|(_, r)| r.trim()))
            .filter_map(|r| r.strip_suffix(end.as_str()))
            .map(str::to_string)
            .collect()
    }
}
