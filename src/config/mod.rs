//! Settings: the config file (jobs, `[notify]` sinks, the state directory and its
//! thresholds), read and validated before anything touches a host.
//!
//! A replication job is defined once here and used by the CLI flags, the TOML config and
//! the Ansible modules alike. This module names no runtime module above it: reports,
//! status and sinks read their settings from here, never the other way round.

pub mod notify;

use crate::host::{Host, SshTarget};
use crate::plan::{MappingError, OnDivergence, RawMode};
use crate::sides::Sides;
use crate::zfs::name::{check_hold_tag, Dataset};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Direction of a job; in a run report's JSON, `pull` or `push`.
///
/// The default exists so a report can be filled in field by field; a config must
/// always name its kind (there is no serde default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Remote source, local target.
    #[default]
    Pull,
    /// Local source, remote target (always raw).
    Push,
}

impl Kind {
    /// `pull` or `push`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pull => "pull",
            Kind::Push => "push",
        }
    }

    /// Pull: the remote host is the source; push: it is the target.
    pub(crate) fn sides(self, remote: &Host) -> Sides {
        match self {
            Kind::Pull => Sides {
                source: remote.clone(),
                target: Host::Local,
            },
            Kind::Push => Sides {
                source: Host::Local,
                target: remote.clone(),
            },
        }
    }
}

/// A job's bandwidth limit in bytes per second (`bwlimit`), enforced in zferry's relay.
///
/// Written as bytes (`1048576`) or with a binary unit (`"512K"`, `"10M"`, `"1.5G"`), in
/// the config, on the command line and in the modules alike; zero and negative values are
/// refused (leave `bwlimit` out for no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "u64")]
pub struct BwLimit(u64);

impl BwLimit {
    /// Bytes per second.
    pub fn bytes_per_sec(self) -> u64 {
        self.0
    }
}

impl From<BwLimit> for u64 {
    fn from(b: BwLimit) -> u64 {
        b.0
    }
}

impl TryFrom<u64> for BwLimit {
    type Error = String;

    fn try_from(bytes: u64) -> std::result::Result<Self, String> {
        if bytes == 0 {
            return Err(
                "bwlimit 0 would stop every transfer; leave bwlimit out for no limit".into(),
            );
        }
        Ok(BwLimit(bytes))
    }
}

impl std::str::FromStr for BwLimit {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        crate::human::parse_bytes(s)
            .map_err(|e| format!("bwlimit {e}"))
            .and_then(BwLimit::try_from)
    }
}

impl<'de> Deserialize<'de> for BwLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BwLimit;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes per second: a number, or a string such as \"10M\" or \"1.5G\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<BwLimit, E> {
                BwLimit::try_from(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<BwLimit, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("bwlimit {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<BwLimit, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Wire compression of a job's plain (non-raw) streams (`compress`): `"zstd"` (level
/// [`Compress::DEFAULT_LEVEL`]), `"zstd:LEVEL"` (1..=19) or `"none"`, the default.
///
/// The far side compresses (`zfs send ... | zstd -c -LEVEL`, so it needs the `zstd`
/// program) and zferry's relay decompresses. Raw streams are never compressed: an
/// encrypted raw stream is noise to a compressor, so a job whose streams are all raw
/// (push, `raw = "always"`) refuses the option instead of ignoring it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// Streams cross as they are.
    #[default]
    None,
    /// zstd at this level.
    Zstd(u8),
}

impl Compress {
    /// zstd's own default level: fast, and most of the gain on typical data.
    pub const DEFAULT_LEVEL: u8 = 3;

    /// True for `none`.
    pub fn is_none(&self) -> bool {
        *self == Compress::None
    }
}

impl std::fmt::Display for Compress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compress::None => f.write_str("none"),
            Compress::Zstd(l) => write!(f, "zstd:{l}"),
        }
    }
}

impl std::str::FromStr for Compress {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let level = match s.split_once(':') {
            None if s == "none" => return Ok(Compress::None),
            None if s == "zstd" => Compress::DEFAULT_LEVEL,
            Some(("zstd", l)) => crate::zfs::cmd::zstd_level(l).ok_or_else(|| {
                format!(
                    "compress '{}': the zstd level must be 1 to {}",
                    s.escape_debug(),
                    crate::zfs::cmd::ZSTD_MAX_LEVEL
                )
            })?,
            _ => {
                return Err(format!(
                "compress '{}' is not known: use \"zstd\", \"zstd:LEVEL\" (1 to {}) or \"none\"",
                s.escape_debug(),
                crate::zfs::cmd::ZSTD_MAX_LEVEL
            ))
            }
        };
        Ok(Compress::Zstd(level))
    }
}

