"""Each node's `sglang.launch_server` command and environment, from the cluster plan.

Why this exists: the command lines of a multi-node group must agree (model, tp, nnodes,
dist-init address) and differ only where they must (node rank, interface IP). Building them in
one tested function, from the same plan that ranks the nodes, keeps Jinja out of it. SGLang's
own parser then checks the result on the node before a unit is started.
"""

from __future__ import annotations

import re

from ansible_collections.sglang_ops.cluster.plugins.module_utils import rdma
from ansible_collections.sglang_ops.cluster.plugins.module_utils.metrics import FENCE_METRICS_FILE
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import (
    BACKENDS,
    LEGACY_ENV_SUFFIX,
    format_hostport,
)

# Variables the plan owns; sglang_server_env may not override them.
MANAGED_ENV = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "SGLANG_HOST_IP", "CUDA_VISIBLE_DEVICES",
               "HIP_VISIBLE_DEVICES", "HF_HOME", "RAY_ADDRESS", "CREDENTIALS_DIRECTORY") + rdma.NCCL_IB_ENV
# The secrets the server and the router take as credentials (ids of the plan's
# layout.credentials), in the order the units list them.
SERVER_CREDENTIALS = ("api_key", "admin_api_key", "tls_cert", "tls_key")
INSTALL = "/usr/bin/install"
ROUTER_CREDENTIALS = ("api_key", "admin_api_key", "tls_cert", "tls_key", "tls_ca")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class ServerConfigError(ValueError):
    """A setting the builder refuses, naming the variable and the fix."""


def unit_name(plan, group):
    return plan["layout"]["units"]["servers"][group]


def fence_unit_name(plan, group):
    return plan["layout"]["units"]["fences"][group]


def legacy_env_files(plan, group):
    """The EnvironmentFiles earlier versions kept the API key in, one per unit (group's server,
    router): removed on upgrade, wherever the node runs."""
    layout = plan["layout"]
    return ["%s/%s%s" % (layout["config_dir"], unit, LEGACY_ENV_SUFFIX)
            for unit in (unit_name(plan, group), layout["units"]["router"])]


def venv_python(venv_dir):
    """The venv's interpreter (also the remote interpreter of the modules run in it)."""
    return "%s/bin/python" % venv_dir.rstrip("/")


def listen_host(plan, host_setting=""):
    """`--host`: the operator's choice, else every address of the cluster's family."""
    if host_setting:
        return host_setting
    return "::" if plan.get("ip_version") == 6 else "0.0.0.0"


def _parallel_args(group):
    args = ["--tp-size", str(group["tp"])]
    if group.get("pp", 1) > 1:
        # `--pp` is ambiguous in SGLang 0.5.x (--pp-size, --pp-max-micro-batch-size, ...).
        args += ["--pp-size", str(group["pp"])]
    if group.get("attn_dp_size", 1) > 1:
        # SGLang 0.5.23's spelling of DP attention (`--dp-size N --enable-dp-attention` is
        # deprecated there, and it refuses --dp-size beside --attn-dp-size).
        args += ["--attn-dp-size", str(group["attn_dp_size"])]
    elif group.get("dp", 1) > 1:
        args += ["--dp-size", str(group["dp"])]
    if group.get("ep_size", 1) > 1:
        args += ["--ep-size", str(group["ep_size"])]
    if group.get("moe_a2a_backend", "none") != "none":
        args += ["--moe-a2a-backend", group["moe_a2a_backend"]]
    if group.get("enable_eplb"):
        args += ["--enable-eplb"]
        if group.get("ep_num_redundant_experts"):
            args += ["--ep-num-redundant-experts", str(group["ep_num_redundant_experts"])]
    return args


def _pd_args(plan, group, host, opts):
    """--disaggregation-* of a prefill or decode group's rank on `host` ([] outside PD).

    The IB devices come from the node's pinned cluster_rdma_devices or its RDMA facts
    (opts["rdma"][host], read by the rdma_info module), nearest NIC per GPU when known.
    """
    if group.get("pd_role", "none") == "none" or not plan.get("pd"):
        return []
    args = ["--disaggregation-mode", group["pd_role"],
            "--disaggregation-transfer-backend", plan["pd"]["transfer_backend"]]
    if group["pd_role"] == "prefill":
        args += ["--disaggregation-bootstrap-port", str(group["bootstrap_port"])]
    facts = (opts.get("rdma") or {}).get(host)
    device = rdma.ib_device_arg(plan["nodes"][host], facts, plan.get("rdma", {}).get("mode", "auto"))
    if device:
        args += ["--disaggregation-ib-device", device]
    return args


