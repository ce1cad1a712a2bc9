"""Integration tests on real lab hosts: systemd, sshd and nftables in podman, over SSH.

One lab (prefix `it`, hosts it1 and it2 at .31 and .32, or IT_PREFIX / IT_FIRST) is brought up per
session with the project's own tools/lab.py and removed at the end; tests deploy onto it with
ansible-playbook exactly as an operator would.
"""

import json
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
    def changed_tasks(self):
        """{host: [task names]} of the tasks that reported changed (for a failing assertion)."""
        out, task = {}, None
        for line in self.out.splitlines():
            if line.startswith("TASK ["):
                task = line[6:].split("] ", 1)[0]
            elif line.startswith("changed: ["):
                out.setdefault(line[10:].split("]", 1)[0], []).append(task)
        return out

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


# The lab model group's fence unit (the shared lab runs the default layout).
FENCE = "sglang-fence-lab_model"


def on_host(host, command):
    """Run a command inside a lab host without SSH (podman exec), so sshd logs stay untouched."""
    return subprocess.run(["podman", "exec", host, "sh", "-c", command], check=True,
                          stdout=subprocess.PIPE, text=True).stdout


# What a host looks like before anything is deployed, as names only: remove.yml must bring it
# back to exactly this. Left out, because they change without remove.yml being at fault:
# - /var/lib/apt, /var/lib/dpkg: the package manager's state (OS packages are out of scope:
#   remove.yml never uninstalls a package deploy.yml installed, nor one a test did).
# - transient units: no unit files, made at run time, e.g. logind's session-N.scope of an SSH
#   login (Ansible's ControlPersist connection outlives a playbook by up to two minutes).
# Columns are rejoined with one space: systemctl pads them to the widest entry listed, transient
# units included, so a state column read raw widens to "transient" while any such unit exists.
SNAPSHOT_ROOTS = ("/etc", "/usr/local", "/opt", "/var/lib")
SNAPSHOT_PRUNE = ("/var/lib/apt", "/var/lib/dpkg")
SNAPSHOT = {
    "unit files": "systemctl list-unit-files --no-legend --no-pager | awk '$2 != \"transient\" {print $1, $2, $3}'",
    "paths": "find %s \\( %s \\) -prune -o -print | LC_ALL=C sort" % (
        " ".join(SNAPSHOT_ROOTS), " -o ".join("-path %s" % p for p in SNAPSHOT_PRUNE)),
    "users": "getent passwd",
    "groups": "getent group",
    "nft tables": "nft list tables",
}
SNAPSHOT_FILE = INVENTORY / "pre-deploy-snapshot.json"


def host_state(host):
    """{what: [lines]} of a host, for comparing it before deploy and after remove."""
    return {what: on_host(host, cmd).splitlines() for what, cmd in SNAPSHOT.items()}


def container_id(host):
    found = subprocess.run(["podman", "inspect", "-f", "{{.Id}}", host], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def pre_deploy_snapshot():
    """The snapshot taken when these very hosts (same containers) were created, or None.

    Kept beside the lab's inventory, which `lab.py down` removes with the hosts; with LAB_KEEP=1
    a later session reuses it only while the containers are the ones it was taken on.
    """
    if not SNAPSHOT_FILE.exists():
        return None
    saved = json.loads(SNAPSHOT_FILE.read_text())
    if saved["containers"] != {h: container_id(h) for h in (H1, H2)}:
        return None
    return saved["hosts"]


@pytest.fixture(scope="session")
def lab_hosts():
    t0 = time.monotonic()
    if not os.environ.get("LAB_KEEP"):  # fresh hosts: the first deploy must start from nothing
        subprocess.run(LAB + ["down", "--prefix", PREFIX], check=False)
    fresh = not any(container_id(h) for h in (H1, H2))
    subprocess.run(LAB + ["up", "--prefix", PREFIX, "--first", str(FIRST), "--count", "2"], check=True)
    print("\nlab up: %.1f s" % (time.monotonic() - t0))
    if fresh:  # before any deploy: what remove.yml must bring every host back to
        SNAPSHOT_FILE.write_text(json.dumps({"containers": {h: container_id(h) for h in (H1, H2)},
                                             "hosts": {h: host_state(h) for h in (H1, H2)}}))
    yield [H1, H2]
    if not os.environ.get("LAB_KEEP"):  # LAB_KEEP=1 keeps the hosts for the next run
        subprocess.run(LAB + ["down", "--prefix", PREFIX], check=False)


@pytest.fixture(scope="session")
def deployed(lab_hosts):
    run = playbook("playbooks/deploy.yml")
    assert run.rc == 0, run.out[-5000:]
    return run


# Fence tests: the coordinator (rank 0, H1) logs to its journal.
def fence_log(since):
    return on_host(H1, "journalctl -u %s --since @%d -o cat --no-pager" % (FENCE, since))


def wait_for(predicate, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError("timed out")


# Which of the given [address, port] pairs accept a TCP connection: run with `python3 -c PORT_SCAN
# '<json list>'` where the scan must come from (a lab host, the outsider, the controller).
# Bounded: every pair once, 0.5 s timeout, 64 threads.
PORT_SCAN = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets = json.loads(sys.argv[1])
def probe(t):
    addr, port = t
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.settimeout(0.5)
    try:
        s.connect((addr, port)); return [addr, port]
    except OSError:
        return None
    finally:
        s.close()
with ThreadPoolExecutor(64) as pool:
    print(json.dumps([r for r in pool.map(probe, targets) if r]))
"""

# The test double of an SGLang rank's HTTP side (tests only, never deployed or verified).
DOUBLE = ROOT / "tests/integration/doubles/sglang_rank_double.py"


def run_double_in(host, unit, port, directory, args=""):
    """A drop-in makes the server unit run the test double (in `directory`, a tmpfs path) on
    `port` instead of SGLang, with its GPU condition reset; undone by removing the drop-in."""
    subprocess.run(["podman", "exec", "-i", host, "sh", "-c", "mkdir -p %s && cat > %s/double.py" % (directory, directory)],
                   input=DOUBLE.read_text(), text=True, check=True)
    on_host(host, "mkdir -p /etc/systemd/system/%s.service.d && printf '[Unit]\\nConditionPathExistsGlob=\\n"
            "ConditionPathExists=\\n[Service]\\nExecStart=\\nExecStart=/bin/bash -c \"exec -a "
            "sglang::scheduler_test_double /usr/bin/python3 %s/double.py --port %d%s\"\\n' > "
            "/etc/systemd/system/%s.service.d/test-double.conf && systemctl daemon-reload"
            % (unit, directory, port, (" " + args) if args else "", unit))
