"""One node's part of a SLURM job rendered by the slurm_job role (standard library only).

Why this exists: inside an allocation there is no systemd unit and no Ansible; `srun` starts this
program once per node. It takes its rank from SLURM_NODEID, checks that SLURM placed the planned
node there and that the allocation's first node is the planned rank 0 (the dist-init address),
and runs exactly the argv and environment the plan built for that rank: Ray with `ray start
--block` when the group uses the Ray backend, SGLang's own argument check, then the server when
the group's GPUs are real. Before starting anything long-lived it prints one report line (what
it ran with, read from this process's own environment and the node's interface), which the
role reads back from the job log and judges against the plan. The file travels inside the
sbatch script, as is (python3 slurm_node.py SPEC.json).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

REPORT_MARK = "SGLANG_OPS_SLURM_REPORT "
REPORTED_ENV = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "SGLANG_HOST_IP", "CUDA_VISIBLE_DEVICES",
                "RAY_ADDRESS")
_children = []


def log(msg):
    # A program srun starts, not an Ansible module: its output is the job log.
    print("sglang_ops[%s]: %s" % (os.environ.get("SLURMD_NODENAME", "?"), msg), file=sys.stderr, flush=True)  # pylint: disable=ansible-bad-function


def report(rep):
    print(REPORT_MARK + json.dumps(rep, sort_keys=True), flush=True)  # pylint: disable=ansible-bad-function


def hostnames(node_list):
    out = subprocess.run(["scontrol", "show", "hostnames", node_list], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]


def interface_ips(ifname):
    """The addresses on `ifname` as `ip -j addr` reports them ([] if it does not exist)."""
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", ifname], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    try:
        return [a["local"] for link in json.loads(out.stdout or "[]") for a in link.get("addr_info", [])]
    except (ValueError, KeyError, TypeError):
        return []


def arg_after(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else None


def last_error(text):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    hits = [ln for ln in lines if "Error" in ln or "error:" in ln or "assert" in ln]
    return (hits or lines or ["no output"])[-1][:500]


def validate(argv, env):
    """SGLang's own check of this rank's argv (the launcher's --validate)."""
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False, timeout=900)
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and found:
        result = json.loads(found[-1])
        return {"ok": True, "sglang": result.get("sglang"), "seconds": round(time.monotonic() - t0, 1)}
    return {"ok": False, "rc": proc.returncode, "error": last_error(proc.stderr)}


def start(argv, env):
    proc = subprocess.Popen(argv, env=env)
    _children.append(proc)
    return proc


def stop_children(timeout=20):
    for proc in _children:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in _children:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reachable(hostport):
    host, port = hostport.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def ray_probe(spec, env, deadline):
    """Alive Ray nodes in the head's GCS node table, once the planned ones joined or at the deadline
    (the probe retries while the GCS is still coming up)."""
    ray = spec["ray"]
    args = json.dumps({"address": ray["gcs_address"], "expect_ips": ray["expect_ips"], "expect_gpus": 0,
                       "timeout": max(1, int(deadline - time.monotonic()))})
    proc = subprocess.run([ray["venv_python"], "-c", ray["probe"], args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"alive_nodes": 0, "error": last_error(proc.stderr)}
    out = json.loads(lines[-1])
    alive = [n for n in out["nodes"] if n["alive"]]
    return {"ray_version": out["ray_version"], "alive_nodes": len(alive), "alive_ips": sorted(n["ip"] for n in alive)}


def wait_head_gone(gcs, limit):
    """A worker's Ray ends with its head's: once the GCS, having answered, stops answering (3 tries
    in a row), or after `limit` seconds, or when this node's own Ray exits."""
    deadline, misses, seen = time.monotonic() + limit, 0, False
    while time.monotonic() < deadline and all(p.poll() is None for p in _children):
        up = reachable(gcs)
        seen = seen or up
        misses = 0 if up else misses + 1
        if seen and misses >= 3:
            return True
        time.sleep(1)
    return False


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    node_dir = os.path.dirname(os.path.abspath(spec_path))
    nodeid = int(os.environ.get("SLURM_NODEID", "-1"))
    name = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    allocation = hostnames(os.environ.get("SLURM_JOB_NODELIST", ""))
    rep = {"slurm_job_id": os.environ.get("SLURM_JOB_ID"), "slurm_nodeid": nodeid, "node": name,
           "allocation": allocation, "first_node": allocation[0] if allocation else None,
           "slurm_cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if not 0 <= nodeid < len(spec["ranks"]):
        rep["problem"] = "SLURM_NODEID %d outside the plan's %d ranks" % (nodeid, len(spec["ranks"]))
        report(rep)
        return 1
    entry = spec["ranks"][nodeid]
    if entry["host"] != name or rep["first_node"] != spec["rank0"]:
        rep["problem"] = ("SLURM_NODEID %d is planned on %s (rank 0: %s), but SLURM ordered the allocation %s. "
                          "Fix: list the group's hosts in SLURM's order (scontrol show hostnames)"
                          % (nodeid, entry["host"], spec["rank0"], ",".join(allocation)))
    rep["interface_ips"] = interface_ips(entry["interface"])
    env = dict(os.environ)
    server = entry["server"]
    if server:
        env.update(server["env"])
        rep["dist_init_addr"] = arg_after(server["argv"], "--dist-init-addr")
        rep["node_rank_arg"] = arg_after(server["argv"], "--node-rank")
        rep["argv"] = server["argv"]
    elif entry["ray"]:
        env.update(entry["ray"]["env"])
    rep["env"] = {k: env[k] for k in REPORTED_ENV if k in env}
    if rep.get("problem"):
        report(rep)
        return 1
    ray_env = dict(os.environ, **entry["ray"]["env"]) if entry["ray"] else None
    if entry["ray"]:
        start(entry["ray"]["argv"], ray_env)
        rep["ray"] = {"state": "running", "head": entry["ray"]["head"]}
        if entry["ray"]["head"]:
            rep["ray"].update(ray_probe(spec, ray_env, time.monotonic() + spec["ray"]["join_timeout"]))
    if server:
        rep["validation"] = validate(entry["validate_argv"], env)
    ok = (not server or rep["validation"]["ok"]) and all(p.poll() is None for p in _children)
    if entry["ray"] and _children[0].poll() is not None:
        rep["ray"]["state"] = "exited %s" % _children[0].returncode
    rep["start"] = spec["start"]
    rep["start_reason"] = spec["reason"]
    report(rep)
    if not ok:
        return 1
    if not spec["start"]:
        log(spec["reason"])
        if entry["ray"] and not entry["ray"]["head"]:
            wait_head_gone(spec["ray"]["gcs_address"], spec["ray"]["join_timeout"] + 900)
        return 0
    if server:
        # The server runs until the job ends (scancel or time limit); its exit ends this rank.
        return start(server["argv"], env).wait()
    wait_head_gone(spec["ray"]["gcs_address"], 10 ** 9)
    return 0


def run(spec_path):
    node_dir = os.path.dirname(os.path.abspath(spec_path))

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        return main(spec_path)
    finally:
        stop_children()
        shutil.rmtree(node_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))  # pylint: disable=ansible-bad-function
