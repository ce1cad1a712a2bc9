"""The collective check: a real torch.distributed all_reduce across the nodes of a model group.

Why this exists: the first NCCL/gloo collective is where a wrong interface, a blocked port or a
silent fall-back from RDMA to TCP sockets shows. This runs the same rendezvous SGLang will use
(rank 0's dist-init port, the same *_SOCKET_IFNAME), reports latency and bus bandwidth per
message size, and is bounded: a rank that fails writes `failed/<rank>` into the rendezvous
store, so its peers stop at once and name it instead of hanging until the timeout.
"""

from __future__ import annotations

import re

# Run as `<venv>/bin/python -c SCRIPT '<json args>'`; prints one JSON line.
SCRIPT = r"""
import datetime, json, os, socket, sys, threading, time
a = json.loads(sys.argv[1])
rank, world, T = a["rank"], a["world_size"], a["timeout"]
out = {"rank": rank, "host": a["host"], "backend": a["backend"], "ok": False}
def finish(code, **kw):
    out.update(kw); print(json.dumps(out), flush=True); os._exit(code)
try:
    import torch, torch.distributed as dist
except Exception as e:
    finish(2, stage="import", error="cannot import torch: %s" % e)
td = datetime.timedelta(seconds=T)
deadline = time.monotonic() + T
try:
    store = dist.TCPStore(a["master_addr"], a["master_port"], world, rank == 0, timeout=td, wait_for_workers=False)
    watch = dist.TCPStore(a["master_addr"], a["master_port"], world, False, timeout=td)
except Exception as e:
    finish(2, stage="rendezvous", error="cannot reach the rendezvous %s:%s: %s" % (a["master_addr"], a["master_port"], e))
store.set("host/%d" % rank, a["host"])
err = {}
def init():
    try:
        if a["backend"] == "nccl":
            torch.cuda.set_device(0)
        dist.init_process_group(a["backend"], store=dist.PrefixStore("pg", store), rank=rank, world_size=world, timeout=td)
    except Exception as e:
        err["e"] = "%s: %s" % (type(e).__name__, e)
t = threading.Thread(target=init, daemon=True); t.start()
while t.is_alive():
    t.join(0.25)
    for r in range(world):
        if r != rank and watch.check(["failed/%d" % r]):
            finish(3, stage="peer", error="stopped: rank %d failed first" % r, peer_rank=r, peer=json.loads(watch.get("failed/%d" % r)))
    if time.monotonic() > deadline:
        missing = [r for r in range(world) if not watch.check(["host/%d" % r])]
        finish(4, stage="init", error="timed out after %ds waiting for ranks %s" % (T, missing or "to finish init"))
if err:
    store.set("failed/%d" % rank, json.dumps({"host": a["host"], "error": err["e"]}))
    finish(2, stage="init", error=err["e"])
dev = torch.device("cuda", 0) if a["backend"] == "nccl" else torch.device("cpu")
sync = torch.cuda.synchronize if a["backend"] == "nccl" else (lambda: None)
x = torch.full((4,), float(rank + 1), device=dev)
dist.all_reduce(x)
expected = world * (world + 1) / 2
if x.tolist() != [expected] * 4:
    finish(2, stage="verify", error="all_reduce returned %s, expected %s" % (x.tolist(), expected))
figures = []
for size in a["sizes"]:
    buf = torch.ones(max(1, size // 4), dtype=torch.float32, device=dev)
    for _ in range(2):
        dist.all_reduce(buf)
    sync(); dist.barrier(); t0 = time.perf_counter()
    for _ in range(a["iters"]):
        dist.all_reduce(buf)
    sync(); dt = (time.perf_counter() - t0) / a["iters"]
    algbw = buf.numel() * 4 / dt / 1e9
    figures.append({"bytes": buf.numel() * 4, "latency_us": round(dt * 1e6, 1), "algbw_gbps": round(algbw, 3),
                    "busbw_gbps": round(algbw * 2 * (world - 1) / world, 3)})
dist.barrier()
dist.destroy_process_group()  # before exit, or rank 0 (the store owner) may abort
finish(0, ok=True, figures=figures)
"""

_TRANSPORT = re.compile(r"NCCL INFO (?:Using network|NET/)(\w+)")
_CHANNEL = re.compile(r"via (NET/\w+|P2P/\w+|SHM)")


def nccl_transport(log):
    """What NCCL chose, from NCCL_DEBUG=INFO output: e.g. ('IB', ['NET/IB']), ('Socket', [...])."""
    nets = [m for m in _TRANSPORT.findall(log) if m not in ("Plugin",)]
    channels = sorted(set(_CHANNEL.findall(log)))
    network = "IB" if "IB" in nets else (nets[0] if nets else None)
    if any(c == "NET/Socket" for c in channels):
        network = "Socket" if not any(c == "NET/IB" for c in channels) else network
    return network, channels


def format_figures(figures):
    rows = [("size", "latency", "algbw", "busbw")]
    for f in figures:
        size = f["bytes"]
        label = "%d MiB" % (size >> 20) if size >= 1 << 20 else "%d KiB" % (size >> 10) if size >= 1024 else "%d B" % size
        rows.append((label, "%.1f us" % f["latency_us"], "%.3f GB/s" % f["algbw_gbps"], "%.3f GB/s" % f["busbw_gbps"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]


def collective_problems(group, results, rdma_hosts=(), socket_fallback="fail", min_busbw_gbps=0,
                        rdma_planned=()):
    """Verdict for one group. results: {host: module result}. Names the rank that failed first.

    rdma_planned: hosts where the plan requires RDMA (cluster_rdma: required, or pinned
    cluster_rdma_devices); NCCL on sockets there always fails, whatever socket_fallback says.
    """
    problems, warnings = [], []
    first = [h for h, r in sorted(results.items()) if not r.get("ok") and r.get("stage") not in ("peer", "init")]
    first += [h for h, r in sorted(results.items()) if r.get("stage") == "init" and not r.get("ok")
              and "timed out" not in (r.get("error") or "")]
    for host in dict.fromkeys(first):
        problems.append("%s: collective (%s, group %s): %s. Fix: check cluster_interface and that the "
                        "node reaches rank 0's dist-init port"
                        % (host, results[host].get("backend"), group, results[host].get("error")))
    if not problems:
        for host, r in sorted(results.items()):
            if not r.get("ok"):
                problems.append("%s: collective (group %s): %s" % (host, group, r.get("error")))
    for host, r in sorted(results.items()):
        if r.get("transport") == "Socket" and host in rdma_planned:
            problems.append("%s: collective: NCCL fell back to NET/Socket although the plan requires RDMA "
                            "(cluster_rdma / cluster_rdma_devices). Fix: check NCCL_IB_HCA, the IB/RoCE link "
                            "state and nvidia-peermem (preflight's RDMA table)" % host)
        elif r.get("transport") == "Socket" and host in rdma_hosts:
            msg = ("%s: collective: NCCL fell back to NET/Socket although RDMA devices exist (a 10-20x "
                   "slowdown). Fix: check NCCL_IB_HCA, the IB/RoCE link state and nvidia-peermem" % host)
            (problems if socket_fallback == "fail" else warnings).append(msg)
    rank0 = next((r for r in results.values() if r.get("rank") == 0 and r.get("ok")), None)
    if rank0 and min_busbw_gbps and rank0["figures"]:
        best = max(f["busbw_gbps"] for f in rank0["figures"])
        if best < min_busbw_gbps:
            problems.append("%s: collective: bus bandwidth %.3f GB/s is below preflight_min_busbw_gbps "
                            "%s" % (group, best, min_busbw_gbps))
    return problems, warnings
