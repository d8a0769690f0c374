#!/bin/sh
# Where a zferry push's stream loses to the bare pipe (issue 12, bulk). Runs as root in a
# lab guest provisioned with zferry, like bench/relay_copy_guest.sh (same pool rp, 512 MiB
# random): the bare pipe; its receive with zferry's flags (-s -o canmount=noauto); and
# its ssh through a ControlMaster socket (zferry keeps one SSH connection per host and
# runs every command as a session on it). Interleaved, 3 rounds; "round variant ms".
set -eu
PORT=${1:?usage: sh SCRIPT <port of the guest ssh on 10.0.2.2>}
if ! zpool list rp >/dev/null 2>&1; then
  truncate -s 1400M /var/tmp/rp.img
  zpool create -O mountpoint=none rp /var/tmp/rp.img
  zfs create -o mountpoint=/rp/src rp/src
  head -c 512M /dev/urandom > /rp/src/random
  zfs snapshot rp/src@s1
  zfs create rp/dst
fi
zfs allow -u zferry send rp/src
zfs allow -u zferry create,mount,canmount,receive rp/dst
ssh="ssh -p $PORT zferry@10.0.2.2"
mux="ssh -o ControlMaster=auto -o ControlPath=/tmp/zf-cm -o ControlPersist=600 -p $PORT zferry@10.0.2.2"
su zferry -s /bin/sh -c "$mux true"
one() {
  s=$(date +%s%N)
  su zferry -s /bin/sh -c "zfs send -w rp/src@s1 | $2 zfs receive $3 rp/dst/copy"
  e=$(date +%s%N)
  echo "$1 $4 $(( (e - s) / 1000000 ))"
  zfs destroy -r rp/dst/copy
}
r=0; while [ $r -lt 3 ]; do
  one $r "$ssh" "-u" bare
  one $r "$ssh" "-u -s -o canmount=noauto" resumable
  one $r "$mux" "-u" mux
  r=$((r+1))
done
