//! Sink configuration: the optional `[notify]` table of the config file.
//!
//! Every sink is optional; a sink that cannot be reached is a warning on stderr (the
//! journal), never a reason to hide the run's own result.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[notify]`: where status goes besides the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// MQTT broker, retained status and Home Assistant discovery.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// Healthchecks-style pings.
    #[serde(default)]
    pub ping: Option<PingConfig>,
    /// Directory of node_exporter's textfile collector; one `zferry_<job>.prom` per job.
    #[serde(default)]
    pub textfile_dir: Option<PathBuf>,
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "zferry".into()
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_true() -> bool {
    true
}
fn default_post_run_payload() -> String {
    "suspend".into()
}
fn default_timeout() -> u64 {
    10
}

/// `[notify.mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port (default 1883; no TLS).
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// Topic prefix (default `zferry`): status at `<prefix>/<node>/<job>/status`,
    /// availability at `<prefix>/<node>/availability`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// This machine's name in topics and in Home Assistant (default: the hostname).
    #[serde(default)]
    pub node: Option<String>,
    /// Publish Home Assistant discovery configs (default true).
    #[serde(default = "default_true")]
    pub discovery: bool,
    /// Home Assistant discovery prefix (default `homeassistant`).
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Seconds after which Home Assistant marks a job's entity unavailable when no new
    /// status came (default: the staleness threshold).
    #[serde(default)]
    pub expire_after: Option<u64>,
    /// Topic for a message sent once every job of the run finished (not retained).
    #[serde(default)]
    pub post_run_topic: Option<String>,
    /// Its payload (default `suspend`).
    #[serde(default = "default_post_run_payload")]
    pub post_run_payload: String,
    /// Seconds to wait for the broker (default 10).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

/// `[notify.ping]`: a job pings `<url>/start`, then `<url>` or `<url>/fail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingConfig {
    /// Base URL; a job's URL is `<base>/<job>` (healthchecks' ping-key + slug form).
    #[serde(default)]
    pub base: Option<String>,
    /// Per-job URLs (e.g. a check's UUID URL), overriding `base`.
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
    /// Seconds to wait for the server (default 10).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

impl PingConfig {
    /// The URL of job `job`, if it has one.
    pub fn url(&self, job: &str) -> Option<String> {
        self.urls.get(job).cloned().or_else(|| {
            self.base
                .as_ref()
                .map(|b| format!("{}/{job}", b.trim_end_matches('/')))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_config_example_parses() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("Config keys (all optional")
            .expect("README section");
        let block = &readme[start..];
        let block = &block[block.find("```toml\n").unwrap() + 8..];
        let block = &block[..block.find("```").unwrap()];
        let cfg = crate::config::Config::parse(block).expect("README example");
        let m = cfg.notify.mqtt.unwrap();
        assert_eq!(
            (m.port, m.expire_after, m.post_run_payload.as_str()),
            (1883, Some(93600), "suspend")
        );
        assert_eq!(
            cfg.notify.ping.unwrap().url("pull-client1").unwrap(),
            "https://hc-ping.com/<uuid>"
        );
        assert_eq!(
            (cfg.stale_after, cfg.lock_max_age),
            (Some(93600), Some(21600))
        );
    }

    #[test]
    fn ping_urls_per_job_or_from_base() {
        let mut p = PingConfig {
            base: Some("http://hc/ping/KEY/".into()),
            ..PingConfig::default()
        };
        assert_eq!(
            p.url("pull-a").as_deref(),
            Some("http://hc/ping/KEY/pull-a")
        );
        p.urls.insert("pull-a".into(), "http://hc/ping/uuid".into());
        assert_eq!(p.url("pull-a").as_deref(), Some("http://hc/ping/uuid"));
        p.base = None;
        assert_eq!(p.url("other"), None);
    }
}
