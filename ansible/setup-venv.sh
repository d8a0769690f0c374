#!/usr/bin/env bash
# Creates (or reuses) the Python venv with ansible-core, ansible-lint, ansible-test and molecule.
# Prints the venv directory. Idempotent: reinstalls only when requirements-dev.txt changed.
#
# Environment: ZFERRY_ANSIBLE_VENV (default /var/cache/zferry-venv).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${ZFERRY_ANSIBLE_VENV:-/var/cache/zferry-venv}
stamp="$venv/.zferry-requirements"

if [[ -x $venv/bin/ansible-playbook && -f $stamp ]] && cmp -s "$stamp" "$here/requirements-dev.txt"; then
  echo "$venv"
  exit 0
fi
command -v python3 >/dev/null || { echo "setup-venv: python3 is missing" >&2; exit 1; }
python3 -m venv "$venv" >&2 || {
  echo "setup-venv: python3 -m venv failed; install python3-venv (tests/lab/setup-host.sh does)" >&2
  exit 1
}
"$venv/bin/pip" install -q --upgrade pip >&2
"$venv/bin/pip" install -q -r "$here/requirements-dev.txt" >&2
cp "$here/requirements-dev.txt" "$stamp"
echo "$venv"
