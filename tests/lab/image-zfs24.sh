#!/usr/bin/env bash
# Builds the second lab guest image: Debian 13 trixie with OpenZFS 2.4 from trixie-backports.
# Usage: image-zfs24.sh OUTDIR   (OUTDIR must not exist; the caller renames it into the cache)
# Same layout and guest conventions as image.sh (the 2.3 image, which stays untouched: its
# hash is its cache key): rootfs.img, vmlinuz, initrd.img, id_lab, host_key.pub,
# zfs-version.txt, dkms-status.txt. Everything comes from Debian's archive.
set -euo pipefail

out=${1:?usage: image-zfs24.sh OUTDIR}
mirror=${ZFERRY_LAB_MIRROR:-http://deb.debian.org/debian}
suite=trixie
root="$out/root"
mkdir -p "$out"

log() { printf '[image-zfs24 %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

cleanup_mounts() {
  for m in dev/pts dev sys proc; do
    if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m" || true; fi
  done
}
trap cleanup_mounts EXIT

# Each phase's duration goes to phases.txt (the lab README quotes them).
phase_start=$(date +%s)
phase() {
  local now
  now=$(date +%s)
  [[ -z ${phase_name:-} ]] || echo "$phase_name $((now - phase_start))" >>"$out/phases.txt"
  phase_name=$1
  phase_start=$now
  log "$2"
}

phase debootstrap "debootstrap $suite (minbase)"
debootstrap --variant=minbase \
  --include=systemd-sysv,udev,kmod,iproute2,dbus,openssh-server,python3,sudo,initramfs-tools,procps,ca-certificates,zstd,pv,mbuffer,less \
  "$suite" "$root" "$mirror" >"$out/debootstrap.log" 2>&1 || {
  tail -40 "$out/debootstrap.log" >&2
  exit 1
}

cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main contrib
deb $mirror $suite-updates main contrib
deb $mirror $suite-backports main contrib
EOF
# trixie itself has OpenZFS 2.3; 2.4 lives only in backports. Pin every OpenZFS package
# there (the library sonames change between releases, hence the globs).
cat >"$root/etc/apt/preferences.d/90-zfs-backports" <<EOF
Package: zfs-dkms zfsutils-linux zfs-zed libnvpair* libuutil* libzfs* libzpool* libzfsbootenv*
Pin: release n=$suite-backports
Pin-Priority: 990
EOF
# Keep package scripts from starting services inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"

# The chroot resolves the mirror through the host's resolver.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

in_root() { DEBIAN_FRONTEND=noninteractive LC_ALL=C chroot "$root" "$@"; }
apt_in_root() { in_root apt-get -y -q -o Acquire::Retries=3 -o Dpkg::Options::=--force-confold --no-install-recommends "$@"; }

phase kernel "kernel and headers"
in_root apt-get -q update >"$out/apt.log" 2>&1
# What the archive offers, for the record (README: measured facts).
in_root apt-cache policy zfs-dkms zfsutils-linux linux-image-amd64 >"$out/apt-policy.txt" 2>&1
cat "$out/apt-policy.txt" >&2
# trixie ships systemd-networkd in its own package (bookworm had it in systemd).
net_pkg=
if in_root apt-cache show systemd-networkd >/dev/null 2>&1; then net_pkg=systemd-networkd; fi
apt_in_root install linux-image-amd64 linux-headers-amd64 $net_pkg >>"$out/apt.log" 2>&1 || {
  tail -40 "$out/apt.log" >&2
  exit 1
}

phase zfs "zfs-dkms + zfsutils-linux 2.4 from $suite-backports (the DKMS build takes minutes)"
# The zfsutils postinst tries to modprobe on the host kernel; that error is harmless.
apt_in_root install zfs-dkms zfsutils-linux >>"$out/apt.log" 2>&1 || {
  tail -40 "$out/apt.log" >&2
  exit 1
}
zver=$(in_root dpkg-query -W -f '${Version}' zfsutils-linux)
[[ $zver == 2.4.* ]] || {
  echo "zfsutils-linux is $zver, not 2.4.x: check the pin and $suite-backports" >&2
  exit 1
}
kver=$(basename "$(ls -d "$root"/lib/modules/*-amd64 | sort -V | tail -1)")
in_root dkms status | tee "$out/dkms-status.txt" >&2
grep -q "zfs/.*, $kver, x86_64: installed" "$out/dkms-status.txt" || {
  echo "zfs module is not installed for guest kernel $kver" >&2
  exit 1
}

phase config "guest configuration"
echo lab >"$root/etc/hostname"
: >"$root/etc/machine-id" # empty: systemd makes a fresh one per VM at first boot
rm -f "$root/var/lib/dbus/machine-id"
echo '/dev/vda / ext4 rw,relatime 0 1' >"$root/etc/fstab"
cat >"$root/etc/systemd/network/10-dhcp.network" <<'EOF'
[Match]
Name=en*

[Network]
DHCP=yes
EOF
in_root systemctl enable systemd-networkd ssh >/dev/null 2>&1
# No DNS in the lab: nothing outside loopback is reachable anyway.
sed -i 's/^#\?UseDNS.*/UseDNS no/' "$root/etc/ssh/sshd_config"
echo zfs >"$root/etc/modules-load.d/zfs.conf"
echo 'options zfs zfs_arc_max=268435456' >"$root/etc/modprobe.d/zfs.conf"
# A small initrd boots ~10 s faster under TCG.
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 >"$root/etc/initramfs-tools/modules"
in_root update-initramfs -u -k "$kver" >>"$out/apt.log" 2>&1

# One lab SSH key per cache entry; host keys are generated now and pinned by the harness.
ssh-keygen -q -t ed25519 -N '' -C zferry-lab-zfs24 -f "$out/id_lab"
install -d -m 700 "$root/root/.ssh"
install -m 600 "$out/id_lab.pub" "$root/root/.ssh/authorized_keys"
rm -f "$root"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C lab-host-zfs24 -f "$root/etc/ssh/ssh_host_ed25519_key"
cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$out/host_key.pub"

in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d"
echo "$zver" >"$out/zfs-version.txt"
echo "$kver" >"$out/kernel-version.txt"

cleanup_mounts
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"

phase ext4 "ext4 image"
mkfs.ext4 -q -F -L lab-root -d "$root" "$out/rootfs.img" 4G
rm -rf "$root"
phase end "done: zfsutils-linux $zver, kernel $kver, $(du -sh --apparent-size "$out/rootfs.img" | cut -f1) apparent, $(du -sh "$out/rootfs.img" | cut -f1) on disk"
