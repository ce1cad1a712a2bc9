#!/usr/bin/env python3
"""Benchmark: wall time of the preflight port mesh on 2, 4 and 8 lab hosts, and the 8/2 ratio.

Why: the mesh probes every pair of nodes, N x (N-1) x ports connections. Run naively that grows
quadratically; run as one concurrent task per node (each node probing all peers at once) it
should stay nearly flat. This measures it side by side in one run: the sizes are interleaved
(2, 4, 8, 2, 4, 8, ...) so load on the machine hits all of them alike, and medians are reported.

    tools/bench_mesh.py [--rounds 3] [--keep]

Each run is `ansible-playbook playbooks/preflight.yml --tags preflight_nodes,
preflight_mesh` (the checks deploy.yml makes before installing anything); every run must pass.
The figures: the whole command's wall time, and the slowest node's time inside the mesh module.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402  (the project's lab tool, beside this file)

SIZES = (2, 4, 8)
PREFIX = "bench"
FIRST = 71
TAGS = "preflight_nodes,preflight_mesh"


def run_once(n: int) -> tuple[float, float]:
    inv = lab.sized_inventory(PREFIX, n)
    t0 = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "playbooks/preflight.yml", "-i", str(inv), "--tags", TAGS],
                          cwd=lab.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    wall = time.monotonic() - t0
    # The default callback folds long messages: match across line breaks.
    match = re.search(r"Port\s+mesh:\s+(\d+)\s+probes\s+between\s+(\d+)\s+nodes,\s+all\s+open;\s+slowest\s+node\s+"
                      r"([0-9.]+)\s+s;\s+mesh\s+check\s+([0-9.]+)\s+s", proc.stdout)
    if proc.returncode != 0 or not match or int(match.group(2)) != n:
        sys.exit("bench: preflight on %d hosts failed (rc %d):\n%s" % (n, proc.returncode, proc.stdout[-4000:]))
    return wall, float(match.group(4)), float(match.group(3)), int(match.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the 8 hosts afterwards")
    args = ap.parse_args()
    lab.up_sized(PREFIX, FIRST, SIZES)
    walls = {n: [] for n in SIZES}
    phase = {n: [] for n in SIZES}
    inner = {n: [] for n in SIZES}
    probes = {}
    try:
        for r in range(args.rounds):
            for n in SIZES:
                wall, mesh, slowest, probes[n] = run_once(n)
                walls[n].append(wall)
                phase[n].append(mesh)
                inner[n].append(slowest)
                print("round %d: %d hosts  preflight %.2f s  mesh check %.2f s  slowest node's probing %.2f s"
                      % (r + 1, n, wall, mesh, slowest), flush=True)
    finally:
        lab.down_sized(PREFIX, SIZES, keep=args.keep)
    med = {name: {n: statistics.median(v[n]) for n in SIZES}
           for name, v in (("wall", walls), ("mesh", phase), ("inner", inner))}
    print("\nmedians of %d rounds" % args.rounds)
    print("hosts  probes  mesh check  slowest node's probing  whole preflight command")
    for n in SIZES:
        # The probe count is the one preflight reported, not a formula.
        print("%5d  %6d  %8.2f s  %20.2f s  %21.2f s" % (n, probes[n], med["mesh"][n], med["inner"][n],
                                                        med["wall"][n]))
    ratio = med["mesh"][8] / med["mesh"][2]
    print("ratio 8/2: mesh check %.2f (goal <= 1.5: %s); whole preflight command %.2f"
          % (ratio, "met" if ratio <= 1.5 else "NOT met", med["wall"][8] / med["wall"][2]))


if __name__ == "__main__":
    main()
