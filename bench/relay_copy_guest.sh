#!/bin/sh
# Does an extra process copying the stream cost a CPU-bound pipeline (issue 12, bulk)?
# Runs as root in a lab guest provisioned with zferry (the user zferry reaches itself
# over 10.0.2.2:<port>), like bench/compress_guest.sh:
#   tests/lab/lab cp meas bench/relay_copy_guest.sh /root/r.sh
#   tests/lab/lab ssh meas -- sh /root/r.sh "$(tests/lab/lab port meas)"
# 512 MiB of random data, raw send over ssh into a fresh dataset, three ways, interleaved,
# 3 rounds: bare `zfs send -w | ssh zfs receive`; with `cat` in the middle (read/write
# through user space, what zferry's relay does); with `pv -q` in the middle (pv moves a
# pipe to a pipe with splice(2), no user-space copy). Prints "round variant milliseconds".
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
recv="ssh -p $PORT zferry@10.0.2.2 zfs receive -u rp/dst/copy"
one() {
  s=$(date +%s%N)
  su zferry -s /bin/sh -c "zfs send -w rp/src@s1 $2 | $recv"
  e=$(date +%s%N)
  echo "$1 $3 $(( (e - s) / 1000000 ))"
  zfs destroy -r rp/dst/copy
}
r=0; while [ $r -lt 3 ]; do
  one $r "" bare
  one $r "| cat" cat
  one $r "| pv -q" pv
  r=$((r+1))
done
