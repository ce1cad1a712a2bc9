"""The plan role's one-line-per-group summary."""

from ansible_collections.sglang_ops.cluster.plugins.module_utils.plan_summary import summary


def _plan(groups):
    nodes, plan_groups = {}, {}
    for name, hosts in groups.items():
        for i, host in enumerate(hosts):
            nodes[host] = {"cluster_ip": "10.0.0.%d" % (len(nodes) + 1), "cluster_interface": "eth0",
                           "cuda_visible_devices": "0,1", "gpus_fake": i == 1}
        plan_groups[name] = {"hosts": hosts, "nnodes": len(hosts), "rank0": hosts[0],
                             "dist_init_addr": nodes[hosts[0]]["cluster_ip"] + ":20000"}
    return {"nodes": nodes, "groups": plan_groups,
            "ray": {"head": "a0", "gcs_address": "10.0.0.1:6379", "nodes": len(nodes), "gpus": 2 * len(nodes)}}


def test_one_line_per_group_and_one_for_ray():
    lines = summary(_plan({"big": ["a0", "a1", "a2", "a3", "a4", "a5"], "solo": ["b0"]}))
    assert lines == [
        "group big: 6 nodes, rank 0 a0 (10.0.0.1 on eth0), dist-init 10.0.0.1:20000, GPUs 0,1 | 0,1 (fake);"
        " ranks 1+ a1, a2, a3, ... (2 more)",
        "group solo: 1 node, rank 0 b0 (10.0.0.7 on eth0), dist-init 10.0.0.7:20000, GPUs 0,1",
        "Ray: head a0 at 10.0.0.1:6379, 7 nodes, 14 GPUs",
    ]
