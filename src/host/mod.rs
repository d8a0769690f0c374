//! Where commands run: this machine, or another over one multiplexed SSH connection.
//!
//! Local commands run from argv vectors; remote ones go through [`shell_quote`], the
//! only place that builds a string for a shell. Every command is logged at `-v`
//! exactly as run, so a user can paste and rerun it.

#[cfg(test)]
pub(crate) mod fake;
mod pool;
mod quote;

pub use pool::Pool;
pub use quote::{shell_pipeline, shell_quote};

use crate::log;
use anyhow::{anyhow, bail, Context, Result};
use openssh::{KnownHosts, Session, SessionBuilder};
use serde::{Deserialize, Serialize};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most sessions a connection opens at once unless a job says fewer
/// ([`Host::at_most`]): sshd's default `MaxSessions`, beyond which it refuses them.
pub const MAX_SESSIONS: usize = 10;

/// The single-threaded runtime every front door runs zferry's async I/O on: work is
/// one dataset at a time and bounded by zfs and ssh, not by this process.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// How to reach a remote host. Anything not set here comes from `~/.ssh/config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTarget {
    /// Host name or `~/.ssh/config` alias.
    pub host: String,
    /// Login user.
    #[serde(default)]
    pub user: Option<String>,
    /// SSH port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Private key file.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to check the host key against (strict checking always).
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
}

impl SshTarget {
    /// Rejects a host or user ssh would read as an option (`-o...`) or that cannot be a
    /// name (spaces, control characters, `@` in the host: the user has its own field).
    pub fn validate(&self) -> Result<()> {
        let host_ok = |c: char| c.is_ascii_alphanumeric() || "._-:%[]".contains(c);
        if self.host.is_empty() || self.host.starts_with('-') || !self.host.chars().all(host_ok) {
            bail!(
                "host '{}' is not a host name, address or ~/.ssh/config alias (letters, digits and . _ - : % [ ], not starting with '-'; the user goes in user)",
                self.host.escape_debug()
            );
        }
        if let Some(u) = &self.user {
            let user_ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
            if u.is_empty() || u.starts_with('-') || !u.chars().all(user_ok) {
                bail!(
                    "user '{}' is not a login name (letters, digits and . _ -, not starting with '-')",
                    u.escape_debug()
                );
            }
        }
        Ok(())
    }

