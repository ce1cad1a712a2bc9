"""Action plugin: compute the cluster plan on the controller, before any host is contacted.

Reads the inventory (groups and each host's variables), hands plain data to
module_utils.cluster_plan.build_plan and publishes the result as the fact
`sglang_cluster_plan`. It never opens a connection, so a refused inventory changes nothing.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import (
    DEFAULTS,
    HEAD_GROUP,
    ROOT_GROUP,
    PlanError,
    build_plan,
)

# Read per host besides the plan's own variables.
EXTRA_KEYS = ("ansible_host",)


class ActionModule(ActionBase):
    """Validate the inventory and publish `sglang_cluster_plan`."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset()
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        groups = task_vars.get("groups", {})
        hostvars = task_vars.get("hostvars", {})
        root_hosts = list(groups.get(ROOT_GROUP, []))
        model_groups = self._model_groups(groups, root_hosts)
        plain = {}
        for host in root_hosts:
            hv = hostvars[host]
            plain[host] = {k: hv[k] for k in tuple(DEFAULTS) + EXTRA_KEYS if k in hv}
            # Only whether a key exists travels into the plan, never the key itself.
            plain[host]["_api_key_set"] = bool(hv.get("sglang_server_api_key"))
        heads = list(groups.get(HEAD_GROUP, []))
        if len(heads) > 1:
            raise AnsibleActionFail("%s: ray_head group has %d hosts (%s). Fix: keep one host in "
                                    "ray_head" % (HEAD_GROUP, len(heads), ", ".join(heads)))
        try:
            plan = build_plan(model_groups, plain, root_hosts, heads[0] if heads else None)
        except PlanError as exc:
            raise AnsibleActionFail("The inventory is not a valid SGLang cluster (%d problem%s); "
                                    "no host was contacted:\n- %s"
                                    % (len(exc.problems), "" if len(exc.problems) == 1 else "s",
                                       "\n- ".join(exc.problems)))
        result.update(changed=False, ansible_facts={"sglang_cluster_plan": plan},
                      msg="%d nodes in %d model groups; Ray head %s"
                      % (len(plan["hosts"]), len(plan["groups"]), plan["ray"]["head"]))
        return result

    def _model_groups(self, groups, root_hosts):
        """The children of sglang_nodes, in inventory order, with their hosts in order.

        The `groups` variable is flat, so the parent/child tree comes from the inventory the
        play was loaded with.
        """
        manager = self._task.get_variable_manager()
        inventory = getattr(manager, "_inventory", None)
        root = inventory.groups.get(ROOT_GROUP) if inventory is not None else None
        if root is None:
            raise AnsibleActionFail("%s: group not found in the inventory. Fix: put every GPU "
                                    "server under a model group that is a child of %s"
                                    % (ROOT_GROUP, ROOT_GROUP))
        return {g.name: [h for h in groups.get(g.name, []) if h in root_hosts]
                for g in root.child_groups}
