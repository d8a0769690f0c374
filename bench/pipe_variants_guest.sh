#!/bin/sh
# What costs a raw `zfs send -w | ssh zfs receive` pipe (issue 12, bulk). Runs as root in a
# lab guest provisioned with zferry (the user zferry reaches itself over 10.0.2.2:<port>):
#   tests/lab/lab cp meas bench/pipe_variants_guest.sh /root/p.sh
#   tests/lab/lab ssh meas -- sh /root/p.sh "$(tests/lab/lab port meas)" VARIANT...
# 512 MiB of random data (pool rp), sent into a fresh dataset each run, the VARIANTs
# interleaved, 3 rounds; prints "round variant milliseconds". Variants:
#   bare       zfs send -w | ssh zfs receive -u
#   cat        `cat` in the middle (read/write through user space, like a copying relay)
#   pv         `pv -q` in the middle (pipe to pipe with splice(2), no user-space copy)
#   resumable  the receive with zferry's flags (-u -s -o canmount=noauto)
#   mux        ssh through a ControlMaster socket (zferry's one connection per host)
# bench/relay-copy.md ran `bare cat pv`, bench/stream-variants.md `bare resumable mux`.
set -eu
PORT=${1:?usage: sh SCRIPT <port of the guest ssh on 10.0.2.2> VARIANT...}
shift
[ $# -gt 0 ] || set -- bare cat pv resumable mux
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
one() { # round variant
  case $2 in
    bare) pipe="zfs send -w rp/src@s1 | $ssh zfs receive -u rp/dst/copy" ;;
    cat) pipe="zfs send -w rp/src@s1 | cat | $ssh zfs receive -u rp/dst/copy" ;;
    pv) pipe="zfs send -w rp/src@s1 | pv -q | $ssh zfs receive -u rp/dst/copy" ;;
    resumable) pipe="zfs send -w rp/src@s1 | $ssh zfs receive -u -s -o canmount=noauto rp/dst/copy" ;;
    mux)
      su zferry -s /bin/sh -c "$mux true"
      pipe="zfs send -w rp/src@s1 | $mux zfs receive -u rp/dst/copy" ;;
    *) echo "unknown variant $2" >&2; exit 2 ;;
  esac
  s=$(date +%s%N)
  su zferry -s /bin/sh -c "$pipe"
  e=$(date +%s%N)
  echo "$1 $2 $(( (e - s) / 1000000 ))"
  zfs destroy -r rp/dst/copy
}
r=0; while [ $r -lt 3 ]; do
  for v in "$@"; do one $r "$v"; done
  r=$((r+1))
done
