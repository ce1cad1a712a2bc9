"""remove.yml on the deployed lab: every host back to what it was before the first deploy.

Named to sort after every other integration module (pytest runs modules in name order): it
takes the cluster the other modules use away. It compares each host's unit files, files, users,
groups and nftables tables with the snapshot conftest.py took when the hosts came up fresh.
"""

import re
import shutil

import pytest
import yaml

from conftest import H1, H2, INVENTORY, IP1, IP2, ROOT, host_state, on_host, playbook, pre_deploy_snapshot

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, layout

HOSTS = (H1, H2)
# The lab inventory keeps the plan's defaults for the layout; its one model group is lab_model.
LAYOUT = layout(DEFAULTS, ["lab_model"])
DATA = LAYOUT["data_dir"] + "/"
USER = DEFAULTS["cluster_user"]
MODEL = yaml.safe_load((ROOT / "inventories/lab/group_vars/lab_model.yml").read_text())["sglang_model_path"]
# Left on the hosts by another module, never by a deploy, and not remove.yml's to take away:
# test_firewall.py enables ufw and ends with `ufw --force reset`, which keeps ufw's rules files as
# NAME.rules.YYYYMMDD_HHMMSS, and ufw (through iptables-nft) leaves its tables behind.
LEFT_BY_OTHER_TESTS = {
    "paths": re.compile(r"/etc/ufw/(user|user6|before|before6|after|after6)\.rules\.\d{8}_\d{6}"),
    "nft tables": re.compile(r"table (ip|ip6) filter"),
}


def changed(run):
    return {h: r["changed"] for h, r in run.recap.items()}


def failed(run):
    return {h: r["failed"] + r["unreachable"] for h, r in run.recap.items()}


def differences(want, have):
    """Readable per-host differences: {host: {what: {"left behind": [...], "missing": [...]}}}."""
    found = {}
    for host in HOSTS:
        for what, lines in want[host].items():
            extra = sorted(line for line in set(have[host][what]) - set(lines)
                           if what not in LEFT_BY_OTHER_TESTS or not LEFT_BY_OTHER_TESTS[what].fullmatch(line))
            gone = sorted(set(lines) - set(have[host][what]))
            if extra or gone:
                found.setdefault(host, {})[what] = {"left behind": extra, "missing": gone}
    return found


def without_data_dir(state):
    """Ray writes its session files into the data directory on its own while it runs."""
    return dict(state, paths=[p for p in state["paths"] if not p.startswith(DATA)])


def narrow_inventory(tmp_path):
    """The lab inventory with the cluster's CIDRs narrowed to the nodes' own addresses: the
    controller (the bridge's gateway) then stays outside firewalld's zone of the cluster, and
    keeps reaching SSH through the default zone."""
    shutil.copytree(ROOT / "inventories/lab/group_vars", tmp_path / "group_vars")
    data = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    for host in data["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"].values():
        host.update(cluster_cidrs=[f"{IP1}/32", f"{IP2}/32"])
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(data))
    return tmp_path / "hosts.yml"


@pytest.fixture(scope="module")
def snapshot(deployed):
    taken = pre_deploy_snapshot()
    if taken is None:
        pytest.fail("no snapshot of these hosts from before their first deploy: they were reused "
                    "(LAB_KEEP=1) from a run that did not create them; run once without LAB_KEEP")
    return taken


def test_check_mode_reports_what_it_would_remove_and_changes_nothing(snapshot):
    before = {h: without_data_dir(host_state(h)) for h in HOSTS}
    run = playbook("playbooks/remove.yml", INVENTORY, "--check", "--diff")
    assert run.rc == 0, run.out[-5000:]
    assert failed(run) == {H1: 0, H2: 0}
    assert all(n > 0 for n in changed(run).values()), changed(run)
    assert differences(before, {h: without_data_dir(host_state(h)) for h in HOSTS}) == {}
    for host in HOSTS:
        assert on_host(host, "systemctl is-active %s || true" % LAYOUT["units"]["ray"]).strip() == "active", host


def test_remove_takes_our_openings_out_of_firewalld_and_ufw(snapshot, tmp_path):
    def zones():
        return on_host(H1, "firewall-cmd --permanent --get-zones").split()

    def ufw_rules():
        return [r for r in on_host(H2, "ufw show added").splitlines() if "sglang_ops" in r]

    inv = narrow_inventory(tmp_path)
    on_host(H1, "systemctl start firewalld")
    on_host(H2, "ufw allow 22/tcp >/dev/null && ufw --force enable >/dev/null")  # SSH first, as an operator would
    try:
        assert playbook("playbooks/firewall.yml", inv).rc == 0
        assert {"sglang", "public"} <= set(zones()) and ufw_rules()
        run = playbook("playbooks/remove.yml", inv, "--tags", "firewall", "--diff")
        assert run.rc == 0, run.out[-5000:]
        assert "public" in zones() and not [z for z in zones() if z.startswith("sglang")]
        assert [f for f in on_host(H1, "ls /etc/firewalld/zones").split() if f.startswith("sglang")] == []  # nor backups
        assert ufw_rules() == [] and "ufw allow 22/tcp" in on_host(H2, "ufw show added")  # others' rules stay
        for host in HOSTS:
            assert "table inet %s" % LAYOUT["nft_table"] not in on_host(host, "nft list tables"), host
    finally:
        on_host(H1, "systemctl stop firewalld")
        on_host(H2, "ufw --force disable >/dev/null; ufw delete allow 22/tcp >/dev/null")
        # Enabling ufw made iptables-nft's tables; the host had none before this test.
        for table in ("table ip filter", "table ip6 filter"):
            if table not in snapshot[H2]["nft tables"]:
                on_host(H2, "nft delete %s 2>/dev/null || true" % table)


def test_remove_keeping_the_models(snapshot):
    run = playbook("playbooks/remove.yml", INVENTORY, "-e", "sglang_remove_keep_models=true")
    assert run.rc == 0, run.out[-5000:]
    for host in HOSTS:
        state = host_state(host)
        # The model stays (complete), and nothing else of the data directory does.
        assert f"{MODEL}/config.json" in state["paths"], host
        models = DATA + MODEL[len(DATA):].split("/")[0]  # the data directory's entry holding it
        left = [p for p in state["paths"] if p.startswith(DATA)]
        assert left and all(p == models or p.startswith(models + "/") for p in left), (host, left)
        assert not [u for u in state["users"] if u.startswith(USER + ":")], host
        units = {LAYOUT["units"]["ray"], LAYOUT["units"]["firewall"], LAYOUT["units"]["router"],
                 LAYOUT["units"]["node_exporter"], LAYOUT["units"]["prometheus"],
                 *LAYOUT["units"]["servers"].values(), *LAYOUT["units"]["fences"].values()}
        assert not [u for u in state["unit files"] if u.split(".service")[0] in units], host
        gone = (LAYOUT["venv_dir"], LAYOUT["config_dir"], LAYOUT["libexec_dir"], LAYOUT["files"]["ray_cli"])
        assert not [p for p in state["paths"] if p.startswith(gone)], host


def test_remove_brings_every_host_back_to_before_deploy(snapshot):
    run = playbook("playbooks/remove.yml", INVENTORY)
    assert run.rc == 0, run.out[-5000:]
    assert differences(snapshot, {h: host_state(h) for h in HOSTS}) == {}


def test_second_remove_changes_nothing(snapshot):
    run = playbook("playbooks/remove.yml", INVENTORY)
    assert run.rc == 0, run.out[-5000:]
    assert changed(run) == {H1: 0, H2: 0}
