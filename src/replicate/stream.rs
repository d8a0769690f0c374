//! One `zfs send | zfs receive` pipeline between two hosts.

use crate::host::{shell_quote, Host};
use anyhow::{bail, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Relay buffer: big enough to keep ssh busy, small enough that memory stays flat.
const BUF: usize = 256 * 1024;

/// Keeps a stream at or below `limit` bytes per second, on average since it started:
/// after each chunk it waits until the bytes so far would have taken that long. The
/// stream already passes through the relay, so no `pv` or `mbuffer` is needed on a host.
struct Pace {
    limit: u64,
    start: Instant,
}

impl Pace {
    fn new(limit: u64) -> Pace {
        Pace {
            limit: limit.max(1),
            start: Instant::now(),
        }
    }

    /// Chunks of about 1/8 s of data: at low limits a 256 KiB chunk would go in bursts.
    fn chunk(&self) -> usize {
        (self.limit / 8).clamp(4096, BUF as u64) as usize
    }

    /// Waits until `total` bytes are due.
    async fn after(&self, total: u64) {
        let due = Duration::from_secs_f64(total as f64 / self.limit as f64);
        tokio::time::sleep_until(self.start + due).await;
    }
}

/// Streams `send` on `src` into `recv` on `dst` and returns the bytes moved, at most
/// `limit` bytes per second when given.
///
/// The stream passes through this process in fixed-size chunks (never buffered whole),
/// which also counts the bytes; `progress` is told each chunk's size. When a side
/// fails, the error carries both sides' exit codes and stderr, the receiver's first.
pub async fn transfer(
    src: &Host,
    send: &[String],
    dst: &Host,
    recv: &[String],
    limit: Option<u64>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64> {
    let mut receiver = dst.spawn(recv, true, false).await?;
    let mut sender = src.spawn(send, false, true).await?;
    let mut from = sender.stdout.take().expect("piped");
    let mut to = receiver.stdin.take().expect("piped");
    let pace = limit.map(Pace::new);
    let mut buf = vec![0u8; pace.as_ref().map_or(BUF, Pace::chunk)];
    let mut bytes = 0u64;
    let mut relay_err = None;
    loop {
        if let Some(p) = &pace {
            p.after(bytes).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Relays `total` bytes in the relay's chunks, paced, on tokio's paused clock.
    async fn paced(limit: u64, total: u64) -> Duration {
        let pace = Pace::new(limit);
        let chunk = pace.chunk() as u64;
        let mut sent = 0;
        while sent < total {
            pace.after(sent).await;
            sent += chunk.min(total - sent);
        }
        pace.start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_stream_never_runs_ahead_of_its_limit() {
        // 10 MiB at 1 MiB/s: the last chunk may start once 10 MiB minus one chunk are due.
        let took = paced(1 << 20, 10 << 20).await;
        let chunk = Pace::new(1 << 20).chunk() as f64 / (1 << 20) as f64;
        assert!(
            took.as_secs_f64() >= 10.0 - chunk - 1e-6 && took.as_secs_f64() <= 10.0,
            "{took:?}"
        );
        // Low limits go in small chunks (1/8 s), high ones in the full buffer.
        assert_eq!(Pace::new(64 << 10).chunk(), 8 << 10);
        assert_eq!(Pace::new(1 << 30).chunk(), BUF);
        assert_eq!(Pace::new(1).chunk(), 4096);
    }
}
