//! The `zferry.zfs` collection on real OpenZFS: ansible-playbook and ansible (ad hoc)
//! from this host against the lab VMs, with the modules built by this test run.
//!
//! Every assertion on a change also reads the real state in the VM (`zfs allow`, GUIDs,
//! keystatus), and every check-mode run is followed by a check that nothing changed.
//! Nothing here skips: a missing venv is created with `ansible/setup-venv.sh`, and a lab
//! that cannot boot fails the test with its output.

use crate::common::{lab, Lab, USER};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const MODULES: [&str; 3] = ["zfs_allow", "zfs_pull", "zfs_push"];

/// The venv, a collection tree with this build's binary as the modules, and an inventory.
struct Ansible {
    venv: PathBuf,
    dir: PathBuf,
}

/// How a run finds zferry.zfs.
#[derive(Clone, Copy, PartialEq)]
enum Finds {
    /// `ANSIBLE_COLLECTIONS_PATH` names the test's collection tree (FQCN tasks).
    Configured,
    /// Nothing configured: `ANSIBLE_HOME` is the test's `home/`, so Ansible searches only
    /// its default paths below it, as for a user who ran `ansible/install.sh`.
    Defaults,
}

/// One ansible or ansible-playbook run against one host.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The host's task result as Ansible recorded it (tree callback).
    result: Value,
}

impl Run {
    fn changed(&self) -> bool {
        self.result["changed"] == true
    }

    fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "ansible failed: {self:#?}");
        // The action plugin must never die with a Python traceback.
        assert!(!self.stderr.contains("Traceback"), "{self:#?}");
        assert!(
            self.result.get("msg").is_some() || self.result.get("changed").is_some(),
            "{self:#?}"
        );
        self
    }

    /// A clean failure: Ansible read our JSON (no `module_stdout`, which it adds when a
    /// module printed something else), with the message and rc 1 (not a command's).
    fn failed_with(&self, needle: &str) {
        self.failed_with_rc(needle, 1);
    }

    /// A clean failure with a command's exit code.
    fn failed_with_rc(&self, needle: &str, rc: i32) {
        assert_ne!(self.code, Some(0), "expected a failure: {self:#?}");
        assert!(
            self.result.get("module_stdout").is_none(),
            "not clean JSON: {self:#?}"
        );
        assert_eq!(self.result["changed"], false, "{self:#?}");
        assert_eq!(self.result["rc"], rc, "{self:#?}");
        let msg = self.result["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "msg {msg:?} lacks {needle:?}: {self:#?}"
        );
    }

    fn dataset(&self, src: &str) -> &Value {
        self.result["datasets"]
            .as_array()
            .unwrap_or_else(|| panic!("no datasets: {self:#?}"))
            .iter()
            .find(|d| d["source"] == src)
            .unwrap_or_else(|| panic!("{src} not in result: {self:#?}"))
    }
}

