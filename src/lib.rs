//! zferry: ZFS replication for home labs and small businesses.
//!
//! `zfs` knows names, listings and argv; `host` runs commands locally or over SSH;
//! `plan` decides (pure); `replicate` executes plans; `report` tells what happened;
//! `cli` and `ansible` are the two front doors over the same jobs (`job`).

pub mod allow;
pub mod ansible;
pub mod cli;
pub mod guard;
pub mod host;
pub mod job;
pub mod plan;
pub mod replicate;
pub mod report;
pub mod zfs;
