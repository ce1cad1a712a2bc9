"""Each node's launch_server argv and environment, built from the cluster plan."""

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.server import (
    ServerConfigError, credential_files, fence_argv, group_units, router_unit, router_validation_argv, start_decision,
    validation_argv)

LAUNCHER = "/usr/local/lib/sglang-ops/sglang-launch.py"
OPTS = {}


def plan_for(nodes=2, gpus=8, ip="10.0.0.%d", groups=None, **group_vars):
    groups = groups or {"llama": nodes}
    hv, model_groups, n = {}, {}, 0
    for name, count in groups.items():
        model_groups[name] = []
        for _node in range(count):
            host = "gpu%d" % n
            hv[host] = dict(ansible_host=ip % (10 + n), cluster_interface="ib0", cluster_gpus_per_node=gpus,
                            **dict({"sglang_model_path": "/models/m"}, **group_vars))
            if len(groups) > 1:
                hv[host]["sglang_port"] = 30000 + len(model_groups)
                hv[host]["sglang_dist_init_port"] = 20000 + 200 * len(model_groups)
            model_groups[name].append(host)
            n += 1
    return build_plan(model_groups, hv, list(hv))


def flag(argv, name):
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("nodes, gpus, tp", [(2, 8, 16), (4, 8, 32), (8, 4, 32)])
def test_native_ranks_share_everything_but_rank(nodes, gpus, tp):
    units = group_units(plan_for(nodes, gpus), "llama", OPTS)
    assert sorted(u["rank"] for u in units.values()) == list(range(nodes))
    for host, unit in units.items():
        argv = unit["argv"]
        assert argv[:2] == ["/opt/sglang/venv/bin/python", LAUNCHER]
        assert flag(argv, "--model-path") == "/models/m"
        assert (flag(argv, "--tp-size"), flag(argv, "--nnodes")) == (str(tp), str(nodes))
        assert flag(argv, "--node-rank") == str(unit["rank"])
        assert flag(argv, "--dist-init-addr") == "10.0.0.10:20000"
        assert (flag(argv, "--host"), flag(argv, "--port")) == ("0.0.0.0", "30000")
        assert "--pp-size" not in argv and "--dp-size" not in argv and "--use-ray" not in argv
        env = unit["env"]
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "ib0"
        assert env["SGLANG_HOST_IP"] == "10.0.0.%d" % (10 + int(host[3:]))
        assert env["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, range(gpus)))
        assert unit["unit"] == "sglang-server-llama"
    assert len({tuple(u["argv"][:u["argv"].index("--node-rank")]) for u in units.values()}) == 1


def test_ipv6_brackets_and_listens_on_v6():
    units = group_units(plan_for(ip="fd00::%d"), "llama", OPTS)
    argv = units["gpu1"]["argv"]
    assert flag(argv, "--dist-init-addr") == "[fd00::10]:20000"
    assert flag(argv, "--host") == "::"
    assert units["gpu1"]["env"]["SGLANG_HOST_IP"] == "fd00::11"


def test_pipeline_parallel_uses_the_unambiguous_flag():
    argv = group_units(plan_for(4, 8, sglang_pp=2), "llama", OPTS)["gpu0"]["argv"]
    assert (flag(argv, "--tp-size"), flag(argv, "--pp-size")) == ("16", "2")
    assert "--pp" not in argv  # ambiguous in SGLang 0.5.x


def test_dp_attention_across_nodes():
    argv = group_units(plan_for(2, 8, sglang_dp=4, sglang_enable_dp_attention=True), "llama", OPTS)["gpu0"]["argv"]
    # SGLang 0.5.23's spelling: --attn-dp-size alone (it refuses --dp-size beside it, and
    # --enable-dp-attention is deprecated).
    assert flag(argv, "--attn-dp-size") == "4"
    assert "--dp-size" not in argv and "--enable-dp-attention" not in argv


def test_single_node_group_has_no_rendezvous():
    argv = group_units(plan_for(1, 8), "llama", OPTS)["gpu0"]["argv"]
    assert "--nnodes" not in argv and "--dist-init-addr" not in argv and "--node-rank" not in argv


def test_extra_args_and_env_appended():
    plan = plan_for(sglang_extra_args=["--load-format", "dummy", "--mem-fraction-static=0.8"])
    units = group_units(plan, "llama", dict(OPTS, env={"NCCL_NET_GDR_LEVEL": "PHB"}, nccl_debug="INFO",
                                            hf_offline=True, host="10.0.0.10"))
    argv, env = units["gpu0"]["argv"], units["gpu0"]["env"]
    assert argv[-3:] == ["--load-format", "dummy", "--mem-fraction-static=0.8"]
    assert flag(argv, "--host") == "10.0.0.10"
    assert env["NCCL_NET_GDR_LEVEL"] == "PHB" and env["NCCL_DEBUG"] == "INFO" and env["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("env, message", [
    ({"CUDA_VISIBLE_DEVICES": "0"}, "set by the cluster plan"),
    ({"CREDENTIALS_DIRECTORY": "/tmp/x"}, "set by the cluster plan"),
    ({"BAD-NAME": "1"}, "not a variable name"),
    (["A=1"], "not a mapping"),
])
def test_env_refusals(env, message):
    with pytest.raises(ServerConfigError, match=message):
        group_units(plan_for(), "llama", dict(OPTS, env=env))


