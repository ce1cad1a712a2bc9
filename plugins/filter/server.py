"""Filters exposing the server decisions of module_utils.server to the sglang_server role."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.filter.install import _wrap
from ansible_collections.sglang_ops.cluster.plugins.module_utils import server


def _start_decision(plan, group, setting):
    """{start, reason} for the group's units."""
    start, reason = server.start_decision(plan, group, setting)
    return {"start": start, "reason": reason}


def _verify_decision(group, plan, setting):
    """{start, reason} for `group`, argument order for map() over group names."""
    return _start_decision(plan, group, setting)


class FilterModule:
    """`server_units(plan, group, opts)`, `server_validation_argv(argv, launcher)`,
    `server_start_decision(plan, group, setting)`,
    `server_fence_argv(plan, group, host, script, max_restarts, window)`,
    `server_verify_decision(group, plan, setting)`, `server_router_unit(plan, opts)`,
    `server_router_validation_argv(argv, launcher)`."""

    def filters(self):
        return {
            "server_units": _wrap(server.group_units),
            "server_validation_argv": _wrap(server.validation_argv),
            "server_start_decision": _wrap(_start_decision),
            "server_fence_argv": _wrap(server.fence_argv),
            "server_verify_decision": _wrap(_verify_decision),
            "server_router_unit": _wrap(server.router_unit),
            "server_router_validation_argv": _wrap(server.router_validation_argv),
        }
