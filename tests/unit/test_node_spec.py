"""The plan's layout and each node's decisions (module_utils/node_spec.py), as the roles read them."""

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import PlanError, build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.node_spec import node_spec


def plan_of(groups=None, fake=False, ip="10.0.0.%d", **extra):
    groups = groups or {"llama": 2}
    hv, model_groups, n = {}, {}, 0
    for g, count in groups.items():
        model_groups[g] = []
        for _node in range(count):
            host = "n%d" % n
            hv[host] = dict(ansible_host=ip % (10 + n), cluster_interface="eth0", cluster_gpus_per_node=4,
                            cluster_gpus_fake=fake, sglang_model_path="/models/m", **extra)
            if len(groups) > 1:
                hv[host].update(sglang_port=30000 + len(model_groups), sglang_dist_init_port=20000 + 200 * len(model_groups))
            model_groups[g].append(host)
            n += 1
    return build_plan(model_groups, hv, list(hv))


def test_default_layout():
    lay = plan_of()["layout"]
    assert (lay["data_dir"], lay["config_dir"], lay["venv_dir"]) == ("/var/lib/sglang", "/etc/sglang", "/opt/sglang/venv")
    assert lay["units"]["ray"] == "sglang-ray" and lay["files"]["ray_cli"] == "/usr/local/bin/sglang-ray"
    assert lay["units"]["servers"] == {"llama": "sglang-server-llama"}
    assert lay["units"]["fences"] == {"llama": "sglang-fence-llama"}
    assert lay["files"]["fence_secrets"] == {"llama": "/etc/sglang/sglang-fence-llama.secret"}
    assert lay["files"]["ray_token"] == "/etc/sglang/ray-auth-token"
    assert lay["ray_temp_dir"] == "/var/lib/sglang/ray" and lay["hf_home"] == "/var/lib/sglang/hf"


def test_layout_follows_the_inventory():
    lay = plan_of(sglang_data_dir="/data/sg", cluster_config_dir="/etc/sg", ray_unit_name="ray-prod",
                  cluster_libexec_dir="/opt/sgops")["layout"]
    assert lay["units"]["ray"] == "ray-prod" and lay["files"]["ray_cli"] == "/usr/local/bin/ray-prod"
    assert lay["files"]["hf_token"] == "/etc/sg/hf-token" and lay["files"]["firewall_rules"] == "/etc/sg/firewall.nft"
    assert lay["files"]["launcher"] == "/opt/sgops/sglang-launch.py" and lay["ray_temp_dir"] == "/data/sg/ray"
    assert lay["ansible_tmp_dirs"] == ["/data/sg/.ansible", "/data/sg/.ansible/tmp"]


@pytest.mark.parametrize("extra, host, files", [
    ({}, "n1", ["/etc/sglang/sglang-server-llama.env", "/etc/sglang/sglang-router.env"]),
    ({"cluster_config_dir": "/etc/sg"}, "n0", ["/etc/sg/sglang-server-llama.env", "/etc/sg/sglang-router.env"]),
])
def test_legacy_env_files_follow_the_layout(extra, host, files):
    # The per-unit EnvironmentFiles that held the API key before credentials: removed on upgrade.
    assert node_spec(plan_of(**extra), host)["legacy_env_files"] == files


def test_legacy_env_files_name_each_nodes_group():
    plan = plan_of({"a": 1, "b": 1})
    assert [node_spec(plan, h)["legacy_env_files"][0] for h in ("n0", "n1")] == [
        "/etc/sglang/sglang-server-a.env", "/etc/sglang/sglang-server-b.env"]


@pytest.mark.parametrize("key, value", [
    ("sglang_data_dir", "var/lib/sglang"),          # relative
    ("sglang_data_dir", "/var/lib/../sglang"),      # not normalized
    ("sglang_data_dir", "/var/lib/sglang/"),        # not normalized
    ("sglang_data_dir", "/var/lib"),                # a system directory
    ("cluster_config_dir", "/etc"),
    ("cluster_config_dir", "/etc/sg lang"),         # a space reaches unit files
    ("cluster_venv_dir", "/usr"),
    ("cluster_libexec_dir", "/usr/local/lib/x;rm"),
    ("ray_unit_name", "sglang ray"),
    ("ray_unit_name", "sglang-ray\n"),              # `$` would let a trailing newline pass
    ("ray_unit_name", "sglang-ray.service/x"),
])
def test_layout_refusals(key, value):
    with pytest.raises(PlanError) as err:
        plan_of(**{key: value})
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("n0: %s: " % key) and "Fix: " in err.value.problems[0]


def test_group_name_becomes_a_unit_name():
    with pytest.raises(PlanError) as err:
        plan_of(groups={"llama 70b": 2})
    assert err.value.problems[0].startswith("llama 70b: groups: ") and "Fix: rename the group" in err.value.problems[0]


