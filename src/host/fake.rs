//! A host for unit tests: a tiny in-memory model of datasets, snapshots, holds and
//! resume tokens that answers the zfs commands zferry issues in their real output
//! formats, and records every command in order.
//!
//! The replicator cannot be tested against real hosts outside the lab; with this, its
//! decisions (resume limits, skipped children, GUID checks, hold order, failure
//! isolation) read as scenarios: build two models, run a job, look at the reports, the
//! models and the commands. Streams are real byte streams (in-memory pipes) carrying a
//! small text description of the snapshots they bring, so `stream::transfer` runs as is.

use super::shell_pipeline;
use crate::zfs::begin;
use crate::zfs::list::{LIST_PROPS, SNAPSHOTS_CHANGED};
use crate::zfs::token;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// GUIDs are unique across every fake, as they are across real pools: a snapshot only
/// shares a GUID with its own copies.
static NEXT_GUID: AtomicU64 = AtomicU64::new(1_000_001);

fn new_guid() -> u64 {
    NEXT_GUID.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Clone)]
struct Snap {
    name: String,
    guid: u64,
    txg: u64,
    holds: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
struct Ds {
    guid: u64,
    txg: u64,
    snaps: Vec<Snap>,
    token: Option<String>,
    /// `canmount` set locally (`None`: the default, `on`).
    canmount: Option<String>,
}

/// What a scripted failure does to receives into one target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    /// Exit 1 with this stderr, changing nothing.
    Fail(String),
    /// Exit 0 but keep (or leave) a resume token, as if the stream stopped short.
    StaysPartial,
    /// Exit 0 but store the snapshots under other GUIDs than the stream's.
    WrongGuid,
}

#[derive(Default)]
struct Model {
    datasets: BTreeMap<String, Ds>,
    txg: u64,
    faults: BTreeMap<String, Fault>,
    refused_holds: BTreeSet<String>,
    /// Targets whose receives take this long on tokio's clock.
    lasting: BTreeMap<String, std::time::Duration>,
    /// Commands (by the start of their words) that take a while, on tokio's clock.
    slow: Vec<(String, std::time::Duration)>,
}

/// One fake host: its model and the log of what it was asked.
#[derive(Default)]
pub struct Fake {
    model: Mutex<Model>,
    log: Mutex<Vec<Vec<String>>>,
    /// Receives running now, and the most that ever ran at once.
    receiving: AtomicUsize,
    most_receiving: AtomicUsize,
    /// What `zfs send -nP` says a stream is (bytes; 0: 4096).
    send_size: AtomicU64,
    /// `zstd` is not installed here.
    no_zstd: AtomicBool,
    /// Bytes this host wrote through `zstd -c` (what crossed the wire compressed).
    zstd_out: AtomicU64,
    /// Sends carry properties, as a hostile source's `zfs send -p` would.
    props_in_streams: AtomicBool,
    /// Refuses what an older zferry's guard does not know (the GUID read with the mark,
    /// the listing by name).
    old_guard: AtomicBool,
}

/// A finished fake command.
pub(crate) type Exit = (Option<i32>, String);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked mid-command poisons the lock; the model is still readable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a shell says when the fake has no zstd.
const NO_ZSTD: &str = "sh: 1: zstd: not found";

fn fail(msg: impl Into<String>) -> Exit {
    (Some(1), msg.into())
}

impl Fake {
    /// A host with these datasets (parents are not implied) and their snapshots, oldest
    /// first.
    pub fn new(datasets: &[(&str, &[&str])]) -> Fake {
        let f = Fake::default();
        for (ds, snaps) in datasets {
            f.create(ds);
            for s in *snaps {
                f.snapshot(ds, s);
            }
        }
        f
    }

    /// Creates dataset `ds` (no snapshots).
    pub fn create(&self, ds: &str) {
        let mut m = lock(&self.model);
        m.txg += 1;
        let d = Ds {
            guid: new_guid(),
            txg: m.txg,
            ..Ds::default()
        };
        m.datasets.insert(ds.to_string(), d);
    }

