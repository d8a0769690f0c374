//! One `zfs send | zfs receive` pipeline between two hosts.

use crate::host::{shell_quote, Host};
use anyhow::{bail, Result};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Relay buffer: big enough to keep ssh busy, small enough that memory stays flat.
const BUF: usize = 256 * 1024;

/// Keeps streams at or below `limit` bytes per second together: each chunk is given
/// the next free slot of a shared schedule, so concurrent streams of one job split the
/// limit, and time nobody used is not saved up for a burst. The stream already passes
/// through the relay, so no `pv` or `mbuffer` is needed on a host.
pub struct Pace {
    limit: u64,
    /// When the next chunk may go.
    next: Mutex<Option<Instant>>,
}

impl Pace {
    /// A schedule of `limit` bytes per second.
    pub fn new(limit: u64) -> Pace {
        Pace {
            limit: limit.max(1),
            next: Mutex::new(None),
        }
    }

    /// Bytes per second.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Chunks of about 1/8 s of data: at low limits a 256 KiB chunk would go in bursts.
    fn chunk(&self) -> usize {
        (self.limit / 8).clamp(4096, BUF as u64) as usize
    }

    /// Waits for the slot of a chunk of `n` bytes.
    async fn take(&self, n: usize) {
        let slot = {
            let mut next = self.next.lock().expect("no panic while held");
            let now = Instant::now();
            let slot = next.map_or(now, |t| t.max(now));
            *next = Some(slot + Duration::from_secs_f64(n as f64 / self.limit as f64));
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Streams `send` on `src` into `recv` on `dst` and returns the bytes moved, paced by
/// `pace` when given.
///
/// The stream passes through this process in fixed-size chunks (never buffered whole),
/// which also counts the bytes; `progress` is told each chunk's size. When a side
/// fails, the error carries both sides' exit codes and stderr, the receiver's first.
pub async fn transfer(
    src: &Host,
    send: &[String],
    dst: &Host,
    recv: &[String],
    pace: Option<&Pace>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64> {
    let mut receiver = dst.spawn(recv, true, false).await?;
    let mut sender = src.spawn(send, false, true).await?;
    let mut from = sender.stdout.take().expect("piped");
    let mut to = receiver.stdin.take().expect("piped");
    let mut buf = vec![0u8; pace.map_or(BUF, Pace::chunk)];
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
        if let Some(p) = pace {
            p.take(n).await;
        }
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

    /// Relays `total` bytes in the relay's chunks through `pace`, on tokio's paused clock.
    async fn paced(pace: &Pace, total: u64) -> Duration {
        let start = Instant::now();
        let chunk = pace.chunk() as u64;
        let mut sent = 0;
        while sent < total {
            let n = chunk.min(total - sent);
            pace.take(n as usize).await;
            sent += n;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_stream_never_runs_ahead_of_its_limit() {
        // 10 MiB at 1 MiB/s: the last chunk may start once 10 MiB minus one chunk are due.
        let pace = Pace::new(1 << 20);
        let took = paced(&pace, 10 << 20).await;
        let chunk = pace.chunk() as f64 / (1 << 20) as f64;
        assert!(
            took.as_secs_f64() >= 10.0 - chunk - 1e-6 && took.as_secs_f64() <= 10.0,
            "{took:?}"
        );
        // Low limits go in small chunks (1/8 s), high ones in the full buffer.
        assert_eq!(Pace::new(64 << 10).chunk(), 8 << 10);
        assert_eq!(Pace::new(1 << 30).chunk(), BUF);
        assert_eq!(Pace::new(1).chunk(), 4096);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_streams_share_one_limit() {
        // Two streams of 4 MiB at 1 MiB/s together: 8 s, not the 4 s each would take alone.
        let pace = Pace::new(1 << 20);
        let (a, b) = tokio::join!(paced(&pace, 4 << 20), paced(&pace, 4 << 20));
        let chunk = pace.chunk() as f64 / (1 << 20) as f64;
        let took = a.max(b).as_secs_f64();
        assert!(took >= 8.0 - chunk - 1e-6 && took <= 8.0, "{a:?} {b:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_saved_up_for_a_burst() {
        let pace = Pace::new(1 << 20);
        paced(&pace, 1 << 20).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        // After a minute idle, 2 MiB still take their 2 s (less the last chunk).
        let took = paced(&pace, 2 << 20).await.as_secs_f64();
        let chunk = pace.chunk() as f64 / (1 << 20) as f64;
        assert!(took >= 2.0 - chunk - 1e-6, "{took}");
    }
}
