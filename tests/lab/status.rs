//! Never silent, on real pools: zferry runs in the `server` VM as the unprivileged user
//! with delegated permissions, reporting to a mosquitto broker and an HTTP receiver on
//! the host's loopback (10.0.2.2 from the guest). Each failure mode must show up
//! everywhere (exit code, `status`, `/fail` ping, retained MQTT `ok:false`, metric
//! failure flag), and the next healthy run must turn everything green again.

use crate::common::{lab, Lab, DST_PERMS, SRC_PERMS, USER};
use crate::sinkpeers::{free_port, notify_toml, promtool_check, tempdir, Broker, Receiver};
use serde_json::Value;

const HOME: &str = "/home/zferry";
const JOB: &str = "pull-ns1";
const NODE: &str = "labserver";

struct Env<'a> {
    lab: &'a Lab,
    broker: Broker,
    http: Receiver,
    c: &'a str,
    s: &'a str,
}

/// A zferry run or status as the lab user: exit code and both streams.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The entry for source `source` in one job's status JSON.
fn dataset_status(job: &Value, source: &str) -> Value {
    job["datasets"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["source"] == source))
        .unwrap_or_else(|| panic!("{source} not in status: {job}"))
        .clone()
}

impl Env<'_> {
    fn config(&self, ssh_port: u16, datasets: &[&str]) {
        self.config_with(ssh_port, datasets, "");
    }

    /// The job with `job_extra` (TOML lines) added to its table.
    fn config_with(&self, ssh_port: u16, datasets: &[&str], job_extra: &str) {
        let ds: Vec<String> = datasets
            .iter()
            .map(|d| format!("\"{}/{d}\"", self.c))
            .collect();
        let text = format!(
            "state_dir = \"{HOME}/state-ns1\"\nstale_after = 86400\nlock_max_age = 3600\n{}\n[jobs.{JOB}]\nkind = \"pull\"\nhost = \"10.0.2.2\"\nport = {ssh_port}\nuser = \"{USER}\"\nname = \"client\"\ndatasets = [{}]\ndestination = \"{}/backup\"\n{job_extra}",
            notify_toml("10.0.2.2", &self.broker, &self.http, &format!("{HOME}/prom-ns1"), NODE),
            ds.join(", "),
            self.s
        );
        self.lab.ok_as(
            "server",
            USER,
            &format!("mkdir -p {HOME}/prom-ns1; cat > {HOME}/ns1.toml <<'EOF'\n{text}EOF"),
        );
    }

    fn zferry(&self, args: &str) -> Out {
        let o = self.lab.sh_as(
            "server",
            USER,
            &format!("zferry {args} --config {HOME}/ns1.toml"),
        );
        Out {
            code: o.code,
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }

    fn status(&self) -> (Option<i32>, Value) {
        let o = self.zferry("status --json");
        let v: Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {} {}", o.stdout, o.stderr));
        (o.code, v[0].clone())
    }

    fn mqtt_status(&self) -> Value {
        let ret = self.broker.retained("zferry/#");
        let s = ret
            .get(&format!("zferry/{NODE}/{JOB}/status"))
            .unwrap_or_else(|| panic!("no retained status: {ret:?}"));
        serde_json::from_str(s).unwrap()
    }

    fn metrics(&self) -> String {
        let text = self.lab.ok_as(
            "server",
            USER,
            &format!("cat {HOME}/prom-ns1/zferry_{JOB}.prom"),
        );
        let f = tempdir("labprom").join("zferry.prom");
        std::fs::write(&f, format!("{text}\n")).unwrap();
        promtool_check(&f);
        text
    }

    /// A run that must succeed, and everything green after it.
    fn healthy(&self, why: &str) {
        let r = self.zferry("run");
        assert_eq!(r.code, Some(0), "{why}: {}", r.stderr);
        let pings: Vec<String> = self.http.take().into_iter().map(|r| r.path).collect();
        assert_eq!(
            pings,
            [format!("/ping/{JOB}/start"), format!("/ping/{JOB}")],
            "{why}"
        );
        let m = self.mqtt_status();
        assert_eq!(
            (m["ok"].clone(), m["failure"].clone()),
            (Value::Bool(true), Value::Null),
            "{why}: {m}"
        );
        assert_eq!(
            m["healthy"],
            serde_json::json!([format!("{}/data", self.c)]),
            "{why}: {m}"
        );
        let text = self.metrics();
        assert!(
            text.contains(&format!("zferry_job_failed{{job=\"{JOB}\"}} 0")),
            "{why}: {text}"
        );
        let data = format!("{}/data", self.c);
        let flag = format!("zferry_dataset_failed{{job=\"{JOB}\",source=\"{data}\",target=\"{}/backup/client/{data}\"}} 0", self.s);
        assert!(text.contains(&flag), "{why}: {text}");
        let (code, st) = self.status();
        assert_eq!(code, Some(0), "{why}: {st}");
        for d in st["datasets"].as_array().unwrap() {
            assert_eq!(d["state"], "ok", "{why}: {st}");
            assert_eq!(d["source_newest"], d["target_newest"], "{why}: {st}");
            assert_eq!(d["lag"], 0, "{why}: {st}");
        }
    }

    /// A run that must fail with `reason` visible in every sink.
    fn fails(&self, mode: &str, reason: &str, want_code: i32) {
        let r = self.zferry("run");
        assert_eq!(r.code, Some(want_code), "{mode}: {}", r.stderr);
        // A run that never took the lock never pings /start.
        let reqs = self.http.take();
        let fail = reqs
            .iter()
            .find(|q| q.path == format!("/ping/{JOB}/fail"))
            .unwrap_or_else(|| panic!("{mode}: no /fail ping: {reqs:?}"));
        assert!(
            fail.body.contains(reason),
            "{mode}: /fail body: {}",
            fail.body
        );
        assert!(
            !reqs.iter().any(|q| q.path == format!("/ping/{JOB}")),
            "{mode}: no success ping"
        );
        let m = self.mqtt_status();
        assert_eq!(m["ok"], false, "{mode}: {m}");
        assert!(
            m["failure"].as_str().unwrap().contains(reason),
            "{mode}: {m}"
        );
        let text = self.metrics();
        assert!(
            text.contains(&format!("zferry_job_failed{{job=\"{JOB}\"}} 1")),
            "{mode}: {text}"
        );
        let (code, st) = self.status();
        assert_eq!(
            code,
            Some(if want_code == 3 { 3 } else { 1 }),
            "{mode}: {st}"
        );
        let failed: Vec<&Value> = st["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["state"] == "failed")
            .collect();
        assert!(
            failed
                .iter()
                .any(|d| d["reason"].as_str().unwrap().contains(reason)),
            "{mode}: status must show failed with the reason: {st}"
        );
        for d in failed {
            let flag = format!(
                "zferry_dataset_failed{{job=\"{JOB}\",source=\"{}\",target=\"{}\"}} 1",
                d["source"].as_str().unwrap(),
                d["target"].as_str().unwrap()
            );
            assert!(text.contains(&flag), "{mode}: {text}");
        }
    }
}

#[test]
fn every_failure_mode_is_loud_everywhere_and_a_healthy_run_clears_it() {
    let lab = lab();
    let env = Env {
        lab,
        broker: Broker::start(),
        http: Receiver::start(),
        c: "ns1c",
        s: "ns1s",
    };
    let (c, s) = (env.c, env.s);
    lab.pool("client", c);
    lab.pool("server", s);
    lab.ok(
        "client",
        &format!("zfs create {c}/data; zfs create {c}/gone"),
    );
    for ds in ["data", "gone"] {
        lab.write_and_snap("client", &format!("{c}/{ds}"), "s1", 1);
    }
    lab.allow("client", SRC_PERMS, c);
    lab.create_allowed("server", &format!("{s}/backup"), DST_PERMS);
    lab.ok_as(
        "server",
        USER,
        &format!("rm -rf {HOME}/state-ns1 {HOME}/prom-ns1"),
    );
    let port = lab.port("client");

    // Before any run: the datasets are missing (never replicated), not merely late.
    env.config(port, &["data"]);
    let (code, st) = env.status();
    assert_eq!(code, Some(1), "{st}");
    assert_eq!(st["datasets"][0]["state"], "missing", "{st}");
    assert_eq!(st["datasets"][0]["reason"], "never replicated", "{st}");

    env.healthy("first run");
    let disc = env.broker.retained("homeassistant/#");
    let d: Value = serde_json::from_str(
        &disc[&format!("homeassistant/binary_sensor/zferry_{NODE}_{JOB}/config")],
    )
    .unwrap();
    assert_eq!(
        d["expire_after"], 7200,
        "HA marks the entity unavailable when runs stop: {d}"
    );
    assert_eq!(
        d["availability_topic"],
        format!("zferry/{NODE}/availability")
    );

    // 1. SSH unreachable.
    env.config(free_port(), &["data"]);
    env.fails("ssh unreachable", "cannot connect", 1);
    env.config(port, &["data"]);
    env.healthy("after ssh unreachable");

    // 2. Permission denied: the source no longer delegates send.
    lab.write_and_snap("client", &format!("{c}/data"), "s2", 1);
    lab.ok("client", &format!("zfs unallow -u {USER} {SRC_PERMS} {c}"));
    env.fails("permission denied", "permission denied", 1);
    lab.allow("client", SRC_PERMS, c);
    env.healthy("after permission denied");

    // 3. Diverged target: a snapshot made on the copy.
    let copy = format!("{s}/backup/client/{c}/data");
    lab.ok("server", &format!("zfs snapshot {copy}@local"));
    lab.write_and_snap("client", &format!("{c}/data"), "s3", 1);
    env.fails("diverged target", "newer than the common base", 1);
    lab.ok("server", &format!("zfs destroy {copy}@local"));
    env.healthy("after diverged target");

    // 4. Lock held past the threshold by a wedged run (mtime two hours old).
    let lock = format!("{HOME}/state-ns1/{JOB}.lock");
    let pid = lab.ok_as(
        "server",
        USER,
        &format!("nohup sh -c 'exec 9>>{lock}; flock -n 9 || exit 1; exec sleep 300' >/dev/null 2>&1 </dev/null & echo $!; sleep 1; touch -d '2 hours ago' {lock}"),
    );
    let young = env.zferry("run --lock-max-age 86400");
    assert_eq!(
        young.code,
        Some(0),
        "a young lock is a quiet skip: {}",
        young.stderr
    );
    assert!(
        young.stderr.contains("another run holds"),
        "{}",
        young.stderr
    );
    assert!(env.http.take().is_empty(), "a skipped run pings nothing");
    env.fails("lock held past threshold", "lock held for 2h", 3);
    lab.ok_as("server", USER, &format!("kill {pid}"));
    env.healthy("after the wedged run is gone");

    // Progress: a bar with bytes, rate and ETA on a terminal (script(1) gives one),
    // a plain line without.
    lab.write_and_snap("client", &format!("{c}/data"), "p1", 8);
    let tty = lab.ok_as(
        "server",
        USER,
        &format!("script -qec 'zferry run --config {HOME}/ns1.toml' /dev/null"),
    );
    assert!(
        tty.contains("ETA") && tty.contains("MiB"),
        "no progress bar on a TTY: {tty}"
    );
    env.http.take();
    // Without a terminal: one line as the stream starts, its size asked only of a stream
    // still going after a few seconds (2 MiB at 128 KiB/s: ~16 s), whose line every 10 s
    // then has it ("… of 2.1 MiB (60%), 0.1 MiB/s, ETA 6s").
    env.config_with(port, &["data"], "bwlimit = \"128K\"\n");
    lab.write_and_snap("client", &format!("{c}/data"), "p2", 2);
    let plain = env.zferry("run -v");
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    env.http.take();
    let label = format!("{s}/backup/client/{c}/data");
    assert!(
        plain.stderr.contains(&format!("{label}: streaming\n")),
        "{}",
        plain.stderr
    );
    let estimate = plain
        .stderr
        .find("zfs send -nP")
        .expect("a slow stream asks its size");
    let later = &plain.stderr[estimate..];
    assert!(
        later.contains(&format!("{label}: ")) && later.contains(" MiB (") && later.contains("ETA"),
        "a line after the estimate has the share and the ETA: {}",
        plain.stderr
    );
    // Never the bar ("label [=====>   ] …") or its redraws.
    assert!(
        !plain.stderr.contains(&format!("{label} ["))
            && !plain.stderr.contains('\r')
            && !plain.stderr.contains('\x1b'),
        "no bar without a terminal: {}",
        plain.stderr
    );
    env.healthy("after the progress runs");

    // 5. Source dataset gone (a second dataset in the job, then destroyed).
    env.config(port, &["data", "gone"]);
    let both = env.zferry("run");
    assert_eq!(both.code, Some(0), "{}", both.stderr);
    env.http.take();
    // zferry holds its base snapshot; an admin removing the dataset releases it first.
    lab.ok(
        "client",
        &format!("zfs release zferry:{JOB} {c}/gone@s1; zfs destroy -r {c}/gone"),
    );
    env.fails("source dataset gone", "does not exist", 1);
    let (_, st) = env.status();
    let data = dataset_status(&st, &format!("{c}/data"));
    assert_eq!(
        data["state"], "ok",
        "one gone dataset does not fail the others: {st}"
    );
    let m = env.mqtt_status();
    assert_eq!(m["failed"], serde_json::json!([format!("{c}/gone")]), "{m}");
    assert!(
        m["datasets"][format!("{c}/gone")]["last_success"].is_u64(),
        "last success survives the failure: {m}"
    );

    // Stale: a snapshot the copy lacks, older than the threshold.
    lab.write_and_snap("client", &format!("{c}/data"), "late", 1);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let o = env.zferry("status --json --stale-after 1");
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    let d = dataset_status(&v[0], &format!("{c}/data"));
    assert_eq!(
        (
            d["state"].as_str(),
            d["source_newest"].as_str(),
            d["target_newest"].as_str()
        ),
        (Some("stale"), Some("late"), Some("p2")),
        "{v}"
    );
    assert!(d["lag"].as_u64().unwrap() >= 3, "{d}");

    // In sync is not enough: a source that stops taking snapshots leaves the copy "lag 0"
    // at an ever older recovery point. That is stale, with the reason, and every sink
    // carries the recovery point.
    // (ns1c/gone stays failed: the run exits 1 for it; ns1c/data catches up.)
    let caught_up = env.zferry("run");
    assert!(
        caught_up.stderr.contains("incremental, 1 snapshot @late"),
        "{}",
        caught_up.stderr
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    let o = env.zferry("status --json --stale-after 3");
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    let d = dataset_status(&v[0], &format!("{c}/data"));
    assert_eq!(
        (d["state"].as_str(), d["lag"].as_u64()),
        (Some("stale"), Some(0)),
        "{v}"
    );
    let why = d["reason"].as_str().unwrap();
    assert!(
        why.contains("newest copy is") && why.contains("no new snapshot on the source"),
        "{why}"
    );
    assert!(d["newest_copy"].as_u64().is_some(), "{d}");
    let m = env.mqtt_status();
    assert!(
        m["newest_copy_utc"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{m}"
    );
    assert!(
        env.metrics()
            .contains("zferry_dataset_newest_copy_timestamp_seconds{"),
        "the recovery point is a metric"
    );

    // The same through a run's sinks, with the job's own threshold: a run that finds
    // nothing new pings /fail with the reason, the retained MQTT state is not ok, and
    // the metric holds the old recovery point; a fresh snapshot and run turn all green.
    // (90 s: from the fresh snapshot to the status check of a healthy run takes tens of
    // seconds under emulation on a busy machine.)
    // Only this run's pings below: the catch-up run above pinged /fail for ns1c/gone.
    env.http.take();
    env.config_with(port, &["data"], "max_snapshot_age = 90\n");
    std::thread::sleep(std::time::Duration::from_secs(91));
    let r = env.zferry("run");
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);
    let reqs = env.http.take();
    let fail = reqs
        .iter()
        .find(|q| q.path == format!("/ping/{JOB}/fail"))
        .unwrap_or_else(|| panic!("a stale recovery point pings /fail: {reqs:?}"));
    assert!(
        fail.body.contains("stale") && fail.body.contains("newest copy is"),
        "{}",
        fail.body
    );
    let m = env.mqtt_status();
    assert_eq!(m["ok"], false, "{m}");
    assert!(
        m["failure"]
            .as_str()
            .is_some_and(|f| f.contains("newest copy is")),
        "{m}"
    );
    let (code, st) = env.status();
    assert_eq!(code, Some(1), "{st}");
    let newest = dataset_status(&st, &format!("{c}/data"))["newest_copy"].clone();
    assert!(
        env.metrics().contains(&format!(
            "zferry_dataset_newest_copy_timestamp_seconds{{job=\"{JOB}\",source=\"{c}/data\",target=\"{s}/backup/client/{c}/data\"}} {newest}"
        )),
        "the metric holds the recovery point {newest}"
    );
    // ns1c/gone, in the job until above, is still in the saved history but no longer the
    // job's: every sink is green again (status exits 0) and none of them lists it.
    lab.write_and_snap("client", &format!("{c}/data"), "fresh", 1);
    env.healthy("a fresh snapshot after a stale recovery point, ns1c/gone dropped from the job");
    let (_, st) = env.status();
    let gone = format!("{c}/gone");
    assert!(
        st["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["source"] != gone.as_str()),
        "a dataset dropped from the config is not the job's: {st}"
    );
    assert!(
        env.mqtt_status()["datasets"].get(&gone).is_none(),
        "nor in MQTT"
    );
    assert!(
        !env.metrics().contains(&format!("source=\"{gone}\"")),
        "nor in the metrics"
    );

    // A new child without any snapshot is missing, not silently absent.
    lab.ok("client", &format!("zfs create {c}/data/newkid"));
    let (code, st) = env.status();
    assert_eq!(code, Some(1), "{st}");
    let kid = dataset_status(&st, &format!("{c}/data/newkid"));
    assert_eq!(kid["state"], "missing", "{st}");
    assert!(
        kid["reason"]
            .as_str()
            .is_some_and(|r| r.contains("source has no snapshot")),
        "{st}"
    );
}
