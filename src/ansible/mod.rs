//! The Ansible door: binary modules `zfs_allow`, `zfs_pull` and `zfs_push`.
//!
//! Ansible copies the binary to the target as `AnsiballZ_<module>` and runs it with the
//! path of a flat JSON args file. Whatever happens (bad args, a failed command, a panic),
//! exactly one JSON object goes to stdout: Ansible cannot read anything else.

pub mod allow;
pub mod args;
#[cfg(test)]
mod docs_tests;
pub mod job;

use crate::host::shell_quote;
use serde::Serialize;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

/// The modules this binary implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// Delegated permissions.
    Allow,
    /// Replication from a remote source to this host.
    Pull,
    /// Raw replication from this host to a remote target.
    Push,
}

impl Module {
    /// The module's name.
    pub fn name(self) -> &'static str {
        match self {
            Module::Allow => "zfs_allow",
            Module::Pull => "zfs_pull",
            Module::Push => "zfs_push",
        }
    }

    /// The module an executable name stands for. Ansible names the copy on the target
    /// `AnsiballZ_<module>`; the collection ships per-architecture copies such as
    /// `zfs_push_aarch64`, so a name only has to start with the module's name.
    pub fn from_argv0(argv0: &str) -> Option<Module> {
        let base = std::path::Path::new(argv0).file_name()?.to_str()?;
        let base = base.strip_prefix("AnsiballZ_").unwrap_or(base);
        [Module::Allow, Module::Pull, Module::Push]
            .into_iter()
            .find(|m| base.starts_with(m.name()))
    }
}

/// `diff` as Ansible shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Before, as text.
    pub before: String,
    /// After (predicted in check mode), as text.
    pub after: String,
    /// Label of the before side.
    pub before_header: String,
    /// Label of the after side.
    pub after_header: String,
}

/// A module's result: the one JSON object on stdout.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// Whether anything changed (or would, in check mode).
    pub changed: bool,
    /// Present and true on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    /// What happened, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// Exit code of the failed command (1 for failures that are not a command's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    /// Stderr of the failed command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// The failed command, pasteable into a shell (`null` when no command failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Value>,
    /// Shown by Ansible as warnings.
    pub warnings: Vec<String>,
    /// Before and after, when `_ansible_diff` asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
    /// Module-specific return values.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A failure, with the command that failed when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The message for the user.
    pub msg: String,
    /// The command's exit code.
    pub rc: Option<i32>,
    /// The command's stderr.
    pub stderr: String,
    /// The command's argv.
    pub argv: Option<Vec<String>>,
}

impl Failure {
    /// A failure that is not a command's (bad arguments, a refusal).
    pub fn msg(msg: impl Into<String>) -> Failure {
        Failure {
            msg: msg.into(),
            rc: None,
            stderr: String::new(),
            argv: None,
        }
    }
}

impl From<crate::allow::CommandError> for Failure {
    fn from(e: crate::allow::CommandError) -> Self {
        Failure {
            msg: e.to_string(),
            rc: e.code,
            stderr: e.stderr,
            argv: Some(e.argv),
        }
    }
}

impl Outcome {
    /// A failed result; keeps the warnings and return values gathered so far.
    pub fn fail(mut self, f: Failure) -> Outcome {
        self.failed = Some(true);
        self.msg = Some(f.msg);
        self.rc = Some(f.rc.unwrap_or(1));
        self.stderr = Some(f.stderr);
        self.cmd = Some(
            f.argv
                .map(|a| Value::String(shell_quote(&a)))
                .unwrap_or(Value::Null),
        );
        self
    }

    /// True when this result is a failure.
    pub fn is_failed(&self) -> bool {
        self.failed == Some(true)
    }
}

thread_local! {
    /// Where the panic hook leaves the location of the last panic on this thread.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that records where a panic happened instead of printing a
/// backtrace: the module's stdout must stay one JSON object, and the location goes
/// into that object's `msg`.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        PANIC_AT.with(|p| *p.borrow_mut() = at);
    }));
}

