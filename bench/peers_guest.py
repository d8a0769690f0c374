#!/usr/bin/env python3
"""zferry against syncoid, bzfs and zfs-autobackup, run INSIDE one lab guest (stdlib only).

Copied into the guest by bench/peers.py with the packages it installs:

    python3 peers_guest.py install DIR       # offline install from DIR (debs, wheels, zferry)
    python3 peers_guest.py run CONFIG.json   # every phase; results.json beside CONFIG.json

Every tool pulls over SSH from root@localhost (the same guest): the source tree lives in
pool `srcpool` (/dev/vdb), each tool receives into its own dataset of pool `dstpool`
(/dev/vdc). One source, four destinations: snapshots added in later phases are added once
and every tool sees the same source. Timing is wall clock in the guest (time.monotonic),
of the tool's command alone; after each run `zpool sync` (untimed) so no tool pays for the
previous tool's dirty data, then the copy is checked (newest snapshot GUID per dataset
equal to the source's). A mismatch or a non-zero exit is a loud failure: recorded, printed,
and the run exits 1 at the end (it goes on, so hours of other measurements are not lost).
"""

import json
import os
import re
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
VENV = "/opt/bench-venv"
ARC_MAX = "/sys/module/zfs/parameters/zfs_arc_max"
ZFERRY_CONF = os.path.join(BENCH, "zferry.toml")
ZFERRY_STATE = os.path.join(BENCH, "zferry-state")
ZAB_SSH_CONFIG = os.path.join(BENCH, "zab-ssh.config")
LOGS = os.path.join(BENCH, "logs")
TOOLS = ["zferry", "syncoid", "bzfs", "zab"]
PEERS = ["syncoid", "bzfs", "zab"]
# Not a tool: the transfer floor, bare `zfs send | zfs receive` pipes (Bench.pipes).
PIPES = "pipes"
RUN_TIMEOUT = 4 * 3600

# ---------------------------------------------------------------------------------------
# helpers


def log(msg):
    print(time.strftime("[%H:%M:%S] ") + msg, flush=True)


def sh(cmd, check=True, capture=True, timeout=None):
    """Runs argv (list) or a shell string; returns stdout."""
    p = subprocess.run(
        cmd,
        shell=isinstance(cmd, str),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        text=True,
        timeout=timeout,
    )
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd!r} exited {p.returncode}: {p.stderr if capture else ''}")
    return p.stdout if capture else ""


def exists(ds):
    return subprocess.run(["zfs", "list", "-H", "-o", "name", ds], capture_output=True).returncode == 0


def chunks(xs, n=200):
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


def release_holds(root):
    """Releases every hold on snapshots under root (zferry and zfs-autobackup hold bases)."""
    if not exists(root):
        return
    out = sh(["zfs", "list", "-H", "-p", "-t", "snapshot", "-o", "name,userrefs", "-r", root])
    held = [ln.split("\t")[0] for ln in out.splitlines() if ln and ln.split("\t")[1] not in ("0", "-")]
    by_tag = {}
    for part in chunks(held):
        for ln in sh(["zfs", "holds", "-H"] + part).splitlines():
            name, tag = ln.split("\t")[:2]
            by_tag.setdefault(tag, []).append(name)
    for tag, snaps in by_tag.items():
        for part in chunks(snaps):
            sh(["zfs", "release", tag] + part)


def destroy(ds):
    if exists(ds):
        release_holds(ds)
        sh(["zfs", "destroy", "-r", ds])


def ensure(ds):
    if not exists(ds):
        sh(["zfs", "create", ds])


def newest(root):
    """{dataset: (guid, createtxg, snapname)} of the newest snapshot (by createtxg) per dataset."""
    p = subprocess.run(
        ["zfs", "list", "-H", "-p", "-t", "snapshot", "-o", "name,guid,createtxg", "-r", root],
        capture_output=True,
        text=True,
    )
    best = {}
    if p.returncode != 0:
        return best
    for ln in p.stdout.splitlines():
        name, guid, txg = ln.split("\t")
        ds, snap = name.split("@", 1)
        txg = int(txg)
        if ds not in best or txg > best[ds][1]:
            best[ds] = (guid, txg, snap)
    return best


