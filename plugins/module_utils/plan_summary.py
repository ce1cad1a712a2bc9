"""What the plan role prints: one line per model group and one for Ray, however many nodes.

A line per host (a per-host task) costs a task on every host; at 512 nodes that was a minute
of the plan step. Groups are the unit operators reason about, so the summary lists them.
"""

from __future__ import annotations


def _gpus(node: dict) -> str:
    devices = node.get("cuda_visible_devices") or "none"
    return devices + (" (fake)" if node.get("gpus_fake") else "")


def summary(plan: dict) -> list[str]:
    """["group G: N nodes, rank 0 HOST (IP on IFACE), dist-init ADDR, GPUs/node ...", ..., "Ray ..."]."""
    nodes = plan["nodes"]
    lines = []
    for name, group in plan["groups"].items():
        rank0 = nodes[group["rank0"]]
        gpus = sorted({_gpus(nodes[h]) for h in group["hosts"]})
        others = group["hosts"][1:]
        shown = ", ".join(others[:3]) + (", ... (%d more)" % (len(others) - 3) if len(others) > 3 else "")
        lines.append("group %s: %d node%s, rank 0 %s (%s on %s), dist-init %s, GPUs %s%s" % (
            name, group["nnodes"], "" if group["nnodes"] == 1 else "s", group["rank0"],
            rank0.get("cluster_ip"), rank0.get("cluster_interface"), group.get("dist_init_addr"),
            " | ".join(gpus), "; ranks 1+ " + shown if others else ""))
    ray = plan["ray"]
    lines.append("Ray: head %s at %s, %d nodes, %d GPUs"
                 % (ray["head"], ray["gcs_address"], ray["nodes"], ray["gpus"]))
    return lines
