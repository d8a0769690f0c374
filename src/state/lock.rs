//! Per-job lock: `flock(2)` on `<state dir>/<job>.lock`.
//!
//! The kernel drops the lock when the holder exits, however it dies, so there is no
//! PID file to go stale and no check-then-create race. The file is never deleted
//! (deleting a lock file lets two runs lock two different inodes). The holder writes
//! its pid and start time into it, which also sets the mtime the age is read from.

use super::store::{ensure_dir, job_path};
use crate::human::human_secs;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A held job lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

impl Drop for JobLock {
    /// Unlocks explicitly: closing our descriptor is not enough while a child forked by
    /// another thread still shares it between fork and exec, and the next run would see
    /// the job busy for that instant.
    fn drop(&mut self) {
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        unsafe { libc::flock(self._file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Result of trying to take the lock.
#[derive(Debug)]
pub enum Acquire {
    /// We hold it now.
    Held(JobLock),
    /// Another run holds it.
    Busy {
        /// Who, and since when.
        held: Holder,
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
        let held = read_holder(&mut file);
        return Ok(Acquire::Busy { held, path });
    }
    let stamp = format!(
        "pid {} started {}\n",
        std::process::id(),
        crate::clock::now()
    );
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(stamp.as_bytes()))
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write lock file {}", path.display()))?;
    Ok(Acquire::Held(JobLock { _file: file, path }))
}

/// A run holding a job's lock, as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Seconds since the holder took it (lock file mtime).
    pub age: u64,
    /// What the holder wrote (`pid N started T`).
    pub holder: String,
}

fn read_holder(file: &mut File) -> Holder {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let age = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .map_or(0, |d| d.as_secs());
    Holder {
        age,
        holder: holder.trim().to_string(),
    }
}

/// Whether a run holds job `job`'s lock, found in `/proc/locks` without taking the lock:
/// `zferry status` must not make a run that starts at that instant skip itself.
pub fn probe(dir: &Path, job: &str) -> Result<Option<Holder>> {
    let path = job_path(dir, job, ".lock");
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    let locks = std::fs::read_to_string("/proc/locks").context("cannot read /proc/locks")?;
    let dev = meta.dev();
    Ok(
        flock_held(&locks, libc::major(dev), libc::minor(dev), meta.ino())
            .then(|| read_holder(&mut file)),
    )
}

/// True when `/proc/locks` shows a granted `flock` on the inode (`MAJ:MIN:INODE`, the
/// device numbers in hex). Waiters (`->` lines) do not hold it.
fn flock_held(locks: &str, major: u32, minor: u32, ino: u64) -> bool {
    let id = format!("{major:02x}:{minor:02x}:{ino}");
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str())
    })
}

/// Start of a wedged lock's message: how a saved report (plain text in its JSON) is
/// recognised as one. Private, so the message and its recognition cannot drift apart.
const WEDGED_PREFIX: &str = "lock held for";

/// A run has held a job's lock past `lock_max_age`: it is wedged. The waiting run
/// reports this as its failure, and `status` shows it and exits 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{WEDGED_PREFIX} {} ({}), over the {} limit: a run is wedged; look at that process, the lock is {}",
    human_secs(.held.age),
    .held.holder,
    human_secs(*.max_age),
    .path.display()
)]
pub struct Wedged {
    /// Who holds it, and for how long.
    pub held: Holder,
    /// The limit it is past, seconds.
    pub max_age: u64,
    /// The lock file.
    pub path: PathBuf,
}

impl Wedged {
    /// The lock held by `held` is wedged when it is `max_age` old or older.
    pub fn check(held: Holder, max_age: u64, path: PathBuf) -> Result<Holder, Wedged> {
        if held.age < max_age {
            Ok(held)
        } else {
            Err(Wedged {
                held,
                max_age,
                path,
            })
        }
    }

    /// Whether a report's error, as saved in the state directory, was a wedged lock.
    pub fn is_saved_as(error: &str) -> bool {
        error.starts_with(WEDGED_PREFIX)
    }
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
            Acquire::Busy {
                held: Holder { age, holder },
                ..
            } => {
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

    #[test]
    fn probe_sees_a_held_lock_without_taking_it() {
        let dir = std::env::temp_dir().join(format!("zferry-probe-{}", std::process::id()));
        assert_eq!(probe(&dir, "job").unwrap(), None, "no lock file yet");
        let Acquire::Held(held) = acquire(&dir, "job").unwrap() else {
            panic!("first acquire must hold");
        };
        let seen = probe(&dir, "job").unwrap().expect("held lock not seen");
        assert!(seen
            .holder
            .starts_with(&format!("pid {} ", std::process::id())));
        assert!(seen.age < 5, "{seen:?}");
        assert_eq!(probe(&dir, "other").unwrap(), None);
        drop(held);
        // Another test thread forking (the quoting proptests run sh) shares the open
        // file until its child execs (O_CLOEXEC): allow that moment to pass.
        let released = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            probe(&dir, "job").unwrap().is_none()
        });
        assert!(released, "released, file still there");
        // The probe took nothing: the next run still gets the lock.
        assert!(matches!(acquire(&dir, "job").unwrap(), Acquire::Held(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flock_held_matches_device_and_inode_of_granted_flocks_only() {
        let locks = "1: POSIX  ADVISORY  WRITE 88 fe:01:4242 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 99 fe:00:10010667 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 100 fe:00:777 0 EOF\n";
        assert!(flock_held(locks, 0xfe, 0, 10_010_667));
        assert!(!flock_held(locks, 0xfe, 1, 10_010_667), "other device");
        assert!(!flock_held(locks, 0xfe, 1, 4242), "POSIX lock, not ours");
        assert!(
            !flock_held(locks, 0xfe, 0, 777),
            "a waiter does not hold it"
        );
        assert!(!flock_held(locks, 0xfe, 0, 1_001_066), "inode prefix");
    }

    #[test]
    fn a_lock_past_its_limit_is_wedged_and_its_saved_message_recognised() {
        let held = |age| Holder {
            age,
            holder: "pid 5 started 1".into(),
        };
        let path = PathBuf::from("/s/j.lock");
        assert_eq!(
            Wedged::check(held(3599), 3600, path.clone()),
            Ok(held(3599))
        );
        let w = Wedged::check(held(7300), 3600, path).unwrap_err();
        let text = w.to_string();
        assert_eq!(
            text,
            "lock held for 2h1m (pid 5 started 1), over the 1h0m limit: a run is wedged; look at that process, the lock is /s/j.lock"
        );
        assert!(Wedged::is_saved_as(&text));
        assert!(!Wedged::is_saved_as("cannot take the job lock: EIO"));
    }
}
