# shellcheck shell=sh
# Sourced by the bench/*_guest.sh scripts that compare zferry with a bare pipe in a lab
# guest (copy it beside them): what they share.

# Lets root ssh to itself at 127.0.0.1 with its own key, host key pinned.
ssh_to_self() {
  [ -f /root/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519
  grep -qf /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys 2>/dev/null ||
    cat /root/.ssh/id_ed25519.pub >> /root/.ssh/authorized_keys
  ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null > /root/.ssh/known_hosts
}

# The variants to time: the bare pipe, zferry, and zferry-b (a second build) when present.
variants() {
  if command -v zferry-b >/dev/null; then echo "bare zferry zferry-b"; else echo "bare zferry"; fi
}

# Stamps each line written to the fifo $1 with the epoch in milliseconds, into $2. Python is
# started (slow under TCG) and waiting before zferry starts, so the stamps are not late.
stamper() {
  rm -f "$1"; mkfifo "$1"
  python3 -u -c 'import sys, time
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        out.write("%d %s" % (time.time() * 1000, line))' "$1" "$2" &
  sleep 3
}

# Pools $1 (source, /dev/vdb) and $2 (copies, /dev/vdc), and $1/src with 64 KiB at @base;
# kept when they exist (a second run of a script goes on from them).
pools_with_base() {
  zpool list "$1" >/dev/null 2>&1 && return
  zpool create -f -O mountpoint=none "$1" /dev/vdb
  zpool create -f -O mountpoint=none "$2" /dev/vdc
  zfs create -o mountpoint="/$1/src" "$1/src"
  dd if=/dev/urandom of="/$1/src/base.bin" bs=64K count=1 status=none
  zfs snapshot "$1/src@base"
}

# The newest snapshot's name (after the @) of dataset $1.
newest() { zfs list -H -t snapshot -o name -s createtxg -d 1 "$1" | tail -1 | cut -d@ -f2; }

# $3 snapshots of dataset $1 (mounted at /$1), named $2m000..., 4 KiB of new data each.
small_snapshots() {
  n=0
  while [ "$n" -lt "$3" ]; do
    dd if=/dev/urandom of="/$1/many.bin" bs=4K count=1 status=none
    zfs snapshot "$1@$2m$(printf %03d "$n")"
    n=$((n + 1))
  done
}

# What a script comparing pulls over ssh starts with: pools $1 and $2 (pools_with_base),
# root's ssh to itself, and the variants to time (printed).
pull_setup() {
  pools_with_base "$1" "$2"
  ssh_to_self
  variants
}
