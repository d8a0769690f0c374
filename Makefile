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
	# Side by side: molecule's plays leave CPU idle that the 2.4 lab's tests (own VMs) use.
	MAKE="$(MAKE)" tests/side-by-side.sh molecule lab24

# What rests on OpenZFS's own behaviour, again on 2.4: a second lab (its own run dir, the
# same VM names, every VM from the zfs24 image): full, incremental and raw streams,
# encryption of created parents, bookmarks as bases, the snapshots_changed property the
# listing cache trusts, resume tokens (interrupted, stale, forged by a hostile offsite),
# rollback of a diverged copy, holds, atomic snapshots and pruning, what a stream's
# properties do to a local canmount and the stream heads the guard judges. Left out, to keep CI
# under an hour: what is zferry's own logic on top of the same zfs calls (refusals by
# GUID, one failure among many, parallel scheduling, a hold that cannot be placed, the
# holds command), its guard, relay pacing and SSH sharing, ansible::, status::,
# package::, smoke:: (the 2.4 delegations are zfs24::, in the main lab, and molecule's
# offsite is 2.4) and zfs24:: itself. LAB24="--skip zfs24::" runs every theme there.
LAB24 ?= engine::pull_full_then_noop_then_one_incremental \
  engine::push_raw_with_strip_prefix_keeps_offsite_locked \
  engine::parents_under_an_encrypted_root_are_encrypted \
  engine::bookmark_serves_as_base_after_the_snapshot_is_pruned \
  engine::snapshots_changed_moves_with_snapshots_not_with_holds_or_bookmarks \
  engine::a_cached_run_lists_snapshots_only_where_they_changed \
  safety::interrupted_transfers_resume_to_identical_copies \
  safety::stale_resume_token_is_discarded \
  safety::diverged_target_is_refused_until_rollback_is_allowed \
  safety::held_base_survives_pruning_and_holds_stay_one_per_job \
  engine::an_incremental_leaves_canmount_and_a_stream_with_properties_is_refused \
  guard::a_receive_that_leaves_canmount_passes_the_guard_only_as_an_incremental \
  snapshot:: guard::a_hostile_offsite
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
# so `make test` runs it after the lab tests (lab24 beside it, on its own VMs). While developing: molecule converge / verify (never destroy).
# Molecule keys its state dir by the project dir's basename (~/.ansible/tmp/molecule.XXXX.default),
# so every clone named `main` shares one; a stale "created" there once made CI skip create and
# converge against dead ports. Each run gets its own state dir.
molecule: setup
	ansible/build.sh x86_64
	state=$$(mktemp -d /tmp/zferry-molecule.XXXXXX); \
	MOLECULE_EPHEMERAL_DIRECTORY="$$state" PATH="$$(ansible/setup-venv.sh)/bin:$$PATH" molecule test; \
	rc=$$?; rm -rf "$$state"; exit $$rc
