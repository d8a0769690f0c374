#!/bin/sh
# Runs as root in a lab guest provisioned with zferry (tests/lab/lab provision), the
# user zferry pulling from itself over 10.0.2.2:<port> (tests/lab/lab port NAME).
# Pool mp from bench/listing_columns.sh. Initial pull of a tree (1 + 24 datasets x 5
# snapshots) at parallel 1/2/4/8, then a no-op, interleaved, 3 rounds.
set -eu
PORT=${1:?usage: sh SCRIPT <port of the guest ssh on 10.0.2.2>}
if ! zfs list mp/w >/dev/null 2>&1; then
  zfs create mp/w
  i=0; while [ $i -lt 24 ]; do zfs create mp/w/c$i; i=$((i+1)); done
  # Empty datasets: what parallel overlaps is the per-dataset cost, not the bytes.
  for s in s1 s2 s3 s4 s5; do zfs snapshot -r mp/w@$s; done
fi
zfs allow -u zferry send,hold,release mp/w
t() { s=$(date +%s%N); "$@" >/dev/null 2>/tmp/err || { cat /tmp/err; exit 1; }; e=$(date +%s%N); echo "$(( (e - s) / 1000000 ))"; }
run() { su zferry -s /bin/sh -c "zferry -q pull --host 10.0.2.2 --port $PORT --user zferry --name c --datasets mp/w --destination mp/r${r}p$1 --job-name r${r}p$1 --parallel $1"; }
r=0; while [ $r -lt 3 ]; do
  for p in 1 2 4 8; do
    zfs create mp/r${r}p$p; zfs allow -u zferry create,mount,canmount,receive,hold,release mp/r${r}p$p
    echo "round $r parallel $p initial $(t run $p)"
    echo "round $r parallel $p noop $(t run $p)"
  done
  r=$((r+1))
done
