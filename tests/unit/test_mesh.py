"""Port mesh: the probe verdicts on real sockets (loopback), the ports chosen, the table."""

import socket
import subprocess
import sys
import threading
import time

from ansible_collections.sglang_ops.cluster.plugins.module_utils import mesh
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan


def serve_for_test(address, ports, stop):
    """An in-process listener (the behaviour of mesh.LISTENER) until `stop` is set."""
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(64)
        s.settimeout(0.1)
        socks.append(s)

    def loop():
        while not stop.is_set():
            for s in socks:
                try:
                    s.accept()[0].close()
                except OSError:
                    pass
        for s in socks:
            s.close()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_open_and_closed_ports_on_loopback():
    open_port, closed_port = free_port(), free_port()
    stop = threading.Event()
    serve_for_test("127.0.0.1", [open_port], stop)
    try:
        t0 = time.monotonic()
        results = mesh.probe_all([{"host": "peer", "address": "127.0.0.1", "ports": [open_port, closed_port]}],
                                 timeout=0.5, settle=1.0)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
    by_port = {r["port"]: r for r in results}
    assert by_port[open_port]["ok"] and not by_port[closed_port]["ok"]
    assert "refused" in by_port[closed_port]["error"].lower()
    assert 0.9 < elapsed < 3  # the refused port was retried for the settle window, not longer


def test_late_listener_is_found_within_settle():
    port = free_port()
    stop = threading.Event()
    threading.Timer(0.5, lambda: serve_for_test("127.0.0.1", [port], stop)).start()
    try:
        result, = mesh.probe_all([{"host": "p", "address": "127.0.0.1", "ports": [port]}], timeout=0.5, settle=3)
    finally:
        time.sleep(0.1)
        stop.set()
    assert result["ok"]


def test_free_ports_sees_a_bound_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy = s.getsockname()[1]
    other = free_port()
    try:
        assert mesh.free_ports("127.0.0.1", [busy, other]) == ([other], [busy])
    finally:
        s.close()


def test_mesh_ports_from_plan():
    hv = {"a": dict(ansible_host="10.0.0.1", cluster_interface="eth0", cluster_gpus_per_node=1, sglang_model_path="m")}
    ports = mesh.mesh_ports(build_plan({"g": ["a"]}, hv)["nodes"]["a"])
    assert {6379, 6380, 11000, 11499, 20000, 20004, 30000} <= set(ports)
    assert 6385 not in ports and 6386 not in ports  # Ray's metrics: only the Prometheus host reaches them
    assert 8265 not in ports and 10001 not in ports and 11001 not in ports


def test_failures_table():
    failures = mesh.mesh_failures({
        "it1": [{"to": "it2", "port": 20000, "ok": False, "error": "timed out"},
                {"to": "it2", "port": 6379, "ok": True, "error": None}],
        "it2": [{"to": "it1", "port": 20000, "ok": True, "error": None}]})
    assert failures == [("it1", "it2", 20000, "timed out")]
    assert mesh.mesh_table(failures) == ["from  to   port   error", "it1   it2  20000  timed out"]


def test_listener_exits_once_every_peer_connected_and_holds_a_port_nobody_reached(tmp_path):
    """mesh.LISTENER as the node runs it: with one peer, it exits as soon as each port saw its
    connection; a port whose probe never arrives (dropped by a firewall) keeps it, and every
    other port with it, until its deadline. Hence port_mesh's state=stopped once the probes are in."""
    def start(ports, linger):
        ready = tmp_path / ("ready-%d" % ports[0])
        proc = subprocess.Popen([sys.executable, "-c", mesh.LISTENER, "127.0.0.1", "1", str(linger), str(ready)]
                                + [str(p) for p in ports], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        return proc

    def connect(port):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    a, b = free_port(), free_port()
    both = start([a, b], 30)
    connect(a)
    connect(b)
    assert both.wait(timeout=5) == 0  # every port reached: gone at once

    c, d = free_port(), free_port()
    one = start([c, d], 30)
    try:
        connect(c)  # d's probe never arrives
        time.sleep(1.5)
        assert one.poll() is None
        assert mesh.free_ports("127.0.0.1", [c, d])[0] == []  # both still taken, the reached one too
    finally:
        one.kill()
        one.wait()


def test_port_mesh_needs_the_probe_inputs_unless_stopping(module_run):
    out = module_run("port_mesh", state="probed", ports=[6379])
    assert out["failed"] and "address" in out["msg"] and "peers" in out["msg"]
