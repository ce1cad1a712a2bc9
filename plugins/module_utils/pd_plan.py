"""Prefill/decode disaggregation, expert parallelism and the RDMA settings of the cluster plan.

Why this exists: a PD deployment fails late and far from its cause when its parts disagree (a
prefill group without a decode group, two sides with different transfer backends, a bootstrap
port nobody opened, tp/dp/ep that do not divide, a router that does not know the bootstrap
ports). These relations are judged here on the controller, with the same (where, variable,
problem, fix) lines as the rest of the plan, before SGLang's own checks run on the nodes.
cluster_plan.build_plan calls these functions; they read values through its checker.
"""

from __future__ import annotations

import re

PD_ROLES = ("none", "prefill", "decode")
# SGLang 0.5.23's --disaggregation-transfer-backend choices that move KV between nodes;
# `fake` (a test double in SGLang), `ascend` and `mori` (other accelerators) are not planned here.
TRANSFER_BACKENDS = ("mooncake", "nixl", "mooncake_tcp")
# --moe-a2a-backend choices of SGLang 0.5.23 that the plan accepts (checked against its parser
# in tests/unit/test_pd_plan.py where SGLang is installed).
MOE_A2A_BACKENDS = ("none", "deepep", "mooncake", "nixl", "mori", "ascend_fuseep", "flashinfer", "megamoe",
                    "deepep_v2", "pplx", "ascend_tp", "flashinfer_megamoe")
RDMA_MODES = ("auto", "required", "off")
# An RDMA device name as /sys/class/infiniband lists it (mlx5_0, bnxt_re0, irdma1, rocep1s0f0).
RDMA_DEVICE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_group(chk, group, first, par, nnodes):
    """The PD role and the EP settings of one model group: a dict for the group's plan."""
    role = chk.get(first, "sglang_pd_role")
    if role not in PD_ROLES:
        chk.fail(group, "sglang_pd_role", "%r is not a PD role" % (role,),
                 "set sglang_pd_role to prefill or decode for the groups of a PD deployment, "
                 "or none (the default)")
        role = None
    out = {"pd_role": role, "ep_size": 1, "moe_a2a_backend": "none", "enable_eplb": False,
           "ep_num_redundant_experts": 0, "attn_dp_size": 1}
    ep = chk.positive_int(first, "sglang_ep")
    a2a = chk.get(first, "sglang_moe_a2a_backend")
    if a2a not in MOE_A2A_BACKENDS:
        chk.fail(group, "sglang_moe_a2a_backend", "%r is not an all-to-all backend SGLang 0.5.23 knows"
                 % (a2a,), "use one of %s" % ", ".join(MOE_A2A_BACKENDS))
        a2a = None
    eplb = chk.get(first, "sglang_enable_eplb")
    redundant = chk.get(first, "sglang_ep_num_redundant_experts")
    if not _is_int(redundant) or redundant < 0:
        chk.fail(group, "sglang_ep_num_redundant_experts", "%r is not an integer >= 0" % (redundant,),
                 "set sglang_ep_num_redundant_experts to 0 or a positive number of extra expert copies")
        redundant = None
    if par is None or ep is None:
        return out
    tp, dp = par["tp"], par["dp"]
    if ep > tp or tp % ep:
        chk.fail(group, "sglang_ep", "ep %d does not divide tp %d (experts are sharded over "
                 "the tensor-parallel ranks of the group)" % (ep, tp),
                 "choose sglang_ep among the divisors of %d (usually %d: one expert shard per GPU)"
                 % (tp, tp))
        return out
    if a2a not in (None, "none"):
        if ep != tp:
            chk.fail(group, "sglang_moe_a2a_backend", "%s all-to-all needs ep = tp, but ep is %d and "
                     "tp %d (SGLang would silently raise ep to tp)" % (a2a, ep, tp),
                     "set sglang_ep: %d, or sglang_moe_a2a_backend: none" % tp)
            return out
    if eplb is True and ep == 1:
        chk.fail(group, "sglang_enable_eplb", "expert load balancing with ep 1 has no experts to move",
                 "set sglang_ep above 1, or sglang_enable_eplb: false")
        return out
    if redundant and not eplb:
        chk.fail(group, "sglang_ep_num_redundant_experts", "%d redundant experts without expert "
                 "load balancing" % redundant,
                 "set sglang_enable_eplb: true, or sglang_ep_num_redundant_experts: 0")
        return out
    dp_attention = chk.get(first, "sglang_enable_dp_attention") is True
    if dp_attention and dp == 1:
        chk.fail(group, "sglang_enable_dp_attention", "DP attention with sglang_dp 1 runs one "
                 "attention replica, which is plain TP",
                 "set sglang_dp to the number of attention replicas (a divisor of tp %d), or "
                 "sglang_enable_dp_attention: false" % tp)
        return out
    out.update(ep_size=ep, moe_a2a_backend=a2a or "none", enable_eplb=eplb is True,
               ep_num_redundant_experts=redundant or 0, attn_dp_size=dp if dp_attention else 1)
    return out


def bootstrap_port(chk, first, role):
    """The prefill group's --disaggregation-bootstrap-port (a port of its own), else None."""
    if role != "prefill":
        return None
    return chk.port(first, "sglang_pd_bootstrap_port")


