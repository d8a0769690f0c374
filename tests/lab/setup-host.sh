#!/usr/bin/env bash
# Installs what the lab and the tests need on a Debian 12 host. Idempotent; run as root.
set -euo pipefail

# QEMU comes from bookworm-backports so it matches the qemu-utils such hosts may already
# carry from there (mixing 7.2 and 10.0 packages does not install).
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat >/etc/apt/sources.list.d/zferry-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# mosquitto, mosquitto-clients, prometheus (promtool), util-linux (flock): the sink tests
# (tests/sinks.rs, tests/lab/status.rs) run a real broker and check metrics with promtool.
need=(debootstrap qemu-system-x86 qemu-utils qemu-user e2fsprogs zstd openssh-client python3 python3-venv make
  mosquitto mosquitto-clients prometheus util-linux
  musl-tools gcc-aarch64-linux-gnu shellcheck binutils dpkg gzip)
# musl-tools, gcc-aarch64-linux-gnu: C parts of the static module binaries (ansible/build.sh);
# ansible-test sanity runs shellcheck on the collection's scripts; qemu-user runs
# the aarch64 module binary's smoke test (ansible/build.sh); binutils: `lab provision` strips
# the debug binary before copying it into the VMs; dpkg (dpkg-deb) and gzip build the .deb
# packages (packaging/deb.sh, tests/lab/package.rs): essential on Debian, listed so that a
# host without them gets them.
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-system-x86 qemu-utils qemu-user >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || {
  echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
  exit 1
}
# The venv with ansible-core and ansible-lint for the collection's checks and lab tests.
"$(dirname "${BASH_SOURCE[0]}")/../../ansible/setup-venv.sh" >/dev/null
