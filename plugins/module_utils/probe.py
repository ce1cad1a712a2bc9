"""What verify asks a running SGLang group, and how it judges each node, in plain Python.

Why this exists: a rank >= 1 of a multi-node group answers `/health` and `/health_generate`
with 200 from a dummy server whatever its real state, so per-node health must come from the
node itself (its unit, its scheduler processes, memory held on its GPUs), and the group's
health from rank 0: `/health_generate`, `/v1/models`, a real completion, and a short benchmark
measured here (requests/s, output tokens/s, time to first token p50/p99).
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError, open_url

SCHEDULER_PREFIX = "sglang::"


# --- per node -----------------------------------------------------------------------------

def node_verdict(active_state, processes, gpu_mib, expect_gpu_memory):
    """(ok, reason) for one rank from its unit state, process names and GPU memory (MiB).

    processes: names (comm / process titles) of the unit's cgroup; SGLang titles its
    schedulers `sglang::scheduler...`. gpu_mib: memory those processes hold, None when the
    node cannot tell (no nvidia-smi).
    """
    if active_state != "active":
        return False, "unit is %s" % active_state
    schedulers = [p for p in processes if p.startswith(SCHEDULER_PREFIX)]
    if not schedulers:
        return False, "unit active but no %s* process (%d processes)" % (SCHEDULER_PREFIX, len(processes))
    if expect_gpu_memory:
        if gpu_mib is None:
            return False, "cannot read GPU memory (nvidia-smi missing)"
        if gpu_mib <= 0:
            return False, "%d scheduler(s) but no memory held on the GPUs" % len(schedulers)
        return True, "%d scheduler(s), %d MiB on the GPUs" % (len(schedulers), gpu_mib)
    return True, "%d scheduler(s)" % len(schedulers)


def parse_compute_apps(text, pids):
    """MiB held by `pids` from `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`."""
    total = 0
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit() and int(parts[0]) in pids:
            try:
                total += int(float(parts[1]))
            except ValueError:
                continue
    return total


# --- a started group's readiness ------------------------------------------------------------

# The fence phases in which it is bringing the group back (module_utils/fence.py).
FENCE_RESTARTING = ("armed", "stopping", "starting")


def ready_verdict(status, unit_state, fence_phase):
    """("ready" | "wait" | "ended", why) for a group just started, from rank 0's node.

    status: HTTP status of rank 0's /health_generate (0: nothing answered). unit_state: rank
    0's unit ActiveState. fence_phase: the group's fence coordinator's phase, None when the group
    has no fence. Waiting stops at once when nothing will bring the group up any more: rank 0's
    unit ended (SGLang does not restart on its own; Restart=no) and no fence is restarting the
    group, or the fence gave up; a fence in the middle of a group restart is waited for.
    """
    if status == 200:
        return "ready", "rank 0 answers /health_generate"
    if fence_phase == "gave-up":
        return "ended", "the group's fence gave up restarting it (rank 0's unit is %s)" % unit_state
    if unit_state in ("failed", "inactive") and fence_phase not in FENCE_RESTARTING:
        return "ended", "rank 0's unit is %s%s" % (
            unit_state, "" if fence_phase is None else " and its fence is not restarting the group (%s)" % fence_phase)
    return "wait", "HTTP %s, rank 0's unit %s" % (status or "no answer", unit_state)


# --- rank 0 over HTTP ---------------------------------------------------------------------

def _headers(api_key, **extra):
    headers = {"Content-Type": "application/json", **extra}
    if api_key:
        headers["Authorization"] = "Bearer %s" % api_key
    return headers


def request(url, body=None, api_key="", timeout=30.0, ca_path=None):
    """(status, bytes) of a GET (body None) or JSON POST; status 0 when nothing answered.
    ca_path: the CA an HTTPS server's certificate must chain to (the plan's cluster_tls_ca)."""
    data = json.dumps(body).encode() if body is not None else None
    try:
        with open_url(url, data=data, headers=_headers(api_key), method="POST" if data else "GET",
                      timeout=timeout, ca_path=ca_path) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError, UrlsConnectionError) as exc:
        return 0, str(exc).encode()


def chat_body(model, prompt, max_tokens, stream=False):
    return {"model": model, "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, "max_tokens": max_tokens, "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {})}


def sse_events(lines):
    """JSON payloads of a server-sent event stream (`data: {...}` lines, until `data: [DONE]`)."""
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            continue


def stream_one(url, body, api_key="", timeout=120.0, clock=time.monotonic, ca_path=None):
    """One streamed chat completion: {ok, ttft, latency, tokens, error}."""
    headers = _headers(api_key, Accept="text/event-stream")
    t0 = clock()
    ttft, chunks, usage = None, 0, None
    try:
        with open_url(url, data=json.dumps(body).encode(), headers=headers, method="POST",
                      timeout=timeout, ca_path=ca_path) as resp:
            for event in sse_events(resp):
                for choice in event.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        chunks += 1
                        if ttft is None:
                            ttft = clock() - t0
                if event.get("usage"):
                    usage = event["usage"]
    except (OSError, ValueError, UrlsConnectionError) as exc:
        return {"ok": False, "error": str(exc)}
    tokens = (usage or {}).get("completion_tokens", chunks)
    return {"ok": ttft is not None, "ttft": ttft, "latency": clock() - t0, "tokens": tokens,
            "error": None if ttft is not None else "no token streamed"}


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(math.ceil(q / 100.0 * len(ordered))) - 1))
    return ordered[k]


def summarize(results, wall):
    """Benchmark figures from per-request results and the wall time of the whole run."""
    ok = [r for r in results if r.get("ok")]
    out = {"requests": len(results), "succeeded": len(ok), "seconds": round(wall, 3)}
    if not ok or wall <= 0:
        return dict(out, errors=sorted({r.get("error") or "?" for r in results})[:3])
    ttfts = [r["ttft"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    return dict(out, req_per_s=round(len(ok) / wall, 3), output_tok_per_s=round(tokens / wall, 2),
                ttft_p50_ms=round(percentile(ttfts, 50) * 1000, 1),
                ttft_p99_ms=round(percentile(ttfts, 99) * 1000, 1),
                output_tokens=tokens)


def benchmark(url, body, api_key="", requests=16, concurrency=4, timeout=120.0, ca_path=None):
    """`requests` streamed completions, `concurrency` at a time; bounded in count and time."""
    results, lock = [], threading.Lock()
    todo = list(range(requests))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            result = stream_one(url, body, api_key, timeout, ca_path=ca_path)
            with lock:
                results.append(result)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _worker in range(max(1, min(concurrency, requests)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * requests)
    return summarize(results, time.monotonic() - t0)
