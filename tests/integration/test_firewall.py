"""The firewall on lab hosts: an outsider on the same bridge finds the cluster ports closed."""

import json
import shutil
import subprocess
import time

import pytest
import yaml

import lab

from conftest import FIRST, H1, H2, HOSTS, INVENTORY, IP1, IP2, PORT_SCAN, PREFIX, ROOT, on_host, playbook
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, FIREWALL_UNIT

OUTSIDER = f"{PREFIX}-outsider"
NODES = {H1: (f"{IP1}", f"{HOSTS[0]['ipv6']}"), H2: (f"{IP2}", f"{HOSTS[1]['ipv6']}")}
OUT_IP4 = lab.host_ipv4(61, FIRST)  # on the lab bridge, outside the nodes' /32s
OUT_IP6 = lab.host_ipv6(61, FIRST)
PORTS = sorted({6379, 8265, 10001, 11000, 11499, 30080} | set(range(6380, 6387)) | set(range(20000, 20101)))



def scan():
    targets = [[a, p] for pair in NODES.values() for a in pair for p in PORTS]
    out = subprocess.run(["podman", "exec", OUTSIDER, "python3", "-c", PORT_SCAN, json.dumps(targets)],
                         check=True, stdout=subprocess.PIPE, text=True, timeout=120).stdout
    return [tuple(x) for x in json.loads(out)]