fn must(cmd: &mut Command, what: &str) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Copies the collection's source files (not built binaries, links or venvs).
fn copy_collection(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let ty = e.file_type().unwrap();
        if ty.is_symlink() || name == "bin" || name == ".venv" {
            continue;
        }
        if ty.is_dir() {
            copy_collection(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn ansible() -> &'static Ansible {
    static A: OnceLock<Ansible> = OnceLock::new();
    A.get_or_init(|| {
        let lab = lab();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let venv = PathBuf::from(
            must(&mut Command::new(root.join("ansible/setup-venv.sh")), "ansible/setup-venv.sh")
                .trim(),
        );
        assert!(venv.join("bin/ansible-playbook").exists(), "no ansible-playbook in {venv:?}");
        let dir = std::env::temp_dir().join(format!("zferry-lab-ansible-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Under home/collections: where Ansible looks by default when ANSIBLE_HOME=home.
        let coll = dir.join("home/collections/ansible_collections/zferry/zfs");
        copy_collection(&root.join("ansible"), &coll);
        // The lab VMs are x86_64 Debian 12 like this host, so this run's own binary serves
        // as the x86_64 build: the test exercises the code just compiled. Stripped, because
        // Ansible copies it to the VM for every task (84 MB with debug info, 13 MB without).
        let bin = dir.join("zferry-x86_64");
        std::fs::copy(env!("CARGO_BIN_EXE_zferry"), &bin).unwrap();
        must(Command::new("strip").arg(&bin), "strip (binutils)");
        for m in MODULES {
            std::os::unix::fs::symlink(&bin, coll.join(format!("plugins/modules/{m}_x86_64")))
                .unwrap();
        }
        let env: std::collections::HashMap<String, String> =
            must(Command::new(root.join("tests/lab/lab")).arg("env"), "tests/lab/lab env")
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut inv = String::from("[lab]\n");
        for vm in crate::common::VMS {
            inv.push_str(&format!(
                "{vm} ansible_host=127.0.0.1 ansible_port={} ansible_user=root ansible_ssh_private_key_file={} \
                 ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes' \
                 ansible_python_interpreter=/usr/bin/python3\n",
                lab.port(vm),
                env["ZFERRY_LAB_KEY"],
                env["ZFERRY_LAB_KNOWN_HOSTS"],
            ));
        }
        std::fs::write(dir.join("inventory.ini"), inv).unwrap();
        Ansible { venv, dir }
    })
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

impl Ansible {
    fn run(&self, finds: Finds, prog: &str, host: &str, args: &[&str]) -> Run {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let tree = self.dir.join(format!("tree-{n}"));
        let mut cmd = Command::new(self.venv.join("bin").join(prog));
        for var in [
            "ANSIBLE_COLLECTIONS_PATH",
            "ANSIBLE_HOME",
            "ANSIBLE_LIBRARY",
            "ANSIBLE_ACTION_PLUGINS",
        ] {
            cmd.env_remove(var);
        }
        match finds {
            Finds::Configured => cmd.env(
                "ANSIBLE_COLLECTIONS_PATH",
                self.dir.join("home/collections"),
            ),
            Finds::Defaults => cmd.env("ANSIBLE_HOME", self.dir.join("home")),
        };
        let o = cmd
            .args(args)
            .env("ANSIBLE_INVENTORY", self.dir.join("inventory.ini"))
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOAD_CALLBACK_PLUGINS", "1")
            .env("ANSIBLE_CALLBACKS_ENABLED", "ansible.builtin.tree")
            .env("ANSIBLE_CALLBACK_TREE_DIR", &tree)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
        let result = std::fs::read_to_string(tree.join(host))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            result,
        }
    }

    /// `ansible-playbook` with a one-task play on `host` (the playbook is JSON, which is YAML).
    fn play(&self, host: &str, task: Value, extra: &[&str]) -> Run {
        self.play_facts(host, task, extra, false)
    }

    /// Like [`Ansible::play`]; with `gather`, the action plugin takes the architecture
    /// from the facts instead of running `uname -m`.
    fn play_facts(&self, host: &str, task: Value, extra: &[&str], gather: bool) -> Run {
        self.play_finding(Finds::Configured, host, task, extra, gather)
    }

    fn play_finding(
        &self,
        finds: Finds,
        host: &str,
        task: Value,
        extra: &[&str],
        gather: bool,
    ) -> Run {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let pb = self.dir.join(format!("play-{n}.yml"));
        let play = json!([{"name": "lab", "hosts": host, "gather_facts": gather, "tasks": [task]}]);
        std::fs::write(&pb, serde_json::to_string_pretty(&play).unwrap()).unwrap();
        let mut args = vec![pb.to_str().unwrap()];
        args.extend(extra);
        let r = self.run(finds, "ansible-playbook", host, &args);
        // The recap agrees with the task result.
        let recap = r
            .stdout
            .lines()
            .find(|l| l.starts_with(host) && l.contains("ok="))
            .unwrap_or_default();
        if r.code == Some(0) {
            let want = if r.changed() {
                "changed=1"
            } else {
                "changed=0"
            };
            assert!(recap.contains(want), "recap {recap:?} vs result: {r:#?}");
        }
        r
    }

    /// `ansible HOST -m MODULE -a ARGS` (ad hoc, `k=v` arguments).
    fn adhoc(&self, host: &str, module: &str, args: &str, extra: &[&str]) -> Run {
        self.adhoc_finding(Finds::Configured, host, module, args, extra)
    }

    fn adhoc_finding(
        &self,
        finds: Finds,
        host: &str,
        module: &str,
        args: &str,
        extra: &[&str],
    ) -> Run {
        let mut a = vec![host, "-m", module, "-a", args];
        a.extend(extra);
        self.run(finds, "ansible", host, &a)
    }
}

fn allow_task(args: Value) -> Value {
    json!({"name": "zfs_allow", "zferry.zfs.zfs_allow": args})
}

/// `zfs allow DS` in the VM: what the dataset grants, as ZFS shows it.
fn zfs_allow(lab: &Lab, vm: &str, ds: &str) -> String {
    // `ok` trims; keep the last line's newline so every grant line ends the same way.
    format!("{}\n", lab.ok(vm, &format!("zfs allow {ds}")))
}

#[test]
fn zfs_allow_grants_once_predicts_exactly_and_exact_removes_extras() {
    let (lab, a) = (lab(), ansible());
    lab.pool("server", "an1");
    // Another principal's grant, which nothing below may touch.
    lab.ok(
        "server",
        "zfs create an1/data; zfs allow -u root snapshot an1/data",
    );
    let grant =
        allow_task(json!({"name": "an1/data", "users": [USER], "permissions": ["send", "hold"]}));

    let before = zfs_allow(lab, "server", "an1/data");
    let check = a.play("server", grant.clone(), &["--check", "--diff"]);
    check.ok();
    assert!(check.changed(), "{check:#?}");
    assert_eq!(
        check.result["commands"],
        json!([format!("zfs allow -u {USER} hold,send an1/data")])
    );
    assert_eq!(
        zfs_allow(lab, "server", "an1/data"),
        before,
        "check mode changed nothing"
    );

    let real = a.play("server", grant.clone(), &["--diff"]);
    real.ok();
    assert!(real.changed());
    let now = zfs_allow(lab, "server", "an1/data");
    assert!(now.contains(&format!("\tuser {USER} hold,send\n")), "{now}");
    assert!(now.contains("\tuser root snapshot\n"), "{now}");
    // Check mode predicted exactly the grants the real run produced.
    assert_eq!(
        check.result["grants"], real.result["grants"],
        "{check:#?}\n{real:#?}"
    );
    // --diff shows the new grant.
    assert!(
        real.stdout.contains(&format!("+\tuser {USER} hold,send")),
        "{}",
        real.stdout
    );
    assert!(
        real.stdout
            .contains("+++ after: zfs allow an1/data (after)"),
        "{}",
        real.stdout
    );

    let again = a.play_facts("server", grant, &[], true);
    again.ok();
    assert!(!again.changed(), "{again:#?}");
    assert_eq!(again.result["commands"], json!([]));

    // An extra grant, then `exact`: predicted in check mode, removed for real, once.
    lab.allow("server", "destroy,mount", "an1/data");
    let exact = allow_task(
        json!({"name": "an1/data", "users": USER, "permissions": "send,hold", "exact": "yes"}),
    );
    let before = zfs_allow(lab, "server", "an1/data");
    let check = a.play("server", exact.clone(), &["--check"]);
    check.ok();
    assert!(check.changed());
    assert_eq!(
        check.result["commands"],
        json!([format!("zfs unallow -u {USER} destroy,mount an1/data")])
    );
    assert_eq!(zfs_allow(lab, "server", "an1/data"), before);
    let real = a.play("server", exact.clone(), &[]);
    real.ok();
    assert!(real.changed());
    let now = zfs_allow(lab, "server", "an1/data");
    assert!(
        !now.contains("destroy") && now.contains(&format!("\tuser {USER} hold,send\n")),
        "{now}"
    );
    assert!(
        now.contains("\tuser root snapshot\n"),
        "exact leaves other principals alone: {now}"
    );
    assert!(!a.play("server", exact, &[]).ok().changed());

    // Sets, create time permissions and a local-only grant, then absent.
    let more = allow_task(json!({
        "name": "an1/data", "sets": {"@snapper": ["snapshot", "mount"]},
        "create_time_permissions": ["destroy"], "groups": ["root"], "permissions": ["@snapper"], "local": true
    }));
    assert!(a.play("server", more.clone(), &[]).ok().changed());
    let now = zfs_allow(lab, "server", "an1/data");
    for line in [
        "\t@snapper mount,snapshot\n",
        "Create time permissions:\n\tdestroy\n",
        "Local permissions:\n\tgroup root @snapper\n",
    ] {
        assert!(now.contains(line), "{line:?} in {now}");
    }
    assert!(!a.play("server", more, &[]).ok().changed());
    let absent = allow_task(json!({"name": "an1/data", "users": [USER], "state": "absent"}));
    assert!(a.play("server", absent.clone(), &[]).ok().changed());
    assert!(!zfs_allow(lab, "server", "an1/data").contains(USER));
    assert!(!a.play("server", absent, &[]).ok().changed());
}

#[test]
fn zfs_allow_ad_hoc_and_malformed_args_fail_as_clean_json() {
    let (lab, a) = (lab(), ansible());
    lab.pool("server", "an2");
    lab.ok("server", "zfs create an2/data");
    let args = format!("name=an2/data users={USER} permissions=send,hold everyone=no");
    let first = a.adhoc("server", "zferry.zfs.zfs_allow", &args, &[]);
    first.ok();
    assert!(
        first.changed() && first.stdout.contains("server | CHANGED"),
        "{first:#?}"
    );
    assert!(zfs_allow(lab, "server", "an2/data").contains(&format!("\tuser {USER} hold,send\n")));
    let again = a.adhoc("server", "zferry.zfs.zfs_allow", &args, &[]);
    again.ok();
    assert!(
        !again.changed() && again.stdout.contains("server | SUCCESS"),
        "{again:#?}"
    );

    let before = zfs_allow(lab, "server", "an2/data");
    for (args, needle) in [
        (
            format!("name=an2/data users={USER} permissions=destroy everyone=maybe"),
            "'everyone' is of type str and we were unable to convert to bool",
        ),
        (
            format!("name=an2/data users={USER} permissions=destroy bogus=1"),
            "Unsupported parameters for (zfs_allow) module: bogus",
        ),
        (
            format!("name='an2/da;ta' users={USER} permissions=destroy"),
            "name: invalid",
        ),
    ] {
        a.adhoc("server", "zferry.zfs.zfs_allow", &args, &[])
            .failed_with(needle);
    }
    // A command that fails: its exit code, stderr and the command itself come back.
    let gone = a.adhoc(
        "server",
        "zferry.zfs.zfs_allow",
        &format!("name=an2/nope users={USER} permissions=destroy"),
        &[],
    );
    gone.failed_with_rc("dataset does not exist", 255);
    assert_eq!(gone.result["cmd"], "zfs allow an2/nope", "{gone:#?}");
    assert!(gone.result["stderr"]
        .as_str()
        .unwrap()
        .contains("dataset does not exist"));
    // Wrong types and unknown options for the job modules too, before any SSH.
    a.play("server", json!({"zferry.zfs.zfs_pull": {"host": "h", "port": "ssh", "datasets": ["p/a"], "destination": "an2/data"}}), &[])
        .failed_with("'port' is of type str and we were unable to convert to int");
    a.play("server", json!({"zferry.zfs.zfs_push": {"host": "h", "datasets": ["p/a"], "destination": "an2/data", "strip_prefix": "p", "kind": "pull"}}), &[])
        .failed_with("Unsupported parameters for (zfs_push) module: kind");
    a.play("server", json!({"zferry.zfs.zfs_pull": {"host": "h", "datasets": ["p/a@x"], "destination": "an2/data"}}), &[])
        .failed_with("p/a@x");
    assert_eq!(
        zfs_allow(lab, "server", "an2/data"),
        before,
        "failed tasks changed nothing"
    );

    // The action plugin picks the binary by architecture, and says what is missing.
    for (arch, needle) in [
        ("armv7l", "has no binary for architecture 'armv7l'"),
        (
            "aarch64",
            "the zfs_allow binary for aarch64 is not in the collection",
        ),
    ] {
        let r = a.adhoc(
            "server",
            "zferry.zfs.zfs_allow",
            &format!("name=an2/data users={USER} permissions=destroy"),
            &["-e", &format!("ansible_architecture={arch}")],
        );
        assert_ne!(r.code, Some(0), "{r:#?}");
        let msg = r.result["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{r:#?}");
    }
    assert_eq!(zfs_allow(lab, "server", "an2/data"), before);

    // state=absent recursive=yes: every descendent that grants the user, each predicted.
    lab.create_allowed("server", "an2/data/kid", "send");
    let args = format!("name=an2 users={USER} state=absent recursive=yes");
    let kid_before = zfs_allow(lab, "server", "an2/data/kid");
    let check = a.adhoc("server", "zferry.zfs.zfs_allow", &args, &["--check"]);
    check.ok();
    assert!(check.changed());
    assert_eq!(
        check.result["commands"],
        json!([
            format!("zfs unallow -u {USER} hold,send an2/data"),
            format!("zfs unallow -u {USER} send an2/data/kid")
        ]),
        "{check:#?}"
    );
    assert_eq!(zfs_allow(lab, "server", "an2/data/kid"), kid_before);
    assert!(a
        .adhoc("server", "zferry.zfs.zfs_allow", &args, &[])
        .ok()
        .changed());
    for ds in ["an2", "an2/data", "an2/data/kid"] {
        assert!(!zfs_allow(lab, "server", ds).contains(USER), "{ds}");
    }
    assert!(!a
        .adhoc("server", "zferry.zfs.zfs_allow", &args, &[])
        .ok()
        .changed());
}

#[test]
fn zfs_pull_and_zfs_push_check_then_real_then_unchanged() {
    let (lab, a) = (lab(), ansible());
    let (c, s, o) = ("an3c", "an3s", "an3o");
    lab.pool("client", c);
    lab.pool("server", s);
    lab.pool("offsite", o);
    lab.encrypted("client", &format!("{c}/data"));
    lab.write_and_snap("client", &format!("{c}/data"), "s1", 2);
    lab.write_and_snap("client", &format!("{c}/data"), "s2", 1);
    lab.ok("server", &format!("zfs create {s}/backup"));
    lab.ok("offsite", &format!("zfs create {o}/offsite"));
    // The delegations, with the collection's own module.
    a.play(
        "client",
        allow_task(json!({"name": c, "users": [USER], "permissions": ["send", "hold", "release"]})),
        &[],
    )
    .ok();
    a.play(
        "offsite",
        allow_task(json!({"name": format!("{o}/offsite"), "users": [USER],
                          "permissions": ["create", "mount", "canmount", "receive", "hold", "release"]})),
        &[],
    )
    .ok();

    // The module runs on the server as root and reaches the client as the lab user.
    let remote = |vm: &str| {
        json!({"host": "10.0.2.2", "port": lab.port(vm), "user": USER,
               "identity_file": format!("/home/{USER}/.ssh/id_ed25519")})
    };
    let mut pull_args = remote("client");
    pull_args.as_object_mut().unwrap().extend(
        json!({"datasets": [format!("{c}/data")], "destination": format!("{s}/backup"),
               "name": "client", "job_name": "an3pull"})
        .as_object()
        .unwrap()
        .clone(),
    );
    let pull = json!({"name": "pull", "zferry.zfs.zfs_pull": pull_args});
    let src = format!("{c}/data");
    let copy = format!("{s}/backup/client/{c}/data");

    let plan = a.play("server", pull.clone(), &["--check"]);
    plan.ok();
    assert!(plan.changed(), "{plan:#?}");
    let d = plan.dataset(&src);
    assert_eq!(d["action"], "full", "{plan:#?}");
    assert_eq!(d["snapshots"], json!(["s1", "s2"]));
    assert!(
        d["bytes"].as_u64().unwrap() > 2_000_000,
        "estimated bytes: {d}"
    );
    assert_eq!(plan.result["check_mode"], true);
    assert!(
        lab.sh("server", &format!("zfs list {s}/backup/client"))
            .code
            != Some(0),
        "check mode received nothing"
    );

    let real = a.play("server", pull.clone(), &[]);
    real.ok();
    assert!(real.changed());
    assert_eq!(real.dataset(&src)["action"], "full");
    assert_eq!(lab.guids("server", &copy), lab.guids("client", &src));
    assert_eq!(
        lab.prop("server", &copy, "keystatus"),
        "unavailable",
        "raw for an encrypted source"
    );

    let again = a.play("server", pull.clone(), &[]);
    again.ok();
    assert!(!again.changed(), "{again:#?}");
    assert_eq!(again.dataset(&src)["action"], "up_to_date");

    lab.write_and_snap("client", &src, "s3", 1);
    let plan = a.play("server", pull.clone(), &["--check", "--diff"]);
    plan.ok();
    assert!(plan.changed());
    // --diff shows the snapshot that would arrive.
    assert!(
        plan.stdout.contains(&format!("+{copy}@s3")),
        "{}",
        plan.stdout
    );
    assert_eq!(plan.dataset(&src)["action"], "incremental");
    assert_eq!(plan.dataset(&src)["snapshots"], json!(["s3"]));
    assert_eq!(
        lab.guids("server", &copy).len(),
        2,
        "check mode received nothing"
    );
    assert!(a.play("server", pull.clone(), &[]).ok().changed());
    assert_eq!(lab.guids("server", &copy), lab.guids("client", &src));
    assert!(!a.play("server", pull.clone(), &[]).ok().changed());

    // A dataset that cannot be replicated fails the task, named in the message.
    let mut bad = pull.clone();
    bad["zferry.zfs.zfs_pull"]["datasets"] = json!([format!("{c}/gone"), src.clone()]);
    let failed = a.play("server", bad, &[]);
    failed.failed_with(&format!("{c}/gone"));
    assert_eq!(
        failed.dataset(&src)["action"],
        "up_to_date",
        "the other dataset still ran: {failed:#?}"
    );

    // Push the copy offsite, raw.
    let mut push_args = remote("offsite");
    push_args.as_object_mut().unwrap().extend(
        json!({"datasets": [format!("{s}/backup/client")], "destination": format!("{o}/offsite"),
               "strip_prefix": format!("{s}/backup"), "job_name": "an3push"})
        .as_object()
        .unwrap()
        .clone(),
    );
    let push = json!({"name": "push", "zferry.zfs.zfs_push": push_args});
    let off = format!("{o}/offsite/client/{c}/data");
    let plan = a.play("server", push.clone(), &["--check"]);
    plan.ok();
    assert!(plan.changed(), "{plan:#?}");
    assert_eq!(plan.dataset(&copy)["action"], "full");
    assert!(
        lab.sh("offsite", &format!("zfs list {o}/offsite/client"))
            .code
            != Some(0),
        "check mode sent nothing"
    );
    let real = a.play("server", push.clone(), &[]);
    real.ok();
    assert!(real.changed());
    assert_eq!(lab.guids("offsite", &off), lab.guids("client", &src));
    assert_eq!(lab.prop("offsite", &off, "keystatus"), "unavailable");
    let again = a.play("server", push, &[]);
    again.ok();
    assert!(!again.changed(), "{again:#?}");
    assert_eq!(again.dataset(&copy)["action"], "up_to_date");
}

#[test]
fn short_names_work_after_install_sh_in_plays_and_ad_hoc() {
    let (lab, a) = (lab(), ansible());
    let (s, o) = ("an4s", "an4o");
    lab.pool("server", s);
    lab.pool("offsite", o);
    let src = format!("{s}/data");
    lab.encrypted("server", &src);
    lab.write_and_snap("server", &src, "s1", 1);
    lab.ok("offsite", &format!("zfs create {o}/offsite"));
    let push_args = json!({"host": "10.0.2.2", "port": lab.port("offsite"), "user": USER,
        "identity_file": format!("/home/{USER}/.ssh/id_ed25519"),
        "datasets": [&src], "destination": format!("{o}/offsite"),
        "strip_prefix": s, "job_name": "an4push"})
    .to_string();

    // Before install.sh, a new user's `ansible -m zfs_push` does not resolve: the shims are
    // what makes the difference below, not something else on this machine.
    let before = a.adhoc_finding(
        Finds::Defaults,
        "server",
        "zfs_push",
        &push_args,
        &["--check"],
    );
    assert_ne!(before.code, Some(0), "{before:#?}");
    assert!(
        format!("{}{}", before.stdout, before.stderr)
            .contains("Cannot resolve 'zfs_push' to an action or module"),
        "{before:#?}"
    );
    let home = a.dir.join("home");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    must(
        Command::new(root.join("ansible/install.sh"))
            .arg("--short-names-only")
            .env("ANSIBLE_HOME", &home),
        "ansible/install.sh --short-names-only",
    );

    // A play without `collections:` grants the delegation by the short name.
    let allow = json!({"name": "allow", "zfs_allow": {"name": format!("{o}/offsite"), "users": [USER],
        "permissions": ["create", "mount", "canmount", "receive", "hold", "release"]}});
    let granted = a.play_finding(Finds::Defaults, "offsite", allow.clone(), &[], false);
    granted.ok();
    assert!(granted.changed(), "{granted:#?}");
    assert!(
        zfs_allow(lab, "offsite", &format!("{o}/offsite")).contains(&format!(
            "\tuser {USER} canmount,create,hold,mount,receive,release\n"
        ))
    );
    assert!(!a
        .play_finding(Finds::Defaults, "offsite", allow, &[], false)
        .ok()
        .changed());
    lab.allow("server", "send,hold,release", s);

    // Ad hoc: check mode sends nothing, the real run sends raw, a rerun changes nothing.
    let off = format!("{o}/offsite/data");
    let plan = a.adhoc_finding(
        Finds::Defaults,
        "server",
        "zfs_push",
        &push_args,
        &["--check"],
    );
    plan.ok();
    assert!(plan.changed(), "{plan:#?}");
    assert_eq!(plan.dataset(&src)["action"], "full", "{plan:#?}");
    assert!(
        lab.sh("offsite", &format!("zfs list {off}")).code != Some(0),
        "check mode sent nothing"
    );
    let real = a.adhoc_finding(Finds::Defaults, "server", "zfs_push", &push_args, &[]);
    real.ok();
    assert!(
        real.changed() && real.stdout.contains("server | CHANGED"),
        "{real:#?}"
    );
    assert_eq!(lab.guids("offsite", &off), lab.guids("server", &src));
    assert_eq!(lab.prop("offsite", &off, "keystatus"), "unavailable");
    let again = a.adhoc_finding(Finds::Defaults, "server", "zfs_push", &push_args, &[]);
    again.ok();
    assert!(
        !again.changed() && again.stdout.contains("server | SUCCESS"),
        "{again:#?}"
    );
    assert_eq!(again.dataset(&src)["action"], "up_to_date");
}
