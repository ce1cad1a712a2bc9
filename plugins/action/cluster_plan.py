"""Action plugin: judge the inventory and compute the cluster plan, before any host is contacted.

Reads the inventory (groups and each host's variables in the collection's namespaces), judges
every role's inputs against the roles' argument specs (plugin_utils.inputs, with the role
defaults taken from those specs: role defaults are not in hostvars), hands the plan's own
options to module_utils.cluster_plan.build_plan and publishes the result as the fact
`sglang_cluster_plan` (or, with `publish: result`, returns it for the plan role's set_fact).
Every problem of both is reported at once, one line each, sorted by host.
It never opens a connection, so a refused inventory changes nothing.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.release import __version__ as ansible_version
from ansible.plugins.action import ActionBase
from jinja2 import Undefined

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import HEAD_GROUP, ROOT_GROUP
from ansible_collections.sglang_ops.cluster.plugins.module_utils.plan_summary import summary
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils import plan_inputs, role_specs
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.plan_inputs import EXTRA_KEYS


class ActionModule(ActionBase):
    """Validate the inventory and publish `sglang_cluster_plan`."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("publish",))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        publish = self._task.args.get("publish", "fact")
        if publish not in ("fact", "result"):
            raise AnsibleActionFail("cluster_plan: publish must be 'fact' or 'result', not %r" % (publish,))
        groups = task_vars.get("groups", {})
        hostvars = task_vars.get("hostvars", {})
        root_hosts = list(groups.get(ROOT_GROUP, []))
        model_groups = self._model_groups(groups, root_hosts)
        prefixes = plan_inputs.namespaces()
        raw, unreadable = {}, {}
        for host in root_hosts:
            raw[host] = self._read(host, hostvars[host], prefixes, unreadable)
        check_mode = bool(self._task.check_mode or getattr(self._play_context, "check_mode", False))
        specs = role_specs.load()
        plan, lines, judged = plan_inputs.compute(model_groups, root_hosts, list(groups.get(HEAD_GROUP, [])),
                                                  raw, unreadable, check_mode, specs)
        if lines:
            raise AnsibleActionFail("The inventory is not a valid SGLang cluster (%d problem%s); "
                                    "no host was contacted:\n- %s"
                                    % (len(lines), "" if len(lines) == 1 else "s", "\n- ".join(lines)))
        plan_inputs.rerun_inputs(plan, judged, raw, model_groups, list(groups.get(HEAD_GROUP, [])),
                                 specs, ansible_version)
        # A host fact is deep-copied for every host at every task (Ansible's clean_facts): with a
        # plan that grows with the cluster that is quadratic (60 s of a 512-node plan step). The
        # plan role publishes it with set_fact instead, which Ansible shares without copying.
        if publish == "fact":
            result["ansible_facts"] = {"sglang_cluster_plan": plan}
        else:
            result["plan"] = plan
        result.update(changed=False, summary=summary(plan),
                      msg="%d nodes in %d model groups; Ray head %s"
                      % (len(plan["hosts"]), len(plan["groups"]), plan["ray"]["head"]))
        return result

    @staticmethod
    def _read(host, hv, prefixes, unreadable):
        """The host's variables in the collection's namespaces (and EXTRA_KEYS), templated.

        A value that cannot be templated is left out and noted, without its text (it may be a
        secret's template).
        """
        values = {}
        for name in list(hv.keys()):
            if not (name.startswith(prefixes) or name in EXTRA_KEYS):
                continue
            try:
                value = hv[name]
            except Exception as exc:  # pylint: disable=broad-except
                # Only the error's class travels: its text may quote the template, or a secret.
                unreadable[(host, name)] = type(exc).__name__
                continue
            # ansible-core < 2.19 hands back an undefined template as it was written (or as an
            # Undefined) instead of raising.
            if isinstance(value, Undefined) or (isinstance(value, str) and ("{{" in value or "{%" in value)):
                unreadable[(host, name)] = "a variable it refers to is undefined"
                continue
            values[name] = value
        return values

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
