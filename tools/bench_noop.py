#!/usr/bin/env python3
"""Benchmark: a no-op `deploy.yml` on deployed lab hosts: the re-run check, every phase, every check.

Why: operators re-run deploy.yml all the time; a re-run with nothing to change must be quick and
report changed=0. The same hosts get, interleaved so load on the machine hits all alike:
- `fast`: a re-run as by default: every node matches the seal of the last complete deploy, so
  every play after the re-run check ends at once (module_utils/rerun.py);
- `full`: every phase runs (`cluster_rerun=full`), with SGLang's and the router's argument
  checks and the all_reduce skipped where their inputs did not change (the check stamps);
- `every check`: every phase and every check (`cluster_rerun=full preflight_mode=full
  sglang_server_validate_always=true`), what every re-run did before the stamps.
Medians, ratios and the slowest tasks of the fast run are printed. Every run must report changed=0.

With `--against REV` the same re-run of another revision of this repository (checked out in a
temporary git worktree) is interleaved too: how much a change made the re-run faster, measured
side by side on the same hosts. Its run must also report changed=0 on hosts this tree deployed.

The comparison needs hosts with the venv installed (a first deploy, minutes on CI), so it is not
in `make bench`. `--sealed 2 8` is: it brings up bare lab hosts, seals them as they are
(tools/bench_seal.yml) and times the no-op re-run on 2 and 8 of them, interleaved: the re-run
check's own cost at each size (the plan, one comparison per node, every later play ending), not
the comparison of a deployed node's larger trees, which is a few stat calls more.

    tools/bench_noop.py --inventory .lab/lab [--rounds 3] [--against REV]
    tools/bench_noop.py --sealed 2 8 [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import lab  # noqa: E402  (the project's lab tool)

SEALED_PREFIX, SEALED_FIRST = "seal", 91
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# A callback of this benchmark only: per-task wall time, printed after the recap.
CALLBACK = '''
import time
from ansible.plugins.callback import CallbackBase
class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_times"
    CALLBACK_NEEDS_ENABLED = True
    def __init__(self):
        super().__init__()
        self.times, self.current = [], None
    def _next(self, name):
        now = time.monotonic()
        if self.current:
            self.times.append((now - self.current[1], self.current[0]))
        self.current = (name, now) if name else None
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._next(task.get_name())
    def v2_playbook_on_play_start(self, play):
        self._next("(play) " + play.get_name())
    def v2_playbook_on_stats(self, stats):
        self._next(None)
        for seconds, name in sorted(self.times, reverse=True)[:8]:
            self._display.display("BENCH_TASK %6.2f s  %s" % (seconds, name))
        self._display.display("BENCH_TASKS %d" % len(self.times))
'''


PHASES = ["-e", "cluster_rerun=full"]
FULL = PHASES + ["-e", "preflight_mode=full", "-e", "sglang_server_validate_always=true"]


def deploy(inventory: Path, callbacks: Path, extra=(), noop: bool = True, tree: Path = ROOT) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_PLUGINS=str(callbacks),
               ANSIBLE_CALLBACKS_ENABLED="bench_task_times")
    t0 = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "playbooks/deploy.yml", "-i", str(inventory), *extra], cwd=tree, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - t0
    recap = RECAP.findall(proc.stdout)
    if proc.returncode != 0 or not recap or (noop and any(int(r[2]) for r in recap)):
        sys.exit("bench: the deploy %s in %s was not a no-op (rc %d): %s"
                 % (" ".join(extra), tree, proc.returncode, proc.stdout[-3000:]))
    return wall, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inventory", type=Path, help="deployed lab hosts (deployed by this tree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--against", metavar="REV", help="also time the re-run of this git revision (e.g. HEAD~3)")
    ap.add_argument("--sealed", type=int, nargs="+", metavar="N",
                    help="instead: the re-run check's cost on N bare, sealed lab hosts (e.g. 2 8)")
    args = ap.parse_args()
    if args.sealed:
        return sealed(sorted(set(args.sealed)), args.rounds)
    if not args.inventory:
        ap.error("--inventory or --sealed is required")
    inventory = args.inventory.resolve()
    names = {"fast": (ROOT, ()), "full": (ROOT, PHASES), "every check": (ROOT, FULL)}
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = Path(tmp)
        if args.against:
            rev = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=ROOT, check=True,
                                 stdout=subprocess.PIPE, text=True).stdout.strip()
            other = callbacks / "tree"
            subprocess.run(["git", "worktree", "add", "--detach", str(other), rev], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            names[rev] = (other, ())
        try:
            run_rounds(args, inventory, callbacks, names)
        finally:
            if args.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)


def playbook(name: str, inventory: Path, *extra, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["ansible-playbook", name, "-i", str(inventory), *extra], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", **(env or {})))


def sealed(sizes, rounds: int) -> None:
    # Hosts of their own per size (a node's seal holds the inputs of the cluster it was sealed in),
    # one lab prefix each (a prefix has at most 8 hosts).
    inventories, first = {}, SEALED_FIRST
    for n in sizes:
        prefix = "%s%d" % (SEALED_PREFIX, n)
        subprocess.run([sys.executable, str(ROOT / "tools/lab.py"), "up", "--prefix", prefix, "--first", str(first),
                        "--count", str(n)], check=True)
        inventories[n], first = lab.inventory_dir(prefix), first + n
    try:
        with tempfile.TemporaryDirectory() as tmp:
            callbacks = Path(tmp)
            (callbacks / "bench_task_times.py").write_text(CALLBACK)
            # Twice: the first seal makes the configuration directory it lives in, which the
            # second one finds (a deployed node has that directory already).
            for n in sizes + sizes:
                proc = playbook("tools/bench_seal.yml", inventories[n])
                if proc.returncode != 0:
                    sys.exit("bench: sealing %d hosts failed: %s" % (n, proc.stdout[-3000:]))
            for n in sizes:  # a host that does not match would get a whole deploy
                check = playbook("tools/rerun_check.yml", inventories[n], "--check")
                if "nothing can change" not in " ".join(check.stdout.split()):
                    sys.exit("bench: %d hosts do not match the seal just written: %s" % (n, check.stdout[-2000:]))
            times = {n: [] for n in sizes}
            for i in range(1, rounds + 1):
                for n in sizes:
                    wall, out = deploy(inventories[n], callbacks)
                    if "nothing can change" not in " ".join(out.split()):
                        sys.exit("bench: the re-run on %d sealed hosts did not stop after its check: %s" % (n, out[-3000:]))
                    times[n].append(wall)
                    print("round %d: %d hosts  %5.1f s  (%s tasks)" % (i, n, wall, re.search(r"BENCH_TASKS (\d+)", out).group(1)),
                          flush=True)
    finally:
        for n in sizes:
            subprocess.run([sys.executable, str(ROOT / "tools/lab.py"), "down", "--prefix", "%s%d" % (SEALED_PREFIX, n)],
                           check=False)
    med = {n: statistics.median(v) for n, v in times.items()}
    print("\nno-op deploy.yml on bare sealed lab hosts (every play after the re-run check ends), medians of %d rounds" % rounds)
    for n in sizes:
        print("%d hosts: %5.1f s  (runs: %s)" % (n, med[n], ", ".join("%.1f" % r for r in times[n])))
    if len(sizes) > 1:
        print("ratio %d/%d: %.2f" % (sizes[-1], sizes[0], med[sizes[-1]] / med[sizes[0]]))


def run_rounds(args, inventory: Path, callbacks: Path, names: dict) -> None:
    (callbacks / "bench_task_times.py").write_text(CALLBACK)
    # Warm-up: this tree converges the hosts (its stamps, anything newer than their deploy).
    deploy(inventory, callbacks, noop=False)
    times = {name: [] for name in names}
    for i in range(1, args.rounds + 1):
        for name, (tree, extra) in names.items():
            wall, out = deploy(inventory, callbacks, extra, tree=tree)
            times[name].append(wall)
            print("round %d: %-12s %6.1f s  (%s tasks)" % (i, name, wall, re.search(r"BENCH_TASKS (\d+)", out).group(1)),
                  flush=True)
            if name == "fast":
                slowest = [line for line in out.splitlines() if line.startswith("BENCH_TASK ")]
    hosts = len(RECAP.findall(out))
    print("\nno-op deploy.yml on %d deployed lab hosts, medians of %d rounds (changed=0 in every run)" % (hosts, args.rounds))
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, runs in times.items():
        print("%-12s %6.1f s  (runs: %s)" % (name, med[name], ", ".join("%.1f" % r for r in runs)))
    for name in med:
        if name != "fast":
            print("ratio fast / %s: %.2f" % (name, med["fast"] / med[name]))
    print("slowest tasks of the last fast run:\n" + "\n".join(slowest))


if __name__ == "__main__":
    main()
