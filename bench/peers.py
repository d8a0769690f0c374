#!/usr/bin/env python3
"""`make bench-peers`: zferry against syncoid, bzfs and zfs-autobackup in ONE lab VM.

    bench/peers.py                      # the benchmark (hours under TCG) -> bench/peers.md
    BENCH_SCALE=small bench/peers.py    # smoke run of the harness -> bench/peers-small.md
    bench/peers.py --render FILE.json   # re-render a results file (OUT: BENCH_OUT or the default)
    BENCH_OUT=bench/peers.md bench/peers.py --render A.json B.json ...
                                        # one report from phase groups run apart (BENCH_PHASES)

What it does, on the host:
 1. builds zferry (`cargo build --release --locked`) and strips a copy;
 2. fetches the peers once into $BENCH_CACHE (default /var/cache/zferry-bench), keyed by
    name and version: Debian packages with `apt-get download` (sanoid and the deps the lab
    image lacks, GNU time), PyPI wheels with `pip download --only-binary=:all:` (bzfs,
    zfs-autobackup, pip itself);
 3. boots its own lab instance (ZFERRY_LAB_RUN=/var/tmp/zferry-lab-bench, VM `bench`, two
    sparse pool disks of ZFERRY_LAB_DISK, default here 4G), copies everything in and installs
    offline (`dpkg -i`; a venv with pip run from its wheel: the guest has no pip);
 4. runs bench/peers_guest.py in the guest, detached (a dropped ssh session does not stop it;
    the host follows its log and re-attaches), so all timing is in-guest;
 5. copies results.json back (bench/peers.json or bench/peers-small.json), writes the
    markdown report and stops the VM (BENCH_KEEP=1 keeps it up).

Knobs: BENCH_SCALE (full|small), BENCH_REPS, BENCH_TREE_CHILDREN, BENCH_TREE_SNAPS,
BENCH_PLUS_MANY, BENCH_WIDE, BENCH_WIDE_SNAPS, BENCH_BULK_MIB, BENCH_WIDE_INITIAL_REPS (the
wide tree's initial copy is made and timed in the first N repetitions only; the later ones time
the no-op again on those copies: at full size one initial of every tool takes ~25 min under
TCG), BENCH_WIDE_PIPES (0: no transfer floor for the wide initial), BENCH_PHASES (comma list of
tree,wide,push,bulk), BENCH_TOOLS (comma list of zferry,syncoid,bzfs,zab: the tools of the tree
and wide phases; the report names a group that left one out), BENCH_OUT (markdown path),
BENCH_KEEP, ZFERRY_LAB_MEM, ZFERRY_LAB_DISK.
"""

import glob
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(REPO, "tests", "lab", "lab")
CACHE = os.environ.get("BENCH_CACHE", "/var/cache/zferry-bench")
VM = "bench"
DEBS = ["sanoid", "libconfig-inifiles-perl", "libcapture-tiny-perl", "lzop", "liblzo2-2", "time"]
WHEELS = {"bzfs": "1.25.0", "zfs-autobackup": "3.3", "pip": "26.3"}  # pinned: same peers every run

SCALES = {
    # the sizes
    "full": dict(reps=3, tree_children=10, tree_snaps=20, plus_many=100, wide_children=300, wide_snaps=10, bulk_mib=1024, kib=64,
                 wide_initial_reps=3, wide_pipes=1),
    # validates the harness end to end in minutes; says nothing about the goals
    "small": dict(reps=1, tree_children=3, tree_snaps=3, plus_many=10, wide_children=20, wide_snaps=3, bulk_mib=64, kib=16,
                  wide_initial_reps=1, wide_pipes=1),
}
ENV_KNOBS = {"reps": "BENCH_REPS", "tree_children": "BENCH_TREE_CHILDREN", "tree_snaps": "BENCH_TREE_SNAPS",
             "plus_many": "BENCH_PLUS_MANY", "wide_children": "BENCH_WIDE", "wide_snaps": "BENCH_WIDE_SNAPS",
             "bulk_mib": "BENCH_BULK_MIB", "wide_initial_reps": "BENCH_WIDE_INITIAL_REPS", "wide_pipes": "BENCH_WIDE_PIPES"}


