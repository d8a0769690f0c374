#!/usr/bin/env bash
# Runs make targets side by side, each line prefixed with its target; fails naming every
# target that failed. `make test` runs molecule and the 2.4 lab this way: molecule's plays
# mostly wait on one VM's Python at a time and leave CPU the 2.4 lab tests can use.
#
#   tests/side-by-side.sh TARGET...
set -uo pipefail

(($# > 0)) || {
  echo "usage: $0 TARGET..." >&2
  exit 2
}
targets=("$@") pids=()
for target in "${targets[@]}"; do
  # `sed -u` keeps each target's lines whole and in time order in the shared output;
  # pipefail (inherited) makes the subshell fail with make.
  (${MAKE:-make} --no-print-directory "$target" 2>&1 | sed -u "s/^/[$target] /") &
  pids+=($!)
done
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${targets[$i]}")
done
if ((${#failed[@]})); then
  echo "side-by-side: failed: ${failed[*]}" >&2
  exit 1
fi
