"""Ordered group operations: the same order as the sglang_server role (tasks/stop.yml, run.yml).

stop:    the router, the group's fence on every node (or it would take the stop for a failure
         and restart the group), rank 0, then the other ranks together.
start:   every rank together (only where the plan starts the group: on CPU hosts it reports
         "not started: no GPU" as deploy and verify do), the fences, then rank 0's
         /health_generate is awaited, then the router (once every group runs) and its /health.
restart: stop, then start. One rank alone is never restarted: it cannot rejoin its group.
"""

from __future__ import annotations

ACTIONS = ("stop", "start", "restart")


class Step:
    """One step: `verb` ("stop", "start", "wait", "skip") on [(host, unit)] together."""

    def __init__(self, verb, title, targets=(), group=None, reason=""):
        self.verb, self.title, self.targets, self.group, self.reason = verb, title, list(targets), group, reason

    def as_tuple(self):
        return (self.verb, self.title, tuple(self.targets))

    def __repr__(self):
        return "Step%r" % (self.as_tuple(),)


class Refused(Exception):
    """An operation the CLI will not run, with the reason and the fix."""


def resolve_group(cluster, target):
    """The model group `target` names; a host (one rank) or an unknown name is refused."""
    groups = cluster.groups
    if target in groups:
        return target
    if target in cluster.plan["nodes"]:
        group = cluster.group_of(target)
        if groups[group]["nnodes"] > 1:
            raise Refused("%s is rank %d of %s: a rank restarted alone cannot rejoin its group (the "
                          "others wait for it in NCCL). Fix: sglang-ops restart %s (the whole group, "
                          "in order)" % (target, cluster.rank(target), group, group))
        raise Refused("%s is a node, not a group. Fix: sglang-ops restart %s (its one-node group)"
                      % (target, group))
    raise Refused("unknown group %r. Fix: use one of the inventory's model groups: %s"
                  % (target, ", ".join(groups)))


def stop_steps(cluster, group):
    spec = cluster.groups[group]
    unit = cluster.unit(group)
    steps = []
    router = cluster.router_host()
    if router:
        steps.append(Step("stop", "router", [(router, cluster.layout["units"]["router"])], group))
    if cluster.fenced(group):
        steps.append(Step("stop", "fence", [(h, cluster.fence_unit(group)) for h in spec["hosts"]], group))
    steps.append(Step("stop", "rank 0", [(spec["rank0"], unit)], group))
    others = [h for h in spec["hosts"] if h != spec["rank0"]]
    if others:
        steps.append(Step("stop", "ranks 1-%d" % len(others) if len(others) > 1 else "rank 1",
                          [(h, unit) for h in others], group))
    return steps


def start_steps(cluster, group):
    spec = cluster.groups[group]
    unit = cluster.unit(group)
    decision = cluster.decision(group)
    steps = []
    if decision["start"]:
        steps.append(Step("start", "all ranks", [(h, unit) for h in spec["hosts"]], group))
    else:
        steps.append(Step("skip", "all ranks", [(h, unit) for h in spec["hosts"]], group, decision["reason"]))
    if cluster.fenced(group):
        steps.append(Step("start", "fence", [(h, cluster.fence_unit(group)) for h in spec["hosts"]], group))
    if decision["start"]:
        steps.append(Step("wait", "rank 0 /health_generate", [(spec["rank0"], unit)], group))
    router = cluster.router_host()
    if router:
        name = cluster.layout["units"]["router"]
        if cluster.router_start():
            steps.append(Step("start", "router", [(router, name)], group))
            steps.append(Step("wait", "router /health", [(router, name)], group))
        else:
            steps.append(Step("skip", "router", [(router, name)], group,
                              "not started: a group it fronts is not started"))
    return steps


def plan_steps(cluster, action, group):
    if action == "stop":
        return stop_steps(cluster, group)
    if action == "start":
        return start_steps(cluster, group)
    if action == "restart":
        return stop_steps(cluster, group) + start_steps(cluster, group)
    raise Refused("unknown action %r" % action)


def by_host(targets):
    """{host: [units]} of a step's targets, hosts in order."""
    out = {}
    for host, unit in targets:
        out.setdefault(host, []).append(unit)
    return out
