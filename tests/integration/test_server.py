"""SGLang server units on the lab: rendered per rank, accepted by the installed SGLang and by
systemd, not started without a GPU (and saying so), and the fence acting on real units."""

import json
import time

import yaml

from conftest import FENCE, H1, H2, INVENTORY, ROOT, fence_log, on_host, playbook, wait_for
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, LEGACY_ENV_SUFFIX, ROUTER_UNIT

UNIT = "sglang-server-lab_model"
PINS = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/versions.yml").read_text())["sglang_versions"]


def unit_file(host):
    return on_host(host, "cat /etc/systemd/system/%s.service" % UNIT)


def test_venv_imports_at_the_pinned_versions(deployed):
    code = ("import json, sglang, torch, ray, numpy; print(json.dumps({'sglang': sglang.__version__, "
            "'torch': torch.__version__, 'ray': ray.__version__, 'numpy': numpy.__version__}))")
    for host in (H1, H2):
        got = json.loads(on_host(host, "runuser -u sglang -- /opt/sglang/venv/bin/python -c \"%s\"" % code))
        assert {k: v.split("+")[0] for k, v in got.items()} == PINS, host


def test_units_per_rank_validated_and_not_started(deployed):
    out = deployed.out
    for rank, host in enumerate((H1, H2)):
        text = unit_file(host)
        assert "--node-rank %d " % rank in text and "--nnodes 2 " in text
        assert "--dist-init-addr 10.89.78." in text and "SGLANG_HOST_IP=" in text
        assert "%s: SGLang %s accepts the arguments of %s (rank %d)" % (host, PINS["sglang"], UNIT, rank) in out
        assert on_host(host, "systemctl is-enabled %s || true" % UNIT).strip() == "enabled"
        # Not started: no GPU. Nothing pretends a server answered.
        assert on_host(host, "systemctl is-active %s || true" % UNIT).strip() == "inactive"
        assert on_host(host, "systemctl is-active %s || true" % FENCE).strip() == "active"
        on_host(host, "systemd-analyze verify /etc/systemd/system/%s.service" % UNIT)
    assert "lab_model: not started: no GPU (cluster_gpus_fake on %s, %s)" % (H1, H2) in out


def test_sglang_rejection_fails_the_play_and_keeps_the_unit(deployed, tmp_path):
    before = unit_file(H1)
    extra = tmp_path / "bad.yml"
    extra.write_text(yaml.safe_dump({"sglang_extra_args": ["--load-format", "dummy", "--attention-backend", "no-such"]}))
    run = playbook("playbooks/server.yml", INVENTORY, "-e", "@%s" % extra)
    assert run.rc != 0
    assert "%s: SGLang rejects the arguments of %s (rank 0)" % (H1, UNIT) in run.out
    assert "no-such" in run.out  # SGLang's own words
    assert unit_file(H1) == before


def state(host):
    return on_host(host, "systemctl is-active %s || true" % UNIT).strip()


def test_fence_restarts_the_group_together_and_gives_up(deployed):
    """The fence acts on the real server units. SGLang cannot serve on this CPU, so a drop-in
    gives each rank a stand-in process (sleep) and lifts the GPU-device condition; killing one
    rank's process is the failure."""
    dropin = "/etc/systemd/system/%s.service.d/stand-in.conf" % UNIT
    since = int(on_host(H1, "date +%s"))
    on_host(H1, "systemctl restart %s" % FENCE)  # a fresh coordinator: its restart count is 0
    for host in (H1, H2):
        on_host(host, "mkdir -p %s.d && printf '[Unit]\\nConditionPathExistsGlob=\\nConditionPathExists=\\n"
                "[Service]\\nExecStart=\\nExecStart=/bin/sleep infinity\\n' > %s "
                "&& systemctl daemon-reload && systemctl start %s" % (dropin.rsplit(".d/", 1)[0], dropin, UNIT))
    try:
        wait_for(lambda: "armed: all 2 ranks active" in fence_log(since))
        for n in range(1, 4):
            pid1 = on_host(H1, "systemctl show -p MainPID --value %s" % UNIT).strip()
            on_host(H2, "systemctl kill -s KILL %s" % UNIT)
            took = wait_for(lambda: "restart %d of at most 3" % n in fence_log(since))
            wait_for(lambda: state(H1) == state(H2) == "active")
            # rank 0 was stopped and started again with the group, not left running
            assert on_host(H1, "systemctl show -p MainPID --value %s" % UNIT).strip() != pid1
            print("fence: group restart %d after %.1f s" % (n, took))
        on_host(H2, "systemctl kill -s KILL %s" % UNIT)
        wait_for(lambda: "gave up: 3 group restarts" in fence_log(since))
        wait_for(lambda: state(H1) in ("inactive", "failed") and state(H2) in ("inactive", "failed"))
        time.sleep(3)  # bounded: nothing starts again
        assert state(H1) != "active" and state(H2) != "active"
        assert json.loads(on_host(H1, "cat /run/%s/state.json" % FENCE))["phase"] == "gave-up"
    finally:
        for host in (H1, H2):
            on_host(host, "rm -rf %s && systemctl daemon-reload && systemctl stop %s; systemctl reset-failed %s || true"
                    % (dropin.rsplit("/", 1)[0], UNIT, UNIT))