def log(msg):
    print(time.strftime("[bench %H:%M:%S] ") + msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def lab(*args, **kw):
    return run([LAB] + list(args), **kw)


# ---------------------------------------------------------------------------------------
# host side: build, fetch, boot, install, run


def build():
    log("cargo build --release --locked")
    run(["cargo", "build", "--release", "--locked"], cwd=REPO)
    out = os.path.join(tempfile.mkdtemp(prefix="zferry-bench."), "zferry")
    run(["strip", "-o", out, os.path.join(REPO, "target", "release", "zferry")])
    return out


def fetch():
    deb, pypi = os.path.join(CACHE, "deb"), os.path.join(CACHE, "pypi")
    os.makedirs(deb, exist_ok=True)
    os.makedirs(pypi, exist_ok=True)
    missing = [p for p in DEBS if not glob.glob(os.path.join(deb, f"{p}_*.deb"))]
    if missing:
        log("apt-get download " + " ".join(missing))
        if run(["apt-get", "download"] + missing, cwd=deb, check=False).returncode != 0:
            run(["apt-get", "update", "-q"])
            run(["apt-get", "download"] + missing, cwd=deb)
    want = [f"{n}=={v}" for n, v in WHEELS.items()]
    if any(not glob.glob(os.path.join(pypi, f"{n.replace('-', '_')}-{v}-*.whl")) for n, v in WHEELS.items()):
        log("pip download " + " ".join(want))
        run(host_pip() + ["download", "-q", "--only-binary=:all:", "-d", pypi] + want)
    debs = {p: sorted(glob.glob(os.path.join(deb, f"{p}_*.deb")))[-1] for p in DEBS}
    return debs, pypi, want


def host_pip():
    """pip on the host: this python's, else a venv's (setup installs python3-venv, which brings pip)."""
    if run([sys.executable, "-m", "pip", "--version"], check=False, capture_output=True).returncode == 0:
        return [sys.executable, "-m", "pip"]
    venv = os.path.join(CACHE, "host-venv")
    if not os.path.exists(os.path.join(venv, "bin", "pip")):
        run([sys.executable, "-m", "venv", venv])
    return [os.path.join(venv, "bin", "pip")]


def stage(zferry, debs, pypi, want, cfg):
    """One tarball: the guest script, its config, zferry, the debs and wheels."""
    path = os.path.join(tempfile.mkdtemp(prefix="zferry-bench-stage."), "stage.tgz")
    with tarfile.open(path, "w:gz") as t:
        t.add(os.path.join(REPO, "bench", "peers_guest.py"), "peers_guest.py")
        t.add(zferry, "zferry")
        for f in debs.values():
            t.add(f, "deb/" + os.path.basename(f))
        for f in sorted(os.listdir(pypi)):
            t.add(os.path.join(pypi, f), "pypi/" + f)
        for name, text in (("config.json", json.dumps(cfg, indent=1)), ("requirements.txt", "\n".join(w for w in want if not w.startswith("pip=")))):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def config():
    scale = os.environ.get("BENCH_SCALE", "full")
    if scale not in SCALES:
        sys.exit(f"BENCH_SCALE must be one of {', '.join(SCALES)}")
    cfg = dict(SCALES[scale], scale=scale)
    for k, env in ENV_KNOBS.items():
        if os.environ.get(env):
            cfg[k] = int(os.environ[env])
    cfg["phases"] = os.environ.get("BENCH_PHASES", "tree,wide,push,bulk").split(",")
    cfg["tools"] = os.environ.get("BENCH_TOOLS", ",".join(TOOLS)).split(",")
    if "zferry" not in cfg["tools"] or not set(cfg["tools"]) <= set(TOOLS):
        sys.exit(f"BENCH_TOOLS must name zferry and only tools of {','.join(TOOLS)}")
    if scale == "full" and cfg["reps"] < 3:
        sys.exit("the real run needs BENCH_REPS >= 3")
    return cfg


def follow(guest_dir):
    """Starts the guest run detached and follows its log until it ends; returns its exit code."""
    start = (f"cd {guest_dir} && rm -f rc run.log && : > run.log && "
             "setsid sh -c 'python3 -u peers_guest.py run config.json > run.log 2>&1; echo $? > rc' "
             "</dev/null >/dev/null 2>&1 &")
    lab("ssh", VM, "--", "sh", "-c", start)
    seen = 0
    while True:
        # tail ends when the run's rc file appears (checked every 5 s by the loop in the guest)
        cmd = (f"cd {guest_dir}; tail -n +{seen + 1} -f run.log & t=$!; "
               "while [ ! -f rc ]; do sleep 5; done; sleep 1; kill $t")
        p = subprocess.Popen([LAB, "ssh", VM, "--", "sh", "-c", cmd], stdout=subprocess.PIPE, text=True)
        for line in p.stdout:
            seen += 1
            sys.stdout.write(line)
            sys.stdout.flush()
        p.wait()
        rc = lab("ssh", VM, "--", "cat", f"{guest_dir}/rc", capture_output=True, text=True, check=False)
        if rc.returncode == 0 and rc.stdout.strip():
            return int(rc.stdout.strip())
        log("lost the guest's log stream; re-attaching")
        time.sleep(10)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--render":
        res = merge([(os.path.basename(f), json.load(open(f))) for f in sys.argv[2:]])
        out = os.environ.get("BENCH_OUT") or default_out(res["config"]["scale"])
        render(res, out)
        log(f"wrote {out}")
        return 0
    cfg = config()
    os.environ["ZFERRY_LAB_RUN"] = os.environ.get("ZFERRY_LAB_RUN", "/var/tmp/zferry-lab-bench")
    os.environ.setdefault("ZFERRY_LAB_DISK", "4G")
    # Room for an ARC that holds the wide tree's metadata (peers_guest.py install).
    os.environ.setdefault("ZFERRY_LAB_MEM", "3072")
    started = time.time()
    built_from = commit()
    zferry = build()
    debs, pypi, want = fetch()
    tgz = stage(zferry, debs, pypi, want, cfg)
    log(f"lab up {VM} ({os.environ['ZFERRY_LAB_RUN']}, disks {os.environ['ZFERRY_LAB_DISK']}, "
        f"{os.environ['ZFERRY_LAB_MEM']} MiB, {os.environ.get('ZFERRY_LAB_SMP', '2')} vCPUs)")
    lab("up", VM)
    rc = 1
    try:
        g = "/root/bench"
        lab("cp", VM, tgz, "/root/bench-stage.tgz")
        lab("ssh", VM, "--", "sh", "-euc", f"rm -rf {g}; mkdir -p {g}; tar -xzf /root/bench-stage.tgz -C {g}")
        log("installing zferry, syncoid, bzfs, zfs-autobackup offline in the guest")
        lab("ssh", VM, "--", "python3", f"{g}/peers_guest.py", "install", g)
        rc = follow(g)
        res = lab("ssh", VM, "--", "cat", f"{g}/results.json", capture_output=True, text=True).stdout
        results = json.loads(res)
        results["host_seconds"] = round(time.time() - started)
        results["zferry_commit"] = built_from
        results["lab"] = {"mem_mib": os.environ["ZFERRY_LAB_MEM"], "smp": os.environ.get("ZFERRY_LAB_SMP", "2"),
                          "disk": os.environ["ZFERRY_LAB_DISK"]}
        out = os.environ.get("BENCH_OUT") or default_out(cfg["scale"])
        with open(os.path.splitext(out)[0] + ".json", "w") as f:
            json.dump(results, f, indent=1)
        logs = os.path.join("/var/tmp", "zferry-bench-logs-" + time.strftime("%Y%m%dT%H%M%S"))
        os.makedirs(logs)
        with open(os.path.join(logs, "logs.tgz"), "wb") as f:
            run([LAB, "ssh", VM, "--", "tar", "-czf", "-", "-C", g, "logs", "run.log", "zferry.toml"], stdout=f)
        render(merge([(os.path.basename(os.path.splitext(out)[0] + ".json"), results)]), out)
        log(f"wrote {out} (and {os.path.splitext(out)[0]}.json); tool logs in {logs}; {results['host_seconds']} s in all")
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            lab("down", VM, check=False)
    return rc


def commit():
    """The commit zferry was built from, "+dirty" when the tree had changes."""
    head = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


# Everything a group's numbers depend on besides zferry's build: groups run apart are
# merged into one report only when these agree.
SAME = {"config": ["scale", "tree_children", "tree_snaps", "plus_many", "wide_children", "wide_snaps", "bulk_mib", "kib"],
        "versions": ["openzfs", "syncoid", "bzfs", "zfs-autobackup", "python3", "openssh", "kernel", "vcpus", "mem_mib",
                     "arc_max_mib"]}


def merge(named):
    """One result from phase groups run apart (each a results file of its own BENCH_PHASES).

    Runs, failures and phase times are joined; sizes, versions and the VM must agree, or
    the comparison across groups would not be one benchmark. Each group keeps its dates
    and the zferry commit it ran, listed in the report."""
    first = named[0][1]
    for name, r in named[1:]:
        for part, keys in SAME.items():
            for k in keys:
                if r[part].get(k) != first[part].get(k):
                    sys.exit(f"{name}: {part} {k} is {r[part].get(k)!r}, {named[0][0]} has {first[part].get(k)!r}: not one benchmark")
        if r.get("lab") != first.get("lab"):
            sys.exit(f"{name}: lab VM {r.get('lab')} differs from {named[0][0]}'s {first.get('lab')}")
    res = dict(first, runs=[], failures=[], commands={}, phase_seconds={}, groups=[])
    for name, r in named:
        res["runs"] += r["runs"]
        res["failures"] += r["failures"]
        res["commands"].update(r["commands"])
        res["phase_seconds"].update(r.get("phase_seconds", {}))
        res.setdefault("arc_prunes", {}).update(r.get("arc_prunes", {}))
        res["bulk_stream_bytes"] = r.get("bulk_stream_bytes") or res.get("bulk_stream_bytes", 0)
        res["groups"].append({"file": name, "phases": r["config"]["phases"], "reps": r["config"]["reps"], "started": r["started"],
                              "tools": r["config"].get("tools", TOOLS),
                              "finished": r.get("finished", "NOT FINISHED"), "host_seconds": r.get("host_seconds", "?"),
                              "commit": r.get("zferry_commit", "not recorded")})
    # How the wide tree was run is its group's to say.
    wide = {k: v for _, r in named if "wide" in r["config"]["phases"]
            for k, v in r["config"].items() if k in ("wide_initial_reps", "wide_pipes")}
    res["config"] = dict(first["config"], reps=min(g["reps"] for g in res["groups"]), **wide)
    return res


def default_out(scale):
    return os.path.join(REPO, "bench", "peers.md" if scale == "full" else f"peers-{scale}.md")


# ---------------------------------------------------------------------------------------
# the report

TOOLS = ["zferry", "syncoid", "bzfs", "zab"]
PEERS = ["syncoid", "bzfs", "zab"]
NAMES = {"zab": "zfs-autobackup"}
PHASES = [
    ("tree-initial", "tree: initial full"),
    ("tree-noop", "tree: no-op"),
    ("tree-plus1", "tree: +1 snapshot on every dataset"),
    ("tree-plusmany", "tree: +N snapshots on one child"),
    ("wide-initial", "wide tree: initial"),
    ("wide-noop", "wide tree: no-op"),
]


def stats(xs):
    return {"n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else None


def fmt(s):
    return "—" if s is None else f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def times(res, phase, tool, key="seconds"):
    return [r[key] for r in res["runs"] if r["phase"] == phase and r["tool"] == tool and r["ok"] and r.get(key) is not None]


def duration(s):
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"


def left_out(res):
    """Why a group ran without a tool, from this benchmark's own numbers: the tool's tree
    initial rate, extrapolated to the wide tree, and its rank in the tree phases."""
    c, L = res["config"], []
    for t in TOOLS:
        groups = [g["file"] for g in res["groups"] if t not in g["tools"]]
        if not groups:
            continue
        L.append(f"{NAMES.get(t, t)} was left out of {', '.join(groups)} (BENCH_TOOLS) for time.")
        init = stats(times(res, "tree-initial", t))
        if init:
            per = init["median"] / ((c["tree_children"] + 1) * c["tree_snaps"])
            wide = (c["wide_children"] + 1) * c["wide_snaps"]
            L[-1] += (f" Its tree initial took {init['median']:.0f} s for {(c['tree_children'] + 1) * c['tree_snaps']} snapshots "
                      f"({per:.1f} s per snapshot); at that rate the wide tree's {wide} snapshots would take ~{duration(per * wide)} "
                      "per repetition.")
        ranks = []
        for phase, label in PHASES[:4]:
            meds = sorted((s["median"], u) for u in PEERS if (s := stats(times(res, phase, u))))
            if any(u == t for _, u in meds):
                ranks.append(f"{label.split(': ')[1]} {[u for _, u in meds].index(t) + 1} of {len(meds)}")
        if ranks:
            L[-1] += f" Its rank among the peers (1 = fastest) in the tree phases: {'; '.join(ranks)}."
        L.append("")
    return L


def linear_rows(res, med):
    """Goal rows for "zferry's own cost grows linearly with datasets and snapshots": the
    tree and the wide tree are two sizes of one shape, so the cost per snapshot (initial)
    and per dataset (no-op) must not grow from one to the other. Linear (or better) when
    the wide tree's per-unit cost is at most 1.25x the tree's; the slope is stated."""
    c, rows = res["config"], []
    sizes = {"tree": (c["tree_children"] + 1, (c["tree_children"] + 1) * c["tree_snaps"]),
             "wide": (c["wide_children"] + 1, (c["wide_children"] + 1) * c["wide_snaps"])}
    for step, unit, at in (("initial", "snapshot", 1), ("noop", "dataset", 0)):
        label = {"noop": "no-op"}.get(step, step)
        a, b = (med.get(f"{k}-{step}", {}).get("zferry") for k in ("tree", "wide"))
        if not a or not b:
            rows.append(f"| zferry's {label} grows linearly ({unit}s) | not measured in both trees | — |")
            continue
        (nt, nw) = (sizes["tree"][at], sizes["wide"][at])
        pt, pw = a["median"] / nt, b["median"] / nw
        slope = (b["median"] - a["median"]) / (nw - nt)
        rows.append(f"| zferry's {label} grows linearly ({unit}s; wide per {unit} ≤ 1.25× tree per {unit}) | "
                    f"{pt * 1000:.0f} ms per {unit} in the tree ({nt}), {pw * 1000:.0f} ms in the wide tree ({nw}): "
                    f"{pw / pt:.2f}×; slope {slope * 1000:.1f} ms per {unit} | {'PASS' if pw <= 1.25 * pt else 'FAIL'} |")
    return rows


def render(res, out):
    c = res["config"]
    v = res["versions"]
    L = []
    smoke = c["scale"] != "full"
    title = "# zferry vs syncoid, bzfs, zfs-autobackup (issue 12 item 4)"
    L.append(title + (" — SMOKE RUN, NOT THE BENCHMARK" if smoke else ""))
    L.append("")
    if smoke:
        L.append(f"> **Smoke run** (`BENCH_SCALE={c['scale']}`, {c['reps']} repetition(s)): it proves the harness "
                 "installs and runs every tool and checks every copy. Its numbers are far too small and too few to "
                 "judge the goals; the verdicts below are printed only to exercise the report. The real run is "
                 "`make bench-peers` (bench/peers.md).")
        L.append("")
    L.append("Generated by `make bench-peers` (bench/peers.py, bench/peers_guest.py); phases run in "
             f"{len(res['groups'])} group(s), each in a fresh boot of the lab VM described below:")
    L.append("")
    for g in res["groups"]:
        L.append(f"- `{g['file']}`: {', '.join(g['phases'])}; {g['reps']} repetitions; started {g['started']}, finished "
                 f"{g['finished']}; {g['host_seconds']} s on the host; zferry built from {g['commit']}"
                 + ("." if g["tools"] == TOOLS else
                    f"; tools: {', '.join(NAMES.get(t, t) for t in g['tools'])} only (BENCH_TOOLS, the reason below)."))
    L.append("")
    L += left_out(res)
    if res["failures"]:
        L.append(f"## !!! {len(res['failures'])} FAILURE(S) — a tool failed or a copy's newest GUID differs from the source")
        L.append("")
        for f in res["failures"][:40]:
            L.append("```\n" + f.strip()[:1500] + "\n```")
        L.append("")
    lab = res.get("lab", {})
    L += [
        "## Setup",
        "",
        f"- One lab VM under QEMU (TCG on this machine): {v['vcpus']} vCPUs, {v['mem_mib']} MiB visible to the guest "
        f"(ZFERRY_LAB_MEM={lab.get('mem_mib', '?')}), ARC capped at {v.get('arc_max_mib', '256 (the lab image default)')} MiB, two sparse {lab.get('disk', '?')} disks: pool `srcpool` (source) and `dstpool` (every copy).",
        f"- Guest kernel {v['kernel']}; OpenZFS {v['openzfs']}; {v['python3']}; {v['openssh']}.",
        f"- zferry: {v['zferry']} (release build, stripped). syncoid: {v['syncoid']}. bzfs: {v['bzfs']}. "
        f"zfs-autobackup: {v['zfs-autobackup']}. Debian packages via `apt-get download` + `dpkg -i`; "
        "PyPI wheels via `pip download --only-binary=:all:` into a venv in the guest (pip run from its wheel; the guest has no pip).",
        "- Every tool **pulls** over SSH from `root@localhost` (the same guest, root's own key, host key pinned). "
        "One source tree, one destination dataset per tool: snapshots added in later phases are added once, so every tool "
        "sees the identical source. Each repetition starts from scratch (tree: source recreated, every destination destroyed, "
        "holds released; wide: every destination destroyed, source holds released), so `initial` is initial every time"
        + ("." if c.get("wide_initial_reps", c["reps"]) >= c["reps"] else
           f"; the wide tree's initial only in the first {c['wide_initial_reps']} repetition(s) (BENCH_WIDE_INITIAL_REPS, "
           "for time), the later ones time its no-op again on the copies made."),
        "- Tools interleaved within every phase, the order rotated by one each repetition (rep 1: zferry, syncoid, bzfs, "
        "zfs-autobackup; rep 2: syncoid, bzfs, zfs-autobackup, zferry; ...). Wall-clock seconds of the tool's command, timed "
        "in the guest; `zpool sync` (untimed) after each run.",
        f"- Transfer floor (tree initial, +1, +N{', wide initial' if c.get('wide_pipes', 1) else ''}): after the tools, the phase's streams as bare "
        "`zfs send | zfs receive -u` pipes into `dstpool/pipes`, one after another over one ssh connection (the initial "
        "copy: per dataset the first snapshot in full, then one `-I` to the last, as the tools send): what moving the "
        "streams costs with nothing around them. Its copy is checked like the tools'.",
        "- After every run the copy is checked: for every source dataset, the newest snapshot's GUID (by createtxg) on the copy "
        "equals the source's. A mismatch or non-zero exit is listed above as a failure and excluded from the statistics.",
        f"- Sizes: tree 1 + {c['tree_children']} children × {c['tree_snaps']} snapshots ({c['kib']} KiB random per dataset per snapshot), "
        f"+1 snapshot on every dataset, +{c['plus_many']} snapshots on one child (4 KiB each); wide tree 1 + {c['wide_children']} "
        f"children × {c['wide_snaps']} snapshots (4 KiB each); bulk {c['bulk_mib']} MiB random in one dataset "
        f"({res.get('bulk_stream_bytes', 0) / 1048576:.1f} MiB stream); {c['reps']} repetition(s).",
        "",
        "Commands (KIND is `tree` or `wide`):",
        "",
    ]
    for tool, cmd in res["commands"].items():
        L.append(f"- {NAMES.get(tool, tool)}: `{cmd}`")
    L += [
        "",
        "- zferry's config (`zferry.toml` in the guest): jobs `tree`, `wide` (kind pull, host localhost, user root, destination "
        "`dstpool/zferry`), `push-full` / `push-empty` / `bulk` (kind push, strip_prefix srcpool); defaults otherwise.",
        "- zfs-autobackup selects by the property `autobackup:KIND=true` on `srcpool/KIND`; `--other-snapshots` because the "
        "snapshots are not its own, `--no-snapshot` because it must not take any, `--exclude-received` because copies on the "
        "same host carry the property; `--ssh-config` with `ControlMaster auto`, `ControlPersist 3600` as its wiki's "
        "\"Speeding up SSH\" recommends (otherwise every zfs command is a new ssh connection). It scans every dataset of "
        "the host for the property, so the other tools' copies present at that moment are listed too (its design).",
        "- After every run, ssh control masters left behind (zfs-autobackup's and bzfs's ControlPersist) are ended, so "
        "every run of every tool starts with a cold ssh connection.",
        "- syncoid and bzfs: their defaults otherwise (syncoid: lzop compression, mbuffer, pv; receives mount; bzfs: "
        "`zfs send --raw --compressed`, zstd, mbuffer, pv). zferry: no compression, receives `-u`.",
        "",
        "## Results (seconds: median (min–max) over the repetitions)",
        "",
    ]
    med = {}
    for phase, label in PHASES:
        if not any(r["phase"] == phase for r in res["runs"]):
            continue
        row = {t: stats(times(res, phase, t)) for t in TOOLS}
        med[phase] = row
        peer = [(row[t]["median"], t) for t in PEERS if row[t]]
        fastest = min(peer) if peer else None
        fl = stats(times(res, phase, "floor"))
        pipes = stats(times(res, phase, "pipes"))
        L.append(f"### {label}")
        L.append("")
        L.append("| tool | seconds | runs |")
        L.append("|---|---|---|")
        for t in TOOLS:
            n_all = len([r for r in res["runs"] if r["phase"] == phase and r["tool"] == t])
            if n_all == 0:
                L.append(f"| {NAMES.get(t, t)} | not run in this group (BENCH_TOOLS) | — |")
                continue
            L.append(f"| {NAMES.get(t, t)} | {fmt(row[t])} | {row[t]['n'] if row[t] else 0} of {n_all} ok |")
        if fl:
            L.append(f"| floor (ssh + list source, list target) | {fmt(fl)} | {fl['n']} |")
        if pipes:
            n = next(r["streams"] for r in res["runs"] if r["phase"] == phase and r["tool"] == "pipes")
            L.append(f"| transfer floor ({n} bare send \\| receive pipe{'s, one after another' if n > 1 else ''}) | {fmt(pipes)} | {pipes['n']} |")
        L.append("")
        if fastest and row["zferry"]:
            L.append(f"zferry ÷ fastest peer ({NAMES.get(fastest[1], fastest[1])}): **{row['zferry']['median'] / fastest[0]:.2f}×**"
                     + (f"; zferry ÷ floor: **{row['zferry']['median'] / fl['median']:.2f}×**" if fl else "")
                     + (f"; zferry ÷ transfer floor: **{row['zferry']['median'] / pipes['median']:.2f}×**, fastest peer ÷ "
                        f"transfer floor: {fastest[0] / pipes['median']:.2f}×" if pipes else ""))
            L.append("")
        if fl:
            fr = [r for r in res["runs"] if r["phase"] == phase and r["tool"] == "floor"]
            L.append("Floor parts (median): source over ssh %.2f s (%d lines), target %.2f s (%d lines)." % (
                statistics.median(r["source_s"] for r in fr), fr[0]["source_lines"],
                statistics.median(r["target_s"] for r in fr), fr[0]["target_lines"]))
            L.append("")
        med[phase + ":fastest"] = fastest
        med[phase + ":floor"] = fl
        med[phase + ":pipes"] = pipes
    push = {}
    if any(r["phase"].startswith("push-") for r in res["runs"]):
        full_n = next((r.get("dest_datasets") for r in res["runs"] if r["tool"] == "into full"), "?")
        L.append(f"### push of one dataset ({c['tree_snaps']} snapshots), zferry only: into a destination root holding "
                 f"the wide tree ({full_n} datasets with snapshots) vs into an empty one")
        L.append("")
        L.append("| step | into full | into empty | full ÷ empty |")
        L.append("|---|---|---|---|")
        for step in ("push-initial", "push-noop"):
            a, b = stats(times(res, step, "into full")), stats(times(res, step, "into empty"))
            push[step] = (a, b)
            L.append(f"| {step[5:]} | {fmt(a)} | {fmt(b)} | {a['median'] / b['median']:.2f}× |" if a and b else f"| {step[5:]} | {fmt(a)} | {fmt(b)} | — |")
        L.append("")
    bulk = None
    if any(r["phase"] == "bulk" for r in res["runs"]):
        z, p = stats(times(res, "bulk", "zferry", "mib_per_s")), stats(times(res, "bulk", "bare pipe", "mib_per_s"))
        zs, ps = stats(times(res, "bulk", "zferry")), stats(times(res, "bulk", "bare pipe"))
        rss = [r.get("zferry_vmhwm_kib") for r in res["runs"] if r["phase"] == "bulk" and r["tool"] == "zferry" and r.get("zferry_vmhwm_kib")]
        tv = [r.get("time_v_max_rss_kib") for r in res["runs"] if r["phase"] == "bulk" and r["tool"] == "zferry" and r.get("time_v_max_rss_kib")]
        bulk = (z, p, rss, tv)
        L.append(f"### bulk: {c['bulk_mib']} MiB incompressible, raw push over ssh to localhost")
        L.append("")
        L.append("| | seconds | MiB/s |")
        L.append("|---|---|---|")
        L.append(f"| zferry push | {fmt(zs)} | {fmt(z)} |")
        L.append(f"| bare `zfs send -w \\| ssh zfs receive` | {fmt(ps)} | {fmt(p)} |")
        L.append("")
        if z and p:
            L.append(f"zferry ÷ bare pipe (median MiB/s): **{z['median'] / p['median']:.1%}**. zferry's peak RSS: "
                     f"{max(rss) / 1024 if rss else float('nan'):.1f} MiB (VmHWM of the zferry process, max over repetitions); "
                     f"`/usr/bin/time -v` max RSS {max(tv) / 1024 if tv else float('nan'):.1f} MiB (the largest of zferry and the "
                     "processes it waited for: zfs send, ssh).")
            L.append("")
    # goals
    L += ["## Goals (issue 12), judged on medians", "", "| goal | measured | verdict |", "|---|---|---|"]

    def ratio_goal(phase, limit, label):
        row = med.get(phase)
        fastest = med.get(phase + ":fastest")
        if not row or not row["zferry"] or not fastest:
            L.append(f"| {label} ≤ {limit}× fastest peer | not measured | — |")
            return
        r = row["zferry"]["median"] / fastest[0]
        # What no tool can beat in this VM: the listings' floor (no-op) or the bare pipes.
        floor, what = med.get(phase + ":floor"), "floor"
        if not floor:
            floor, what = med.get(phase + ":pipes"), "sequential transfer floor"
        reach = ""
        if floor:
            f = floor["median"] / fastest[0]
            reach = f"; {what} ÷ fastest peer {f:.2f}×" + (f" — the goal lies below the {what} here" if f > limit else "")
        L.append(f"| {label} ≤ {limit}× fastest peer | {r:.2f}× ({row['zferry']['median']:.2f} s vs {NAMES.get(fastest[1], fastest[1])} {fastest[0]:.2f} s{reach}) | {'PASS' if r <= limit else 'FAIL'} |")

    ratio_goal("tree-noop", 0.33, "no-op")
    fl = med.get("tree-noop:floor")
    if fl and med.get("tree-noop", {}).get("zferry"):
        r = med["tree-noop"]["zferry"]["median"] / fl["median"]
        L.append(f"| no-op ≤ 1.5× floor | {r:.2f}× ({med['tree-noop']['zferry']['median']:.2f} s vs floor {fl['median']:.2f} s) | {'PASS' if r <= 1.5 else 'FAIL'} |")
    ratio_goal("tree-initial", 0.5, "initial")
    ratio_goal("tree-plus1", 0.33, "+1 snapshot")
    ratio_goal("tree-plusmany", 0.5, f"+{c['plus_many']} snapshots on one child")
    ratio_goal("wide-noop", 0.25, "wide no-op")
    L += linear_rows(res, med)
    for step, (a, b) in push.items():
        if a and b:
            noise = max(0.10 * b["median"], b["max"] - b["min"], a["max"] - a["min"])
            d = a["median"] - b["median"]
            L.append(f"| push into full ≈ into empty ({step[5:]}; Δ of medians within max(10 % of empty, either spread)) | {a['median']:.2f} s vs {b['median']:.2f} s (Δ {d:+.2f} s, noise {noise:.2f} s) | {'PASS' if abs(d) <= noise else 'FAIL'} |")
    if bulk and bulk[0] and bulk[1]:
        z, p, rss, tv = bulk
        r = z["median"] / p["median"]
        L.append(f"| bulk ≥ 95 % of the bare pipe | {r:.1%} ({z['median']:.1f} vs {p['median']:.1f} MiB/s) | {'PASS' if r >= 0.95 else 'FAIL'} |")
        if rss:
            m = max(rss) / 1024
            L.append(f"| bulk peak RSS < 30 MiB | {m:.1f} MiB (zferry VmHWM, max of {len(rss)}) | {'PASS' if m < 30 else 'FAIL'} |")
    L.append("")
    L.append("Per-phase wall time in the guest (s): " + ", ".join(f"{k} {v}" for k, v in res.get("phase_seconds", {}).items()) + ".")
    if res.get("arc_prunes"):
        L.append("ARC prune requests per phase (a phase short of ARC climbs into the millions): "
                 + ", ".join(f"{k} {v:,}" for k, v in res["arc_prunes"].items()) + ".")
    L.append("")
    with open(out, "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    sys.exit(main())
