//! One SSH control connection per remote host per run, shared by every job (and every
//! status or holds listing) that reaches the host the same way.

use super::{Host, SshTarget};
use crate::report::log;
use anyhow::{anyhow, Result};

/// The connections of one run, by how the host is reached.
#[derive(Default)]
pub struct Pool {
    hosts: Vec<(SshTarget, std::result::Result<Host, String>)>,
}

impl Pool {
    /// The connection to `t`, opened on first use. A live one is reused; one that died
    /// since (a long job, a network drop) is opened again. A failed attempt is
    /// remembered: later jobs to the host fail with the same reason at once instead of
    /// waiting for the connect timeout again.
    pub async fn get(&mut self, t: &SshTarget) -> Result<Host> {
        if let Some(i) = self.hosts.iter().position(|(k, _)| k == t) {
            match &self.hosts[i].1 {
                Err(e) => return Err(anyhow!("{e}")),
                Ok(h) if h.alive().await => return Ok(h.clone()),
                Ok(h) => {
                    log::info(&format!(
                        "ssh: connection to {} died; reconnecting",
                        h.label()
                    ));
                    let (_, old) = self.hosts.remove(i);
                    if let Ok(h) = old {
                        h.close().await;
                    }
                }
            }
        }
        let r = Host::connect(t).await.map_err(|e| format!("{e:#}"));
        self.hosts.push((t.clone(), r.clone()));
        r.map_err(|e| anyhow!("{e}"))
    }

    /// Closes every connection (call when no [`Host`] from this pool is held anymore).
    pub async fn close(self) {
        for (_, h) in self.hosts {
            if let Ok(h) = h {
                h.close().await;
            }
        }
    }
}
