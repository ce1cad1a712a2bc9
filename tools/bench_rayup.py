#!/usr/bin/env python3
"""Benchmark: our Ray bring-up (`playbooks/ray.yml`) against Ray's own cluster launcher (`ray up`) on 2, 4 and 8 lab hosts.

Why: the ray role is what every deploy waits on before a server can start. It should be no
slower than the tool operators would otherwise use, Ray's cluster launcher with its local
provider, and grow little with the cluster. This measures both side by side, from a fresh start
and as a re-run, with the venv already on every host (its install excluded for both):

  fresh   ours: `ansible-playbook playbooks/ray.yml` after our units, token and CLI were removed;
          ray up: `ray up -y` after `ray down` (Ray's launcher starts the head; its autoscaler
          then starts the workers over SSH, so `ray up` returns before they joined)
  re-run  ours: ray.yml again, which must report changed=0 and leave every node as it was;
          ray up: `ray up -y` again, which restarts Ray on the head and the workers rejoin
  floor   by hand, the least a bring-up can do: `ray start --head` on host 1, then
          `ray start --address` on host 2 (podman exec, no SSH, no configuration written)

A run is done when its command returned and the GCS reports every node alive with its GPUs.
The same probe answers for all of them: a Python process on host 1 (the venv's, started and
ready before the clock starts) that polls the GCS every 0.2 s and prints the time it first saw
N new nodes alive (containers share the machine's clock). The kinds and sizes are interleaved
(fresh and re-run of each, alternating which system goes first, sizes 2, 4, 8 in every round),
so load on the machine hits all alike; medians are printed with the ratios ours / ray up.
Between runs everything is torn down (our units and files, `ray down`, `ray stop --force` on
every host, Ray's temp dirs) and every host is checked to run no raylet or GCS before a run.

Ray up runs as its launcher would, with the same venv, node IPs, fake GPU count, CPUs and object
store as the plan gives our units. Differences that stay: no token authentication (our units use
it), no systemd unit or sandboxing, Ray's random ports, and an autoscaler process on the head
(`--autoscaling-config`, as Ray's examples start it). Ray's launcher needs rsync on the
controller and the hosts: the lab image has none, so this installs Debian's package on them.
Autoscaler v2 (Ray's default since 2.50) starts only the head with the local provider, so the
launcher runs with RAY_UP_enable_autoscaler_v2=0.

Not in `make bench`: with the hosts' venv to prepare (installed once on host 1, then copied) and
13 bring-ups a round, a run of 3 rounds took 33 minutes on the 2-core lab machine (12 of them
preparing the hosts).

    tools/bench_rayup.py [--rounds 3] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402  (the project's lab tool, beside this file)
from bench_noop import CALLBACK  # noqa: E402  (per-task wall times, printed after the recap)

sys.path.insert(0, str(lab.ROOT / "collections"))
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, layout  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import GCS_READ  # noqa: E402

SIZES = (2, 4, 8)
PREFIX = "rayup"
FIRST = 81
LAYOUT = layout(DEFAULTS, [])
VENV = LAYOUT["venv_dir"]
UNIT = LAYOUT["units"]["ray"]
GCS_PORT = DEFAULTS["ray_gcs_port"]
# The launcher on the controller, at the hosts' Ray version (the lab's pin, from its wheelhouse).
CONTROLLER_VENV = lab.ROOT / ".venv-rayup"
CLUSTER_NAME = "bench-rayup"
# The launcher's record of the local provider's nodes, on the controller.
STATE = "/tmp/ray/cluster-%s.state" % CLUSTER_NAME
# What our units give Ray on the lab (inventories/lab: 4 fake GPUs a node, ray_extra_args, the
# object store), for `ray up` and the floor alike.
RAY_NODE_ARGS = "--num-gpus=4 --num-cpus=2 --object-store-memory=268435456 --disable-usage-stats"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# Anything of a Ray cluster still running on a host would fake the next result.
LEFTOVERS = "pgrep -l -x raylet; pgrep -l -x gcs_server; pgrep -a -f '[r]ay/autoscaler/_private/monitor.py'"
# Polls the GCS on host 1 until `nodes` nodes not in `exclude` are alive with `gpus` GPUs; prints
# "ready" once Ray is imported, then one JSON line with the time it saw them (null: timed out).
PROBE = GCS_READ + r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
print("ready", flush=True)
deadline = time.monotonic() + args["timeout"]
client, seen = None, {}
while time.monotonic() < deadline:
    try:
        # Ours writes its token before it starts the head: no client before the file exists.
        if client is None and args["token_file"] and not os.path.exists(args["token_file"]):
            raise OSError("no token file yet")
        client, nodes = gcs_nodes(args["address"], client)
        alive = [n for n in nodes if n["alive"] and n["node_id"] not in args["exclude"]]
        seen = {"alive": len(alive), "gpus": sum(n["gpus"] for n in alive), "ids": sorted(n["node_id"] for n in alive)}
        if seen["alive"] >= args["nodes"] and seen["gpus"] >= args["gpus"]:
            print(json.dumps(dict(seen, t=time.time())), flush=True)
            sys.exit(0)
    except Exception as e:
        client = None
        seen["error"] = repr(e)[:300]
    time.sleep(0.2)
print(json.dumps(dict(seen, t=None)), flush=True)
sys.exit(1)
"""


