//! Transfer progress: a bar with bytes, rate and ETA on a terminal; a plain log line
//! every few seconds otherwise (the journal should not fill with redraws).

use crate::human::human_bytes;
use crate::log;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One set of bars for the process: a job's datasets stream at once (`parallel`), and
/// each bar keeps its own line instead of overwriting the others'.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Plain lines at most this often.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// True when progress is shown at all (not with `-q`).
pub fn wanted() -> bool {
    log::level() >= 1
}

/// True when progress is a bar on a terminal, which wants a stream's size (`zfs send
/// -nP`) before it starts; plain lines can learn it later ([`Progress::learn_total`]).
pub fn draws_bar() -> bool {
    wanted() && std::io::stderr().is_terminal()
}

/// Progress of one stream.
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts showing progress of the stream into `label`; `total` is the estimate.
    pub fn new(label: &str, total: Option<u64>) -> Progress {
        let bar = draws_bar().then(|| {
            let b = bars().add(ProgressBar::with_draw_target(
                total,
                ProgressDrawTarget::hidden(),
            ));
            let tmpl = if total.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {bytes} {binary_bytes_per_sec}"
            };
            b.set_style(
                ProgressStyle::with_template(tmpl)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b
        });
        if bar.is_none() && wanted() {
            // One line per stream in the journal, then one every LINE_EVERY.
            match total {
                Some(t) => log::info!("{label}: streaming, about {}", human_bytes(t)),
                None => log::info!("{label}: streaming"),
            }
        }
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            started: now,
            last_line: now,
            bar,
        }
    }

    /// Takes the stream's size learnt after it started, for the plain lines' ETA.
    pub fn learn_total(&mut self, total: u64) {
        self.total.get_or_insert(total);
    }

    /// Counts `n` more bytes.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.set_position(self.done);
        } else if wanted() && self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            log::info!("{}", self.line());
        }
    }

    /// `label: 12.0 MiB of 40.0 MiB (30%), 5.1 MiB/s, ETA 6s`.
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut s = format!("{}: {:.1} MiB", self.label, mib(self.done));
        if let Some(t) = self.total.filter(|t| *t > 0) {
            s.push_str(&format!(" of {:.1} MiB ({}%)", mib(t), self.done * 100 / t));
            if rate > 0.0 {
                let eta = t.saturating_sub(self.done) as f64 / rate;
                s.push_str(&format!(
                    ", {:.1} MiB/s, ETA {}s",
                    rate / 1048576.0,
                    eta.round()
                ));
                return s;
            }
        }
        s.push_str(&format!(", {:.1} MiB/s", rate / 1048576.0));
        s
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            bars().remove(&b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_has_bytes_share_rate_and_eta() {
        let mut p = Progress::new("b/t/a", Some(4 * 1048576));
        p.done = 1048576;
        let l = p.line();
        assert!(l.starts_with("b/t/a: 1.0 MiB of 4.0 MiB (25%), "), "{l}");
        assert!(l.contains("MiB/s, ETA "), "{l}");
        let mut q = Progress::new("x", None);
        assert_eq!(q.line(), "x: 0.0 MiB, 0.0 MiB/s");
        q.learn_total(2 * 1048576);
        q.learn_total(1);
        assert!(
            q.line().starts_with("x: 0.0 MiB of 2.0 MiB (0%)"),
            "{}",
            q.line()
        );
    }
}