@pytest.mark.parametrize("fake, setting, start, backend", [
    (True, "auto", False, "gloo"),
    (False, "auto", True, "nccl"),
    (True, "always", True, "gloo"),
    (False, "never", False, "nccl"),
])
def test_start_and_collective_decisions(fake, setting, start, backend):
    spec = node_spec(plan_of(fake=fake), "n1", {"server_start": setting})
    assert spec["start"]["start"] is start and spec["router_start"] is start
    assert spec["collective"] == {"venv_dir": "/opt/sglang/venv", "rank": 1, "world_size": 2, "master_addr": "10.0.0.10",
                                  "master_port": 20000, "interface": "eth0", "backend": backend,
                                  "cuda_visible_devices": "0,1,2,3"}


def test_router_waits_for_every_group():
    plan = plan_of(groups={"a": 1, "b": 1}, sglang_router=True)
    plan["nodes"]["n1"]["gpus_fake"] = True  # group b cannot serve
    spec = node_spec(plan, "n0")
    assert spec["servers"]["a"]["start"] and not spec["servers"]["b"]["start"]
    assert spec["is_router"] and not spec["router_start"]


@pytest.mark.parametrize("groups, backend, fence, fenced", [
    ({"llama": 2}, "native", True, True),
    ({"llama": 2}, "native", False, False),
    ({"llama": 1}, "native", True, False),   # one rank: nothing to share fate with
    ({"llama": 2}, "ray", True, False),      # Ray supervises its own actors
])
def test_fence_decision(groups, backend, fence, fenced):
    spec = node_spec(plan_of(groups=groups, sglang_backend=backend), "n0", {"fence": fence, "server": {}})
    assert spec["fenced"] is fenced
    assert bool(spec["fence_argv"]) is fenced
    if fenced:  # the unit's IPAddressAllow= and LoadCredential=: the members and the group's key
        assert spec["fence_unit_spec"] == {"members": [plan_of()["nodes"]["n0"]["cluster_ip"], plan_of()["nodes"]["n1"]["cluster_ip"]],
                                           "key_file": "/etc/sglang/sglang-fence-llama.secret"}
    else:
        assert spec["fence_unit_spec"] is None


def test_node_without_a_unit_has_no_fence():
    """The Ray backend runs one unit on rank 0: the other node has neither unit nor fence."""
    spec = node_spec(plan_of(sglang_backend="ray"), "n1", {"server": {}})
    assert spec["server"] is None and not spec["fenced"] and spec["fence_argv"] == []


def test_mesh_args_name_every_peer():
    spec = node_spec(plan_of(groups={"a": 2, "b": 1}), "n0")
    assert spec["mesh"]["address"] == "10.0.0.10"
    assert [p["host"] for p in spec["mesh"]["peers"]] == ["n1", "n2"]
    assert 6379 in spec["mesh"]["ports"] and 8265 not in spec["mesh"]["ports"]


@pytest.mark.parametrize("ip, url", [("10.0.0.%d", "http://127.0.0.1:30000"), ("fd00::%d", "http://[::1]:30000")])
def test_local_url_follows_the_family(ip, url):
    spec = node_spec(plan_of(ip=ip), "n0")
    assert spec["group"]["local_url"] == url and spec["rank0"]


def test_proxy_env_reaches_downloads_but_not_the_cluster():
    plan = plan_of(cluster_http_proxy="http://10.89.0.1:3128", cluster_https_proxy="http://10.89.0.1:3128",
                   cluster_no_proxy=["mirror.local"])
    env = plan["proxy_env"]
    assert env["http_proxy"] == env["HTTPS_PROXY"] == "http://10.89.0.1:3128"
    assert env["no_proxy"].split(",") == ["localhost", "127.0.0.1", "::1", "10.0.0.10", "10.0.0.11", "mirror.local"]
    assert plan_of()["proxy_env"] == {}


@pytest.mark.parametrize("key, value", [
    ("cluster_http_proxy", "proxy:3128"),
    ("cluster_https_proxy", "http://proxy:3128\nX: y"),
    ("cluster_https_proxy", "http://proxy :3128"),
    ("cluster_https_proxy", "http://user:secret@proxy:3128"),
    ("cluster_https_proxy", "http://user:sec ret@proxy:3128"),
    ("cluster_no_proxy", "mirror.local"),
    ("cluster_no_proxy", ["a b"]),
])
def test_proxy_refusals(key, value):
    with pytest.raises(PlanError) as err:
        plan_of(**{key: value})
    assert err.value.problems[0].startswith("n0: %s: " % key)
    assert "secret" not in err.value.problems[0] and "sec ret" not in err.value.problems[0]


def test_rank0_fence_may_reach_loopback_only_when_it_probes():
    """IPAddressDeny=any would block rank 0's probe of its own /health_generate."""
    health = {"fence_health": {"interval": 10, "failures": 3}, "server": {}}
    assert node_spec(plan_of(), "n0", health)["fence_unit_spec"]["members"][-1] == "localhost"
    assert "localhost" not in node_spec(plan_of(), "n1", health)["fence_unit_spec"]["members"]
    assert "localhost" not in node_spec(plan_of(), "n0", {"server": {}})["fence_unit_spec"]["members"]
