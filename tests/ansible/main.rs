//! The module protocol of the real binary, without Ansible or the lab: the binary is
//! linked under the module names Ansible gives it, fed args files, and must print exactly
//! one JSON object whatever the input.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temp dir with the binary linked as `name`.
fn linked(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("zferry-module-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_zferry"), &exe).unwrap();
    (dir, exe)
}

/// Runs `exe ARGS_FILE` with `args` as the file's text; returns exit code and the JSON.
fn module(exe: &Path, args: Option<&str>) -> (Option<i32>, Value) {
    let mut cmd = Command::new(exe);
    if let Some(text) = args {
        let f = exe.with_extension("args");
        std::fs::write(&f, text).unwrap();
        cmd.arg(f);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one line of JSON: {stdout:?}"
    );
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}"));
    assert!(v.is_object(), "{v}");
    (o.status.code(), v)
}

fn assert_failed(code: Option<i32>, v: &Value, needle: &str) {
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["failed"], true, "{v}");
    assert_eq!(v["changed"], false, "{v}");
    assert_eq!(v["rc"], 1, "{v}");
    assert!(v.get("stderr").is_some() && v.get("cmd").is_some(), "{v}");
    assert!(v["warnings"].is_array(), "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

#[test]
fn malformed_args_are_json_failures() {
    let (_dir, exe) = linked("AnsiballZ_zfs_allow");
    for (text, needle) in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (
            r#"{"name": "p/x", "users": ["a"], "permissions": ["send"], "nope": 1}"#,
            "Unsupported parameters for (zfs_allow) module: nope",
        ),
        (
            r#"{"name": "p/x", "users": ["a"], "permissions": ["send"], "everyone": "perhaps"}"#,
            "unable to convert to bool",
        ),
        (
            r#"{"name": "p/x;y", "users": ["a"], "permissions": ["send"]}"#,
            "name: invalid",
        ),
        (
            r#"{"users": ["a"], "permissions": ["send"], "_ansible_check_mode": true}"#,
            "missing required arguments: name",
        ),
    ] {
        let (code, v) = module(&exe, Some(text));
        assert_failed(code, &v, needle);
    }
    let (code, v) = module(&exe, None);
    assert_failed(code, &v, "is an Ansible module");
}

#[test]
fn job_modules_fail_cleanly_on_bad_options_and_unreachable_hosts() {
    let (_dir, pull) = linked("zfs_pull_x86_64");
    let (code, v) = module(
        &pull,
        Some(
            &json!({"host": "h", "port": "ssh", "datasets": ["p/a"], "destination": "b"})
                .to_string(),
        ),
    );
    assert_failed(code, &v, "'port' is of type str");
    let (_dir2, push) = linked("AnsiballZ_zfs_push");
    let (code, v) = module(
        &push,
        Some(&json!({"host": "h", "datasets": ["p/a"], "destination": "b"}).to_string()),
    );
    assert_failed(code, &v, "push needs strip_prefix");

    // A real run that cannot connect: the job error, named, with the (empty) report.
    let args = json!({"host": "127.0.0.1", "port": 1, "datasets": ["p/a"], "destination": "b",
                      "job_name": "nowhere", "_ansible_check_mode": "yes", "_ansible_version": "2.19.0"});
    let (code, v) = module(&pull, Some(&args.to_string()));
    assert_failed(code, &v, "job nowhere failed: cannot connect");
    assert_eq!(v["check_mode"], true);
    assert_eq!(v["datasets"], json!([]));
}

#[test]
fn any_other_name_is_the_cli() {
    let (_dir, exe) = linked("zferry");
    let o = Command::new(&exe).arg("--version").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("zferry "));
}
