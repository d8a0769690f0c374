# Copyright: zferry contributors
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
"""Runs the zferry binary module built for the target host's CPU architecture."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

# `uname -m` and `ansible_facts.architecture` spellings -> the binaries' suffix.
ARCHITECTURES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}


class BinaryModuleAction(ActionBase):
    """Picks ``zferry.zfs.<module>_<arch>`` and runs it with the task's arguments.

    The architecture comes from gathered facts when present, else from one ``uname -m``
    on the target, so ``gather_facts: false`` plays and ad-hoc runs work too.
    """

    TRANSFERS_FILES = True
    _supports_check_mode = True
    _supports_async = False
    module = ""

    def _architecture(self, task_vars):
        facts = task_vars.get("ansible_facts") or {}
        arch = facts.get("architecture") or task_vars.get("ansible_architecture")
        if arch:
            return str(arch)
        res = self._low_level_execute_command("uname -m", sudoable=False)
        if res.get("rc") != 0:
            raise RuntimeError(
                "cannot find the target's architecture: uname -m failed (rc=%s): %s"
                % (res.get("rc"), (res.get("stderr") or "").strip())
            )
        return res.get("stdout", "").strip()

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        try:
            arch = self._architecture(task_vars)
        except RuntimeError as e:
            result.update(failed=True, msg=str(e))
            return result
        suffix = ARCHITECTURES.get(arch)
        if suffix is None:
            result.update(
                failed=True,
                msg="zferry.zfs.%s has no binary for architecture %r (built: x86_64, aarch64)"
                % (self.module, arch),
            )
            return result
        name = "zferry.zfs.%s_%s" % (self.module, suffix)
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(name)
        if not found.resolved:
            result.update(
                failed=True,
                msg="the %s binary for %s is not in the collection; build it with "
                "'make ansible-build' (ansible/build.sh) before using zferry.zfs" % (self.module, suffix),
            )
            return result
        result.update(
            self._execute_module(
                module_name=name,
                module_args=self._task.args,
                task_vars=task_vars,
            )
        )
        return result