def two_group_inventory(tmp_path, pp_a=1):
    """The same two hosts as two one-node model groups with their own ports (replicas)."""
    inv = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    hosts = inv["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"]
    model = yaml.safe_load((ROOT / "inventories/lab/group_vars/lab_model.yml").read_text())
    inv["all"]["children"]["sglang_nodes"]["children"] = {
        "rep_a": {"hosts": {H1: hosts[H1]}, "vars": dict(model, sglang_pp=pp_a)},
        "rep_b": {"hosts": {H2: hosts[H2]}, "vars": dict(model, sglang_port=30001, sglang_dist_init_port=20200)},
    }
    out = tmp_path / "two_groups"
    out.mkdir(exist_ok=True)
    (out / "hosts.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
    if not (out / "group_vars").exists():
        (out / "group_vars").mkdir()
        (out / "group_vars" / "all").symlink_to(ROOT / "inventories/lab/group_vars/all")
    return out


def test_two_groups_then_a_tp_change_touches_only_its_group(deployed, tmp_path):
    try:
        # server.yml: the server role alone, as an operator re-renders servers on a live cluster.
        run = playbook("playbooks/server.yml", two_group_inventory(tmp_path))
        assert run.rc == 0
        # The old group's units are gone; each node now serves its own replica.
        for host, group, port in ((H1, "rep_a", "30000"), (H2, "rep_b", "30001")):
            units = on_host(host, "ls /etc/systemd/system | grep -E '^sglang-(server|fence)' || true").split()
            assert units == ["sglang-server-%s.service" % group], (host, units)  # one node: no fence
            text = on_host(host, "cat /etc/systemd/system/sglang-server-%s.service" % group)
            assert "--tp-size 4 " in text and "--nnodes" not in text and "--port %s " % port in text
        b_before = on_host(H2, "stat -c %Y /etc/systemd/system/sglang-server-rep_b.service")
        # tp 4 -> 2 (pp 2) on rep_a only: its unit changes, rep_b's is not touched.
        run = playbook("playbooks/server.yml", two_group_inventory(tmp_path, pp_a=2))
        assert run.rc == 0
        assert "--tp-size 2 --pp-size 2 " in on_host(H1, "cat /etc/systemd/system/sglang-server-rep_a.service")
        assert on_host(H2, "stat -c %Y /etc/systemd/system/sglang-server-rep_b.service") == b_before
        assert run.recap[H2]["changed"] == 0 and run.recap[H1]["changed"] > 0
    finally:
        # The files earlier versions kept the API key in, on the router's host: the run removes them.
        legacy = " ".join("%s/%s%s" % (DEFAULTS["cluster_config_dir"], unit, LEGACY_ENV_SUFFIX) for unit in (UNIT, ROUTER_UNIT))
        on_host(H1, "for f in %s; do (umask 077; echo SGLANG_API_KEY=old > $f); done" % legacy)
        back = playbook("playbooks/server.yml", INVENTORY)
    assert back.rc == 0
    assert on_host(H1, "ls %s 2>/dev/null || true" % legacy).strip() == ""
    assert playbook("playbooks/deploy.yml", INVENTORY).recap[H1]["changed"] == 0
    for host in (H1, H2):
        assert "sglang-server-rep" not in on_host(host, "ls /etc/systemd/system")
        assert on_host(host, "systemctl is-active %s || true" % FENCE).strip() == "active"