def check_deployment(chk, all_hosts, groups, root):
    """The PD deployment as a whole: {transfer_backend, prefill, decode} or None without PD.

    groups: the plan's groups (with pd_role, model_path, backend); root: the name that stands
    for every host (cluster-wide variables are reported there).
    """
    first = all_hosts[0]
    if any(s.get("pd_role") is None for s in groups.values()):
        return None  # a role was refused on its own line; the deployment cannot be judged
    prefill = [g for g, s in groups.items() if s.get("pd_role") == "prefill"]
    decode = [g for g, s in groups.items() if s.get("pd_role") == "decode"]
    if not prefill and not decode:
        return None
    backend = chk.get(first, "sglang_pd_transfer_backend")
    if backend not in TRANSFER_BACKENDS:
        chk.fail(root, "sglang_pd_transfer_backend", "%r is not a KV transfer backend between nodes"
                 % (backend,), "use one of %s" % ", ".join(TRANSFER_BACKENDS))
    if not prefill or not decode:
        have, lack = ("prefill", "decode") if prefill else ("decode", "prefill")
        chk.fail(", ".join(prefill or decode), "sglang_pd_role", "a %s group without any %s group: "
                 "the PD deployment cannot serve a request" % (have, lack),
                 "add a model group with sglang_pd_role: %s, or set sglang_pd_role: none" % lack)
        return None
    plain = [g for g, s in groups.items() if s.get("pd_role") == "none"]
    if plain:
        chk.fail(", ".join(plain), "sglang_pd_role", "a regular group beside a PD deployment: its one "
                 "router runs in PD mode and cannot front it",
                 "give the group sglang_pd_role prefill or decode, or deploy it as a cluster of its own")
        return None
    if not chk.get(first, "sglang_router"):
        chk.fail(root, "sglang_router", "false, but a PD deployment needs its router (requests "
                 "enter through it and it pairs a prefill with a decode server)",
                 "set sglang_router: true")
    models = {groups[g]["model_path"] for g in prefill + decode}
    if len(models) > 1:
        chk.fail(", ".join(decode), "sglang_model_path", "the decode groups serve %s, the prefill "
                 "groups %s: the KV cache is only valid for the model that made it"
                 % (sorted({groups[g]["model_path"] for g in decode}),
                    sorted({groups[g]["model_path"] for g in prefill})),
                 "serve one model in every prefill and decode group")
    for g in prefill + decode:
        if groups[g].get("backend") == "ray":
            chk.fail(g, "sglang_backend", "ray in a PD group: the bootstrap server and the transfer "
                     "engine are planned per node unit", "use sglang_backend: native in PD groups")
    return {"transfer_backend": backend, "prefill": prefill, "decode": decode}


def check_rdma(chk, all_hosts, root):
    """cluster_rdma and each node's pinned devices / GID index: ({host: node fields}, mode)."""
    first = all_hosts[0]
    mode = chk.get(first, "cluster_rdma")
    if mode not in RDMA_MODES:
        chk.fail(root, "cluster_rdma", "%r is not an RDMA mode" % (mode,),
                 "use auto (check and use RDMA where devices exist), required (fail without it) "
                 "or off (sockets only)")
        mode = "auto"
    out = {}
    for host in all_hosts:
        devices = chk.get(host, "cluster_rdma_devices")
        gid = chk.get(host, "cluster_rdma_gid_index")
        if not isinstance(devices, list) or not all(isinstance(d, str) and RDMA_DEVICE.match(d)
                                                    for d in devices):
            chk.fail(host, "cluster_rdma_devices", "%r is not a list of RDMA device names" % (devices,),
                     "list the names `ibv_devices` (or /sys/class/infiniband) shows, e.g. [mlx5_0, mlx5_1]")
            devices = []
        elif len(set(devices)) != len(devices):
            chk.fail(host, "cluster_rdma_devices", "%r names a device twice" % (devices,),
                     "list each RDMA device once")
            devices = []
        if gid is not None and (not _is_int(gid) or not 0 <= gid <= 255):
            chk.fail(host, "cluster_rdma_gid_index", "%r is not a GID table index (0-255)" % (gid,),
                     "set the RoCE v2 GID index `show_gids` lists for the cluster address, or leave "
                     "it unset to take it from the node's GID table")
            gid = None
        if mode == "off" and (devices or gid is not None):
            chk.fail(host, "cluster_rdma_devices" if devices else "cluster_rdma_gid_index",
                     "set while cluster_rdma is off", "remove it, or set cluster_rdma: auto")
        out[host] = {"rdma_devices": list(devices), "rdma_gid_index": gid}
    return out, mode


def router_targets(groups, nodes, pd, format_hostport):
    """The PD router's targets: each prefill group's rank 0 URL with its bootstrap port, each
    decode group's rank 0 URL (replaces the regular worker list)."""
    def url(spec):
        return "http://%s" % format_hostport(nodes[spec["rank0"]]["cluster_ip"], spec["http_port"])
    return {
        "pd": True,
        "workers": [],
        "prefill": [{"url": url(groups[g]), "bootstrap_port": groups[g]["bootstrap_port"]}
                    for g in pd["prefill"]],
        "decode": [url(groups[g]) for g in pd["decode"]],
    }
