"""Filters exposing the install decisions of module_utils.install to the sglang role."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import driver, install, model
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.filters import wrap_errors


def _model_source_problem(source, model_path, src_dir=None, repo=None):
    """The prefetch refusal for these settings, '' when they are fine."""
    return model.source_problem(source, model_path, src_dir, repo) or ""


class FilterModule:
    """`pip_source_args(mode, url)`, `pinned_requirements(versions)`,
    `install_requirements(versions, lock)`, `gpu_driver_plan(...)`,
    `model_source_problem(source, path, src_dir, repo)`, `src_dir | model_manifest`."""

    def filters(self):
        return {
            "pip_source_args": wrap_errors(install.pip_source_args),
            "pinned_requirements": wrap_errors(install.pinned_requirements),
            "install_requirements": wrap_errors(install.install_requirements),
            "gpu_driver_plan": wrap_errors(driver.plan),
            "model_source_problem": _model_source_problem,
            "model_manifest": wrap_errors(model.manifest),
            "transfer_engine_packages": wrap_errors(install.transfer_engine_packages),
        }
