"""The port mesh: every node reaches every other node's cluster ports, checked concurrently.

Why this exists: a port closed on one node (a host firewall, a security group) shows up in
multi-node SGLang as a hang at rendezvous, long after the model started loading. Each node
runs one short-lived listener on the ports nothing listens on yet, then connects to every
peer's ports at once; the controller gets one table of (from, to, port) failures. Probes run
in threads and all nodes probe at the same time, so the wall time stays nearly flat as the
cluster grows.
"""

from __future__ import annotations

import errno
import socket
import time
from concurrent.futures import ThreadPoolExecutor

# Run by the node's system python3 in a transient systemd unit:
#   python3 -c LISTENER ADDRESS PEERS DEADLINE READY_FILE PORT...
# Listens on every free PORT, then creates READY_FILE; exits once each port saw PEERS
# connections (it may be done before its own node looks), or at DEADLINE.
LISTENER = r"""
import selectors, socket, sys, time
address, peers, deadline = sys.argv[1], int(sys.argv[2]), time.time() + float(sys.argv[3])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
sel, seen = selectors.DefaultSelector(), {}
for port in map(int, sys.argv[5:]):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port)); s.listen(64); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, port); seen[port] = 0
open(sys.argv[4], "w").close()
print("listening", sorted(seen), flush=True)
while seen and min(seen.values()) < peers and time.time() < deadline:
    for key, _ in sel.select(timeout=0.5):
        conn, _ = key.fileobj.accept(); conn.close(); seen[key.data] += 1
"""


def mesh_ports(node):
    """The ports of `node` that peers must reach: every fixed Ray/SGLang port, the first and
    last Ray worker port, and the first ports above dist-init (SGLang's TCPStore neighbours).
    The dashboard and the Ray client port are left out: they must not be reachable; so are Ray's
    metrics ports, which only the Prometheus host reaches (module_utils/metrics.py)."""
    ports = node["ports"]
    wanted = {v for k, v in ports.items() if k not in ("ray_dashboard_port", "ray_client_server_port",
                                                       "ray_metrics_export_port", "ray_autoscaler_metrics_port")}
    dist = ports.get("sglang_dist_init_port")
    if dist:
        wanted.update(range(dist, dist + 5))
    return sorted(p for p in wanted if p)


def free_ports(address, ports):
    """Split `ports` into those free on `address` and those something already listens on."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    free, busy = [], []
    for port in ports:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
            free.append(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            busy.append(port)
        finally:
            s.close()
    return free, busy


def _probe(host, address, port, timeout, settle_until):
    """Connect once per attempt; refused or timed out is retried until `settle_until`, since a
    peer's listener may still be starting. The last error is the verdict."""
    t0 = time.monotonic()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    error = None
    while True:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((address, port))
            return {"to": host, "address": address, "port": port, "ok": True, "error": None,
                    "ms": round((time.monotonic() - t0) * 1000, 1)}
        except socket.timeout:
            error = "timed out (dropped by a firewall?)"
        except OSError as exc:
            error = exc.strerror or str(exc)
        finally:
            s.close()
        if time.monotonic() >= settle_until:
            return {"to": host, "address": address, "port": port, "ok": False, "error": error,
                    "ms": round((time.monotonic() - t0) * 1000, 1)}
        time.sleep(0.2)


def probe_all(targets, timeout=2.0, settle=10.0, workers=256):
    """targets: [{host, address, ports}] -> one result per (host, port), all probed at once."""
    settle_until = time.monotonic() + settle
    jobs = [(t["host"], t["address"], p) for t in targets for p in t["ports"]]
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(lambda j: _probe(j[0], j[1], j[2], timeout, settle_until), jobs))


def mesh_failures(results_by_host):
    """{from host: [probe results]} -> [(from, to, port, error)] of every failed probe."""
    return sorted((src, r["to"], r["port"], r["error"])
                  for src, results in results_by_host.items() for r in results if not r["ok"])


def mesh_table(failures):
    """A plain table an operator can read in a terminal."""
    rows = [("from", "to", "port", "error")] + [(a, b, str(c), d) for a, b, c, d in failures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