    /// Takes snapshot `ds@name`.
    pub fn snapshot(&self, ds: &str, name: &str) {
        let mut m = lock(&self.model);
        m.txg += 1;
        let txg = m.txg;
        let d = m
            .datasets
            .get_mut(ds)
            .expect("snapshot of a dataset the test created");
        d.snaps.push(Snap {
            name: name.to_string(),
            guid: new_guid(),
            txg,
            holds: BTreeSet::new(),
        });
    }

    /// Sets `ds`'s resume token, as an interrupted receive leaves it.
    pub fn set_token(&self, ds: &str, token: &str) {
        let mut m = lock(&self.model);
        let d = m
            .datasets
            .get_mut(ds)
            .expect("token on a dataset the test created");
        d.token = Some(token.to_string());
    }

    /// Sets `ds`'s own `canmount` (`None`: back to the default).
    pub fn set_canmount(&self, ds: &str, value: Option<&str>) {
        let mut m = lock(&self.model);
        let d = m
            .datasets
            .get_mut(ds)
            .expect("canmount of a dataset the test created");
        d.canmount = value.map(str::to_string);
    }

    /// `ds`'s own `canmount`, if set.
    pub fn canmount(&self, ds: &str) -> Option<String> {
        lock(&self.model).datasets.get(ds)?.canmount.clone()
    }

    /// Every receive into `target` fails with `stderr`.
    pub fn fail_receive(&self, target: &str, stderr: &str) {
        lock(&self.model)
            .faults
            .insert(target.to_string(), Fault::Fail(stderr.to_string()));
    }

    /// Every receive into `target` exits 0 but leaves a resume token.
    pub fn receive_stays_partial(&self, target: &str) {
        lock(&self.model)
            .faults
            .insert(target.to_string(), Fault::StaysPartial);
    }

    /// Every receive into `target` stores other GUIDs than the stream's.
    pub fn receive_wrong_guid(&self, target: &str) {
        lock(&self.model)
            .faults
            .insert(target.to_string(), Fault::WrongGuid);
    }

    /// Every receive into `target` takes `d` on tokio's clock (a paused clock runs ahead).
    pub fn receive_lasts(&self, target: &str, d: std::time::Duration) {
        lock(&self.model).lasting.insert(target.to_string(), d);
    }

    /// Every command starting with `words` takes `d` on tokio's clock, as a ZFS sync
    /// task (a hold, a release) does on a real pool.
    pub fn command_lasts(&self, words: &str, d: std::time::Duration) {
        lock(&self.model).slow.push((words.to_string(), d));
    }

    /// Holds and releases of snapshot `snap` are refused (`permission denied`).
    pub fn refuse_holds(&self, snap: &str) {
        lock(&self.model).refused_holds.insert(snap.to_string());
    }

    /// Makes this host's sends carry properties (a compound header with a payload), as a
    /// hostile source answering `zfs send` with `zfs send -p` would.
    pub fn send_properties(&self) {
        self.props_in_streams.store(true, Ordering::SeqCst);
    }

    /// Makes `zfs send -nP` estimate every stream at `bytes`.
    pub fn set_send_size(&self, bytes: u64) {
        self.send_size.store(bytes, Ordering::SeqCst);
    }

    /// Takes `zstd` away from this host (`zstd -V` fails as a shell says so).
    pub fn remove_zstd(&self) {
        self.no_zstd.store(true, Ordering::SeqCst);
    }

    /// Makes this host refuse, as an older zferry's guard would, the GUID read with the
    /// mark, the listing by name, the question of `canmount` and the receive that
    /// leaves it.
    pub fn behind_old_guard(&self) {
        self.old_guard.store(true, Ordering::SeqCst);
    }

    /// Bytes written through `zstd -c` so far.
    pub fn zstd_out(&self) -> u64 {
        self.zstd_out.load(Ordering::SeqCst)
    }

    /// The most receives that ran at once.
    pub fn most_receiving(&self) -> usize {
        self.most_receiving.load(Ordering::SeqCst)
    }

