//! Two lab VMs, `client` and `server`, for tests that need no offsite: booted (or reused)
//! and provisioned once per test binary, like [`lab`](super::lab) does for all three.
#![allow(dead_code)]

use super::{lab_cmd, Lab};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The VMs [`lab_pair`] boots.
pub const PAIR: [&str; 2] = ["client", "server"];

/// `client` and `server` up, with this build's zferry in `/usr/local/bin` and the user
/// `zferry` holding the lab key on both (so they reach each other at 10.0.2.2).
pub fn lab_pair() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab");
        let mut args = vec!["up"];
        args.extend(PAIR);
        let up = lab_cmd(&script, &args);
        assert!(
            up.status.success(),
            "the lab did not come up (tests/lab/lab up {}):\n{}{}",
            PAIR.join(" "),
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        let mut args = vec!["provision", env!("CARGO_BIN_EXE_zferry")];
        args.extend(PAIR);
        let o = lab_cmd(&script, &args);
        assert!(
            o.status.success(),
            "lab provision: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let env_out = lab_cmd(&script, &["env"]);
        let env = String::from_utf8_lossy(&env_out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Lab { script, env }
    })
}

/// Copies the host file `src` to `dst` in `vm` (as root).
pub fn copy_to(lab: &Lab, vm: &str, src: &Path, dst: &str) {
    let src = src.to_str().expect("a UTF-8 path");
    let o = lab_cmd(&lab.script, &["cp", vm, src, dst]);
    assert!(
        o.status.success(),
        "lab cp {vm} {src} {dst}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