def _check_env(extra_env):
    if not isinstance(extra_env, dict):
        raise ServerConfigError("sglang_server_env: %r is not a mapping. Fix: write NAME: value pairs"
                                % (extra_env,))
    for key in extra_env:
        if not ENV_NAME.match(str(key)):
            raise ServerConfigError("sglang_server_env: %r is not a variable name" % (key,))
        if key in MANAGED_ENV:
            raise ServerConfigError("sglang_server_env: %s is set by the cluster plan. Fix: remove it"
                                    % key)


def credentials(plan, host, ids):
    """[[id, file]] of the secrets `host` has among `ids` (0600 root files of the plan's layout)."""
    have = plan["nodes"][host].get("secrets") or {}
    return [[cid, plan["layout"]["credentials"][cid]] for cid in ids if have.get(cid)]


def credential_delivery(plan, host, unit, ids):
    """How a unit gets its secrets: {credentials, dir, stage} ({} entries without secrets).

    systemd's LoadCredential= is the tool for this, but systemd 252 in a container hands over
    nothing (an empty, root-only directory; seen on the podman lab), so the units do the same by
    hand: ExecStartPre=+ (root, before the service's own processes exist) copies each 0600 root
    file, 0400 for the service user, into the unit's RuntimeDirectory (tmpfs, 0700, removed when
    the unit stops); CREDENTIALS_DIRECTORY points the launcher at it, as LoadCredential= would.
    """
    creds = credentials(plan, host, ids)
    user = plan["nodes"][host]["user"]
    directory = "/run/%s" % unit
    return {"credentials": creds, "dir": directory if creds else None,
            "stage": [[INSTALL, "-m", "0400", "-o", user, "-g", user, source, "%s/%s" % (directory, cid)]
                      for cid, source in creds]}


def _with_credentials(unit, delivery):
    unit.update(credentials=delivery["credentials"], credentials_dir=delivery["dir"],
                credentials_stage=delivery["stage"])
    if delivery["dir"]:
        unit["env"]["CREDENTIALS_DIRECTORY"] = delivery["dir"]
    return unit


def node_environment(plan, host, opts):
    """The unit's Environment= (no secrets: those are credentials, see `credentials`)."""
    node = plan["nodes"][host]
    env = {
        "NCCL_SOCKET_IFNAME": node["cluster_interface"],
        "GLOO_SOCKET_IFNAME": node["cluster_interface"],
        "SGLANG_HOST_IP": node["cluster_ip"],
        "HF_HOME": plan["layout"]["hf_home"],
        "PYTHONUNBUFFERED": "1",
    }
    if node.get("cuda_visible_devices"):
        env["CUDA_VISIBLE_DEVICES"] = node["cuda_visible_devices"]
        if opts.get("gpu_vendor") == "amd":
            env["HIP_VISIBLE_DEVICES"] = node["cuda_visible_devices"]
    if opts.get("nccl_debug"):
        env["NCCL_DEBUG"] = opts["nccl_debug"]
    env.update(rdma.nccl_env(node, (opts.get("rdma") or {}).get(host),
                             plan.get("rdma", {}).get("mode", "auto")))
    if opts.get("hf_offline"):
        env["HF_HUB_OFFLINE"] = "1"
    if opts.get("hf_token"):
        env["HF_TOKEN_PATH"] = plan["layout"]["files"]["hf_token"]
    extra = opts.get("env") or {}
    _check_env(extra)
    env.update({str(k): str(v) for k, v in extra.items()})
    return env


