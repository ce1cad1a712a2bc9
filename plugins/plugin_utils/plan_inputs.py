"""From raw inventory values to the cluster plan: shared by the cluster_plan action and sglang-ops.

Both must judge the roles' inputs and build the plan the same way, so that the day-2 command
line names exactly the ranks, units and paths that deploy.yml made.
"""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import (
    DEFAULTS,
    HEAD_GROUP,
    PlanError,
    build_plan,
    report,
)
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils import inputs, role_specs

# Read per host besides the collection's own variables.
EXTRA_KEYS = ("ansible_host", "ansible_port")  # ansible_port: the firewall keeps it open for SSH


def namespaces():
    """The variable prefixes of the collection's roles (cluster_, sglang_, ray_, ...)."""
    return inputs.namespaces(role_specs.roles())


def compute(model_groups, root_hosts, heads, raw, unreadable, check_mode=False):
    """(plan, None, judged) or (None, [one line per problem], judged).

    model_groups: {group: [hosts in order]}; root_hosts: every host of sglang_nodes in order;
    heads: the hosts of the ray_head group; raw: {host: {variable: value}} (the collection's
    namespaces and EXTRA_KEYS); unreadable: {(host, variable): why} for values that could not be
    templated. judged.values holds every role option with its default, for callers that read
    role settings.
    """
    judged = inputs.judge(root_hosts, raw, role_specs.load(), role_specs.roles(), check_mode, unreadable)
    plain = {}
    for host in root_hosts:
        plain[host] = {k: judged.values[host].get(k) for k in DEFAULTS}
        plain[host].update({k: raw[host][k] for k in EXTRA_KEYS if k in raw[host]})
        # Only whether a key exists travels into the plan, never the key itself.
        plain[host]["_api_key_set"] = bool(raw[host].get("sglang_server_api_key"))
        plain[host]["_admin_api_key_set"] = bool(raw[host].get("sglang_server_admin_api_key"))
        plain[host]["_tls_api_set"] = bool(raw[host].get("sglang_server_tls_cert") and raw[host].get("sglang_server_tls_key"))
        plain[host]["_tls_ray_set"] = bool(raw[host].get("ray_tls_cert") and raw[host].get("ray_tls_key"))
        # The service units require the firewall's unit where the firewall role loads it.
        plain[host]["_firewall_enabled"] = judged.values[host].get("firewall_enabled") is not False
    items = list(judged.problems)
    if len(heads) > 1:
        items.append((HEAD_GROUP, "groups", "the ray_head group has %d hosts (%s)"
                      % (len(heads), ", ".join(heads)), "keep one host in ray_head"))
    plan = None
    try:
        plan = build_plan(model_groups, plain, root_hosts, heads[0] if heads else None,
                          refused=judged.refused)
    except PlanError as exc:
        items.extend(exc.items)
    if items:
        return None, report(items, root_hosts, model_groups), judged
    return plan, None, judged
