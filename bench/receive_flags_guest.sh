#!/bin/sh
# Which of zferry's receive flags costs per snapshot in a stream of many small ones (issue
# 12, tree +N)? Runs as root in a lab guest with two pool disks:
#   export ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas ZFERRY_LAB_DISK=4G
#   tests/lab/lab up meas
#   tests/lab/lab cp meas bench/receive_flags_guest.sh /root/f.sh
#   tests/lab/lab cp meas bench/guest_common.sh /root/guest_common.sh
#   tests/lab/lab ssh meas -- sh /root/f.sh [ROUNDS] [SNAPS]
# Each round adds SNAPS snapshots (4 KiB of random data each) to fs/src; then each variant
# receives them, `zfs send -I | zfs receive FLAGS` on the guest itself (no ssh: only the
# receive differs), into a copy of its own, the order rotated each round. Prints "round
# variant ms".
set -eu
# shellcheck source-path=SCRIPTDIR source=guest_common.sh
. "$(dirname "$0")/guest_common.sh"
ROUNDS=${1:-3}
SNAPS=${2:-100}
pools_with_base fs fd
# variant name and its receive flags
flags() {
  case $1 in
    plain) echo "-u" ;;
    resumable) echo "-u -s" ;;
    noauto) echo "-u -o canmount=noauto" ;;
    zferry) echo "-u -s -o canmount=noauto" ;;
  esac
}
variants="plain resumable noauto zferry"
for v in $variants; do
  zfs list -H "fd/$v" >/dev/null 2>&1 || zfs send fs/src@base | zfs receive -u "fd/$v"
done
r=1
while [ $r -le "$ROUNDS" ]; do
  small_snapshots fs/src "r$r" "$SNAPS"
  last=$(newest fs/src)
  # shellcheck disable=SC2086 # the variants are words
  set -- $variants
  i=0; while [ $i -lt $((r % $#)) ]; do v=$1; shift; set -- "$@" "$v"; i=$((i + 1)); done
  for v in "$@"; do
    zpool sync
    from=$(newest "fd/$v")
    s=$(date +%s%N)
    # shellcheck disable=SC2046 # the flags are words
    zfs send -I "@$from" "fs/src@$last" | zfs receive $(flags "$v") "fd/$v"
    e=$(date +%s%N)
    [ "$(zfs get -Hpo value guid "fd/$v@$last")" = "$(zfs get -Hpo value guid "fs/src@$last")" ]
    echo "$r $v $(( (e - s) / 1000000 ))"
  done
  r=$((r + 1))
done
