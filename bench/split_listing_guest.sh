#!/bin/sh
# Does listing unmounted copies go faster in concurrent parts (issue 12, wide no-op)? Runs
# as root in a lab guest with two pool disks:
#   export ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas ZFERRY_LAB_DISK=4G ZFERRY_LAB_MEM=3072
#   tests/lab/lab up meas
#   tests/lab/lab cp meas bench/split_listing_guest.sh /root/s.sh
#   tests/lab/lab cp meas bench/guest_common.sh /root/guest_common.sh
#   tests/lab/lab ssh meas -- sh /root/s.sh [ROUNDS] [CHILDREN]
# A tree ps/w (1 + CHILDREN filesystems, 2 snapshots each) is copied once with
# `zfs send -R | zfs receive -u` into pd/copy/w (unmounted, as on a backup server). Each
# round then lists the copies' filesystems with the columns a cached zferry run asks, in
# every way below, the order rotated each round:
#   whole   one `zfs list -r` of the copy root (what zferry does);
#   named1  one `zfs list -d 0` naming every copy;
#   namedK  the names in K parts, K listings at once (K = 2, 4, 8).
# Prints "round way ms rows"; a way whose rows differ from whole's is an error.
set -eu
# shellcheck source-path=SCRIPTDIR source=guest_common.sh
. "$(dirname "$0")/guest_common.sh"
ROUNDS=${1:-3}
CHILDREN=${2:-300}
pools_with_base ps pd
if ! zfs list -H pd/copy/w >/dev/null 2>&1; then
  zfs create -o mountpoint=/ps/w ps/w
  i=0
  while [ "$i" -lt "$CHILDREN" ]; do zfs create "ps/w/c$(printf %03d "$i")"; i=$((i + 1)); done
  zfs snapshot -r ps/w@a
  zfs snapshot -r ps/w@b
  zfs create -u pd/copy
  zfs send -R ps/w@b | zfs receive -u pd/copy/w
fi
cols="name,type,guid,createtxg,encryption,keystatus,written,receive_resume_token,userrefs,creation,snapshots_changed"
list="zfs list -Hp -t filesystem,volume -s createtxg -o $cols"
zfs list -H -o name -r pd/copy/w > /tmp/names
rows=$(wc -l < /tmp/names)
# Part $2 of $1 of the names, one a line.
part() { awk -v k="$1" -v i="$2" '(NR - 1) % k == i' /tmp/names; }
named() { # K
  k=$1 i=0
  while [ "$i" -lt "$k" ]; do
    # shellcheck disable=SC2046 # the names are words
    $list -d 0 $(part "$k" "$i") > "/tmp/part$i" &
    i=$((i + 1))
  done
  wait
  cat /tmp/part* > /tmp/out
  rm -f /tmp/part*
}
way() { # name
  case $1 in
  whole) $list -r pd/copy/w > /tmp/out ;;
  named*) named "${1#named}" ;;
  esac
}
ways="whole named1 named2 named4 named8"
round=1
while [ $round -le "$ROUNDS" ]; do
  # Rotate the order by one each round.
  order=$(echo "$ways" | awk -v r="$round" '{ n = NF; for (i = 0; i < n; i++) printf "%s ", $(((i + r - 1) % n) + 1) }')
  for w in $order; do
    zpool sync
    s=$(date +%s%N)
    way "$w"
    e=$(date +%s%N)
    got=$(wc -l < /tmp/out)
    [ "$got" -eq "$rows" ] || { echo "$w listed $got rows, not $rows" >&2; exit 1; }
    echo "$round $w $(( (e - s) / 1000000 )) $got"
  done
  round=$((round + 1))
done
