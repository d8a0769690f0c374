#!/usr/bin/env bash
# Checks that zferry builds with the oldest Rust it declares (Cargo.toml `rust-version`).
#
#   tests/msrv.sh          (make lint runs it)
#
# The toolchain is Debian's rustc-web/cargo-web of that version from bookworm, unpacked
# into a cache directory, never installed: it would conflict with the rustup toolchain
# every other step uses (the packages replace /usr/bin/rustc and /usr/bin/cargo).
# Cache: $ZFERRY_MSRV_CACHE (default /var/cache/zferry-msrv), keyed by the package version,
# with its own cargo target directory so warm runs only recheck zferry itself.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$root/Cargo.toml")
# Debian's package of that Rust; a new MSRV needs its version here (apt-cache policy rustc-web).
declare -A debian=([1.85]=1.85.0+dfsg3-1~deb12u3)
version=${debian[$msrv]:-}
[[ -n $version ]] || {
  echo "msrv: no Debian rustc-web known for rust-version $msrv; add it to tests/msrv.sh" >&2
  exit 1
}
cache=${ZFERRY_MSRV_CACHE:-/var/cache/zferry-msrv}/$version
sysroot=$cache/root

if [[ ! -x $sysroot/usr/bin/cargo ]]; then
  partial=$cache.partial
  rm -rf "$partial"
  mkdir -p "$partial/debs"
  # The toolchain and the shared libraries it loads that a build host may lack.
  debs=("rustc-web=$version" "cargo-web=$version" "libstd-rust-web-dev=$version"
    "libstd-rust-web-${msrv}=$version" libllvm19 libpcre3 libhttp-parser2.9)
  # Package lists older than the archive's current versions: refresh them once.
  (cd "$partial/debs" && { apt-get download -q "${debs[@]}" ||
    { apt-get update -qq && apt-get download -q "${debs[@]}"; }; }) || {
    echo "msrv: apt-get download of ${debs[*]} failed (is deb.debian.org bookworm reachable?)" >&2
    exit 1
  }
  for deb in "$partial"/debs/*.deb; do
    dpkg-deb -x "$deb" "$partial/root"
  done
  rm -rf "$cache"
  mkdir -p "$(dirname "$cache")"
  mv "$partial" "$cache"
fi

export LD_LIBRARY_PATH=$sysroot/usr/lib/x86_64-linux-gnu:$sysroot/lib/x86_64-linux-gnu
export RUSTC=$sysroot/usr/bin/rustc RUSTDOC=$sysroot/usr/bin/rustdoc
export CARGO_TARGET_DIR=$cache/target
got=$("$RUSTC" --version)
[[ $got == "rustc $msrv."* ]] || {
  echo "msrv: $RUSTC is '$got', not $msrv" >&2
  exit 1
}
echo "msrv: cargo check --all-targets with $got" >&2
cd "$root"
"$sysroot/usr/bin/cargo" check --locked --all-targets -j "${CARGO_BUILD_JOBS:-2}"
