#!/usr/bin/env bash
# Installs zferry.zfs for the current user and makes its modules answer to their short
# names (`ansible HOST -m zfs_push`, `zfs_pull:` in a play without `collections:`).
#
#   ansible/install.sh [--short-names-only]
#
# Where: $ANSIBLE_HOME (default ~/.ansible), the places Ansible searches by default:
#   collections/ansible_collections/zferry/zfs   the collection, built binaries included
#   plugins/action/zfs_{allow,pull,push}.py        one-line shims to the collection's actions
#   plugins/modules/zfs_{allow,pull,push}.py       the modules' documentation (ansible-doc)
# --short-names-only writes only the shims and documentation, for a collection installed
# another way (ansible-galaxy, a checkout linked into a collections path).
#
# Why shims and not copies: the action plugins pick the binary for the target's CPU from
# the collection (zferry.zfs.<module>_<arch>), so the short name must run the very same
# code; a copy would drift from the collection it calls into. The FQCN stays the
# documented form; a short name resolves only when no other plugin of that name comes
# first on Ansible's path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home=${ANSIBLE_HOME:-$HOME/.ansible}
modules=(zfs_allow zfs_pull zfs_push)
short_only=false
case ${1-} in
  "") ;;
  --short-names-only) short_only=true ;;
  *)
    echo "install: unknown argument '$1' (usage: ansible/install.sh [--short-names-only])" >&2
    exit 2
    ;;
esac

if ! $short_only; then
  ls "$here"/plugins/bin/zferry-* >/dev/null 2>&1 || {
    echo "install: no module binaries in $here/plugins/bin; run 'make ansible-build' first" >&2
    exit 1
  }
  dest="$home/collections/ansible_collections/zferry/zfs"
  # A fresh copy each time, so a file removed from the collection does not linger.
  rm -rf "$dest"
  mkdir -p "$dest"
  # tar keeps the modules' per-architecture symlinks pointing at plugins/bin.
  tar -C "$here" --exclude=./.venv --exclude=./.ansible --exclude=./tests/output -cf - . |
    tar -C "$dest" -xf -
  echo "install: collection zferry.zfs in $dest" >&2
fi

mkdir -p "$home/plugins/action" "$home/plugins/modules"
for m in "${modules[@]}"; do
  cat >"$home/plugins/action/$m.py" <<EOF
# Short name for zferry.zfs.$m, written by zferry's ansible/install.sh: the collection's
# action plugin, so \`-m $m\` runs exactly what \`-m zferry.zfs.$m\` runs.
from ansible_collections.zferry.zfs.plugins.action.$m import ActionModule  # noqa: F401
EOF
  cp "$here/plugins/modules/$m.py" "$home/plugins/modules/$m.py"
done
echo "install: short names ${modules[*]} in $home/plugins/{action,modules}" >&2
