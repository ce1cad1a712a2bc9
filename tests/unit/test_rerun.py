"""deploy.yml's re-run check: the fingerprint parts of module_utils/rerun.py, the inputs key of
plugin_utils/plan_inputs.py, the verdict, and the rerun_seal module run for real on tmp_path."""

import json
import os

import pytest

from ansible_collections.sglang_ops.cluster.plugins.filter.rerun import FilterModule as RerunFilters
from ansible_collections.sglang_ops.cluster.plugins.module_utils import rerun
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils import plan_inputs, role_specs


def tree(tmp_path):
    root = tmp_path / "etc"
    (root / "checked").mkdir(parents=True)
    (root / "a.conf").write_text("a=1\n")
    (root / "checked/deploy").write_text("seal")
    os.symlink("a.conf", root / "link")
    return root


def edit_content(root):
    (root / "a.conf").write_text("a=2\n")


def edit_mode(root):
    os.chmod(root / "a.conf", 0o666)


def add_file(root):
    (root / "extra").write_text("")


def remove_file(root):
    os.unlink(root / "a.conf")


def retarget_link(root):
    os.unlink(root / "link")
    os.symlink("checked", root / "link")


def touch_only(root):
    os.utime(root / "a.conf", ns=(1, 1))


@pytest.mark.parametrize("change, differs", [
    (edit_content, True), (edit_mode, True), (add_file, True), (remove_file, True), (retarget_link, True),
    (touch_only, False),  # small files by content: a touch is no drift
])
def test_tree_state_sees_what_changes_a_file(tmp_path, change, differs):
    root = tree(tmp_path)
    before = rerun.digest(rerun.tree_state(str(root)))
    change(root)
    assert (rerun.digest(rerun.tree_state(str(root))) != before) is differs


def test_excluded_paths_and_large_files(tmp_path, monkeypatch):
    root = tree(tmp_path)
    seal = str(root / "checked/deploy")
    before = rerun.tree_state(str(root), [seal])
    assert "checked/deploy" not in [entry[0] for entry in before]
    (root / "checked/deploy").write_text("another seal")
    assert rerun.tree_state(str(root), [seal]) == before
    monkeypatch.setattr(rerun, "HASHED_MAX", 2)  # a.conf is now "large": size and mtime
    large = rerun.digest(rerun.tree_state(str(root), [seal]))
    touch_only(root)
    assert rerun.digest(rerun.tree_state(str(root), [seal])) != large


def test_a_missing_tree_is_a_state():
    assert rerun.tree_state("/nonexistent/sglang") == [["", None]]


SHOW = """Id=sglang-ray.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled
NeedDaemonReload=no
FragmentPath=/etc/systemd/system/sglang-ray.service
DropInPaths=/etc/systemd/system/sglang-ray.service.d/a.conf /etc/systemd/system/sglang-ray.service.d/b.conf

Id=sglang-router.service
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=
NeedDaemonReload=no
FragmentPath=
DropInPaths=
"""


def test_unit_states_and_files():
    units = rerun.parse_unit_show(SHOW)
    assert units["sglang-router.service"]["LoadState"] == "not-found"
    assert units["sglang-ray.service"]["SubState"] == "running"
    assert rerun.unit_files(units) == ["/etc/systemd/system/sglang-ray.service",
                                       "/etc/systemd/system/sglang-ray.service.d/a.conf",
                                       "/etc/systemd/system/sglang-ray.service.d/b.conf"]
    stopped = rerun.parse_unit_show(SHOW.replace("ActiveState=active", "ActiveState=failed"))
    assert rerun.digest(stopped) != rerun.digest(units)


def test_counters_do_not_count_rules_do():
    table = "table inet firewalld {\n  chain x {\n    tcp dport 22 counter packets %d bytes %d accept\n  }\n}"
    assert rerun.nft_state(table % (1, 60)) == rerun.nft_state(table % (90, 6000))
    assert rerun.nft_state(table % (1, 60)) != rerun.nft_state(table.replace("22", "23") % (1, 60))


