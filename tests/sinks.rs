//! The sinks against real local peers, no ZFS needed: mosquitto on loopback, a local
//! HTTP receiver for pings, promtool for the textfile. zferry runs as a binary with a
//! job whose SSH connection is refused, so every failure path is the real one.

mod sinkpeers;
use serde_json::Value;
use sinkpeers::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use zferry::config::notify::MqttConfig;
use zferry::sinks::{mqtt, ping, prom};
use zferry::status::classify::State;
use zferry::status::{DatasetStatus, JobStatus};

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    broker: Broker,
    http: Receiver,
}

/// A config with one pull job whose SSH port is closed.
fn setup(tag: &str) -> Setup {
    let dir = tempdir(tag);
    let broker = Broker::start();
    let http = Receiver::start();
    let closed = free_port();
    let text = format!(
        "state_dir = \"{d}/state\"\nlock_max_age = 60\n{}\n[jobs.pull-a]\nkind = \"pull\"\nhost = \"127.0.0.1\"\nport = {closed}\nuser = \"nobody\"\ndatasets = [\"tank/a\"]\ndestination = \"b\"\n",
        notify_toml("127.0.0.1", &broker, &http, &format!("{}/prom", dir.display()), "testnode"),
        d = dir.display()
    );
    let config = dir.join("zferry.toml");
    std::fs::create_dir_all(dir.join("prom")).unwrap();
    std::fs::write(&config, text).unwrap();
    Setup {
        dir,
        config,
        broker,
        http,
    }
}

fn zferry(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zferry"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn unreachable_host_fails_loudly_in_every_sink() {
    let s = setup("unreach");
    let power = s.broker.await_one("power/testnode");
    let o = zferry(&["run"], &s.config);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");

    // Report saved atomically in the state dir.
    let report = json(&std::fs::read_to_string(s.dir.join("state/pull-a.json")).unwrap());
    assert!(
        report["error"].as_str().unwrap().contains("cannot connect"),
        "{report}"
    );

    // /start then /fail with the reason.
    let reqs = s.http.take();
    let paths: Vec<_> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/ping/pull-a/start"),
            ("POST", "/ping/pull-a/fail")
        ]
    );
    assert!(reqs[1].body.contains("cannot connect"), "{}", reqs[1].body);

    // Retained MQTT status ok:false, discovery with expire_after, availability online.
    let ret = s.broker.retained("#");
    let st = json(&ret["zferry/testnode/pull-a/status"]);
    assert_eq!(st["ok"], false, "{st}");
    assert!(
        st["failure"].as_str().unwrap().contains("cannot connect"),
        "{st}"
    );
    let disc = json(&ret["homeassistant/binary_sensor/zferry_testnode_pull-a/config"]);
    assert_eq!(disc["expire_after"], 7200);
    assert_eq!(disc["state_topic"], "zferry/testnode/pull-a/status");
    assert_eq!(ret["zferry/testnode/availability"], "online");
    // The post-run message came, and was not retained.
    let p = power.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&p.stdout).trim(), "suspend");
    assert!(
        !ret.contains_key("power/testnode"),
        "post-run message must not be retained"
    );

    // Metrics: failure flag set, promtool-clean.
    let prom = s.dir.join("prom/zferry_pull-a.prom");
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("zferry_job_failed{job=\"pull-a\"} 1"),
        "{text}"
    );
    promtool_check(&prom);

    // Status: not ok (exit 1), the reason shown, as JSON too.
    let st = zferry(&["status", "--json"], &s.config);
    assert_eq!(st.status.code(), Some(1));
    let v = json(&String::from_utf8_lossy(&st.stdout));
    assert_eq!(v[0]["ok"], false);
    assert!(
        v[0]["error"].as_str().unwrap().contains("cannot connect"),
        "{v}"
    );
    let human = zferry(&["status"], &s.config);
    assert!(String::from_utf8_lossy(&human.stdout).contains("NOT OK pull pull-a"));
}

