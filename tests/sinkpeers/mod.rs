//! Real local peers for the sink tests: Debian's mosquitto broker, a tiny HTTP receiver
//! for healthchecks-style pings, and `promtool check metrics`. Everything listens on
//! 127.0.0.1 only (the lab's guests reach it as 10.0.2.2).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh temporary directory.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "zferry-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A mosquitto broker on 127.0.0.1, killed on drop.
pub struct Broker {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Broker {
    /// Starts mosquitto with a throwaway config (loopback only, anonymous, no persistence).
    pub fn start() -> Broker {
        let dir = tempdir("mqtt");
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "mosquitto (Debian package mosquitto) must be installed: tests/lab/setup-host.sh",
            );
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port }
    }

    /// Every retained message under `filter`, topic -> payload.
    pub fn retained(&self, filter: &str) -> BTreeMap<String, String> {
        let o = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-t",
                filter,
                "-v",
                "--retained-only",
                "-W",
                "2",
            ])
            .output()
            .expect("mosquitto_sub (Debian package mosquitto-clients)");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    }

    /// Starts a subscriber that waits for one (non-retained) message on `topic`.
    pub fn await_one(&self, topic: &str) -> Child {
        let c = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-t",
                topic,
                "-C",
                "1",
                "-W",
                "120",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Let it subscribe before anything is published.
        std::thread::sleep(Duration::from_millis(500));
        c
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1 that answers 200 to everything.
#[derive(Clone)]
pub struct Receiver {
    /// Its port.
    pub port: u16,
    reqs: Arc<Mutex<Vec<Req>>>,
}

impl Receiver {
    /// Starts it on a thread that lives as long as the test process.
    pub fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let r = reqs.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                serve(s, &r);
            }
        });
        Receiver { port, reqs }
    }

    /// Everything received so far, and forgets it.
    pub fn take(&self) -> Vec<Req> {
        std::mem::take(&mut *self.reqs.lock().unwrap())
    }
}

/// Reads one request and records it *before* answering: the client returns
/// when it has the answer, and a test that looks right after must see it.
fn serve(s: TcpStream, reqs: &Mutex<Vec<Req>>) -> Option<()> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    reqs.lock().unwrap().push(Req {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut s = s;
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
        .ok()
}

/// Runs `promtool check metrics` on `file`; panics with its output unless clean.
pub fn promtool_check(file: &Path) {
    let text = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus): tests/lab/setup-host.sh");
    c.stdin.take().unwrap().write_all(&text).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool check metrics {}:\n{}{}\n--- file:\n{}",
        file.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&text)
    );
}

/// A config's `[notify]` part pointing at `host` (127.0.0.1 here, 10.0.2.2 from a guest).
pub fn notify_toml(
    host: &str,
    broker: &Broker,
    http: &Receiver,
    textfile_dir: &str,
    node: &str,
) -> String {
    format!(
        r#"
[notify]
textfile_dir = "{textfile_dir}"
[notify.ping]
base = "http://{host}:{hp}/ping"
timeout = 5
[notify.mqtt]
host = "{host}"
port = {mp}
node = "{node}"
expire_after = 7200
post_run_topic = "power/{node}"
timeout = 5
"#,
        hp = http.port,
        mp = broker.port
    )
}
