//! Per-job lock: `flock(2)` on `<state dir>/<job>.lock`.
//!
//! The kernel drops the lock when the holder exits, however it dies, so there is no
//! PID file to go stale and no check-then-create race. The file is never deleted
//! (deleting a lock file lets two runs lock two different inodes). The holder writes
//! its pid and start time into it, which also sets the mtime the age is read from.

use super::store::{ensure_dir, job_path};
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Default for how long a lock may be held before waiting runs call it wedged: 6 h.
pub const DEFAULT_MAX_AGE: u64 = 6 * 3600;

/// A held job lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

/// Result of trying to take the lock.
#[derive(Debug)]
pub enum Acquire {
    /// We hold it now.
    Held(JobLock),
    /// Another run holds it.
    Busy {
        /// Seconds since the holder took it (lock file mtime).
        age: u64,
        /// What the holder wrote (`pid N started T`).
        holder: String,
        /// The lock file.
        path: PathBuf,
    },
}

/// Tries, without waiting, to lock job `job` in `dir`.
pub fn acquire(dir: &Path, job: &str) -> Result<Acquire> {
    ensure_dir(dir)?;
    let path = job_path(dir, job, ".lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let age = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .map_or(0, |d| d.as_secs());
        return Ok(Acquire::Busy {
            age,
            holder: holder.trim().to_string(),
            path,
        });
    }
    let stamp = format!("pid {} started {}\n", std::process::id(), super::now());
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(stamp.as_bytes()))
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write lock file {}", path.display()))?;
    Ok(Acquire::Held(JobLock { _file: file, path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_sees_busy_with_holder_and_age_until_release() {
        let dir = std::env::temp_dir().join(format!("zferry-lock-{}", std::process::id()));
        let Acquire::Held(held) = acquire(&dir, "job").unwrap() else {
            panic!("first acquire must hold");
        };
        // flock locks belong to the open file description: a second open conflicts,
        // even in the same process, as a second zferry would.
        match acquire(&dir, "job").unwrap() {
            Acquire::Busy { age, holder, .. } => {
                assert!(age < 5, "{age}");
                assert_eq!(
                    holder,
                    format!("pid {} started {}", std::process::id(), {
                        holder.rsplit(' ').next().unwrap()
                    })
                );
            }
            Acquire::Held(_) => panic!("lock taken twice"),
        }
        assert!(matches!(acquire(&dir, "other").unwrap(), Acquire::Held(_)));
        drop(held);
        assert!(matches!(acquire(&dir, "job").unwrap(), Acquire::Held(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
