"""GPU smoke test: one node, the collection's own command line, the tiny dummy-weight model.

Renders a one-node group's command with the same code the sglang_server role uses (cluster plan
-> server.group_units -> the launcher), starts it without systemd, waits for /health_generate,
sends one chat completion at temperature 0, prints time-to-ready and the answer. Run it through
tests/gpu/smoke.sh on a machine with a GPU and SGLang installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "tools"))

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.module_utils.server import group_units  # noqa: E402

import tiny_model  # noqa: E402

LAUNCHER_DIR = ROOT / "roles/sglang_server/files"


def request(url, body=None, timeout=30.0):
    """(status, bytes). The stdlib on purpose: the GPU machine's Python has SGLang, not
    ansible-core, whose open_url the collection's probe uses."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def gpu_count():
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def main():
    python = os.environ.get("SGLANG_PYTHON", sys.executable)
    port = int(os.environ.get("SMOKE_PORT", "30000"))
    timeout = float(os.environ.get("SMOKE_TIMEOUT", "600"))
    work = Path(tempfile.mkdtemp(prefix="sglang-smoke-"))
    model = work / "tiny-llama"
    tiny_model.write(model)
    tp = int(os.environ.get("SMOKE_TP", "1"))
    plan = build_plan({"smoke": ["node0"]}, {"node0": {
        # The layout pointed at this machine (launcher, HF cache); the unit's interpreter is
        # replaced by SGLANG_PYTHON below, which may live in a system directory.
        "cluster_venv_dir": str(work / "venv"), "cluster_libexec_dir": str(LAUNCHER_DIR),
        "sglang_data_dir": str(work),
        "ansible_host": "127.0.0.1", "cluster_interface": os.environ.get("SMOKE_IFACE", "lo"),
        "cluster_gpus_per_node": gpu_count(), "cluster_gpu_ids": list(range(tp)), "sglang_model_path": str(model), "sglang_tp": tp,
        "sglang_port": port, "sglang_extra_args": ["--load-format", "dummy"] + os.environ.get("SMOKE_EXTRA", "").split()}})
    unit = group_units(plan, "smoke", {"host": "127.0.0.1", "hf_offline": True})["node0"]
    argv = [python] + unit["argv"][1:]
    print("GPUs on this machine: %d; command: %s" % (gpu_count(), " ".join(argv)), flush=True)
    log = open(work / "server.log", "w")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=dict(os.environ, **unit["env"]), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ready = None
    try:
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                break
            if request("http://127.0.0.1:%d/health_generate" % port, timeout=10)[0] == 200:
                ready = time.monotonic() - t0
                break
            time.sleep(2)
        if ready is None:
            print("NOT READY after %.0f s (exit %s); last server lines:" % (time.monotonic() - t0, proc.poll()))
            print("".join(open(work / "server.log").readlines()[-40:]))
            return 1
        t1 = time.monotonic()
        status, body = request("http://127.0.0.1:%d/v1/chat/completions" % port,
                               {"model": str(model), "temperature": 0, "max_tokens": 16,
                                "messages": [{"role": "user", "content": "What is the capital of France?"}]},
                               timeout=60)
        answer = json.loads(body)["choices"][0]["message"]["content"] if status == 200 else body[:300]
        print(json.dumps({"time_to_ready_s": round(ready, 1), "completion_status": status,
                          "completion_s": round(time.monotonic() - t1, 3), "answer": answer}))
        return 0 if status == 200 else 1
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)  # the whole session: schedulers and detokenizer too
                proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        if os.environ.get("OUT"):
            shutil.copy(work / "server.log", Path(os.environ["OUT"]) / "server.log")


if __name__ == "__main__":
    sys.exit(main())
