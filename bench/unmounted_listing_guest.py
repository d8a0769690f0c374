#!/usr/bin/env python3
"""Snapshot listing cost of a mounted vs an unmounted filesystem (bench/noop-after-send.md).

Runs as root in a lab VM with a pool `dstpool`: makes dstpool/q20 and dstpool/q80 with 20 and 80
snapshots, times `zfs list -t snapshot -o name,guid,createtxg` of each (median of 3) mounted,
then unmounted."""
import subprocess, time
def sh(*a): return subprocess.run(a, check=True, stdout=subprocess.PIPE).stdout
for n in (20, 80):
    d = "dstpool/q%d" % n
    subprocess.run(["zfs","destroy","-r",d], stderr=subprocess.DEVNULL)
    sh("zfs","create",d)
    for i in range(n):
        open("/%s/f" % d, "wb").write(b"x" * 4096)
        sh("zfs","snapshot","%s@s%03d" % (d, i))
def t(d):
    x = []
    for _ in range(3):
        s = time.monotonic(); sh("zfs","list","-Hp","-t","snapshot","-s","createtxg","-o","name,guid,createtxg","-r",d); x.append(time.monotonic()-s)
    return sorted(x)[1]
for state in ("mounted", "unmounted"):
    for n in (20, 80):
        d = "dstpool/q%d" % n
        if state == "unmounted":
            subprocess.run(["zfs","unmount",d])
        m = t(d)
        print("%-9s n=%3d  %.2f s  %.1f ms/row" % (state, n, m, m * 1000 / n), flush=True)
