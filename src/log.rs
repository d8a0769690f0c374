//! Human log lines on stderr, at the verbosity chosen on the command line.
//!
//! `-q` keeps only warnings and errors; `-v` adds every command exactly as run.
//! A leaf of the module graph (like ripgrep's `messages.rs`): anything, `host`
//! included, may log through the `log::info!`, `log::warn!` and `log::debug!` macros, which
//! take `format!` arguments so a line is only built when it is shown.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(1);

/// Sets the level: 0 quiet, 1 normal, 2 verbose.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The current level.
pub fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

/// Progress and results (`format!` arguments); not with `-q`.
macro_rules! info {
    ($($arg:tt)*) => {
        if $crate::log::level() >= 1 {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use info;

/// Something the user should look at, even with `-q` (`format!` arguments).
macro_rules! warning {
    ($($arg:tt)*) => {
        eprintln!("warning: {}", format_args!($($arg)*))
    };
}
// Renamed on export: a bare `warn` would be ambiguous with the `#[warn]` attribute.
pub(crate) use warning as warn;

/// Details for `-v` (`format!` arguments).
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::level() >= 2 {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use debug;

/// A command about to run, pasteable as shown.
pub fn command(host: &str, cmd: &str) {
    if level() >= 2 {
        eprintln!("+ [{host}] {cmd}");
    }
}
