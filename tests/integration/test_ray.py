"""Ray on lab hosts: only the planned ports, token authentication, recovery from faults."""

import json
import re
import shutil
import subprocess
import time

import yaml

from conftest import H1, H2, INVENTORY, IP1, IP2, ROOT, on_host, playbook

from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import PROBE
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

RAY_UNIT = DEFAULTS["ray_unit_name"]  # the lab inventory keeps the plan's default

HEAD_IP, WORKER_IP = IP1, IP2
TOKEN = "/etc/sglang/ray-auth-token"
PY = "/opt/sglang/venv/bin/python"


def ray_nodes(with_token=True, timeout=0):
    """Nodes in the head's GCS node table, read by the role's own probe as the sglang user: [{ip, alive, ...}],
    or the probe's output where it could not read it."""
    env = "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=%s" % TOKEN if with_token else "RAY_AUTH_MODE=disabled"
    args = json.dumps({"address": "%s:6379" % HEAD_IP, "timeout": timeout, "expect_gpus": 0, "expect_ips": []})
    proc = subprocess.run(["podman", "exec", H1, "runuser", "-u", "sglang", "--", "sh", "-c",
                           "env %s timeout 90 %s -c \"$0\" \"$1\"" % (env, PY), PROBE, args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])["nodes"] if lines else proc.stdout


def alive_ids():
    nodes = ray_nodes()
    return {n["ip"]: n["node_id"] for n in nodes if n["alive"]} if isinstance(nodes, list) else {}


def wait_whole(limit, renewed, before, t0=None):
    """Seconds (from t0) until both hosts are alive Ray nodes and the hosts in `renewed` came
    back as new nodes (Ray keeps a killed node listed as alive until it notices)."""
    t0 = t0 or time.monotonic()
    now = {}
    while time.monotonic() - t0 < limit:
        now = alive_ids()
        if set(now) == {HEAD_IP, WORKER_IP} and all(now[ip] != before.get(ip) for ip in renewed):
            return time.monotonic() - t0
        time.sleep(1)
    raise AssertionError("cluster not whole after %d s: before %s, now %s" % (limit, before, now))


def listening(host, uid):
    """TCP ports the given uid listens on inside the host."""
    out = on_host(host, "ss -ltnHe")
    return {int(m.group(1)) for line in out.splitlines() if "uid:%s " % uid in line + " "
            for m in [re.search(r":(\d+)\s", line.split()[3] + " ")] if m}


def test_ray_binds_only_planned_ports(deployed):
    # The fixed set (GCS .. autoscaler metrics), the client server (token-protected, firewalled)
    # and the worker range: nothing else, whatever Ray finds installed in the venv.
    planned = set(range(6379, 6387)) | {10001} | set(range(11000, 11500))
    # The node exporter and Prometheus run as the same cluster user, on their own planned ports.
    planned |= {DEFAULTS["cluster_node_exporter_port"], DEFAULTS["cluster_prometheus_port"]}
    for host in (H1, H2):
        uid = on_host(host, "id -u sglang").strip()
        ports = listening(host, uid)
        assert 6380 in ports and 6381 in ports, (host, ports)  # raylet and object manager are there
        assert ports <= planned, "%s: Ray listens outside the plan: %s" % (host, sorted(ports - planned))
    assert 6379 in listening(H1, on_host(H1, "id -u sglang").strip())


def test_client_without_token_is_refused(deployed):
    assert isinstance(ray_nodes(with_token=True), list)
    out = ray_nodes(with_token=False)
    assert isinstance(out, str) and ("InvalidAuthToken" in out or "Unauthenticated" in out), out[-2000:]


def test_killed_raylet_is_restarted_and_rejoins(deployed):
    before = alive_ids()
    t0 = time.monotonic()
    on_host(H2, "pkill -9 -x raylet")
    seconds = wait_whole(60, {WORKER_IP}, before, t0)
    print(f"\nraylet killed on {H2}: a new {H2} node joined after %.1f s" % seconds)
    assert int(on_host(H2, "systemctl show %s -p NRestarts --value" % RAY_UNIT)) >= 1


def test_rebooted_worker_host_rejoins(deployed):
    before = alive_ids()
    t0 = time.monotonic()
    subprocess.run(["podman", "restart", "-t", "5", H2], check=True, stdout=subprocess.DEVNULL)
    seconds = wait_whole(120, {WORKER_IP}, before, t0)
    print(f"\n{H2} container restarted: a new {H2} node joined %.1f s after the restart began" % seconds)


def test_head_restart_brings_the_cluster_back(deployed):
    before = alive_ids()
    t0 = time.monotonic()
    on_host(H1, "systemctl restart " + RAY_UNIT)
    seconds = wait_whole(150, {HEAD_IP, WORKER_IP}, before, t0)
    print("\nhead unit restarted: both nodes back as new nodes after %.1f s (workers' raylet reconnect "
          "timeout 30 s)" % seconds)


def test_changing_one_host_restarts_only_that_unit(deployed, tmp_path):
    def started(host):
        return on_host(host, "systemctl show %s -p ActiveEnterTimestampMonotonic --value" % RAY_UNIT).strip()

    inv = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories/lab/group_vars", inv / "group_vars")
    data = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    data["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"][H2]["ray_extra_args"] = ["--num-cpus=1"]
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    before = {h: started(h) for h in (H1, H2)}
    run = playbook("playbooks/deploy.yml", inv / "hosts.yml")
    assert run.rc == 0
    assert run.recap[H1]["changed"] == 0 and run.recap[H2]["changed"] >= 1
    assert started(H1) == before[H1] and started(H2) != before[H2]
    assert "--num-cpus=1" in on_host(H2, "cat /etc/systemd/system/%s.service" % RAY_UNIT)
    # Back to the lab's own settings: Ray's alone (the change above touched nothing else).
    back = playbook("playbooks/ray.yml")
    assert back.rc == 0 and back.recap[H1]["changed"] == 0 and started(H1) == before[H1]
    assert "--num-cpus=1" not in on_host(H2, "cat /etc/systemd/system/%s.service" % RAY_UNIT)