def close_masters():
    """Ends ssh control masters a run left behind (zfs-autobackup's ControlPersist 3600, bzfs's
    ControlPersist), so every run of every tool starts with a cold ssh connection."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if comm == "ssh" and ppid == 1:
                os.kill(int(pid), 15)
        except (OSError, ValueError):
            pass


def write_file(path, kib):
    with open(path, "wb") as f:
        f.write(os.urandom(kib * 1024))


def mountpoint(ds):
    return "/" + ds  # pools are created with mountpoint=/POOL, children inherit


# ---------------------------------------------------------------------------------------
# install (offline, from the staged packages)


def install(stage):
    # The guest has no /etc/hosts: tools that ssh to "localhost" need it to resolve.
    hosts = open("/etc/hosts").read() if os.path.exists("/etc/hosts") else ""
    if not re.search(r"^127\.0\.0\.1\s.*\blocalhost\b", hosts, re.M):
        with open("/etc/hosts", "a") as f:
            f.write("127.0.0.1 localhost\n127.0.1.1 %s\n" % os.uname().nodename)
    # root -> root@localhost with its own key, host key pinned.
    os.makedirs("/root/.ssh", mode=0o700, exist_ok=True)
    if not os.path.exists("/root/.ssh/id_ed25519"):
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/.ssh/id_ed25519"])
    pub = open("/root/.ssh/id_ed25519.pub").read().strip()
    ak = "/root/.ssh/authorized_keys"
    if pub not in (open(ak).read() if os.path.exists(ak) else ""):
        with open(ak, "a") as f:
            f.write(pub + "\n")
    keys = sh("ssh-keyscan -t ed25519 localhost 2>/dev/null")
    if "ssh-ed25519" not in keys:
        raise RuntimeError("ssh-keyscan localhost found no host key")
    with open("/root/.ssh/known_hosts", "w") as f:
        f.write(keys)
    sh(["ssh", "-o", "BatchMode=yes", "root@localhost", "true"])
    # Debian packages: sanoid (syncoid) and its missing deps, GNU time.
    debs = sorted(os.path.join(stage, "deb", f) for f in os.listdir(os.path.join(stage, "deb")))
    sh(["dpkg", "-i"] + debs)
    # PyPI wheels into a venv (the guest's python3 has venv but no pip/ensurepip).
    wheels = os.path.join(stage, "pypi")
    pipwhl = [f for f in os.listdir(wheels) if f.startswith("pip-")][0]
    reqs = open(os.path.join(stage, "requirements.txt")).read().split()
    if not os.path.exists(VENV + "/bin/python"):
        sh(["python3", "-m", "venv", "--without-pip", VENV])
    sh(
        [VENV + "/bin/python", os.path.join(wheels, pipwhl) + "/pip", "install", "-q",
         "--no-index", "--find-links", wheels, "--disable-pip-version-check"] + reqs
    )
    sh(["install", "-m", "755", os.path.join(stage, "zferry"), "/usr/local/bin/zferry"])
    # The lab image caps the ARC at 256 MiB for the tests' small pools. The wide tree's
    # metadata (600 datasets, 6,000 snapshots) does not fit in that: arc_prune then spins
    # on both vCPUs and every tool crawls (measured: 4 receives of a few KiB taking ~2 min
    # each). Half the guest's memory is what a machine holding such a tree would give it.
    half = int(sh("awk '/MemTotal/ {print $2}' /proc/meminfo")) * 1024 // 2
    with open(ARC_MAX, "w") as f:
        f.write(str(half))
    log("installed: " + json.dumps(versions()))


def versions():
    def first(cmd):
        p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "?"

    return {
        "openzfs": " / ".join(sh("zfs version").split()),
        "zferry": first("zferry --version"),
        "syncoid": first("dpkg-query -W -f '${Package} ${Version}' sanoid") + " (" + first("syncoid --version") + ")",
        "bzfs": first(VENV + "/bin/bzfs --version"),
        "zfs-autobackup": first(VENV + "/bin/zfs-autobackup --version"),
        "python3": first("python3 --version"),
        "openssh": first("ssh -V"),
        "kernel": first("uname -r"),
        "vcpus": first("nproc"),
        "mem_mib": str(int(sh("awk '/MemTotal/ {print $2}' /proc/meminfo")) // 1024),
        "arc_max_mib": str(int(open(ARC_MAX).read()) // 1048576),
    }


def arc_prunes():
    """How often the ARC has asked to prune so far: a phase that makes it climb fast ran
    short of ARC (see install), and its numbers measure that more than the tools."""
    for line in open("/proc/spl/kstat/zfs/arcstats"):
        f = line.split()
        if f and f[0] == "arc_prune":
            return int(f[2])
    return None


# ---------------------------------------------------------------------------------------
# the tools


def zferry_config():
    jobs = {
        "tree": ("pull", ["srcpool/tree"], "dstpool/zferry"),
        "wide": ("pull", ["srcpool/wide"], "dstpool/zferry"),
        "push-full": ("push", ["srcpool/one"], "dstpool/zferry"),
        "push-empty": ("push", ["srcpool/one"], "dstpool/pushempty"),
        "bulk": ("push", ["srcpool/bulk"], "dstpool/bulkz"),
    }
    out = [f'state_dir = "{ZFERRY_STATE}"', ""]
    for name, (kind, datasets, dest) in jobs.items():
        out += [
            f"[jobs.{name}]",
            f'kind = "{kind}"',
            'host = "localhost"',
            'user = "root"',
            "datasets = [%s]" % ", ".join(f'"{d}"' for d in datasets),
            f'destination = "{dest}"',
        ]
        if kind == "push":
            out.append('strip_prefix = "srcpool"')
        out.append("")
    with open(ZAB_SSH_CONFIG, "w") as f:
        f.write("Host *\n    ControlPath ~/.ssh/control-master-%r@%h:%p\n    ControlMaster auto\n    ControlPersist 3600\n")
    with open(ZFERRY_CONF, "w") as f:
        f.write("\n".join(out))
    sh(["zferry", "check", "--config", ZFERRY_CONF])


def command(tool, kind):
    """argv of one tool's replication of srcpool/KIND (a pull over ssh from root@localhost)."""
    if tool == "zferry":
        return ["zferry", "run", "--config", ZFERRY_CONF, kind]
    if tool == "syncoid":
        return ["syncoid", "--recursive", "--no-sync-snap", f"root@localhost:srcpool/{kind}", f"dstpool/syncoid/{kind}"]
    if tool == "bzfs":
        return [VENV + "/bin/bzfs", f"root@localhost:srcpool/{kind}", f"dstpool/bzfs/{kind}", "--recursive"]
    if tool == "zab":
        # selects srcpool/KIND and children by the property autobackup:KIND=true (set on the
        # source root); --exclude-received because the copies on this same host carry it too.
        # --ssh-config: its wiki's "Speeding up SSH" (ControlMaster auto, ControlPersist 3600);
        # without it every zfs command is a new ssh connection.
        return [VENV + "/bin/zfs-autobackup", "--ssh-config", ZAB_SSH_CONFIG, "--ssh-source", "root@localhost",
                "--no-snapshot", "--other-snapshots", "--exclude-received", kind, "dstpool/zab"]
    raise ValueError(tool)


