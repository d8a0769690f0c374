//! Every test that needs the lab (QEMU guests with real OpenZFS, booted by `tests/lab/lab`),
//! in one binary: the VMs are booted or reused and provisioned once, and one failing theme
//! does not keep the others from running. Lab tests never skip: without a lab they fail
//! with the lab's own output. Each test makes its own file-backed pools (named after the
//! test), so tests run in parallel and can be re-run against the same VMs.
//!
//! What goes where (one module per promise of the README; tests/README.md maps them):
//! - `smoke`: the delegations replication needs, measured (a raw pull by the unprivileged
//!   user, a receive without `create` refused).
//! - `engine`: replication itself: pull, raw push with prefix mapping, GUID bases,
//!   bookmarks, holds, one SSH connection per host, failure isolation.
//! - `safety`: nothing lost, nothing destroyed: held bases, resume, divergence policies.
//! - `guard`: trust no peer: the SSH guard, forged resume tokens, raw-only keys.
//! - `snapshot`: zferry's own snapshots and replication-aware pruning on three tiers.
//! - `status`: never silent: every failure mode in status, pings, MQTT and metrics.
//! - `ansible`: the binary modules run as Ansible runs them.
//! - `package`: the .deb installs, replicates with /usr/bin/zferry, and removes cleanly.
//! - `zfs24`: OpenZFS 2.4 VMs, the mixed chain and the 2.4 delegations.
//!
//! Shared setup is in `common` (VMs, pools, zferry runs); `sinkpeers` (the MQTT broker and
//! HTTP receiver on the host) is shared with `tests/sinks.rs`.

mod common;
#[path = "../sinkpeers/mod.rs"]
mod sinkpeers;

mod ansible;
mod engine;
mod guard;
mod package;
mod safety;
mod smoke;
mod snapshot;
mod status;
mod zfs24;