    /// `user@host:port` for messages.
    pub fn label(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

/// A place to run zfs commands.
#[derive(Clone)]
pub enum Host {
    /// This machine.
    Local,
    /// A remote machine behind one SSH control connection.
    Ssh {
        /// `user@host:port`, for messages.
        label: String,
        /// The shared control connection.
        session: Arc<Session>,
        /// Sessions that may open at once on it; a command waits for one.
        sessions: Arc<Semaphore>,
    },
    /// An in-memory model of a host, for the replicator's unit tests.
    #[cfg(test)]
    Fake(Arc<fake::Fake>),
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `None` when killed by a signal or the connection broke.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A command that ran and exited non-zero: what [`Host::run_ok`] fails with, so a
/// caller can ask what went wrong (e.g. a missing delegation) without parsing the
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{command}' on {host} failed ({code}): {stderr}")]
pub struct CommandFailed {
    /// The command, quoted as it can be pasted.
    pub command: String,
    /// The host's label.
    pub host: String,
    /// The exit code described for people (see [`Host::describe_code`]).
    pub code: String,
    /// Its stderr, trimmed.
    pub stderr: String,
}

impl CommandFailed {
    /// zfs refused for lack of a delegated permission (`zfs allow`).
    pub fn permission_denied(&self) -> bool {
        self.stderr.contains("permission denied")
    }

    /// True when `e` is a failed command refused for lack of permission.
    pub fn is_permission_denied(e: &anyhow::Error) -> bool {
        e.downcast_ref::<CommandFailed>()
            .is_some_and(CommandFailed::permission_denied)
    }
}

impl Output {
    /// True on exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl Host {
    /// Describes an exit code from this host for messages. 255 means an SSH failure
    /// only on a remote host: zfs itself exits 255 for some errors.
    pub fn describe_code(&self, code: Option<i32>) -> String {
        match (self, code) {
            (Host::Ssh { .. }, Some(255)) => {
                "exit 255 (zfs error, or ssh failed / the connection dropped)".into()
            }
            (_, Some(c)) => format!("exit {c}"),
            (_, None) => "killed or connection lost".into(),
        }
    }
}

impl Host {
    /// Opens the control connection (honouring `~/.ssh/config`, strict host keys).
    pub async fn connect(t: &SshTarget) -> Result<Host> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(std::time::Duration::from_secs(20))
            .server_alive_interval(std::time::Duration::from_secs(30));
        if let Some(u) = &t.user {
            b.user(u.clone());
        }
        if let Some(p) = t.port {
            b.port(p);
        }
        if let Some(k) = &t.identity_file {
            b.keyfile(k);
        }
        if let Some(k) = &t.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        let label = t.label();
        log::debug!("ssh: connecting to {label}");
        let session = b.connect_mux(&t.host).await.map_err(|e| {
            anyhow!("cannot connect to {label} over SSH: {e}; check the host, user, key and known_hosts (try: ssh {}{}{})",
                t.port.map(|p| format!("-p {p} ")).unwrap_or_default(),
                t.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
                t.host)
        })?;
        Ok(Host::Ssh {
            label,
            session: Arc::new(session),
            sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
        })
    }

    /// This host with at most `n` sessions open at once on its connection (at least
    /// one): what a job opens is bounded by its `parallel`, so a host whose sshd allows
    /// fewer than [`MAX_SESSIONS`] works with a `parallel` within its `MaxSessions`.
    pub fn at_most(&self, n: usize) -> Host {
        match self {
            Host::Ssh { label, session, .. } => Host::Ssh {
                label: label.clone(),
                session: session.clone(),
                sessions: Arc::new(Semaphore::new(n.max(1))),
            },
            other => other.clone(),
        }
    }

    /// Room for one more session, waiting for it (commands here need none).
    async fn slot(&self) -> Slot {
        match self {
            Host::Ssh { sessions, .. } => Slot(Some(
                sessions
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed"),
            )),
            _ => Slot(None),
        }
    }

    /// Room for one more session if one is free now.
    fn free_slot(&self) -> Option<Slot> {
        match self {
            Host::Ssh { sessions, .. } => sessions
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|p| Slot(Some(p))),
            _ => Some(Slot(None)),
        }
    }

    /// `local` or `user@host:port`.
    pub fn label(&self) -> &str {
        match self {
            Host::Local => "local",
            Host::Ssh { label, .. } => label,
            #[cfg(test)]
            Host::Fake(_) => "fake",
        }
    }

    /// Runs `argv` to completion and captures its output.
    pub async fn run(&self, argv: &[String]) -> Result<Output> {
        let p = self.spawn(argv, false, true).await?;
        self.output_of(argv, p).await
    }

    /// [`Host::run`] only if a session is free now (`None` otherwise): for what may be
    /// skipped, such as a size estimate beside running streams.
    pub async fn run_if_free(&self, argv: &[String]) -> Result<Option<Output>> {
        let Some(slot) = self.free_slot() else {
            return Ok(None);
        };
        let p = self.start(&[argv], Io::Null, Io::Piped, slot).await?;
        Ok(Some(self.output_of(argv, p).await?))
    }

    /// What `p` (running `argv`) printed, and its exit.
    async fn output_of(&self, argv: &[String], mut p: Proc) -> Result<Output> {
        let mut stdout = String::new();
        let mut out = p.stdout.take().expect("stdout is piped");
        let (r, status) = tokio::join!(out.read_to_string(&mut stdout), p.wait());
        r.with_context(|| {
            format!(
                "reading output of '{}' on {}",
                shell_quote(argv),
                self.label()
            )
        })?;
        let (code, stderr) = status?;
        Ok(Output {
            code,
            stdout,
            stderr,
        })
    }

    /// Runs `argv` and fails with both the command and its stderr when it exits non-zero.
    pub async fn run_ok(&self, argv: &[String]) -> Result<Output> {
        let out = self.run(argv).await?;
        self.succeeded(argv, out)
    }

    /// `out` of `argv` if it exited 0, else the [`CommandFailed`] [`Host::run_ok`] gives.
    pub fn succeeded(&self, argv: &[String], out: Output) -> Result<Output> {
        if !out.ok() {
            return Err(CommandFailed {
                command: shell_quote(argv),
                host: self.label().to_string(),
                code: self.describe_code(out.code),
                stderr: out.stderr.trim().to_string(),
            }
            .into());
        }
        Ok(out)
    }

    /// True for a host at the other end of a wire (SSH).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Host::Local)
    }

