"""Filters exposing module_utils.node_spec and the server builders to the roles."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import node_spec, redact, rolling, server
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.filters import wrap_errors


class FilterModule:
    """`plan | node_spec(host, settings)`, `argv | server_validation_argv(launcher)`,
    `argv | server_router_validation_argv(launcher)`, `text | redact(secrets)`,
    `plan | server_roll_plan(changed_hosts, settings)`, `plan | server_router_auth`,
    `secrets | server_credential_files(credentials, legacy)`."""

    def filters(self):
        return {
            "node_spec": wrap_errors(node_spec.node_spec),
            "server_validation_argv": wrap_errors(server.validation_argv),
            "server_router_validation_argv": wrap_errors(server.router_validation_argv),
            "redact": redact.redact,
            "server_roll_plan": wrap_errors(rolling.roll_plan),
            "server_router_auth": wrap_errors(rolling.router_auth),
            "server_credential_files": wrap_errors(server.credential_files),
        }