def test_ufw_chains_only():
    filt = ("table ip filter {\n chain DOCKER {\n  counter packets %d bytes 1 accept\n }\n"
            " chain ufw-user-input {\n  tcp dport %d counter packets 3 bytes 4 accept\n }\n}")
    assert rerun.ufw_state(filt % (1, 6379)) == rerun.ufw_state(filt % (9, 6379))  # Docker's are not ours
    assert rerun.ufw_state(filt % (1, 6379)) != rerun.ufw_state(filt % (1, 6380))


def test_addresses_without_lifetimes():
    one = [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.0.1", "prefixlen": 24,
                                             "valid_life_time": 100}]}]
    one[0].update(mtu=9000, operstate="UP")
    two = json.loads(json.dumps(one))
    two[0]["addr_info"][0]["valid_life_time"] = 50
    # A temporary (privacy) IPv6 address rotates by itself: not drift.
    two[0]["addr_info"].append({"family": "inet6", "local": "2001:db8::99", "prefixlen": 64, "temporary": True})
    assert rerun.addresses(json.dumps(one)) == rerun.addresses(json.dumps(two)) == [
        ["inet", "10.0.0.1", 24], ["link", 9000, "UP"]]
    for key, value in (("local", "10.0.0.2"), ("prefixlen", 16)):
        other = json.loads(json.dumps(one))
        other[0]["addr_info"][0][key] = value
        assert rerun.addresses(json.dumps(one)) != rerun.addresses(json.dumps(other))
    for key, value in (("mtu", 1500), ("operstate", "DOWN")):
        assert rerun.addresses(json.dumps(one)) != rerun.addresses(json.dumps([dict(one[0], **{key: value})]))


@pytest.mark.parametrize("results, active, sealed, words", [
    ([{"sealed": True}, {"sealed": True}], ["a", "b"], True, "all 2 nodes"),
    ([{"sealed": True}, {"sealed": False, "drift": ["units", "venv:/v"]}], ["a", "b"], False, "b: units, venv:/v"),
    ([{"sealed": True}, {"sealed": True}], ["a"], False, "b: not reachable"),
    ([{"sealed": True}, {"skipped": True}], ["a", "b"], False, "every phase runs (a run of every phase"),
    ([{"sealed": True}, None], ["a", "b"], False, "every phase runs"),
])
def test_verdict(results, active, sealed, words):
    got = rerun.verdict(results, ["a", "b"], active)
    assert got["sealed"] is sealed and words in got["message"]


