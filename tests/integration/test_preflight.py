"""Preflight on lab hosts: the broken clusters it must refuse, and the collective it must run."""

import re
import shutil
import time

import pytest
import yaml

from conftest import H1, H2, INVENTORY, ROOT, on_host, playbook
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

RAY_UNIT = DEFAULTS["ray_unit_name"]  # the lab inventory keeps the plan's default

NFT_DROP = ("nft add table inet sglang_test && "
            "nft 'add chain inet sglang_test input { type filter hook input priority -10; policy accept; }' && "
            "nft add rule inet sglang_test input tcp dport %d drop")


def ray_state(host):
    return on_host(host, "systemctl is-active %s || true" % RAY_UNIT).strip()


@pytest.fixture
def inventory_with(tmp_path):
    """A copy of the lab inventory with per-host variables changed."""
    def make(**host_vars):
        inv = tmp_path / "inventory"
        shutil.copytree(ROOT / "inventories/lab/group_vars", inv / "group_vars")
        data = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
        hosts = data["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"]
        for host, values in host_vars.items():
            hosts[host].update(values)
        (inv / "hosts.yml").write_text(yaml.safe_dump(data))
        return inv
    return make


def test_gloo_all_reduce_figures(deployed):
    # It passed in the first deploy with these inputs: a re-run does not repeat it ...
    again = playbook("playbooks/preflight.yml", INVENTORY, "--tags", "preflight_collective")
    assert again.rc == 0 and "all_reduce: not run again: it passed with these ranks" in again.out
    assert "GB/s" not in again.out
    # ... unless asked.
    run = playbook("playbooks/preflight.yml", INVENTORY, "--tags", "preflight_collective", "-e", "preflight_mode=full")
    assert run.rc == 0 and "all_reduce: runs (preflight_mode: full)" in run.out
    table = re.search(rf"lab_model: 2 nodes, gloo, rank 0 {H1}.*?16 MiB[^\n]*", run.out, re.S)
    assert table, run.out[-3000:]
    busbw = [float(x) for x in re.findall(r"([0-9.]+) GB/s'?\n", table.group(0))]
    assert busbw and all(b > 0 for b in busbw)


def test_closed_port_on_one_host_is_named_and_nothing_starts(deployed):
    for host in (H2, H1):
        on_host(host, "systemctl stop " + RAY_UNIT)
    on_host(H2, NFT_DROP % 20000)
    try:
        run = playbook("playbooks/deploy.yml", INVENTORY, "-e", "preflight_mesh_settle=3")
        assert run.rc != 0
        assert re.search(rf"{H1}\s+{H2}\s+20000\s+timed out", run.out), run.out[-3000:]
        assert "Port mesh: 1 of 28 probes failed" in run.out
        assert "PLAY [Install the pinned" not in run.out
        assert (ray_state(H1), ray_state(H2)) != ("active", "active")
        assert "active" not in (ray_state(H1), ray_state(H2))
        # The check's temporary listeners are gone, though the dropped port never saw its
        # probe: Ray's ports are free for the start that follows the fix.
        for host in (H1, H2):
            assert on_host(host, "ss -ltnH '( sport >= :6379 and sport <= :6386 ) or sport = :20000'") == "", host
    finally:
        on_host(H2, "nft delete table inet sglang_test")
    # Only Ray was stopped: Ray's playbook starts it again (head, then worker) and waits for both.
    run = playbook("playbooks/ray.yml")
    assert run.rc == 0 and (ray_state(H1), ray_state(H2)) == ("active", "active")


def test_wrong_interface_fails_fast_naming_the_host(deployed, inventory_with):
    inv = inventory_with(**{H2: {"cluster_interface": "eth9"}})
    run = playbook("playbooks/deploy.yml", inv / "hosts.yml")
    assert run.rc != 0
    assert f"{H2}: cluster_interface: eth9 does not exist on this node (it has lo, eth0)" in run.out
    assert f"{H1}: cluster_interface" not in run.out
    assert run.seconds < 30
    assert "PLAY [Install the pinned" not in run.out


def test_collective_stops_peers_of_a_failing_rank(deployed, inventory_with):
    """The collective alone (node checks skipped): it2 cannot create its gloo device on eth9,
    says so, and it1 stops at once instead of waiting out the 60 s timeout."""
    inv = inventory_with(**{H2: {"cluster_interface": "eth9"}})
    t0 = time.monotonic()
    run = playbook("playbooks/preflight.yml", inv / "hosts.yml", "--tags", "preflight_collective")
    assert run.rc != 0
    assert re.search(rf"{H2}: collective \(gloo, group lab_model\): \w+", run.out), run.out[-3000:]
    assert "eth9" in run.out
    assert time.monotonic() - t0 < 45


def test_other_ray_version_on_one_host_is_named_then_converged(deployed):
    metadata = "/opt/sglang/venv/lib/python3.11/site-packages/ray-2.60.0.dist-info/METADATA"
    on_host(H2, "sed -i 's/^Version: 2.60.0$/Version: 2.59.0/' %s" % metadata)
    run = playbook("playbooks/preflight.yml", INVENTORY, "--tags", "preflight_parity")
    assert run.rc != 0
    assert f"{H2}: ray 2.59.0, but sglang_versions pins 2.60.0" in run.out
    # deploy puts the pin back on that node only
    run = playbook("playbooks/deploy.yml")
    assert run.rc == 0
    assert run.recap[H2]["changed"] >= 1 and run.recap[H1]["changed"] == 0
    assert "Version: 2.60.0" in on_host(H2, "grep ^Version: %s" % metadata)
