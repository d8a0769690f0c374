//! One SSH control connection per remote host per run, shared by every job (and every
//! status or holds listing) that reaches the host the same way.

use super::{Host, SshTarget};
use crate::log;
use anyhow::Result;

/// The open connections of one run, by how the host is reached.
#[derive(Default)]
pub struct Pool {
    hosts: Vec<(SshTarget, Host)>,
}

impl Pool {
    /// The connection to `t`, opened on first use. A live one is reused; one that died
    /// since (a long job, a network drop) is opened again. A failed connect is not
    /// remembered: a later job to the host tries again, as a blip should not fail it.
    pub async fn get(&mut self, t: &SshTarget) -> Result<Host> {
        if let Some(i) = self.hosts.iter().position(|(k, _)| k == t) {
            if self.hosts[i].1.alive().await {
                return Ok(self.hosts[i].1.clone());
            }
            let (_, dead) = self.hosts.remove(i);
            log::info!("ssh: connection to {} died; reconnecting", dead.label());
            dead.close().await;
        }
        let host = Host::connect(t).await?;
        self.hosts.push((t.clone(), host.clone()));
        Ok(host)
    }

    /// Closes every connection (call when no [`Host`] from this pool is held anymore).
    pub async fn close(self) {
        for (_, h) in self.hosts {
            h.close().await;
        }
    }
}
