"""Integration tests on real lab hosts: systemd, sshd and nftables in podman, over SSH.

One lab (prefix `it`, hosts it1 and it2 at .31 and .32, or IT_PREFIX / IT_FIRST) is brought up per session with the
project's own tools/lab.py and removed at the end; tests deploy onto it with ansible-playbook
exactly as an operator would.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "tools"))
import lab  # noqa: E402  (the project's lab tool)

LAB = [sys.executable, str(ROOT / "tools/lab.py")]
# IT_PREFIX / IT_FIRST let a developer run these tests beside a CI run without sharing hosts.
PREFIX = os.environ.get("IT_PREFIX", "it")
FIRST = int(os.environ.get("IT_FIRST", "31"))
HOSTS = lab.lab_hosts(PREFIX, 2, FIRST)
H1, H2 = HOSTS[0]["name"], HOSTS[1]["name"]
IP1, IP2 = HOSTS[0]["ipv4"], HOSTS[1]["ipv4"]
INVENTORY = lab.inventory_dir(PREFIX)
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class Run:
    def __init__(self, proc, seconds):
        self.rc, self.out, self.seconds = proc.returncode, proc.stdout, seconds

    @property
    def recap(self):
        """{host: {ok, changed, unreachable, failed}} from the PLAY RECAP."""
        return {m[0]: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m[1:])))
                for m in RECAP.findall(self.out)}


def playbook(name, inventory=INVENTORY, *args, env=None, cwd=ROOT):
    """Run a playbook like an operator; returns rc, output, recap and wall time."""
    t0 = time.monotonic()
    proc = subprocess.run(["ansible-playbook", name, "-i", str(inventory), *args], cwd=cwd,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", **(env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = Run(proc, time.monotonic() - t0)
    print("\n--- ansible-playbook %s (%.1f s, rc %d)\n%s" % (name, run.seconds, run.rc, run.out[-3000:]))
    return run


def on_host(host, command):
    """Run a command inside a lab host without SSH (podman exec), so sshd logs stay untouched."""
    return subprocess.run(["podman", "exec", host, "sh", "-c", command], check=True,
                          stdout=subprocess.PIPE, text=True).stdout


@pytest.fixture(scope="session")
def lab_hosts():
    t0 = time.monotonic()
    if not os.environ.get("LAB_KEEP"):  # fresh hosts: the first deploy must start from nothing
        subprocess.run(LAB + ["down", "--prefix", PREFIX], check=False)
    subprocess.run(LAB + ["up", "--prefix", PREFIX, "--first", str(FIRST), "--count", "2"], check=True)
    print("\nlab up: %.1f s" % (time.monotonic() - t0))
    yield [H1, H2]
    if not os.environ.get("LAB_KEEP"):  # LAB_KEEP=1 keeps the hosts for the next run
        subprocess.run(LAB + ["down", "--prefix", PREFIX], check=False)


@pytest.fixture(scope="session")
def deployed(lab_hosts):
    run = playbook("playbooks/deploy.yml")
    assert run.rc == 0, run.out[-5000:]
    return run