@pytest.fixture(scope="module")
def outsider(lab_hosts):
    """A host on the same podman network, outside the cluster's CIDRs (.99)."""
    subprocess.run(["podman", "rm", "-f", OUTSIDER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["podman", "run", "-d", "--name", OUTSIDER, "--label", f"lab.group={PREFIX}", "--network", lab.NETWORK,
                    "--ip", f"{OUT_IP4}", "--ip6", f"{OUT_IP6}", lab.IMAGE], check=True, stdout=subprocess.DEVNULL)
    yield OUTSIDER
    subprocess.run(["podman", "rm", "-f", "-t", "2", OUTSIDER], stdout=subprocess.DEVNULL)


@pytest.fixture
def narrow_inventory(tmp_path):
    """The lab inventory with the cluster's CIDRs narrowed to the two nodes' own addresses (and,
    with controller_inside, the controller's: the lab gateway, where Ansible connects from)."""
    def make(controller_inside=False, **extra):
        inv = tmp_path / ("inventory-%d" % len(list(tmp_path.iterdir())))
        shutil.copytree(ROOT / "inventories/lab/group_vars", inv / "group_vars")
        data = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
        # host vars: they outrank the lab's group_vars/all (inline `all: vars:` would not)
        hosts = data["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"]
        cidrs = [f"{IP1}/32", f"{IP2}/32"] + ([f"{lab.GATEWAY4}/32"] if controller_inside else [])
        for host in hosts.values():
            host.update(cluster_cidrs=cidrs, **extra)
        (inv / "hosts.yml").write_text(yaml.safe_dump(data))
        return inv / "hosts.yml"
    return make


def test_outsider_finds_nothing_open_while_nodes_reach_each_other(deployed, outsider, narrow_inventory):
    # Without the firewall the same scan does find Ray: the scan can fail.
    assert playbook("playbooks/deploy.yml", narrow_inventory(firewall_enabled=False)).rc == 0
    assert (f"{IP1}", 6379) in scan()
    # An SSH session open while the rules change must survive them.
    ssh = subprocess.Popen(["ssh", "-i", str(lab.KEY), "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"root@{IP1}",
                            "sleep 25; echo still-here"], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    run = playbook("playbooks/deploy.yml", narrow_inventory())
    assert run.rc == 0 and "Port mesh: 28 probes between 2 nodes, all open" in run.out
    t0 = time.monotonic()
    opened = scan()
    print("\noutsider scan of %d ports x 4 addresses: %d open, %.1f s" % (len(PORTS), len(opened), time.monotonic() - t0))
    assert opened == []
    assert ssh.communicate(timeout=60)[0].strip() == "still-here" and ssh.returncode == 0
    # The firewall alone again (a whole deploy's re-run is test_deploy's): nothing to change.
    again = playbook("playbooks/firewall.yml", narrow_inventory())
    assert again.rc == 0 and {h: r["changed"] for h, r in again.recap.items()} == {H1: 0, H2: 0}


def test_rules_survive_a_reboot_and_an_nftables_reload(deployed, outsider, narrow_inventory):
    # The narrow CIDRs only change the firewall's rules: the firewall alone puts them in place.
    assert playbook("playbooks/firewall.yml", narrow_inventory()).rc == 0
    on_host(H2, "systemctl restart nftables || true")
    assert "table inet sglang_ops" in on_host(H2, "nft list tables")
    subprocess.run(["podman", "restart", "-t", "5", H2], check=True, stdout=subprocess.DEVNULL)
    for _ in range(60):
        if "table inet sglang_ops" in subprocess.run(["podman", "exec", H2, "nft", "list", "tables"],
                                                     stdout=subprocess.PIPE, text=True).stdout:
            break
        time.sleep(1)
    else:
        raise AssertionError("table inet sglang_ops not loaded after reboot")
    assert (f"{IP2}", 6380) not in scan()
    # back to the lab's own CIDRs for the tests that follow
    assert playbook("playbooks/firewall.yml").rc == 0


def fresh_ssh(ip):
    """A new SSH login from the controller (no multiplexed connection to hide a refusal)."""
    return subprocess.run(["ssh", "-i", str(lab.KEY), "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ControlMaster=no",
                           "-o", "ControlPath=none", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
                           f"root@{ip}", "echo ssh-ok"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=30).stdout.strip()


def test_nftables_and_firewalld_keep_the_table_and_a_failed_load_keeps_ray_down(deployed):
    # The lab runs the default layout: the plan's names.
    firewall, ray = FIREWALL_UNIT + ".service", DEFAULTS["ray_unit_name"] + ".service"
    ray_pid = on_host(H2, "systemctl show -p MainPID --value %s" % ray).strip()
    # nftables flushes the whole ruleset on start, stop, reload and restart; ours is loaded again
    # right after each, and Ray keeps running throughout (nothing restarts it).
    for action in ("start", "reload", "restart", "stop"):
        on_host(H2, "systemctl %s nftables" % action)
        # `systemctl reload` waits for nftables' own job only; ours runs right after it.
        state = on_host(H2, "for i in $(seq 60); do s=$(systemctl is-active %s); [ \"$s\" = reloading ] || break; "
                        "sleep 0.5; done; echo $s" % firewall).strip()
        assert state == "active", (action, state)
        assert "table inet sglang_ops" in on_host(H2, "nft list tables"), action
    # firewalld stops nftables.service (Conflicts=) when it starts, running or not: with PartOf= that
    # stopped the firewall unit, deleted the table and stopped Ray, although nothing was flushed.
    try:
        on_host(H2, "systemctl start firewalld")
        assert "table inet sglang_ops" in on_host(H2, "nft list tables")
        assert on_host(H2, "systemctl is-active %s %s || true" % (firewall, ray)).split() == ["active", "active"]
    finally:
        on_host(H2, "systemctl stop firewalld")
    assert on_host(H2, "systemctl show -p MainPID --value %s" % ray).strip() == ray_pid  # never restarted
    # Ray requires the firewall unit and starts after it.
    deps = on_host(H2, "systemctl show -p Requires -p After %s" % ray)
    assert firewall in deps.split("Requires=", 1)[1].splitlines()[0] and firewall in deps.split("After=", 1)[1]
    # Stopping the firewall unit stops Ray, and a ruleset that fails to load keeps Ray stopped (a
    # boot with a broken table stays closed). (`ray start --block` exits 1 on SIGTERM, so a
    # stopped Ray unit reads "failed": not running either way.)
    down = ("inactive", "failed")
    rules = DEFAULTS["cluster_config_dir"] + "/firewall.nft"
    # Every unit that requires the firewall and runs now (Ray, the fence, the node exporter) stops
    # with it, and starts again only when asked: the tests that follow need them as they were.
    running = [u for u in on_host(H2, "systemctl show -p RequiredBy --value %s" % firewall).split()
               if on_host(H2, "systemctl is-active %s || true" % u).strip() == "active"]
    try:  # whatever fails, the firewall unit and those units run again afterwards
        on_host(H2, "systemctl stop %s" % firewall)
        states = on_host(H2, "systemctl is-active %s %s || true" % (firewall, ray)).split()
        assert states[0] == "inactive" and states[1] in down, states
        on_host(H2, "cp -p %s %s.saved && echo 'table inet sglang_ops { garbage' > %s" % (rules, rules, rules))
        on_host(H2, "systemctl start %s || true" % ray)
        assert on_host(H2, "systemctl is-active %s || true" % firewall).strip() == "failed"
        assert on_host(H2, "systemctl is-active %s || true" % ray).strip() in down
        assert "table inet sglang_ops" not in on_host(H2, "nft list tables")
    finally:
        on_host(H2, "[ ! -e %s.saved ] || mv -f %s.saved %s; systemctl reset-failed %s %s; systemctl start %s %s"
                % (rules, rules, rules, firewall, ray, ray, " ".join(running)))
    assert on_host(H2, "systemctl is-active %s %s" % (firewall, ray)).split() == ["active", "active"]
    assert on_host(H2, "systemctl is-active %s || true" % " ".join(running)).split() == ["active"] * len(running), running
    # The tests that follow probe Ray's ports on this worker: wait until it serves them again
    # (`systemctl start` returns before the raylet listens; under load that takes a while).
    deadline = time.monotonic() + 120
    while not reachable(H1, IP2, 6380):
        assert time.monotonic() < deadline, "Ray's node manager on %s did not listen again within 120 s" % H2
        time.sleep(2)


def reachable(src, ip, port):
    return on_host(src, "nc -z -w 2 %s %d && echo open || echo closed" % (ip, port)).strip() == "open"


HOST_FIREWALLS = {
    # ufw would lock SSH out when enabled without a rule for it: an operator allows it first.
    "firewalld": ("systemctl start firewalld",
                  "systemctl stop firewalld; rm -f /etc/firewalld/zones/sglang*"),
    "ufw": ("ufw allow 22/tcp >/dev/null && ufw --force enable",
            "ufw --force reset >/dev/null; ufw --force disable >/dev/null"),
}


@pytest.mark.parametrize("tool", sorted(HOST_FIREWALLS))
def test_host_firewall_is_opened_for_the_cluster_only(deployed, outsider, narrow_inventory, tool):
    start, stop = HOST_FIREWALLS[tool]
    # The outsider's address is outside the cluster only with these CIDRs; the controller (the lab
    # gateway) is inside, as a controller or bastion in the cluster network is.
    inv = narrow_inventory(controller_inside=True)
    try:
        for host in (H1, H2):
            on_host(host, start)
        # The host's own firewall rejects what it was not told about: the peer cannot reach Ray.
        assert not reachable(H2, IP1, 6379)
        run = playbook("playbooks/firewall.yml", inv, "--diff")
        assert run.rc == 0 and "Open the cluster's ports in %s" % tool in run.out
        assert reachable(H2, IP1, 6379) and reachable(H1, IP2, 6380)
        mesh = playbook("playbooks/preflight.yml", inv, "--tags", "preflight_mesh")
        assert mesh.rc == 0 and "Port mesh: 28 probes between 2 nodes, all open" in mesh.out
        assert scan() == []  # and still nothing for an outsider
        # A new SSH login from inside the cluster's networks still gets in (firewalld >= 1.0: the
        # zone bound by source takes every packet from there, so it must accept SSH itself).
        assert [fresh_ssh(ip) for ip in (IP1, IP2)] == ["ssh-ok", "ssh-ok"]
        again = playbook("playbooks/firewall.yml", inv)
        assert {h: r["changed"] for h, r in again.recap.items()} == {H1: 0, H2: 0}
        assert "table inet sglang_ops" in on_host(H1, "nft list tables")  # the second layer stays
    finally:
        for host in (H1, H2):
            on_host(host, stop)
        assert playbook("playbooks/firewall.yml").rc == 0  # the lab's own CIDRs again