    /// `(name, guid)` of `ds`'s snapshots, oldest first; empty if it does not exist.
    pub fn snapshots(&self, ds: &str) -> Vec<(String, u64)> {
        lock(&self.model)
            .datasets
            .get(ds)
            .map(|d| d.snaps.iter().map(|s| (s.name.clone(), s.guid)).collect())
            .unwrap_or_default()
    }

    /// The GUID of `ds@snap`.
    pub fn guid(&self, ds: &str, snap: &str) -> u64 {
        self.snapshots(ds)
            .into_iter()
            .find(|(n, _)| n == snap)
            .map(|(_, g)| g)
            .expect("a snapshot the test knows")
    }

    /// The snapshots of `ds` that carry hold `tag`.
    pub fn held(&self, ds: &str, tag: &str) -> Vec<String> {
        lock(&self.model)
            .datasets
            .get(ds)
            .map(|d| {
                d.snaps
                    .iter()
                    .filter(|s| s.holds.contains(tag))
                    .map(|s| s.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when `ds` exists.
    pub fn exists(&self, ds: &str) -> bool {
        lock(&self.model).datasets.contains_key(ds)
    }

    /// Every command run so far, quoted as it would be pasted, in order.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.log)
            .iter()
            .map(|a| shell_pipeline(&a.split(|w| w == "|").collect::<Vec<_>>()))
            .collect()
    }

    /// Forgets the commands run so far (the model stays).
    pub fn clear_log(&self) {
        lock(&self.log).clear();
    }

    /// Runs `argv` with `stdin`/`stdout` as its pipes; returns its exit and stderr.
    pub(crate) async fn exec(
        &self,
        argv: Vec<String>,
        stdin: Option<DuplexStream>,
        stdout: Option<DuplexStream>,
    ) -> Exit {
        lock(&self.log).push(argv.clone());
        // A pipeline: the one zferry builds pipes a send through `zstd -c -LEVEL`.
        let mut stages = argv.split(|w| w == "|");
        let first = stages.next().expect("split yields one");
        let level = match (stages.next(), stages.next()) {
            (None, _) => None,
            (Some([z, c, l]), None) if z == "zstd" && c == "-c" => {
                match l.strip_prefix('-').and_then(|l| l.parse::<i32>().ok()) {
                    Some(l) if !self.no_zstd.load(Ordering::SeqCst) => Some(l),
                    _ => return (Some(127), NO_ZSTD.into()),
                }
            }
            _ => return fail(format!("fake: unknown pipeline {}", argv.join(" "))),
        };
        let a: Vec<&str> = first.iter().map(String::as_str).collect();
        let new_shape = matches!(
            a.as_slice(),
            ["zfs", "list", "-Hp", "-t", "filesystem,volume,snapshot", ..]
                | ["zfs", "get", "-Hp", "-s", "local", ..]
                | ["zfs", "receive", "-u", "-s", _]
        );
        if new_shape && self.old_guard.load(Ordering::SeqCst) {
            return (
                Some(1),
                "zferry serve: rejected: not a command zferry sends".into(),
            );
        }
        let joined = a.join(" ");
        let slow = lock(&self.model)
            .slow
            .iter()
            .find(|(w, _)| joined.starts_with(w.as_str()))
            .map(|(_, d)| *d);
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        if a.starts_with(&["zfs", "create"]) {
            // A create over ssh takes a while: other datasets' streams may start meanwhile.
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
        let (out, exit) = match a.as_slice() {
            ["zstd", "-V"] if self.no_zstd.load(Ordering::SeqCst) => {
                (String::new(), (Some(127), NO_ZSTD.into()))
            }
            ["zstd", "-V"] => (
                "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***\n".into(),
                (Some(0), String::new()),
            ),
            ["zfs", "list", rest @ ..] => self.list(rest),
            ["zfs", "get", "-Hp", "-o", "value", "guid", snap] => self.get_guid(snap),
            ["zfs", "holds", "-H", snaps @ ..] => self.holds(snaps),
            ["zfs", "hold", tag, snaps @ ..] => self.hold(tag, snaps, true),
            ["zfs", "release", tag, snaps @ ..] => self.hold(tag, snaps, false),
            ["zfs", "create", "-u", "-o", "canmount=off", ds] => self.create_parent(ds),
            ["zfs", "send", "-nP", ..] => {
                let size = match self.send_size.load(Ordering::SeqCst) {
                    0 => 4096,
                    n => n,
                };
                (format!("size\t{size}\n"), (Some(0), String::new()))
            }
            ["zfs", "send", rest @ ..] => self.send(rest),
            ["zfs", "get", "-Hp", "-s", "local", "-o", "name,value", "canmount", names @ ..] => {
                self.local_canmount(names)
            }
            ["zfs", "receive", "-u", "-s", opts @ .., target]
                if matches!(opts, [] | ["-o", "canmount=noauto"]) =>
            {
                // Like zfs, a new filesystem's parent is opened before the stream is read.
                if let Some(missing) = self.parent_missing(target) {
                    return fail(missing);
                }
                let now = self.receiving.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_receiving.fetch_max(now, Ordering::SeqCst);
                let mut stream = Vec::new();
                let read = match stdin {
                    Some(mut i) => i.read_to_end(&mut stream).await.map(|_| ()),
                    None => Ok(()),
                };
                // A receive takes a while: other datasets' streams may start meanwhile.
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                }
                let lasting = lock(&self.model).lasting.get(*target).copied();
                if let Some(d) = lasting {
                    tokio::time::sleep(d).await;
                }
                self.receiving.fetch_sub(1, Ordering::SeqCst);
                if let Err(e) = read {
                    return fail(format!("reading the stream: {e}"));
                }
                let (props, text) = unwrap_stream(&stream);
                let exit = self.receive(target, &text);
                if exit.0 == Some(0) {
                    // As zfs does: the stream's canmount (on) outranks a local value, and
                    // -o is set after it.
                    if props {
                        self.set_canmount(target, None);
                    }
                    if !opts.is_empty() {
                        self.set_canmount(target, Some("noauto"));
                    }
                }
                (String::new(), exit)
            }
            _ => (
                String::new(),
                fail(format!("fake: unknown command {}", argv.join(" "))),
            ),
        };
        let mut out = out.into_bytes();
        if a.starts_with(&["zfs", "send"]) && !a.contains(&"-nP") && exit.0 == Some(0) {
            let head = if self.props_in_streams.load(Ordering::SeqCst) {
                begin::build::with_properties()
            } else {
                begin::build::substream(0, "fake")
            };
            out.splice(0..0, head);
        }
        let out = match level {
            None => out,
            Some(l) => {
                let mut z = Vec::new();
                let level = async_compression::Level::Precise(l);
                async_compression::tokio::bufread::ZstdEncoder::with_quality(out.as_slice(), level)
                    .read_to_end(&mut z)
                    .await
                    .expect("compressing in memory");
                self.zstd_out.fetch_add(z.len() as u64, Ordering::SeqCst);
                z
            }
        };
        if let Some(mut o) = stdout {
            // A reader that went away is the real pipe's SIGPIPE: the exit says it all.
            let _ = o.write_all(&out).await;
            let _ = o.shutdown().await;
        }
        exit
    }

    /// `zfs list` in the forms zferry builds (`list_argv_at`): every type or only
    /// filesystems (with `snapshots_changed`) or only snapshots, `-r`, `-d 0` or `-d 1`.
    fn list(&self, args: &[&str]) -> (String, Exit) {
        let mut roots = Vec::new();
        let (mut recursive, mut depth, mut types, mut changed) = (false, None, "", false);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "-s" => {
                    it.next();
                }
                "-t" => types = it.next().copied().unwrap_or_default(),
                "-d" => depth = it.next().and_then(|d| d.parse::<u32>().ok()),
                "-o" => {
                    let cols = it.next().copied().unwrap_or_default();
                    let plain = LIST_PROPS.join(",");
                    if cols == format!("{plain},{SNAPSHOTS_CHANGED}") {
                        changed = true;
                    } else if cols != plain {
                        return (String::new(), fail("fake: zfs list with other columns"));
                    }
                }
                "-r" => recursive = true,
                "-Hp" => {}
                r => roots.push(r),
            }
        }
        let (fs, snaps) = (types.contains("filesystem"), types.contains("snapshot"));
        let m = lock(&self.model);
        let mut out = String::new();
        let mut err = String::new();
        for root in roots {
            if let Some((ds, snap)) = root.split_once('@').filter(|_| snaps) {
                match m
                    .datasets
                    .get(ds)
                    .and_then(|d| d.snaps.iter().find(|s| s.name == snap))
                {
                    Some(s) => out.push_str(&snapshot_row(root, s, changed)),
                    None => {
                        err.push_str(&format!("cannot open '{root}': dataset does not exist\n"))
                    }
                }
                continue;
            }
            if !m.datasets.contains_key(root) {
                err.push_str(&format!("cannot open '{root}': dataset does not exist\n"));
                continue;
            }
            let under = format!("{root}/");
            for (name, d) in m.datasets.iter() {
                if name != root && !(recursive && name.starts_with(&under)) {
                    continue;
                }
                if fs && depth != Some(1) {
                    out.push_str(&format!(
                        "{name}\tfilesystem\t{}\t{}\toff\t-\t0\t{}\t-\t1700000000",
                        d.guid,
                        d.txg,
                        d.token.as_deref().unwrap_or("-")
                    ));
                    if changed {
                        let stamp = snapshots_changed(d);
                        out.push_str(&format!("\t{}", stamp.as_deref().unwrap_or("-")));
                    }
                    out.push('\n');
                }
                // As zfs: a dataset named without -r or -d is listed without its snapshots.
                if !snaps || !(recursive || depth.is_some_and(|d| d >= 1)) {
                    continue;
                }
                for s in &d.snaps {
                    out.push_str(&snapshot_row(&format!("{name}@{}", s.name), s, false));
                }
            }
        }
        let code = if err.is_empty() { 0 } else { 1 };
        (out, (Some(code), err))
    }

    fn get_guid(&self, snap: &str) -> (String, Exit) {
        match self.find(snap) {
            Some((_, s)) => (format!("{}\n", s.guid), (Some(0), String::new())),
            None => (
                String::new(),
                fail(format!("cannot open '{snap}': dataset does not exist")),
            ),
        }
    }

    fn find(&self, snap: &str) -> Option<(String, Snap)> {
        let (ds, name) = snap.split_once('@')?;
        let m = lock(&self.model);
        let s = m.datasets.get(ds)?.snaps.iter().find(|s| s.name == name)?;
        Some((ds.to_string(), s.clone()))
    }

    fn holds(&self, snaps: &[&str]) -> (String, Exit) {
        let mut out = String::new();
        for snap in snaps {
            match self.find(snap) {
                Some((_, s)) => {
                    for t in &s.holds {
                        out.push_str(&format!("{snap}\t{t}\tThu Nov 26 08:00 2026\n"));
                    }
                }
                None => {
                    return (
                        String::new(),
                        fail(format!("cannot open '{snap}': dataset does not exist")),
                    )
                }
            }
        }
        (out, (Some(0), String::new()))
    }

    /// `zfs hold`/`zfs release`: one snapshot after the other, going on past one that
    /// fails and exiting 1 if any did, as zfs does.
    fn hold(&self, tag: &str, snaps: &[&str], place: bool) -> (String, Exit) {
        let mut m = lock(&self.model);
        let mut err = String::new();
        for snap in snaps {
            let verb = if place { "hold" } else { "release" };
            if m.refused_holds.contains(*snap) {
                err.push_str(&format!(
                    "cannot {verb} snapshot '{snap}': permission denied\n"
                ));
                continue;
            }
            let found = snap.split_once('@').and_then(|(ds, name)| {
                m.datasets
                    .get_mut(ds)?
                    .snaps
                    .iter_mut()
                    .find(|s| s.name == name)
            });
            let Some(s) = found else {
                err.push_str(&format!("cannot open '{snap}': dataset does not exist\n"));
                continue;
            };
            let done = if place {
                s.holds.insert(tag.to_string())
            } else {
                s.holds.remove(tag)
            };
            if !done {
                let why = if place {
                    "tag already exists on this dataset"
                } else {
                    "no such tag on this dataset"
                };
                err.push_str(&format!("cannot {verb} snapshot '{snap}': {why}\n"));
            }
        }
        let code = if err.is_empty() { 0 } else { 1 };
        (String::new(), (Some(code), err))
    }

    /// zfs's error when `target` is new and its parent does not exist.
    fn parent_missing(&self, target: &str) -> Option<String> {
        let parent = parent_of(target);
        (!self.exists(target) && !self.exists(parent)).then(|| {
            format!("cannot open '{parent}': dataset does not exist\ncannot receive new filesystem stream: unable to restore to destination")
        })
    }

    fn create_parent(&self, ds: &str) -> (String, Exit) {
        let parent = parent_of(ds);
        if self.exists(ds) {
            return (
                String::new(),
                fail(format!("cannot create '{ds}': dataset already exists")),
            );
        }
        if !self.exists(parent) {
            return (
                String::new(),
                fail(format!("cannot create '{ds}': parent does not exist")),
            );
        }
        self.create(ds);
        self.set_canmount(ds, Some("off"));
        (String::new(), (Some(0), String::new()))
    }

    /// `zfs get -s local canmount`: a line for each name with its own value; a name that
    /// does not exist is an error, the others are still answered.
    fn local_canmount(&self, names: &[&str]) -> (String, Exit) {
        let m = lock(&self.model);
        let (mut out, mut err) = (String::new(), String::new());
        for n in names {
            match m.datasets.get(*n) {
                Some(d) => {
                    if let Some(v) = &d.canmount {
                        out.push_str(&format!("{n}\t{v}\n"));
                    }
                }
                None => err.push_str(&format!("cannot open '{n}': dataset does not exist\n")),
            }
        }
        let code = if err.is_empty() { 0 } else { 1 };
        (out, (Some(code), err))
    }

    /// The stream: a header naming the source snapshot it ends at and the base GUID,
    /// then one line per snapshot it brings (`name guid`).
    fn send(&self, args: &[&str]) -> (String, Exit) {
        let args: Vec<&str> = args.iter().copied().filter(|a| *a != "-w").collect();
        let (from, to, all, resumed) = match args.as_slice() {
            ["-t", t] => match token::parse(t) {
                Ok(t) => {
                    let from = t
                        .fromguid
                        .and_then(|g| self.by_guid(t.toname.dataset().as_str(), g));
                    let to = t.toname.to_string();
                    (from, to, false, true)
                }
                Err(e) => return (String::new(), fail(format!("bad token: {e}"))),
            },
            [to] => (None, to.to_string(), false, false),
            ["-i", from, to] => (Some(from.to_string()), to.to_string(), false, false),
            ["-I", from, to] => (Some(from.to_string()), to.to_string(), true, false),
            _ => return (String::new(), fail("fake: unknown send form")),
        };
        let Some((ds, to_snap)) = self.find(&to) else {
            return (String::new(), fail(format!("cannot open '{to}'")));
        };
        let from_snap = match &from {
            Some(f) => match self.find(f) {
                Some((_, s)) => Some(s),
                None => return (String::new(), fail(format!("cannot open '{f}'"))),
            },
            None => None,
        };
        let m = lock(&self.model);
        let snaps = &m.datasets[&ds].snaps;
        let brought: Vec<&Snap> = snaps
            .iter()
            .filter(|s| match &from_snap {
                Some(f) if all => s.txg > f.txg && s.txg <= to_snap.txg,
                _ => s.txg == to_snap.txg,
            })
            .collect();
        let mut out = format!(
            "FAKESTREAM {to} from={} resumed={resumed}\n",
            from_snap.map(|f| f.guid.to_string()).unwrap_or("-".into())
        );
        for s in brought {
            out.push_str(&format!("{} {}\n", s.name, s.guid));
        }
        (out, (Some(0), String::new()))
    }

    fn by_guid(&self, ds: &str, guid: u64) -> Option<String> {
        let m = lock(&self.model);
        let s = m.datasets.get(ds)?.snaps.iter().find(|s| s.guid == guid)?;
        Some(format!("{ds}@{}", s.name))
    }

    fn receive(&self, target: &str, stream: &str) -> Exit {
        let mut lines = stream.lines();
        let Some(header) = lines.next().and_then(|h| h.strip_prefix("FAKESTREAM ")) else {
            return fail("cannot receive: invalid stream (bad magic number)");
        };
        let mut h = header.split(' ');
        let toname = h.next().unwrap_or_default().to_string();
        let from: Option<u64> = h
            .next()
            .and_then(|f| f.strip_prefix("from="))
            .and_then(|f| f.parse().ok());
        let brought: Vec<(String, u64)> = lines
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(n, g)| Some((n.to_string(), g.parse().ok()?)))
            .collect();
        let mut m = lock(&self.model);
        let fault = m.faults.get(target).cloned();
        if let Some(Fault::Fail(e)) = &fault {
            return fail(e.clone());
        }
        // A missing parent was refused before the stream was read (`parent_missing`).
        match (m.datasets.get(target), from) {
            (None, Some(_)) => {
                return fail(format!(
                    "cannot receive incremental stream: destination '{target}' does not exist"
                ))
            }
            (Some(d), None) if !d.snaps.is_empty() => {
                return fail(format!(
                    "cannot receive new filesystem stream: destination '{target}' exists"
                ))
            }
            (Some(d), Some(f)) if d.snaps.last().map(|s| s.guid) != Some(f) => {
                return fail(format!(
                    "cannot receive incremental stream: most recent snapshot of '{target}' does not match incremental source"
                ))
            }
            _ => {}
        }
        if fault == Some(Fault::StaysPartial) {
            let toguid = brought.last().map(|(_, g)| *g).unwrap_or(0);
            let t = token::build::token(&toname, toguid, from, false);
            m.txg += 1;
            let txg = m.txg;
            let d = m.datasets.entry(target.to_string()).or_insert_with(|| Ds {
                guid: new_guid(),
                txg,
                ..Ds::default()
            });
            d.token = Some(t);
            return (Some(0), String::new());
        }
        for (name, guid) in brought {
            m.txg += 1;
            let txg = m.txg;
            let guid = if fault == Some(Fault::WrongGuid) {
                new_guid()
            } else {
                guid
            };
            let d = m.datasets.entry(target.to_string()).or_insert_with(|| Ds {
                guid: new_guid(),
                txg,
                ..Ds::default()
            });
            d.token = None;
            d.snaps.push(Snap {
                name,
                guid,
                txg,
                holds: BTreeSet::new(),
            });
        }
        (Some(0), String::new())
    }
}

