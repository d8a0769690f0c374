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
