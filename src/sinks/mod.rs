//! Sinks: MQTT, healthchecks pings and the Prometheus textfile, and the cycle that
//! feeds them.
//!
//! One run of zferry as the sinks see it: lock each job, ping its start, save its
//! report, then tell every configured sink, and once all jobs finished, MQTT.
//!
//! The CLI calls [`Cycle::begin`] before and [`Cycle::finish`] after each job, and
//! [`Cycle::publish`] at the end, outside its async runtime.

pub mod mqtt;
pub mod ping;
pub mod prom;

use crate::clock::now;
use crate::config::notify::Notify;
use crate::config::Job;
use crate::human::human_secs;
use crate::log;
use crate::report::RunReport;
use crate::sides::cache::JobCache;
use crate::state::lock::{self, Acquire, JobLock, Wedged};
use crate::state::store;
use crate::status::classify::Thresholds;
use crate::status::{job_status, JobFacts, JobStatus, Seen};
use crate::zfs::name::Dataset;
use ping::Ping;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// This machine's name for topics (the kernel's hostname).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Settings of a cycle.
#[derive(Debug, Clone)]
pub struct Settings {
    /// State directory.
    pub state_dir: PathBuf,
    /// Sinks.
    pub notify: Notify,
    /// Staleness threshold, seconds.
    pub stale_after: u64,
    /// Per job: seconds the newest copy may be old (jobs not named: `stale_after`).
    pub max_snapshot_age: BTreeMap<String, u64>,
    /// Per job: its configured source roots (see [`JobFacts::roots`]; a job not named
    /// keeps every dataset its history knows).
    pub roots: BTreeMap<String, Vec<Dataset>>,
    /// Lock age past which a waiting run fails loudly, seconds.
    pub lock_max_age: u64,
}

/// What to do with a job.
pub enum Begin {
    /// Run it; the lock is held until the guard drops (after [`Cycle::finish`]).
    Run(Option<JobLock>),
    /// Another young run holds the lock: skip quietly.
    Skip,
    /// The lock is held past the threshold: this report says so; finish it, don't run.
    Wedged(RunReport),
}

/// One invocation's bookkeeping.
pub struct Cycle {
    settings: Settings,
    /// Statuses to publish, one per finished job.
    statuses: Vec<JobStatus>,
    /// A job was skipped because another run holds its lock: the cycle is not complete.
    skipped: bool,
    /// A lock was held past the threshold.
    pub wedged: bool,
    /// Saving state or a sink failed (already warned).
    pub sink_failed: bool,
}

fn job_report(name: &str, job: &Job, error: String) -> RunReport {
    let t = now();
    RunReport {
        job: name.to_string(),
        kind: job.kind,
        host: job.ssh.label(),
        started: t,
        finished: t,
        error: Some(error),
        ..RunReport::default()
    }
}

impl Cycle {
    /// A cycle with `settings`.
    pub fn new(settings: Settings) -> Cycle {
        Cycle {
            settings,
            statuses: Vec::new(),
            skipped: false,
            wedged: false,
            sink_failed: false,
        }
    }

    fn ping(&mut self, job: &str, kind: Ping, body: &str) {
        let Some(p) = &self.settings.notify.ping else {
            return;
        };
        let Some(url) = p.url(job) else {
            return;
        };
        if let Err(e) = ping::send(&url, kind, body, Duration::from_secs(p.timeout)) {
            log::warn!("job {job}: {e:#}");
            self.sink_failed = true;
        }
    }

    /// Takes the job's lock and pings its start.
    pub fn begin(&mut self, name: &str, job: &Job) -> Begin {
        match lock::acquire(&self.settings.state_dir, name) {
            Ok(Acquire::Held(l)) => {
                self.ping(name, Ping::Start, "");
                Begin::Run(Some(l))
            }
            Ok(Acquire::Busy { held, path }) => {
                match Wedged::check(held, self.settings.lock_max_age, path.clone()) {
                    Ok(held) => {
                        log::info!(
                            "job {name}: another run holds {} ({}, for {}); skipping this one",
                            path.display(),
                            held.holder,
                            human_secs(held.age)
                        );
                        self.skipped = true;
                        Begin::Skip
                    }
                    Err(w) => {
                        self.wedged = true;
                        Begin::Wedged(job_report(name, job, w.to_string()))
                    }
                }
            }
            Err(e) => Begin::Wedged(job_report(
                name,
                job,
                format!("cannot take the job lock: {e:#}"),
            )),
        }
    }

    /// The job's listing cache from its last run (empty when it has none, it is too
    /// old, or it cannot be read: a full listing then, and a warning for the last).
    pub fn cache(&self, job: &str) -> JobCache {
        match store::load_cache(&self.settings.state_dir, job) {
            Ok(c) => c.unwrap_or_default().usable(now()),
            Err(e) => {
                log::warn!("job {job}: listing everything: {e:#}");
                JobCache::default()
            }
        }
    }

    /// Saves the job's listing cache for its next run; a failure only costs that run a
    /// full listing, so it is a warning.
    pub fn save_cache(&self, job: &str, cache: &JobCache) {
        if let Err(e) = store::save_cache(&self.settings.state_dir, job, cache) {
            log::warn!("job {job}: the listing cache was not saved: {e:#}");
        }
    }

    /// Saves the report, writes the metrics and pings success or failure.
    pub fn finish(&mut self, r: &RunReport) {
        let dir = &self.settings.state_dir;
        let hist = match store::save_run(dir, r) {
            Ok(h) => h,
            Err(e) => {
                log::warn!("job {}: the report was not saved: {e:#}", r.job);
                self.sink_failed = true;
                let mut h = store::load_history(dir, &r.job).unwrap_or_default();
                h.record(r);
                h
            }
        };
        let st = job_status(JobFacts {
            job: &r.job,
            report: Some(r),
            history: &hist,
            seen: Seen::JustRan,
            now: now(),
            thresholds: Thresholds {
                stale_after: self.settings.stale_after,
                max_snapshot_age: self
                    .settings
                    .max_snapshot_age
                    .get(&r.job)
                    .copied()
                    .unwrap_or(self.settings.stale_after),
            },
            roots: self.settings.roots.get(&r.job).map(Vec::as_slice),
        });
        if let Some(d) = self.settings.notify.textfile_dir.clone() {
            if let Err(e) = prom::write(&d, &st) {
                log::warn!("job {}: metrics: {e:#}", r.job);
                self.sink_failed = true;
            }
        }
        match st.failure() {
            None => self.ping(&r.job, Ping::Success, &r.human()),
            Some(why) => self.ping(&r.job, Ping::Fail, &format!("{why}\n\n{}", r.human())),
        }
        self.statuses.push(st);
    }

    /// Publishes to MQTT; the post-run message only when every job ran to its end.
    /// Blocking; call it outside an async runtime.
    pub fn publish(&mut self) {
        let Some(m) = self.settings.notify.mqtt.clone() else {
            return;
        };
        if self.statuses.is_empty() && self.skipped {
            return;
        }
        let node = m.node.clone().unwrap_or_else(hostname);
        if let Err(e) = mqtt::publish(
            &m,
            &node,
            &self.statuses,
            self.settings.stale_after,
            !self.skipped,
        ) {
            log::warn!("{e:#}");
            self.sink_failed = true;
        }
    }
}
