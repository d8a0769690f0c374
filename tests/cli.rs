//! The command line's refusals: bad input gets one clear message and exit code 2, and
//! nothing is contacted or touched (no SSH connection is even attempted).

use std::process::{Command, Output};

fn zferry(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zferry"));
    c.args(args).env_remove("SSH_ORIGINAL_COMMAND");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn refused(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let o = zferry(args, env);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
    assert!(
        !err.contains("connect"),
        "{args:?} must not reach out: {err}"
    );
    assert!(o.stdout.is_empty(), "{args:?}: nothing on stdout");
}

fn config(text: &str) -> tempfile_path::Path {
    tempfile_path::write(text)
}

/// A uniquely named temp file (no extra crate for one helper).
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    pub fn write(text: &str) -> Path {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "zferry-cli-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, text).unwrap();
        Path(p)
    }
}

#[test]
fn invalid_dataset_names_are_refused() {
    refused(
        &[
            "pull",
            "--host",
            "h",
            "--datasets",
            "tank/x;rm -rf /",
            "--destination",
            "b",
        ],
        &[],
        "invalid ZFS name 'tank/x;rm -rf /'",
    );
    refused(
        &[
            "push",
            "--host",
            "h",
            "--datasets",
            "tank/a",
            "--destination",
            "b",
        ],
        &[],
        "--strip-prefix",
    );
    refused(
        &[
            "push",
            "--host",
            "h",
            "--datasets",
            "x/a",
            "--destination",
            "b",
            "--strip-prefix",
            "tank",
        ],
        &[],
        "not under strip_prefix tank",
    );
}

/// `zferry pull ... --FLAG=VALUE` is refused with `needle`.
fn pull_refused_with(flag: &str, value: &str, needle: &str) {
    refused(
        &[
            "pull",
            "--host",
            "h",
            "--datasets",
            "t/a",
            "--destination",
            "b",
            &format!("--{flag}={value}"),
        ],
        &[],
        needle,
    );
}

#[test]
fn a_bad_bwlimit_is_refused_naming_the_flag() {
    for (rate, needle) in [
        ("10X", "bwlimit '10X' is not a size"),
        ("0", "bwlimit 0 would stop every transfer"),
        ("-1M", "'-1M' is not a size"),
    ] {
        pull_refused_with("bwlimit", rate, needle);
    }
}

#[test]
fn an_unknown_compression_is_refused_naming_the_flag() {
    for (how, needle) in [
        ("lz4", "compress 'lz4' is not known"),
        ("zstd:20", "the zstd level must be 1 to 19"),
    ] {
        pull_refused_with("compress", how, needle);
    }
}

#[test]
fn a_bad_parallel_is_refused_naming_the_job_and_the_flag() {
    for (n, needle) in [
        ("0", "job 'pull-h': parallel = 0 would replicate nothing"),
        ("9", "job 'pull-h': parallel = 9 is more than 8"),
        ("-1", "--parallel"),
        ("many", "--parallel"),
    ] {
        pull_refused_with("parallel", n, needle);
    }
}

#[test]
fn config_errors_name_the_file_and_the_problem() {
    refused(
        &["run", "--config", "/nonexistent/zferry.toml"],
        &[],
        "cannot read config /nonexistent/zferry.toml",
    );
    let bad = config(
        "[jobs.a]\nkind = 'pull'\nhost = 'h'\ndatasets = ['t/a']\ndestination = 'b'\nretries = 3\n",
    );
    refused(
        &["run", "--config", bad.0.to_str().unwrap()],
        &[],
        "unknown field `retries`",
    );
    let good =
        config("[jobs.a]\nkind = 'pull'\nhost = 'h'\ndatasets = ['t/a']\ndestination = 'b'\n");
    refused(
        &["run", "--config", good.0.to_str().unwrap(), "nosuchjob"],
        &[],
        "no job 'nosuchjob'",
    );
    refused(
        &["plan", "--config", good.0.to_str().unwrap(), "nosuchjob"],
        &[],
        "it has: a",
    );
}

#[test]
fn serve_refuses_outside_a_forced_command_and_anything_unexpected() {
    let args = ["serve", "--mode", "send", "--root", "tank/data"];
    refused(&args, &[], "forced command");
    refused(
        &args,
        &[("SSH_ORIGINAL_COMMAND", "zfs destroy -r tank/data")],
        "rejected",
    );
    refused(
        &args,
        &[("SSH_ORIGINAL_COMMAND", "zfs send -w tank/data@a\nid")],
        "rejected: control character",
    );
    refused(
        &args,
        &[("SSH_ORIGINAL_COMMAND", "zfs send -w tank/other@a")],
        "outside the allowed roots",
    );
}

#[test]
fn serve_rejects_a_command_that_is_not_utf8_and_says_so() {
    use std::os::unix::ffi::OsStrExt;
    let o = Command::new(env!("CARGO_BIN_EXE_zferry"))
        .args(["serve", "--mode", "send", "--root", "tank/data"])
        .env(
            "SSH_ORIGINAL_COMMAND",
            std::ffi::OsStr::from_bytes(b"zfs send -w tank/data@\xff\xfe"),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("rejected: command is not UTF-8"), "{err}");
    assert!(
        err.contains("\\u{fffd}"),
        "the bad bytes are shown escaped: {err}"
    );
}