impl Serialize for Compress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Compress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A job's own value, at most the host's; the host's when the job has none.
fn capped<T: Ord>(job: Option<T>, host: Option<T>) -> Option<T> {
    match (job, host) {
        (Some(j), Some(h)) => Some(j.min(h)),
        (j, h) => j.or(h),
    }
}

/// `parallel` is at least 1 and at most [`MAX_PARALLEL`].
fn check_parallel(parallel: Option<usize>) -> Result<()> {
    match parallel {
        Some(0) => bail!("parallel = 0 would replicate nothing; use 1 for one dataset at a time"),
        Some(n) if n > MAX_PARALLEL => bail!(
            "parallel = {n} is more than {MAX_PARALLEL}: each dataset in flight holds an SSH session on the host's one master and sshd allows 10 sessions per master (MaxSessions)"
        ),
        _ => Ok(()),
    }
}

/// One job's options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "JobFields")]
pub struct Job {
    /// `pull` or `push`.
    pub kind: Kind,
    /// How to reach the remote side.
    #[serde(flatten)]
    pub ssh: SshTarget,
    /// Source datasets; each includes its children, each child its own stream.
    pub datasets: Vec<Dataset>,
    /// Root the copies go under (must exist).
    pub destination: Dataset,
    /// Pull only: directory under `destination` for this host (default: the host).
    #[serde(default)]
    pub name: Option<String>,
    /// Push only: prefix removed from source names (required for push).
    #[serde(default)]
    pub strip_prefix: Option<Dataset>,
    /// Raw sends: `auto` (raw for encrypted sources), `always`, `never`. Push is always raw.
    #[serde(default)]
    pub raw: RawMode,
    /// What may be done to a diverged target: `refuse`, `rollback_to_common`,
    /// `destroy_target_and_resend`.
    #[serde(default)]
    pub on_divergence: OnDivergence,
    /// Hold tag placed on the common base (default `zferry:<job>`).
    #[serde(default)]
    pub hold_tag: Option<String>,
    /// Seconds the newest copy may be old before `status` calls it stale, however in
    /// sync it is (default: the config's `max_snapshot_age`, else `stale_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_snapshot_age: Option<u64>,
    /// Bytes per second the job's streams may move together (no limit when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<BwLimit>,
    /// Datasets replicated at once, children after their parents (default
    /// [`DEFAULT_PARALLEL`], at most [`MAX_PARALLEL`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// Wire compression of plain streams (default none).
    #[serde(default, skip_serializing_if = "Compress::is_none")]
    pub compress: Compress,
}

/// Datasets a job replicates at once unless it says otherwise (`parallel`): faster than 4
/// on initial and catch-up runs alike (bench/parallel.md).
pub const DEFAULT_PARALLEL: usize = 8;

/// The most datasets a job replicates at once: each dataset in flight holds one session
/// on the remote host's one SSH connection (its stream, else its next command), a job
/// opens no more sessions than its `parallel` ([`crate::host::Host::at_most`]), and sshd
/// allows 10 per connection by default (`MaxSessions`).
pub const MAX_PARALLEL: usize = 8;

/// [`Job`] as it is written: flat, so a bad value's error names its field and line
/// (serde's `flatten` reports every error at the table instead).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFields {
    kind: Kind,
    host: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    identity_file: Option<PathBuf>,
    #[serde(default)]
    known_hosts_file: Option<PathBuf>,
    datasets: Vec<Dataset>,
    destination: Dataset,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    strip_prefix: Option<Dataset>,
    #[serde(default)]
    raw: RawMode,
    #[serde(default)]
    on_divergence: OnDivergence,
    #[serde(default)]
    hold_tag: Option<String>,
    #[serde(default)]
    max_snapshot_age: Option<u64>,
    #[serde(default)]
    bwlimit: Option<BwLimit>,
    #[serde(default)]
    parallel: Option<usize>,
    #[serde(default)]
    compress: Compress,
}

