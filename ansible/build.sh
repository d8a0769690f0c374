#!/usr/bin/env bash
# Builds the zferry module binaries and places them where the collection finds them.
#
#   ansible/build.sh [ARCH...]     ARCH: x86_64 aarch64 (default: both)
#
# One static musl binary per architecture goes to plugins/bin/zferry-<arch>; the
# modules plugins/modules/zfs_{allow,pull,push}_<arch> are symlinks to it (one binary,
# dispatched on its file name). The action plugins pick <arch> per target host.
# Needs: rustup targets <arch>-unknown-linux-musl and C compilers for ring (under ureq's
# TLS): musl-gcc (musl-tools) for x86_64, gcc-aarch64-linux-gnu for aarch64.
# tests/lab/setup-host.sh installs them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
archs=("$@")
((${#archs[@]})) || archs=(x86_64 aarch64)
jobs=${CARGO_BUILD_JOBS:-2}

# Without the variables cargo sets for a crate (CARGO_MANIFEST_DIR, CARGO_PKG_NAME,
# CARGO_PKG_VERSION_*, ...), which a caller under cargo (the lab's package test) passes on:
# ring's build script reruns when any of them changes, and the next build from make
# (molecule) then rebuilt ring, rustls and zferry for nothing (300 s in a CI run on
# 2026-12-03, when only CARGO_MANIFEST_DIR was dropped).
for var in $(compgen -e); do
  case $var in
    CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_CRATE_NAME | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
      CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$var" ;;
  esac
done

mkdir -p "$here/plugins/bin"
for arch in "${archs[@]}"; do
  target="$arch-unknown-linux-musl"
  env=()
  case $arch in
    x86_64) env+=(CC_x86_64_unknown_linux_musl=musl-gcc) ;;
    aarch64)
      # rust-lld links the static musl binary (rustup ships musl's crt and libc.a);
      # the C parts of ring need a cross gcc.
      env+=(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
        CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
        AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar)
      ;;
    *)
      echo "build: unsupported architecture $arch (x86_64, aarch64)" >&2
      exit 2
      ;;
  esac
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  echo "build: $target" >&2
  (cd "$root" && env "${env[@]}" cargo build --locked --release -j "$jobs" --target "$target" --bin zferry)
  install -m 755 "$root/target/$target/release/zferry" "$here/plugins/bin/zferry-$arch"
  for m in zfs_allow zfs_pull zfs_push; do
    ln -sfn "../bin/zferry-$arch" "$here/plugins/modules/${m}_$arch"
  done
  echo "build: $here/plugins/bin/zferry-$arch ($(stat -c %s "$here/plugins/bin/zferry-$arch") bytes)" >&2

  # Smoke test: the binary, under a module name, answers an args file with module JSON.
  # Another architecture runs under qemu-user (tests/lab/setup-host.sh installs it).
  runner=()
  if [[ $arch != "$(uname -m)" ]]; then
    command -v "qemu-$arch" >/dev/null || { echo "build: qemu-$arch is missing (apt-get install qemu-user); the $arch binary cannot be smoke-tested" >&2; exit 1; }
    runner=("qemu-$arch")
  fi
  args=$(mktemp)
  echo '{"name": "p/x", "bogus": 1, "_ansible_check_mode": true}' >"$args"
  out=$("${runner[@]}" "$here/plugins/modules/zfs_allow_$arch" "$args" || true)
  rm -f "$args"
  if [[ $out != *'"failed":true'*'Unsupported parameters for (zfs_allow) module: bogus'* ]]; then
    echo "build: $arch binary did not answer as a module: $out" >&2
    exit 1
  fi
  echo "build: $arch binary answers as zfs_allow${runner:+ (under ${runner[*]})}" >&2
done
