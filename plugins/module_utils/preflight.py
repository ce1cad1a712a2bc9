"""Cross-node preflight verdicts: one network identity per node, parity, clock, disk, GPUs.

Why this exists: the failures that cost operators an hour are disagreements between nodes
(an interface that is down on one, a 9000/1500 MTU mix, one node with another torch, a clock
minutes off). Nodes report plain facts (node_info, gpu_info); this module turns them into
problems that name the host, the variable and the fix, and is unit-tested on those facts.
"""

from __future__ import annotations

import json
from collections import Counter

from ansible_collections.sglang_ops.cluster.plugins.module_utils.gpu import check_gpus
from ansible_collections.sglang_ops.cluster.plugins.module_utils.install import normalize_name, version_matches

PARITY_KEYS = ("python", "torch", "ray", "sglang", "gpu_driver", "cuda", "rocm")


def parse_ip_addr(text, ifname):
    """`ip -j addr show` -> what the checks need about one interface."""
    for link in json.loads(text or "[]"):
        if link.get("ifname") != ifname:
            continue
        flags = link.get("flags", [])
        return {"exists": True, "up": "UP" in flags and link.get("operstate") in ("UP", "UNKNOWN"),
                "operstate": link.get("operstate"), "mtu": link.get("mtu"),
                "addresses": [a["local"] for a in link.get("addr_info", []) if "local" in a]}
    return {"exists": False, "up": False, "operstate": None, "mtu": None, "addresses": []}


def identity_problems(host, node, facts):
    """The interface named in the inventory exists, is up and carries the cluster IP."""
    iface, ifname, ip = facts["interface"], node["cluster_interface"], node["cluster_ip"]
    if not iface["exists"]:
        return ["%s: cluster_interface: %s does not exist on this node (it has %s). Fix: set "
                "cluster_interface to the NIC that carries %s" % (host, ifname,
                                                                  ", ".join(facts.get("interfaces", [])) or "none", ip)]
    problems = []
    if not iface["up"]:
        problems.append("%s: cluster_interface: %s is %s. Fix: bring it up (ip link set %s up) or "
                        "choose the interface that is" % (host, ifname, iface["operstate"], ifname))
    if ip not in iface["addresses"]:
        problems.append("%s: cluster_ip: %s is not an address of %s (it has %s). Fix: set cluster_ip "
                        "to one of them or fix cluster_interface"
                        % (host, ip, ifname, ", ".join(iface["addresses"]) or "none"))
    return problems


def odd_ones(values):
    """{host: value} -> (majority value, {host: value} of the hosts that differ); None = unknown."""
    known = {h: v for h, v in values.items() if v is not None}
    if not known:
        return None, {}
    counts = Counter(known.values())
    majority = sorted(counts, key=lambda v: (-counts[v], str(v)))[0]
    return majority, {h: v for h, v in sorted(known.items()) if v != majority}


def versions_of(facts):
    gpu = facts.get("gpu") or {}
    packages = facts.get("venv") or {}
    return {"python": facts.get("venv_python"), "torch": packages.get("torch"),
            "ray": packages.get("ray"), "sglang": packages.get("sglang"),
            "gpu_driver": gpu.get("driver_version"), "cuda": gpu.get("cuda_version"),
            "rocm": gpu.get("rocm_version")}


def parity_problems(facts_by_host, pins=None):
    """Every node runs the same Python, torch, Ray, SGLang, driver and CUDA/ROCm.

    A package with a pin (sglang_versions) is judged against it, so even a 2-node cluster
    names the odd node; other versions against the majority, and a tie names every node.
    """
    problems = []
    pins = {normalize_name(k): str(v) for k, v in (pins or {}).items()}
    versions = {h: versions_of(f) for h, f in facts_by_host.items()}
    for key in PARITY_KEYS:
        values = {h: v[key] for h, v in versions.items() if v[key] is not None}
        if key in pins:
            for host, value in sorted(values.items()):
                if not version_matches(value, pins[key]):
                    problems.append("%s: %s %s, but sglang_versions pins %s. Fix: re-run deploy.yml "
                                    "(the install puts every node on the pins)" % (host, key, value, pins[key]))
            continue
        majority, odd = odd_ones(values)
        if odd and len(odd) * 2 >= len(values):
            problems.append("%s: %s differs between nodes (%s). Fix: install the same %s on every node"
                            % (", ".join(sorted(values)), key,
                               ", ".join("%s %s" % hv for hv in sorted(values.items())), key))
            continue
        for host, value in odd.items():
            problems.append("%s: %s %s differs from %s on the other nodes. Fix: install the same %s "
                            "on every node" % (host, key, value, majority, key))
    return problems


def mtu_problems(plan, facts_by_host):
    problems = []
    for group, spec in plan["groups"].items():
        majority, odd = odd_ones({h: facts_by_host[h]["interface"]["mtu"]
                                  for h in spec["hosts"] if h in facts_by_host})
        for host, mtu in odd.items():
            problems.append("%s: cluster_interface: MTU %s, the rest of %s uses %s. Fix: set the same "
                            "MTU on every node (jumbo frames must be end to end)" % (host, mtu, group, majority))
    return problems


def node_problems(plan, facts_by_host, max_skew_s, min_free_gb):
    """All problems of the gathered nodes, sorted by host."""
    problems = []
    for host, facts in sorted(facts_by_host.items()):
        node = plan["nodes"][host]
        problems += identity_problems(host, node, facts)
        if facts.get("gpu") is not None:
            problems += check_gpus(host, facts["gpu"], node["gpu_count"], node["gpus_fake"], node["gpu_ids"])
        skew, window = facts.get("clock_skew"), facts.get("clock_window") or 0.0
        # measured = true offset + transit, transit in [0, window]: flag only a certain excess.
        if skew is not None and (skew < -max_skew_s or skew - window > max_skew_s):
            problems.append("%s: clock: %+.2f s from the controller (limit %.2f s). Fix: enable NTP "
                            "(chrony or systemd-timesyncd) on every node"
                            % (host, skew if skew < 0 else skew - window, max_skew_s))
        if facts["disk_free_gb"] < min_free_gb:
            problems.append("%s: disk: %.1f GB free at %s, %s GB needed for the model cache. Fix: free "
                            "space or set preflight_min_free_gb" % (host, facts["disk_free_gb"],
                                                                    facts["disk_path"], min_free_gb))
    return problems + mtu_problems(plan, facts_by_host)