@pytest.mark.parametrize("secrets, server, router", [
    ({}, [], []),
    ({"_api_key_set": True}, [["api_key", "/etc/sglang/api-key"]], [["api_key", "/etc/sglang/api-key"]]),
    ({"_api_key_set": True, "_admin_api_key_set": True},
     [["api_key", "/etc/sglang/api-key"], ["admin_api_key", "/etc/sglang/admin-api-key"]],
     [["api_key", "/etc/sglang/api-key"], ["admin_api_key", "/etc/sglang/admin-api-key"]]),
    ({"_admin_api_key_set": True}, [["admin_api_key", "/etc/sglang/admin-api-key"]],
     [["admin_api_key", "/etc/sglang/admin-api-key"]]),
    # HTTPS: the certificate and key for both; the router also the CA it checks HTTPS workers with.
    ({"_tls_api_set": True, "cluster_tls_ca": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"},
     [["tls_cert", "/etc/sglang/tls-cert.pem"], ["tls_key", "/etc/sglang/tls-key.pem"]],
     [["tls_cert", "/etc/sglang/tls-cert.pem"], ["tls_key", "/etc/sglang/tls-key.pem"],
      ["tls_ca", "/etc/sglang/tls-ca.pem"]]),
])
def test_secrets_are_credentials_never_argv_or_environment(secrets, server, router):
    """The units get each secret set on the node as a credential; argv and env carry none."""
    plan = plan_for(sglang_router=True, **secrets)
    for unit in group_units(plan, "llama", dict(OPTS, env={"FOO": "bar"})).values():
        assert unit["credentials"] == server
        assert not any("api-key" in a or "sk-" in a for a in unit["argv"])
        assert not any("KEY" in k for k in unit["env"])
        # Root copies each file, 0400 for the service user, into the unit's own tmpfs directory.
        assert unit["credentials_stage"] == [["/usr/bin/install", "-m", "0400", "-o", "sglang", "-g", "sglang", src,
                                              "/run/sglang-server-llama/" + cid] for cid, src in server]
        assert unit["env"].get("CREDENTIALS_DIRECTORY") == ("/run/sglang-server-llama" if server else None)
    unit = router_unit(plan, OPTS)["gpu0"]
    assert unit["credentials"] == router and not any("api-key" in a for a in unit["argv"])
    assert unit["credentials_dir"] == ("/run/sglang-router" if router else None)


def test_amd_nodes_get_hip_visible_devices():
    env = group_units(plan_for(), "llama", dict(OPTS, gpu_vendor="amd"))["gpu0"]["env"]
    assert env["HIP_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"


def test_ray_backend_one_unit_on_the_head():
    plan = plan_for(2, 8, sglang_backend="ray")
    units = group_units(plan, "llama", dict(OPTS, ray_auth=True))
    assert list(units) == ["gpu0"]
    argv, env = units["gpu0"]["argv"], units["gpu0"]["env"]
    assert "--use-ray" in argv and flag(argv, "--nnodes") == "2" and flag(argv, "--tp-size") == "16"
    assert "--node-rank" not in argv and "--dist-init-addr" not in argv
    assert env["RAY_ADDRESS"] == "10.0.0.10:6379" and env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == plan["layout"]["files"]["ray_token"] == "/etc/sglang/ray-auth-token"
    assert "RAY_AUTH_MODE" not in group_units(plan, "llama", OPTS)["gpu0"]["env"]


def test_ray_backend_refuses_shared_cluster():
    plan = plan_for(groups={"a": 2, "b": 2}, sglang_backend="ray")
    with pytest.raises(ServerConfigError, match="cluster of its own"):
        group_units(plan, "a", OPTS)


def test_two_groups_have_their_own_ports_and_rendezvous():
    plan = plan_for(groups={"a": 2, "b": 2})
    a, b = group_units(plan, "a", OPTS), group_units(plan, "b", OPTS)
    assert set(a) == {"gpu0", "gpu1"} and set(b) == {"gpu2", "gpu3"}
    assert flag(a["gpu1"]["argv"], "--dist-init-addr") == "10.0.0.10:20200"
    assert flag(b["gpu3"]["argv"], "--dist-init-addr") == "10.0.0.12:20400"
    assert flag(a["gpu0"]["argv"], "--port") != flag(b["gpu2"]["argv"], "--port")
    assert a["gpu0"]["unit"] == "sglang-server-a" and b["gpu2"]["unit"] == "sglang-server-b"


def test_validation_argv_names_a_device_unless_set():
    argv = ["/v/bin/python", LAUNCHER, "--model-path", "/m"]
    assert validation_argv(argv, LAUNCHER) == ["/v/bin/python", LAUNCHER, "--validate", "--model-path", "/m",
                                               "--device", "cuda"]
    assert validation_argv(argv + ["--device=npu"], LAUNCHER)[-1] == "--device=npu"


def test_start_decision():
    plan = plan_for(sglang_tp=16)
    assert start_decision(plan, "llama", "auto") == (True, "GPUs present")
    for node in plan["nodes"].values():
        node["gpus_fake"] = True
    start, reason = start_decision(plan, "llama", "auto")
    assert not start and "no GPU" in reason and "gpu0, gpu1" in reason
    assert start_decision(plan, "llama", "always")[0] is True
    assert start_decision(plan, "llama", "never")[0] is False
    with pytest.raises(ServerConfigError, match="auto, always or never"):
        start_decision(plan, "llama", "yes")


def test_fence_argv_rank0_coordinates():
    plan = plan_for()
    r0 = fence_argv(plan, "llama", "gpu0")
    r1 = fence_argv(plan, "llama", "gpu1")
    assert r0[1] == r1[1] == "/usr/local/lib/sglang-ops/fence.py"
    assert flag(r0, "--coordinator") == flag(r1, "--coordinator") == "10.0.0.10:20100"
    assert flag(r0, "--listen") == "10.0.0.10:20100" and "--listen" not in r1
    assert flag(r1, "--unit") == "sglang-server-llama.service" and flag(r1, "--rank") == "1"
    assert flag(fence_argv(plan_for(ip="fd00::%d"), "llama", "gpu1"), "--coordinator") == "[fd00::10]:20100"
    # Every rank's planned address, rank 0 first; the key only by its file.
    assert [r1[i + 1] for i, a in enumerate(r1) if a == "--member"] == ["0=10.0.0.10", "1=10.0.0.11"]
    assert flag(r1, "--key-file") == "/etc/sglang/sglang-fence-llama.secret"


def test_sglang_timeouts_from_the_plan_and_the_hang_probe_on_rank0_only():
    plan = plan_for(sglang_watchdog_timeout=600, sglang_dist_timeout=1800)
    argv = group_units(plan, "llama", OPTS)["gpu1"]["argv"]
    assert flag(argv, "--watchdog-timeout") == "600" and flag(argv, "--dist-timeout") == "1800"
    assert "--watchdog-timeout" not in group_units(plan_for(), "llama", OPTS)["gpu0"]["argv"]  # SGLang's default
    health = {"interval": 10, "failures": 3}
    r0 = fence_argv(plan, "llama", "gpu0", health=health)
    assert flag(r0, "--health-url") == "http://127.0.0.1:30000/health_generate"
    assert flag(r0, "--health-interval") == "10" and flag(r0, "--health-failures") == "3"
    assert "--health-url" not in fence_argv(plan, "llama", "gpu1", health=health)
    assert "--health-url" not in fence_argv(plan, "llama", "gpu0", health={"interval": 10, "failures": 0})
    assert "--health-ca" not in r0
    # An HTTPS API: the probe trusts the cluster's CA (the same file the server's credentials use).
    plan["groups"]["llama"].update(scheme="https", local_url="https://10.0.0.10:30000")
    r0 = fence_argv(plan, "llama", "gpu0", health=health)
    assert flag(r0, "--health-url") == "https://10.0.0.10:30000/health_generate"
    assert flag(r0, "--health-ca") == plan["layout"]["credentials"]["tls_ca"]


def test_router_fronts_every_rank0_and_never_carries_the_key():
    plan = plan_for(groups={"a": 2, "b": 2}, sglang_router=True)
    units = router_unit(plan, dict(OPTS, router_policy="round_robin", router_args=["--log-level", "info"]))
    assert list(units) == ["gpu0"]
    argv = units["gpu0"]["argv"]
    assert argv[:4] == ["/opt/sglang/venv/bin/python", LAUNCHER, "--router", "--worker-urls"]
    assert argv[4:6] == ["http://10.0.0.10:30001", "http://10.0.0.12:30002"]
    assert flag(argv, "--port") == "30080" and flag(argv, "--policy") == "round_robin"
    assert argv[-2:] == ["--log-level", "info"] and not any("api-key" in a for a in argv)
    assert router_validation_argv(argv, LAUNCHER)[2:4] == ["--validate", "--router"]
    assert router_unit(plan_for(), OPTS) == {}


def test_router_ipv6_workers_bracketed():
    units = group_units(plan_for(ip="fd00::%d"), "llama", OPTS)
    assert units  # the group itself renders
    plan = plan_for(ip="fd00::%d", sglang_router=True)
    argv = router_unit(plan, OPTS)["gpu0"]["argv"]
    assert "http://[fd00::10]:30000" in argv and flag(argv, "--host") == "::"


@pytest.mark.parametrize("model, revision, want", [
    ("meta-llama/Llama-3.1-8B-Instruct", "0123456789abcdef0123456789abcdef01234567",
     ["--revision", "0123456789abcdef0123456789abcdef01234567"]),
    ("meta-llama/Llama-3.1-8B-Instruct", "", []),
    # A local directory: the files are what they are (prefetched at the revision, or copied).
    ("/models/m", "0123456789abcdef0123456789abcdef01234567", []),
])
def test_hub_model_pinned_to_its_revision(model, revision, want):
    plan = plan_for(sglang_model_path=model, sglang_model_revision=revision)
    for unit in group_units(plan, "llama", OPTS).values():
        argv = unit["argv"]
        assert (argv[argv.index("--revision"):argv.index("--revision") + 2] == want) if want \
            else "--revision" not in argv


@pytest.mark.parametrize("secrets, legacy, write, absent", [
    ({"api_key": "k", "tls_key": ""}, [], {"/c/api-key": "k"}, ["/c/tls-key.pem"]),
    ({"api_key": "", "tls_key": ""}, ["/c/u.env"], {}, ["/c/api-key", "/c/tls-key.pem", "/c/u.env"]),
    ({}, [], {}, []),
])
def test_credential_files(secrets, legacy, write, absent):
    credentials = {"api_key": "/c/api-key", "tls_key": "/c/tls-key.pem"}
    assert credential_files(secrets, credentials, legacy) == {"write": write, "absent": absent}


def test_a_credential_without_a_path_is_refused():
    with pytest.raises(ValueError, match="no credential path in the plan's layout for hf_token"):
        credential_files({"hf_token": "x"}, {"api_key": "/c/api-key"})