impl From<JobFields> for Job {
    fn from(f: JobFields) -> Job {
        Job {
            kind: f.kind,
            ssh: SshTarget {
                host: f.host,
                user: f.user,
                port: f.port,
                identity_file: f.identity_file,
                known_hosts_file: f.known_hosts_file,
            },
            datasets: f.datasets,
            destination: f.destination,
            name: f.name,
            strip_prefix: f.strip_prefix,
            raw: f.raw,
            on_divergence: f.on_divergence,
            hold_tag: f.hold_tag,
            max_snapshot_age: f.max_snapshot_age,
            bwlimit: f.bwlimit,
            parallel: f.parallel,
            compress: f.compress,
        }
    }
}

impl Job {
    /// Checks what serde cannot: options that only make sense together.
    pub fn validate(&self, job_name: &str) -> Result<()> {
        check_job_name(job_name)?;
        self.ssh
            .validate()
            .with_context(|| format!("job '{job_name}'"))?;
        if self.datasets.is_empty() {
            bail!("job '{job_name}': datasets is empty; name at least one source dataset");
        }
        check_parallel(self.parallel).with_context(|| format!("job '{job_name}'"))?;
        match self.kind {
            Kind::Push => {
                if self.raw == RawMode::Never {
                    bail!("job '{job_name}': push always sends raw (zfs send -w) so the key never leaves; remove raw = \"never\"");
                }
                let Some(strip) = &self.strip_prefix else {
                    bail!("job '{job_name}': push needs strip_prefix to map local names under the destination (in a config it defaults to the pull jobs' shared destination, the local backup root)");
                };
                for d in &self.datasets {
                    if !d.is_within(strip) {
                        bail!("job '{job_name}': dataset {d} is not under strip_prefix {strip}");
                    }
                }
            }
            Kind::Pull => {
                if self.strip_prefix.is_some() {
                    bail!("job '{job_name}': strip_prefix is for push jobs; pull jobs use name");
                }
                // `name` is one path component below the destination.
                let name = self.pull_name();
                if name.is_empty() {
                    bail!("job '{job_name}': name is empty; it is the directory under the destination that keeps this host's copies apart from other hosts'");
                }
                if name.contains('/') {
                    bail!("job '{job_name}': name '{name}' must be a single dataset component (no '/')");
                }
                self.destination.join(name).with_context(|| {
                    format!("job '{job_name}': name must be a valid dataset component")
                })?;
            }
        }
        if !self.compress.is_none() && self.raw_mode() == RawMode::Always {
            bail!(
                "job '{job_name}': compress = \"{}\" would compress nothing: {} sends only raw streams (zfs send -w), and encrypted raw streams do not compress; remove compress",
                self.compress,
                match self.kind {
                    Kind::Push => "a push",
                    Kind::Pull => "a pull with raw = \"always\"",
                }
            );
        }
        check_hold_tag(&self.hold_tag(job_name))
            .with_context(|| format!("job '{job_name}': hold_tag"))?;
        Ok(())
    }

    /// How many datasets this job replicates at once.
    pub fn parallel(&self) -> usize {
        self.parallel.unwrap_or(DEFAULT_PARALLEL)
    }

    /// The directory under the destination for a pull.
    pub fn pull_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.ssh.host)
    }

    /// Where each of the job's configured datasets lands: the roots of its copies.
    pub fn target_roots(&self) -> Result<Vec<Dataset>, MappingError> {
        self.datasets.iter().map(|d| self.target_of(d)).collect()
    }

    /// Where the copy of `source` goes: `destination/<name>/<source>` for a pull,
    /// `destination/<source minus strip_prefix>` for a push.
    pub fn target_of(&self, source: &Dataset) -> Result<Dataset, MappingError> {
        match self.kind {
            Kind::Pull => crate::plan::pull_target(&self.destination, self.pull_name(), source),
            Kind::Push => crate::plan::push_target(
                &self.destination,
                self.strip_prefix
                    .as_ref()
                    .ok_or(MappingError::NoStripPrefix)?,
                source,
            ),
        }
    }

    /// The hold tag for this job.
    pub fn hold_tag(&self, job_name: &str) -> String {
        self.hold_tag
            .clone()
            .unwrap_or_else(|| format!("zferry:{job_name}"))
    }

    /// Raw mode after the push rule.
    pub fn raw_mode(&self) -> RawMode {
        match self.kind {
            Kind::Push => RawMode::Always,
            Kind::Pull => self.raw,
        }
    }
}

