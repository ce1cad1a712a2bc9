#!/usr/bin/env python3
"""Benchmark: the first full `deploy.yml` on 2 fresh lab hosts against its floor.

Why: the first deploy is what a new cluster waits for. Most of it is pip installing the lock
and Ray coming up; everything else deploy does (preflight with the port mesh and a real
all_reduce, SGLang's argument check on every rank, the model copy, the firewall, the units, the
seal) should cost little on top. This measures both on the same kind of fresh hosts:

  deploy  `ansible-playbook playbooks/deploy.yml` on 2 hosts just created by `lab.py up`
  floor   by hand, the least a bring-up can do, on 2 hosts just created the same way: on both
          hosts at once, `python3 -m venv` and pip installing the lab's hashed lock from the
          wheelhouse with the options the install role gives pip; then `ray start --head` on
          host 1 as soon as its venv is there and `ray start --address` on host 2 once its venv
          and the head are; done when the GCS reports both nodes alive with their GPUs (no
          SSH, no unit, no token, no check, no model copy)

Fresh hosts for every run (their creation is not timed); the two kinds alternate which goes
first in each round, and medians of the rounds are printed with the ratio deploy / floor.
The lock file is written to the hosts before the clock starts.

Not in `make bench` (CI): each round installs the venv four times, about 7 minutes a round on
the 2-core lab machine. `make bench-first` runs it.

    tools/bench_first.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402  (the project's lab tool, beside this file)
from bench_noop import CALLBACK, playbook  # noqa: E402  (per-task wall times; ansible-playbook in the checkout)
from bench_rayup import GCS_PORT, RAY_NODE_ARGS, VENV, Probe, on_host  # noqa: E402

sys.path.insert(0, str(lab.ROOT / "collections"))
from ansible_collections.sglang_ops.cluster.plugins.module_utils.install import (  # noqa: E402
    pip_requirements, pip_source_args)

PREFIX = "bfirst"
FIRST = 111
LOCK = "/root/bench-lock.txt"


def fresh_hosts() -> list[dict]:
    """Two hosts created now: nothing of a previous run on them."""
    lab.main(["down", "--prefix", PREFIX])
    lab.main(["up", "--prefix", PREFIX, "--first", str(FIRST), "--count", "2"])
    return lab.lab_hosts(PREFIX, 2, FIRST)


def deploy(callbacks: str) -> tuple[float, list[str]]:
    """Seconds, and the slowest tasks (bench_noop's callback)."""
    t0 = time.monotonic()
    proc = playbook("playbooks/deploy.yml", lab.inventory_dir(PREFIX),
                    env={"ANSIBLE_CALLBACK_PLUGINS": callbacks, "ANSIBLE_CALLBACKS_ENABLED": "bench_task_times"})
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit("bench: deploy.yml failed (rc %d):\n%s" % (proc.returncode, proc.stdout[-4000:]))
    return seconds, [line for line in proc.stdout.splitlines() if line.startswith("BENCH_TASK")]


def floor(hosts: list[dict], pip_args: list[str], lock_text: str) -> dict:
    """Seconds until each step of the bring-up by hand was done, from the same start."""
    for h in hosts:
        subprocess.run(["podman", "exec", "-i", h["name"], "sh", "-c", "cat > " + LOCK], input=lock_text,
                       text=True, check=True)
    install = "python3 -m venv %s && %s/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir " \
              "--no-input --no-deps %s %s" % (VENV, VENV, " ".join(pip_args), LOCK)
    done, probe = {}, {}
    head, worker = hosts
    t0 = time.time()

    def venv(h):
        on_host(h["name"], install)
        done["venv " + h["name"]] = time.time() - t0

    def head_side():
        venv(head)
        on_host(head["name"], "%s/bin/ray start --head --port=%d --node-ip-address=%s --include-dashboard=false %s"
                % (VENV, GCS_PORT, head["ipv4"], RAY_NODE_ARGS))
        done["head started"] = time.time() - t0
        # Started only now (it needs the venv): an observer, its import overlaps the worker's side.
        probe["p"] = Probe(head, 2, 8, token=False)

    threads = [threading.Thread(target=head_side), threading.Thread(target=venv, args=(worker,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if "head started" not in done or "venv " + worker["name"] not in done:
        sys.exit("bench: the floor's install or head start failed: %s" % done)
    on_host(worker["name"], "%s/bin/ray start --address=%s:%d --node-ip-address=%s %s"
            % (VENV, head["ipv4"], GCS_PORT, worker["ipv4"], RAY_NODE_ARGS))
    done["worker started"] = time.time() - t0
    seen = probe["p"].result()
    if seen["t"] is None:
        sys.exit("bench: the floor's two nodes never showed alive: %s" % seen)
    done["both alive"] = max(seen["t"] - t0, done["worker started"])
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lab_vars = {}
    for name in ("lab.yml", "versions.yml"):
        lab_vars.update(yaml.safe_load((lab.ROOT / "inventories/lab/group_vars/all" / name).read_text()))
    req_opts, lock_text = pip_requirements(lab_vars["sglang_lock"])
    pip_args = pip_source_args("offline", lab_vars["sglang_wheelhouse_url"], allow_http=True) + req_opts
    times = {"deploy": [], "floor": []}
    callbacks = tempfile.mkdtemp()
    Path(callbacks, "bench_task_times.py").write_text(CALLBACK)
    try:
        for r in range(args.rounds):
            for kind in (("deploy", "floor") if r % 2 == 0 else ("floor", "deploy")):
                hosts = fresh_hosts()
                if kind == "deploy":
                    seconds, slowest = deploy(callbacks)
                    print("round %d: deploy.yml   %6.1f s  (load %.1f)\n  %s" % (
                        r + 1, seconds, os.getloadavg()[0], "\n  ".join(slowest)), flush=True)
                else:
                    steps = floor(hosts, pip_args, lock_text)
                    seconds = steps["both alive"]
                    print("round %d: floor        %6.1f s  (%s; load %.1f)" % (
                        r + 1, seconds, ", ".join("%s %.1f" % kv for kv in steps.items()), os.getloadavg()[0]), flush=True)
                times[kind].append(seconds)
    finally:
        lab.down_sized(PREFIX, ())  # the hosts go; a failure to remove them does not hide the figures
        shutil.rmtree(callbacks, ignore_errors=True)
    d, f = statistics.median(times["deploy"]), statistics.median(times["floor"])
    print("\nfirst full deploy on 2 fresh hosts against its floor, medians of %d rounds" % args.rounds)
    print("deploy.yml %.1f s (runs: %s)" % (d, ", ".join("%.1f" % t for t in times["deploy"])))
    print("floor      %.1f s (runs: %s)" % (f, ", ".join("%.1f" % t for t in times["floor"])))
    print("ratio deploy/floor %.2f (goal <= 1.3: %s)" % (d / f, "met" if d / f <= 1.3 else "NOT met"))
    print(json.dumps({"deploy": times["deploy"], "floor": times["floor"]}))


if __name__ == "__main__":
    main()
