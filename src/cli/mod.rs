//! The command line: a thin door over `config`, `replicate`, `status` and `sinks`, and
//! the one place outcomes become exit codes.

use crate::config::{BwLimit, Compress, Config, Job, Kind, Overrides};
use crate::host::Pool;
use crate::host::SshTarget;
use crate::log;
use crate::plan::{OnDivergence, RawMode};
use crate::replicate::{run_job, RunOptions};
use crate::report::RunReport;
use crate::sinks::{Begin, Cycle, Settings};
use crate::status::Outcome;
use crate::zfs::name::Dataset;
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

mod generate;

/// Exit codes, documented in the README.
pub mod exit {
    /// Everything succeeded.
    pub const OK: u8 = 0;
    /// A job or dataset failed, was refused, is stale or missing.
    pub const FAILED: u8 = 1;
    /// Bad command line or config: nothing was touched.
    pub const USAGE: u8 = 2;
    /// A job's lock was held past its limit (a wedged run).
    pub const LOCK: u8 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "zferry",
    version,
    about = "ZFS replication you can trust with your only offsite copy"
)]
struct Cli {
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log every zfs and ssh command exactly as run.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Where run reports and job locks live (default: the config's state_dir, else
    /// /var/lib/zferry for root, ~/.local/state/zferry for other users).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Seconds a job lock may be held before a waiting run fails with exit 3
    /// (default: the config's lock_max_age, else 21600).
    #[arg(long, global = true)]
    lock_max_age: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Receive datasets from a remote host into DESTINATION/<name>/<source path>.
    Pull(PullArgs),
    /// Send local datasets raw to a remote host under DESTINATION.
    Push(PushArgs),
    /// Run jobs from a TOML config (all jobs, or those named).
    Run(RunArgs),
    /// Show what `run` would do, with estimated bytes; changes nothing.
    Plan(RunArgs),
    /// SSH forced command: run only the exact zfs commands zferry sends, for datasets
    /// under --root (reads SSH_ORIGINAL_COMMAND; rejections go to stderr and syslog).
    Serve(ServeArgs),
    /// List this tool's holds on every host the jobs touch; release the stale ones
    /// (tags of removed jobs) with --release-stale. Never touches anyone else's holds.
    Holds(HoldsArgs),
    /// Parse and validate a config without contacting any host (exit 0 valid, 2 not);
    /// the roles use it to validate the templated config before installing it.
    Check(CheckArgs),
    /// Take the snapshots that are due (config [snapshots.NAME]): one atomic
    /// `zfs snapshot -r` per tree, named autosnap_<UTC time>_<period>.
    Snapshot(SnapshotArgs),
    /// Destroy snapshots past the retention policy (config [prune.NAME]), never a held
    /// one, a dataset's newest, or one a replication has not received yet.
    Prune(SnapshotArgs),
    /// Per dataset: last success, newest snapshot on each side, lag, and a state
    /// (ok, stale, missing, failed). Exit 0 all ok, 1 not, 2 usage, 3 wedged lock.
    Status(StatusArgs),
    /// Man pages and shell completions from these definitions (for packagers).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Side this key serves: send (source) or receive (target).
    #[arg(long, value_enum)]
    mode: crate::guard::Mode,
    /// Dataset commands may touch, with its descendants (repeatable).
    #[arg(long = "root", required = true)]
    roots: Vec<Dataset>,
    /// Receive side: allow `zfs rollback -r` (on_divergence = rollback_to_common).
    #[arg(long)]
    allow_rollback: bool,
    /// Receive side: allow `zfs destroy -r` and `zfs receive -A` (destroy_target_and_resend,
    /// discarding stale partial receives).
    #[arg(long)]
    allow_destroy: bool,
    /// No plaintext crosses this key: send side, only raw sends (`zfs send -w`) and raw
    /// resume tokens; receive side, only streams whose first record says raw.
    #[arg(long)]
    raw_only: bool,
    /// Hold tags this key may place and release start with this.
    #[arg(long, default_value = crate::guard::HOLD_PREFIX)]
    hold_prefix: String,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// TOML config file.
    #[arg(long, default_value = "/etc/zferry/zferry.toml")]
    config: PathBuf,
}

/// `zferry check`: the config parses and every job validates.
#[derive(Args, Debug)]
struct SnapshotArgs {
    /// TOML config file.
    #[arg(long, default_value = "/etc/zferry/zferry.toml")]
    config: PathBuf,
    /// Snapshot sets to take (default: all).
    sets: Vec<String>,
    /// Say what is due; take nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `work` on each entry of a config table the command line selects (all when none
/// named): snapshot sets, prune policies. `show` logs one result and says whether it
/// needs an admin (exit 1); `--json` prints every result.
fn for_each_entry<T, R: serde::Serialize>(
    a: &SnapshotArgs,
    table: impl Fn(&Config) -> &BTreeMap<String, T>,
    what: &str,
    work: impl Fn(&tokio::runtime::Runtime, &T, u64) -> anyhow::Result<Vec<R>>,
    show: impl Fn(&str, &R) -> bool,
) -> ExitCode {
    let cfg = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zferry: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let all = table(&cfg);
    if let Some(bad) = a.sets.iter().find(|s| !all.contains_key(*s)) {
        eprintln!("zferry: no {what} '{bad}' in {}", a.config.display());
        return ExitCode::from(exit::USAGE);
    }
    let rt = crate::host::runtime().expect("tokio runtime");
    let now = crate::clock::now();
    let mut results = Vec::new();
    let mut alarm = false;
    for (name, entry) in all
        .iter()
        .filter(|(n, _)| a.sets.is_empty() || a.sets.contains(n))
    {
        match work(&rt, entry, now) {
            Ok(rs) => {
                for r in &rs {
                    alarm |= show(name, r);
                }
                results.extend(rs);
            }
            Err(e) => {
                alarm = true;
                log::warn!("{what} {name}: {e:#}");
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).expect("serializes")
        );
    }
    ExitCode::from(if alarm { exit::FAILED } else { exit::OK })
}

/// `zferry snapshot`: exit 0 when every due snapshot was taken, 1 when one failed.
fn snapshot(a: SnapshotArgs) -> ExitCode {
    let local = crate::host::Host::Local;
    let show = |name: &str, t: &crate::snapshot::Taken| {
        let what = if t.due.names.is_empty() {
            "nothing due".to_string()
        } else {
            let verb = if a.dry_run { "would take" } else { "took" };
            format!("{verb} @{}", t.due.names.join(", @"))
        };
        let notes = match t.due.notes.is_empty() {
            true => String::new(),
            false => format!(" ({})", t.due.notes.join("; ")),
        };
        match &t.error {
            Some(e) => log::warn!("{name}: {}: FAILED {what}: {e}", t.due.root),
            None => log::info!("{name}: {}: {what}{notes}", t.due.root),
        }
        t.error.is_some()
    };
    for_each_entry(
        &a,
        |c| &c.snapshots,
        "snapshot set",
        |rt, set, now| rt.block_on(crate::snapshot::take(&local, set, now, a.dry_run)),
        show,
    )
}

/// `zferry prune`: exit 0 when everything due was destroyed and no pin was lifted, 1
/// otherwise (a failure, or a stalled job's pin lifted: both need an admin).
fn prune(a: SnapshotArgs) -> ExitCode {
    let local = crate::host::Host::Local;
    let show = |name: &str, p: &crate::prune::Pruned| {
        for w in &p.decision.warnings {
            log::warn!("{name}: {}: {w}", p.dataset);
        }
        if let Some(e) = &p.error {
            log::warn!("{name}: {}: FAILED: {e}", p.dataset);
        } else if !p.decision.destroy.is_empty() {
            let verb = if a.dry_run {
                "would destroy"
            } else {
                "destroyed"
            };
            let freed = p
                .reclaimed
                .map(|b| format!(", freeing {}", crate::human::human_bytes(b)))
                .unwrap_or_default();
            log::info!(
                "{name}: {}: {verb} @{}{freed}",
                p.dataset,
                p.decision.destroy.join(", @")
            );
        }
        p.error.is_some() || !p.decision.warnings.is_empty()
    };
    for_each_entry(
        &a,
        |c| &c.prune,
        "prune policy",
        |rt, policy, now| rt.block_on(crate::prune::prune(&local, policy, now, a.dry_run)),
        show,
    )
}

fn check(a: CheckArgs) -> ExitCode {
    match Config::load(&a.config) {
        Ok(cfg) => {
            log::info!(
                "{}: ok, jobs: {}",
                a.config.display(),
                cfg.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("zferry: {e:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

#[derive(Args, Debug)]
struct HoldsArgs {
    /// TOML config file.
    #[arg(long, default_value = "/etc/zferry/zferry.toml")]
    config: PathBuf,
    /// Release holds whose tag no configured job uses.
    #[arg(long)]
    release_stale: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// `zferry holds`: prints this tool's holds; exit 1 if any stale one is left.
fn holds(a: HoldsArgs) -> ExitCode {
    let cfg = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zferry: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let jobs: Vec<(String, Job)> = cfg.jobs.into_iter().collect();
    let rt = crate::host::runtime().expect("tokio runtime");
    match rt.block_on(crate::replicate::audit::audit(&jobs, a.release_stale)) {
        Err(e) => {
            eprintln!("zferry holds: {e:#}");
            ExitCode::from(exit::FAILED)
        }
        Ok(entries) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).expect("serializes")
                );
            }
            for e in &entries {
                let state = match (e.stale, e.released, &e.error) {
                    (false, _, _) => "current".to_string(),
                    (true, true, _) => "stale, released".to_string(),
                    (true, false, Some(err)) => format!("stale, release failed: {err}"),
                    (true, false, None) => "stale (release with --release-stale)".to_string(),
                };
                eprintln!("{}  {}  {}  {state}", e.host, e.snapshot, e.tag);
            }
            let left = entries.iter().any(|e| e.stale && !e.released);
            ExitCode::from(if left { exit::FAILED } else { exit::OK })
        }
    }
}

/// Checks SSH_ORIGINAL_COMMAND against the guard and execs it; returns only on refusal
/// or after relaying a raw-only receive.
fn serve(a: ServeArgs) -> ExitCode {
    use crate::guard::serve::{self, ServeError};
    let policy = crate::guard::Policy {
        mode: a.mode,
        roots: a.roots,
        allow_rollback: a.allow_rollback,
        allow_destroy: a.allow_destroy,
        raw_only: a.raw_only,
        hold_prefix: a.hold_prefix,
    };
    match serve::run(&policy, std::env::var_os("SSH_ORIGINAL_COMMAND")) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(exit::FAILED)),
        Err(ServeError::Rejected(r)) => {
            let conn = std::env::var("SSH_CONNECTION").ok();
            serve::log_rejection(&r, serve::client_address(conn.as_deref()).as_deref());
            eprintln!("{r}");
            ExitCode::from(exit::USAGE)
        }
        Err(e @ ServeError::NoCommand) => {
            eprintln!("{e}");
            ExitCode::from(exit::USAGE)
        }
        Err(e @ ServeError::Failed(_)) => {
            eprintln!("{e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// TOML config file.
    #[arg(long, default_value = "/etc/zferry/zferry.toml")]
    config: PathBuf,
    /// Jobs to show (default: all).
    jobs: Vec<String>,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Seconds of lag after which a copy is stale (default: the config's stale_after,
    /// else 93600).
    #[arg(long)]
    stale_after: Option<u64>,
}

#[derive(Args, Debug)]
struct Remote {
    /// Remote host (name, address or ~/.ssh/config alias).
    #[arg(long)]
    host: String,
    /// SSH user.
    #[arg(long)]
    user: Option<String>,
    /// SSH port.
    #[arg(long)]
    port: Option<u16>,
    /// SSH private key.
    #[arg(long)]
    identity_file: Option<PathBuf>,
    /// known_hosts file (host keys are always checked strictly).
    #[arg(long)]
    known_hosts_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct Common {
    /// Source datasets; each includes its children.
    #[arg(long, num_args = 1.., required = true)]
    datasets: Vec<Dataset>,
    /// Existing root the copies go under.
    #[arg(long)]
    destination: Dataset,
    /// Allow destructive recovery of a diverged target.
    #[arg(long, value_enum, default_value_t = Divergence::Refuse)]
    on_divergence: Divergence,
    /// Hold tag (default zferry:<job name>).
    #[arg(long)]
    hold_tag: Option<String>,
    /// Bandwidth limit, bytes per second: 1048576, 512K, 10M, 1.5G.
    #[arg(long, value_name = "RATE")]
    bwlimit: Option<BwLimit>,
    /// Datasets replicated at once, children after their parents (default 8, at most 8).
    #[arg(long, value_name = "N")]
    parallel: Option<usize>,
    /// Wire compression of plain (non-raw) streams: zstd, zstd:LEVEL (1-19) or none;
    /// the far side needs the zstd program.
    #[arg(long, value_name = "HOW", default_value_t = Compress::None)]
    compress: Compress,
    /// Name used for the hold tag and reports.
    #[arg(long)]
    job_name: Option<String>,
    /// Plan and estimate only.
    #[arg(long)]
    dry_run: bool,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PullArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    common: Common,
    /// Directory under DESTINATION for this host (default: the host).
    #[arg(long)]
    name: Option<String>,
    /// Raw sends: auto = raw for encrypted sources.
    #[arg(long, value_enum, default_value_t = Raw::Auto)]
    raw: Raw,
}

#[derive(Args, Debug)]
struct PushArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    common: Common,
    /// Prefix removed from local names (e.g. the local backup root).
    #[arg(long)]
    strip_prefix: Dataset,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// TOML config file.
    #[arg(long, default_value = "/etc/zferry/zferry.toml")]
    config: PathBuf,
    /// Jobs to run (default: all, in name order).
    jobs: Vec<String>,
    /// Print the run reports as a JSON array on stdout.
    #[arg(long)]
    json: bool,
    /// Plan and estimate only.
    #[arg(long)]
    dry_run: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Raw {
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Divergence {
    Refuse,
    RollbackToCommon,
    DestroyTargetAndResend,
}

impl From<Raw> for RawMode {
    fn from(r: Raw) -> Self {
        match r {
            Raw::Auto => RawMode::Auto,
            Raw::Always => RawMode::Always,
            Raw::Never => RawMode::Never,
        }
    }
}

impl From<Divergence> for OnDivergence {
    fn from(d: Divergence) -> Self {
        match d {
            Divergence::Refuse => OnDivergence::Refuse,
            Divergence::RollbackToCommon => OnDivergence::RollbackToCommon,
            Divergence::DestroyTargetAndResend => OnDivergence::DestroyTargetAndResend,
        }
    }
}

fn job_from(kind: Kind, remote: Remote, c: &Common) -> Job {
    Job {
        kind,
        ssh: SshTarget {
            host: remote.host,
            user: remote.user,
            port: remote.port,
            identity_file: remote.identity_file,
            known_hosts_file: remote.known_hosts_file,
        },
        datasets: c.datasets.clone(),
        destination: c.destination.clone(),
        name: None,
        strip_prefix: None,
        raw: RawMode::Auto,
        on_divergence: c.on_divergence.into(),
        hold_tag: c.hold_tag.clone(),
        max_snapshot_age: None,
        bwlimit: c.bwlimit,
        parallel: c.parallel,
        compress: c.compress,
    }
}

/// Jobs selected for one invocation, with how to run and print them.
struct Selection {
    jobs: Vec<(String, Job)>,
    /// The config without its jobs (state dir, thresholds, sinks); default for pull/push.
    state: Config,
    opts: RunOptions,
    json: bool,
}

fn select(cmd: Cmd) -> Result<Selection> {
    Ok(match cmd {
        Cmd::Pull(a) => {
            let mut job = job_from(Kind::Pull, a.remote, &a.common);
            job.name = a.name;
            job.raw = a.raw.into();
            single(job, &a.common)?
        }
        Cmd::Push(a) => {
            let mut job = job_from(Kind::Push, a.remote, &a.common);
            job.strip_prefix = Some(a.strip_prefix);
            single(job, &a.common)?
        }
        Cmd::Run(a) => from_config(a, false)?,
        Cmd::Plan(a) => from_config(a, true)?,
        Cmd::Status(_)
        | Cmd::Serve(_)
        | Cmd::Holds(_)
        | Cmd::Check(_)
        | Cmd::Snapshot(_)
        | Cmd::Prune(_)
        | Cmd::Generate(_) => {
            unreachable!("handled before select")
        }
    })
}

fn single(job: Job, c: &Common) -> Result<Selection> {
    let name = c
        .job_name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", job.kind.as_str(), job.ssh.host));
    job.validate(&name)?;
    Ok(Selection {
        jobs: vec![(name, job)],
        state: Config::default(),
        opts: RunOptions { dry_run: c.dry_run },
        json: c.json,
    })
}

fn from_config(a: RunArgs, plan: bool) -> Result<Selection> {
    let mut cfg = Config::load(&a.config)?;
    let all = std::mem::take(&mut cfg.jobs);
    let jobs = if a.jobs.is_empty() {
        all.into_iter().collect()
    } else {
        let mut v = Vec::new();
        for name in &a.jobs {
            let job = all.get(name).cloned().with_context(|| {
                format!(
                    "no job '{name}' in {}; it has: {}",
                    a.config.display(),
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            v.push((name.clone(), job));
        }
        v
    };
    Ok(Selection {
        jobs,
        state: cfg,
        opts: RunOptions {
            dry_run: plan || a.dry_run,
        },
        json: a.json,
    })
}

/// Runs the jobs in turn; with a cycle (not a dry run), each under its lock, its report
/// saved and its sinks told.
async fn run_all(sel: &Selection, mut cycle: Option<&mut Cycle>) -> Vec<RunReport> {
    let mut reports = Vec::new();
    let mut pool = Pool::default();
    for (name, job) in &sel.jobs {
        let Some(c) = cycle.as_deref_mut() else {
            reports.push(run_job(name, job, sel.opts, &mut pool, None).await);
            continue;
        };
        let r = match c.begin(name, job) {
            Begin::Skip => continue,
            Begin::Wedged(r) => r,
            Begin::Run(_lock) => {
                let mut cache = c.cache(name);
                let r = run_job(name, job, sel.opts, &mut pool, Some(&mut cache)).await;
                c.save_cache(name, &cache);
                // Saved while the lock is still held, so the next run reads it.
                c.finish(&r);
                reports.push(r);
                continue;
            }
        };
        c.finish(&r);
        reports.push(r);
    }
    pool.close().await;
    reports
}

/// Entry point of the command line; returns the process exit code.
pub fn main(args: Vec<String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    log::set_level(if cli.quiet {
        0
    } else if cli.verbose {
        2
    } else {
        1
    });
    match cli.cmd {
        Cmd::Serve(a) => return serve(a),
        Cmd::Holds(a) => return holds(a),
        Cmd::Check(a) => return check(a),
        Cmd::Snapshot(a) => return snapshot(a),
        Cmd::Prune(a) => return prune(a),
        Cmd::Generate(a) => return generate::command(a),
        _ => {}
    }
    if let Cmd::Status(a) = cli.cmd {
        let found = crate::status::command(crate::status::StatusCmd {
            config: a.config,
            jobs: a.jobs,
            json: a.json,
            stale_after: a.stale_after,
            lock_max_age: cli.lock_max_age,
            state_dir: cli.state_dir,
        });
        return ExitCode::from(match found {
            Ok(Outcome::AllOk) => exit::OK,
            Ok(Outcome::NotOk) => exit::FAILED,
            Ok(Outcome::Wedged) => exit::LOCK,
            Err(e) => {
                eprintln!("zferry: {e:#}");
                exit::USAGE
            }
        });
    }
    let sel = match select(cli.cmd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zferry: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let rt = crate::host::runtime().expect("tokio runtime");
    let mut cycle = (!sel.opts.dry_run).then(|| {
        let state = sel.state.state_settings(Overrides {
            state_dir: cli.state_dir.clone(),
            stale_after: None,
            lock_max_age: cli.lock_max_age,
        });
        Cycle::new(Settings {
            state_dir: state.state_dir,
            notify: sel.state.notify.clone(),
            stale_after: state.stale_after,
            max_snapshot_age: sel
                .jobs
                .iter()
                .filter_map(|(n, j)| Some((n.clone(), sel.state.max_snapshot_age(j)?)))
                .collect(),
            roots: sel
                .jobs
                .iter()
                .map(|(n, j)| (n.clone(), j.datasets.clone()))
                .collect(),
            lock_max_age: state.lock_max_age,
        })
    });
    let reports = rt.block_on(run_all(&sel, cycle.as_mut()));
    drop(rt);
    // MQTT's client runs its own runtime: publish after ours is gone.
    if let Some(c) = cycle.as_mut() {
        c.publish();
    }
    if sel.json {
        let v = if reports.len() == 1 && sel.jobs.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        };
        println!("{}", v.expect("reports serialize"));
    }
    for r in &reports {
        if !cli.quiet || !r.ok() {
            eprint!("{}", r.human());
        }
    }
    let (wedged, sink_failed) = cycle.map_or((false, false), |c| (c.wedged, c.sink_failed));
    ExitCode::from(if wedged {
        exit::LOCK
    } else if reports.iter().all(RunReport::ok) && !sink_failed {
        exit::OK
    } else {
        exit::FAILED
    })
}
