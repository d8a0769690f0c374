//! zferry: ZFS replication for home labs and small businesses.
//!
//! Arrows point down this list, never up (`tests/imports.rs` checks it):
//!
//! - front doors: `cli` (the only module that knows exit codes) and `ansible`;
//! - `sinks` (MQTT, pings, metrics, the run cycle) over `status` (classification and
//!   live listings) over `state` (the state directory: reports, history, locks);
//! - `replicate` executes plans and writes a `report` (plain data);
//! - `config` (jobs, `[notify]`, state settings), `prune` (retention), `snapshot`
//!   (zferry's own snapshots), `sides` (what is listed and held on each end of a job);
//! - `plan` decides (pure), `guard` is the SSH forced command, `allow` the delegations;
//! - leaves: `host` (commands, locally or over SSH), `zfs` (names, listings, argv),
//!   `log`, `progress`, `human` (units), `clock` (UTC calendar, now).

pub mod allow;
pub mod ansible;
pub mod cli;
pub mod clock;
pub mod config;
pub mod guard;
pub mod host;
pub mod human;
pub mod log;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod replicate;
pub mod report;
pub mod sides;
pub mod sinks;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod zfs;
