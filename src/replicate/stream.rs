//! One `zfs send | zfs receive` pipeline between two hosts.

use crate::host::{shell_quote, Host};
use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Relay buffer: big enough to keep ssh busy, small enough that memory stays flat.
const BUF: usize = 256 * 1024;

/// Streams `send` on `src` into `recv` on `dst` and returns the bytes moved.
///
/// The stream passes through this process in fixed-size chunks (never buffered whole),
/// which also counts the bytes; `progress` is told each chunk's size. When a side
/// fails, the error carries both sides' exit codes and stderr, the receiver's first.
pub async fn transfer(
    src: &Host,
    send: &[String],
    dst: &Host,
    recv: &[String],
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64> {
    let mut receiver = dst.spawn(recv, true, false).await?;
    let mut sender = src.spawn(send, false, true).await?;
    let mut from = sender.stdout.take().expect("piped");
    let mut to = receiver.stdin.take().expect("piped");
    let mut buf = vec![0u8; BUF];
    let mut bytes = 0u64;
    let mut relay_err = None;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                relay_err = Some(format!("reading the send stream: {e}"));
                break;
            }
        };
        if let Err(e) = to.write_all(&buf[..n]).await {
            relay_err = Some(format!("writing to the receiver: {e}"));
            break;
        }
        bytes += n as u64;
        progress(n as u64);
    }
    // Closing both ends tells each side the other is done (EOF or SIGPIPE).
    let _ = to.shutdown().await;
    drop(to);
    drop(from);
    let ((scode, serr), (rcode, rerr)) = tokio::try_join!(sender.wait(), receiver.wait())?;
    if scode == Some(0) && rcode == Some(0) && relay_err.is_none() {
        return Ok(bytes);
    }
    let recv_line = format!(
        "receive '{}' on {}: {}{}",
        shell_quote(recv),
        dst.label(),
        dst.describe_code(rcode),
        stderr_suffix(&rerr)
    );
    let send_line = format!(
        "send '{}' on {}: {}{}",
        shell_quote(send),
        src.label(),
        src.describe_code(scode),
        stderr_suffix(&serr)
    );
    let (first, second) = if rcode != Some(0) {
        (recv_line, send_line)
    } else {
        (send_line, recv_line)
    };
    bail!(
        "transfer failed after {bytes} bytes\n  {first}\n  {second}{}",
        relay_err
            .map(|e| format!("\n  relay: {e}"))
            .unwrap_or_default()
    )
}

fn stderr_suffix(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {}", s.replace('\n', " | "))
    }
}