def group_units(plan, group_name, opts):
    """{host: {unit, fence_unit, rank, argv, env}} for one model group.

    opts (the role's settings): host (listen address setting), env, nccl_debug, gpu_vendor,
    hf_offline, hf_token (whether a token file exists), ray_auth (the Ray backend's driver then
    reads the cluster's token file). Paths and unit names come from the plan's layout.
    Native: one unit per node, ranks 0..n-1. Ray: one unit on the group's rank 0, which must be
    the Ray head; SGLang places the other schedulers over the Ray cluster's GPUs itself.
    """
    group = plan["groups"][group_name]
    if group["backend"] not in BACKENDS:
        raise ServerConfigError("sglang_backend %r: use one of %s" % (group["backend"], ", ".join(BACKENDS)))
    base = [venv_python(plan["layout"]["venv_dir"]), plan["layout"]["files"]["launcher"], "--model-path", group["model_path"]] + _parallel_args(group)
    if group.get("model_revision") and not group["model_path"].startswith("/"):
        # A hub id SGLang downloads itself: at the pinned revision, not whatever `main` is today.
        base += ["--revision", group["model_revision"]]
    common_tail = ["--host", listen_host(plan, opts.get("host")), "--port", str(group["http_port"])]
    if plan.get("metrics"):
        # /metrics on the HTTP port of every rank (rank 0's API, the other ranks' health server).
        common_tail += ["--enable-metrics"]
    for key, flag in (("watchdog_timeout", "--watchdog-timeout"), ("dist_timeout", "--dist-timeout")):
        if group.get(key) is not None:
            common_tail += [flag, str(group[key])]
    extra = list(group.get("extra_args") or [])
    units = {}
    if group["backend"] == "ray":
        rank0 = group["rank0"]
        if plan["ray"]["head"] != rank0:
            raise ServerConfigError(
                "%s: sglang_backend ray runs one server on the Ray head, but the head is %s and the "
                "group's rank 0 is %s. Fix: put %s in the ray_head group (or first in %s)"
                % (group_name, plan["ray"]["head"], rank0, rank0, group_name))
        others = [g for g, v in plan["groups"].items() if g != group_name]
        if others:
            raise ServerConfigError(
                "%s: sglang_backend ray places its schedulers on any GPU of the Ray cluster, which "
                "also holds the groups %s. Fix: give a Ray-backend group a cluster of its own"
                % (group_name, ", ".join(others)))
        argv = base + ["--nnodes", str(group["nnodes"]), "--use-ray"] + common_tail + extra
        env = node_environment(plan, rank0, opts)
        # The driver joins the cluster of the ray role; it never starts a Ray of its own.
        env["RAY_ADDRESS"] = plan["ray"]["gcs_address"]
        if opts.get("ray_auth"):
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=plan["layout"]["files"]["ray_token"])
        env.update(plan["ray"].get("tls_env") or {})
        units[rank0] = _with_credentials(
            dict(unit=unit_name(plan, group_name), fence_unit=fence_unit_name(plan, group_name), rank=0, argv=argv, env=env),
            credential_delivery(plan, rank0, unit_name(plan, group_name), SERVER_CREDENTIALS))
        return units
    for host in group["hosts"]:
        rank = plan["nodes"][host]["node_rank"]
        argv = list(base) + _pd_args(plan, group, host, opts)
        if group["nnodes"] > 1:
            argv += ["--nnodes", str(group["nnodes"]), "--node-rank", str(rank),
                     "--dist-init-addr", group["dist_init_addr"]]
        argv += common_tail + extra
        units[host] = _with_credentials(
            dict(unit=unit_name(plan, group_name), fence_unit=fence_unit_name(plan, group_name), rank=rank,
                 argv=argv, env=node_environment(plan, host, opts)),
            credential_delivery(plan, host, unit_name(plan, group_name), SERVER_CREDENTIALS))
    return units


def validation_argv(argv, launcher):
    """The launcher's --validate form of a unit's argv.

    SGLang's resolution asks for an accelerator unless a device is named; the check names
    `--device cuda` for that stage only (it touches no GPU), unless the operator set one.
    """
    i = argv.index(launcher)
    rest = argv[i + 1:]
    if not any(a == "--device" or a.startswith("--device=") for a in rest):
        rest = rest + ["--device", "cuda"]
    return argv[:i + 1] + ["--validate"] + rest


def start_decision(plan, group_name, setting):
    """(start?, reason) for the group's units. `auto` starts only where real GPUs were found."""
    if setting == "always":
        return True, "sglang_server_start is always"
    if setting == "never":
        return False, "not started: sglang_server_start is never"
    if setting != "auto":
        raise ServerConfigError("sglang_server_start %r: use auto, always or never" % (setting,))
    fake = [h for h in plan["groups"][group_name]["hosts"] if plan["nodes"][h].get("gpus_fake")]
    if fake:
        return False, ("not started: no GPU (cluster_gpus_fake on %s); units installed, enabled "
                       "and validated" % ", ".join(fake))
    return True, "GPUs present"


def fence_members(plan, group_name):
    """Every rank's cluster address, rank 0 first: the only peers the group's fences talk to."""
    group = plan["groups"][group_name]
    return [plan["nodes"][h]["cluster_ip"] for h in sorted(group["hosts"], key=lambda h: plan["nodes"][h]["node_rank"])]


def fence_state_file(plan, group_name):
    """Where rank 0's fence coordinator writes its phase (its unit's RuntimeDirectory)."""
    return "/run/%s/state.json" % fence_unit_name(plan, group_name)


