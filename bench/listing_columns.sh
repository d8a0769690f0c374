#!/bin/sh
# What a `zfs list` of a wide tree costs per set of columns (issue 12, lean listings).
# Runs as root in a lab guest; makes pool `mp` on a file the first time:
#   ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas tests/lab/lab up meas
#   ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas tests/lab/lab cp meas bench/listing_columns.sh /root/l.sh
#   ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas tests/lab/lab ssh meas -- sh /root/l.sh 100 20 5
# Prints "variant milliseconds" per round, the variants interleaved.
set -eu
N=${1:-100}; S=${2:-20}; R=${3:-5}
if ! zpool list mp >/dev/null 2>&1; then
  truncate -s 900M /var/tmp/mp.img
  zpool create -O mountpoint=none mp /var/tmp/mp.img
  zfs create mp/t
  i=0; while [ $i -lt "$N" ]; do zfs create "mp/t/c$i"; i=$((i+1)); done
  j=0; while [ $j -lt "$S" ]; do zfs snapshot -r "mp/t@s$j"; j=$((j+1)); done
fi
# What a run lists today: every type, ten columns.
full() { zfs list -Hp -t filesystem,volume,snapshot,bookmark -s createtxg -o name,type,guid,createtxg,encryption,keystatus,written,receive_resume_token,userrefs,creation -r mp/t; }
# Filesystems alone, with their properties (and snapshots_changed, OpenZFS >= 2.2).
fs() { zfs list -Hp -t filesystem,volume -o name,encryption,keystatus,written,receive_resume_token,snapshots_changed -r mp/t; }
# Snapshots with the three columns planning needs, then with holds and creation time.
snaps() { zfs list -Hp -t snapshot,bookmark -s createtxg -o name,guid,createtxg -r mp/t; }
refs() { zfs list -Hp -t snapshot,bookmark -s createtxg -o name,guid,createtxg,userrefs -r mp/t; }
snaps5() { zfs list -Hp -t snapshot,bookmark -s createtxg -o name,guid,createtxg,userrefs,creation -r mp/t; }
# The two lean listings at once.
both() { fs >/dev/null & snaps >/dev/null; wait; }
t() { s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo "$1 $(( (e - s) / 1000000 ))"; }
r=0; while [ $r -lt "$R" ]; do
  t full; t fs; t snaps; t refs; t snaps5; t both
  r=$((r+1))
done
echo "rows: $(full | wc -l)"
