"""Filters exposing the install decisions of module_utils.install to the sglang role."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sglang_ops.cluster.plugins.module_utils import driver, install


def _wrap(func):
    def filt(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValueError as exc:
            raise AnsibleFilterError(str(exc)) from exc
    filt.__doc__ = func.__doc__
    return filt


class FilterModule:
    """`pip_source_args(mode, url)`, `pinned_requirements(versions)`, `gpu_driver_plan(...)`."""

    def filters(self):
        return {
            "pip_source_args": _wrap(install.pip_source_args),
            "pinned_requirements": _wrap(install.pinned_requirements),
            "gpu_driver_plan": _wrap(driver.plan),
        }
