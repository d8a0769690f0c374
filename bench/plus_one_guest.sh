#!/bin/sh
# Where does "+1 snapshot on every dataset of a tree" go (issue 12, tree +1)? Runs as root
# in a lab guest with two pool disks and zferry installed:
#   export ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas ZFERRY_LAB_DISK=4G
#   tests/lab/lab up meas && tests/lab/lab provision target/release/zferry meas
#   tests/lab/lab cp meas bench/plus_one_guest.sh /root/p.sh
#   tests/lab/lab cp meas bench/guest_common.sh /root/guest_common.sh
#   tests/lab/lab cp meas OTHER-BUILD /usr/local/bin/zferry-b     # optional second build
#   tests/lab/lab ssh meas -- sh /root/p.sh [ROUNDS] [CHILDREN]
# PARALLEL_zferry / PARALLEL_zferry_b (environment) set that variant's `parallel`; with the
# same build copied to zferry-b, a run compares two settings. INITIAL_ROUNDS: below.
# A tree ps/t (1 + CHILDREN datasets) is copied once by each variant; then each round adds
# one snapshot (4 KiB of random data) to every dataset, and every variant pulls it over ssh
# from root@127.0.0.1 into a copy of its own, interleaved, the order rotated each round:
# the bare pipes (per dataset `ssh zfs send -i | zfs receive -u`, one after another over
# one ssh master, as the peers bench's floor), `zferry -v run` (a job with a state dir, so
# the listing cache works as in production; each variant's job is named after it, so each
# has its own hold tag on the shared source) and `zferry-b -v run` when present. Prints
# "round variant total-ms"; zferry's -v lines, stamped (ms since its start), are kept in
# /tmp/VARIANT-rROUND.log.
set -eu
# shellcheck source-path=SCRIPTDIR source=guest_common.sh
. "$(dirname "$0")/guest_common.sh"
ROUNDS=${1:-3}
CHILDREN=${2:-10}
variants=$(pull_setup ps pd)
datasets() { zfs list -H -o name -r ps/t; }
if ! zfs list -H ps/t >/dev/null 2>&1; then
  zfs create -o mountpoint=/ps/t ps/t
  i=0
  while [ "$i" -lt "$CHILDREN" ]; do zfs create "ps/t/c$(printf %03d "$i")"; i=$((i + 1)); done
  for d in $(datasets); do small_snapshots "$d" base 1; done
fi
for v in $variants; do
  [ "$v" = bare ] && continue
  cat > /root/"$v".toml <<EOF
state_dir = "/root/$v-state"

[jobs.$v]
kind = "pull"
host = "127.0.0.1"
user = "root"
datasets = ["ps/t"]
destination = "pd/$v"
EOF
  p=$(eval "echo \${PARALLEL_$(echo "$v" | tr - _):-}")
  [ -z "$p" ] || echo "parallel = $p" >> /root/"$v".toml
  zfs list -H pd/"$v" >/dev/null 2>&1 || zfs create pd/"$v"
  "$v" -q run --config /root/"$v".toml "$v"
done
if ! zfs list -H pd/bare >/dev/null 2>&1; then
  zfs create pd/bare
  ssh root@127.0.0.1 zfs send -R ps/t@basem000 | zfs receive -u -o canmount=noauto pd/bare/t
fi
MUX="-o ControlMaster=auto -o ControlPath=/tmp/bare-%C -o ControlPersist=60"
one() { # round variant
  round=$1 variant=$2
  zpool sync
  if [ "$variant" = bare ]; then
    s=$(date +%s%N)
    # shellcheck disable=SC2086 # the options are words
    ssh $MUX root@127.0.0.1 true
    for d in $(datasets); do
      copy="pd/bare/t${d#ps/t}"
      from=$(newest "$copy") to=$(newest "$d")
      # shellcheck disable=SC2086
      ssh $MUX root@127.0.0.1 zfs send -i "@$from" "$d@$to" | zfs receive -u "$copy"
    done
    e=$(date +%s%N)
    # shellcheck disable=SC2086
    ssh $MUX -O exit root@127.0.0.1 2>/dev/null || true
  else
    stamper /tmp/zferry.fifo /tmp/"$variant".log
    s=$(date +%s%N)
    "$variant" -v run --config /root/"$variant".toml "$variant" > /tmp/zferry.fifo 2>&1
    e=$(date +%s%N)
    wait
    awk -v t0="$(( s / 1000000 ))" '{ $1 -= t0; print }' /tmp/"$variant".log > /tmp/"$variant"-r"$round".log
  fi
  echo "$round $variant $(( (e - s) / 1000000 ))"
}
copy_of() { # variant dataset
  if [ "$1" = bare ]; then echo "pd/bare/t${2#ps/t}"; else echo "pd/$1/127.0.0.1/$2"; fi
}
# INITIAL_ROUNDS (environment, default 0): first, that many initial copies of the tree by
# each zferry variant, the order reversed every other round ("initial ROUND VARIANT ms"),
# each into a fresh destination with the variant's holds (source and copy) released.
i=1
while [ "$i" -le "${INITIAL_ROUNDS:-0}" ]; do
  order=$(for v in $variants; do [ "$v" = bare ] || echo "$v"; done)
  [ $((i % 2)) -eq 0 ] && order=$(echo "$order" | tac)
  for v in $order; do
    for snap in $(zfs list -H -o name -t snapshot -r ps/t pd/"$v"); do
      zfs release "zferry:$v" "$snap" 2>/dev/null || true
    done
    zfs destroy -r pd/"$v"
    rm -rf /root/"$v"-state
    zfs create pd/"$v"
    zpool sync
    s=$(date +%s%N)
    "$v" -q run --config /root/"$v".toml "$v"
    e=$(date +%s%N)
    echo "initial $i $v $(( (e - s) / 1000000 ))"
  done
  i=$((i + 1))
done
# The rounds' snapshots are named after the run, so a second run goes on from the first.
RUN_ID=$(date +%H%M%S)
r=1
while [ $r -le "$ROUNDS" ]; do
  for d in $(datasets); do small_snapshots "$d" "r${RUN_ID}n$r" 1; done
  sleep 3
  # shellcheck disable=SC2086 # the variants are words
  set -- $variants
  i=0; while [ $i -lt $((r % $#)) ]; do v=$1; shift; set -- "$@" "$v"; i=$((i + 1)); done
  for v in "$@"; do one $r "$v"; done
  # Every copy ends at its source's newest snapshot, same GUID.
  for d in $(datasets); do
    last=$(newest "$d")
    want=$(zfs get -Hpo value guid "$d@$last")
    for v in $variants; do
      [ "$(zfs get -Hpo value guid "$(copy_of "$v" "$d")@$last")" = "$want" ] || {
        echo "round $r: $(copy_of "$v" "$d") does not end at $d@$last" >&2; exit 1; }
    done
  done
  r=$((r + 1))
done