/// A job name made safe as a file name (job names come from config keys and flags).
pub fn file_stem(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/zferry";

/// The state directory when neither the flag nor the config names one:
/// [`DEFAULT_STATE_DIR`] for root, `$XDG_STATE_HOME/zferry` (or `~/.local/state/zferry`)
/// for a delegated user, who cannot write under `/var/lib`.
pub fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from(DEFAULT_STATE_DIR);
    }
    match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x).join("zferry"),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".local/state/zferry"),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// Default staleness threshold: 26 h (a daily job plus slack).
pub const DEFAULT_STALE_AFTER: u64 = 26 * 3600;

/// Default for how long a lock may be held before waiting runs call it wedged: 6 h.
pub const DEFAULT_LOCK_MAX_AGE: u64 = 6 * 3600;

/// Command-line flags that override the config's state settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--stale-after` (`zferry status` only).
    pub stale_after: Option<u64>,
    /// `--lock-max-age`.
    pub lock_max_age: Option<u64>,
}

/// The state settings a command works with, each from its flag, else the config's key,
/// else its default: one precedence for `run`, `pull`, `push` and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// Where reports, history and locks live.
    pub state_dir: PathBuf,
    /// Seconds of lag before a copy is stale.
    pub stale_after: u64,
    /// Seconds a job lock may be held before it is a failure.
    pub lock_max_age: u64,
}

/// A job name must survive the trip to a file name (state, lock, metrics): not empty
/// there, and without control characters.
pub fn check_job_name(name: &str) -> Result<()> {
    if name.chars().any(char::is_control) {
        bail!("job name {name:?} has control characters");
    }
    if file_stem(name).is_empty() {
        bail!("job name {name:?} is empty as a file name (its state, lock and metrics files are named after it); use letters, digits, - _ .");
    }
    Ok(())
}

/// The config file `zferry run` reads and the roles template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where run reports go (default `/var/lib/zferry`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Seconds a copy may lag its source before `status` calls it stale (default 26 h).
    #[serde(default)]
    pub stale_after: Option<u64>,
    /// Seconds the newest copy of a dataset may be old before it is stale, for jobs that
    /// do not set their own (default: `stale_after`).
    #[serde(default)]
    pub max_snapshot_age: Option<u64>,
    /// Seconds a job lock may be held before a waiting run fails loudly (default 6 h).
    #[serde(default)]
    pub lock_max_age: Option<u64>,
    /// Sinks: MQTT, healthchecks pings, Prometheus textfile (all optional).
    #[serde(default)]
    pub notify: notify::Notify,
    /// Jobs by name, run in name order unless named on the command line.
    #[serde(default)]
    pub jobs: BTreeMap<String, Job>,
    /// zferry's own snapshots (`zferry snapshot`), by set name.
    #[serde(default)]
    pub snapshots: BTreeMap<String, crate::snapshot::SnapshotSet>,
    /// Retention (`zferry prune`), by policy name.
    #[serde(default)]
    pub prune: BTreeMap<String, crate::prune::PrunePolicy>,
    /// Defaults and caps for every job that reaches a host, by the jobs' `host`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostLimits>,
}

/// `[hosts."name"]`: the default and the cap for every job whose `host` is `name`. Jobs
/// run one after another, so a cap on each job is a cap on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostLimits {
    /// Datasets at once for the host's jobs: their default, and the most they may ask.
    #[serde(default)]
    pub parallel: Option<usize>,
    /// Bytes per second for the host's jobs: their default, and the most they may ask.
    #[serde(default)]
    pub bwlimit: Option<BwLimit>,
}

impl Config {
    /// The state settings with `flags` applied over this config's keys.
    pub fn state_settings(&self, flags: Overrides) -> StateSettings {
        StateSettings {
            state_dir: flags
                .state_dir
                .or(self.state_dir.clone())
                .unwrap_or_else(default_state_dir),
            stale_after: flags
                .stale_after
                .or(self.stale_after)
                .unwrap_or(DEFAULT_STALE_AFTER),
            lock_max_age: flags
                .lock_max_age
                .or(self.lock_max_age)
                .unwrap_or(DEFAULT_LOCK_MAX_AGE),
        }
    }

    /// Seconds the newest copy of `job`'s datasets may be old, when the job or the
    /// config sets it (otherwise the staleness threshold applies).
    pub fn max_snapshot_age(&self, job: &Job) -> Option<u64> {
        job.max_snapshot_age.or(self.max_snapshot_age)
    }

