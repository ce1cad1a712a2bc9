"""verify's judgement of SGLang ranks and its HTTP client, on fixtures and a loopback stream."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.probe import (
    benchmark, node_verdict, parse_compute_apps, percentile, request, sse_events, summarize)

SCHED = ["/opt/sglang/venv/bin/python", "sglang::scheduler_TP0", "sglang::scheduler_TP1"]


@pytest.mark.parametrize("state, procs, mib, expect, ok, words", [
    ("active", SCHED, 8000, True, True, "2 scheduler(s), 8000 MiB"),
    ("active", SCHED, None, False, True, "2 scheduler(s)"),
    ("failed", SCHED, 8000, True, False, "unit is failed"),
    ("inactive", [], None, True, False, "unit is inactive"),
    ("active", ["/opt/sglang/venv/bin/python"], 0, True, False, "no sglang::"),
    ("active", SCHED, 0, True, False, "no memory held"),
    ("active", SCHED, None, True, False, "nvidia-smi missing"),
])
def test_node_verdict(state, procs, mib, expect, ok, words):
    got_ok, reason = node_verdict(state, procs, mib, expect)
    assert got_ok is ok and words in reason


def test_parse_compute_apps_counts_only_the_units_pids():
    text = "4242, 71234\n4243, 70000\n999, 5000\n[Not Supported], 1\n"
    assert parse_compute_apps(text, {4242, 4243}) == 141234
    assert parse_compute_apps("", {1}) == 0


def test_sse_events_until_done():
    lines = [b'data: {"choices": [{"delta": {"content": "Par"}}]}\n', b"\n", b": keep-alive\n",
             b'data: {"choices": [{"delta": {"content": "is"}}]}\n', b"data: [DONE]\n", b'data: {"late": 1}\n']
    assert [e["choices"][0]["delta"]["content"] for e in sse_events(lines)] == ["Par", "is"]


def test_percentile_and_summary():
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile([5, 1, 3, 2, 4], 99) == 5
    results = [{"ok": True, "ttft": 0.1 * i, "latency": 1, "tokens": 10} for i in range(1, 11)]
    s = summarize(results + [{"ok": False, "error": "timeout"}], wall=2.0)
    assert (s["requests"], s["succeeded"], s["req_per_s"], s["output_tok_per_s"]) == (11, 10, 5.0, 50.0)
    assert (s["ttft_p50_ms"], s["ttft_p99_ms"]) == (500.0, 1000.0)
    assert summarize([{"ok": False, "error": "refused"}], 1.0)["errors"] == ["refused"]


class Stream(BaseHTTPRequestHandler):
    """A loopback stream in SGLang's OpenAI format, to test the client's timing and parsing."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != "Bearer k":
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in ("Pa", "ris"):
            self.wfile.write(b'data: {"choices": [{"delta": {"content": "%s"}}]}\n\n' % word.encode())
        if body.get("stream_options"):
            self.wfile.write(b'data: {"choices": [], "usage": {"completion_tokens": 3}}\n\n')
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Stream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/v1/chat/completions" % srv.server_address[1]
    srv.shutdown()


def test_benchmark_measures_a_real_stream(server):
    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    s = benchmark(server, body, api_key="k", requests=6, concurrency=3, timeout=5)
    assert s["succeeded"] == 6 and s["output_tokens"] == 18 and s["ttft_p50_ms"] >= 0


def test_benchmark_reports_refusals(server):
    s = benchmark(server, {"stream": True}, api_key="wrong", requests=2, concurrency=2, timeout=5)
    assert s["succeeded"] == 0 and "401" in s["errors"][0]
    assert request(server, {"x": 1}, api_key="", timeout=5)[0] == 401
    assert request("http://127.0.0.1:1/none", timeout=2)[0] == 0
