//! `zferry serve`: the SSH forced command that lets a key run only what zferry sends.
//!
//! The command from `SSH_ORIGINAL_COMMAND` is split into argv by a tokenizer that
//! accepts exactly what [`crate::host::shell_quote`] produces and nothing else (no
//! metacharacters, no newlines). The argv is then rebuilt with zferry's own builders
//! from `zfs::cmd`; only an exact match runs, by `exec` without a shell. Datasets must
//! lie under the configured roots, and each mode allows only its side's verbs.
//!
//! What the peer sends beyond the command is checked too: a resume token is decoded
//! and must name a snapshot under a root (resolved in the local pool before it runs,
//! see [`serve`]), hold tags must carry the key's prefix, and a raw-only key refuses
//! plaintext both ways (non-raw sends; streams whose head is not raw).

pub mod serve;

use crate::zfs::cmd::{self, SendSpan};
use crate::zfs::list::{list_argv_at, list_named_argv, Depth};
use crate::zfs::name::{check_hold_tag, Dataset, Snapshot};
use crate::zfs::token::{self, ResumeToken};
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
    /// Send side: only raw sends and raw resume tokens. Receive side: only streams
    /// whose head says raw. Either way no plaintext crosses this key.
    pub raw_only: bool,
    /// Hold tags this key may place, release or name start with this.
    pub hold_prefix: String,
}

/// Default [`Policy::hold_prefix`]: every tag zferry makes by default (`zferry:<job>`).
pub const HOLD_PREFIX: &str = "zferry:";

/// What must still happen before an accepted command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Nothing: run it.
    Run,
    /// A resume: the token's snapshot (and base) must be found by GUID in the dataset
    /// the token names, in the local pool, because `zfs send -t` resolves them by GUID
    /// anywhere in the pool.
    Token(ResumeToken),
    /// A receive: the stream's head must first be read and judged (never a stream with
    /// properties, which would outrank what the copy keeps; see [`crate::zfs::begin`]).
    Receive(Want),
}

/// What a receive's stream head must say before `zfs receive` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Raw (a raw-only key).
    pub raw: bool,
    /// Incremental: a receive that leaves the target's `canmount` as it is
    /// ([`cmd::Canmount::Kept`]) may only extend a dataset that exists, never make one
    /// that a hostile stream's properties would mount at boot.
    pub incremental: bool,
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
    match <[_; 1]>::try_from(tokenize_pipeline(line)?) {
        Ok([argv]) => Ok(argv),
        Err(_) => reject("a pipe ('|') where zferry sends none"),
    }
}

