#!/usr/bin/env bash
# Checks the collection: ansible-doc renders every module, ansible-lint, ansible-test
# sanity. Needs no module binaries and no lab. Run from anywhere.
#
# ansible-test wants the collection at .../ansible_collections/zferry/zfs, so the tracked
# (and new, not ignored) files are copied into a temporary tree of that shape; built
# binaries are not source and are left out. Sanity runs with --python 3.11 --local (the
# venv's Python): no containers here, and other Python versions are not installed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=$("$here/setup-venv.sh")
export PATH="$venv/bin:$PATH"
tmp=$(mktemp -d /tmp/zferry-collection.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
coll="$tmp/ansible_collections/zferry/zfs"
mkdir -p "$coll"
# Files deleted in the working tree but still tracked are skipped.
# shellcheck disable=SC2016 # $1/$2 are for the inner sh, not this one
(cd "$here" && git ls-files -z --cached --others --exclude-standard -- . |
  xargs -0 -I{} sh -c '[ ! -e "$1" ] || cp --parents -P "$1" "$2"' _ {} "$coll")
# ansible-test lists a collection's files with git when it is in a repository.
git -C "$coll" init -q && git -C "$coll" add -A

fail=0
export ANSIBLE_COLLECTIONS_PATH="$tmp"
for m in zfs_allow zfs_pull zfs_push; do
  out=$(ansible-doc "zferry.zfs.$m" 2>&1) || { echo "$out"; fail=1; continue; }
  if grep -q 'WARNING\|ERROR' <<<"$out" || ! grep -q 'OPTIONS' <<<"$out" || ! grep -q 'EXAMPLES:' <<<"$out" || ! grep -q 'RETURN VALUES:' <<<"$out"; then
    echo "check: ansible-doc zferry.zfs.$m is incomplete:" >&2
    echo "$out" >&2
    fail=1
  else
    echo "check: ansible-doc zferry.zfs.$m: options, examples and return values" >&2
  fi
done

echo "check: ansible-lint" >&2
# No path argument: ansible-lint then finds every playbook, role and meta file itself.
(cd "$coll" && ansible-lint --offline --nocolor) || fail=1

echo "check: role README tables vs meta/argument_specs.yml and defaults" >&2
python "$here/../tests/roles_doc.py" || fail=1

# ansible-test bootstraps pip in its test venvs with a script from ci-files.testing.ansible.com,
# which is unreachable here; seed its cache with an ensurepip + PyPI stand-in.
pip_version=$(python3 -c 'from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version="3.11", path="/x"))["pip"])' 2>/dev/null || echo 24.2)
seed="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$seed")"
sed "s|^CONTROLLER_PIP = .*|CONTROLLER_PIP = \"$venv/bin/pip\"|" "$here/tests/get_pip_offline.py" >"$seed"

echo "check: ansible-test sanity --python 3.11 --local" >&2
(cd "$coll" && ansible-test sanity --python 3.11 --local --color no) || fail=1

exit "$fail"
