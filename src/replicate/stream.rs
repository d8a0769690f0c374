//! One `zfs send | zfs receive` pipeline between two hosts.

use crate::config::Compress;
use crate::host::{shell_pipeline, shell_quote, Host, Io};
use crate::log;
use crate::zfs::begin::{self, Head};
use crate::zfs::cmd;
use anyhow::{anyhow, bail, Result};
use async_compression::tokio::bufread::ZstdDecoder;
use async_compression::zstd::DParameter;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Relay buffer: big enough to keep ssh busy, small enough that memory stays flat.
const BUF: usize = 256 * 1024;

/// Streams smaller than this (by `zfs send -nP`) cross uncompressed: starting a
/// compressor costs more than it saves.
pub const COMPRESS_MIN: u64 = 1 << 20;

/// The largest zstd window the relay accepts (8 MiB, what level 19 uses): a peer's frame
/// asking for more is refused, so its memory stays bounded whatever the peer sends.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// How a job's streams cross the wire: paced to its `bwlimit`, compressed per its
/// `compress`.
#[derive(Default)]
pub struct Wire {
    pace: Option<Pace>,
    compress: Compress,
    /// Whether the far side has the compressor: asked once per run, before the first
    /// stream that would use it.
    far_side: OnceCell<Result<(), String>>,
}

impl Wire {
    /// A job's wire: `pace` shared by its streams, `compress` for its plain ones.
    pub fn new(pace: Option<Pace>, compress: Compress) -> Wire {
        Wire {
            pace,
            compress,
            far_side: OnceCell::new(),
        }
    }

    /// The job's `compress`.
    pub fn compress(&self) -> Compress {
        self.compress
    }

    /// The shared pace, when the job has a `bwlimit`.
    pub fn pace(&self) -> Option<&Pace> {
        self.pace.as_ref()
    }

    /// Whether a stream from `src` is compressed: only plain (non-raw) streams coming
    /// over SSH, and only when `estimate` (bytes) says it is worth it (unknown counts
    /// as large).
    pub fn compresses(&self, src: &Host, raw: bool, estimate: Option<u64>) -> bool {
        !self.compress.is_none()
            && !raw
            && src.is_remote()
            && estimate.is_none_or(|b| b >= COMPRESS_MIN)
    }

    /// Fails, naming the host and what to do, when `src` has no `zstd` (asked once).
    async fn far_side_ready(&self, src: &Host) -> Result<()> {
        let probe = cmd::zstd_version();
        let ready = self
            .far_side
            .get_or_init(|| async {
                match src.run(&probe).await {
                    Ok(o) if o.ok() => Ok(()),
                    Ok(o) => Err(format!(
                        "'{}' {}: {}",
                        shell_quote(&probe),
                        src.describe_code(o.code),
                        o.stderr.trim()
                    )),
                    Err(e) => Err(format!("{e:#}")),
                }
            })
            .await;
        ready.clone().map_err(|e| {
            anyhow!(
                "compress = \"{}\" needs the zstd program on {}, and {e}; install zstd there (Debian: apt-get install zstd), or leave compress out",
                self.compress,
                src.label()
            )
        })
    }
}

/// What a transfer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Bytes of the stream `zfs receive` got.
    pub bytes: u64,
    /// Bytes that crossed the wire, when the stream was compressed.
    pub wire: Option<u64>,
}

/// Counts the bytes read through it (the compressed side of a stream).
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

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

/// Decompresses what the far side's `zstd -c` wrote, counting the compressed bytes
/// into `read`. A frame that needs a larger window than zferry's levels use is refused
/// (the peer is not trusted with this process's memory).
fn unzstd<R: AsyncRead + Unpin>(inner: R, read: Arc<AtomicU64>) -> impl AsyncRead + Unpin {
    ZstdDecoder::with_params(
        BufReader::new(Counted { inner, read }),
        &[DParameter::window_log_max(ZSTD_WINDOW_LOG_MAX)],
    )
}

