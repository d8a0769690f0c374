# Copyright: zferry contributors
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
"""Action for zferry.zfs.zfs_pull: runs the zfs_pull binary built for the target's architecture."""

from __future__ import annotations

from ansible_collections.zferry.zfs.plugins.plugin_utils.binary import BinaryModuleAction


class ActionModule(BinaryModuleAction):
    """See plugins/modules/zfs_pull.py for the options."""

    module = "zfs_pull"
