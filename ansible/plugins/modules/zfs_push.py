#!/usr/bin/python
# Copyright: zferry contributors
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# Documentation only: the module is the zferry binary (see plugins/action/zfs_push.py).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zfs_push
short_description: Replicate local ZFS datasets raw to a remote host (zferry push)
description:
  - Runs one zferry push job on the managed host. The source datasets are local, the copies
    land on O(host) under O(destination), always raw (C(zfs send -w)) so the offsite copy
    stays encrypted and its key never leaves.
  - Same job as C(zferry push) and a C(kind = "push") job in C(zferry.toml). The first
    sync sends the earliest snapshot then one incremental stream; later runs send one
    incremental stream from the common base, found by GUID. Nothing is destroyed unless
    O(on_divergence) allows it.
  - A Rust binary module (the zferry binary); the action plugin runs the build for the
    target's CPU architecture (x86_64 or aarch64).
version_added: "0.1.0"
author:
  - zferry contributors (@zferry)
extends_documentation_fragment:
  - zferry.zfs.job
seealso:
  - module: zferry.zfs.zfs_allow
"""

EXAMPLES = r"""
- name: Push the backups offsite, raw
  zferry.zfs.zfs_push:
    host: offsite
    user: zferry
    datasets: [slowpool/encryptedbackups/client1]
    destination: tank/backups
    strip_prefix: slowpool/encryptedbackups
    job_name: push-offsite
"""

RETURN = r"""
job:
  description: The job name.
  returned: always
  type: str
  sample: pull-client1
kind:
  description: V(pull) or V(push).
  returned: always
  type: str
host:
  description: The remote side, as C(user@host:port).
  returned: always
  type: str
check_mode:
  description: Whether this was only a plan.
  returned: always
  type: bool
datasets:
  description: One entry per source dataset, in replication order.
  returned: always
  type: list
  elements: dict
  contains:
    source:
      description: Source dataset.
      type: str
    target:
      description: Target dataset.
      type: str
    action:
      description: >-
        V(up_to_date), V(full), V(incremental), V(resume), V(skipped) (no snapshots; see RV(datasets[].note) and RV(datasets[].warnings)),
        V(refused) or V(failed).
      type: str
    snapshots:
      description: Snapshots that arrived (in check mode, that would arrive).
      type: list
      elements: str
    bytes:
      description: Bytes streamed (in check mode, the estimate).
      type: int
    duration_ms:
      description: Wall time in milliseconds.
      type: int
    base:
      description: The common base snapshot the copy ends at.
      type: str
    destroyed:
      description: Snapshots or datasets destroyed on the target by O(on_divergence).
      type: list
      elements: str
    error:
      description: Why it failed or was refused.
      type: str
    warnings:
      description: Problems that did not fail the transfer (for example a hold not placed).
      type: list
      elements: str
    note:
      description: >-
        Why nothing was done when that is expected, for example a parent dataset without
        snapshots of its own whose children are replicated (not a warning).
      type: str
    holds_changed:
      description: Whether holds moved.
      type: bool
msg:
  description: Human summary, one line per dataset; on failure, the failed datasets and why.
  returned: always
  type: str
"""
