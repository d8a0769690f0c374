//! The OpenZFS 2.4 VMs (image `zfs24`, `tests/lab/image-zfs24.sh`) beside the 2.3 lab.
//!
//! `tests/lab/lab` boots a VM whose name ends in `24` from the zfs24 image (Debian 13,
//! OpenZFS 2.4 from trixie-backports). They share the lab key with the 2.3 VMs after
//! `lab provision`, so the user `zferry` reaches every VM from every VM.

use super::{lab, lab_cmd, Lab};
use std::sync::OnceLock;

/// The 2.4 VMs: a server and an offsite (the 2.3 `client` stays the client).
pub const VMS24: [&str; 2] = ["server24", "offsite24"];

/// The 2.3 lab (client, server, offsite, booted by [`lab`]) plus the 2.4 VMs, all booted
/// and provisioned once per run. The returned [`Lab`] reaches all five.
pub fn lab24() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let base = lab();
        let mut args = vec!["up"];
        args.extend(VMS24);
        let up = lab_cmd(&base.script, &args);
        assert!(
            up.status.success(),
            "the 2.4 VMs did not come up (tests/lab/lab up {}):\n{}{}",
            VMS24.join(" "),
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        let mut args = vec!["provision", env!("CARGO_BIN_EXE_zferry")];
        args.extend(VMS24);
        let o = lab_cmd(&base.script, &args);
        assert!(
            o.status.success(),
            "lab provision: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let env_out = lab_cmd(&base.script, &["env"]);
        let env = String::from_utf8_lossy(&env_out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Lab {
            script: base.script.clone(),
            env,
        }
    })
}

/// `zfs version`'s userland line in `vm` (e.g. `zfs-2.4.4-1~bpo13+1`).
pub fn zfs_version(lab: &Lab, vm: &str) -> String {
    lab.ok(vm, "zfs version | head -1")
}

/// Copies this build's zferry to `path` in `vm` (a private copy: test runs from other trees
/// may provision `/usr/local/bin/zferry` with their own build at any time).
pub fn install_as(lab: &Lab, vm: &str, path: &str) {
    let o = lab_cmd(&lab.script, &["cp", vm, env!("CARGO_BIN_EXE_zferry"), path]);
    assert!(
        o.status.success(),
        "lab cp {vm} {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
