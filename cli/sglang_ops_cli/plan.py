"""The cluster plan of an inventory, computed by the collection's own Python.

Why this exists: sglang-ops must name the same units, ranks, paths and start decisions as the
roles. So it runs what the `cluster_plan` action plugin runs (plugin_utils.plan_inputs: the
roles' options judged with their defaults, then module_utils.cluster_plan.build_plan) and asks
module_utils.node_spec for every per-node decision; nothing here computes a plan value.
"""

from __future__ import annotations

from sglang_ops_cli import collection_path
from sglang_ops_cli.inventory import SSH_KEYS, InventoryError, ssh_target

collection_path()

# pylint: disable=wrong-import-position
from ansible_collections.sglang_ops.cluster.plugins.module_utils import cluster_plan, node_spec, server  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils import plan_inputs  # noqa: E402

# The sglang_server role's options that decide what runs (roles/sglang_server/tasks/preflight.yml
# hands the same ones to node_spec).
SETTINGS = {"server_start": "sglang_server_start", "fence": "sglang_server_fence"}


class Cluster:
    """The plan, each node's decisions (node_spec), the role settings and the SSH targets."""

    def __init__(self, plan, values, targets):
        self.plan = plan
        self.values = values
        self.targets = targets
        self.specs = {h: node_spec.node_spec(plan, h, self.settings(h)) for h in plan["hosts"]}

    def settings(self, host):
        return {k: self.values[host].get(v) for k, v in SETTINGS.items()}

    def value(self, name, host=None):
        return self.values[host or self.plan["hosts"][0]].get(name)

    @property
    def groups(self):
        return self.plan["groups"]

    @property
    def layout(self):
        return self.plan["layout"]

    def unit(self, group):
        return server.unit_name(self.plan, group)

    def fence_unit(self, group):
        return server.fence_unit_name(self.plan, group)

    def fenced(self, group):
        return self.specs[self.groups[group]["rank0"]]["fenced"]

    def decision(self, group):
        """{start, reason}: whether the group's ranks are meant to run (deploy and verify agree)."""
        return self.specs[self.groups[group]["rank0"]]["servers"][group]

    def key_file(self):
        # The API key the server and router units get as a credential (0600 root; the whole
        # file is the key): the plan's layout.credentials.api_key.
        return self.layout["credentials"]["api_key"]

    def router_host(self):
        router = self.plan.get("router")
        return router["host"] if router else None

    def router_start(self):
        return all(d["start"] for d in self.specs[self.plan["hosts"][0]]["servers"].values())

    def rank(self, host):
        return self.plan["nodes"][host]["node_rank"]

    def group_of(self, host):
        return self.plan["nodes"][host]["group"]


def compute(inv, resolver, host_key_checking=True):
    """Judge the inventory like the action plugin does and return a Cluster, or raise InventoryError."""
    groups = inv.model_groups()
    root_hosts = inv.hosts_of(cluster_plan.ROOT_GROUP)
    prefixes = plan_inputs.namespaces()
    raw, unreadable, ssh = {}, {}, {}
    for host in root_hosts:
        values, bad = resolver.host_values(host, lambda n: n.startswith(prefixes) or n in SSH_KEYS)
        raw[host] = {k: v for k, v in values.items() if k.startswith(prefixes) or k in plan_inputs.EXTRA_KEYS}
        unreadable.update({(host, k): e for k, e in bad.items()})
        ssh[host] = ssh_target(host, values, host_key_checking)
    plan, lines, judged = plan_inputs.compute(groups, root_hosts, inv.hosts_of(cluster_plan.HEAD_GROUP),
                                              raw, unreadable)
    if lines:
        raise InventoryError("the inventory is not a valid SGLang cluster (%d problem%s), as deploy.yml "
                             "would say:\n- %s" % (len(lines), "" if len(lines) == 1 else "s",
                                                   "\n- ".join(lines)))
    return Cluster(plan, judged.values, ssh)
