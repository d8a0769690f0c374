//! zferry: ZFS replication for home labs and small businesses.
//!
//! `zfs` knows names, listings and argv; `host` runs commands locally or over SSH;
//! `plan` decides (pure); `replicate` executes plans; `report` tells what happened;
//! `snapshot` takes zferry's own snapshots; `clock` is UTC calendar arithmetic;
//! `cli` and `ansible` are the two front doors over the same jobs (`job`).

pub mod allow;
pub mod ansible;
pub mod cli;
pub mod clock;
pub mod guard;
pub mod host;
pub mod human;
pub mod job;
pub mod log;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod replicate;
pub mod report;
pub mod snapshot;
pub mod zfs;
