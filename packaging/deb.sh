#!/usr/bin/env bash
# Builds Debian packages of zferry from the static musl binaries of ansible/build.sh.
#
#   packaging/deb.sh ARCH...     ARCH: x86_64 aarch64 (default: both)
#
# Output: target/deb/zferry_<version>_<amd64|arm64>.deb, version from Cargo.toml.
# A binary ansible/plugins/bin/zferry-<arch> that is missing or older than the sources is
# (re)built with ansible/build.sh <arch> first. Man pages and completions are rendered by
# the binary of this host's architecture (`zferry generate`): the other one cannot run here
# without emulation, and both come from the same clap definitions.
# Needs dpkg-deb and gzip (tests/lab/setup-host.sh installs them). Check a result with
# `lintian target/deb/zferry_*.deb` (packaging/lintian-overrides explains what it flags).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
archs=("$@")
((${#archs[@]})) || archs=(x86_64 aarch64)
# Debian policy wants a name and an address; packagers of their own builds set their own.
maintainer=${ZFERRY_DEB_MAINTAINER:-"zferry authors <zferry@users.noreply.github.com>"}

for tool in dpkg-deb gzip; do
  command -v "$tool" >/dev/null || {
    echo "deb: $tool is missing (tests/lab/setup-host.sh installs it)" >&2
    exit 1
  }
done

# The [package] version: the first `version = "..."` line of Cargo.toml is the package's.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || {
  echo "deb: no version in $root/Cargo.toml" >&2
  exit 1
}
# Debian orders 1.0.0~rc1 before 1.0.0; semver's 1.0.0-rc1 would sort after it.
debversion=${version//-/\~}

debarch() {
  case $1 in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *)
      echo "deb: unsupported architecture $1 (x86_64, aarch64)" >&2
      return 2
      ;;
  esac
}

# Builds plugins/bin/zferry-<arch> when it is missing or a source is newer than it, so a
# package never ships a binary from older code. Cargo's own build is incremental.
ensure_binary() {
  local arch=$1 bin="$root/ansible/plugins/bin/zferry-$1"
  if [[ ! -x $bin ]]; then
    echo "deb: $bin is missing: building it" >&2
  elif [[ -n $(find "$root/src" "$root/Cargo.toml" "$root/Cargo.lock" -newer "$bin" -print -quit) ]]; then
    echo "deb: $bin is older than the sources: rebuilding it" >&2
  else
    return 0
  fi
  "$root/ansible/build.sh" "$arch"
}

for arch in "${archs[@]}"; do debarch "$arch" >/dev/null; done
host=$(uname -m)
ensure_binary "$host"
host_bin="$root/ansible/plugins/bin/zferry-$host"
got=$("$host_bin" --version)
[[ $got == "zferry $version" ]] || {
  echo "deb: $host_bin says '$got', Cargo.toml says $version: rebuild with ansible/build.sh $host" >&2
  exit 1
}

# Everything but the binary is the same for every architecture: render it once.
work=$(mktemp -d /tmp/zferry-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
common="$work/common"
mkdir -p "$common/usr/share/man/man1" "$common/usr/share/bash-completion/completions" \
  "$common/usr/share/zsh/vendor-completions" "$common/usr/share/fish/vendor_completions.d" \
  "$common/usr/share/doc/zferry/examples" "$common/usr/share/lintian/overrides"
"$host_bin" -q generate man "$common/usr/share/man/man1"
# -n: no name or time stamp inside the .gz, so the same pages give the same package.
gzip -9n "$common"/usr/share/man/man1/*.1
"$host_bin" generate completions bash >"$common/usr/share/bash-completion/completions/zferry"
"$host_bin" generate completions zsh >"$common/usr/share/zsh/vendor-completions/_zferry"
"$host_bin" generate completions fish >"$common/usr/share/fish/vendor_completions.d/zferry.fish"
install -m 644 "$here/examples"/* "$common/usr/share/doc/zferry/examples/"
install -m 644 "$here/lintian-overrides" "$common/usr/share/lintian/overrides/zferry"
install -m 644 "$root/README.md" "$common/usr/share/doc/zferry/README.md"
gzip -9nc "$root/CHANGELOG.md" >"$common/usr/share/doc/zferry/CHANGELOG.md.gz"

# Debian's machine-readable copyright format, with the text of ./LICENSE.
{
  cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: zferry
Source: https://github.com/zferry/zferry

Files: *
Copyright: 2026 the zferry authors
License: Expat

License: Expat
EOF
  # The license text after its title and copyright lines, each line indented, blank lines as " .".
  sed -n '/^Permission is hereby granted/,$p' "$root/LICENSE" | sed -e 's/^$/./' -e 's/^/ /'
} >"$common/usr/share/doc/zferry/copyright"

# A native package's changelog in Debian's format; the project's history is CHANGELOG.md.
# Its date is the last commit's, and dpkg-deb clamps file times to SOURCE_DATE_EPOCH:
# the same commit gives the same package.
if epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null); then
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$epoch}
fi
when=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
gzip -9nc >"$common/usr/share/doc/zferry/changelog.gz" <<EOF
zferry ($debversion) unstable; urgency=medium

  * zferry $version; what it contains: /usr/share/doc/zferry/CHANGELOG.md.gz.

 -- $maintainer  $when
EOF

mkdir -p "$root/target/deb"
for arch in "${archs[@]}"; do
  ensure_binary "$arch"
  da=$(debarch "$arch")
  stage="$work/zferry_${debversion}_$da"
  cp -a "$common" "$stage"
  install -D -m 755 "$root/ansible/plugins/bin/zferry-$arch" "$stage/usr/bin/zferry"
  mkdir -p "$stage/DEBIAN"
  # dpkg-deb keeps the file modes; directories 755, regular files 644 unless executable.
  find "$stage" -type d -exec chmod 755 {} +
  (cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
  size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
  cat >"$stage/DEBIAN/control" <<EOF
Package: zferry
Version: $debversion
Architecture: $da
Maintainer: $maintainer
Installed-Size: $size
Depends: zfsutils-linux | zfs, openssh-client
Section: admin
Priority: optional
Homepage: https://github.com/zferry/zferry
Description: ZFS replication you can trust with your only offsite copy
 zferry replicates ZFS datasets between hosts over SSH: a backup server pulls
 snapshots from its clients and pushes them raw-encrypted (zfs send -w) to an
 offsite host that never holds a key.
 .
 The incremental base is found by GUID and every receive is verified by GUID;
 receives are never forced and never mounted. Diverged targets are refused
 unless configured otherwise, interrupted transfers resume, and holds keep
 every job's base. It also takes sanoid-compatible snapshots, prunes them
 without touching what a replication still needs, reports every run (status,
 healthchecks pings, MQTT, Prometheus textfile) and ships an SSH forced
 command that runs only zferry's own zfs commands.
 .
 Example config and systemd units are in /usr/share/doc/zferry/examples.
EOF
  out="$root/target/deb/zferry_${debversion}_$da.deb"
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
  echo "deb: $out ($(stat -c %s "$out") bytes)" >&2
done