#[test]
fn a_young_lock_skips_quietly_and_an_old_one_fails_everywhere_with_exit_3() {
    let s = setup("lock");
    std::fs::create_dir_all(s.dir.join("state")).unwrap();
    let lock = s.dir.join("state/pull-a.lock");
    std::fs::write(&lock, "pid 1 started 0\n").unwrap();
    // Another "run" holds the lock: flock(1) from util-linux, as a separate process.
    // (It becomes `sleep` keeping the locked descriptor: killing it releases the lock.)
    let mut holder = Command::new("sh")
        .args(["-c", "exec 9>>\"$0\"; flock -n 9 || exit 1; exec sleep 60"])
        .arg(&lock)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    // status sees the running holder without taking its lock, before any run notices it.
    let st = zferry(&["status", "--json"], &s.config);
    let v = json(&String::from_utf8_lossy(&st.stdout));
    assert!(
        v[0]["running"]
            .as_str()
            .is_some_and(|r| r.starts_with("pid 1 started 0, for ")),
        "{v}"
    );
    assert_ne!(st.status.code(), Some(3), "a young lock is not wedged: {v}");

    let young = zferry(&["run"], &s.config);
    let stderr = String::from_utf8_lossy(&young.stderr);
    assert_eq!(young.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("another run holds") && stderr.contains("skipping"),
        "{stderr}"
    );
    assert!(s.http.take().is_empty(), "a skipped run pings nothing");
    assert!(
        !s.dir.join("state/pull-a.json").exists(),
        "and writes no report"
    );
    assert!(s.broker.retained("#").is_empty(), "and publishes nothing");

    // The holder is now 2 hours old: past lock_max_age = 60.
    assert!(Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&lock)
        .status()
        .unwrap()
        .success());
    // status alone already calls it wedged: under systemd, a wedged run keeps its unit
    // active, so the timer never starts the second run that would notice.
    let st = zferry(&["status", "--json"], &s.config);
    let v = json(&String::from_utf8_lossy(&st.stdout));
    assert_eq!(st.status.code(), Some(3), "{v}");
    assert_eq!(v[0]["ok"], false, "{v}");
    assert!(
        v[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("lock held for 2h0m (pid 1 started 0)"),
        "{v}"
    );
    let old = zferry(&["run"], &s.config);
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert_eq!(old.status.code(), Some(3), "{stderr}");
    let reqs = s.http.take();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/ping/pull-a/fail");
    assert!(
        reqs[0].body.contains("lock held for 2h0m"),
        "{}",
        reqs[0].body
    );
    let st = json(&s.broker.retained("zferry/#")["zferry/testnode/pull-a/status"]);
    assert_eq!(st["ok"], false);
    assert!(
        st["failure"].as_str().unwrap().contains("lock held for"),
        "{st}"
    );
    let text = std::fs::read_to_string(s.dir.join("prom/zferry_pull-a.prom")).unwrap();
    assert!(
        text.contains("zferry_job_failed{job=\"pull-a\"} 1"),
        "{text}"
    );
    // status says the lock is wedged.
    assert_eq!(zferry(&["status"], &s.config).status.code(), Some(3));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Once the wedged run is gone, the lock is no longer the problem: the last run's
    // failure still is (exit 1), and nothing claims a run is going on.
    let st = zferry(&["status", "--json"], &s.config);
    let v = json(&String::from_utf8_lossy(&st.stdout));
    assert_eq!(st.status.code(), Some(1), "{v}");
    assert_eq!(v[0]["running"], Value::Null, "{v}");
    assert!(
        v[0]["error"].as_str().unwrap().starts_with("lock held for"),
        "the last run's failure stays visible: {v}"
    );
}

fn healthy() -> JobStatus {
    JobStatus {
        job: "pull-b".into(),
        kind: "pull".into(),
        host: "zferry@client".into(),
        ok: true,
        error: None,
        running: None,
        last_run: Some(1_800_000_000),
        checked: 1_800_000_000,
        datasets: vec![DatasetStatus {
            source: "tank/data".into(),
            target: "backup/client/tank/data".into(),
            state: State::Ok,
            reason: None,
            last_success: Some(1_800_000_000),
            source_newest: Some("s2".into()),
            target_newest: Some("s2".into()),
            lag: Some(0),
            newest_copy: Some(1_799_990_000),
            bytes: 12345,
            duration_ms: 2500,
        }],
    }
}

#[test]
fn healthy_status_is_green_in_mqtt_metrics_and_pings() {
    let broker = Broker::start();
    let cfg: MqttConfig = toml::from_str(&format!(
        "host = '127.0.0.1'\nport = {}\ntimeout = 5",
        broker.port
    ))
    .unwrap();
    let mut bad = healthy();
    bad.ok = false;
    bad.error = Some("boom".into());
    mqtt::publish(&cfg, "n1", &[bad], 3600, false).unwrap();
    // A later success replaces the retained failure.
    mqtt::publish(&cfg, "n1", &[healthy()], 3600, false).unwrap();
    let ret = broker.retained("#");
    let st = json(&ret["zferry/n1/pull-b/status"]);
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["failure"], Value::Null);
    assert_eq!(st["healthy"], serde_json::json!(["tank/data"]));
    assert_eq!(st["last_success"], 1_800_000_000u64);
    let disc = json(&ret["homeassistant/binary_sensor/zferry_n1_pull-b/config"]);
    assert_eq!(
        disc["expire_after"], 3600,
        "defaults to the stale threshold"
    );
    assert!(!ret.keys().any(|k| k.starts_with("power")));

    let dir = tempdir("prom");
    let p = prom::write(&dir, &healthy()).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        text.contains("zferry_job_failed{job=\"pull-b\"} 0"),
        "{text}"
    );
    assert!(text.contains("zferry_dataset_lag_seconds{job=\"pull-b\",source=\"tank/data\",target=\"backup/client/tank/data\"} 0"), "{text}");
    assert!(text.contains("zferry_dataset_transferred_bytes{job=\"pull-b\",source=\"tank/data\",target=\"backup/client/tank/data\"} 12345"), "{text}");
    promtool_check(&p);

    let http = Receiver::start();
    let base = format!("http://127.0.0.1:{}/ping/uuid", http.port);
    let t = std::time::Duration::from_secs(5);
    ping::send(&base, ping::Ping::Start, "", t).unwrap();
    ping::send(&base, ping::Ping::Success, "all good", t).unwrap();
    let r = http.take();
    assert_eq!(
        r.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/ping/uuid/start", "/ping/uuid"]
    );
    assert_eq!(r[1].body, "all good");
}