def test_drift_names_each_part():
    assert rerun.drift({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == ["b", "c"]
    assert rerun.drift({"a": "1"}, {"a": "1"}) == []


def plan_and_inputs(**overrides):
    hosts = ["n1", "n2"]
    raw = {h: dict(ansible_host="10.0.0.%d" % (i + 1), cluster_interface="eth0", cluster_gpus_per_node=2,
                   sglang_model_path="/var/lib/sglang/models/m", **overrides.get(h, {}))
           for i, h in enumerate(hosts)}
    plan, lines, judged = plan_inputs.compute({"m": hosts}, hosts, [], raw, {})
    assert lines is None, lines
    return plan_inputs.rerun_inputs(plan, judged, raw, {"m": hosts}, [], role_specs.load(), "2.19.0")


def test_group_order_is_an_input():
    hosts = ["n1", "n2"]
    raw = {h: dict(ansible_host="10.0.0.%d" % (i + 1), cluster_interface="eth0", cluster_gpus_per_node=2,
                   sglang_model_path="/srv/models/m") for i, h in enumerate(hosts)}
    keys = []
    for groups in ({"a": ["n1"], "b": ["n2"]}, {"b": ["n2"], "a": ["n1"]}):
        plan, lines, judged = plan_inputs.compute(groups, hosts, [], raw, {})
        assert lines is None, lines
        keys.append(plan_inputs.rerun_inputs(plan, judged, raw, groups, [], role_specs.load(), "2.19.0")["rerun"]["inputs"])
    assert keys[0] != keys[1]  # the first group's first host is the Ray head


def test_inputs_key_follows_every_option_but_no_secret():
    base = plan_and_inputs()["rerun"]
    assert base["enabled"] and len(base["inputs"]) == 64
    assert "sglang_server_api_key" in base["secret_vars"] and "ray_auth_token" in base["secret_vars"]
    assert plan_and_inputs()["rerun"]["inputs"] == base["inputs"]
    # Any option of any role, on any host, is an input; an option of how much to check is not.
    assert plan_and_inputs(n2={"ray_gcs_reconnect_timeout": 31})["rerun"]["inputs"] != base["inputs"]
    assert plan_and_inputs(n1={"firewall_enabled": False})["rerun"]["inputs"] != base["inputs"]
    assert plan_and_inputs(n1={"preflight_mode": "full"}, n2={"preflight_mode": "full"})["rerun"]["inputs"] == base["inputs"]
    # A secret reaches the key only on its node (rerun_seal hashes it there), never the plan's.
    keyed = plan_and_inputs(n1={"sglang_server_api_key": "k" * 32}, n2={"sglang_server_api_key": "k" * 32})
    assert keyed["rerun"]["inputs"] == base["inputs"] and "k" * 32 not in json.dumps(keyed)
    assert rerun.seal_key(base["inputs"], {"sglang_server_api_key": "k" * 32}) != rerun.seal_key(
        base["inputs"], {"sglang_server_api_key": "j" * 32}) != rerun.seal_key(base["inputs"], {})


@pytest.mark.parametrize("overrides, enabled", [
    ({}, True),
    ({"n1": {"cluster_rerun": "full"}, "n2": {"cluster_rerun": "full"}}, False),
    ({"n2": {"preflight_mode": "full"}}, False),
    ({"n1": {"sglang_server_validate_always": True}}, False),
])
def test_enabled(overrides, enabled):
    assert plan_and_inputs(**overrides)["rerun"]["enabled"] is enabled


def test_a_bad_mode_is_refused():
    hv = {"n1": dict(ansible_host="10.0.0.1", cluster_interface="eth0", cluster_gpus_per_node=2,
                     sglang_model_path="m", cluster_rerun="sometimes")}
    with pytest.raises(Exception, match="cluster_rerun"):
        build_plan({"m": ["n1"]}, hv, ["n1"])


def test_content_key_covers_the_roles(tmp_path):
    for d in plan_inputs.CONTENT_DIRS:
        (tmp_path / d / "__pycache__").mkdir(parents=True)
    (tmp_path / "roles/t.yml").write_text("a")
    key = plan_inputs.content_key(str(tmp_path))
    (tmp_path / "plugins/__pycache__/x.pyc").write_text("cache")
    plan_inputs._content_key.clear()
    assert plan_inputs.content_key(str(tmp_path)) == key
    (tmp_path / "roles/t.yml").write_text("b")
    plan_inputs._content_key.clear()
    assert plan_inputs.content_key(str(tmp_path)) != key


def test_spec_names_every_unit_and_the_seal():
    plan = plan_and_inputs()
    spec = rerun.fingerprint_spec(plan, "n2")
    layout = plan["layout"]
    # The seal and the check stamps are bookkeeping, not drift.
    assert spec["path"] == layout["files"]["rerun_seal"] and spec["exclude"] == [layout["config_dir"] + "/checked"]
    assert spec["path"].startswith(spec["exclude"][0] + "/")
    assert layout["config_dir"] in spec["trees"] and "/var/lib/sglang/models/m" in spec["trees"]
    # The run-time directories: their own mode and owner.
    assert {layout["data_dir"], layout["ray_temp_dir"], "/var/lib/sglang/models"} <= set(spec["files"])
    assert not spec["rdma"] or plan["rdma"]["mode"] != "off"
    assert {"sglang-server-m.service", "sglang-fence-m.service", "sglang-router.service",
            layout["units"]["ray"] + ".service", "nftables.service", "prometheus-node-exporter.service"} <= set(spec["units"])
    assert spec["nft_tables"][0] == "inet " + layout["nft_table"]
    assert spec["users"] == [plan["nodes"]["n2"]["user"]] and spec["interfaces"] == ["eth0"]


def seal_args(tmp_path, **extra):
    args = dict(path=str(tmp_path / "seal/deploy"), inputs="i1", secrets={"sglang_server_api_key": "s3cret-value"},
                trees=[str(tmp_path / "etc")], exclude=[str(tmp_path / "etc/checked/deploy")],
                files=[str(tmp_path / "cli")], venvs=[str(tmp_path / "venv")])
    args.update(extra)
    return args


def test_module_seals_then_names_what_drifted(module_run, tmp_path):
    root = tree(tmp_path)
    assert module_run("rerun_seal", **seal_args(tmp_path))["drift"] == ["no seal"]
    written = module_run("rerun_seal", state="seal", **seal_args(tmp_path))
    assert written["written"] and not written["changed"] and written["parts"] == 4
    assert oct((tmp_path / "seal/deploy").stat().st_mode & 0o777) == "0o600"
    text = (tmp_path / "seal/deploy").read_text()
    assert "s3cret" not in text and "a=1" not in text
    ok = module_run("rerun_seal", **seal_args(tmp_path))
    assert ok["sealed"] and ok["drift"] == [] and "s3cret" not in json.dumps(ok)
    # Another secret or other inputs: the key differs.
    assert module_run("rerun_seal", **seal_args(tmp_path, secrets={"sglang_server_api_key": "x"}),
                      check=True)["drift"] == ["inputs"]
    assert module_run("rerun_seal", **seal_args(tmp_path, inputs="i2"), check=True)["drift"] == ["inputs"]
    # A drifted file: named in check mode, which keeps the seal; outside it the seal goes.
    edit_mode(root)
    assert module_run("rerun_seal", check=True, **seal_args(tmp_path))["drift"] == ["tree:%s" % root]
    assert (tmp_path / "seal/deploy").exists()
    assert module_run("rerun_seal", **seal_args(tmp_path))["drift"] == ["tree:%s" % root]
    assert not (tmp_path / "seal/deploy").exists()
    # Check mode writes no seal.
    assert not module_run("rerun_seal", state="seal", check=True, **seal_args(tmp_path))["written"]
    assert not (tmp_path / "seal/deploy").exists()


def test_module_refuses_a_table_without_family(module_run, tmp_path):
    got = module_run("rerun_seal", **seal_args(tmp_path, nft_tables=["sglang_ops"]))
    assert got["failed"] and "family name" in got["msg"]


@pytest.mark.parametrize("run_tags, skip_tags, limited, every", [
    (["all"], [], False, True),
    (("all",), ["molecule-notest", "notest"], False, True),  # molecule's: no task of ours has them
    (["all"], ["ray"], False, False),
    (["install"], [], False, False),
    (["all"], [], True, False),
])
def test_every_phase(run_tags, skip_tags, limited, every):
    assert rerun.every_phase(run_tags, skip_tags, plan_inputs.collection_tags(), limited) is every
    assert RerunFilters().filters()["rerun_every_phase"](run_tags, skip_tags, limited) is every


def test_collection_tags_are_read_from_roles_and_playbooks():
    tags = plan_inputs.collection_tags()
    assert {"preflight", "install", "ray", "server", "monitoring", "always", "ray_configure"} <= set(tags)
    assert "molecule-notest" not in tags
