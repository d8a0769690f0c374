#!/bin/sh
# What `compress` buys and costs (issue 12 item 3). Runs as root in a lab guest
# provisioned with zferry (release build), the user zferry pulling from itself over
# 10.0.2.2:<port>, so the wire is ssh through the guest's own stack:
#   export ZFERRY_LAB_RUN=/var/tmp/zferry-lab-meas
#   tests/lab/lab up meas && tests/lab/lab provision target/release/zferry meas
#   tests/lab/lab cp meas bench/compress_guest.sh /root/c.sh
#   tests/lab/lab ssh meas -- sh /root/c.sh "$(tests/lab/lab port meas)"
# Two datasets: `text`, 96 MiB of the guest's own /usr (binaries, libraries, text: what a
# system backup holds), and `noise`, 48 MiB from /dev/urandom (the worst case: nothing to
# gain). Each run is an initial pull into a fresh destination; variants interleaved,
# 3 rounds. Prints "round variant milliseconds stream-bytes wire-bytes" per run.
set -eu
PORT=${1:?usage: sh SCRIPT <port of the guest ssh on 10.0.2.2>}
if ! zpool list cp >/dev/null 2>&1; then
  truncate -s 1200M /var/tmp/cp.img
  zpool create -O mountpoint=none cp /var/tmp/cp.img
  zfs create -o mountpoint=/cp/text -o compression=off cp/text
  zfs create -o mountpoint=/cp/noise -o compression=off cp/noise
  tar cf - /usr 2>/dev/null | head -c 96M > /cp/text/usr.tar
  head -c 48M /dev/urandom > /cp/noise/random
  zfs snapshot cp/text@s1
  zfs snapshot cp/noise@s1
  zfs allow -u zferry send,hold,release cp
fi
one() { # round name dataset compress [bwlimit]
  dst=cp/r$1$2
  zfs create "$dst"
  zfs allow -u zferry create,mount,canmount,receive,hold,release "$dst"
  lim=${5:+--bwlimit $5}
  s=$(date +%s%N)
  su zferry -s /bin/sh -c "zferry -q pull --host 10.0.2.2 --port $PORT --user zferry --name c --datasets $3 --destination $dst --job-name r$1$2 --compress $4 $lim --json" > /tmp/rep.json
  e=$(date +%s%N)
  python3 -c 'import json; d = json.load(open("/tmp/rep.json"))["datasets"][0]; assert d["action"] == "full", d; print(d["bytes"], d.get("wire_bytes", d["bytes"]))' > /tmp/sizes
  echo "$1 $2 $(( (e - s) / 1000000 )) $(cat /tmp/sizes)"
  zfs release "zferry:r$1$2" "$dst/c/$3@s1" "$3@s1"
  zfs destroy -r "$dst"
}
r=0; while [ $r -lt 3 ]; do
  one $r text-none cp/text none
  one $r text-zstd1 cp/text zstd:1
  one $r text-zstd3 cp/text zstd:3
  one $r text-none-4M cp/text none 4M
  one $r text-zstd3-4M cp/text zstd:3 4M
  one $r noise-none cp/noise none
  one $r noise-zstd3 cp/noise zstd:3
  r=$((r+1))
done