#[test]
fn an_unreachable_broker_is_an_error_not_a_hang() {
    let cfg: MqttConfig = toml::from_str(&format!(
        "host = '127.0.0.1'\nport = {}\ntimeout = 3",
        free_port()
    ))
    .unwrap();
    let e = mqtt::publish(&cfg, "n1", &[healthy()], 3600, true).unwrap_err();
    assert!(format!("{e:#}").contains("MQTT broker 127.0.0.1"), "{e:#}");
    let e = ping::send(
        &format!("http://127.0.0.1:{}/x", free_port()),
        ping::Ping::Fail,
        "r",
        std::time::Duration::from_secs(3),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("/x/fail"), "{e:#}");
}

#[test]
fn pull_and_push_save_their_reports_too() {
    let dir = tempdir("pullreport");
    let closed = free_port().to_string();
    let state = dir.join("state");
    for (cmd, extra, job) in [
        ("pull", vec![], "pull-127.0.0.1"),
        ("push", vec!["--strip-prefix", "tank"], "push-127.0.0.1"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_zferry"))
            .args([
                cmd,
                "--host",
                "127.0.0.1",
                "--port",
                &closed,
                "--user",
                "nobody",
            ])
            .args(["--datasets", "tank/a", "--destination", "b"])
            .args(extra)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r = json(&std::fs::read_to_string(state.join(format!("{job}.json"))).unwrap());
        assert_eq!(r["job"], job);
        assert!(
            r["error"].as_str().unwrap().contains("cannot connect"),
            "{r}"
        );
    }
    // Each job got its own lock file, released after the run.
    assert!(state.join("pull-127.0.0.1.lock").exists());
}

#[test]
fn status_usage_errors_exit_2() {
    let s = setup("usage");
    let missing = s.dir.join("nope.toml");
    assert_eq!(zferry(&["status"], &missing).status.code(), Some(2));
    let o = zferry(&["status", "no-such-job"], &s.config);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no job 'no-such-job'"));
    std::fs::write(&missing, "[notify.mqtt]\nport = 1\n").unwrap();
    let o = zferry(&["status"], &missing);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a sink table without its host is a config error"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("host"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A proxy between zferry and the broker: zferry's bytes all reach the broker, but of
/// the broker's only the CONNACK comes back, so zferry keeps waiting for its PUBACKs.
/// When zferry's side closes, the broker side is closed too, without a DISCONNECT.
fn ack_swallowing_proxy(broker_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let broker = TcpStream::connect(("127.0.0.1", broker_port)).unwrap();
        let (mut from_client, mut to_broker) =
            (client.try_clone().unwrap(), broker.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_client, &mut to_broker);
            let _ = to_broker.shutdown(Shutdown::Both);
        });
        let (mut from_broker, mut to_client) = (broker, client);
        let mut connack = [0u8; 4];
        from_broker.read_exact(&mut connack).unwrap();
        assert_eq!(connack[0], 0x20, "CONNACK first");
        to_client.write_all(&connack).unwrap();
        let _ = std::io::copy(&mut from_broker, &mut std::io::sink());
    });
    port
}

#[test]
fn killed_mid_publish_the_broker_publishes_the_last_will_offline() {
    let s = setup("will");
    let proxy = ack_swallowing_proxy(s.broker.port);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text
        .replace(
            &format!("port = {}\n", s.broker.port),
            &format!("port = {proxy}\n"),
        )
        .replace(
            "post_run_topic = \"power/testnode\"\ntimeout = 5",
            "timeout = 120",
        );
    assert!(text.contains(&format!("port = {proxy}\n")) && text.contains("timeout = 120"));
    std::fs::write(&s.config, text).unwrap();

    let mut run = Command::new(env!("CARGO_BIN_EXE_zferry"))
        .args(["run", "--config"])
        .arg(&s.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The status reached the broker: zferry is now waiting for acknowledgements.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ret = loop {
        let ret = s.broker.retained("zferry/#");
        if ret.contains_key("zferry/testnode/pull-a/status") {
            break ret;
        }
        assert!(Instant::now() < deadline, "no status published: {ret:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(ret["zferry/testnode/availability"], "online", "{ret:?}");
    assert!(
        run.try_wait().unwrap().is_none(),
        "zferry must still wait for its acks"
    );

    run.kill().unwrap();
    run.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ret = s.broker.retained("zferry/testnode/availability");
        if ret.get("zferry/testnode/availability").map(String::as_str) == Some("offline") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no last will after the kill: {ret:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
