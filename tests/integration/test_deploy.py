"""deploy.yml and verify.yml on two lab hosts, as an operator runs them."""

import json
import os
import shutil
import subprocess

import yaml

from conftest import H1, H2, INVENTORY, ROOT, on_host, playbook
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

RAY_UNIT = DEFAULTS["ray_unit_name"]  # the lab inventory keeps the plan's default


def test_first_deploy_brings_up_two_ray_nodes(deployed):
    assert "Ray 2.60.0: 2 alive nodes, 8 GPUs (declared fake)" in deployed.out
    assert all(r["failed"] == 0 and r["changed"] > 0 for r in deployed.recap.values())


def test_second_deploy_changes_nothing(deployed):
    run = playbook("playbooks/deploy.yml")
    assert run.rc == 0
    assert {h: r["changed"] for h, r in run.recap.items()} == {H1: 0, H2: 0}
    # Both nodes as the first deploy sealed them: every play after the re-run check ends at once.
    assert "Re-run: all 2 nodes are as the last complete deploy left them" in " ".join(run.out.split())


def test_verify_reports_nodes_and_gpus(deployed):
    # The report beside this lab's inventory: a run on another IT_PREFIX from the same checkout
    # writes the default verify-report.json in the checkout too.
    path = INVENTORY / "verify-report.json"
    run = playbook("playbooks/verify.yml", INVENTORY, "-e", "verify_report_path=%s" % path)
    assert run.rc == 0
    assert "17 passed, 0 failed, 8 not run" in run.out
    report = json.loads(path.read_text())
    # The lab inventory plans no Prometheus: the one metrics row says so, and why.
    metrics = [c for c in report["checks"] if c["check"].startswith("metrics")]
    assert [(c["status"], c["reason"]) for c in metrics] == [
        ("not run", "no Prometheus of ours (cluster_prometheus_host unset)")], metrics
    # The server checks say why they did not run; nothing pretends a server answered.
    served = {c["check"]: c for c in report["checks"] if c["node"] == H1}
    for check in ("server rank", "health_generate", "v1/models", "api key enforced", "test generation", "benchmark"):
        assert served[check]["status"] == "not run"
        assert served[check]["reason"].startswith("not started: no GPU (cluster_gpus_fake on %s, %s)" % (H1, H2))
    gpus = [c for c in report["checks"] if c["check"] == "ray GPUs"]
    assert [c["reason"] for c in gpus] == ["4 of 4 (declared fake)"] * 2
    units = [c for c in report["checks"] if c["check"] == "server unit"]
    assert [c["status"] for c in units] == ["pass"] * 2 and "installed, enabled" in units[0]["reason"]


def test_verify_fails_when_a_worker_is_down(deployed):
    on_host(H2, "systemctl stop " + RAY_UNIT)
    try:
        run = playbook("playbooks/verify.yml", INVENTORY, "-e", "verify_ray_timeout=5")
        assert run.rc != 0
        assert f"FAIL ray unit on {H2}: {RAY_UNIT} is" in run.out  # the report names the host
        assert f"FAIL ray node alive on {H2}" in run.out
    finally:
        on_host(H2, "systemctl start " + RAY_UNIT)
    assert playbook("playbooks/verify.yml").rc == 0  # and it rejoins


def test_installed_collection_runs_by_fqcn(deployed, tmp_path):
    """galaxy build -> install -> `ansible-playbook sglang_ops.cluster.verify`, away from the checkout."""
    subprocess.run(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(tmp_path), str(ROOT)],
                   check=True, cwd=tmp_path)
    tarball = next(tmp_path.glob("sglang_ops-cluster-*.tar.gz"))
    subprocess.run(["ansible-galaxy", "collection", "install", "-p", str(tmp_path / "colls"), str(tarball)],
                   check=True, cwd=tmp_path)
    inv = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories/lab/group_vars", inv / "group_vars")
    shutil.copy(INVENTORY / "hosts.yml", inv / "hosts.yml")
    env = {"ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "colls"), "ANSIBLE_CONFIG": ""}
    listing = subprocess.run(["ansible-galaxy", "collection", "list", "sglang_ops.cluster"], cwd=tmp_path,
                             env=dict(os.environ, **env), stdout=subprocess.PIPE, text=True).stdout
    assert str(tmp_path / "colls") in listing
    run = playbook("sglang_ops.cluster.verify", inv, env=env, cwd=tmp_path)
    assert run.rc == 0 and "17 passed, 0 failed, 8 not run" in run.out


def test_invalid_inventory_is_refused_before_any_connection(deployed, tmp_path):
    """A bad inventory fails on the controller: no SSH login reaches any host, nothing changes."""
    inv = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories/lab/group_vars", inv / "group_vars")
    data = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    hosts = data["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"]
    hosts[H2]["cluster_interface"] = None          # missing interface on one host
    hosts[H1]["sglang_tp"] = 3                      # tp not matching 2 nodes x 4 GPUs
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))

    def logins():
        return {h: on_host(h, "journalctl -q -u ssh.service -o cat | grep -c 'Accepted publickey' || true").strip()
                for h in (H1, H2)}

    def units():
        return {h: on_host(h, "systemctl show %s -p ActiveEnterTimestamp --value; "
                              "stat -c %%Y /etc/systemd/system/%s.service" % (RAY_UNIT, RAY_UNIT)) for h in (H1, H2)}

    before_logins, before_units = logins(), units()
    run = playbook("playbooks/deploy.yml", inv / "hosts.yml")
    assert run.rc != 0
    assert "no host was contacted" in run.out
    assert f"{H2}: cluster_interface: not set" in run.out and "sglang_tp" in run.out
    assert logins() == before_logins and units() == before_units


def test_nvidia_driver_plan_in_check_mode(deployed):
    """On a CPU host, NVIDIA mode in check mode shows the package, the pin and the reboot plan."""
    run = playbook("playbooks/deploy.yml", INVENTORY, "--check", "-e", "gpu_driver_vendor=nvidia",
                   "--tags", "gpu_driver_install")
    assert run.rc == 0
    assert "nvidia driver: install (no nvidia driver installed); packages nvidia-open-570=570.133.20" in run.out.replace("\n        ", " ")
    assert "reboot yes, one host at a time" in run.out.replace("\n        ", " ")
    assert all(r["changed"] == 0 for r in run.recap.values())
