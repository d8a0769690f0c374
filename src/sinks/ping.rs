//! Healthchecks-style pings: `<url>/start` when a job starts, `<url>` on success,
//! `<url>/fail` with the reason in the body. A check that stops hearing from zferry
//! alerts by itself, so a run that never happens is not silent either.

use anyhow::{anyhow, Result};
use std::time::Duration;

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// The job started.
    Start,
    /// It succeeded.
    Success,
    /// It failed.
    Fail,
}

/// The URL for `kind` of a job whose check URL is `base`.
pub fn url(base: &str, kind: Ping) -> String {
    let base = base.trim_end_matches('/');
    match kind {
        Ping::Start => format!("{base}/start"),
        Ping::Success => base.to_string(),
        Ping::Fail => format!("{base}/fail"),
    }
}

/// Healthchecks keeps the first 100 kB of a body; stay well under it.
const MAX_BODY: usize = 10_000;

/// POSTs one ping with `body` (a summary or the failure reason).
pub fn send(base: &str, kind: Ping, body: &str, timeout: Duration) -> Result<()> {
    let u = url(base, kind);
    let mut end = body.len().min(MAX_BODY);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    agent
        .post(&u)
        .set("User-Agent", concat!("zferry/", env!("CARGO_PKG_VERSION")))
        .set("Content-Type", "text/plain; charset=utf-8")
        .send_string(&body[..end])
        .map_err(|e| anyhow!("ping {u}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_healthchecks() {
        assert_eq!(
            url("http://h/ping/k/", Ping::Start),
            "http://h/ping/k/start"
        );
        assert_eq!(url("http://h/ping/k", Ping::Success), "http://h/ping/k");
        assert_eq!(url("http://h/ping/k", Ping::Fail), "http://h/ping/k/fail");
    }
}
