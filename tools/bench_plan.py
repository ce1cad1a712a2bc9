#!/usr/bin/env python3
"""Controller-side scale: the plan play (as every playbook runs it) on generated inventories.

Inventories of N nodes (groups of 2, 8 fake GPUs each, addresses from 10.64.0.0/10) that never
connect: `ansible_connection: local`, no facts. Prints the median of --rounds runs per size and
the growth between sizes, so the near-linear goal (128 -> 512 within 4.5x) is read off one run.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAY = """\
- name: Plan only, as every playbook starts
  hosts: sglang_nodes
  gather_facts: false
  any_errors_fatal: true
  roles:
    - role: sglang_ops.cluster.plan
"""


def inventory(nodes: int) -> str:
    lines = ["all:", "  children:", "    sglang_nodes:", "      children:"]
    for g in range(0, nodes, 2):
        lines += [f"        g{g // 2}:", "          hosts:"]
        for i in range(g, min(g + 2, nodes)):
            ip = i + 1  # 10.64.0.1 upwards
            lines += [f"            n{i}:", f"              ansible_host: 10.{64 + ip // 65536}.{ip // 256 % 256}.{ip % 256}"]
        lines += ["          vars:", "            sglang_model_path: /var/lib/sglang/models/m",
                  f"            sglang_tp: {8 * min(2, nodes - g)}"]
    lines += ["  vars:", "    ansible_connection: local", "    ansible_python_interpreter: " + sys.executable,
              "    cluster_interface: eth0", "    cluster_cidrs: [10.64.0.0/10]", "    cluster_gpus_per_node: 8",
              "    cluster_gpus_fake: true", "    sglang_versions: {sglang: '0.5.23', torch: '2.14.1', ray: '2.60.0'}"]
    return "\n".join(lines) + "\n"


def run_once(tmp: Path, nodes: int) -> float:
    inv = tmp / f"inv{nodes}.yml"
    if not inv.exists():
        inv.write_text(inventory(nodes))
    t0 = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", str(inv), str(tmp / "plan.yml")], cwd=ROOT,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORKS="16"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode:
        sys.exit(f"plan play on {nodes} nodes failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,32,128,512")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    times: dict[int, list[float]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "plan.yml").write_text(PLAY)
        for r in range(args.rounds):  # interleaved: a slow moment of the machine hits every size
            for n in sizes:
                times[n].append(run_once(Path(tmp), n))
                print(f"round {r + 1}: {n} nodes {times[n][-1]:.1f} s", flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    print("\nplan step (median of %d)" % args.rounds)
    prev = None
    for n in sizes:
        growth = f"  x{med[n] / med[prev]:.2f} from {prev}" if prev else ""
        print(f"  {n:4d} nodes  {med[n]:6.1f} s{growth}")
        prev = n


if __name__ == "__main__":
    main()
