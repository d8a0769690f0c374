//! Runs what the policy accepted: confirms a resume token's snapshots in the local
//! pool, checks a raw-only receive's stream head, then hands the command to `zfs`
//! (by `exec`, or through a relay when the head had to be read first). Rejections go
//! to stderr and syslog, escaped, with the client's address.

use super::{tokenize_pipeline, Checked, Policy, Rejected, Want};
use crate::zfs::begin::{self, Begin};
use crate::zfs::token::ResumeToken;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// How a served command ended when it did not become `zfs` itself.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The command or what came with it was refused; nothing ran.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// Not started by sshd as a forced command.
    #[error("zferry serve: no SSH_ORIGINAL_COMMAND; use it as a forced command in authorized_keys (command=\"zferry serve ...\",restrict)")]
    NoCommand,
    /// It was accepted but could not be run.
    #[error("zferry serve: {0}")]
    Failed(String),
}

/// Serves one SSH command (`SSH_ORIGINAL_COMMAND`). Returns only when nothing was
/// exec'd: the relayed receive's exit code, or why not.
pub fn run(policy: &Policy, command: Option<OsString>) -> Result<i32, ServeError> {
    let Some(command) = command else {
        return Err(ServeError::NoCommand);
    };
    let line = command.into_string().map_err(|raw| {
        Rejected(format!(
            "command is not UTF-8: {}",
            escape(&raw.to_string_lossy())
        ))
    })?;
    let stages = tokenize_pipeline(&line)?;
    let (checked, compressor) = policy.check_pipeline(&stages)?;
    let argv = &stages[0];
    match checked {
        Checked::Run => {}
        Checked::Token(t) => confirm_token(&t, &list_points(&t)?)?,
        Checked::Receive(want) => return relay_judged(argv, want),
    }
    if let Some(zstd) = compressor {
        return piped(argv, &zstd);
    }
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(ServeError::Failed(format!("cannot run {}: {err}", argv[0])))
}

/// `name<TAB>guid` of every snapshot and bookmark of the dataset the token names.
fn list_points(t: &ResumeToken) -> Result<String, ServeError> {
    let argv = crate::zfs::cmd::list_points(t.toname.dataset());
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ServeError::Failed(format!("cannot run zfs list: {e}")))?;
    if !out.status.success() {
        return Err(Rejected(format!(
            "resume token names {}, which this host cannot list: {}",
            t.toname,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The token's snapshot and base must be the ones its own dataset holds: `zfs send -t`
/// would otherwise find a snapshot with that GUID elsewhere in the pool.
pub fn confirm_token(t: &ResumeToken, listing: &str) -> Result<(), Rejected> {
    let ds = t.toname.dataset().as_str();
    let points: Vec<(&str, u64)> = listing
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(n, _)| {
            n.strip_prefix(ds)
                .is_some_and(|rest| rest.starts_with('@') || rest.starts_with('#'))
        })
        .filter_map(|(n, g)| Some((n, g.trim().parse().ok()?)))
        .collect();
    let to = t.toname.to_string();
    if !points.iter().any(|(n, g)| *n == to && *g == t.toguid) {
        return Err(Rejected(format!(
            "resume token asks for {to} with GUID {}, which is not that snapshot here",
            t.toguid
        )));
    }
    if let Some(from) = t.fromguid {
        if !points.iter().any(|(_, g)| *g == from) {
            return Err(Rejected(format!(
                "resume token's base GUID {from} is not a snapshot or bookmark of {ds}"
            )));
        }
    }
    Ok(())
}

/// Whether a stream whose first substream begins with `first` is one `want` admits.
pub fn judge(first: &Begin, want: Want) -> Result<(), Rejected> {
    if want.raw && !first.raw {
        return Err(Rejected(format!(
            "stream of {} is not raw: this key receives encrypted (zfs send -w) streams only, plaintext never reaches zfs receive",
            escape(&first.toname)
        )));
    }
    if want.incremental && !first.incremental {
        return Err(Rejected(format!(
            "stream of {} is a full stream: a receive that leaves canmount as it is (no -o canmount=noauto) only extends a dataset that exists",
            escape(&first.toname)
        )));
    }
    Ok(())
}

/// Reads the stream's head and [`judge`]s it, then feeds head and rest to
/// `zfs receive`: not one byte reaches it before the head was judged.
fn relay_judged(argv: &[String], want: Want) -> Result<i32, ServeError> {
    let mut stdin = std::io::stdin().lock();
    let (head, first) = begin::read_head(&mut stdin).map_err(|e| Rejected(e.to_string()))?;
    let first = first.ok_or_else(|| Rejected("the stream ended before its first record".into()))?;
    judge(&first, want)?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| ServeError::Failed(format!("cannot run {}: {e}", argv[0])))?;
    let mut to_zfs = child.stdin.take().expect("piped");
    // A receive that stops reading (it failed) closes the pipe; its exit code says why.
    let _ = to_zfs
        .write_all(&head)
        .and_then(|_| std::io::copy(&mut stdin, &mut to_zfs).map(|_| ()));
    drop(to_zfs);
    let status = child
        .wait()
        .map_err(|e| ServeError::Failed(format!("waiting for {}: {e}", argv[0])))?;
    Ok(status.code().unwrap_or(1))
}

/// Runs `send | compressor` without a shell: the send's stdout into the compressor,
/// whose stdout is the SSH channel. The exit code is the send's when it failed (a shell
/// would report only the compressor's), else the compressor's.
fn piped(send: &[String], compressor: &[String]) -> Result<i32, ServeError> {
    let mut sender = Command::new(&send[0])
        .args(&send[1..])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| ServeError::Failed(format!("cannot run {}: {e}", send[0])))?;
    let stream = sender.stdout.take().expect("piped");
    let compressed = Command::new(&compressor[0])
        .args(&compressor[1..])
        .stdin(stream)
        .status();
    // Without its reader the send ends on SIGPIPE; wait so it is not left behind.
    let sent = sender.wait();
    let zstd = compressed.map_err(|e| {
        ServeError::Failed(format!(
            "cannot run {}: {e}; install it on this host or leave compress out",
            compressor[0]
        ))
    })?;
    let sent = sent.map_err(|e| ServeError::Failed(format!("waiting for {}: {e}", send[0])))?;
    Ok(match (sent.code(), zstd.code()) {
        (Some(0), z) => z.unwrap_or(1),
        (s, _) => s.unwrap_or(1),
    })
}

/// Escapes everything but printable ASCII, so a log line cannot be forged or reordered
/// (newlines, U+2028, U+202E ...).
pub fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let plain = c == ' ' || c.is_ascii_graphic();
            let e: Vec<char> = if plain {
                vec![c]
            } else {
                c.escape_default().collect()
            };
            e
        })
        .collect()
}

