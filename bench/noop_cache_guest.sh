#!/bin/sh
# Runs as root in a lab guest provisioned with zferry (tests/lab/lab provision), the
# user zferry pulling from itself over 10.0.2.2:<port> (tests/lab/lab port NAME).
# Pool mp and tree mp/t from bench/listing_columns.sh; /usr/local/bin/zferry-old a
# build without the listing cache. No-op pulls of mp/t (101 datasets, 2020 snapshots): zferry before the listing cache
# (zferry-old), with it (zferry), and the floor; interleaved, 5 rounds.
set -eu
PORT=${1:?usage: sh SCRIPT <port of the guest ssh on 10.0.2.2>}
J="pull --host 10.0.2.2 --port $PORT --user zferry --name c --datasets mp/t"
zfs allow -u zferry send,hold,release mp/t
zfs list mp/nold >/dev/null 2>&1 || { zfs create mp/nold; zfs allow -u zferry create,mount,canmount,receive,hold,release mp/nold; }
as() { su zferry -s /bin/sh -c "$*"; }
t() { s=$(date +%s%N); "$@" >/dev/null 2>/tmp/err || { cat /tmp/err; exit 1; }; e=$(date +%s%N); echo "$(( (e - s) / 1000000 ))"; }
old() { as zferry-old -q $J --destination mp/nold --job-name nold; }
# The same job, copy and hold tag: both are no-ops on the same state.
new() { as zferry -q $J --destination mp/nold --job-name nold; }
floor() { as "ssh -o BatchMode=yes -p $PORT zferry@10.0.2.2 zfs list -Hp -t snapshot -o name,guid,createtxg -r mp/t" >/dev/null; zfs list -Hp -t snapshot -o name,guid,createtxg -r mp/nold/c/mp/t >/dev/null; }
echo "initial old $(t old)"
sleep 3
echo "fill new $(t new)"; sleep 3
r=0; while [ $r -lt 5 ]; do
  echo "noop old $(t old)"; echo "noop new $(t new)"; echo "floor $(t floor)"
  r=$((r+1))
done
