//! MQTT: a retained status per host and job, Home Assistant discovery with
//! `expire_after` (an entity whose job stops running goes unavailable by itself, so a
//! retained "ok" cannot stay green forever), an availability topic with a last will, and
//! an optional post-run message once every job of the run finished.

use crate::config::notify::MqttConfig;
use crate::status::classify::State;
use crate::status::JobStatus;
use anyhow::{anyhow, bail, Result};
use rumqttc::{Client, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Topic names of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    node: String,
    discovery_prefix: String,
}

/// A topic segment / HA object id: only `[A-Za-z0-9_-]`.
fn seg(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Topics {
    /// Topics for `cfg` on node `node`.
    pub fn new(cfg: &MqttConfig, node: &str) -> Topics {
        Topics {
            prefix: cfg.topic_prefix.trim_end_matches('/').to_string(),
            node: seg(node),
            discovery_prefix: cfg.discovery_prefix.trim_end_matches('/').to_string(),
        }
    }

    /// `<prefix>/<node>/availability`: `online`, or `offline` by last will.
    pub fn availability(&self) -> String {
        format!("{}/{}/availability", self.prefix, self.node)
    }

    /// `<prefix>/<node>/<job>/status`, retained JSON.
    pub fn status(&self, job: &str) -> String {
        format!("{}/{}/{}/status", self.prefix, self.node, seg(job))
    }

    /// Home Assistant's discovery topic for the job's recovery-point timestamp sensor.
    pub fn discovery_copy(&self, job: &str) -> String {
        format!(
            "{}/sensor/{}_newest_copy/config",
            self.discovery_prefix,
            self.object_id(job)
        )
    }

    /// Home Assistant's discovery topic for the job's problem sensor.
    pub fn discovery(&self, job: &str) -> String {
        format!(
            "{}/binary_sensor/{}/config",
            self.discovery_prefix,
            self.object_id(job)
        )
    }

    fn object_id(&self, job: &str) -> String {
        format!("zferry_{}_{}", self.node, seg(job))
    }
}

/// The retained status payload of one job.
pub fn status_payload(s: &JobStatus, node: &str) -> Value {
    let names = |st| s.in_state(st);
    let oldest_copy = s.datasets.iter().filter_map(|d| d.newest_copy).min();
    let datasets: serde_json::Map<String, Value> = s
        .datasets
        .iter()
        .map(|d| {
            (
                d.source.clone(),
                json!({
                    "target": d.target,
                    "state": d.state,
                    "reason": d.reason,
                    "last_success": d.last_success,
                    "lag": d.lag,
                    "newest_copy": d.newest_copy,
                    "bytes": d.bytes,
                }),
            )
        })
        .collect();
    json!({
        "ok": s.ok,
        "failure": s.failure(),
        "node": node,
        "job": s.job,
        "kind": s.kind,
        "remote": s.host,
        "checked": s.checked,
        "last_run": s.last_run,
        "last_success": s.datasets.iter().filter_map(|d| d.last_success).min(),
        // The oldest recovery point of the job, for Home Assistant's timestamp sensor.
        "newest_copy": oldest_copy,
        "newest_copy_utc": oldest_copy.map(crate::clock::utc),
        "healthy": names(State::Ok),
        "stale": names(State::Stale),
        "missing": names(State::Missing),
        "failed": names(State::Failed),
        "datasets": datasets,
    })
}

/// Home Assistant discovery config: a `problem` binary sensor per job, ON when not ok.
pub fn discovery_payload(t: &Topics, job: &str, expire_after: u64) -> Value {
    json!({
        "name": format!("zferry {job}"),
        "unique_id": t.object_id(job),
        "object_id": t.object_id(job),
        "device_class": "problem",
        "state_topic": t.status(job),
        "value_template": "{{ 'OFF' if value_json.ok else 'ON' }}",
        "json_attributes_topic": t.status(job),
        "availability_topic": t.availability(),
        "expire_after": expire_after,
        "device": {
            "identifiers": [format!("zferry_{}", t.node)],
            "name": format!("zferry on {}", t.node),
            "manufacturer": "zferry",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// Home Assistant discovery config: a timestamp sensor per job, the oldest of its
/// datasets' newest copies (how far back a restore would go).
pub fn discovery_copy_payload(t: &Topics, job: &str, expire_after: u64) -> Value {
    let mut d = discovery_payload(t, job, expire_after);
    d["name"] = json!(format!("zferry {job} newest copy"));
    d["unique_id"] = json!(format!("{}_newest_copy", t.object_id(job)));
    d["object_id"] = d["unique_id"].clone();
    d["device_class"] = json!("timestamp");
    d["value_template"] = json!("{{ value_json.newest_copy_utc }}");
    d
}

/// Publishes every job's status (and discovery), then the post-run message when
/// `post_run` is set; waits for the broker to acknowledge each message.
///
/// Blocking: rumqttc's sync client runs its own small runtime, so call this outside
/// an async context.
pub fn publish(
    cfg: &MqttConfig,
    node: &str,
    jobs: &[JobStatus],
    stale_after: u64,
    post_run: bool,
) -> Result<()> {
    let t = Topics::new(cfg, node);
    let mut opts = MqttOptions::new(
        format!("zferry-{}-{}", seg(node), std::process::id()),
        cfg.host.clone(),
        cfg.port,
    );
    opts.set_keep_alive(Duration::from_secs(30))
        // Status JSON grows with the number of datasets; the default is 10 KiB.
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_last_will(LastWill::new(
            t.availability(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(u) = &cfg.username {
        opts.set_credentials(u.clone(), cfg.password.clone().unwrap_or_default());
    }
    let (client, mut conn) = Client::new(opts, 64);
    let mut msgs: Vec<(String, Vec<u8>, bool)> = vec![(t.availability(), b"online".to_vec(), true)];
    for s in jobs {
        if cfg.discovery {
            let expire = cfg.expire_after.unwrap_or(stale_after);
            let d = discovery_payload(&t, &s.job, expire);
            msgs.push((t.discovery(&s.job), d.to_string().into_bytes(), true));
            let c = discovery_copy_payload(&t, &s.job, expire);
            msgs.push((t.discovery_copy(&s.job), c.to_string().into_bytes(), true));
        }
        let p = status_payload(s, node);
        msgs.push((t.status(&s.job), p.to_string().into_bytes(), true));
    }
    if post_run {
        if let Some(topic) = &cfg.post_run_topic {
            // Not retained: a late subscriber must not act on an old cycle's message.
            msgs.push((
                topic.clone(),
                cfg.post_run_payload.clone().into_bytes(),
                false,
            ));
        }
    }
    let want = msgs.len();
    for (topic, payload, retain) in msgs {
        client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .map_err(|e| anyhow!("MQTT: queueing a message: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(cfg.timeout.max(1));
    let broker = format!("{}:{}", cfg.host, cfg.port);
    let mut acked = 0;
    let mut disconnecting = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "MQTT broker {broker}: only {acked} of {want} messages acknowledged in {}s",
                cfg.timeout
            );
        }
        match conn.recv_timeout(left) {
            Err(_) => continue,
            Ok(Err(e)) => bail!("MQTT broker {broker}: {e}"),
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acked += 1;
                if acked == want && !disconnecting {
                    disconnecting = true;
                    client
                        .disconnect()
                        .map_err(|e| anyhow!("MQTT: disconnecting: {e}"))?;
                }
            }
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MqttConfig {
        toml::from_str("host = 'b'").unwrap()
    }

    #[test]
    fn topics_and_discovery() {
        let t = Topics::new(&cfg(), "back up.1");
        assert_eq!(t.status("pull-a"), "zferry/back_up_1/pull-a/status");
        assert_eq!(t.availability(), "zferry/back_up_1/availability");
        assert_eq!(
            t.discovery("pull-a"),
            "homeassistant/binary_sensor/zferry_back_up_1_pull-a/config"
        );
        let d = discovery_payload(&t, "pull-a", 3600);
        assert_eq!(d["expire_after"], 3600);
        assert_eq!(d["state_topic"], "zferry/back_up_1/pull-a/status");
        assert_eq!(d["availability_topic"], "zferry/back_up_1/availability");
        assert_eq!(
            t.discovery_copy("pull-a"),
            "homeassistant/sensor/zferry_back_up_1_pull-a_newest_copy/config"
        );
        let c = discovery_copy_payload(&t, "pull-a", 3600);
        assert_eq!(
            (&c["device_class"], &c["value_template"], &c["unique_id"]),
            (
                &json!("timestamp"),
                &json!("{{ value_json.newest_copy_utc }}"),
                &json!("zferry_back_up_1_pull-a_newest_copy")
            )
        );
        assert_eq!(c["state_topic"], d["state_topic"]);
    }
}
