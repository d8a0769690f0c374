#!/bin/sh
# Why does +N small snapshots on one dataset cost zferry more than the bare pipe (issue 12,
# tree +N)? Runs as root in a lab guest with two pool disks and zferry installed:
#   export ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas ZFERRY_LAB_DISK=4G
#   tests/lab/lab up meas && tests/lab/lab provision target/release/zferry meas
#   tests/lab/lab cp meas bench/many_snapshots_guest.sh /root/m.sh
#   tests/lab/lab cp meas bench/guest_common.sh /root/guest_common.sh
#   tests/lab/lab cp meas OTHER-BUILD /usr/local/bin/zferry-b     # optional second build
#   tests/lab/lab ssh meas -- sh /root/m.sh [ROUNDS] [SNAPS]
# Each round adds SNAPS snapshots (4 KiB of random data each) to ms/src, then every variant
# pulls them over ssh from root@127.0.0.1 into a copy of its own, interleaved, the order
# rotated each round: the bare `ssh zfs send -I | zfs receive` with zferry's receive flags,
# `zferry -v pull`, and `zferry-b -v pull` when present. Prints "round variant total-ms
# before-ms stream-ms after-ms" (zferry's -v lines stamped: the stream runs from its `zfs
# send` line to the next command line).
set -eu
# shellcheck source-path=SCRIPTDIR source=guest_common.sh
. "$(dirname "$0")/guest_common.sh"
ROUNDS=${1:-3}
SNAPS=${2:-100}
variants=$(pull_setup ms md)
for v in $variants; do
  zfs list -H md/"$v" >/dev/null 2>&1 || zfs create md/"$v"
done
# The bare pipe's copy starts from the same base as zferry's.
if ! zfs list -H md/bare/src >/dev/null 2>&1; then
  zfs send ms/src@base | zfs receive -u -o canmount=noauto md/bare/src
fi
one() { # round variant
  round=$1 variant=$2
  zpool sync
  if [ "$variant" = bare ]; then
    from=$(newest md/bare/src) to=$(newest ms/src)
    s=$(date +%s%N)
    ssh root@127.0.0.1 zfs send -I "@$from" "ms/src@$to" | zfs receive -u -s -o canmount=noauto md/bare/src
    e=$(date +%s%N)
    echo "$round $variant $(( (e - s) / 1000000 )) - - -"
  else
    stamper /tmp/zferry.fifo /tmp/"$variant".log
    s=$(date +%s%N)
    "$variant" -v pull --host 127.0.0.1 --user root --datasets ms/src --destination md/"$variant" \
      --job-name "$variant" --parallel 1 > /tmp/zferry.fifo 2>&1
    e=$(date +%s%N)
    wait
    cp /tmp/"$variant".log /tmp/"$variant"-r"$round".log
    awk -v r="$round" -v v="$variant" -v total="$(( (e - s) / 1000000 ))" -v t0="$(( s / 1000000 ))" '
      { $1 -= t0 }
      / \+ \[[^]]*\] zfs send / { start = $1; stop = 0; next }
      / \+ \[[^]]*\] ssh .* zfs send / { start = $1; stop = 0; next }
      start && !stop && / \+ \[/ { stop = $1 }
      END { if (!start || !stop) { print r, v, total, "- - - (no stream line found)"; exit }
            print r, v, total, start, stop - start, total - stop }' /tmp/"$variant".log
  fi
}
copy_of() { # variant
  if [ "$1" = bare ]; then echo md/bare/src; else echo "md/$1/127.0.0.1/ms/src"; fi
}
# zferry's first run copies the base (not timed).
for v in $variants; do
  [ "$v" = bare ] || "$v" -q pull --host 127.0.0.1 --user root --datasets ms/src \
    --destination md/"$v" --job-name "$v" --parallel 1
done
r=1
while [ $r -le "$ROUNDS" ]; do
  small_snapshots ms/src "r$r" "$SNAPS"
  sleep 3
  # shellcheck disable=SC2086 # the variants are words
  set -- $variants
  i=0; while [ $i -lt $((r % $#)) ]; do v=$1; shift; set -- "$@" "$v"; i=$((i + 1)); done
  for v in "$@"; do one $r "$v"; done
  # Every copy ends at the source's newest snapshot, same GUID.
  last=$(newest ms/src)
  want=$(zfs get -Hpo value guid "ms/src@$last")
  for v in $variants; do
    [ "$(zfs get -Hpo value guid "$(copy_of "$v")@$last")" = "$want" ] || {
      echo "round $r: $(copy_of "$v") does not end at ms/src@$last" >&2; exit 1; }
  done
  r=$((r + 1))
done
