#!/usr/bin/env bash
# The main job, end to end on real OpenZFS in the lab:
#   client (encrypted tank/data + children) --pull--> server (slowpool/encryptedbackups)
#   server --raw push--> offsite (tank/backups), which never holds a key.
# zferry runs on the server as the unprivileged user 'zferry' with delegated permissions only:
# receive:append on the targets (no forced receive), and send:raw on the sources where the
# host's OpenZFS knows it (2.4; `zfs allow` lists it), so the kernel refuses any plaintext send.
# On OpenZFS 2.4 VMs: ZFERRY_LAB_IMAGE=zfs24 ZFERRY_LAB_RUN=/var/tmp/zferry-lab24 make demo
# Re-runnable: the demo pools are recreated each time.
set -euo pipefail
cd "$(dirname "$0")/../.."
lab=tests/lab/lab
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

$lab up client server offsite
$lab provision target/debug/zferry client server offsite
cport=$($lab port client)
oport=$($lab port offsite)

say "client: encrypted tank/data with children and snapshots"
# shellcheck disable=SC2016 # expanded by the guest's shell
$lab ssh client -- sh -euc '
  zpool destroy -f tank 2>/dev/null || true
  zpool create -f -O mountpoint=/tank tank /dev/vdb
  echo "client passphrase 42" > /root/tank-data.key
  zfs create -o encryption=on -o keyformat=passphrase -o keylocation=file:///root/tank-data.key tank/data
  zfs create tank/data/docs; zfs create tank/data/photos
  for ds in docs photos; do dd if=/dev/urandom of=/tank/data/$ds/a.bin bs=1M count=4 status=none; done
  zfs snapshot -r tank/data@2026-11-26_0800
  dd if=/dev/urandom of=/tank/data/docs/b.bin bs=1M count=2 status=none
  zfs snapshot -r tank/data@2026-11-26_0900
  p=send; zfs allow 2>&1 | grep -q send:raw && p=send:raw
  zfs allow -u zferry $p,hold,release tank/data
  zfs list -o name,encryption,keystatus -r tank'

say "server: encrypted backup root slowpool/encryptedbackups (key held here only)"
# shellcheck disable=SC2016 # expanded by the guest's shell
$lab ssh server -- sh -euc '
  zpool destroy -f slowpool 2>/dev/null || true
  zpool create -f -O mountpoint=/slowpool slowpool /dev/vdb
  echo "server passphrase 99" > /root/backup.key
  zfs create -o encryption=on -o keyformat=passphrase -o keylocation=file:///root/backup.key slowpool/encryptedbackups
  p=send; zfs allow 2>&1 | grep -q send:raw && p=send:raw
  zfs allow -u zferry create,mount,canmount,receive:append,$p,hold,release slowpool/encryptedbackups
  zfs allow slowpool/encryptedbackups'

say "offsite: receiving root tank/backups, no keys at all"
$lab ssh offsite -- sh -euc '
  zpool destroy -f tank 2>/dev/null || true
  zpool create -f -O mountpoint=/tank tank /dev/vdb
  zfs create tank/backups
  zfs allow -u zferry create,mount,canmount,receive:append,hold,release tank/backups'

say "server: /etc/zferry/zferry.toml"
$lab ssh server -- sh -euc "mkdir -p /etc/zferry; cat > /etc/zferry/zferry.toml; cat /etc/zferry/zferry.toml" <<EOF
# Hosts are reached through the lab's host loopback (10.0.2.2:<forwarded port>).
[jobs.1-pull-client]
kind = "pull"
host = "10.0.2.2"
port = $cport
user = "zferry"
name = "client"
datasets = ["tank/data"]
destination = "slowpool/encryptedbackups"

[jobs.2-push-offsite]
kind = "push"
host = "10.0.2.2"
port = $oport
user = "zferry"
datasets = ["slowpool/encryptedbackups/client"]
destination = "tank/backups"
strip_prefix = "slowpool/encryptedbackups"
EOF

say "plan of the pull job (changes nothing)"
$lab ssh server --user zferry -- zferry plan --config /etc/zferry/zferry.toml 1-pull-client

say "first cycle: full pull, then raw push"
$lab ssh server --user zferry -- zferry run --config /etc/zferry/zferry.toml

say "client takes a new snapshot; second cycle sends one incremental each way"
$lab ssh client -- sh -euc 'dd if=/dev/urandom of=/tank/data/photos/c.bin bs=1M count=3 status=none; zfs snapshot -r tank/data@2026-11-26_1000'
$lab ssh server --user zferry -- zferry run --config /etc/zferry/zferry.toml --json

say "offsite: copies are encrypted and locked; GUIDs match the client"
$lab ssh offsite -- zfs list -t all -o name,guid,keystatus,encryptionroot -r tank/backups
$lab ssh client -- zfs list -t snapshot -o name,guid -r tank/data
