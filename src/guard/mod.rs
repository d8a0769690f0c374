//! `zferry serve`: the SSH forced command that lets a key run only what zferry sends.
//!
//! The command from `SSH_ORIGINAL_COMMAND` is split into argv by a tokenizer that
//! accepts exactly what [`crate::host::shell_quote`] produces and nothing else (no
//! metacharacters, no newlines). The argv is then rebuilt with zferry's own builders
//! from `zfs::cmd`; only an exact match runs, by `exec` without a shell. Datasets must
//! lie under the configured roots, and each mode allows only its side's verbs.

use crate::zfs::cmd::{self, SendSpan};
use crate::zfs::list::list_argv;
use crate::zfs::name::{Dataset, Snapshot};
use serde::{Deserialize, Serialize};

/// Which side of a replication this key serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A client or backup server being pulled from / pushing: list, send, hold, release.
    Send,
    /// A host receiving: list, receive, create parents, hold, release.
    Receive,
}

/// What the guard allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Side served.
    pub mode: Mode,
    /// Datasets commands may touch, with everything below them.
    pub roots: Vec<Dataset>,
    /// Receive side: allow `zfs rollback -r` (the rollback_to_common policy).
    pub allow_rollback: bool,
    /// Receive side: allow `zfs destroy -r` and `zfs receive -A` (destroy policies and
    /// discarding stale partial receives).
    pub allow_destroy: bool,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zferry serve: rejected: {0}")]
pub struct Rejected(pub String);

fn reject<T>(why: impl Into<String>) -> Result<T, Rejected> {
    Err(Rejected(why.into()))
}

/// Characters a bare word may hold (the same set `shell_quote` leaves unquoted).
fn bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c)
}

/// Splits a command line produced by `shell_quote` back into argv. Anything else is
/// rejected: it never needs to understand a shell, only zferry's own quoting.
pub fn tokenize(line: &str) -> Result<Vec<String>, Rejected> {
    if line.chars().any(|c| c.is_control()) {
        return reject("control character (newline, tab, ...) in command");
    }
    let mut argv = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut word = String::new();
        let mut started = false;
        while let Some(&c) = chars.peek() {
            if c == ' ' {
                break;
            }
            chars.next();
            started = true;
            if bare(c) {
                word.push(c);
            } else if c == '\'' {
                // Single-quoted run; `'\''` continues the word with a literal quote.
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(q) => word.push(q),
                        None => return reject("unterminated quote"),
                    }
                }
                if chars.peek() == Some(&'\\') {
                    chars.next();
                    if chars.next() != Some('\'') {
                        return reject("stray backslash");
                    }
                    word.push('\'');
                }
            } else {
                return reject(format!("character {c:?} outside quotes"));
            }
        }
        if !started {
            return reject("empty word or doubled space");
        }
        argv.push(word);
        match chars.next() {
            None => break,
            Some(' ') => continue,
            Some(c) => return reject(format!("unexpected {c:?}")),
        }
    }
    Ok(argv)
}