    /// Starts `argv` with stderr captured and stdin/stdout piped when asked.
    pub async fn spawn(&self, argv: &[String], stdin: bool, stdout: bool) -> Result<Proc> {
        self.spawn_pipeline(&[argv], Io::from(stdin), Io::from(stdout))
            .await
    }

    /// True when a child here can be handed a file descriptor ([`Io::Fd`]).
    pub fn takes_fds(&self) -> bool {
        match self {
            Host::Local | Host::Ssh { .. } => true,
            #[cfg(test)]
            Host::Fake(_) => false,
        }
    }

    /// Starts `stages` as one pipeline (`a | b`), stdin into the first, stdout from the
    /// last. Only a remote host runs a pipeline, through [`shell_pipeline`]: what this
    /// machine would pipe, the relay does itself.
    pub async fn spawn_pipeline(
        &self,
        stages: &[&[String]],
        stdin: Io,
        stdout: Io,
    ) -> Result<Proc> {
        let slot = self.slot().await;
        self.start(stages, stdin, stdout, slot).await
    }

    /// [`Host::spawn_pipeline`] in `slot`, which the command keeps until it ends.
    async fn start(&self, stages: &[&[String]], stdin: Io, stdout: Io, slot: Slot) -> Result<Proc> {
        let line = shell_pipeline(stages);
        log::command(self.label(), &line);
        let pipe = |io: Io| match io {
            Io::Null => Stdio::null(),
            Io::Piped => Stdio::piped(),
            Io::Fd(fd) => Stdio::from(fd),
        };
        match self {
            Host::Local => {
                let [argv] = stages else {
                    bail!("'{line}' is a pipeline: only a remote host runs one");
                };
                let (prog, args) = argv.split_first().expect("argv is never empty");
                let mut child = tokio::process::Command::new(prog)
                    .args(args)
                    .stdin(pipe(stdin))
                    .stdout(pipe(stdout))
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("cannot start '{prog}' locally"))?;
                Ok(Proc {
                    stdin: child.stdin.take().map(|s| Box::new(s) as _),
                    stdout: child.stdout.take().map(|s| Box::new(s) as _),
                    stderr: child.stderr.take().map(|s| Box::new(s) as _),
                    child: Child::Local(child),
                    _slot: slot,
                    host: self.label().to_string(),
                })
            }
            Host::Ssh { session, label, .. } => {
                let ospipe = |io: Io| match io {
                    Io::Null => openssh::Stdio::null(),
                    Io::Piped => openssh::Stdio::piped(),
                    // SAFETY: the fd is owned and given away whole (it is closed with the
                    // Stdio, after ssh has it).
                    Io::Fd(fd) => unsafe { openssh::Stdio::from_raw_fd_owned(fd.into_raw_fd()) },
                };
                let mut child = Session::to_raw_command(session.clone(), line)
                    .stdin(ospipe(stdin))
                    .stdout(ospipe(stdout))
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(|e| refused(e, label))?;
                Ok(Proc {
                    stdin: child.stdin().take().map(|s| Box::new(s) as _),
                    stdout: child.stdout().take().map(|s| Box::new(s) as _),
                    stderr: child.stderr().take().map(|s| Box::new(s) as _),
                    child: Child::Remote(child),
                    _slot: slot,
                    host: label.clone(),
                })
            }
            #[cfg(test)]
            Host::Fake(fake) => {
                // In-memory pipes: what the fake writes is read here, and the other way.
                let pipe = |io: Io| match io {
                    Io::Fd(_) => panic!("a fake host takes no fds (see takes_fds)"),
                    io => matches!(io, Io::Piped).then(|| tokio::io::duplex(64 * 1024)),
                };
                let (stdin_ours, stdin_theirs) = pipe(stdin).unzip();
                let (stdout_ours, stdout_theirs) = pipe(stdout).unzip();
                let fake = fake.clone();
                // The fake sees a pipeline as one argv with "|" between the stages.
                let argv = stages.join(&"|".to_string());
                let task =
                    tokio::spawn(async move { fake.exec(argv, stdin_theirs, stdout_theirs).await });
                Ok(Proc {
                    stdin: stdin_ours.map(|s| Box::new(s) as _),
                    stdout: stdout_ours.map(|s| Box::new(s) as _),
                    stderr: None,
                    child: Child::Fake(task),
                    _slot: slot,
                    host: self.label().to_string(),
                })
            }
        }
    }

    /// False when the SSH control connection has died; this machine is always alive.
    pub async fn alive(&self) -> bool {
        match self {
            Host::Local => true,
            Host::Ssh { session, .. } => session.check().await.is_ok(),
            #[cfg(test)]
            Host::Fake(_) => true,
        }
    }

    /// Closes the SSH control connection (when this is its last handle).
    pub async fn close(self) {
        if let Host::Ssh { session, .. } = self {
            if let Ok(s) = Arc::try_unwrap(session) {
                let _ = s.close().await;
            }
        }
    }
}

