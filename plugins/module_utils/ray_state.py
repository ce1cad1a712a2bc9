"""Reading a live Ray cluster's membership, and judging it against what the plan expects.

Why this exists: a worker that fails to join is silent in Ray, and `ray status` text is made
for eyes. The probe below runs inside the cluster's own venv (the module's interpreter has no
Ray), prints JSON, and the verdict is plain Python that unit tests cover.
"""

from __future__ import annotations

# One read of the GCS's node table, shared by PROBE and tools/bench_rayup.py's timing probe:
# returns (client, nodes). A failed read raises; callers then pass client=None to connect anew.
GCS_READ = r"""
import socket
from ray._raylet import GcsClient
def gcs_nodes(address, client):
    if client is None:
        host, port = address.rsplit(":", 1)
        # Ray's client waits about 40 s for an address where nothing listens: ask TCP first.
        socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        client = GcsClient(address=address)
    return client, [{"node_id": n.node_id.hex(), "ip": n.node_manager_address,
                     "hostname": n.node_manager_hostname, "alive": n.state == 0,
                     "gpus": n.resources_total.get("GPU", 0.0), "cpus": n.resources_total.get("CPU", 0.0)}
                    for n in client.get_all_node_info(timeout=5).values()]
"""

# Run as `<venv>/bin/python -c PROBE '<json args>'`: reads the GCS's node table until the
# expectation holds or the timeout passes. A GCS client, as `ray status` uses, not a driver:
# ray.init registers a job and starts a core worker (1.7-2.7 s a call here, against about 1 s),
# and a driver that cannot reach the GCS retries for 20 s whatever the answer. Only the placement
# check (verify) joins as a driver, once the cluster is complete.
PROBE = GCS_READ + r"""
import json, sys, time
args = json.loads(sys.argv[1])
import ray
deadline = time.monotonic() + args["timeout"]
want_ips = set(args["expect_ips"])
client = nodes = None
while True:
    try:
        client, nodes = gcs_nodes(args["address"], client)
    except Exception as e:  # unreachable, refused (token, TLS) or timed out: said at the deadline
        client, error = None, "%s: %s" % (type(e).__name__, e)
    if nodes is None and time.monotonic() >= deadline:
        sys.exit("cannot read the GCS node table at %s: %s" % (args["address"], error))
    if nodes is not None:
        alive = [n for n in nodes if n["alive"]]
        gpus = sum(n["gpus"] for n in alive)
        if (want_ips <= {n["ip"] for n in alive} and gpus >= args["expect_gpus"]) or time.monotonic() >= deadline:
            break
    time.sleep(0.5)
out = {"ray_version": ray.__version__, "nodes": nodes}
if args.get("placement"):
    out["placement"] = None  # stays None when the cluster is incomplete: placement would only wait
if args.get("placement") and gpus >= max(1, args["expect_gpus"]):
    # One task per GPU, each in its own bundle, so every GPU is held at once and reported once.
    ray.init(address=args["address"], log_to_driver=False, logging_level="ERROR")
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    n = int(gpus)
    pg = placement_group([{"GPU": 1}] * n, strategy="SPREAD")
    ray.get(pg.ready(), timeout=120)
    @ray.remote(num_gpus=1, num_cpus=0)
    def where():
        import os
        return {"ip": ray.util.get_node_ip_address(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    refs = [where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote() for i in range(n)]
    out["placement"] = ray.get(refs, timeout=180)
    ray.util.remove_placement_group(pg)
print(json.dumps(out))
"""


def placement_problems(placement, plan):
    """Every node's GPU tasks saw distinct GPU ids, as many as the plan gives it, and only
    ids from its CUDA_VISIBLE_DEVICES."""
    by_ip = {}
    for task in placement:
        by_ip.setdefault(task["ip"], []).extend(task["gpu_ids"])
    problems = []
    for host, node in plan["nodes"].items():
        seen = by_ip.get(node["cluster_ip"], [])
        allowed = set(node["cuda_visible_devices"].split(",")) if node["cuda_visible_devices"] else set()
        if len(seen) != node["num_gpus"] or len(set(seen)) != len(seen):
            problems.append("%s: Ray placed %d GPU tasks with ids %s, %d GPUs planned. Fix: check "
                            "--num-gpus and CUDA_VISIBLE_DEVICES in the Ray unit"
                            % (host, len(seen), sorted(seen), node["num_gpus"]))
        elif not set(seen) <= allowed:
            problems.append("%s: Ray handed out GPU ids %s outside CUDA_VISIBLE_DEVICES %s"
                            % (host, sorted(set(seen) - allowed), node["cuda_visible_devices"]))
    return problems


def summarize(nodes, expect=None, expect_gpus=0):
    """Totals, and which expected hosts are not alive in the cluster.

    nodes:  [{ip, alive, gpus, ...}] as the probe prints them (dead nodes stay listed by Ray).
    expect: {host: cluster_ip} of the nodes that must have joined.
    """
    alive = [n for n in nodes if n["alive"]]
    alive_ips = {n["ip"] for n in alive}
    gpus = sum(float(n.get("gpus") or 0) for n in alive)
    missing = sorted(h for h, ip in (expect or {}).items() if ip not in alive_ips)
    problems = []
    if missing:
        problems.append("not alive in the Ray cluster: %s" % ", ".join(
            "%s (%s)" % (h, expect[h]) for h in missing))
    if gpus < expect_gpus:
        problems.append("%g GPUs alive, %d expected" % (gpus, expect_gpus))
    return {
        "alive_nodes": len(alive),
        "dead_nodes": len(nodes) - len(alive),
        "gpus_total": gpus,
        "missing": missing,
        "problems": problems,
    }
