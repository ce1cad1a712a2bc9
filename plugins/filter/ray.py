"""Filters exposing the Ray argv/environment builders of module_utils to the ray role."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_args import (
    ray_environment,
    ray_start_argv,
)


class FilterModule:
    """Ray unit filters: `plan | ray_start_argv(host, ...)`, `plan | ray_environment(host)`."""

    def filters(self):
        return {"ray_start_argv": ray_start_argv, "ray_environment": ray_environment}
