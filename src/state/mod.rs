//! The state directory: each job's latest report and history ([`store`]) and the
//! per-job lock ([`lock`]). What `status` and the sinks read back; where it is and how
//! long a lock may be held are settings ([`crate::config`]).

pub mod lock;
pub mod store;
