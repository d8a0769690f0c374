#!/usr/bin/python
# Copyright: zferry contributors
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# Documentation only: the module is the zferry binary (see plugins/action/zfs_allow.py).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zfs_allow
short_description: Manage delegated ZFS permissions (zfs allow), idempotently
description:
  - Grants or removes delegated permissions on a ZFS dataset with C(zfs allow) and
    C(zfs unallow), reading the current grants first so that a task only reports C(changed)
    when the grants really changed.
  - A superset of M(community.general.zfs_delegate_admin) with the same option names and
    meanings, plus create time permissions, permission sets, O(exact), check mode and diff.
  - Only the grants made on O(name) itself are considered; grants inherited from its
    ancestors are shown by C(zfs allow) but are neither compared nor changed.
  - A Rust binary module (the zferry binary); the action plugin runs the build for the
    target's CPU architecture (x86_64 or aarch64).
version_added: "0.1.0"
author:
  - zferry contributors (@zferry)
attributes:
  check_mode:
    support: full
    description: Reads the grants and predicts the commands and the resulting grants.
  diff_mode:
    support: full
    description: Shows the grant table of the dataset before and after.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with OpenZFS (x86_64 or aarch64).
options:
  name:
    description:
      - The dataset (filesystem or volume) to manage permissions on.
    type: str
    required: true
  state:
    description:
      - V(present) grants the permissions; V(absent) removes them.
      - With V(absent) and no O(permissions), every permission of the listed principals
        (in the chosen scope) is removed.
    type: str
    choices: [present, absent]
    default: present
  users:
    description:
      - Users to grant or remove permissions for. A user without a name on the host is
        given (and shown by C(zfs allow)) as its numeric uid.
    type: list
    elements: str
  groups:
    description:
      - Groups to grant or remove permissions for.
    type: list
    elements: str
  everyone:
    description:
      - Also grant or remove the permissions for everyone.
    type: bool
    default: false
  permissions:
    description:
      - Permissions (for example V(send), V(hold), V(receive), property names) and permission
        sets (V(@name)) for the listed principals.
      - Required with O(state=present) and principals, unless O(exact=true).
    type: list
    elements: str
  local:
    description:
      - Apply to the dataset itself only (C(zfs allow -l)), unless O(descendents) is also true.
      - When neither O(local) nor O(descendents) is true, both apply.
    type: bool
  descendents:
    description:
      - Apply to descendent datasets only (C(zfs allow -d)), unless O(local) is also true.
    type: bool
  recursive:
    description:
      - With O(state=absent), also remove the permissions from every descendent dataset.
        Ignored (with a warning) for O(state=present).
    type: bool
    default: false
  create_time_permissions:
    description:
      - Create time permissions (C(zfs allow -c)), given to whoever creates a descendent.
      - With O(state=absent) and an empty list, all create time permissions are removed.
    type: list
    elements: str
  sets:
    description:
      - Permission sets to define (or, with O(state=absent), remove) on O(name), as a mapping
        of V(@name) to its permissions. With O(state=absent), an empty list removes the set.
    type: dict
  exact:
    description:
      - With O(state=present), also remove what is not listed, on O(name) only. That is the listed
        principals' other permissions (in the chosen scope), the create time permissions not
        in O(create_time_permissions) when that is given, and the other permissions of each
        set in O(sets). Principals, sets and scopes that are not listed are left alone.
    type: bool
    default: false
  older_zfs:
    description:
      - What to do with a delegation this host's OpenZFS kernel module does not know
        (C(send:raw) and C(send:encrypted) are new in 2.4.0, C(receive:append) in 2.3.1).
      - V(fail) lets C(zfs allow) refuse it (the error names the newer names).
      - V(fallback) grants the older, wider permission instead (C(send), C(receive)) and
        returns a warning saying so; the version read from C(zfs version) is returned as
        RV(zfs_version). Applies to O(permissions), O(create_time_permissions) and O(sets).
    type: str
    choices: [fail, fallback]
    default: fail
notes:
  - Commands are run as argv vectors, never through a shell.
  - Permission names are compared in lower case; principal and set names as given.
seealso:
  - module: community.general.zfs_delegate_admin
"""

EXAMPLES = r"""
- name: Let the backup user send and hold on the client's pool
  zferry.zfs.zfs_allow:
    name: tank/data
    users: [zferry]
    permissions: [send, hold, release]

- name: Exactly these receive permissions on the backup root, nothing more
  zferry.zfs.zfs_allow:
    name: slowpool/encryptedbackups
    users: zferry
    permissions: create,mount,canmount,receive,hold,release
    exact: true

- name: Raw sends only where OpenZFS 2.4 can enforce it; plain send (with a warning) elsewhere
  zferry.zfs.zfs_allow:
    name: tank/data
    users: [zferry]
    permissions: [send:raw, hold, release]
    exact: true
    older_zfs: fallback

- name: A permission set, used by a group, only below the dataset
  zferry.zfs.zfs_allow:
    name: tank/home
    sets:
      "@snapper": [snapshot, destroy, mount]
    groups: [staff]
    permissions: ["@snapper"]
    descendents: true

- name: Creators of child datasets may destroy and mount them
  zferry.zfs.zfs_allow:
    name: tank/scratch
    create_time_permissions: [destroy, mount]

- name: Remove everything an old user had on the pool and all its datasets
  zferry.zfs.zfs_allow:
    name: tank
    users: olduser
    state: absent
    recursive: true
"""

RETURN = r"""
name:
  description: The dataset.
  returned: success
  type: str
  sample: tank/data
commands:
  description: The zfs allow/unallow commands that ran (or would run, in check mode).
  returned: success
  type: list
  elements: str
  sample: ["zfs allow -u zferry hold,send tank/data"]
grants:
  description:
    - Per dataset, the grants after the change (predicted in check mode), as data.
  returned: success
  type: dict
  sample:
    tank/data:
      sets: {"@snapper": [destroy, mount, snapshot]}
      create_time: []
      grants:
        - {type: user, name: zferry, local: [hold, send], descendent: [hold, send]}
zfs_version:
  description: The kernel module's OpenZFS release, read with O(older_zfs=fallback).
  returned: when O(older_zfs=fallback) and O(state=present)
  type: str
  sample: 2.3.2
cmd:
  description: The command that failed, as it can be pasted into a shell.
  returned: failure
  type: str
rc:
  description: Exit code of the failed command (1 for other failures).
  returned: failure
  type: int
stderr:
  description: Standard error of the failed command.
  returned: failure
  type: str
"""