impl Policy {
    fn within(&self, ds: &Dataset) -> Result<(), Rejected> {
        if self.roots.iter().any(|r| ds.is_within(r)) {
            Ok(())
        } else {
            reject(format!(
                "{ds} is outside the allowed roots ({})",
                self.roots
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    fn snap(&self, s: &str) -> Result<Snapshot, Rejected> {
        let snap = Snapshot::new(s).map_err(|e| Rejected(e.to_string()))?;
        self.within(snap.dataset())?;
        Ok(snap)
    }

    fn dataset(&self, s: &str) -> Result<Dataset, Rejected> {
        let ds = Dataset::new(s).map_err(|e| Rejected(e.to_string()))?;
        self.within(&ds)?;
        Ok(ds)
    }

    /// Accepts `argv` only if zferry's own builders produce exactly it for allowed
    /// datasets; returns it unchanged for `exec`.
    pub fn check(&self, argv: &[String]) -> Result<(), Rejected> {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let expected: Vec<String> = match (self.mode, a.as_slice()) {
            (_, ["zfs", "list", .., "-r", _]) | (_, ["zfs", "list", "-Hp", ..]) => {
                let r = a.iter().position(|x| *x == "-r").map_or(a.len(), |i| i + 1);
                let roots = a[r..]
                    .iter()
                    .map(|s| self.dataset(s))
                    .collect::<Result<Vec<_>, _>>()?;
                list_argv(&roots)
            }
            (_, ["zfs", "hold", tag, snap]) => cmd::hold(tag, &self.snap(snap)?),
            (_, ["zfs", "release", tag, snap]) => cmd::release(tag, &self.snap(snap)?),
            (_, ["zfs", "holds", "-H", snaps @ ..]) if !snaps.is_empty() => cmd::holds(
                &snaps
                    .iter()
                    .map(|s| self.snap(s))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            (Mode::Send, ["zfs", "send", rest @ ..]) => self.send(rest)?,
            (Mode::Receive, ["zfs", "receive", "-u", "-s", ds]) => cmd::receive(&self.dataset(ds)?),
            (Mode::Receive, ["zfs", "receive", "-A", ds]) if self.allow_destroy => {
                cmd::receive_abort(&self.dataset(ds)?)
            }
            (Mode::Receive, ["zfs", "create", .., ds]) => cmd::create_parent(&self.dataset(ds)?),
            (Mode::Receive, ["zfs", "rollback", "-r", snap]) if self.allow_rollback => {
                cmd::rollback(&self.snap(snap)?)
            }
            (Mode::Receive, ["zfs", "destroy", "-r", ds]) if self.allow_destroy => {
                cmd::destroy_recursive(&self.dataset(ds)?)
            }
            _ => {
                return reject(format!(
                    "'{}' is not a command zferry sends in {:?} mode",
                    crate::host::shell_quote(argv),
                    self.mode
                ))
            }
        };
        if expected != argv {
            return reject(format!(
                "'{}' does not have the exact shape zferry sends ('{}')",
                crate::host::shell_quote(argv),
                crate::host::shell_quote(&expected)
            ));
        }
        Ok(())
    }

    fn send(&self, rest: &[&str]) -> Result<Vec<String>, Rejected> {
        let mut rest = rest;
        let dry = rest.first() == Some(&"-nP");
        if dry {
            rest = &rest[1..];
        }
        let raw = rest.first() == Some(&"-w");
        if raw {
            rest = &rest[1..];
        }
        let span = match rest {
            ["-t", token] if !raw => SendSpan::Resume {
                token: token.to_string(),
            },
            [to] => SendSpan::Full { to: self.snap(to)? },
            [flag @ ("-i" | "-I"), from, to] => SendSpan::Incremental {
                from: self.snap(from)?,
                to: self.snap(to)?,
                intermediates: *flag == "-I",
            },
            ["-nvP", "-t", token] if !dry && !raw => {
                return Ok(cmd::describe_token(token));
            }
            _ => return reject("unknown zfs send form"),
        };
        Ok(cmd::send(&span, raw, dry))
    }
}

/// Logs a rejection to syslog (best effort) so an admin can see attempts.
pub fn log_rejection(r: &Rejected) {
    use std::os::unix::net::UnixDatagram;
    if let Ok(sock) = UnixDatagram::unbound() {
        // <36> = facility auth (4), severity warning (4).
        let _ = sock.send_to(format!("<36>zferry-serve: {}", r.0).as_bytes(), "/dev/log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::shell_quote;
    use proptest::prelude::*;

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            roots: vec![Dataset::new("tank/data").unwrap()],
            allow_rollback: false,
            allow_destroy: false,
        }
    }

    fn ok(p: &Policy, argv: &[String]) -> bool {
        let line = shell_quote(argv);
        tokenize(&line)
            .map(|a| p.check(&a).is_ok())
            .unwrap_or(false)
    }

    fn s(n: &str) -> Snapshot {
        Snapshot::new(n).unwrap()
    }

    #[test]
    fn allows_what_zferry_sends_on_the_send_side() {
        let p = policy(Mode::Send);
        let d = Dataset::new("tank/data/kid").unwrap();
        assert!(ok(&p, &list_argv(std::slice::from_ref(&d))));
        assert!(ok(
            &p,
            &cmd::send(
                &SendSpan::Full {
                    to: s("tank/data@a")
                },
                true,
                false
            )
        ));
        let inc = SendSpan::Incremental {
            from: s("tank/data#a"),
            to: s("tank/data@b"),
            intermediates: false,
        };
        assert!(ok(&p, &cmd::send(&inc, false, true)));
        assert!(ok(
            &p,
            &cmd::send(
                &SendSpan::Resume {
                    token: "1-ab-cd".into()
                },
                true,
                false
            )
        ));
        assert!(ok(&p, &cmd::describe_token("1-ab-cd")));
        assert!(ok(&p, &cmd::hold("zferry:job", &s("tank/data@a"))));
        assert!(ok(
            &p,
            &cmd::holds(&[s("tank/data@a"), s("tank/data/kid@b")])
        ));
        // Receive-side verbs are not for this key.
        assert!(!ok(&p, &cmd::receive(&d)));
    }

    #[test]
    fn receive_side_and_its_options() {
        let mut p = policy(Mode::Receive);
        let d = Dataset::new("tank/data/x").unwrap();
        assert!(ok(&p, &cmd::receive(&d)));
        assert!(ok(&p, &cmd::create_parent(&d)));
        assert!(!ok(
            &p,
            &cmd::send(
                &SendSpan::Full {
                    to: s("tank/data@a")
                },
                true,
                false
            )
        ));
        assert!(!ok(&p, &cmd::rollback(&s("tank/data/x@a"))));
        assert!(!ok(&p, &cmd::destroy_recursive(&d)));
        assert!(!ok(&p, &cmd::receive_abort(&d)));
        p.allow_rollback = true;
        p.allow_destroy = true;
        assert!(ok(&p, &cmd::rollback(&s("tank/data/x@a"))));
        assert!(ok(&p, &cmd::destroy_recursive(&d)));
        assert!(ok(&p, &cmd::receive_abort(&d)));
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        let p = policy(Mode::Receive);
        for line in [
            "zfs destroy -r tank/data",
            "zfs receive -u -s -F tank/data/x",
            "zfs receive -F tank/data/x",
            "zfs receive -u -s tank/other",
            "zfs receive -u -s tank/data/x\nrm -rf /",
            "zfs receive -u -s tank/data/x; rm -rf /",
            "zfs receive -u -s tank/data/x && id",
            "zfs receive -u -s $(id)",
            "zfs receive -u -s `id`",
            "zfs  receive -u -s tank/data/x",
            "zfs receive -u -s 'tank/data/x",
            "bash -c id",
            "zfs list -Hp -r tank",
            "zfs set readonly=off tank/data",
            "",
        ] {
            let r = tokenize(line).and_then(|a| p.check(&a));
            assert!(r.is_err(), "{line:?} was allowed");
            assert!(!r.unwrap_err().0.is_empty());
        }
    }

    #[test]
    fn newline_is_rejected_even_inside_quotes() {
        assert!(tokenize("zfs hold 'a\nb' tank/data@x").is_err());
    }

    proptest! {
        /// The tokenizer inverts shell_quote for any printable argv.
        #[test]
        fn tokenize_inverts_shell_quote(args in proptest::collection::vec("[ -~]{1,12}", 1..6)) {
            prop_assert_eq!(tokenize(&shell_quote(&args)).unwrap(), args);
        }

        /// One extra word anywhere in an allowed command makes it a refused one.
        #[test]
        fn extra_words_are_rejected(extra in "[ -~]{1,10}", pos in 0usize..8, which in 0usize..4) {
            let mut p = policy(Mode::Receive);
            p.allow_destroy = true;
            p.allow_rollback = true;
            let d = Dataset::new("tank/data/x").unwrap();
            let mut argv = [
                cmd::receive(&d),
                cmd::create_parent(&d),
                cmd::rollback(&s("tank/data/x@a")),
                list_argv(std::slice::from_ref(&d)),
            ][which].clone();
            prop_assert!(p.check(&argv).is_ok());
            argv.insert(pos.min(argv.len()), extra);
            prop_assert!(p.check(&argv).is_err(), "{:?}", argv);
        }
    }
}
