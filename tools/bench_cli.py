#!/usr/bin/env python3
"""Benchmark: wall time of `sglang-ops status` on 2 and 8 lab hosts, and the 8/2 ratio.

Why: status must stay one round of parallel SSH however many nodes there are (goal: 8 hosts in
at most 2x the time of 2). The hosts are bare lab hosts (nothing deployed, so no 3.7 GB venv on
each): every node still answers the full status script over SSH (its units read with
systemctl, the rank's cgroup, GPUs, the fence state), every unit reads "not installed", and the
head's Ray probe fails at once (no venv). Status exits 1 there; each run must still list every
node and reach all of them. Sizes are interleaved (2, 8, 2, 8, ...) so load on the machine hits
both alike; medians are reported.

    tools/bench_cli.py [--rounds 3] [--prefix benchcli --first 71] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402  (the project's lab tool, beside this file)

SIZES = (2, 8)
GOAL = 2.0


def run_once(prefix: str, n: int) -> float:
    inv = lab.inventory_dir("%s-%d" % (prefix, n))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(lab.ROOT / "cli"), os.environ.get("PYTHONPATH")])))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sglang_ops_cli", "-i", str(inv), "status", "--json"], cwd=lab.ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    try:
        nodes = json.loads(proc.stdout)["nodes"]
    except (ValueError, KeyError):
        sys.exit("bench: status on %d hosts printed no JSON (rc %d): %s" % (n, proc.returncode, proc.stderr[-3000:]))
    unreachable = [p for r in nodes for p in r["problems"] if "unreachable" in p or "status script failed" in p]
    if len(nodes) != n or unreachable:
        sys.exit("bench: status on %d hosts did not read every node: %s" % (n, unreachable or nodes))
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefix", default="benchcli")
    ap.add_argument("--first", type=int, default=71, help="last IPv4 byte of host 1 (8 addresses from it)")
    ap.add_argument("--keep", action="store_true", help="keep the 8 hosts afterwards")
    args = ap.parse_args()
    subprocess.run([sys.executable, str(lab.ROOT / "tools/lab.py"), "up", "--prefix", args.prefix,
                    "--first", str(args.first), "--count", str(max(SIZES))], check=True)
    hosts = lab.lab_hosts(args.prefix, max(SIZES), args.first)
    for n in SIZES:
        lab.write_inventory("%s-%d" % (args.prefix, n), hosts[:n], "lab_model")
    walls = {n: [] for n in SIZES}
    try:
        for n in SIZES:  # warm-up, not counted: the interpreter's and the hosts' caches
            run_once(args.prefix, n)
        for r in range(args.rounds):
            for n in SIZES:
                walls[n].append(run_once(args.prefix, n))
                print("round %d: %d hosts  status %.2f s" % (r + 1, n, walls[n][-1]), flush=True)
    finally:
        if not args.keep:
            subprocess.run([sys.executable, str(lab.ROOT / "tools/lab.py"), "down", "--prefix", args.prefix], check=False)
        for n in SIZES:
            subprocess.run(["rm", "-rf", str(lab.inventory_dir("%s-%d" % (args.prefix, n)))], check=False)
    med = {n: statistics.median(walls[n]) for n in SIZES}
    print("\nsglang-ops status, medians of %d rounds (bare lab hosts; whole command: inventory, plan, "
          "SSH, every node's status script)" % args.rounds)
    for n in SIZES:
        print("%d hosts: %.2f s  (runs: %s)" % (n, med[n], ", ".join("%.2f" % w for w in walls[n])))
    ratio = med[8] / med[2]
    print("ratio 8/2: %.2f (goal <= %.1f: %s)" % (ratio, GOAL, "met" if ratio <= GOAL else "NOT met"))


if __name__ == "__main__":
    main()
