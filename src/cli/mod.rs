//! The command line: a thin door over `job`, `replicate` and `report`.

use crate::host::SshTarget;
use crate::job::{Config, Job, Kind};
use crate::plan::{OnDivergence, RawMode};
use crate::replicate::{run_job, RunOptions};
use crate::report::{log, RunReport};
use crate::zfs::name::Dataset;
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, documented in the README.
pub mod exit {
    /// Everything succeeded.
    pub const OK: u8 = 0;
    /// A job or dataset failed, was refused, is stale or missing.
    pub const FAILED: u8 = 1;
    /// Bad command line or config: nothing was touched.
    pub const USAGE: u8 = 2;
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
    }
}

/// Jobs selected for one invocation, with how to run and print them.
struct Selection {
    jobs: Vec<(String, Job)>,
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
        opts: RunOptions { dry_run: c.dry_run },
        json: c.json,
    })
}

fn from_config(a: RunArgs, plan: bool) -> Result<Selection> {
    let cfg = Config::load(&a.config)?;
    let jobs = if a.jobs.is_empty() {
        cfg.jobs.into_iter().collect()
    } else {
        let mut v = Vec::new();
        for name in &a.jobs {
            let job = cfg.jobs.get(name).cloned().with_context(|| {
                format!(
                    "no job '{name}' in {}; it has: {}",
                    a.config.display(),
                    cfg.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            v.push((name.clone(), job));
        }
        v
    };
    Ok(Selection {
        jobs,
        opts: RunOptions {
            dry_run: plan || a.dry_run,
        },
        json: a.json,
    })
}

async fn run_all(sel: &Selection) -> Vec<RunReport> {
    let mut reports = Vec::new();
    for (name, job) in &sel.jobs {
        reports.push(run_job(name, job, sel.opts).await);
    }
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
    let sel = match select(cli.cmd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zferry: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let reports = rt.block_on(run_all(&sel));
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
    ExitCode::from(if reports.iter().all(RunReport::ok) {
        exit::OK
    } else {
        exit::FAILED
    })
}
