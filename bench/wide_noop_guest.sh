#!/bin/sh
# Where does a no-op run over a wide tree go (issue 12, wide no-op)? Runs as root in a lab
# guest with two pool disks and zferry installed:
#   export ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas ZFERRY_LAB_DISK=4G ZFERRY_LAB_MEM=3072
#   tests/lab/lab up meas && tests/lab/lab provision target/release/zferry meas
#   tests/lab/lab cp meas bench/wide_noop_guest.sh /root/w.sh
#   tests/lab/lab cp meas bench/guest_common.sh /root/guest_common.sh
#   tests/lab/lab cp meas OTHER-BUILD /usr/local/bin/zferry-b     # optional second build
#   tests/lab/lab ssh meas -- sh /root/w.sh [ROUNDS] [CHILDREN]
# A tree ps/w (1 + CHILDREN datasets, 2 snapshots each) is pulled once by zferry over ssh
# from root@127.0.0.1 into pd/zferry (unmounted copies, as on a backup server); then each
# round times, one after the other: `zferry -v run` with nothing new (stamped -v lines in
# /tmp/noop-rROUND.log), then `zferry-b -v run` when present (the same job and state: a
# no-op changes neither; the two builds' order swapped every other round, stamped lines in
# /tmp/noop-b-rROUND.log), and alone the commands such a run sends: the filesystem listing
# of each side, `zfs holds` of the job's held snapshots on each side. Prints
# "round what ms".
set -eu
# shellcheck source-path=SCRIPTDIR source=guest_common.sh
. "$(dirname "$0")/guest_common.sh"
ROUNDS=${1:-3}
CHILDREN=${2:-300}
pull_setup ps pd >/dev/null
if ! zfs list -H ps/w >/dev/null 2>&1; then
  zfs create -o mountpoint=/ps/w ps/w
  i=0
  while [ "$i" -lt "$CHILDREN" ]; do zfs create "ps/w/c$(printf %03d "$i")"; i=$((i + 1)); done
  zfs snapshot -r ps/w@a
  zfs snapshot -r ps/w@b
fi
cat > /root/wide.toml <<EOF
state_dir = "/root/wide-state"

[jobs.wide]
kind = "pull"
host = "127.0.0.1"
user = "root"
datasets = ["ps/w"]
destination = "pd/zferry"
EOF
zfs list -H pd/zferry >/dev/null 2>&1 || zfs create pd/zferry
zferry -q run --config /root/wide.toml wide
copies=pd/zferry/127.0.0.1/ps/w
held() { zfs list -H -t snapshot -o name,userrefs -r "$1" | awk '$2 > 0 { print $1 }'; }
ms() { # what command...
  what=$1; shift
  s=$(date +%s%N)
  "$@" > /dev/null
  e=$(date +%s%N)
  echo "$round $what $(( (e - s) / 1000000 ))"
}
src_held=$(held ps/w) dst_held=$(held "$copies")
fs="name,type,guid,createtxg,encryption,keystatus,written,receive_resume_token,userrefs,creation,snapshots_changed"
round=1
while [ $round -le "$ROUNDS" ]; do
  builds=zferry
  if command -v zferry-b >/dev/null; then
    if [ $((round % 2)) -eq 1 ]; then builds="zferry zferry-b"; else builds="zferry-b zferry"; fi
  fi
  for b in $builds; do
    zpool sync
    stamper /tmp/zferry.fifo /tmp/noop.log
    s=$(date +%s%N)
    "$b" -v run --config /root/wide.toml wide > /tmp/zferry.fifo 2>&1
    e=$(date +%s%N)
    wait
    log=/tmp/noop-r"$round".log what=zferry-noop
    [ "$b" = zferry ] || log=/tmp/noop-b-r"$round".log what=zferry-b-noop
    awk -v t0="$(( s / 1000000 ))" '{ $1 -= t0; print }' /tmp/noop.log > "$log"
    echo "$round $what $(( (e - s) / 1000000 ))"
  done
  ms ssh-true ssh root@127.0.0.1 true
  ms src-fs-listing ssh root@127.0.0.1 zfs list -Hp -t filesystem,volume -o "$fs" -r ps/w
  ms dst-fs-listing zfs list -Hp -t filesystem,volume -o "$fs" -r "$copies"
  ms dst-fs-listing-no-written zfs list -Hp -t filesystem,volume -o name,guid,snapshots_changed -r "$copies"
  # shellcheck disable=SC2086 # the names are words
  ms src-holds ssh root@127.0.0.1 zfs holds -H $src_held
  # shellcheck disable=SC2086
  ms dst-holds zfs holds -H $dst_held
  # shellcheck disable=SC2086
  ms dst-userrefs zfs get -Hp -o name,value userrefs $dst_held
  round=$((round + 1))
done