/// Streams `send` on `src` into `recv` on `dst`, paced by the wire's `bwlimit`, and
/// says what moved. With `compress`, `src` runs `send | zstd -c -LEVEL` and the relay
/// decompresses (see [`Wire::compresses`]); the far side's `zstd` is checked first.
///
/// Before the receiver sees a byte, the relay reads the stream's head and refuses it
/// unless [`begin::inspect`] accepts it: whoever answers `zfs send` may be hostile, and
/// properties in a stream (`zfs send -p`/`-R`, never asked for) would be set on the
/// copy, outranking what it keeps (`canmount`, see [`cmd::Canmount::Kept`]), and could
/// share it or reserve the target's pool full.
///
/// The stream is never buffered whole: between hosts that take pipes, when nothing must
/// touch the bytes, it is spliced pipe to pipe (`splice_relay`); otherwise it passes
/// through this process in fixed-size chunks (`copy_relay`). Both count the bytes and
/// tell `progress` (of the stream, not the wire). When a side fails, the error carries
/// both sides' exit codes and stderr, the receiver's first.
pub async fn transfer(
    src: &Host,
    send: &[String],
    dst: &Host,
    recv: &[String],
    wire: &Wire,
    compress: bool,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Moved> {
    let zstd = match wire.compress {
        Compress::Zstd(level) if compress => {
            wire.far_side_ready(src).await?;
            Some(cmd::zstd_compress(level))
        }
        _ => None,
    };
    let stages: Vec<&[String]> = std::iter::once(send).chain(zstd.as_deref()).collect();
    let pace = wire.pace();
    let (sender, receiver, relayed) =
        if zstd.is_none() && pace.is_none() && src.takes_fds() && dst.takes_fds() {
            // Nothing needs the bytes here or a slot of the pace: the two children's pipes
            // are zferry's own, and the relay splices one into the other.
            let (from, send_end) = pipe()?;
            let (recv_end, to) = pipe()?;
            let receiver = dst
                .spawn_pipeline(&[recv], Io::Fd(recv_end), Io::Null)
                .await?;
            let sender = src
                .spawn_pipeline(&stages, Io::Null, Io::Fd(send_end))
                .await?;
            let relayed = splice_relay(from, to, progress).await;
            (sender, receiver, relayed)
        } else {
            let mut receiver = dst.spawn(recv, true, false).await?;
            let mut sender = src.spawn_pipeline(&stages, Io::Null, Io::Piped).await?;
            let from = sender.stdout.take().expect("piped");
            let to = receiver.stdin.take().expect("piped");
            let relayed = copy_relay(from, to, zstd.is_some(), pace, progress).await;
            (sender, receiver, relayed)
        };
    let Relayed {
        bytes,
        wire: wire_bytes,
        error: relay_err,
        receiver_quit,
    } = relayed;
    let ((scode, serr), (rcode, rerr)) = tokio::try_join!(sender.wait(), receiver.wait())?;
    // A receive that succeeded may exit once it has the stream's last record, while the
    // relay still holds a tail to move, which then meets a closed pipe (the lab saw it
    // with OpenZFS 2.4 and the splice relay). Both sides said yes, and the copy's GUID is
    // checked next: not a failure.
    if scode == Some(0) && rcode == Some(0) && (relay_err.is_none() || receiver_quit) {
        if receiver_quit {
            log::debug!(
                "{}: the receiver finished before the stream's end ({bytes} bytes moved)",
                dst.label()
            );
        }
        return Ok(Moved {
            bytes,
            wire: wire_bytes,
        });
    }
    let recv_line = format!(
        "receive '{}' on {}: {}{}",
        shell_pipeline(&[recv]),
        dst.label(),
        dst.describe_code(rcode),
        stderr_suffix(&rerr)
    );
    let send_line = format!(
        "send '{}' on {}: {}{}",
        shell_pipeline(&stages),
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

/// What a relay moved, and why it stopped early.
struct Relayed {
    /// Bytes of the stream handed to the receiver.
    bytes: u64,
    /// Bytes read from the wire, for a compressed stream.
    wire: Option<u64>,
    /// What went wrong in the relay itself.
    error: Option<String>,
    /// The error was the receiver's end of the pipe closing.
    receiver_quit: bool,
}

/// Reads the stream into this process and writes it out, decompressing it when
/// `compressed`: the relay for streams whose bytes zferry must touch (or a fake host's).
async fn copy_relay(
    plain: Box<dyn AsyncRead + Unpin + Send>,
    mut to: Box<dyn AsyncWrite + Unpin + Send>,
    compressed: bool,
    pace: Option<&Pace>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Relayed {
    let wire_read = Arc::new(AtomicU64::new(0));
    let mut from: Box<dyn AsyncRead + Unpin + Send> = if compressed {
        Box::new(unzstd(plain, wire_read.clone()))
    } else {
        plain
    };
    let mut buf = vec![0u8; pace.map_or(BUF, Pace::chunk)];
    let mut bytes = 0u64;
    // Wire bytes already given a slot of the pace (compressed streams).
    let mut paced = 0u64;
    let mut receiver_quit = false;
    let mut head = Vec::new();
    let mut error = read_head_async(&mut from, &mut head)
        .await
        .err()
        .map(|e| e.to_string());
    // The judged head is read again, as the stream's first bytes.
    let mut from = std::io::Cursor::new(head).chain(from);
    while error.is_none() {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let zstd = if compressed { " (zstd)" } else { "" };
                error = Some(format!("reading the send stream{zstd}: {e}"));
                break;
            }
        };
        // `bwlimit` is a rate on the wire: a compressed stream is paced by the compressed
        // bytes this chunk took, so it moves faster by its compression ratio.
        if let Some(p) = pace {
            let due = if compressed {
                let read = wire_read.load(Ordering::Relaxed);
                let due = read - paced;
                paced = read;
                due
            } else {
                n as u64
            };
            p.take(due as usize).await;
        }
        if let Err(e) = to.write_all(&buf[..n]).await {
            receiver_quit = e.kind() == std::io::ErrorKind::BrokenPipe;
            error = Some(format!("writing to the receiver: {e}"));
            break;
        }
        bytes += n as u64;
        progress(n as u64);
    }
    // Closing both ends tells each side the other is done (EOF or SIGPIPE).
    let _ = to.shutdown().await;
    Relayed {
        bytes,
        wire: compressed.then(|| wire_read.load(Ordering::Relaxed)),
        error,
        receiver_quit,
    }
}

/// The most one splice moves, and the size asked for the relay's pipes (Linux lets any
/// process grow a pipe to 1 MiB, `/proc/sys/fs/pipe-max-size`).
const SPLICE_CHUNK: usize = 1 << 20;

/// The longest the splice relay lets a slow stream gather in the sender's pipe.
const GATHER_MAX: Duration = Duration::from_millis(50);

/// How often the splice relay tells `progress` what moved.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Moves the stream from the sender's pipe into the receiver's with splice(2), on a
/// thread of its own: once its head was read and judged ([`pass_head`]), pages go pipe
/// to pipe inside the kernel and are never copied through this process, and this task
/// only reads a counter for `progress`. Dropping the ends tells each side the other is
/// done.
///
/// Why not a read/write loop on this runtime: `zfs send` writes a stream in pieces of a
/// record or less, and waking per piece cost zferry 20 s of CPU per GiB in the lab (a
/// fifth of what the whole pipeline had), where the bare pipe costs nothing
/// (bench/bulk-phases.md).
async fn splice_relay(
    from: OwnedFd,
    to: OwnedFd,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Relayed {
    let moved = Arc::new(AtomicU64::new(0));
    let counter = moved.clone();
    let (tx, mut done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("zferry-splice".into())
        .spawn(move || {
            let r = pass_head(&from, &to, &counter).and_then(|_| splice_all(&from, &to, &counter));
            drop((from, to));
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Relayed {
            bytes: 0,
            wire: None,
            error: Some(format!("cannot start the relay's thread: {e}")),
            receiver_quit: false,
        };
    }
    let mut told = 0;
    let ended = loop {
        tokio::select! {
            r = &mut done => break r,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
        let now = moved.load(Ordering::Relaxed);
        progress(now - told);
        told = now;
    };
    let bytes = moved.load(Ordering::Relaxed);
    progress(bytes - told);
    let receiver_quit = matches!(&ended, Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe);
    let error = match ended {
        Ok(Ok(())) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Some(format!("writing to the receiver: {e}"))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Some(e.to_string()),
        Ok(Err(e)) => Some(format!("moving the stream (splice): {e}")),
        Err(_) => Some("the relay's thread ended without a word".to_string()),
    };
    Relayed {
        bytes,
        wire: None,
        error,
        receiver_quit,
    }
}

/// What the relay says of a head [`begin::inspect`] refused (an `InvalidData` error).
fn refused(e: std::io::Error) -> std::io::Error {
    if e.kind() != std::io::ErrorKind::InvalidData {
        return e;
    }
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{e}; refused before zfs receive saw a byte (zferry never sends -p or -R)"),
    )
}

/// Reads the stream's head from `from` into `head` until [`begin::inspect`] accepts it
/// (or the stream ends sooner: zfs receive then refuses what little came); a refused
/// head is an `InvalidData` error. [`begin::read_head`] for this runtime.
async fn read_head_async(
    from: &mut (dyn AsyncRead + Unpin + Send),
    head: &mut Vec<u8>,
) -> std::io::Result<()> {
    let bad = |e| refused(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    while let Head::Need(n) = begin::inspect(head).map_err(bad)? {
        let more = n - head.len();
        if (&mut *from).take(more as u64).read_to_end(head).await? < more {
            break;
        }
    }
    Ok(())
}

/// [`begin::read_head`] on the splice relay's thread, then the head written into `to`
/// and counted: the splices go on from where it ended.
fn pass_head(from: &OwnedFd, to: &OwnedFd, moved: &AtomicU64) -> std::io::Result<()> {
    use std::io::Write;
    let (head, _) =
        begin::read_head(&mut std::fs::File::from(from.try_clone()?)).map_err(refused)?;
    std::fs::File::from(to.try_clone()?).write_all(&head)?;
    moved.fetch_add(head.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Splices `from` into `to` until the end of the stream, adding what moved to `moved`.
/// After a chunk that did not fill half the pipe it waits for the stream to gather (see
/// [`gather`]): a few large splices instead of one per piece the sender wrote.
fn splice_all(from: &OwnedFd, to: &OwnedFd, moved: &AtomicU64) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let n = splice(from, to, SPLICE_CHUNK)?;
        if n == 0 {
            return Ok(());
        }
        let total = moved.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if n < SPLICE_CHUNK / 2 {
            std::thread::sleep(gather(total, started.elapsed()));
        }
    }
}

/// How long to let a stream gather after a small chunk: the time half a pipe takes to
/// fill at the average rate so far, at most [`GATHER_MAX`]. A fast stream fills the pipe
/// and never waits; a slow one is moved in about half-pipe chunks.
fn gather(bytes: u64, elapsed: Duration) -> Duration {
    let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-3);
    Duration::from_secs_f64(SPLICE_CHUNK as f64 / 2.0 / rate.max(1.0)).min(GATHER_MAX)
}

/// One splice(2) of up to `len` bytes from pipe `from` into pipe `to`; 0 at end of stream.
fn splice(from: &OwnedFd, to: &OwnedFd, len: usize) -> std::io::Result<usize> {
    loop {
        // SAFETY: both are open pipe ends owned by the caller; pipes take no offsets.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A pipe (read end, write end), close-on-exec so a child started meanwhile for another
/// dataset cannot hold an end open, grown to [`SPLICE_CHUNK`] when allowed.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds on success; they are owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A refusal (a lowered pipe-max-size) only costs speed.
    // SAFETY: fcntl on an fd owned here.
    unsafe {
        libc::fcntl(
            w.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            SPLICE_CHUNK as libc::c_int,
        )
    };
    Ok((r, w))
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

    /// A zstd frame of one raw block holding `x`, whose header asks for a window of
    /// 2^`log` bytes.
    fn frame(log: u8) -> Vec<u8> {
        let mut f = 0xFD2F_B528u32.to_le_bytes().to_vec();
        // No single segment, no checksum, no sizes; then the window descriptor.
        f.extend([0x00, (log - 10) << 3]);
        // Last block, raw, 1 byte.
        f.extend([0x09, 0x00, 0x00, b'x']);
        f
    }

    async fn decoded(bytes: &[u8]) -> (std::io::Result<Vec<u8>>, u64) {
        let read = Arc::new(AtomicU64::new(0));
        let mut out = Vec::new();
        let r = unzstd(bytes, read.clone()).read_to_end(&mut out).await;
        (r.map(|_| out), read.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn the_relay_decompresses_and_counts_the_wire_but_refuses_a_huge_window() {
        let (out, wire) = decoded(&frame(ZSTD_WINDOW_LOG_MAX as u8)).await;
        assert_eq!(out.unwrap(), b"x");
        assert_eq!(wire, frame(23).len() as u64);
        // A peer asking for 1 GiB of window gets an error, not the memory.
        let (out, _) = decoded(&frame(30)).await;
        let e = out.unwrap_err().to_string();
        assert!(e.contains("memory") || e.contains("window"), "{e}");
        // Garbage is an error too.
        assert!(decoded(b"not zstd at all").await.0.is_err());
    }

    #[test]
    fn only_plain_large_streams_from_a_remote_host_are_compressed() {
        let off = Wire::new(None, Compress::None);
        let on = Wire::new(None, Compress::Zstd(3));
        let remote = Host::Fake(Arc::default());
        let big = Some(COMPRESS_MIN);
        assert!(on.compresses(&remote, false, big));
        assert!(
            on.compresses(&remote, false, None),
            "unknown size counts as large"
        );
        assert!(!on.compresses(&remote, false, Some(COMPRESS_MIN - 1)));
        assert!(!on.compresses(&remote, true, big), "raw never");
        assert!(
            !on.compresses(&Host::Local, false, big),
            "no wire, no compression"
        );
        assert!(!off.compresses(&remote, false, big));
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// A shell command writing `bytes` in one write (octal escapes, no file).
    fn printf(bytes: &[u8]) -> String {
        let escaped: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
        format!("printf '{escaped}'")
    }

    /// `words` as a sender the relay lets through: the head of a plain `zfs send` first.
    fn headed(words: &[&str]) -> Vec<String> {
        let head = printf(&begin::build::substream(0, "t/a@1"));
        let mut a = argv(&["sh", "-c", &format!("{head} && exec \"$@\""), "sh"]);
        a.extend(argv(words));
        a
    }

    const HEAD: u64 = begin::RECORD as u64;

    /// `send` into `recv` on this machine: the splice relay (local hosts take fds), or
    /// the copying one when paced.
    async fn local(send: &[String], recv: &[&str], pace: Option<Pace>) -> Result<Moved> {
        let wire = Wire::new(pace, Compress::None);
        let mut seen = 0;
        let moved = transfer(
            &Host::Local,
            send,
            &Host::Local,
            &argv(recv),
            &wire,
            false,
            &mut |n| seen += n,
        )
        .await;
        if let Ok(m) = &moved {
            assert_eq!(seen, m.bytes, "progress is told every byte");
        }
        moved
    }

    #[tokio::test]
    async fn the_splice_relay_moves_every_byte_in_order_and_counts_them() {
        let dir = std::env::temp_dir().join(format!("zferry-splice-{}", std::process::id()));
        let out = dir.to_str().unwrap().to_string();
        let cat = format!("cat > '{out}'");
        let seq = headed(&["seq", "1", "400000"]);
        let moved = local(&seq, &["sh", "-c", &cat], None).await.unwrap();
        let mut want = begin::build::substream(0, "t/a@1");
        want.extend(
            std::process::Command::new("seq")
                .args(["1", "400000"])
                .output()
                .unwrap()
                .stdout,
        );
        let got = std::fs::read(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert!(want.len() > 2 << 20, "bigger than the pipes");
        assert_eq!(got, want);
        assert_eq!(
            moved,
            Moved {
                bytes: want.len() as u64,
                wire: None
            }
        );
    }

    #[tokio::test]
    async fn a_failed_side_fails_the_splice_relay_with_both_sides_said() {
        // The receiver quits: the send stops on a broken pipe, the receiver is named first.
        let e = local(
            &headed(&["head", "-c", "50000000", "/dev/zero"]),
            &["sh", "-c", "exit 3"],
            None,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("receive 'sh -c 'exit 3'' on local: exit 3"),
            "{e}"
        );
        assert!(e.contains("relay: writing to the receiver"), "{e}");
        // The sender fails after some bytes: said, and what got through counted.
        let e = local(
            &headed(&["sh", "-c", "echo part; exit 4"]),
            &["sh", "-c", "cat >/dev/null"],
            None,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("transfer failed after 317 bytes"), "{e}");
        assert!(e.contains("on local: exit 4"), "{e}");
    }

    #[tokio::test]
    async fn a_paced_local_stream_takes_the_copying_relay_and_keeps_to_the_pace() {
        // 512 KiB at 1 MiB/s: at least the time of all but the last chunk.
        let pace = Pace::new(1 << 20);
        let last = pace.chunk() as f64 / (1 << 20) as f64;
        let start = std::time::Instant::now();
        let moved = local(
            &headed(&["head", "-c", "524288", "/dev/zero"]),
            &["sh", "-c", "cat >/dev/null"],
            Some(pace),
        )
        .await
        .unwrap();
        assert_eq!(moved.bytes, HEAD + (512 << 10));
        assert!(
            start.elapsed().as_secs_f64() >= 0.5 - last,
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_receiver_that_succeeds_before_the_tail_is_moved_is_no_failure() {
        // The receiver closes its stdin and exits 0; the sender then writes and exits 0:
        // the relay meets a closed pipe, both sides said yes (the GUID check follows).
        let quits = ["sh", "-c", "exec 0<&-; exit 0"];
        // Head and tail in one write (less than a pipe's atomic size), after the receiver quit.
        let mut stream = begin::build::substream(0, "t/a@1");
        stream.extend(b"tail\n");
        let write = printf(&stream);
        let late = |code| argv(&["sh", "-c", &format!("sleep 0.3; {write}; exit {code}")]);
        let moved = local(&late(0), &quits, None).await.unwrap();
        assert_eq!(moved.bytes, 0);
        // A receiver that quits with a failure still fails the transfer, and so does a
        // sender that fails when the receiver quit early.
        let e = local(&late(0), &["sh", "-c", "exec 0<&-; exit 3"], None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("on local: exit 3"), "{e}");
        let e = local(&late(4), &quits, None).await.unwrap_err().to_string();
        assert!(e.contains("on local: exit 4"), "{e}");
    }

    #[tokio::test]
    async fn a_trickle_crosses_the_splice_relay_whole() {
        // Pieces far apart: every one waits to gather, none is lost or reordered.
        let e = "for i in 1 2 3 4 5; do echo piece$i; sleep 0.1; done";
        let trickle = headed(&["sh", "-c", e]);
        let moved = local(&trickle, &["sh", "-c", "cat >/dev/null"], None)
            .await
            .unwrap();
        assert_eq!(moved.bytes, HEAD + 5 * "piece1\n".len() as u64);
    }

    #[tokio::test]
    async fn a_head_that_is_no_plain_send_never_reaches_the_receiver() {
        // zfs send -p (properties), and bytes that are no stream at all; through the
        // splice relay and, paced, the copying one. The receiver counts what it got.
        let props = printf(&begin::build::with_properties());
        let out = std::env::temp_dir().join(format!("zferry-got-{}", std::process::id()));
        let count = format!("wc -c > '{}'", out.display());
        for (send, why) in [
            (format!("{props}; head -c 2000000 /dev/zero"), "a payload"),
            (
                "head -c 2000000 /dev/zero".to_string(),
                "no send stream magic",
            ),
        ] {
            for pace in [None, Some(Pace::new(1 << 30))] {
                let paced = pace.is_some();
                let e = local(&argv(&["sh", "-c", &send]), &["sh", "-c", &count], pace)
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains(why) && e.contains("refused before zfs receive saw a byte"),
                    "{e}"
                );
                let got = std::fs::read_to_string(&out).unwrap();
                assert_eq!(
                    got.trim(),
                    "0",
                    "{why}, paced {paced}: the receiver got bytes"
                );
            }
        }
        std::fs::remove_file(&out).unwrap();
    }

    #[test]
    fn a_slow_stream_gathers_half_a_pipe_and_a_fast_one_barely_waits() {
        let s = Duration::from_secs;
        // 15 MiB/s (ssh under emulation): half a MiB takes 33 ms.
        let w = gather(15 << 20, s(1));
        assert!(
            w > Duration::from_millis(33) && w < Duration::from_millis(34),
            "{w:?}"
        );
        // 1 GiB/s: half a millisecond.
        assert!(gather(1 << 30, s(1)) < Duration::from_millis(1));
        // A trickle, or nothing yet: never more than GATHER_MAX.
        assert_eq!(gather(100, s(10)), GATHER_MAX);
        assert_eq!(gather(0, Duration::ZERO), GATHER_MAX);
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
