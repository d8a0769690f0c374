# Copyright: zferry contributors
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
"""Options shared by zfs_pull and zfs_push: the fields of a zferry job."""

from __future__ import annotations


class ModuleDocFragment:
    """The job options, as in zferry's CLI flags and TOML config (src/config/mod.rs)."""

    DOCUMENTATION = r"""
options:
  host:
    description:
      - The remote host (name, address or C(~/.ssh/config) alias of the target host's user).
    type: str
    required: true
  user:
    description:
      - SSH login user on O(host) (an unprivileged user with delegated permissions).
    type: str
  port:
    description:
      - SSH port of O(host).
    type: int
  identity_file:
    description:
      - Private key file on the host the module runs on.
    type: str
  known_hosts_file:
    description:
      - C(known_hosts) file to check O(host)'s key against. Host keys are always checked
        strictly; there is no option to skip that.
    type: str
  datasets:
    description:
      - Source datasets. Each includes its children, each child replicated as its own stream.
    type: list
    elements: str
    required: true
  destination:
    description:
      - The existing dataset the copies go under. zferry never creates it.
    type: str
    required: true
  name:
    description:
      - Pull only. Directory under O(destination) for this host (default O(host)).
    type: str
  strip_prefix:
    description:
      - Push only, and required there. Prefix removed from the local dataset names to map
        them under O(destination); a dataset outside it is an error.
    type: str
  raw:
    description:
      - Raw sends (C(zfs send -w)). V(auto) sends encrypted sources raw. Push is always raw.
    type: str
    choices: [auto, always, never]
    default: auto
  on_divergence:
    description:
      - What may be done to a target that diverged from the source (modified, target-only
        snapshots, no common snapshot). V(refuse) changes nothing and fails that dataset.
    type: str
    choices: [refuse, rollback_to_common, destroy_target_and_resend]
    default: refuse
  hold_tag:
    description:
      - Hold tag placed on the common base snapshot on both sides (default C(zferry:<job_name>)).
    type: str
  bwlimit:
    description:
      - Bandwidth limit for the job's streams, bytes per second, enforced in zferry's own
        relay. Plain bytes (V(1048576)) or a binary unit (V(512K), V(10M), V(1.5G)).
      - No limit when omitted; V(0) is refused. The job's concurrent streams share it.
    type: str
  parallel:
    description:
      - Datasets replicated at once; a child starts after its parent is done. Reports stay
        per dataset, in order. At most V(8). The job opens at most this many SSH
        sessions on its host at once; a host whose sshd C(MaxSessions) is below it needs less.
    type: int
    default: 8
  compress:
    description:
      - Wire compression of plain (non-raw) streams of a pull. V(zstd) (level 3) or
        V(zstd:LEVEL) (1 to 19); V(none) or omitted for none. The source host pipes
        C(zfs send) through C(zstd -c) and zferry decompresses; a source without the
        C(zstd) program fails the dataset naming it. Streams under 1 MiB and raw streams
        are sent as they are; a push (always raw) refuses it.
    type: str
  job_name:
    description:
      - Name of the job, used for the default hold tag and in the results
        (default V(pull-<host>) or V(push-<host>)).
    type: str
attributes:
  check_mode:
    support: full
    description:
      - Lists both sides and returns the plan per dataset (up to date, full, incremental with
        its snapshots, resume, or refused and why) with the estimated bytes
        (C(zfs send -nP)); sends, receives and holds nothing.
  diff_mode:
    support: full
    description:
      - Shows each snapshot that arrives on the target (in check mode, that would) on the
        after side, and each snapshot or dataset an O(on_divergence) option destroys on the
        before side.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with OpenZFS (x86_64 or aarch64) and OpenSSH.
notes:
  - The module runs on the managed host and connects to O(host) itself over SSH, with the
    managed host's SSH configuration and keys (see O(identity_file), O(known_hosts_file)).
  - C(changed) is true only when data or holds moved (in check mode, when they would).
  - A dataset that fails or is refused fails the task; the message names it, and the
    other datasets are still replicated and reported in RV(datasets).
"""
