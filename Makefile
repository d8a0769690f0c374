# The two commands the README names: `make demo` and `make test`.
.PHONY: bench bench-peers setup build demo test lint unit sinks lab-down lab24 ansible-build ansible-install ansible-check molecule package

setup:
	tests/lab/setup-host.sh

build:
	cargo build --locked

# Docs build without broken links; missing docs on public items fail clippy ([lints]).
lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps
	tests/msrv.sh

unit:
	cargo test --locked --lib --bins

# Sinks against real local peers (mosquitto, an HTTP receiver, promtool); no lab needed.
sinks: setup
	cargo test --locked --test sinks

# Everything: lint, unit and property tests, the Ansible collection's checks, then the lab
# tests on real OpenZFS (tests/lab/ansible.rs runs playbooks with this build's binary).
# Two test threads (one per core): the lab keeps both cores busy (a third thread was
# tried on 2026-12-02: idle CPU stayed ~1 %, and no test got faster).
test: setup lint ansible-check
	cargo test --locked
	# Idle emulated VMs still eat CPU: keep up only what molecule uses (client, server, offsite24).
	tests/lab/lab down server24 offsite
	$(MAKE) molecule
	$(MAKE) lab24

# The themes whose outcome rests on OpenZFS's own behaviour, again on 2.4: a second lab
# (its own run dir, the same VM names, every VM from the zfs24 image): replication,
# resume and divergence, holds and pruning, and a forged resume token against a 2.4
# sender. Left out, to keep CI under an hour, what is zferry's own or proven on 2.4
# elsewhere: ansible::, status::, package:: and the guard's own checks (zferry's
# protocol, sinks, .deb and SSH guard), the relay's pacing and the shared SSH connection,
# smoke:: (the 2.4 delegations are zfs24::, in the main lab, and molecule's offsite is
# 2.4) and zfs24:: itself. LAB24="--skip zfs24::" runs every theme there.
LAB24 ?= engine:: safety:: snapshot:: guard::a_hostile_offsite \
  --skip engine::bwlimit_ --skip engine::jobs_to_the_same_host_
lab24: setup
	ZFERRY_LAB_IMAGE=zfs24 ZFERRY_LAB_RUN=/var/tmp/zferry-lab24 \
	  cargo test --locked --test lab -- $(LAB24); \
	rc=$$?; ZFERRY_LAB_RUN=/var/tmp/zferry-lab24 tests/lab/lab down; exit $$rc

# The main job end to end in the lab: client -> server (pull) -> offsite (raw push).
demo: setup build
	tests/lab/demo.sh

lab-down:
	tests/lab/lab down

# Benchmarks (release build); results are written to bench/results.txt.
bench:
	cargo bench --locked --bench engine

# zferry vs syncoid, bzfs and zfs-autobackup in one lab VM (issue 12 item 4): bench/peers.md.
# Hours under TCG; BENCH_SCALE=small is a smoke run of the harness (bench/peers-small.md).
bench-peers: setup
	bench/peers.py

# zferry.zfs: static musl module binaries for x86_64 and aarch64, placed in the collection.
ansible-build: setup
	ansible/build.sh

# zferry.zfs for this user ($ANSIBLE_HOME, default ~/.ansible): the collection with its
# binaries, and the modules' short names (`ansible HOST -m zfs_push`), see ansible/install.sh.
ansible-install: ansible-build
	ansible/install.sh

# Debian packages: target/deb/zferry_<version>_{amd64,arm64}.deb from the static musl
# binaries, with man pages, shell completions and example config/units (packaging/deb.sh).
package: setup
	ansible/build.sh
	packaging/deb.sh x86_64 aarch64

# zferry.zfs: ansible-doc renders every module, ansible-lint, ansible-test sanity.
ansible-check:
	ansible/check.sh

# The roles backup_server, backup_client, offsite on the three lab VMs (molecule/default):
# create, prepare, converge, idempotence, verify, destroy. Destroy stops the shared lab VMs,
# so `make test` runs it after the lab tests (then lab24, on its own VMs). While developing: molecule converge / verify (never destroy).
# Molecule keys its state dir by the project dir's basename (~/.ansible/tmp/molecule.XXXX.default),
# so every clone named `main` shares one; a stale "created" there once made CI skip create and
# converge against dead ports. Each run gets its own state dir.
molecule: setup
	ansible/build.sh x86_64
	state=$$(mktemp -d /tmp/zferry-molecule.XXXXXX); \
	MOLECULE_EPHEMERAL_DIRECTORY="$$state" PATH="$$(ansible/setup-venv.sh)/bin:$$PATH" molecule test; \
	rc=$$?; rm -rf "$$state"; exit $$rc