def on_host(host: str, command: str, check: bool = True) -> str:
    proc = subprocess.run(["podman", "exec", host, "sh", "-c", command], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if check and proc.returncode != 0:
        sys.exit("bench: %s: `%s` failed (rc %d):\n%s" % (host, command, proc.returncode, proc.stdout[-3000:]))
    return proc.stdout


def on_hosts(hosts: list[dict], command: str) -> dict[str, str]:
    """The same command on every host at once (teardowns, checks)."""
    out = {}
    threads = [threading.Thread(target=lambda h=h: out.__setitem__(h["name"], on_host(h["name"], command, check=False)))
               for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


class Probe:
    """The GCS probe on host 1, started before the clock so Ray's import is not timed."""

    def __init__(self, head: dict, nodes: int, gpus: int, token: bool, exclude=(), timeout: float = 300):
        args = {"address": "%s:%d" % (head["ipv4"], GCS_PORT), "nodes": nodes, "gpus": gpus,
                "exclude": sorted(exclude), "timeout": timeout,
                "token_file": LAYOUT["files"]["ray_token"] if token else None}
        env = ["RAY_USAGE_STATS_ENABLED=0"]
        if token:
            env += ["RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=%s" % args["token_file"]]
        self.proc = subprocess.Popen(["podman", "exec", head["name"], "env", *env, VENV + "/bin/python", "-c", PROBE,
                                      json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            sys.exit("bench: the GCS probe on %s did not start: %s%s" % (head["name"], line, self.proc.stdout.read()))

    def result(self) -> dict:
        out = self.proc.stdout.read()
        self.proc.wait()
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {"t": None, "error": out[-2000:]}


def timed(name: str, command: list[str], probe: Probe, env=None) -> tuple[float, float, float, str, dict]:
    """(done, returned, alive, output, probe): seconds until the command returned and the probe
    saw every node alive, until the command alone returned, and until the probe saw them."""
    t0 = time.time()
    proc = subprocess.run(command, cwd=lab.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", **(env or {})))
    returned = time.time() - t0
    seen = probe.result()
    if proc.returncode != 0 or seen["t"] is None:
        sys.exit("bench: %s failed (rc %d; probe: %s):\n%s" % (name, proc.returncode, seen, proc.stdout[-4000:]))
    return max(returned, seen["t"] - t0), returned, seen["t"] - t0, proc.stdout, seen


# --- teardown ---------------------------------------------------------------------------------

def teardown(hosts: list[dict], cluster_yaml: Path | None = None) -> None:
    """Every Ray of both kinds gone from every host, then checked: no raylet, GCS or autoscaler."""
    if cluster_yaml is not None and Path(STATE).exists():
        subprocess.run([str(CONTROLLER_VENV / "bin/ray"), "down", "-y", str(cluster_yaml)], cwd=lab.ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                       env=dict(os.environ, RAY_UP_enable_autoscaler_v2="0"))
    unit_file = "%s/%s.service" % (LAYOUT["unit_dir"], UNIT)
    on_hosts(hosts, "systemctl stop {u}; systemctl disable --quiet {u}; rm -rf {f} {f}.d {cli} {token}; "
             "systemctl daemon-reload; systemctl reset-failed {u}; "
             "if [ -n \"$({left})\" ]; then {venv}/bin/ray stop --force >/dev/null 2>&1; fi; "
             "rm -rf /tmp/ray {temp} /root/ray_bootstrap_config.yaml /root/ray_bootstrap_key.pem; true"
             .format(u=UNIT, f=unit_file, cli=LAYOUT["files"]["ray_cli"], token=LAYOUT["files"]["ray_token"],
                     left=LEFTOVERS, venv=VENV, temp=LAYOUT["ray_temp_dir"]))
    # The launcher's record of the local cluster on the controller: the next `ray up` starts anew.
    subprocess.run(["rm", "-f", STATE, STATE.replace(".state", ".lock")])
    left = {name: out.strip() for name, out in on_hosts(hosts, LEFTOVERS + "; true").items() if out.strip()}
    if left:
        sys.exit("bench: Ray still runs after the teardown (a run would not be fresh): %s" % left)


# --- the two systems and the floor -----------------------------------------------------------

def ours(n: int, hosts: list[dict], rerun: bool, callbacks: Path) -> tuple[float, float, float, str]:
    inv = lab.sized_inventory(PREFIX, n)
    # A re-run must leave the nodes it found: the same node ids after it.
    ids = Probe(hosts[0], n, 4 * n, token=True, timeout=30).result()["ids"] if rerun else []
    probe = Probe(hosts[0], n, 4 * n, token=True)
    # Without the firewall play (ray.yml has none): its unit is what ours would otherwise require.
    command = ["ansible-playbook", "playbooks/ray.yml", "-i", str(inv), "-e", "firewall_enabled=false"]
    done, returned, alive, out, seen = timed("ray.yml on %d hosts" % n, command, probe, env={
        "ANSIBLE_CALLBACK_PLUGINS": str(callbacks), "ANSIBLE_CALLBACKS_ENABLED": "bench_task_times"})
    recap = RECAP.findall(out)
    if len(recap) != n or any(int(r[4]) or int(r[3]) for r in recap):
        sys.exit("bench: ray.yml on %d hosts did not pass on every host:\n%s" % (n, out[-4000:]))
    if rerun and (any(int(r[2]) for r in recap) or seen["ids"] != ids):
        sys.exit("bench: the re-run of ray.yml on %d hosts was not a no-op (changed or nodes restarted):\n%s"
                 % (n, out[-4000:]))
    return done, returned, alive, out


def cluster_yaml(path: Path, hosts: list[dict]) -> Path:
    """Ray's local-provider cluster for these hosts, started as the plan starts ours."""
    import yaml

    ray = VENV + "/bin/ray"
    path.write_text(yaml.safe_dump({
        "cluster_name": CLUSTER_NAME,
        "provider": {"type": "local", "head_ip": hosts[0]["ipv4"], "worker_ips": [h["ipv4"] for h in hosts[1:]]},
        "auth": {"ssh_user": "root", "ssh_private_key": str(lab.KEY)},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "head_start_ray_commands": [
            ray + " stop",
            "ulimit -c unlimited; %s start --head --port=%d --autoscaling-config=~/ray_bootstrap_config.yaml "
            "--node-ip-address=%s --include-dashboard=false %s" % (ray, GCS_PORT, hosts[0]["ipv4"], RAY_NODE_ARGS)],
        # One command for every worker: each finds its own lab address (eth0's first IPv4).
        "worker_start_ray_commands": [
            ray + " stop",
            "%s start --address=$RAY_HEAD_IP:%d --node-ip-address=$(hostname -I | cut -d' ' -f1) %s"
            % (ray, GCS_PORT, RAY_NODE_ARGS)],
    }, sort_keys=False))
    return path


def ray_up(n: int, hosts: list[dict], config: Path, rerun: bool) -> tuple[float, float, float, str]:
    exclude = Probe(hosts[0], n, 4 * n, token=False, timeout=30).result()["ids"] if rerun else []
    probe = Probe(hosts[0], n, 4 * n, token=False, exclude=exclude)
    command = [str(CONTROLLER_VENV / "bin/ray"), "up", "-y", "--no-config-cache", str(config)]
    done, returned, alive, out, _ = timed("ray up on %d hosts" % n, command, probe,
                                          env={"RAY_UP_enable_autoscaler_v2": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    return done, returned, alive, out


def floor(hosts: list[dict]) -> tuple[float, float, float]:
    """Head on host 1, one worker on host 2, by hand: no SSH, no files, nothing checked."""
    ray = VENV + "/bin/ray"
    probe = Probe(hosts[0], 2, 8, token=False)
    t0 = time.time()
    on_host(hosts[0]["name"], "%s start --head --port=%d --node-ip-address=%s --include-dashboard=false %s"
            % (ray, GCS_PORT, hosts[0]["ipv4"], RAY_NODE_ARGS))
    on_host(hosts[1]["name"], "%s start --address=%s:%d --node-ip-address=%s %s"
            % (ray, hosts[0]["ipv4"], GCS_PORT, hosts[1]["ipv4"], RAY_NODE_ARGS))
    returned = time.time() - t0
    seen = probe.result()
    if seen["t"] is None:
        sys.exit("bench: the floor's two nodes never showed alive: %s" % seen)
    return max(returned, seen["t"] - t0), returned, seen["t"] - t0


# --- preparation ------------------------------------------------------------------------------

def prepare(hosts: list[dict]) -> None:
    """The venv on every host (installed on host 1 by deploy.yml, copied to the others as the PD
    lab test does, then deploy's install play on all: the cluster user and directories), rsync on
    the hosts and the controller, and Ray's launcher on the controller."""
    missing = [h for h in hosts if on_host(h["name"], "test -x %s/bin/ray && echo yes" % VENV, check=False).strip() != "yes"]
    if hosts[0] in missing:
        t0 = time.monotonic()
        run(["ansible-playbook", "playbooks/deploy.yml", "-i", str(lab.sized_inventory(PREFIX, 1)), "--tags", "install"])
        print("venv installed on %s in %.0f s" % (hosts[0]["name"], time.monotonic() - t0), flush=True)
        missing.remove(hosts[0])
    for h in missing:
        with subprocess.Popen(["podman", "exec", hosts[0]["name"], "tar", "-C", "/", "-cf", "-", VENV.lstrip("/")],
                              stdout=subprocess.PIPE) as source:
            subprocess.run(["podman", "exec", "-i", h["name"], "tar", "-C", "/", "-xf", "-"], stdin=source.stdout, check=True)
        if source.returncode != 0:
            sys.exit("bench: copying the venv from %s to %s failed" % (hosts[0]["name"], h["name"]))
        print("venv copied to %s" % h["name"], flush=True)
    run(["ansible-playbook", "playbooks/deploy.yml", "-i", str(lab.sized_inventory(PREFIX, len(hosts))),
         "--tags", "install"])
    no_rsync = [h for h in hosts if on_host(h["name"], "command -v rsync", check=False).strip() == ""]
    if no_rsync:
        with tempfile.TemporaryDirectory() as debs:
            run(["apt-get", "download", "rsync", "libpopt0", "libxxhash0"], cwd=debs)
            for h in no_rsync:
                subprocess.run(["podman", "cp", debs, "%s:/tmp/rsync-debs" % h["name"]], check=True)
                on_host(h["name"], "dpkg -i /tmp/rsync-debs/*.deb >/dev/null 2>&1 && rm -rf /tmp/rsync-debs && command -v rsync")
    if not (CONTROLLER_VENV / "bin/ray").exists():
        pin = re.search(r"^\s*ray:\s*\"?([^\"\s]+)", (lab.ROOT / "inventories/lab/group_vars/all/versions.yml").read_text(), re.M)
        run(["python3", "-m", "venv", str(CONTROLLER_VENV)])
        run([str(CONTROLLER_VENV / "bin/pip"), "install", "-q", "--no-index", "--find-links", str(lab.WHEELHOUSE),
             "ray==%s" % pin.group(1)])


def run(command: list[str], cwd=None) -> None:
    proc = subprocess.run(command, cwd=cwd or lab.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit("bench: `%s` failed (rc %d):\n%s" % (" ".join(command), proc.returncode, proc.stdout[-4000:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the 8 hosts afterwards (their venv saves the next run's install)")
    args = ap.parse_args()
    # Before the hosts and their venvs (over 10 minutes), not after.
    if subprocess.run(["sh", "-c", "command -v rsync"], stdout=subprocess.DEVNULL).returncode != 0:
        sys.exit("bench: Ray's cluster launcher needs rsync on the controller: apt-get install rsync")
    # Host 1 alone too: the venv is installed there once, then copied.
    hosts = lab.up_sized(PREFIX, FIRST, (1,) + SIZES)
    loads = []  # the 1-minute load average at the end of every run
    slowest = {}  # round -> the slowest tasks of that round's fresh run of ours on 8 hosts
    times = {}  # (system, kind, n) -> [seconds until done]

    def record(key, result):
        times.setdefault(key, []).append(result[0])
        loads.append(os.getloadavg()[0])
        # A no-op re-run of ours finds the cluster alive before it starts.
        print("round %d: %-6s %-6s %d hosts  %6.1f s  (all alive at %.1f s, command returned at %.1f s; load %.1f)"
              % (r + 1, key[0], key[1], key[2], result[0], max(0.0, result[2]), result[1], loads[-1]), flush=True)

    try:
        prepare(hosts)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "bench_task_times.py").write_text(CALLBACK)
            for r in range(args.rounds):
                for n in SIZES:
                    config = cluster_yaml(Path(tmp) / ("cluster-%d.yaml" % n), hosts[:n])
                    order = ("ours", "ray up") if (r + n // 4) % 2 == 0 else ("ray up", "ours")
                    for system in order:
                        teardown(hosts, config)
                        for rerun in (False, True):
                            key = (system, "re-run" if rerun else "fresh", n)
                            result = ours(n, hosts[:n], rerun, Path(tmp)) if system == "ours" else ray_up(n, hosts[:n], config, rerun)
                            record(key, result)
                            if key == ("ours", "fresh", max(SIZES)):
                                slowest[r] = [line for line in result[3].splitlines() if line.startswith("BENCH_TASK ")]
                teardown(hosts, config)
                key = ("floor", "fresh", 2)
                record(key, floor(hosts))
            teardown(hosts, config)
    finally:
        lab.down_sized(PREFIX, (1,) + SIZES, keep=args.keep)
    report(times, args.rounds, loads, slowest)


def report(times, rounds, loads, slowest) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    print("\nmedians of %d rounds until the command returned and the GCS reported every node alive with its GPUs"
          " (1-minute load average %.1f-%.1f)" % (rounds, min(loads), max(loads)))
    print("hosts  kind     ours     ray up   ours/ray up")
    for kind in ("fresh", "re-run"):
        for n in SIZES:
            o, u = med[("ours", kind, n)], med[("ray up", kind, n)]
            print("%5d  %-6s %6.1f s  %6.1f s  %5.2f" % (n, kind, o, u, o / u))
    for kind in ("fresh", "re-run"):
        for n in SIZES:
            print("runs %-6s %d hosts: ours %s; ray up %s" % (kind, n, ", ".join("%.1f" % t for t in times[("ours", kind, n)]),
                  ", ".join("%.1f" % t for t in times[("ray up", kind, n)])))
    fl = med[("floor", "fresh", 2)]
    print("floor (head + one worker by hand): %.1f s (runs: %s); ours fresh on 2 hosts is %.1f s above it (%.2fx)"
          % (fl, ", ".join("%.1f" % t for t in times[("floor", "fresh", 2)]), med[("ours", "fresh", 2)] - fl,
             med[("ours", "fresh", 2)] / fl))
    for n in (2, 8):
        ratio = med[("ours", "fresh", n)] / med[("ray up", "fresh", n)]
        print("goal fresh ours <= 0.6x ray up on %d hosts: %.2f (%s)" % (n, ratio, "met" if ratio <= 0.6 else "NOT met"))
    ratio = med[("ours", "fresh", 8)] / med[("ours", "fresh", 2)]
    print("goal ours 8/2 <= 1.3: %.2f (%s); re-run 8/2: %.2f" % (ratio, "met" if ratio <= 1.3 else "NOT met",
          med[("ours", "re-run", 8)] / med[("ours", "re-run", 2)]))
    print("slowest tasks of the last fresh ray.yml on %d hosts:\n" % max(SIZES) + "\n".join(slowest[max(slowest)]))


if __name__ == "__main__":
    main()
