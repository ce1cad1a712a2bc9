"""`ray start` command lines and environment for one node, derived from the cluster plan.

Why this exists: Ray's defaults pick random ports (no firewall can allow them) and guess the
node IP (wrong on multi-homed servers). Every flag here comes from the plan, so the unit
template only prints a list, and the list is unit-tested.
"""

from __future__ import annotations

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


def ray_start_argv(plan, host, object_store_memory=None, temp_dir=None, extra_args=()):
    """The argv of `ray start --block` for `host` (head or worker)."""
    node = plan["nodes"][host]
    ports = node["ports"]
    argv = ["%s/bin/ray" % node["venv_dir"].rstrip("/"), "start"]
    if node["is_ray_head"]:
        argv += ["--head", "--port=%d" % ports["ray_gcs_port"],
                 # The dashboard has no authentication (ShadowRay): loopback only.
                 "--include-dashboard=false"]
    else:
        argv += ["--address=%s" % plan["ray"]["gcs_address"]]
    argv += ["--node-ip-address=%s" % node["cluster_ip"]]
    argv += ["%s=%d" % (flag, ports[key]) for key, flag in PORT_FLAGS]
    argv += ["--num-gpus=%d" % node["num_gpus"]]
    if object_store_memory:
        argv += ["--object-store-memory=%d" % int(object_store_memory)]
    if temp_dir and node["is_ray_head"]:  # workers inherit the head's temp dir setting
        argv += ["--temp-dir=%s" % temp_dir]
    argv += list(extra_args)
    argv += ["--disable-usage-stats", "--block"]
    return argv


def ray_environment(plan, host):
    """Environment of the Ray unit: which GPUs Ray may hand out, and no phoning home."""
    node = plan["nodes"][host]
    return {
        "CUDA_VISIBLE_DEVICES": node["cuda_visible_devices"],
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray drains 30 s on SIGTERM by default; the unit's own stop handles draining.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