/// Runs `body`; a panic in it becomes a failed [`Outcome`] naming the panic.
pub fn guarded(module: Module, body: impl FnOnce() -> Outcome) -> Outcome {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(o) => o,
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            let at = PANIC_AT
                .with(|p| p.borrow_mut().take())
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            Outcome::default().fail(Failure::msg(format!(
                "{} hit an internal error (panic{at}): {what}; this is a zferry bug, please report it",
                module.name()
            )))
        }
    }
}

/// Reads the args file named by `argv[1]` and runs `module`; never panics.
pub fn outcome(module: Module, argv: &[String]) -> Outcome {
    guarded(module, || {
        let Some(path) = argv.get(1) else {
            return Outcome::default().fail(Failure::msg(format!(
                "{} is an Ansible module: run it from Ansible, or as '{} ARGS.json' with a JSON object of options",
                module.name(),
                module.name()
            )));
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return Outcome::default().fail(Failure::msg(format!(
                    "cannot read the module arguments file {path}: {e}"
                )))
            }
        };
        match module {
            Module::Allow => allow::run(&text),
            Module::Pull | Module::Push => job::run(module, &text),
        }
    })
}

/// Entry point when the binary runs as a module: prints the one JSON object and exits
/// 0, or 1 on failure.
pub fn main(module: Module, argv: Vec<String>) -> ExitCode {
    install_panic_hook();
    // Human log lines go to stderr; keep them to warnings so stderr stays readable.
    crate::log::set_level(0);
    let out = outcome(module, &argv);
    let json = serde_json::to_string(&out).unwrap_or_else(|e| {
        format!(r#"{{"failed": true, "changed": false, "msg": "cannot serialize the result: {e}", "rc": 1}}"#)
    });
    println!("{json}");
    ExitCode::from(if out.is_failed() { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_is_chosen_by_executable_name() {
        for (argv0, m) in [
            ("/tmp/x/AnsiballZ_zfs_allow", Some(Module::Allow)),
            ("zfs_pull", Some(Module::Pull)),
            ("/c/plugins/modules/zfs_push_aarch64", Some(Module::Push)),
            (
                "/home/u/.ansible/tmp/AnsiballZ_zfs_push_x86_64",
                Some(Module::Push),
            ),
            ("/usr/local/bin/zferry", None),
            ("zfs", None),
        ] {
            assert_eq!(Module::from_argv0(argv0), m, "{argv0}");
        }
    }

    #[test]
    fn a_panic_becomes_a_json_failure() {
        let out = guarded(Module::Pull, || panic!("boom {}", 42));
        assert!(out.is_failed());
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["failed"], true);
        assert_eq!(v["changed"], false);
        assert_eq!(v["rc"], 1);
        assert!(v["cmd"].is_null());
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.contains("zfs_pull hit an internal error") && msg.contains("boom 42"),
            "{msg}"
        );
    }

    #[test]
    fn missing_or_unreadable_args_file_is_a_json_failure() {
        let out = outcome(Module::Allow, &["zfs_allow".into()]);
        assert!(out.msg.unwrap().contains("is an Ansible module"));
        let out = outcome(
            Module::Allow,
            &["zfs_allow".into(), "/nonexistent/args".into()],
        );
        assert!(out.is_failed());
        assert!(out
            .msg
            .unwrap()
            .contains("cannot read the module arguments file /nonexistent/args"));
    }

    #[test]
    fn failure_carries_the_command() {
        let f: Failure = crate::allow::CommandError {
            argv: vec!["zfs".into(), "allow".into(), "p/x y".into()],
            code: Some(2),
            stderr: "bad\n".into(),
        }
        .into();
        let v = serde_json::to_value(Outcome::default().fail(f)).unwrap();
        assert_eq!(v["rc"], 2);
        assert_eq!(v["cmd"], "zfs allow 'p/x y'");
        assert_eq!(v["stderr"], "bad\n");
        assert!(v["msg"].as_str().unwrap().contains("exit 2"), "{v}");
    }
}