/// Where a child's stdin or stdout goes.
#[derive(Debug)]
pub enum Io {
    /// `/dev/null`.
    Null,
    /// A pipe to this process ([`Proc::stdin`], [`Proc::stdout`]).
    Piped,
    /// This file descriptor (a pipe end the relay splices), closed here once handed over.
    Fd(OwnedFd),
}

impl From<bool> for Io {
    fn from(piped: bool) -> Io {
        if piped {
            Io::Piped
        } else {
            Io::Null
        }
    }
}

enum Child {
    Local(tokio::process::Child),
    Remote(openssh::Child<Arc<Session>>),
    #[cfg(test)]
    Fake(tokio::task::JoinHandle<fake::Exit>),
}

/// A running command.
pub struct Proc {
    /// Its standard input, when piped.
    pub stdin: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    /// Its standard output, when piped.
    pub stdout: Option<Box<dyn AsyncRead + Unpin + Send>>,
    stderr: Option<Box<dyn AsyncRead + Unpin + Send>>,
    child: Child,
    host: String,
    /// Its session's place under the host's limit, given back when it ends.
    _slot: Slot,
}

/// A place under a host's session limit ([`Host::at_most`]); empty where commands need none.
// Held, never read: dropping it frees the place.
struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// Why a session did not open on `label`: sshd refuses sessions beyond its
/// `MaxSessions`, which a `parallel` above it runs into.
fn refused(e: openssh::Error, label: &str) -> anyhow::Error {
    // The cause (the master's answer) is in the error's sources.
    let why = format!("{:#}", anyhow::Error::from(e));
    // Not "Connection refused": a gone master is not a session limit.
    if why.contains("open refused") {
        anyhow!("cannot start a command on {label}: {why}; its sshd allows fewer sessions per connection (MaxSessions) than this job's parallel: lower parallel for the host ([hosts.\"NAME\"] parallel), or raise MaxSessions there")
    } else {
        anyhow!("cannot start a command on {label}: {why}")
    }
}

impl Proc {
    /// Waits for exit; returns the exit code (`None` if killed) and stderr.
    pub async fn wait(mut self) -> Result<(Option<i32>, String)> {
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            // Lossy: a stderr read error must not hide the exit status.
            let _ = e.read_to_string(&mut err).await;
        }
        let code = match self.child {
            Child::Local(mut c) => c.wait().await?.code(),
            Child::Remote(c) => match c.wait().await {
                Ok(s) => s.code(),
                Err(e) => {
                    err.push_str(&format!("\n(ssh to {}: {e})", self.host));
                    None
                }
            },
            #[cfg(test)]
            Child::Fake(task) => {
                let (code, stderr) = task.await?;
                err.push_str(&stderr);
                code
            }
        };
        Ok((code, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_says_what_ran_where_and_knows_a_missing_delegation() {
        let f = CommandFailed {
            command: "zfs create -u b/c".into(),
            host: "local".into(),
            code: "exit 1".into(),
            stderr: "cannot create 'b/c': permission denied".into(),
        };
        assert_eq!(
            f.to_string(),
            "'zfs create -u b/c' on local failed (exit 1): cannot create 'b/c': permission denied"
        );
        assert!(CommandFailed::is_permission_denied(&f.clone().into()));
        let other = CommandFailed {
            stderr: "cannot create 'b/c': out of space".into(),
            ..f
        };
        assert!(!CommandFailed::is_permission_denied(&other.into()));
        assert!(!CommandFailed::is_permission_denied(&anyhow!(
            "ssh: permission denied"
        )));
    }
}
