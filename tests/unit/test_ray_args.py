"""`ray start` argv and environment as the unit will run them."""

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_args import (
    ray_environment,
    ray_start_argv,
)


def make_plan(ip="10.0.0.%d", fake=False, ids=None):
    hv = {"n%d" % i: dict(ansible_host=ip % (10 + i), cluster_interface="eth0",
                          cluster_gpus_per_node=4, cluster_gpus_fake=fake,
                          sglang_model_path="m", **({"cluster_gpu_ids": ids} if ids else {}))
          for i in range(2)}
    return build_plan({"g": ["n0", "n1"]}, hv)


def test_head_argv_fixes_every_port_and_hides_dashboard():
    argv = ray_start_argv(make_plan(), "n0", object_store_memory=2**28, temp_dir="/srv/sg/ray")
    assert argv[:3] == ["/opt/sglang/venv/bin/ray", "start", "--head"]
    for flag in ("--port=6379", "--node-ip-address=10.0.0.10", "--node-manager-port=6380",
                 "--object-manager-port=6381", "--runtime-env-agent-port=6382",
                 "--dashboard-agent-grpc-port=6383", "--dashboard-agent-listen-port=6384",
                 "--metrics-export-port=6385", "--min-worker-port=11000", "--max-worker-port=11499",
                 "--num-gpus=4", "--object-store-memory=268435456", "--include-dashboard=false",
                 "--temp-dir=/srv/sg/ray", "--disable-usage-stats", "--ray-client-server-port=10001"):
        assert flag in argv
    assert argv[-1] == "--block"


def test_head_pins_the_autoscaler_metrics_port():
    from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_args import ray_environment
    assert ray_environment(make_plan(), "n0")["AUTOSCALER_METRIC_PORT"] == "6386"
    assert "AUTOSCALER_METRIC_PORT" not in ray_environment(make_plan(), "n1")


def test_worker_joins_head_with_own_ip():
    argv = ray_start_argv(make_plan(), "n1", temp_dir="/x", extra_args=["--num-cpus=2"])
    assert "--address=10.0.0.10:6379" in argv and "--node-ip-address=10.0.0.11" in argv
    assert "--head" not in argv and not any(a.startswith("--temp-dir") for a in argv)
    assert "--num-cpus=2" in argv and not any(a.startswith("--object-store") for a in argv)
    assert not any(a.startswith("--ray-client-server-port") for a in argv)


def test_ipv6_head_address_bracketed():
    argv = ray_start_argv(make_plan(ip="fd00::%d"), "n1")
    assert "--address=[fd00::10]:6379" in argv and "--node-ip-address=fd00::11" in argv


def test_environment_gpu_subset():
    env = ray_environment(make_plan(ids=[2, 3]), "n0")
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert ray_start_argv(make_plan(ids=[2, 3]), "n0").count("--num-gpus=2") == 1


def test_rank_resources_and_dashboard_loopback_only():
    plan = make_plan()
    argv = ray_start_argv(plan, "n1")
    assert '--resources={"sglang_group_g":1,"sglang_rank_g_1":1}' in argv
    head = ray_start_argv(plan, "n0", dashboard=True)
    assert "--dashboard-host=127.0.0.1" in head and "--dashboard-port=8265" in head
    assert "--include-dashboard=false" in ray_start_argv(plan, "n0")
    assert not any(a.startswith("--dashboard-host") for a in ray_start_argv(plan, "n1", dashboard=True))


def test_token_auth_environment_points_at_the_file():
    env = ray_environment(make_plan(), "n0", auth_token_path="/etc/sglang/ray-auth-token", gcs_reconnect_timeout=30)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == "/etc/sglang/ray-auth-token"
    assert "RAY_AUTH_TOKEN" not in env  # the token itself never enters the unit
    assert env["RAY_gcs_rpc_server_reconnect_timeout_s"] == "30"
    assert "RAY_AUTH_MODE" not in ray_environment(make_plan(), "n0")