    /// Reads and validates a TOML config.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in config {}", path.display()))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config> {
        let mut cfg: Config = toml::from_str(text)?;
        cfg.default_strip_prefix();
        cfg.apply_host_limits()?;
        for (name, set) in &cfg.snapshots {
            if set.datasets.is_empty() || set.periods.is_empty() {
                bail!("snapshot set '{name}': datasets and periods must both name at least one");
            }
        }
        for (name, p) in &cfg.prune {
            p.validate(name)?;
        }
        cfg.check_thresholds()?;
        let mut stems: BTreeMap<String, &str> = BTreeMap::new();
        for (name, job) in &cfg.jobs {
            job.validate(name)?;
            if let Some(other) = stems.insert(file_stem(name), name) {
                bail!("jobs '{other}' and '{name}' would share the state, lock and metrics files '{}.*'; rename one", file_stem(name));
            }
        }
        Ok(cfg)
    }

    /// A recovery-point threshold shorter than the snapshot schedule's shortest period
    /// would call every copy stale between two snapshots.
    fn check_thresholds(&self) -> Result<()> {
        let Some(shortest) = self
            .snapshots
            .values()
            .flat_map(|s| s.periods.iter().copied())
            .min_by_key(|p| p.longest())
        else {
            return Ok(());
        };
        let thresholds = std::iter::once(("the config", self.max_snapshot_age)).chain(
            self.jobs
                .iter()
                .map(|(n, j)| (n.as_str(), j.max_snapshot_age)),
        );
        for (who, age) in thresholds {
            if let Some(age) = age.filter(|a| *a < shortest.longest()) {
                bail!(
                    "{}: max_snapshot_age {age} is shorter than the snapshot schedule's shortest period ({}, {} s): every copy would be stale between two snapshots",
                    if who == "the config" { who.to_string() } else { format!("job '{who}'") },
                    shortest.as_str(),
                    shortest.longest()
                );
            }
        }
        Ok(())
    }

    /// Caps each job by its host's `[hosts]` entry; an entry no job reaches is a typo
    /// that would leave a host unlimited, so it is refused.
    fn apply_host_limits(&mut self) -> Result<()> {
        for (host, limits) in &self.hosts {
            check_parallel(limits.parallel).with_context(|| format!("hosts.{host:?}"))?;
            let mut used = false;
            for job in self.jobs.values_mut().filter(|j| &j.ssh.host == host) {
                used = true;
                job.parallel = capped(job.parallel, limits.parallel);
                job.bwlimit = capped(job.bwlimit, limits.bwlimit);
            }
            if !used {
                let reached: std::collections::BTreeSet<&str> =
                    self.jobs.values().map(|j| j.ssh.host.as_str()).collect();
                bail!(
                    "hosts.{host:?} matches no job's host; the jobs reach: {}",
                    reached.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
        }
        Ok(())
    }

    /// A push job without `strip_prefix` strips the local backup root: the one
    /// destination all pull jobs share. With none or several, it stays unset and
    /// validation asks for it.
    fn default_strip_prefix(&mut self) {
        let roots: std::collections::BTreeSet<Dataset> = self
            .jobs
            .values()
            .filter(|j| j.kind == Kind::Pull)
            .map(|j| j.destination.clone())
            .collect();
        if roots.len() != 1 {
            return;
        }
        let root = roots.into_iter().next().expect("one root");
        for job in self.jobs.values_mut() {
            if job.kind == Kind::Push && job.strip_prefix.is_none() {
                job.strip_prefix = Some(root.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull_job(extra: &str) -> String {
        format!("kind = \"pull\"\nhost = \"client\"\ndatasets = [\"tank/data\"]\ndestination = \"backup\"\n{extra}")
    }

    #[test]
    fn job_names_must_map_to_distinct_files() {
        let two = format!(
            "[jobs.\"a b\"]\n{}\n[jobs.a_b]\n{}",
            pull_job(""),
            pull_job("")
        );
        let e = format!("{:#}", Config::parse(&two).unwrap_err());
        assert!(e.contains("'a b'") && e.contains("'a_b'"), "{e}");
        for bad in ["", ".", "..", "\\u0001x"] {
            let cfg = format!("[jobs.\"{bad}\"]\n{}", pull_job(""));
            let e = format!("{:#}", Config::parse(&cfg).unwrap_err());
            assert!(e.contains("job name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn value_errors_point_at_their_field() {
        for (extra, field) in [
            ("port = 99999", "port"),
            ("user = 5", "user"),
            ("identity_file = 3", "identity_file"),
            ("hold_tag = 1", "hold_tag"),
        ] {
            let cfg = format!("[jobs.p]\n{}", pull_job(extra));
            let e = format!("{:#}", Config::parse(&cfg).unwrap_err());
            assert!(e.contains(&format!("| {extra}")), "{extra}: {e}");
            assert!(!e.contains("[jobs.p]"), "points at the table: {field}: {e}");
        }
    }

    #[test]
    fn bad_lifecycle_policies_are_refused_naming_the_field() {
        let snap = "[snapshots.s]\ndatasets = [\"tank/data\"]\nperiods = [\"hourly\"]\n";
        let short = format!("{snap}[jobs.p]\n{}", pull_job("max_snapshot_age = 600"));
        let e = format!("{:#}", Config::parse(&short).unwrap_err());
        assert!(
            e.contains("job 'p'") && e.contains("max_snapshot_age 600") && e.contains("hourly"),
            "{e}"
        );
        assert!(Config::parse(&format!(
            "{snap}[jobs.p]\n{}",
            pull_job("max_snapshot_age = 7200")
        ))
        .is_ok());
        for (bad, at) in [
            (
                "[snapshots.s]\ndatasets = [\"t/a\"]\nperiods = [\"often\"]\n",
                "periods",
            ),
            (
                "[prune.p]\ndatasets = [\"t/a\"]\nkeep = { hourly = -1 }\n",
                "keep",
            ),
            (
                "[prune.p]\ndatasets = [\"t/a\"]\nkeep = { often = 1 }\n",
                "keep",
            ),
            (
                "[prune.p]\ndatasets = [\"t/a\"]\nkeep = {}\n",
                "prune policy 'p'",
            ),
            (
                "[prune.p]\ndatasets = [\"t/a\"]\nkeep_prefix = { \"\" = 1 }\n",
                "prune policy 'p', keep_prefix ''",
            ),
            (
                "[prune.p]\ndatasets = [\"t/a\"]\nkeep_prefix = { \"m-\" = -1 }\n",
                "keep_prefix",
            ),
            (
                "[snapshots.s]\ndatasets = []\nperiods = [\"daily\"]\n",
                "snapshot set 's'",
            ),
        ] {
            let e = format!("{:#}", Config::parse(bad).unwrap_err());
            assert!(e.contains(at), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_job_and_the_field() {
        let empty = format!("[jobs.p]\n{}", pull_job("name = \"\""));
        let e = format!("{:#}", Config::parse(&empty).unwrap_err());
        assert!(e.contains("job 'p'") && e.contains("name is empty"), "{e}");
        let tag = format!("[jobs.p]\n{}", pull_job("hold_tag = \"-r\""));
        let e = format!("{:#}", Config::parse(&tag).unwrap_err());
        assert!(
            e.contains("job 'p'") && e.contains("hold_tag") && e.contains("'-'"),
            "{e}"
        );
    }

    #[test]
    fn parses_pull_and_push_jobs() {
        let cfg = Config::parse(
            r#"
            [jobs.pull-client]
            kind = "pull"
            host = "client"
            user = "zferry"
            port = 2222
            datasets = ["tank/data"]
            destination = "backup"

            [jobs.offsite]
            kind = "push"
            host = "offsite"
            datasets = ["backup/client"]
            destination = "tank/backups"
            strip_prefix = "backup"
            on_divergence = "rollback_to_common"
            "#,
        )
        .unwrap();
        let pull = &cfg.jobs["pull-client"];
        assert_eq!(pull.ssh.port, Some(2222));
        assert_eq!(pull.pull_name(), "client");
        assert_eq!(pull.hold_tag("pull-client"), "zferry:pull-client");
        let push = &cfg.jobs["offsite"];
        assert_eq!(push.raw_mode(), RawMode::Always);
        assert_eq!(push.on_divergence, OnDivergence::RollbackToCommon);
    }

    #[test]
    fn push_strips_the_pull_jobs_backup_root_by_default() {
        let cfg = Config::parse(
            r#"
            [jobs.a]
            kind = "pull"
            host = "client"
            datasets = ["tank/data"]
            destination = "slowpool/encryptedbackups"
            [jobs.b]
            kind = "push"
            host = "offsite"
            datasets = ["slowpool/encryptedbackups/client"]
            destination = "tank/backups"
            "#,
        )
        .unwrap();
        assert_eq!(
            cfg.jobs["b"].strip_prefix.as_ref().unwrap().as_str(),
            "slowpool/encryptedbackups"
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        for (text, needle) in [
            ("[jobs.a]\nkind='pull'\nhost='h'\ndatasets=['t/a;x']\ndestination='b'\n", "invalid ZFS name"),
            ("[jobs.a]\nkind='pull'\nhost='h'\ndatasets=['t/a']\ndestination='b'\nbogus=1\n", "bogus"),
            ("[jobs.a]\nkind='push'\nhost='h'\ndatasets=['t/a']\ndestination='b'\n", "strip_prefix"),
            ("[jobs.a]\nkind='push'\nhost='h'\ndatasets=['x/a']\ndestination='b'\nstrip_prefix='t'\n", "not under strip_prefix"),
            ("[jobs.a]\nkind='push'\nhost='h'\ndatasets=['t/a']\ndestination='b'\nstrip_prefix='t'\nraw='never'\n", "always sends raw"),
            ("[jobs.a]\nkind='pull'\nhost='h'\ndatasets=[]\ndestination='b'\n", "datasets is empty"),
            ("[jobs.a]\nkind='pull'\nhost='-oProxyCommand=x'\nname='n'\ndatasets=['t/a']\ndestination='b'\n", "job 'a': host '-oProxyCommand=x' is not a host name"),
            ("[jobs.a]\nkind='pull'\nhost=\"h\\nx\"\nname='n'\ndatasets=['t/a']\ndestination='b'\n", "host 'h\\nx'"),
            ("[jobs.a]\nkind='pull'\nhost='u@h'\ndatasets=['t/a']\ndestination='b'\n", "the user goes in user"),
            ("[jobs.a]\nkind='pull'\nhost='h'\nuser='-lroot'\ndatasets=['t/a']\ndestination='b'\n", "user '-lroot' is not a login name"),
            ("[jobs.a]\nkind='pull'\nhost='h'\ndatasets=['t/a']\ndestination='b'\nparallel=0\n", "job 'a': parallel = 0 would replicate nothing"),
            ("[jobs.a]\nkind='pull'\nhost='h'\ndatasets=['t/a']\ndestination='b'\nparallel=9\n", "job 'a': parallel = 9 is more than 8"),
            ("[jobs.a]\nkind='pull'\nhost='h'\ndatasets=['t/a']\ndestination='b'\nparallel=-2\n", "parallel=-2"),
        ] {
            let e = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn a_hosts_limits_are_its_jobs_default_and_cap() {
        let cfg = Config::parse(&format!(
            "[hosts.client]\nparallel = 2\nbwlimit = '1M'\n[jobs.a]\n{}\n[jobs.b]\n{}\n[jobs.c]\n{}",
            pull_job("parallel = 8\nbwlimit = '512K'\nname = 'a'"),
            pull_job("name = 'b'"),
            pull_job("name = 'c'\nhost = 'other'").replace("host = \"client\"\n", ""),
        ))
        .unwrap();
        let lim = |j: &str| {
            let j = &cfg.jobs[j];
            (j.parallel(), j.bwlimit.map(BwLimit::bytes_per_sec))
        };
        assert_eq!(
            lim("a"),
            (2, Some(512 << 10)),
            "capped, and its own lower limit kept"
        );
        assert_eq!(lim("b"), (2, Some(1 << 20)), "the host's as default");
        assert_eq!(
            lim("c"),
            (DEFAULT_PARALLEL, None),
            "another host: untouched"
        );
        for (hosts, needle) in [
            (
                "[hosts.clinet]\nparallel = 2\n",
                "hosts.\"clinet\" matches no job's host; the jobs reach: client",
            ),
            (
                "[hosts.client]\nparallel = 0\n",
                "hosts.\"client\": parallel = 0",
            ),
            ("[hosts.client]\nbwlimit = '0'\n", "bwlimit 0"),
            ("[hosts.client]\nspeed = 2\n", "unknown field `speed`"),
        ] {
            let e = Config::parse(&format!("{hosts}[jobs.a]\n{}", pull_job("")))
                .map(|_| String::new())
                .unwrap_or_else(|e| format!("{e:#}"));
            assert!(e.contains(needle), "{hosts}: {e}");
        }
    }

    #[test]
    fn bwlimit_is_bytes_or_a_size_and_never_zero_or_negative() {
        let job = |v: &str| {
            Config::parse(&format!(
                "[jobs.a]\nkind='pull'\nhost='h'\ndatasets=['t/a']\ndestination='b'\nbwlimit={v}\n"
            ))
            .map(|c| c.jobs["a"].bwlimit.map(BwLimit::bytes_per_sec))
            .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(job("1048576"), Ok(Some(1 << 20)));
        assert_eq!(job("'10M'"), Ok(Some(10 << 20)));
        assert_eq!(job("'1.5G'"), Ok(Some(3 << 29)));
        for (v, needle) in [
            ("0", "bwlimit 0 would stop every transfer"),
            ("-5", "bwlimit -5 is negative"),
            ("'10X'", "bwlimit '10X' is not a size"),
            ("1.5", "expected bytes per second"),
            ("'0K'", "bwlimit 0"),
        ] {
            let e = job(v).unwrap_err();
            // toml shows the line, so the job's table and the field are in the message.
            assert!(e.contains(needle) && e.contains("bwlimit="), "{v}: {e}");
        }
    }

    #[test]
    fn compress_is_zstd_with_a_level_or_none_and_only_where_streams_can_be_plain() {
        let job = |kind: &str, extra: &str| {
            let strip = if kind == "push" {
                "strip_prefix='t'"
            } else {
                ""
            };
            Config::parse(&format!(
                "[jobs.a]\nkind='{kind}'\nhost='h'\ndatasets=['t/a']\ndestination='b'\n{strip}\n{extra}\n"
            ))
            .map(|c| c.jobs["a"].compress)
            .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(job("pull", ""), Ok(Compress::None));
        assert_eq!(job("pull", "compress='none'"), Ok(Compress::None));
        assert_eq!(job("pull", "compress='zstd'"), Ok(Compress::Zstd(3)));
        assert_eq!(job("pull", "compress='zstd:19'"), Ok(Compress::Zstd(19)));
        assert_eq!(
            job("pull", "compress='zstd:1'\nraw='never'"),
            Ok(Compress::Zstd(1))
        );
        for (kind, v, needle) in [
            ("pull", "compress='lz4'", "compress 'lz4' is not known: use \"zstd\""),
            ("pull", "compress='zstd:0'", "the zstd level must be 1 to 19"),
            ("pull", "compress='zstd:22'", "the zstd level must be 1 to 19"),
            ("pull", "compress='zstd:'", "the zstd level must be 1 to 19"),
            ("pull", "compress=3", "expected a string"),
            ("pull", "compress='zstd'\nraw='always'", "job 'a': compress = \"zstd:3\" would compress nothing: a pull with raw = \"always\""),
            ("push", "compress='zstd:2'", "job 'a': compress = \"zstd:2\" would compress nothing: a push sends only raw streams"),
        ] {
            let e = job(kind, v).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
        // Written back as it was read (a job serializes with its config's spelling).
        assert_eq!(Compress::Zstd(7).to_string().parse(), Ok(Compress::Zstd(7)));
        assert_eq!(Compress::None.to_string().parse(), Ok(Compress::None));
    }

    #[test]
    fn state_settings_take_the_flag_then_the_config_then_the_default() {
        let cfg = Config::parse("state_dir = \"/s\"\nlock_max_age = 60\n").unwrap();
        let none = cfg.state_settings(Overrides::default());
        assert_eq!(
            (none.state_dir, none.stale_after, none.lock_max_age),
            (PathBuf::from("/s"), DEFAULT_STALE_AFTER, 60)
        );
        let flags = cfg.state_settings(Overrides {
            state_dir: Some("/f".into()),
            stale_after: Some(5),
            lock_max_age: Some(7),
        });
        assert_eq!(
            (flags.state_dir, flags.stale_after, flags.lock_max_age),
            (PathBuf::from("/f"), 5, 7)
        );
        let bare = Config::default().state_settings(Overrides::default());
        assert_eq!(
            (bare.state_dir, bare.lock_max_age),
            (default_state_dir(), DEFAULT_LOCK_MAX_AGE)
        );
    }
}
