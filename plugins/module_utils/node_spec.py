"""One node's view of the cluster plan, with every decision its roles need, in one call.

Why this exists: the roles used to decide in Jinja whether a group starts, whether its fence
runs, when the router starts, which collective backend and rendezvous address a rank uses and
what the mesh probes, some of it twice (preflight and verify, deploy and verify). Here each is
computed once from the plan and the role's settings and unit-tested; tasks only print the result.
"""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import mesh, server

START_SETTINGS = ("auto", "always", "never")


def start_decisions(plan, setting="auto"):
    """{group: {start, reason}} for every model group (deploy and verify decide alike)."""
    out = {}
    for group in plan["groups"]:
        start, reason = server.start_decision(plan, group, setting)
        out[group] = {"start": start, "reason": reason}
    return out


def mesh_args(plan, host):
    """The port_mesh module's arguments: this node's ports, and every peer with its ports."""
    node = plan["nodes"][host]
    return {"address": node["cluster_ip"], "ports": mesh.mesh_ports(node),
            "peers": [{"host": h, "address": n["cluster_ip"], "ports": mesh.mesh_ports(n)}
                      for h, n in plan["nodes"].items() if h != host]}


def collective_args(plan, host):
    """The collective_check module's arguments for this node's rank of its group."""
    node = plan["nodes"][host]
    group = plan["groups"][node["group"]]
    return {"venv_dir": node["venv_dir"], "rank": node["node_rank"], "world_size": group["nnodes"],
            "master_addr": group["master_addr"], "master_port": node["ports"]["sglang_dist_init_port"],
            "interface": node["cluster_interface"], "backend": node["collective_backend"],
            "cuda_visible_devices": node["cuda_visible_devices"]}


def fenced(plan, group_name, enabled=True):
    """Whether the group runs a fate-sharing fence: several native ranks and a fence port."""
    group = plan["groups"][group_name]
    return bool(enabled and group["backend"] == "native" and group["nnodes"] > 1
                and group.get("fence_port") is not None)


def node_spec(plan, host, settings=None):
    """Everything a role needs about `host`, decided once.

    settings (all optional): server_start (auto | always | never), fence (bool),
    fence_max_restarts, fence_window, server (the sglang_server role's options for
    server.group_units; with it the unit argv/env, the fence argv and the router unit are built),
    router (router_policy, router_args).
    """
    settings = settings or {}
    node = plan["nodes"][host]
    group_name = node["group"]
    group = plan["groups"][group_name]
    decisions = start_decisions(plan, settings.get("server_start", "auto"))
    router = plan.get("router")
    spec = {
        "node": node,
        "group_name": group_name,
        "group": group,
        "layout": plan["layout"],
        "rank0": host == group["rank0"],
        "mesh": mesh_args(plan, host),
        "collective": collective_args(plan, host),
        "servers": decisions,
        "start": decisions[group_name],
        # The router starts once every group it fronts is meant to run.
        "router_start": all(d["start"] for d in decisions.values()),
        "is_router": bool(router) and router["host"] == host,
        "fenced": fenced(plan, group_name, settings.get("fence", True)),
        "unit": server.unit_name(plan, group_name),
        "fence_unit": server.fence_unit_name(plan, group_name),
        "fence_state": server.fence_state_file(plan, group_name),
        "legacy_env_files": server.legacy_env_files(plan, group_name),
    }
    if "server" in settings:
        spec["server"] = server.group_units(plan, group_name, settings["server"]).get(host)
        spec["fenced"] = spec["fenced"] and spec["server"] is not None
        spec["fence_argv"] = (server.fence_argv(plan, group_name, host,
                                                settings.get("fence_max_restarts", 3),
                                                settings.get("fence_window", 600),
                                                health=settings.get("fence_health"))
                              if spec["fenced"] else [])
        # The fence unit: only the members' addresses (IPAddressAllow=), and loopback where rank
        # 0's fence probes its server; the group's key file.
        probes = spec["rank0"] and bool((settings.get("fence_health") or {}).get("failures"))
        spec["fence_unit_spec"] = ({"members": server.fence_members(plan, group_name) + (["localhost"] if probes else []),
                                    "key_file": plan["layout"]["files"]["fence_secrets"][group_name]}
                                   if spec["fenced"] else None)
        opts = dict(settings["server"], **(settings.get("router") or {}))
        spec["router"] = server.router_unit(plan, opts).get(host)
    return spec
