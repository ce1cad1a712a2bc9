"""The readiness wait of a started group (module server_ready, module_utils/probe.ready_verdict):
its verdict table, and the module itself polling a loopback server with a test double of
systemctl that reads the unit's state from a file."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.probe import ready_verdict

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins/modules/server_ready.py"


@pytest.mark.parametrize("status, unit, phase, verdict, words", [
    (200, "active", None, "ready", "answers"),
    (200, "failed", "gave-up", "ready", "answers"),  # an answer is an answer
    (0, "activating", None, "wait", "no answer, rank 0's unit activating"),
    (503, "active", None, "wait", "HTTP 503"),
    (0, "failed", None, "ended", "rank 0's unit is failed"),
    (0, "inactive", None, "ended", "rank 0's unit is inactive"),
    # A fence bringing the group back is waited for; one that gave up, or never armed, is not.
    (0, "failed", "armed", "wait", ""),
    (0, "inactive", "stopping", "wait", ""),
    (0, "inactive", "starting", "wait", ""),
    (0, "active", "gave-up", "ended", "fence gave up"),
    (0, "failed", "idle", "ended", "its fence is not restarting the group (idle)"),
    (0, "deactivating", "idle", "wait", ""),
])
def test_ready_verdict(status, unit, phase, verdict, words):
    got, why = ready_verdict(status, unit, phase)
    assert got == verdict and words in why


class Health(BaseHTTPRequestHandler):
    status = 503

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/health_generate" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def rank0(tmp_path, monkeypatch):
    """A loopback /health_generate, a state file for the unit, and a systemctl test double first
    on PATH that prints that state."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Health,), {}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state = tmp_path / "unit-state"
    state.write_text("active")
    double = tmp_path / "bin" / "systemctl"
    double.parent.mkdir()
    double.write_text("#!/bin/sh\ncat %s\n" % state)
    double.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (double.parent, os.environ["PATH"]))
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "collections"))
    yield {"url": "http://127.0.0.1:%d" % server.server_address[1], "handler": server.RequestHandlerClass,
           "state": state, "tmp": tmp_path}
    server.shutdown()


def run_module(rank0, **args):
    args_file = rank0["tmp"] / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(url=rank0["url"], unit="sglang-server-g", poll=0.2, **args)}))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], stdout=subprocess.PIPE, text=True, check=False)
    return json.loads(proc.stdout), time.monotonic() - t0


def test_returns_as_soon_as_rank0_answers(rank0):
    threading.Timer(0.7, lambda: setattr(rank0["handler"], "status", 200)).start()
    result, took = run_module(rank0, wait=10)
    assert result["ready"] and not result["ended"] and result["status"] == 200
    assert took < 5, took  # polled, not slept out the slice


def test_a_failed_unit_ends_the_wait_at_once(rank0):
    rank0["state"].write_text("failed")
    result, took = run_module(rank0, wait=10)
    assert result["ended"] and not result["ready"] and result["unit_state"] == "failed"
    assert result["msg"] == "rank 0's unit is failed" and result["fence_phase"] is None
    assert took < 5, took


def test_a_fence_restarting_the_group_is_waited_for_until_it_gives_up(rank0):
    rank0["state"].write_text("inactive")
    fence = rank0["tmp"] / "state.json"
    fence.write_text(json.dumps({"phase": "stopping", "restarts": 1, "reason": "rank 1 failed"}))
    result, took = run_module(rank0, wait=1, fence_state=str(fence))
    assert not result["ready"] and not result["ended"] and result["fence_phase"] == "stopping"
    assert 0.8 < took, took  # the whole slice
    fence.write_text(json.dumps({"phase": "gave-up", "restarts": 3, "reason": "rank 1 failed"}))
    result = run_module(rank0, wait=10, fence_state=str(fence))[0]
    assert result["ended"] and "gave up" in result["msg"]


def test_a_fence_without_its_state_file_restarts_nothing(rank0):
    rank0["state"].write_text("failed")
    result = run_module(rank0, wait=10, fence_state=str(rank0["tmp"] / "missing.json"))[0]
    assert result["ended"] and result["fence_phase"] == "idle"


def test_an_unhealthy_answer_is_waited_out_to_the_end_of_the_slice(rank0):
    result, took = run_module(rank0, wait=1)
    assert not result["ready"] and not result["ended"] and result["status"] == 503
    assert 0.8 < took < 5, took
