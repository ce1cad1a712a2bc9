"""GPU smoke test of a prefill/decode (PD) deployment on one machine with two GPUs.

Plans a PD cluster of two one-node groups on this machine (prefill on GPU 0 at 127.0.0.1, decode
on GPU 1 at 127.0.0.2, both loopback addresses of this host), renders both servers' and the PD
router's command lines with the code the sglang_server role uses (cluster plan -> server.group_units
and server.router_unit -> the launcher), starts them without systemd on the tiny dummy-weight
model, waits for both /health_generate, sends one chat completion through the router and prints
the times and the answer. The KV cache moves over SMOKE_PD_BACKEND (default mooncake_tcp: TCP,
no RDMA needed; mooncake uses NVLink/RDMA where the transfer engine finds them), which needs
mooncake-transfer-engine (or nixl) importable by SGLANG_PYTHON. Run it through
tests/gpu/pd_smoke.sh; it has not run in this project yet (no GPU was lent).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests/gpu"))

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.module_utils.server import group_units, router_unit  # noqa: E402

import tiny_model  # noqa: E402
from smoke import LAUNCHER_DIR, gpu_count, request  # noqa: E402


def stop(proc):
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def main():
    python = os.environ.get("SGLANG_PYTHON", sys.executable)
    timeout = float(os.environ.get("SMOKE_TIMEOUT", "900"))
    backend = os.environ.get("SMOKE_PD_BACKEND", "mooncake_tcp")
    if gpu_count() < 2:
        print("pd smoke: needs 2 GPUs, this machine has %d" % gpu_count())
        return 2
    work = Path(tempfile.mkdtemp(prefix="sglang-pd-smoke-"))
    model = work / "tiny-llama"
    tiny_model.write(model)
    common = {"cluster_venv_dir": str(work / "venv"), "cluster_libexec_dir": str(LAUNCHER_DIR),
              "sglang_data_dir": str(work), "cluster_interface": os.environ.get("SMOKE_IFACE", "lo"),
              "cluster_gpus_per_node": gpu_count(), "sglang_model_path": str(model), "sglang_tp": 1,
              "sglang_router": True, "sglang_router_host": "prefill0", "sglang_pd_transfer_backend": backend,
              "cluster_rdma": os.environ.get("SMOKE_RDMA", "auto"),
              "sglang_extra_args": ["--load-format", "dummy"] + os.environ.get("SMOKE_EXTRA", "").split()}
    hostvars = {
        "prefill0": dict(common, ansible_host="127.0.0.1", cluster_gpu_ids=[0], sglang_port=30000,
                         sglang_pd_role="prefill"),
        "decode0": dict(common, ansible_host="127.0.0.2", cluster_gpu_ids=[1], sglang_port=31000,
                        sglang_pd_role="decode", sglang_dist_init_port=21000),
    }
    plan = build_plan({"prefill": ["prefill0"], "decode": ["decode0"]}, hostvars)
    opts = {"host": None, "hf_offline": True}
    units = {**group_units(plan, "prefill", opts), **group_units(plan, "decode", opts)}
    router = router_unit(plan, {})["prefill0"]
    procs, t0 = {}, time.monotonic()
    try:
        for name, unit in list(units.items()) + [("router", router)]:
            argv = [python] + unit["argv"][1:]
            print("%s: %s" % (name, " ".join(argv)), flush=True)
            log = open(work / ("%s.log" % name), "w")
            procs[name] = subprocess.Popen(argv, env=dict(os.environ, **unit["env"]), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        ready = {}
        urls = {"prefill0": "http://127.0.0.1:30000", "decode0": "http://127.0.0.2:31000"}
        while time.monotonic() - t0 < timeout and len(ready) < 2:
            if any(p.poll() is not None for p in procs.values()):
                break
            for host, url in urls.items():
                if host not in ready and request(url + "/health_generate", timeout=10)[0] == 200:
                    ready[host] = round(time.monotonic() - t0, 1)
            time.sleep(2)
        if len(ready) < 2:
            print("NOT READY after %.0f s (ready: %s; exits: %s)" % (
                time.monotonic() - t0, ready, {n: p.poll() for n, p in procs.items()}))
            for name in procs:
                print("--- %s\n%s" % (name, "".join(open(work / ("%s.log" % name)).readlines()[-30:])))
            return 1
        t1 = time.monotonic()
        status, body = request("http://127.0.0.1:30080/v1/chat/completions",
                               {"model": str(model), "temperature": 0, "max_tokens": 16,
                                "messages": [{"role": "user", "content": "What is the capital of France?"}]},
                               timeout=120)
        answer = json.loads(body)["choices"][0]["message"]["content"] if status == 200 else body[:300]
        print(json.dumps({"backend": backend, "time_to_ready_s": ready, "completion_status": status,
                          "completion_s": round(time.monotonic() - t1, 3), "answer": answer}))
        return 0 if status == 200 else 1
    finally:
        for proc in procs.values():
            stop(proc)
        if os.environ.get("OUT"):
            for name in procs:
                (Path(os.environ["OUT"]) / ("pd-%s.log" % name)).write_text((work / ("%s.log" % name)).read_text())


if __name__ == "__main__":
    sys.exit(main())