/// The client's address from `SSH_CONNECTION` ("client port server port"), if sane.
pub fn client_address(ssh_connection: Option<&str>) -> Option<String> {
    let addr = ssh_connection?.split(' ').next()?;
    let sane = !addr.is_empty()
        && addr.len() <= 45
        && addr
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':');
    sane.then(|| addr.to_string())
}

/// Logs a rejection to syslog (best effort, facility auth) so an admin sees attempts.
pub fn log_rejection(r: &Rejected, client: Option<&str>) {
    use std::os::unix::net::UnixDatagram;
    let from = client.map(|c| format!("from {c}: ")).unwrap_or_default();
    if let Ok(sock) = UnixDatagram::unbound() {
        // <36> = facility auth (4), severity warning (4).
        let line = format!("<36>zferry-serve: {from}{}", escape(&r.0));
        let _ = sock.send_to(line.as_bytes(), "/dev/log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::token::build::token;
    use crate::zfs::token::parse;

    fn tok(fromguid: Option<u64>) -> ResumeToken {
        parse(&token("tank/data/a@s2", 22, fromguid, true)).unwrap()
    }

    #[test]
    fn a_token_is_confirmed_only_by_its_own_dataset() {
        let here = "tank/data/a@s1\t21\ntank/data/a#b1\t21\ntank/data/a@s2\t22\n";
        assert!(confirm_token(&tok(Some(21)), here).is_ok());
        assert!(confirm_token(&tok(None), here).is_ok());
        // The GUID exists, but in another dataset (or under another name).
        let elsewhere = "tank/secret@s2\t22\ntank/data/a@s1\t21\n";
        assert!(confirm_token(&tok(None), elsewhere).is_err());
        let renamed = "tank/data/a@other\t22\n";
        assert!(confirm_token(&tok(None), renamed).is_err());
        let prefix = "tank/data/ab@s2\t22\n";
        assert!(confirm_token(&tok(None), prefix).is_err());
        // The base is not this dataset's.
        assert!(confirm_token(&tok(Some(99)), here).is_err());
    }

    #[test]
    fn a_head_is_judged_by_what_the_receive_wants() {
        use crate::zfs::begin::{build::compound, inspect, Head};
        let head = |raw, incremental| Begin {
            toname: "t/a@2".into(),
            raw,
            incremental,
        };
        let want = |raw, incremental| Want { raw, incremental };
        assert!(judge(&head(false, false), want(false, false)).is_ok());
        assert!(judge(&head(true, true), want(true, true)).is_ok());
        let e = judge(&head(false, true), want(true, false)).unwrap_err();
        assert!(e.0.contains("not raw"), "{e}");
        let e = judge(&head(true, false), want(true, true)).unwrap_err();
        assert!(e.0.contains("full stream"), "{e}");
        assert!(judge(&head(false, false), want(false, true)).is_err());
        // The head zfs send -w -I writes passes both.
        let Ok(Head::Done(first)) = inspect(&compound(true)) else {
            panic!("a whole head")
        };
        assert!(judge(&first, want(true, true)).is_ok());
    }

    #[test]
    fn log_lines_are_escaped() {
        assert_eq!(
            escape("a\nb\u{2028}c\u{202e}d"),
            "a\\nb\\u{2028}c\\u{202e}d"
        );
        assert_eq!(escape("zfs send -w t/a@1"), "zfs send -w t/a@1");
    }

    #[test]
    fn client_address_from_ssh_connection() {
        assert_eq!(
            client_address(Some("10.0.2.2 51234 10.0.2.15 22")).as_deref(),
            Some("10.0.2.2")
        );
        assert_eq!(
            client_address(Some("fe80::1 5 fe80::2 22")).as_deref(),
            Some("fe80::1")
        );
        assert_eq!(client_address(Some("evil\nline 1 2 3")), None);
        assert_eq!(client_address(None), None);
    }
}
