#!/bin/sh
# Where does a bulk push lose against the bare pipe (issue 12, bulk ≥ 95 %)? Runs as root
# in a lab guest with two 4G pool disks (ZFERRY_LAB_DISK=4G) and zferry installed:
#   export ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas ZFERRY_LAB_DISK=4G
#   tests/lab/lab up meas && tests/lab/lab provision target/release/zferry meas
#   tests/lab/lab cp meas bench/bulk_phases_guest.sh /root/b.sh
#   tests/lab/lab cp meas bench/guest_common.sh /root/guest_common.sh
#   tests/lab/lab cp meas OTHER-BUILD /usr/local/bin/zferry-b     # optional second build
#   tests/lab/lab ssh meas -- sh /root/b.sh [ROUNDS] [MIB]
# Like the bulk phase of `make bench-peers`: MIB (1024) of random data in one dataset, a raw
# push over ssh to root@127.0.0.1 (the guest's own loopback), into a fresh dataset each run.
# Variants interleaved, the order rotated each round: the bare `zfs send -w | ssh zfs
# receive`, `zferry push -v`, and `zferry-b push -v` when present. zferry's -v lines are
# stamped, so its time splits into before the stream (ssh connect, listings, holds), the
# stream (the `zfs send` line to the next line) and after it (verify, release, report).
# Prints "round variant total-ms before-ms stream-ms after-ms zferry-cpu-ms guest-cpu-ms
# zferry-read+write-calls zferry-context-switches" per run: zferry's own CPU time (not its
# children's) and all CPU the guest spent meanwhile.
set -eu
# shellcheck source-path=SCRIPTDIR source=guest_common.sh
. "$(dirname "$0")/guest_common.sh"
ROUNDS=${1:-5}
MIB=${2:-1024}
if ! zpool list bs >/dev/null 2>&1; then
  zpool create -f -O mountpoint=none -O compression=off bs /dev/vdb
  zpool create -f -O mountpoint=none bd /dev/vdc
  zfs create -o mountpoint=/bs/src bs/src
  dd if=/dev/urandom of=/bs/src/random.bin bs=1M count="$MIB" status=none
  zfs snapshot bs/src@s1
fi
ssh_to_self
variants=$(variants)

# Drops every hold under $1 (zferry holds both ends), then $1 itself.
scrub() {
  zfs list -H -t snapshot -o name -r "$1" | while read -r snap; do
    zfs holds -H "$snap" | while read -r _ tag _; do zfs release "$tag" "$snap"; done
  done
  zfs destroy -r "$1"
}
# Guest CPU busy so far, in ms of all vCPUs (/proc/stat: user nice system irq softirq steal).
busy() {
  read -r _ u n sy _ _ irq sirq st _ < /proc/stat
  echo $(( (u + n + sy + irq + sirq + st) * 1000 / $(getconf CLK_TCK) ))
}
one() { # round variant
  round=$1 variant=$2
  if zfs list -H bd/"$variant" >/dev/null 2>&1; then scrub bd/"$variant"; fi
  zfs release "zferry:$variant" bs/src@s1 2>/dev/null || true
  zfs create bd/"$variant"
  zpool sync
  if [ "$variant" = bare ]; then
    b0=$(busy)
    s=$(date +%s%N)
    zfs send -w bs/src@s1 | ssh root@127.0.0.1 zfs receive -u bd/bare/src
    e=$(date +%s%N)
    echo "$round $variant $(( (e - s) / 1000000 )) - - - - $(( $(busy) - b0 )) - -"
  else
    stamper /tmp/zferry.fifo /tmp/"$variant".log
    b0=$(busy)
    s=$(date +%s%N)
    "$variant" -v push --host 127.0.0.1 --user root --datasets bs/src --destination bd/"$variant" \
      --strip-prefix bs --job-name "$variant" --parallel 1 > /tmp/zferry.fifo 2>&1 &
    pid=$!
    # zferry's own CPU (utime + stime, not its children's): read until it is a zombie,
    # whose stat still holds the final counts.
    # Its read and write calls (/proc/PID/io) and context switches (all threads) are read
    # in the same loop: they tell whether its CPU goes to many small chunks.
    while read -r stat 2>/dev/null < /proc/$pid/stat; do
      calls=$(awk '/^sysc[rw]/ { n += $2 } END { print n }' /proc/$pid/io 2>/dev/null) || break
      switches=$(cat /proc/$pid/task/*/status 2>/dev/null |
        awk '/ctxt_switches/ { n += $2 } END { print n }') || break
      # shellcheck disable=SC2086 # the fields of stat
      set -- $stat
      [ "$3" = Z ] && break
      sleep 1
    done
    e=$(date +%s%N)
    own=$(( (${14} + ${15}) * 1000 / $(getconf CLK_TCK) ))
    all=$(( $(busy) - b0 ))
    wait
    total=$(( (e - s) / 1000000 ))
    awk -v r="$round" -v v="$variant" -v total="$total" -v t0="$(( s / 1000000 ))" -v own="$own" -v all="$all" -v calls="$calls" -v sw="$switches" '
      { $1 -= t0 }
      / \+ \[[^]]*\] zfs send / { start = $1; stop = 0; next }
      start && !stop && / \+ \[/ { stop = $1 }
      END { if (!start || !stop) { print "no stream in log" > "/dev/stderr"; exit 1 }
            print r, v, total, start, stop - start, total - stop, own, all, calls, sw }' /tmp/"$variant".log
  fi
  # The copy must be the source's snapshot.
  [ "$(zfs get -Hpo value guid bs/src@s1)" = "$(zfs get -Hpo value guid bd/"$variant"/src@s1)" ]
}
r=0
while [ $r -lt "$ROUNDS" ]; do
  # shellcheck disable=SC2086 # the variants are words
  set -- $variants
  i=0; while [ $i -lt $((r % $#)) ]; do v=$1; shift; set -- "$@" "$v"; i=$((i + 1)); done
  for v in "$@"; do one $r "$v"; done
  r=$((r + 1))
done
