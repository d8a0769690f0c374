//! Human log lines on stderr, at the verbosity chosen on the command line.
//!
//! `-q` keeps only warnings and errors; `-v` adds every command exactly as run.

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

/// Progress and results.
pub fn info(msg: &str) {
    if level() >= 1 {
        eprintln!("{msg}");
    }
}

/// Something the user should look at, even with `-q`.
pub fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

/// Details for `-v`.
pub fn debug(msg: &str) {
    if level() >= 2 {
        eprintln!("{msg}");
    }
}

/// A command about to run, pasteable as shown.
pub fn command(host: &str, cmd: &str) {
    if level() >= 2 {
        eprintln!("+ [{host}] {cmd}");
    }
}