def fence_argv(plan, group_name, host, max_restarts=3, window=600, python="/usr/bin/python3", health=None):
    """The fence unit's command line on `host` (rank 0's also listens as the coordinator).

    The group's key is not in it, only the path of its 0600 root file. health: {interval,
    failures} of rank 0's /health_generate probe (failures 0: no probe).
    """
    group = plan["groups"][group_name]
    node = plan["nodes"][host]
    coordinator = format_hostport(group["master_addr"], group["fence_port"])
    argv = [python, plan["layout"]["files"]["fence"], "--group", group_name,
            "--rank", str(node["node_rank"]), "--nnodes", str(group["nnodes"]),
            "--unit", unit_name(plan, group_name) + ".service",
            "--coordinator", coordinator, "--max-restarts", str(max_restarts), "--window", str(window),
            "--key-file", plan["layout"]["files"]["fence_secrets"][group_name]]
    for rank, ip in enumerate(fence_members(plan, group_name)):
        argv += ["--member", "%d=%s" % (rank, ip)]
    if node["node_rank"] == 0:
        argv += ["--listen", coordinator, "--state", fence_state_file(plan, group_name)]
        if plan.get("metrics"):
            # Beside it, for the node exporter's textfile collector (module_utils/metrics.py).
            argv += ["--metrics", "/run/%s/%s" % (fence_unit_name(plan, group_name), FENCE_METRICS_FILE)]
        if health and health.get("failures"):
            argv += ["--health-url", group["local_url"] + "/health_generate",
                     "--health-interval", str(health["interval"]), "--health-failures", str(health["failures"])]
            if group.get("scheme") == "https":
                # The API's certificate comes from the operator's CA, not the system's.
                argv += ["--health-ca", plan["layout"]["credentials"]["tls_ca"]]
    return argv


def router_unit(plan, opts):
    """{host: {unit, argv, env}} for the sglang-router in front of every group's rank 0, or {}.

    With an API key the launcher hands the router the same key (its credential): it then requires
    it from clients and sends it to the workers.
    """
    router = plan.get("router")
    if not router:
        return {}
    node = plan["nodes"][router["host"]]
    if router.get("pd"):
        # PD mode: each prefill server with its bootstrap port, each decode server.
        targets = ["--pd-disaggregation"]
        for prefill in router["prefill"]:
            targets += ["--prefill", prefill["url"], str(prefill["bootstrap_port"])]
        for url in router["decode"]:
            targets += ["--decode", url]
    else:
        targets = ["--worker-urls"] + list(router["workers"])
    argv = [venv_python(plan["layout"]["venv_dir"]), plan["layout"]["files"]["launcher"], "--router"] + targets + [
        "--host", listen_host(plan, opts.get("host")), "--port", str(router["port"]),
        "--policy", opts.get("router_policy") or "cache_aware"]
    # The router always serves Prometheus metrics, on 0.0.0.0:29000 unless told: on the cluster
    # address with metrics on (the firewall admits the Prometheus host only), else loopback.
    argv += ["--prometheus-host", node["cluster_ip"] if plan.get("metrics") else plan.get("loopback", "127.0.0.1"),
             "--prometheus-port", str(router["metrics_port"])]
    argv += list(opts.get("router_args") or [])
    env = {"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "SGLANG_HOST_IP": node["cluster_ip"]}
    unit = plan["layout"]["units"]["router"]
    return {router["host"]: _with_credentials(dict(unit=unit, argv=argv, env=env),
                                              credential_delivery(plan, router["host"], unit, ROUTER_CREDENTIALS))}


def router_validation_argv(argv, launcher):
    """The launcher's --validate form of the router's argv (its own parser, no start)."""
    i = argv.index(launcher)
    return argv[:i + 1] + ["--validate"] + argv[i + 1:]


def credential_files(secrets, credentials, legacy=()):
    """node_files' {write (its secrets option: path -> content), absent} for a node's secrets.

    secrets: {credential id: value} (empty: not set); credentials: the plan's layout.credentials
    (id -> path). Set ones are written (0600 root, the module's default for secret files); unset
    ones removed, with the legacy paths (the per-unit EnvironmentFiles that held the key before).
    """
    unknown = sorted(set(secrets) - set(credentials))
    if unknown:
        raise ValueError("no credential path in the plan's layout for %s" % ", ".join(unknown))
    return {"write": {credentials[cid]: str(secrets[cid]) for cid in sorted(secrets) if secrets[cid]},
            "absent": [credentials[cid] for cid in sorted(secrets) if not secrets[cid]] + list(legacy)}