def dest_root(tool):
    return f"dstpool/{tool}"


def copy_of(tool, src):
    """The dataset TOOL makes of source dataset SRC (srcpool/...)."""
    if tool == "zferry":
        return "dstpool/zferry/localhost/" + src  # destination/<name = host>/<source path>
    if tool == "zab":
        return "dstpool/zab/" + src  # target path + full source path
    return f"dstpool/{tool}/" + src[len("srcpool/"):]  # syncoid, bzfs: the named target


def copy_root(tool, kind):
    return copy_of(tool, f"srcpool/{kind}")


def initial_streams(dss, last):
    """An initial copy's streams per dataset, parents first: the first snapshot in full,
    then one -I to LAST (what every tool here sends)."""
    out = []
    for d in dss:
        out.append((f"{d}@s000", d))
        if last != "s000":
            out.append((f"-I @s000 {d}@{last}", d))
    return out


# ---------------------------------------------------------------------------------------
# measuring


class Bench:
    def __init__(self, cfg_path):
        self.cfg = json.load(open(cfg_path))
        self.out = os.path.join(os.path.dirname(os.path.abspath(cfg_path)), "results.json")
        self.res = {
            "config": self.cfg,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": versions(),
            "commands": {t: " ".join(command(t, "KIND")) for t in TOOLS},
            "runs": [],
            "failures": [],
        }
        self.res["commands"]["floor"] = (
            "ssh root@localhost zfs list -Hp -o name,guid,createtxg -t snapshot -r srcpool/KIND; "
            "zfs list -Hp -o name,guid,createtxg -t snapshot -r <zferry's copy>"
        )
        self.res["commands"][PIPES] = (
            f"per stream, one after another over one ssh connection: ssh -F {ZAB_SSH_CONFIG} root@localhost "
            "zfs send [-I @FIRST] DS@SNAP | zfs receive -u dstpool/pipes/..."
        )
        self.res["commands"]["bare pipe"] = "zfs send -w srcpool/bulk@bulk | ssh root@localhost zfs receive -u dstpool/bulkpipe/bulk"
        os.makedirs(LOGS, exist_ok=True)
        self.seq = 0

    def save(self):
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.res, f, indent=1)
        os.replace(tmp, self.out)

    def fail(self, what):
        self.res["failures"].append(what)
        log("!!!!!!!! FAILURE: " + what)
        self.save()

    def timed(self, argv, name, shell=False):
        self.seq += 1
        path = os.path.join(LOGS, "%04d-%s.log" % (self.seq, name))
        with open(path, "w") as f:
            f.write("$ %s\n" % (argv if shell else " ".join(argv)))
            f.flush()
            t0 = time.monotonic()
            try:
                p = subprocess.run(argv, shell=shell, stdin=subprocess.DEVNULL, stdout=f,
                                   stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            dt = time.monotonic() - t0
        close_masters()
        sh(["zpool", "sync"])  # untimed: the next run starts with no dirty data of this one
        return dt, rc, path

    def check(self, tool, kind, srcroot=None, copyroot=None):
        """Newest snapshot GUID per dataset of TOOL's copy equals the source's. Returns problems."""
        srcroot = srcroot or f"srcpool/{kind}"
        src = newest(srcroot)
        if copyroot is None:
            copy = newest(copy_root(tool, kind))
            mapping = lambda d: copy_of(tool, d)  # noqa: E731
        else:
            copy = newest(copyroot)
            mapping = lambda d: copyroot + d[len(srcroot):]  # noqa: E731
        bad = []
        for ds, (guid, _, snap) in sorted(src.items()):
            c = copy.get(mapping(ds))
            if c is None:
                bad.append(f"{mapping(ds)} missing (source {ds}@{snap})")
            elif c[0] != guid:
                bad.append(f"{mapping(ds)}@{c[2]} guid {c[0]} != source {ds}@{snap} guid {guid}")
        return bad

    def record(self, phase, rep, tool, dt, rc, path, bad, extra=None):
        ok = rc == 0 and not bad
        run = {"phase": phase, "rep": rep, "tool": tool, "seconds": round(dt, 3), "rc": rc, "ok": ok, "log": os.path.basename(path)}
        if extra:
            run.update(extra)
        self.res["runs"].append(run)
        log(f"{phase:<14} rep {rep} {tool:<8} {dt:8.2f} s  {'ok' if ok else 'FAILED'}")
        if rc != 0:
            self.fail(f"{phase} rep {rep} {tool}: exit {rc} (log {path}):\n" + open(path).read()[-3000:])
        for b in bad[:20]:
            self.fail(f"{phase} rep {rep} {tool}: GUID check: {b}")
        self.save()

    def order(self, rep, tools):
        """Tools interleaved, the order rotated each repetition (no tool always goes first)."""
        k = (rep - 1) % len(tools)
        return tools[k:] + tools[:k]

    def run_tools(self, phase, kind, rep):
        for tool in self.order(rep, self.cfg.get("tools", TOOLS)):
            dt, rc, path = self.timed(command(tool, kind), f"{phase}-r{rep}-{tool}")
            self.record(phase, rep, tool, dt, rc, path, self.check(tool, kind))

    def pipes(self, phase, kind, rep, streams):
        """The transfer floor: STREAMS [(zfs send args, source dataset)] as bare pipes into
        dstpool/pipes, one after another over one ssh connection (ControlMaster, as zferry
        keeps one): what moving the phase's streams costs a sequential tool with no
        listing, planning or holds around them. Runs after the tools of the phase."""
        ssh = f"ssh -F {ZAB_SSH_CONFIG} root@localhost"
        script = "set -euo pipefail\n" + "".join(
            f"{ssh} zfs send {args} | zfs receive -u {copy_of(PIPES, ds)}\n" for args, ds in streams
        )
        dt, rc, path = self.timed(["bash", "-c", script], f"{phase}-r{rep}-{PIPES}")
        self.record(phase, rep, PIPES, dt, rc, path, self.check(PIPES, kind), {"streams": len(streams)})

    def floor(self, phase, kind, rep):
        src = f"srcpool/{kind}"
        lst = ["zfs", "list", "-Hp", "-o", "name,guid,createtxg", "-t", "snapshot", "-r"]
        t0 = time.monotonic()
        n_src = len(sh(["ssh", "root@localhost", " ".join(lst + [src])]).splitlines())
        t1 = time.monotonic()
        n_dst = len(sh(lst + [copy_root("zferry", kind)]).splitlines())
        t2 = time.monotonic()
        run = {"phase": phase, "rep": rep, "tool": "floor", "seconds": round(t2 - t0, 3), "rc": 0, "ok": True,
               "source_s": round(t1 - t0, 3), "target_s": round(t2 - t1, 3), "source_lines": n_src, "target_lines": n_dst}
        self.res["runs"].append(run)
        log(f"{phase:<14} rep {rep} floor    {t2 - t0:8.2f} s  (source over ssh {t1 - t0:.2f} s, {n_src} lines; target {t2 - t1:.2f} s, {n_dst} lines)")
        self.save()

    # --- sources --------------------------------------------------------------------------

    def make_tree(self, kind, children, snaps, kib):
        root = f"srcpool/{kind}"
        destroy(root)
        sh(["zfs", "create", "-o", f"autobackup:{kind}=true", root])
        dss = [root] + [f"{root}/c{i:03d}" for i in range(children)]
        script = "".join(f"zfs create {d}\n" for d in dss[1:])
        if script:
            sh(["sh", "-euc", script])
        for s in range(snaps):
            for d in dss:
                write_file(f"{mountpoint(d)}/s{s:03d}.bin", kib)
            sh(["zfs", "snapshot", "-r", f"{root}@s{s:03d}"])
        return dss

    def reset_dests(self, kind):
        for tool in TOOLS + [PIPES]:
            destroy(copy_root(tool, kind))
            ensure(dest_root(tool))
        sh(["rm", "-rf", ZFERRY_STATE])
        release_holds(f"srcpool/{kind}")
        sh(["zpool", "sync"])

    # --- phases ---------------------------------------------------------------------------

    def phase_tree(self):
        c = self.cfg
        for rep in range(1, c["reps"] + 1):
            log(f"== tree rep {rep}: 1 + {c['tree_children']} children x {c['tree_snaps']} snapshots")
            self.reset_dests("tree")
            dss = self.make_tree("tree", c["tree_children"], c["tree_snaps"], c["kib"])
            last = f"s{c['tree_snaps'] - 1:03d}"
            self.run_tools("tree-initial", "tree", rep)
            self.pipes("tree-initial", "tree", rep, initial_streams(dss, last))
            self.run_tools("tree-noop", "tree", rep)
            self.floor("tree-noop", "tree", rep)
            for d in dss:
                write_file(f"{mountpoint(d)}/plus1.bin", c["kib"])
            sh(["zfs", "snapshot", "-r", "srcpool/tree@plus1"])
            self.run_tools("tree-plus1", "tree", rep)
            self.pipes("tree-plus1", "tree", rep, [(f"-i @{last} {d}@plus1", d) for d in dss])
            child = dss[1] if len(dss) > 1 else dss[0]
            for i in range(c["plus_many"]):
                write_file(f"{mountpoint(child)}/many.bin", 4)
                sh(["zfs", "snapshot", f"{child}@many{i:03d}"])
            self.run_tools("tree-plusmany", "tree", rep)
            many = f"-I @plus1 {child}@many{c['plus_many'] - 1:03d}"
            self.pipes("tree-plusmany", "tree", rep, [(many, child)])
        for tool in TOOLS + [PIPES]:  # leave no tree behind: zfs-autobackup scans every dataset of the host
            destroy(copy_root(tool, "tree"))
        destroy("srcpool/tree")

    def phase_wide(self):
        c = self.cfg
        log(f"== wide: making 1 + {c['wide_children']} children x {c['wide_snaps']} snapshots")
        dss = self.make_tree("wide", c["wide_children"], c["wide_snaps"], 4)
        last = f"s{c['wide_snaps'] - 1:03d}"
        for rep in range(1, c["reps"] + 1):
            log(f"== wide rep {rep}")
            # Later repetitions time the no-op again on the copies made (for time).
            if rep <= c.get("wide_initial_reps", c["reps"]):
                self.reset_dests("wide")
                self.run_tools("wide-initial", "wide", rep)
                if c.get("wide_pipes", 1):
                    self.pipes("wide-initial", "wide", rep, initial_streams(dss, last))
            self.run_tools("wide-noop", "wide", rep)
            self.floor("wide-noop", "wide", rep)
        # zferry's copy of the wide tree stays: it is the full destination of phase push.
        for tool in PEERS + [PIPES]:
            destroy(copy_root(tool, "wide"))

    def phase_push(self):
        """zferry push of one dataset into a destination root that holds the wide tree vs an empty one."""
        c = self.cfg
        if not exists(copy_root("zferry", "wide")):
            log("push: zferry's wide copy is missing, making it")
            self.make_tree("wide", c["wide_children"], c["wide_snaps"], 4)
            ensure("dstpool/zferry")
            sh(["zferry", "-q", "run", "--config", ZFERRY_CONF, "wide"])
        held = len(newest("dstpool/zferry"))
        log(f"== push: srcpool/one ({c['tree_snaps']} snapshots) into dstpool/zferry ({held} datasets with snapshots) vs dstpool/pushempty")
        destroy("srcpool/one")
        sh(["zfs", "create", "srcpool/one"])
        for s in range(c["tree_snaps"]):
            write_file(f"/srcpool/one/s{s:03d}.bin", c["kib"])
            sh(["zfs", "snapshot", f"srcpool/one@s{s:03d}"])
        ensure("dstpool/pushempty")
        jobs = {"full": ("push-full", "dstpool/zferry/one"), "empty": ("push-empty", "dstpool/pushempty/one")}
        for rep in range(1, c["reps"] + 1):
            for _, (_, target) in jobs.items():
                destroy(target)
            release_holds("srcpool/one")
            sh(["zpool", "sync"])
            for step in ("initial", "noop"):
                for which in self.order(rep, ["full", "empty"]):
                    job, target = jobs[which]
                    dt, rc, path = self.timed(["zferry", "run", "--config", ZFERRY_CONF, job], f"push-{step}-r{rep}-{which}")
                    bad = self.check("zferry", None, srcroot="srcpool/one", copyroot=target)
                    self.record(f"push-{step}", rep, f"into {which}", dt, rc, path, bad, {"dest_datasets": held if which == "full" else 0})

    def phase_bulk(self):
        c = self.cfg
        mib = c["bulk_mib"]
        log(f"== bulk: srcpool/bulk with {mib} MiB of random data")
        destroy("srcpool/bulk")
        sh(["zfs", "create", "srcpool/bulk"])
        sh(["dd", "if=/dev/urandom", "of=/srcpool/bulk/random.bin", "bs=1M", f"count={mib}", "status=none"])
        sh(["zfs", "snapshot", "srcpool/bulk@bulk"])
        size = int(re.search(r"^size\s+(\d+)", sh(["zfs", "send", "-nP", "-w", "srcpool/bulk@bulk"]), re.M).group(1))
        self.res["bulk_stream_bytes"] = size
        ensure("dstpool/bulkz")
        ensure("dstpool/bulkpipe")
        pipe = "zfs send -w srcpool/bulk@bulk | ssh root@localhost zfs receive -u dstpool/bulkpipe/bulk"
        for rep in range(1, c["reps"] + 1):
            destroy("dstpool/bulkz/bulk")
            destroy("dstpool/bulkpipe/bulk")
            release_holds("srcpool/bulk")
            sh(["zpool", "sync"])
            for which in self.order(rep, ["zferry", "bare pipe"]):
                if which == "zferry":
                    dt, rc, path, rss = self.timed_rss(["zferry", "run", "--config", ZFERRY_CONF, "bulk"], f"bulk-r{rep}-zferry")
                    bad = self.check("zferry", None, srcroot="srcpool/bulk", copyroot="dstpool/bulkz/bulk")
                    extra = dict(rss)
                else:
                    dt, rc, path = self.timed(pipe, f"bulk-r{rep}-pipe", shell=True)
                    bad = self.check("pipe", None, srcroot="srcpool/bulk", copyroot="dstpool/bulkpipe/bulk")
                    extra = {}
                extra["mib_per_s"] = round(size / 1048576 / dt, 2)
                self.record("bulk", rep, which, dt, rc, path, bad, extra)

    def timed_rss(self, argv, name):
        """Like timed, under /usr/bin/time -v, also polling zferry's own VmHWM."""
        self.seq += 1
        path = os.path.join(LOGS, "%04d-%s.log" % (self.seq, name))
        tv = path + ".time"
        hwm = 0
        with open(path, "w") as f:
            f.write("$ %s\n" % " ".join(argv))
            f.flush()
            t0 = time.monotonic()
            p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tv] + argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
            while p.poll() is None:
                try:
                    kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
                    for k in kids:
                        m = re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{k}/status").read())
                        if m:
                            hwm = max(hwm, int(m.group(1)))
                except OSError:
                    pass
                time.sleep(0.2)
            dt = time.monotonic() - t0
        rc = p.returncode
        close_masters()
        sh(["zpool", "sync"])
        tvtext = open(tv).read()
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tvtext)
        rss = {"time_v_max_rss_kib": int(m.group(1)) if m else None, "zferry_vmhwm_kib": hwm}
        with open(path, "a") as f:
            f.write(tvtext)
        return dt, rc, path, rss

    def run(self):
        c = self.cfg
        for pool, dev in (("srcpool", "/dev/vdb"), ("dstpool", "/dev/vdc")):
            subprocess.run(["zpool", "destroy", "-f", pool], capture_output=True)
            sh(["zpool", "create", "-f", "-O", f"mountpoint=/{pool}", pool, dev])
        zferry_config()
        log("versions: " + json.dumps(self.res["versions"]))
        log("config: " + json.dumps(c))
        self.save()
        for phase in c["phases"]:
            t0, p0 = time.monotonic(), arc_prunes()
            getattr(self, "phase_" + phase)()
            self.res.setdefault("phase_seconds", {})[phase] = round(time.monotonic() - t0, 1)
            self.res.setdefault("arc_prunes", {})[phase] = arc_prunes() - p0
            self.save()
        self.res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.save()
        if self.res["failures"]:
            log(f"!!!!!!!! {len(self.res['failures'])} FAILURE(S); see results.json")
            return 1
        log("all runs ok, every copy checked")
        return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "install":
        install(sys.argv[2])
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        return Bench(sys.argv[2]).run()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
