#!/bin/sh
# The no-op run right after a run that sent, old binary against new, interleaved
# (bench/noop-after-send.md). Runs in the bench VM that `BENCH_KEEP=1 bench/peers.py`
# leaves up, with zferry's `tree` job replicated: each round takes one recursive
# snapshot of srcpool/tree, lets it settle (SETTLE = 2 s), sends it with BIN, then times
# BIN's next run (nothing new: a no-op). Usage: noop_after_send_guest.sh OLD NEW ROUNDS
set -eu
old=$1 new=$2 rounds=$3
cfg=/root/bench/zferry.toml
ms() { echo $(( $(date +%s%N) / 1000000 )); }
i=0
while [ "$i" -lt "$rounds" ]; do
  i=$((i + 1))
  for bin in "$old" "$new"; do
    zfs snapshot -r "srcpool/tree@r$i-$(basename "$bin")"
    sleep 3
    t0=$(ms); "$bin" -q run --config "$cfg" tree; t1=$(ms)
    zpool sync
    t2=$(ms); "$bin" -q run --config "$cfg" tree; t3=$(ms)
    echo "round $i $(basename "$bin") send $((t1 - t0)) ms, no-op after it $((t3 - t2)) ms"
  done
done
