"""`ray start` command lines and environment for one node, derived from the cluster plan.

Why this exists: Ray's defaults pick random ports (no firewall can allow them) and guess the
node IP (wrong on multi-homed servers). Every flag here comes from the plan, so the unit
template only prints a list, and the list is unit-tested.
"""

from __future__ import annotations

import json

# plan port key -> `ray start` flag; the GCS port is --port on the head only.
PORT_FLAGS = (
    ("ray_node_manager_port", "--node-manager-port"),
    ("ray_object_manager_port", "--object-manager-port"),
    ("ray_runtime_env_agent_port", "--runtime-env-agent-port"),
    ("ray_dashboard_agent_grpc_port", "--dashboard-agent-grpc-port"),
    ("ray_dashboard_agent_listen_port", "--dashboard-agent-listen-port"),
    ("ray_metrics_export_port", "--metrics-export-port"),
    ("ray_min_worker_port", "--min-worker-port"),
    ("ray_max_worker_port", "--max-worker-port"),
)


def node_resources(plan, host):
    """Custom Ray resources naming the node's place in the plan, so actors can be pinned to
    `sglang_rank_<group>_<rank>` or `sglang_group_<group>`."""
    node = plan["nodes"][host]
    return {"sglang_group_%s" % node["group"]: 1,
            "sglang_rank_%s_%d" % (node["group"], node["node_rank"]): 1}


def ray_start_argv(plan, host, object_store_memory=None, temp_dir=None, extra_args=(), dashboard=False):
    """The argv of `ray start --block` for `host` (head or worker)."""
    node = plan["nodes"][host]
    ports = node["ports"]
    argv = ["%s/bin/ray" % node["venv_dir"].rstrip("/"), "start"]
    if node["is_ray_head"]:
        argv += ["--head", "--port=%d" % ports["ray_gcs_port"]]
        # Ray starts its client server whenever grpcio is importable (SGLang's venv has it).
        argv += ["--ray-client-server-port=%d" % ports["ray_client_server_port"]]
        # The dashboard and job API allow remote code execution (ShadowRay): off, or loopback only.
        argv += (["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                  "--dashboard-port=%d" % ports["ray_dashboard_port"]] if dashboard
                 else ["--include-dashboard=false"])
    else:
        argv += ["--address=%s" % plan["ray"]["gcs_address"]]
    argv += ["--node-ip-address=%s" % node["cluster_ip"]]
    argv += ["%s=%d" % (flag, ports[key]) for key, flag in PORT_FLAGS]
    argv += ["--num-gpus=%d" % node["num_gpus"]]
    argv += ["--resources=%s" % json.dumps(node_resources(plan, host), sort_keys=True, separators=(",", ":"))]
    if object_store_memory:
        argv += ["--object-store-memory=%d" % int(object_store_memory)]
    if temp_dir and node["is_ray_head"]:  # workers inherit the head's temp dir setting
        argv += ["--temp-dir=%s" % temp_dir]
    argv += list(extra_args)
    argv += ["--disable-usage-stats", "--block"]
    return argv


def ray_environment(plan, host, auth_token_path=None, gcs_reconnect_timeout=None):
    """Environment of the Ray unit: which GPUs Ray may hand out, token authentication (the
    token itself stays in its 0600 file), no phoning home."""
    node = plan["nodes"][host]
    env = {
        "CUDA_VISIBLE_DEVICES": node["cuda_visible_devices"],
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray drains 30 s on SIGTERM by default; the unit's own stop handles draining.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    if node["is_ray_head"]:
        # The autoscaler's metrics server (started where prometheus_client is installed) would
        # take a fixed port inside the ephemeral range; give it the planned one.
        env["AUTOSCALER_METRIC_PORT"] = str(node["ports"]["ray_autoscaler_metrics_port"])
    if auth_token_path:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=auth_token_path)
    # Mutual TLS on Ray's gRPC (plan.ray.tls): paths of the cluster user's 0600 PEM files.
    env.update(plan["ray"].get("tls_env") or {})
    if gcs_reconnect_timeout:
        # How long a raylet waits for a lost GCS before it exits (and systemd restarts it).
        env["RAY_gcs_rpc_server_reconnect_timeout_s"] = str(int(gcs_reconnect_timeout))
    return env
