"""Filters exposing the install decisions of module_utils.install to the sglang role."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sglang_ops.cluster.plugins.module_utils import driver, install, model


def _wrap(func):
    def filt(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValueError as exc:
            raise AnsibleFilterError(str(exc)) from exc
    filt.__doc__ = func.__doc__
    return filt


def _model_source_problem(source, model_path, src_dir=None, repo=None):
    """The prefetch refusal for these settings, '' when they are fine."""
    return model.source_problem(source, model_path, src_dir, repo) or ""


class FilterModule:
    """`pip_source_args(mode, url)`, `pinned_requirements(versions)`,
    `install_requirements(versions, lock)`, `gpu_driver_plan(...)`,
    `model_source_problem(source, path, src_dir, repo)`."""

    def filters(self):
        return {
            "pip_source_args": _wrap(install.pip_source_args),
            "pinned_requirements": _wrap(install.pinned_requirements),
            "install_requirements": _wrap(install.install_requirements),
            "gpu_driver_plan": _wrap(driver.plan),
            "model_source_problem": _model_source_problem,
        }