/// Splits a command line produced by `shell_pipeline` into its stages' argvs: an
/// unquoted `|` word separates two stages; the rest is [`tokenize`]'s grammar.
pub fn tokenize_pipeline(line: &str) -> Result<Vec<Vec<String>>, Rejected> {
    if line.chars().any(|c| c.is_control()) {
        return reject("control character (newline, tab, ...) in command");
    }
    let mut stages = Vec::new();
    let mut argv = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut word = String::new();
        let mut started = false;
        let mut pipe = false;
        while let Some(&c) = chars.peek() {
            if c == ' ' {
                break;
            }
            chars.next();
            if c == '|' && !started {
                pipe = true;
                started = true;
                if chars.peek().is_some_and(|&n| n != ' ') {
                    return reject("'|' must stand alone between two commands");
                }
                continue;
            }
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
        if pipe {
            if argv.is_empty() {
                return reject("'|' with no command before it");
            }
            stages.push(std::mem::take(&mut argv));
        } else {
            argv.push(word);
        }
        match chars.next() {
            None => break,
            Some(' ') => continue,
            Some(c) => return reject(format!("unexpected {c:?}")),
        }
    }
    if argv.is_empty() {
        return reject("'|' with no command after it");
    }
    stages.push(argv);
    Ok(stages)
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

    fn tag<'t>(&self, tag: &'t str) -> Result<&'t str, Rejected> {
        check_hold_tag(tag).map_err(|e| Rejected(e.to_string()))?;
        if !tag.starts_with(&self.hold_prefix) {
            return reject(format!(
                "hold tag '{tag}' does not start with this key's prefix '{}'",
                self.hold_prefix
            ));
        }
        Ok(tag)
    }

    /// Accepts a command line's stages: one command as [`Policy::check`] does, or the
    /// one pipeline zferry builds, `zfs send ... | zstd -c -LEVEL` on the send side of a
    /// key that may send plain streams (raw streams are never compressed). Returns what
    /// must be confirmed first and, for the pipeline, the compressor's argv.
    pub fn check_pipeline(
        &self,
        stages: &[Vec<String>],
    ) -> Result<(Checked, Option<Vec<String>>), Rejected> {
        let (send, zstd) = match stages {
            [argv] => return Ok((self.check(argv)?, None)),
            [send, zstd] if self.mode == Mode::Send => (send, zstd),
            _ => {
                return reject(format!(
                    "'{}' is not a pipeline zferry sends in {:?} mode",
                    crate::host::shell_pipeline(
                        &stages.iter().map(Vec::as_slice).collect::<Vec<_>>()
                    ),
                    self.mode
                ))
            }
        };
        if self.raw_only {
            return reject("this key sends raw only, and raw streams are never compressed");
        }
        let level = match zstd.as_slice() {
            [z, c, l] if z == "zstd" && c == "-c" => l.strip_prefix('-').and_then(cmd::zstd_level),
            _ => None,
        };
        let Some(level) = level.filter(|l| cmd::zstd_compress(*l) == *zstd) else {
            return reject(format!(
                "'{}' is not the compressor zferry sends (zstd -c -LEVEL, 1 to {})",
                crate::host::shell_quote(zstd),
                cmd::ZSTD_MAX_LEVEL
            ));
        };
        let a: Vec<&str> = send.iter().map(String::as_str).collect();
        if !matches!(a.as_slice(), ["zfs", "send", ..]) || a.contains(&"-nP") || a.contains(&"-w") {
            return reject("only a plain zfs send (no -w, no -nP) is piped through a compressor");
        }
        let checked = self.check(send)?;
        if let Checked::Token(t) = &checked {
            if t.raw {
                return reject(format!(
                    "resume token for {} asks for a raw stream, and raw streams are never compressed",
                    t.toname
                ));
            }
        }
        Ok((checked, Some(cmd::zstd_compress(level))))
    }

    /// Accepts `argv` only if zferry's own builders produce exactly it for allowed
    /// datasets, and says what must still be confirmed before it runs.
    pub fn check(&self, argv: &[String]) -> Result<Checked, Rejected> {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut checked = Checked::Run;
        let expected: Vec<String> = match (self.mode, a.as_slice()) {
            // What a run reads back of what it changed: names alone, each under a root.
            (
                _,
                ["zfs", "list", "-Hp", "-t", "filesystem,volume,snapshot", "-o", _, names @ ..],
            ) if !names.is_empty() => {
                let names = names
                    .iter()
                    .map(|n| {
                        if n.contains('@') {
                            self.snap(n).map(|s| s.to_string())
                        } else {
                            self.dataset(n).map(|d| d.to_string())
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                list_named_argv(&names)
            }
            (_, ["zfs", "list", .., "-r", _]) | (_, ["zfs", "list", "-Hp", ..]) => {
                // Recursive (`-r`, everything or filesystems only), the datasets alone
                // (`-d 0`) or their own snapshots (`-d 1`); the rebuilt argv must then
                // match word for word.
                let fs_only = a.windows(2).any(|w| w == ["-t", "filesystem,volume"]);
                let (depth, r) = match a.iter().position(|x| *x == "-r") {
                    Some(i) if fs_only => (Depth::Filesystems, i + 1),
                    Some(i) => (Depth::Recursive, i + 1),
                    None => match a.windows(2).position(|w| w[0] == "-d") {
                        Some(i) if a[i + 1] == "0" => (Depth::Only, i + 2),
                        Some(i) if a[i + 1] == "1" => (Depth::Snapshots, i + 2),
                        _ => (Depth::Recursive, a.len()),
                    },
                };
                let roots = a[r..]
                    .iter()
                    .map(|s| self.dataset(s))
                    .collect::<Result<Vec<_>, _>>()?;
                // `zfs list -r` without a dataset lists every pool.
                if roots.is_empty() {
                    return reject("a listing must name datasets under the roots");
                }
                list_argv_at(&roots, depth)
            }
            (Mode::Send, ["zstd", "-V"]) => cmd::zstd_version(),
            (_, ["zfs", "get", "-Hp", "-o", "value", "guid", snap]) => {
                cmd::get_guid(&self.snap(snap)?)
            }
            (
                _,
                ["zfs", "get", "-Hp", "-o", "name,property,value", "guid,snapshots_changed", snap, _],
            ) => cmd::get_guid_and_changed(&self.snap(snap)?),
            (_, ["zfs", verb @ ("hold" | "release"), tag, snaps @ ..]) if !snaps.is_empty() => {
                let tag = self.tag(tag)?;
                let snaps = snaps
                    .iter()
                    .map(|s| self.snap(s))
                    .collect::<Result<Vec<_>, _>>()?;
                if *verb == "hold" {
                    cmd::hold_all(tag, &snaps)
                } else {
                    cmd::release_all(tag, &snaps)
                }
            }
            (_, ["zfs", "holds", "-H", snaps @ ..]) if !snaps.is_empty() => cmd::holds(
                &snaps
                    .iter()
                    .map(|s| self.snap(s))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            (Mode::Send, ["zfs", "send", rest @ ..]) => {
                let (argv, token) = self.send(rest)?;
                if let Some(t) = token {
                    checked = Checked::Token(t);
                }
                argv
            }
            (Mode::Receive, ["zfs", "receive", "-u", .., ds]) => {
                let ds = self.dataset(ds)?;
                let kept = cmd::receive(&ds, cmd::Canmount::Kept);
                let want = Want {
                    raw: self.raw_only,
                    incremental: argv == kept,
                };
                checked = Checked::Receive(want);
                if want.incremental {
                    kept
                } else {
                    cmd::receive(&ds, cmd::Canmount::Noauto)
                }
            }
            (
                Mode::Receive,
                ["zfs", "get", "-Hp", "-s", "local", "-o", "name,value", "canmount", targets @ ..],
            ) if !targets.is_empty() => {
                let targets: Vec<Dataset> = targets
                    .iter()
                    .map(|t| self.dataset(t))
                    .collect::<Result<_, _>>()?;
                cmd::get_local_canmount(&targets)
            }
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
        Ok(checked)
    }

    /// A token is decoded, must name a snapshot under a root and, on a raw-only key,
    /// ask for a raw stream.
    fn token(&self, text: &str) -> Result<ResumeToken, Rejected> {
        let t = token::parse(text).map_err(|e| Rejected(format!("resume token: {e}")))?;
        self.within(t.toname.dataset())?;
        if self.raw_only && !t.raw {
            return reject(format!(
                "resume token for {} asks for a non-raw stream; this key sends raw only",
                t.toname
            ));
        }
        Ok(t)
    }

    fn send(&self, rest: &[&str]) -> Result<(Vec<String>, Option<ResumeToken>), Rejected> {
        let mut rest = rest;
        let dry = rest.first() == Some(&"-nP");
        if dry {
            rest = &rest[1..];
        }
        let raw = rest.first() == Some(&"-w");
        if raw {
            rest = &rest[1..];
        }
        if let ["-t", text] = rest {
            if raw {
                return reject("a resume token carries its own raw flag; -w with -t is not a form zferry sends");
            }
            let t = self.token(text)?;
            let span = SendSpan::Resume {
                token: text.to_string(),
            };
            return Ok((cmd::send(&span, false, dry), Some(t)));
        }
        if self.raw_only && !raw {
            return reject("this key sends raw only (zfs send -w): a non-raw send would decrypt");
        }
        let span = match rest {
            [to] => SendSpan::Full { to: self.snap(to)? },
            [flag @ ("-i" | "-I"), from, to] => SendSpan::Incremental {
                from: self.snap(from)?,
                to: self.snap(to)?,
                intermediates: *flag == "-I",
            },
            _ => return reject("unknown zfs send form"),
        };
        Ok((cmd::send(&span, raw, dry), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::shell_quote;
    use crate::zfs::cmd::Canmount;
    use crate::zfs::list::list_argv;
    use proptest::prelude::*;

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            roots: vec![Dataset::new("tank/data").unwrap()],
            allow_rollback: false,
            allow_destroy: false,
            raw_only: false,
            hold_prefix: HOLD_PREFIX.into(),
        }
    }

    fn raw_only(mode: Mode) -> Policy {
        Policy {
            raw_only: true,
            ..policy(mode)
        }
    }

    fn resume(token: String) -> Vec<String> {
        cmd::send(&SendSpan::Resume { token }, false, false)
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
        let t = crate::zfs::token::build::token("tank/data/kid@a", 5, None, true);
        assert!(matches!(
            p.check(&resume(t.clone())),
            Ok(Checked::Token(ResumeToken { toguid: 5, .. }))
        ));
        assert!(ok(
            &p,
            &cmd::send(&SendSpan::Resume { token: t }, false, true)
        ));
        assert!(ok(&p, &cmd::hold("zferry:job", &s("tank/data@a"))));
        assert!(ok(
            &p,
            &cmd::holds(&[s("tank/data@a"), s("tank/data/kid@b")])
        ));
        // Receive-side verbs are not for this key.
        assert!(!ok(&p, &cmd::receive(&d, Canmount::Noauto)));
    }

    #[test]
    fn receive_side_and_its_options() {
        let mut p = policy(Mode::Receive);
        let d = Dataset::new("tank/data/x").unwrap();
        assert!(ok(&p, &cmd::receive(&d, Canmount::Noauto)));
        assert!(ok(&p, &cmd::receive(&d, Canmount::Kept)));
        let canmount = |n: &[&str]| {
            cmd::get_local_canmount(
                &n.iter()
                    .map(|x| Dataset::new(x).unwrap())
                    .collect::<Vec<_>>(),
            )
        };
        assert!(ok(&p, &canmount(&["tank/data/x", "tank/data/y"])));
        assert!(!ok(&p, &canmount(&["tank/data/x", "tank/other"])));
        assert!(ok(&p, &cmd::create_parent(&d)));
        assert!(ok(&p, &cmd::get_guid(&s("tank/data/x@a"))));
        let only = |d: &str| list_argv_at(&[Dataset::new(d).unwrap()], Depth::Only);
        assert!(ok(&p, &only("tank/data/x")));
        assert!(!ok(&p, &only("tank/other")));
        // The cached run's two listings: filesystems, then some datasets' snapshots.
        for depth in [Depth::Filesystems, Depth::Snapshots] {
            let at = |d: &str| list_argv_at(&[Dataset::new(d).unwrap()], depth);
            assert!(ok(&p, &at("tank/data/x")), "{depth:?}");
            assert!(!ok(&p, &at("tank/other")), "{depth:?}");
        }
        let two = [
            Dataset::new("tank/data/x").unwrap(),
            Dataset::new("tank/data/y").unwrap(),
        ];
        assert!(ok(&p, &list_argv_at(&two, Depth::Snapshots)));
        assert!(!ok(&p, &cmd::get_guid(&s("tank/other@a"))));
        // The receive's check with the mark, and the read-back of what a run changed.
        assert!(ok(&p, &cmd::get_guid_and_changed(&s("tank/data/x@a"))));
        assert!(!ok(&p, &cmd::get_guid_and_changed(&s("tank/other@a"))));
        let mut other_ds = cmd::get_guid_and_changed(&s("tank/data/x@a"));
        *other_ds.last_mut().unwrap() = "tank/other".into();
        assert!(!ok(&p, &other_ds), "the dataset must be the snapshot's");
        let named =
            |n: &[&str]| list_named_argv(&n.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert!(ok(
            &p,
            &named(&["tank/data/x", "tank/data/x@a", "tank/data/x@b"])
        ));
        assert!(!ok(&p, &named(&["tank/data/x", "tank/other@a"])));
        assert!(!ok(&p, &named(&["tank/other"])));
        let mut no_names = named(&["tank/data/x"]);
        no_names.pop();
        assert!(!ok(&p, &no_names), "no names: every dataset");
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
            "zfs list -Hp -t filesystem,volume,snapshot,bookmark -s createtxg -o name,type,guid,createtxg,encryption,keystatus,written,receive_resume_token,userrefs,creation -r",
            "zfs hold -r tank/data@a",
            "zfs hold admin-keep tank/data@a",
            "zfs release admin-keep tank/data@a",
            "zfs hold zferry:x tank/other@a",
            "zfs set readonly=off tank/data",
            "",
        ] {
            let r = tokenize(line).and_then(|a| p.check(&a));
            assert!(r.is_err(), "{line:?} was allowed");
            assert!(!r.unwrap_err().0.is_empty());
        }
    }

    #[test]
    fn resume_tokens_are_decoded_and_must_stay_under_the_root() {
        use crate::zfs::token::build::token;
        let p = policy(Mode::Send);
        for (bad, why) in [
            (
                token("tank/secret@s1", 5, None, true),
                "outside the allowed roots",
            ),
            (
                token("tank/dataset@s1", 5, None, true),
                "outside the allowed roots",
            ),
            ("1-abc-def".to_string(), "resume token"),
            ("garbage".to_string(), "resume token"),
        ] {
            let e = p.check(&resume(bad.clone())).unwrap_err();
            assert!(e.0.contains(why), "{bad}: {e}");
            let dry = cmd::send(&SendSpan::Resume { token: bad }, false, true);
            assert!(p.check(&dry).is_err());
        }
        // -w with -t is no form zferry sends.
        let t = token("tank/data@s1", 5, None, true);
        let mut raw_t = resume(t);
        raw_t.insert(2, "-w".into());
        assert!(p.check(&raw_t).is_err());
    }

    #[test]
    fn raw_only_keys_refuse_plaintext_both_ways() {
        use crate::zfs::token::build::token;
        let p = raw_only(Mode::Send);
        let full = |raw| {
            cmd::send(
                &SendSpan::Full {
                    to: s("tank/data@a"),
                },
                raw,
                false,
            )
        };
        assert_eq!(p.check(&full(true)), Ok(Checked::Run));
        assert!(p.check(&full(false)).unwrap_err().0.contains("raw only"));
        let inc = SendSpan::Incremental {
            from: s("tank/data@a"),
            to: s("tank/data@b"),
            intermediates: true,
        };
        assert!(p.check(&cmd::send(&inc, false, true)).is_err());
        assert!(p.check(&cmd::send(&inc, true, true)).is_ok());
        assert!(p
            .check(&resume(token("tank/data@a", 1, None, true)))
            .is_ok());
        let plain = p.check(&resume(token("tank/data@a", 1, None, false)));
        assert!(plain.unwrap_err().0.contains("non-raw"));
        // The receive side defers to the stream's head.
        let d = Dataset::new("tank/data/x").unwrap();
        let want = |raw, incremental| Ok(Checked::Receive(Want { raw, incremental }));
        let p = raw_only(Mode::Receive);
        assert_eq!(
            p.check(&cmd::receive(&d, Canmount::Noauto)),
            want(true, false)
        );
        assert_eq!(p.check(&cmd::receive(&d, Canmount::Kept)), want(true, true));
        let p = policy(Mode::Receive);
        assert_eq!(
            p.check(&cmd::receive(&d, Canmount::Noauto)),
            want(false, false)
        );
        // Leaving canmount as it is needs an incremental head, on any key.
        assert_eq!(
            p.check(&cmd::receive(&d, Canmount::Kept)),
            want(false, true)
        );
    }

    #[test]
    fn hold_tags_must_carry_the_prefix() {
        let mut p = policy(Mode::Send);
        let a = s("tank/data@a");
        assert!(ok(&p, &cmd::hold("zferry:job", &a)));
        let two = [a.clone(), s("tank/data/kid@b")];
        assert!(ok(&p, &cmd::hold_all("zferry:job", &two)));
        assert!(ok(&p, &cmd::release_all("zferry:job", &two)));
        assert!(!ok(
            &p,
            &cmd::release_all("zferry:job", &[a.clone(), s("tank/other@b")])
        ));
        assert!(!ok(&p, &cmd::release("other:job", &a)));
        assert!(!ok(&p, &cmd::release("-r", &a)));
        p.hold_prefix = "site-".into();
        assert!(ok(&p, &cmd::release("site-job", &a)));
        assert!(!ok(&p, &cmd::release("zferry:job", &a)));
    }

    /// The stages of `line` as the guard judges them.
    fn piped(p: &Policy, line: &str) -> Result<(Checked, Option<Vec<String>>), Rejected> {
        p.check_pipeline(&tokenize_pipeline(line)?)
    }

    #[test]
    fn a_plain_send_may_be_piped_through_zferrys_compressor_and_nothing_else() {
        use crate::host::shell_pipeline;
        use crate::zfs::token::build::token;
        let p = policy(Mode::Send);
        let full = cmd::send(
            &SendSpan::Full {
                to: s("tank/data/a@1"),
            },
            false,
            false,
        );
        let line = |send: &[String], z: &[String]| shell_pipeline(&[send, z]);
        for level in [1, 3, 19] {
            let z = cmd::zstd_compress(level);
            assert_eq!(piped(&p, &line(&full, &z)), Ok((Checked::Run, Some(z))));
        }
        // The probe, and only on the send side.
        assert!(ok(&p, &cmd::zstd_version()));
        assert!(!ok(&policy(Mode::Receive), &cmd::zstd_version()));
        // A plain resume may be compressed (its token still checked); a raw one not.
        let plain = resume(token("tank/data/a@2", 7, None, false));
        let z3 = cmd::zstd_compress(3);
        assert!(matches!(
            piped(&p, &line(&plain, &z3)),
            Ok((Checked::Token(_), Some(_)))
        ));
        let raw = resume(token("tank/data/a@2", 7, None, true));
        assert!(piped(&p, &line(&raw, &z3)).is_err());
        let elsewhere = resume(token("tank/secret@2", 7, None, false));
        assert!(piped(&p, &line(&elsewhere, &z3)).is_err());
        let rawsend = cmd::send(
            &SendSpan::Full {
                to: s("tank/data/a@1"),
            },
            true,
            false,
        );
        let dry = cmd::send(
            &SendSpan::Full {
                to: s("tank/data/a@1"),
            },
            false,
            true,
        );
        let other = cmd::send(
            &SendSpan::Full {
                to: s("tank/other@1"),
            },
            false,
            false,
        );
        let w = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for bad in [
            line(&rawsend, &z3),
            line(&dry, &z3),
            line(&other, &z3),
            line(&full, &w(&["zstd", "-c", "-20"])),
            line(&full, &w(&["zstd", "-c", "-0"])),
            line(&full, &w(&["zstd", "-c", "-03"])),
            line(&full, &w(&["zstd", "-c", "-3", "-o", "/etc/passwd"])),
            line(&full, &w(&["zstd", "-d"])),
            line(&full, &w(&["sh", "-c", "-3"])),
            line(&z3, &full),
            line(&w(&["zfs", "list", "-Hp", "-r", "tank/data"]), &z3),
            format!(
                "{} | {} | {}",
                shell_quote(&full),
                shell_quote(&z3),
                shell_quote(&z3)
            ),
            format!("{} |{}", shell_quote(&full), shell_quote(&z3)),
            format!("{} || {}", shell_quote(&full), shell_quote(&z3)),
            format!("{} | ", shell_quote(&full)),
            format!("| {}", shell_quote(&full)),
        ] {
            assert!(piped(&p, &bad).is_err(), "{bad}");
        }
        // A quoted '|' is a word, not a pipe.
        assert_eq!(
            tokenize_pipeline("zfs hold '|' x").unwrap(),
            [w(&["zfs", "hold", "|", "x"])]
        );
        // A raw-only key never compresses; a receiving key takes no pipeline at all.
        assert!(piped(&raw_only(Mode::Send), &line(&full, &z3)).is_err());
        let recv = cmd::receive(&Dataset::new("tank/data/a").unwrap(), Canmount::Noauto);
        let unzstd = w(&["zstd", "-dc"]);
        assert!(piped(&policy(Mode::Receive), &line(&unzstd, &recv)).is_err());
        // One command alone still has no pipe.
        assert!(tokenize(&line(&full, &z3)).is_err());
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

        /// ... and tokenize_pipeline inverts shell_pipeline.
        #[test]
        fn tokenize_pipeline_inverts_shell_pipeline(
            stages in proptest::collection::vec(proptest::collection::vec("[ -~]{1,12}", 1..4), 1..4)
        ) {
            let line = crate::host::shell_pipeline(&stages.iter().map(Vec::as_slice).collect::<Vec<_>>());
            prop_assert_eq!(tokenize_pipeline(&line).unwrap(), stages);
        }

        /// One extra word anywhere in an allowed command makes it a refused one.
        #[test]
        fn extra_words_are_rejected(extra in "[ -~]{1,10}", pos in 0usize..10, which in 0usize..9) {
            let mut p = policy(Mode::Receive);
            p.allow_destroy = true;
            p.allow_rollback = true;
            let d = Dataset::new("tank/data/x").unwrap();
            let mut argv = [
                cmd::receive(&d, Canmount::Noauto),
                cmd::create_parent(&d),
                cmd::rollback(&s("tank/data/x@a")),
                list_argv(std::slice::from_ref(&d)),
                cmd::get_guid(&s("tank/data/x@a")),
                list_argv_at(std::slice::from_ref(&d), Depth::Filesystems),
                list_argv_at(std::slice::from_ref(&d), Depth::Snapshots),
                cmd::receive(&d, Canmount::Kept),
                cmd::get_local_canmount(std::slice::from_ref(&d)),
            ][which].clone();
            prop_assert!(p.check(&argv).is_ok());
            argv.insert(pos.min(argv.len()), extra);
            prop_assert!(p.check(&argv).is_err(), "{:?}", argv);
        }

        /// Every command zferry builds passes its key; replacing any one word of it by
        /// another dataset, flag, tag or token is refused.
        #[test]
        fn any_single_mutation_is_refused(which in 0usize..13, pos in 0usize..20, with in 0usize..8) {
            use crate::zfs::token::build::token;
            let send_side = raw_only(Mode::Send);
            let mut recv_side = raw_only(Mode::Receive);
            recv_side.allow_destroy = true;
            recv_side.allow_rollback = true;
            let d = Dataset::new("tank/data/x").unwrap();
            let inc = SendSpan::Incremental { from: s("tank/data/x@a"), to: s("tank/data/x@b"), intermediates: true };
            let (p, argv) = match which {
                0 => (&send_side, cmd::send(&SendSpan::Full { to: s("tank/data/x@a") }, true, false)),
                1 => (&send_side, cmd::send(&inc, true, false)),
                2 => (&send_side, resume(token("tank/data/x@b", 7, Some(6), true))),
                3 => (&send_side, cmd::hold("zferry:job", &s("tank/data/x@a"))),
                4 => (&send_side, cmd::release("zferry:job", &s("tank/data/x@a"))),
                5 => (&send_side, list_argv(std::slice::from_ref(&d))),
                6 => (&recv_side, cmd::receive(&d, Canmount::Noauto)),
                7 => (&recv_side, cmd::create_parent(&d)),
                8 => (&recv_side, cmd::rollback(&s("tank/data/x@a"))),
                9 => (&send_side, list_argv_at(std::slice::from_ref(&d), Depth::Filesystems)),
                10 => (&recv_side, cmd::receive(&d, Canmount::Kept)),
                11 => (&recv_side, cmd::get_local_canmount(std::slice::from_ref(&d))),
                _ => (&recv_side, list_argv_at(std::slice::from_ref(&d), Depth::Snapshots)),
            };
            prop_assert!(p.check(&argv).is_ok(), "{:?}", argv);
            let replacements = [
                "tank/other".to_string(), "tank/other@a".into(), "-F".into(), "-R".into(),
                "other:job".into(), token("tank/secret@b", 7, Some(6), true),
                token("tank/data/x@b", 7, Some(6), false), "zfs".into(),
            ];
            let mut mutated = argv.clone();
            let i = pos % mutated.len();
            mutated[i] = replacements[with].clone();
            prop_assume!(mutated != argv);
            prop_assert!(p.check(&mutated).is_err(), "{:?}", mutated);
        }
    }
}