/// A fake stream's head and text: whether the head carries properties (one
/// [`begin::inspect`] refuses), and the text from `FAKESTREAM` on.
fn unwrap_stream(stream: &[u8]) -> (bool, String) {
    let props = begin::inspect(stream).is_err();
    let at = stream
        .windows(b"FAKESTREAM ".len())
        .position(|w| w == b"FAKESTREAM ")
        .unwrap_or(0);
    (props, String::from_utf8_lossy(&stream[at..]).into_owned())
}

/// The fake's `snapshots_changed`: it moves whenever a snapshot comes or goes, as the
/// real one does (a small number: always settled for the cache).
fn snapshots_changed(d: &Ds) -> Option<String> {
    d.snaps
        .iter()
        .map(|s| s.txg)
        .max()
        .map(|t| (1_000_000 + t * 1000 + d.snaps.len() as u64).to_string())
}

/// One snapshot's row of a listing, as `zfs list -Hp -o <LIST_PROPS>` prints it (with
/// `-` for `snapshots_changed` when that column is asked too).
fn snapshot_row(full_name: &str, s: &Snap, changed: bool) -> String {
    format!(
        "{full_name}\tsnapshot\t{}\t{}\t-\t-\t-\t-\t{}\t1700000000{}\n",
        s.guid,
        s.txg,
        s.holds.len(),
        if changed { "\t-" } else { "" }
    )
}

/// The dataset above `ds` (empty for a pool).
fn parent_of(ds: &str) -> &str {
    ds.rsplit_once('/').map_or("", |(p, _)| p)
}
