"""The cluster plan: every cross-host decision of a deployment, made once, in plain Python.

Why this exists: multi-node SGLang breaks late and silently when two nodes disagree (a rank
computed twice, a port reused, a tp that does not divide over the nodes). So the whole inventory
is validated here on the controller before any host is contacted, and the result (ranks,
rendezvous address, GPUs per node, ports, interface identity) is the one source every role
reads. Nothing recomputes these values in Jinja.

Input is plain data (groups and per-host variables), output is plain data; the action plugin
`sglang_ops.cluster.cluster_plan` is a thin adapter around `build_plan`.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from ansible_collections.sglang_ops.cluster.plugins.module_utils import metrics as metrics_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils import pd_plan

ROOT_GROUP = "sglang_nodes"
HEAD_GROUP = "ray_head"

# Defaults of every variable the plan reads. meta/argument_specs.yml of the preflight role
# documents the same values; tests/unit/test_argument_specs.py keeps the two equal.
DEFAULTS = {
    "cluster_interface": None,
    "cluster_ip": None,
    "cluster_cidrs": [],
    "cluster_gpus_per_node": None,
    "cluster_gpu_ids": None,
    "cluster_gpus_fake": False,
    "cluster_user": "sglang",
    "cluster_venv_dir": "/opt/sglang/venv",
    # The layout on every node: the plan publishes it (plan.layout) and no role spells it.
    "sglang_data_dir": "/var/lib/sglang",
    "cluster_config_dir": "/etc/sglang",
    "cluster_libexec_dir": "/usr/local/lib/sglang-ops",
    "ray_unit_name": "sglang-ray",
    "sglang_model_path": None,
    "sglang_tp": None,
    "sglang_pp": 1,
    "sglang_dp": 1,
    "sglang_enable_dp_attention": False,
    "sglang_backend": "native",
    "sglang_node_rank": None,
    "sglang_port": 30000,
    "sglang_dist_init_port": 20000,
    "sglang_dist_port_span": 100,
    "sglang_api_key_required": False,
    "sglang_extra_args": [],
    # The model's Hugging Face revision: a commit pins what the nodes (or SGLang) download.
    "sglang_model_revision": "",
    # SGLang's --watchdog-timeout (a forward batch longer than this crashes the server, so the
    # fence sees a failed unit) and --dist-timeout (torch.distributed init); null: SGLang's own.
    "sglang_watchdog_timeout": None,
    "sglang_dist_timeout": None,
    "sglang_router": False,
    "sglang_router_port": 30080,
    "sglang_router_host": None,
    # HTTP(S) proxy for what the nodes download (pip, the Hugging Face hub); the cluster's own
    # addresses and loopback are never proxied.
    "cluster_http_proxy": "",
    "cluster_https_proxy": "",
    "cluster_no_proxy": [],
    "ray_gcs_port": 6379,
    "ray_node_manager_port": 6380,
    "ray_object_manager_port": 6381,
    "ray_runtime_env_agent_port": 6382,
    "ray_dashboard_agent_grpc_port": 6383,
    "ray_dashboard_agent_listen_port": 6384,
    "ray_metrics_export_port": 6385,
    "ray_autoscaler_metrics_port": 6386,
    "ray_dashboard_port": 8265,
    "ray_client_server_port": 10001,
    "ray_min_worker_port": 11000,
    "ray_max_worker_port": 11499,
    # Site variables that share the collection's prefixes (cluster_*, sglang_*, ray_*, ...);
    # any other unknown name there is refused as a likely misspelling. fnmatch patterns.
    "cluster_extra_vars_allowed": [],
    # The loud opt-out: client networks wider than the cluster may reach an API without a key.
    "cluster_allow_unauthenticated_api": False,
    # Prefill/decode disaggregation, expert parallelism, RDMA (module_utils/pd_plan.py judges them).
    "sglang_pd_role": "none",
    "sglang_pd_transfer_backend": "mooncake",
    "sglang_pd_bootstrap_port": 8998,
    "sglang_ep": 1,
    "sglang_moe_a2a_backend": "none",
    "sglang_enable_eplb": False,
    "sglang_ep_num_redundant_experts": 0,
    "cluster_rdma": "auto",
    "cluster_rdma_devices": [],
    "cluster_rdma_gid_index": None,
    # A deploy.yml re-run on nodes exactly as the last complete deploy left them (module_utils/rerun.py):
    # fast: stop after comparing each node with its seal; full: run every phase regardless.
    "cluster_rerun": "fast",
    # PEM of the CA that signed the TLS certificates (sglang_server_tls_*, ray_tls_*): the
    # router, Ray and verify's probes trust it. Not a secret; required once any TLS is on.
    "cluster_tls_ca": "",
    # Metrics (module_utils/metrics.py): SGLang's --enable-metrics on every rank, the router's and
    # Ray's Prometheus endpoints and a node exporter on every node, on these fixed ports, reachable
    # only from the Prometheus host (a node running the monitoring role's Prometheus) and
    # cluster_metrics_scrape_cidrs (a site's own Prometheus, fed by the file_sd file).
    "cluster_metrics": True,
    "cluster_node_exporter_port": 9100,
    "sglang_router_metrics_port": 29000,
    "cluster_prometheus_host": None,
    "cluster_prometheus_port": 9090,
    "cluster_metrics_file_sd": "",
    "cluster_metrics_scrape_cidrs": [],
    # Also scrape every node's Ray metrics agent (ray_metrics_export_port): it serves only where
    # ray[default]'s opencensus is installed, which the pinned install lacks.
    "cluster_ray_node_metrics": False,
    # NVIDIA's dcgm-exporter, run by the site on nodes with real NVIDIA GPUs: scraped, guarded.
    "cluster_dcgm_exporter": False,
    "cluster_dcgm_exporter_port": 9400,
}

# The type of every plan option, as an argument spec would write it: (type, elements).
# The plan role's spec documents them as `raw` (the plan judges them itself, so Ansible's own
# role validation cannot stop the play first with its raw text); this is the type judged.
OPTION_TYPES = {
    "cluster_interface": ("str", None), "cluster_ip": ("str", None),
    "cluster_cidrs": ("list", "str"), "cluster_gpus_per_node": ("int", None),
    "cluster_gpu_ids": ("list", "int"), "cluster_gpus_fake": ("bool", None),
    "cluster_user": ("str", None), "cluster_venv_dir": ("str", None),
    "sglang_data_dir": ("str", None), "cluster_config_dir": ("str", None),
    "cluster_libexec_dir": ("str", None), "ray_unit_name": ("str", None),
    "sglang_model_path": ("str", None), "sglang_tp": ("int", None), "sglang_pp": ("int", None),
    "sglang_dp": ("int", None), "sglang_enable_dp_attention": ("bool", None),
    "sglang_backend": ("str", None), "sglang_node_rank": ("int", None),
    "sglang_port": ("int", None), "sglang_dist_init_port": ("int", None),
    "sglang_dist_port_span": ("int", None), "sglang_api_key_required": ("bool", None),
    "sglang_extra_args": ("list", "str"), "sglang_model_revision": ("str", None),
    "sglang_router": ("bool", None),
    "sglang_watchdog_timeout": ("int", None), "sglang_dist_timeout": ("int", None),
    "sglang_router_port": ("int", None), "sglang_router_host": ("str", None),
    "cluster_http_proxy": ("str", None), "cluster_https_proxy": ("str", None),
    "cluster_no_proxy": ("list", "str"), "cluster_extra_vars_allowed": ("list", "str"),
    "cluster_allow_unauthenticated_api": ("bool", None),
    "sglang_pd_role": ("str", None), "sglang_pd_transfer_backend": ("str", None),
    "sglang_pd_bootstrap_port": ("int", None), "sglang_ep": ("int", None),
    "sglang_moe_a2a_backend": ("str", None), "sglang_enable_eplb": ("bool", None),
    "sglang_ep_num_redundant_experts": ("int", None), "cluster_rdma": ("str", None), "cluster_rerun": ("str", None),
    "cluster_rdma_devices": ("list", "str"), "cluster_rdma_gid_index": ("int", None),
    "cluster_tls_ca": ("str", None),
    "cluster_metrics": ("bool", None), "cluster_node_exporter_port": ("int", None),
    "sglang_router_metrics_port": ("int", None), "cluster_prometheus_host": ("str", None),
    "cluster_prometheus_port": ("int", None), "cluster_metrics_file_sd": ("str", None),
    "cluster_metrics_scrape_cidrs": ("list", "str"), "cluster_dcgm_exporter": ("bool", None),
    "cluster_ray_node_metrics": ("bool", None),
    "cluster_dcgm_exporter_port": ("int", None),
}
OPTION_TYPES.update({k: ("int", None) for k in DEFAULTS if k.startswith("ray_") and k.endswith("_port")})

BACKENDS = ("native", "ray")
RERUN_MODES = ("fast", "full")
# Fixed names of the layout (unit names of the groups take the group's name after the prefix).
UNIT_DIR = "/etc/systemd/system"
FIREWALL_UNIT = "sglang-firewall"
NFT_TABLE = "sglang_ops"
ROUTER_UNIT = "sglang-router"
NODE_EXPORTER_UNIT = "sglang-node-exporter"
PROMETHEUS_UNIT = "sglang-prometheus"
SERVER_UNIT_PREFIX = "sglang-server-"
FENCE_UNIT_PREFIX = "sglang-fence-"
# The server and router units take their secrets as credentials (0600 root files, copied by
# root at start into the unit's private tmpfs directory, server.credential_delivery): never
# argv, an environment another process of the user can read (/proc/PID/environ), or the
# journal. The launcher maps each credential id to its flag; {id: file name in cluster_config_dir}.
CREDENTIALS = {"api_key": "api-key", "admin_api_key": "admin-api-key",
               "tls_cert": "tls-cert.pem", "tls_key": "tls-key.pem", "tls_ca": "tls-ca.pem"}
# The collection's former secrets file (an EnvironmentFile per unit): removed where found.
LEGACY_ENV_SUFFIX = ".env"
# Same value on every host of a model group (they describe one SGLang server).
GROUP_KEYS = (
    "sglang_model_path", "sglang_tp", "sglang_pp", "sglang_dp", "sglang_enable_dp_attention",
    "sglang_backend", "sglang_port", "sglang_dist_init_port", "sglang_dist_port_span",
    "sglang_api_key_required", "sglang_extra_args", "sglang_model_revision",
    "sglang_watchdog_timeout", "sglang_dist_timeout",
    "sglang_pd_role", "sglang_pd_bootstrap_port", "sglang_ep", "sglang_moe_a2a_backend",
    "sglang_enable_eplb", "sglang_ep_num_redundant_experts",
)
RAY_PORT_KEYS = (
    "ray_gcs_port", "ray_node_manager_port", "ray_object_manager_port",
    "ray_runtime_env_agent_port", "ray_dashboard_agent_grpc_port",
    "ray_dashboard_agent_listen_port", "ray_metrics_export_port", "ray_autoscaler_metrics_port",
    "ray_dashboard_port",
    "ray_client_server_port",
)
# Same value on every host of the cluster (one Ray cluster, one install layout).
LAYOUT_DIRS = ("cluster_venv_dir", "sglang_data_dir", "cluster_config_dir", "cluster_libexec_dir")
CLUSTER_KEYS = RAY_PORT_KEYS + LAYOUT_DIRS + (
    "ray_min_worker_port", "ray_max_worker_port", "cluster_user", "sglang_router",
    "sglang_router_port", "sglang_router_host", "ray_unit_name", "cluster_http_proxy",
    "cluster_https_proxy", "cluster_no_proxy", "sglang_pd_transfer_backend", "cluster_rdma",
    "cluster_tls_ca", "cluster_metrics", "cluster_node_exporter_port", "sglang_router_metrics_port",
    "cluster_prometheus_host", "cluster_prometheus_port", "cluster_metrics_file_sd",
    "cluster_metrics_scrape_cidrs", "cluster_ray_node_metrics", "cluster_dcgm_exporter",
    "cluster_dcgm_exporter_port", "cluster_rerun")
# SGLang computes these itself from the plan; an operator passing them would split the truth.
MANAGED_FLAGS = (
    "--model-path", "--model", "--tp", "--tp-size", "--tensor-parallel-size", "--pp",
    "--pp-size", "--dp", "--dp-size", "--nnodes", "--node-rank", "--dist-init-addr",
    "--watchdog-timeout", "--dist-timeout",
    "--nccl-init-addr", "--host", "--port", "--api-key", "--use-ray", "--enable-dp-attention",
    "--attn-dp-size", "--disaggregation-mode", "--disaggregation-transfer-backend",
    "--disaggregation-bootstrap-port", "--disaggregation-ib-device", "--ep-size", "--ep",
    "--moe-a2a-backend", "--enable-eplb", "--ep-num-redundant-experts", "--revision",
)
# `\Z`, never `$`: `$` also matches before a trailing newline ("eth0\n" would pass).
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
# Unit and model group names end up in unit file names and journal filters: no spaces, no
# shell or systemd specials (`\Z`, not `$`, so a trailing newline does not pass).
UNIT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
PROXY_URL = re.compile(r"^https?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+/?\Z")
NO_PROXY_ENTRY = re.compile(r"^[A-Za-z0-9._:/*\[\]-]{1,253}\Z")
# Directories a layout path may not be (or sit directly in place of): the system's own.
# Every service runs as the unprivileged cluster user without capabilities: no port below this.
MIN_PORT = 1024
# SGLang takes the dist-init port and the ports just above it (its TCPStore neighbours: the
# mesh probes dist-init .. +4); the fence listens at dist-init + span, so the span must clear them.
DIST_NEIGHBOURS = 5
# A Hugging Face id (org/name) or an absolute, normalized directory: no `..`, no shell or
# systemd specials, no spaces (the path reaches argv, units and the model check).
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?\Z")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+=@,-]*\Z")
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
               "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib",
               "/usr/local", "/usr/local/bin", "/usr/local/lib", "/usr/sbin", "/var", "/var/lib",
               "/var/log", "/var/tmp", "/etc/systemd", "/etc/systemd/system")
# A model directory the collection creates and hands to the cluster user (and remove.yml deletes)
# must be one of its own. Nothing inside these trees is: they belong to the OS, the kernel, root
# or the package manager.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/efi", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
                "/lost+found", "/proc", "/root", "/run", "/sbin", "/snap", "/sys", "/tmp", "/usr",
                "/var/backups", "/var/cache", "/var/lib/apt", "/var/lib/dpkg", "/var/lib/systemd",
                "/var/lock", "/var/log", "/var/mail", "/var/run", "/var/spool", "/var/tmp")
# ... and a directory directly inside one of these is someone else's (a user's home, another
# package's /opt/NAME or /var/lib/NAME, a mount point): the model needs a parent of its own.
SHARED_PARENTS = ("/", "/home", "/media", "/mnt", "/opt", "/srv", "/var", "/var/lib", "/var/local",
                  "/var/opt")


def system_path_problem(path):
    """Why `path` (absolute, normalized) cannot be a directory the collection owns, or None."""
    if path in SYSTEM_DIRS or path in SHARED_PARENTS:
        return "%r is a system directory" % (path,)
    tree = next((t for t in SYSTEM_TREES if path == t or path.startswith(t + "/")), None)
    if tree:
        return "%r is inside %s, which belongs to the system" % (path, tree)
    parent = posixpath.dirname(path)
    if parent in SHARED_PARENTS:
        return "%r sits directly in %s, where every directory belongs to someone else" % (path, parent)
    return None


def owned_dirs(path, data_dir):
    """The directories to create for `path`, outermost first: inside the data directory every
    missing level (the collection owns the whole tree), elsewhere `path` alone (its parent is the
    operator's and must exist)."""
    if not path.startswith(data_dir + "/"):
        return [path]
    parts = path[len(data_dir) + 1:].split("/")
    return [data_dir + "/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


# PEM blocks (the shape only: openssl on the node reads the rest). Keys are never echoed.
PEM_CERT = re.compile(r"^(-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*)+\Z")
PEM_KEY = re.compile(r"^-----BEGIN ((RSA|EC|ENCRYPTED) )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+"
                     r"-----END ((RSA|EC|ENCRYPTED) )?PRIVATE KEY-----\s*\Z")


class PlanError(Exception):
    """All problems found in the inventory, each naming the host, the variable and the fix.

    items: (where, variable, problem, fix) tuples; problems: the lines `report` makes of them
    (hosts and groups as in `report`).
    """

    def __init__(self, items, hosts=(), groups=None):
        self.items = list(items)
        self.problems = report(self.items, list(hosts), groups)
        super().__init__("\n".join(self.problems))


def format_problem(item):
    """`WHERE: VARIABLE: problem. Fix: fix` (one line, whatever the parts contain)."""
    where, key, problem, fix = item
    line = "%s: %s: %s. Fix: %s" % (where, key, problem, fix) if key else where
    return " ".join(line.split())


def report(items, hosts, groups=None):
    """One line per problem, all of them, sorted by host (inventory order).

    The same problem found on several hosts (a group_vars value) is one line naming them:
    every host of the cluster is `sglang_nodes`, every host of one model group is that group.
    items: (where, variable, problem, fix); hosts: every host in inventory order;
    groups: {model group: [hosts]}.
    """
    groups = groups or {}
    order = {h: i for i, h in enumerate(hosts)}
    for i, (group, members) in enumerate(groups.items()):
        order.setdefault(group, min((order.get(h, len(order)) for h in members), default=len(order) + i))
    merged = {}
    for where, key, problem, fix in items:
        wheres = merged.setdefault((key, problem, fix), [])
        if where not in wheres:
            wheres.append(where)
    lines = []
    for (key, problem, fix), wheres in merged.items():
        if len(wheres) > 1 and set(wheres) == set(hosts):
            where = ROOT_GROUP
        else:
            where = next((g for g, members in groups.items()
                          if len(members) > 1 and set(wheres) == set(members)), None)
            if where is None:
                where = ", ".join(sorted(wheres, key=lambda w: order.get(w, len(order))))
        rank = -1 if where == ROOT_GROUP else min(order.get(w, len(order)) for w in wheres)
        lines.append((rank, where, key, format_problem((where, key, problem, fix))))
    return [item[3] for item in sorted(lines, key=lambda t: t[:3])]


def format_hostport(ip, port):
    """`ip:port`, with IPv6 in brackets (SGLang reads `fd00::20000` as host `fd00:`)."""
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    """Collects problems; a value already refused (by the input judge, or earlier here) is not
    refused again under another wording, and checks that build on it stay quiet."""

    def __init__(self, hostvars, refused=()):
        self.hostvars = hostvars
        self.problems = []
        self.refused = set(refused)
        self.members = {}

    def get(self, host, key):
        value = self.hostvars.get(host, {}).get(key)
        return DEFAULTS[key] if value is None else value

    def is_refused(self, where, key):
        hosts = self.members.get(where, [where])
        return any((h, key) in self.refused for h in hosts)

    def fail(self, host, key, problem, fix):
        if self.is_refused(host, key):
            return
        self.problems.append((host, key, problem, fix))
        self.refused.add((host, key))

    def positive_int(self, host, key, minimum=1):
        value = self.get(host, key)
        if not _is_int(value) or value < minimum:
            self.fail(host, key, "%r is not an integer >= %d" % (value, minimum),
                      "set %s to an integer >= %d" % (key, minimum))
            return None
        return value

    def port(self, host, key):
        value = self.get(host, key)
        if not _is_int(value) or not 1 <= value <= 65535:
            self.fail(host, key, "%r is not a TCP port (1-65535)" % (value,),
                      "set %s to a free port between %d and 65535" % (key, MIN_PORT))
            return None
        if value < MIN_PORT:
            self.fail(host, key, "port %d is below %d, but Ray and SGLang run as the unprivileged "
                      "cluster_user without capabilities" % (value, MIN_PORT),
                      "choose a free port between %d and 65535" % MIN_PORT)
            return None
        return value


def _cluster_ip(chk, host):
    explicit = chk.get(host, "cluster_ip")
    source, value = ("cluster_ip", explicit) if explicit else (
        "ansible_host", chk.hostvars.get(host, {}).get("ansible_host") or host)
    try:
        return ipaddress.ip_address(str(value)), source
    except ValueError:
        chk.fail(host, source if explicit else "cluster_ip",
                 "%r is not an IP address, and no cluster_ip is set" % (value,)
                 if not explicit else "%r is not an IP address" % (value,),
                 "set cluster_ip to the address this host uses on the cluster interface")
        return None, source


def _check_identity(chk, host, cidrs):
    """The node's one network identity: interface name and cluster IP."""
    ifname = chk.get(host, "cluster_interface")
    if not ifname:
        chk.fail(host, "cluster_interface", "not set",
                 "set cluster_interface to the NIC that carries cluster traffic (e.g. eth0, ib0); "
                 "it becomes NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME")
    elif not isinstance(ifname, str) or not IFNAME.match(ifname):
        chk.fail(host, "cluster_interface", "%r is not a Linux interface name" % (ifname,),
                 "use the exact name `ip -br link` shows (at most 15 characters)")
    ip = _cluster_ip(chk, host)[0]
    if ip is not None and cidrs and not any(ip in net for net in cidrs):
        chk.fail(host, "cluster_ip", "%s is outside cluster_cidrs %s" % (ip, [str(n) for n in cidrs]),
                 "add this host's network to cluster_cidrs or fix its cluster_ip")
    return ifname, ip


def _check_gpus(chk, host):
    count = chk.get(host, "cluster_gpus_per_node")
    if count is None:
        chk.fail(host, "cluster_gpus_per_node", "not set",
                 "set cluster_gpus_per_node to the node's GPU count (the lab sets it together "
                 "with cluster_gpus_fake: true)")
        return None, None
    if not _is_int(count) or count < 0:
        chk.fail(host, "cluster_gpus_per_node", "%r is not an integer >= 0" % (count,),
                 "set cluster_gpus_per_node to the number of GPUs `nvidia-smi -L` lists")
        return None, None
    ids = chk.get(host, "cluster_gpu_ids")
    if ids is None:
        return count, list(range(count))
    if not isinstance(ids, list) or not all(_is_int(i) for i in ids) or not ids:
        chk.fail(host, "cluster_gpu_ids", "%r is not a non-empty list of GPU indexes" % (ids,),
                 "list the GPU indexes to use, e.g. [0, 1, 2, 3], or leave it unset for all")
        return count, None
    if len(set(ids)) != len(ids):
        chk.fail(host, "cluster_gpu_ids", "%r names a GPU twice" % (ids,), "list each GPU once")
        return count, None
    missing = [i for i in ids if not 0 <= i < count]
    if missing:
        chk.fail(host, "cluster_gpu_ids",
                 "GPU %s does not exist on a node with %d GPUs" % (missing, count),
                 "use indexes 0..%d (CUDA_VISIBLE_DEVICES is built from this list)" % (count - 1))
        return count, None
    return count, sorted(ids)


def _check_group_uniform(chk, group, hosts, keys):
    first = hosts[0]
    for key in keys:
        if any(chk.is_refused(h, key) for h in hosts):
            continue  # already refused on a host: "differs" would be the same problem again
        want = chk.get(first, key)
        for host in hosts[1:]:
            have = chk.get(host, key)
            if have != want:
                chk.fail(host, key, "%r differs from %r on %s in %s" % (have, want, first, group),
                         "set %s once for the group %s (group_vars), not per host" % (key, group))


def _ranks(chk, group, hosts):
    """Node ranks: inventory order, unless every host pins sglang_node_rank."""
    pinned = {h: chk.get(h, "sglang_node_rank") for h in hosts}
    if all(v is None for v in pinned.values()):
        return {h: i for i, h in enumerate(hosts)}
    if any(v is None for v in pinned.values()):
        for h in hosts:
            if pinned[h] is None:
                chk.fail(h, "sglang_node_rank", "set on some hosts of %s but not this one" % group,
                         "pin sglang_node_rank on every host of the group or on none")
        return None
    if sorted(pinned.values()) != list(range(len(hosts))):
        chk.fail(group, "sglang_node_rank", "pinned ranks %s are not 0..%d each once"
                 % (sorted(pinned.values()), len(hosts) - 1), "give each host a distinct rank 0..n-1")
        return None
    return pinned


def _check_parallelism(chk, group, hosts, gpus_used):
    first = hosts[0]
    nnodes = len(hosts)
    pp = chk.positive_int(first, "sglang_pp")
    dp = chk.positive_int(first, "sglang_dp")
    tp = chk.get(first, "sglang_tp")
    if gpus_used is None or pp is None or dp is None:
        return None
    total = nnodes * gpus_used
    if tp is None:
        tp = total // pp
    if not _is_int(tp) or tp < 1:
        chk.fail(group, "sglang_tp", "%r is not an integer >= 1" % (tp,),
                 "set sglang_tp to the total tensor-parallel size over all nodes of the group")
        return None
    if tp * pp != total:
        chk.fail(group, "sglang_tp", "tp %d x pp %d = %d, but %d nodes x %d GPUs = %d"
                 % (tp, pp, tp * pp, nnodes, gpus_used, total),
                 "set sglang_tp to %d / sglang_pp (every GPU of the group takes one shard)" % total)
        return None
    if dp > 1:
        if nnodes > 1 and not chk.get(first, "sglang_enable_dp_attention"):
            chk.fail(group, "sglang_dp", "dp %d over %d nodes without DP attention" % (dp, nnodes),
                     "set sglang_enable_dp_attention: true, or use separate model groups as replicas")
        elif tp % dp:
            chk.fail(group, "sglang_dp", "dp %d does not divide tp %d" % (dp, tp),
                     "choose sglang_dp among the divisors of %d" % tp)
    return {"tp": tp, "pp": pp, "dp": dp}


def _check_extra_args(chk, group, first):
    extra = chk.get(first, "sglang_extra_args")
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        chk.fail(group, "sglang_extra_args", "%r is not a list of strings" % (extra,),
                 "write one list item per argument, e.g. ['--mem-fraction-static', '0.85']")
        return []
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            chk.fail(group, "sglang_extra_args", "%s is set by the cluster plan" % flag,
                     "remove it; set the matching sglang_* variable instead")
    return extra


def _host_ports(chk, host, group_ports, span):
    """Every port this host will bind, checked for range and collision.

    group_ports: the group's single ports (HTTP, dist-init); span: how many ports SGLang may
    take just above dist-init (its TCPStore neighbours), which must stay clear of everything.
    """
    singles = [(key, chk.port(host, key)) for key in RAY_PORT_KEYS] + list(group_ports.items())
    singles = [(k, v) for k, v in singles if v is not None]
    ranges = []
    lo, hi = chk.port(host, "ray_min_worker_port"), chk.port(host, "ray_max_worker_port")
    if lo is not None and hi is not None:
        if lo > hi:
            chk.fail(host, "ray_min_worker_port", "%d is above ray_max_worker_port %d" % (lo, hi),
                     "make ray_min_worker_port <= ray_max_worker_port")
        else:
            ranges.append(("ray_min_worker_port", "Ray worker ports", lo, hi))
    dist = group_ports.get("sglang_dist_init_port")
    if dist is not None and span and dist + span > 65535:
        chk.fail(host, "sglang_dist_init_port", "dist-init port %d + sglang_dist_port_span %d puts the "
                 "fence port at %d, past 65535" % (dist, span, dist + span),
                 "choose sglang_dist_init_port at most %d" % (65535 - span))
        span = None
    if dist is not None and span:
        ranges.append(("sglang_dist_init_port", "SGLang dist-init ports", dist, dist + span))
    owner = {}
    for key, port in singles:
        if port in owner:
            chk.fail(host, key, "port %d is also %s" % (port, owner[port]),
                     "give each service its own port")
        owner.setdefault(port, key)
        for range_key, name, start, end in ranges:
            if key != range_key and start <= port <= end:
                chk.fail(host, key, "port %d falls in the %s %d-%d" % (port, name, start, end),
                         "move %s out of %d-%d" % (key, start, end))
    if (len(ranges) == 2 and ranges[0][2] <= ranges[1][3] and ranges[1][2] <= ranges[0][3]
            and not lo <= dist <= hi):  # else the dist-init port's own line says it
        chk.fail(host, "ray_min_worker_port", "Ray worker ports %d-%d overlap the SGLang dist-init "
                 "ports %d-%d" % (lo, hi, dist, dist + span), "move the Ray worker port range")
    ports = dict(singles)
    ports.update(ray_min_worker_port=lo, ray_max_worker_port=hi)
    return ports


def _proxy_env(chk, host, members):
    """The environment that sends downloads through the operator's proxy ({} without one)."""
    env = {}
    for key, name in (("cluster_http_proxy", "http_proxy"), ("cluster_https_proxy", "https_proxy")):
        url = chk.get(host, key)
        if url in ("", None):
            continue
        if isinstance(url, str) and "@" in url:
            # The plan is a fact (printed with -v): a password in it would leak, so it is
            # neither kept nor echoed.
            chk.fail(host, key, "the URL carries credentials",
                     "let the proxy admit the cluster's addresses instead of a user:password in the URL")
            continue
        if not isinstance(url, str) or not PROXY_URL.match(url):
            chk.fail(host, key, "%r is not a proxy URL" % (url,),
                     "write http://HOST:PORT (or https://), without spaces or quotes")
            continue
        env[name] = env[name.upper()] = url
    extra = chk.get(host, "cluster_no_proxy")
    if not isinstance(extra, list) or not all(isinstance(e, str) and NO_PROXY_ENTRY.match(e) for e in extra):
        chk.fail(host, "cluster_no_proxy", "%r is not a list of host names, addresses or domains" % (extra,),
                 "list entries such as .internal.example, 10.0.0.0/8 or mirror.local")
        extra = []
    if env:
        skip = ["localhost", "127.0.0.1", "::1"] + list(members) + list(extra)
        env["no_proxy"] = env["NO_PROXY"] = ",".join(dict.fromkeys(skip))
    return env


def _router(chk, all_hosts, groups, nodes):
    """The optional sglang-router in front of every group's rank 0, or None."""
    first = all_hosts[0]
    if not chk.get(first, "sglang_router"):
        return None
    host = chk.get(first, "sglang_router_host") or next(iter(groups.values()), {}).get("rank0")
    if host not in nodes:
        chk.fail(first, "sglang_router_host", "%r is not a node of %s" % (host, ROOT_GROUP),
                 "name one of the cluster's hosts, or leave it empty (the first group's rank 0)")
        return None
    port = chk.port(first, "sglang_router_port")
    taken = {v: k for k, v in (nodes[host].get("ports") or {}).items() if v}
    if port is not None and port in taken:
        chk.fail(host, "sglang_router_port", "port %d is also %s on the router host" % (port, taken[port]),
                 "give the router a port of its own")
    metrics_port = chk.port(first, "sglang_router_metrics_port")
    if metrics_port is not None and (metrics_port in taken or metrics_port == port):
        chk.fail(host, "sglang_router_metrics_port", "port %d is also %s on the router host"
                 % (metrics_port, taken.get(metrics_port, "sglang_router_port")),
                 "give the router's metrics a port of their own")
    # group_workers: each group's worker URL, the name the router's worker API knows it by
    # (rolling restarts take a group out and put it back by it).
    group_workers = {}
    for name, spec in groups.items():
        ip = nodes[spec["rank0"]]["cluster_ip"]
        if ip and spec.get("http_port"):
            group_workers[name] = "%s://%s" % (nodes[spec["rank0"]]["api_scheme"], format_hostport(ip, spec["http_port"]))
    return {"host": host, "ip": nodes[host]["cluster_ip"], "port": port, "metrics_port": metrics_port,
            "workers": list(group_workers.values()), "group_workers": group_workers}


def _check_tls(chk, hosts):
    """The CA (a PEM certificate) and the TLS settings that need it; whether a CA is set.

    Which hosts have certificates arrives as _tls_api_set / _tls_ray_set (the keys never enter
    the plan; plugin_utils.inputs judges their PEM shape).
    """
    ca = chk.get(hosts[0], "cluster_tls_ca")
    if ca and (not isinstance(ca, str) or not PEM_CERT.match(ca)):
        chk.fail(hosts[0], "cluster_tls_ca", "not a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
                 "paste the CA certificate (PEM) that signed the nodes' certificates, or leave it empty without TLS")
        ca = None
    for flag, key, what in (("_tls_api_set", "sglang_server_tls_cert", "the SGLang API and the router"),
                            ("_tls_ray_set", "ray_tls_cert", "Ray")):
        with_tls = [h for h in hosts if chk.hostvars.get(h, {}).get(flag)]
        if with_tls and not ca and not chk.is_refused(hosts[0], "cluster_tls_ca"):
            for host in with_tls:
                chk.fail(host, "cluster_tls_ca", "not set, but %s is set for TLS on %s: the peers and "
                         "verify's probes need the CA to trust it" % (key, what),
                         "set cluster_tls_ca to the PEM certificate of the CA that signed %s" % key)
        if flag == "_tls_ray_set" and with_tls and len(with_tls) != len(hosts):
            for host in hosts:
                if host not in with_tls:
                    chk.fail(host, "ray_tls_cert", "not set, but Ray TLS is on for %s: a node without it "
                             "cannot join" % ", ".join(with_tls), "give every node ray_tls_cert and ray_tls_key, or none")
    return bool(ca)


def _check_dir(chk, host, key):
    """A layout directory: absolute, normalized, of its own (never a system directory)."""
    value = chk.get(host, key)
    if (not isinstance(value, str) or not value.startswith("/") or value != posixpath.normpath(value)
            or not re.match(r"^[A-Za-z0-9_./+-]+\Z", value) or value in SYSTEM_DIRS):
        chk.fail(host, key, "%r is not a dedicated absolute path" % (value,),
                 "use a normalized absolute path of its own (letters, digits, ._+-/), such as %s"
                 % DEFAULTS[key])
        return DEFAULTS[key]
    return value


def layout(settings, groups):
    """Every name and path the roles use on a node, from the cluster-wide settings.

    settings: the LAYOUT_DIRS and ray_unit_name values. groups: model group names, whose server
    and fence units are named after them. Roles read these names here and spell none.
    """
    data, config, libexec = (settings["sglang_data_dir"], settings["cluster_config_dir"],
                             settings["cluster_libexec_dir"])
    ray_unit = settings["ray_unit_name"]
    return {
        "venv_dir": settings["cluster_venv_dir"],
        "data_dir": data,
        "config_dir": config,
        "libexec_dir": libexec,
        "unit_dir": UNIT_DIR,
        # Short on purpose: Ray's unix socket paths live under it (108-byte limit).
        "ray_temp_dir": data + "/ray",
        "hf_home": data + "/hf",
        # Modules that run as the cluster user (become_user) keep their temp files here.
        "ansible_tmp_dirs": [data + "/.ansible", data + "/.ansible/tmp"],
        "units": {
            "ray": ray_unit,
            "firewall": FIREWALL_UNIT,
            "router": ROUTER_UNIT,
            "node_exporter": NODE_EXPORTER_UNIT,
            "prometheus": PROMETHEUS_UNIT,
            "servers": {g: SERVER_UNIT_PREFIX + g for g in groups},
            "fences": {g: FENCE_UNIT_PREFIX + g for g in groups},
            # Globs that find every unit of these kinds, also of groups no longer planned.
            "server_globs": [SERVER_UNIT_PREFIX + "*.service", FENCE_UNIT_PREFIX + "*.service",
                             ROUTER_UNIT + ".service"],
        },
        "files": {
            "ray_token": config + "/ray-auth-token",
            "hf_token": config + "/hf-token",
            "firewall_rules": config + "/firewall.nft",
            # nftables.service flushes the ruleset when it starts: this drop-in loads ours after.
            "nftables_dropin": UNIT_DIR + "/nftables.service.d/" + FIREWALL_UNIT + ".conf",
            "launcher": libexec + "/sglang-launch.py",
            # Ray's TLS (RAY_USE_TLS): 0600 files of the cluster user, read by every Ray process.
            "ray_tls_cert": config + "/ray-tls-cert.pem",
            "ray_tls_key": config + "/ray-tls-key.pem",
            "ray_tls_ca": config + "/ray-tls-ca.pem",
            "fence": libexec + "/fence.py",
            # Each fenced group's HMAC secret (0600 root), read by its fence (root) at start.
            "fence_secrets": {g: config + "/" + FENCE_UNIT_PREFIX + g + ".secret" for g in groups},
            # The operator's Ray CLI of this cluster carries the Ray unit's name.
            "ray_cli": "/usr/local/bin/" + ray_unit,
            # Stamps of checks that passed (module_utils/stamp.py): SGLang's check of each group's
            # arguments, the router's, the all_reduce, the model copy. A re-run repeats a check when its inputs changed.
            "check_stamps": {
                "servers": {g: config + "/checked/" + SERVER_UNIT_PREFIX + g for g in groups},
                "router": config + "/checked/" + ROUTER_UNIT,
                "collective": config + "/checked/collective",
                # The controller's model manifest key of the last complete copy to this node.
                "model": config + "/checked/model",
            },
            # What the last complete deploy left on this node (module_utils/rerun.py).
            "rerun_seal": config + "/checked/deploy",
            # The monitoring role's Prometheus (on the Prometheus host only): config, rules, data.
            "prometheus_config": config + "/" + metrics_plan.PROMETHEUS_CONFIG,
            "prometheus_rules": config + "/" + metrics_plan.PROMETHEUS_RULES,
            "prometheus_data": data + "/prometheus",
        },
        "nft_table": NFT_TABLE,
        # Credential ids of the server and router units and their 0600 root files.
        "credentials": {cid: config + "/" + name for cid, name in CREDENTIALS.items()},
    }


def ray_tls_env(the_layout):
    """Ray's TLS environment (paths only): RAY_USE_TLS and the cluster user's 0600 PEM files."""
    files = the_layout["files"]
    return {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": files["ray_tls_cert"],
            "RAY_TLS_SERVER_KEY": files["ray_tls_key"], "RAY_TLS_CA_CERT": files["ray_tls_ca"]}


def _check_model_path(chk, group, model):
    """A Hugging Face id or an absolute, normalized directory; nothing a shell or unit reinterprets."""
    if not isinstance(model, str) or not model.strip():
        chk.fail(group, "sglang_model_path", "empty",
                 "set sglang_model_path to a Hugging Face id or a local model directory")
    elif model.startswith("/"):
        if ".." in model.split("/") or model != posixpath.normpath(model) or not SAFE_PATH.match(model):
            chk.fail(group, "sglang_model_path", "%r is not a normalized absolute path of letters, "
                     "digits and ._+=@,-/ only" % (model,),
                     "write the model directory without '..', '.', '//', spaces or shell characters, "
                     "e.g. /var/lib/sglang/models/Llama-3.1-8B-Instruct")
        elif system_path_problem(model):
            chk.fail(group, "sglang_model_path", system_path_problem(model),
                     "use a directory of its own, e.g. /var/lib/sglang/models/NAME or "
                     "/srv/models/NAME (the collection creates and owns only the model directory)")
    elif not HF_ID.match(model) or ".." in model:
        chk.fail(group, "sglang_model_path", "%r is neither a Hugging Face id (org/name) nor an "
                 "absolute path" % (model,),
                 "write org/name with letters, digits and ._- only, or an absolute directory on the nodes")


def build_plan(model_groups, hostvars, root_hosts=None, ray_head=None, refused=()):
    """Validate the inventory and return the cluster plan, or raise PlanError with every problem.

    model_groups: ordered {group name: [host, ...]} (children of `sglang_nodes`).
    hostvars:     {host: {variable: value}} with the inventory's variables.
    root_hosts:   every host of `sglang_nodes`, to find hosts that belong to no model group.
    ray_head:     the host of the `ray_head` group, if the operator set one.
    refused:      (host, variable) pairs already refused by the input judge (plugin_utils.inputs):
                  their values arrive as None and no other problem is reported about them.
    """
    chk = _Checker(hostvars, refused)
    chk.members = {g: list(h) for g, h in model_groups.items()}
    if not model_groups or not any(model_groups.values()):
        raise PlanError([(ROOT_GROUP, "(inventory)", "no model group with hosts under %s" % ROOT_GROUP,
                          "add a child group per model (e.g. llama405b) with its hosts under %s"
                          % ROOT_GROUP)])

    member = {}
    for group, hosts in model_groups.items():
        if not UNIT_NAME.match(group):
            chk.fail(group, "groups", "model group name %r becomes a unit name (%s%s)"
                     % (group, SERVER_UNIT_PREFIX, group),
                     "rename the group with letters, digits, '.', '_' and '-' only")
        if not hosts:
            chk.fail(group, "hosts", "model group has no hosts", "add hosts or remove the group")
        for host in hosts:
            if host in member:
                chk.fail(host, "groups", "in two model groups (%s and %s)" % (member[host], group),
                         "a node serves one model: keep it in one group")
            else:
                member[host] = group
    all_hosts = list(member)
    for host in root_hosts or []:
        if host not in member:
            chk.fail(host, "groups", "in %s but in no model group" % ROOT_GROUP,
                     "put the host under one model group (a child of %s)" % ROOT_GROUP)

    cidrs = []
    raw_cidrs = chk.get(all_hosts[0], "cluster_cidrs")
    if not isinstance(raw_cidrs, list):
        chk.fail(all_hosts[0], "cluster_cidrs", "%r is not a list" % (raw_cidrs,),
                 "write cluster_cidrs as a list, e.g. ['10.0.0.0/24']")
        raw_cidrs = []
    for cidr in raw_cidrs:
        try:
            cidrs.append(ipaddress.ip_network(str(cidr), strict=False))
        except ValueError:
            chk.fail(all_hosts[0], "cluster_cidrs", "%r is not a CIDR" % (cidr,),
                     "write networks as ADDRESS/PREFIX, e.g. 10.0.0.0/24 or fd00::/64")

    _check_group_uniform(chk, "the cluster", all_hosts, CLUSTER_KEYS)
    user = chk.get(all_hosts[0], "cluster_user")
    if not isinstance(user, str) or not USERNAME.match(user) or user == "root":
        chk.fail(all_hosts[0], "cluster_user", "%r is not an unprivileged user name" % (user,),
                 "use a dedicated system user such as sglang")
    dirs = {key: _check_dir(chk, all_hosts[0], key) for key in LAYOUT_DIRS}
    venv = dirs["cluster_venv_dir"]
    ray_unit = chk.get(all_hosts[0], "ray_unit_name")
    if not isinstance(ray_unit, str) or not UNIT_NAME.match(ray_unit):
        chk.fail(all_hosts[0], "ray_unit_name", "%r is not a systemd unit name" % (ray_unit,),
                 "use letters, digits, '.', '_' and '-' only, without .service (e.g. %s)"
                 % DEFAULTS["ray_unit_name"])

    ca = _check_tls(chk, all_hosts)
    nodes, seen_ips = {}, {}
    for host in all_hosts:
        api_tls = bool(chk.hostvars.get(host, {}).get("_tls_api_set"))
        ifname, ip = _check_identity(chk, host, cidrs)
        count, ids = _check_gpus(chk, host)
        if ip is not None:
            if ip in seen_ips:
                chk.fail(host, "cluster_ip", "%s is also the cluster IP of %s" % (ip, seen_ips[ip]),
                         "give every node its own cluster_ip")
            seen_ips[ip] = host
        nodes[host] = {
            "group": member[host], "cluster_interface": ifname,
            "cluster_ip": str(ip) if ip is not None else None,
            "gpu_count": count, "gpu_ids": ids,
            "cuda_visible_devices": ",".join(str(i) for i in ids) if ids else "",
            "num_gpus": len(ids) if ids else 0,
            "gpus_fake": bool(chk.get(host, "cluster_gpus_fake")),
            "user": user, "venv_dir": venv,
            # Which secrets this node's units load (never the secrets: the roles write them).
            "secrets": {"api_key": bool(chk.hostvars.get(host, {}).get("_api_key_set")),
                        "admin_api_key": bool(chk.hostvars.get(host, {}).get("_admin_api_key_set")),
                        "tls_cert": api_tls, "tls_key": api_tls, "tls_ca": bool(ca)},
            # The SGLang API (rank 0) and the router on this node serve HTTPS with its certificate.
            "api_scheme": "https" if api_tls else "http",
            "ray_tls": bool(chk.hostvars.get(host, {}).get("_tls_ray_set")),
            # Units that every service unit of this node requires and starts after: the
            # firewall's, where it is enabled (no port opens before the table is loaded).
            "requires_units": [FIREWALL_UNIT + ".service"]
            if hostvars.get(host, {}).get("_firewall_enabled", True) else [],
        }

    families = {ipaddress.ip_address(n["cluster_ip"]).version for n in nodes.values() if n["cluster_ip"]}
    if len(families) > 1:
        v4 = [h for h, n in nodes.items() if n["cluster_ip"] and ":" not in n["cluster_ip"]]
        v6 = [h for h, n in nodes.items() if n["cluster_ip"] and ":" in n["cluster_ip"]]
        chk.fail(", ".join(v6), "cluster_ip", "IPv6 while %s use IPv4" % ", ".join(v4),
                 "use one address family for the whole cluster (NCCL and Ray need one)")

    groups = {}
    for group, hosts in model_groups.items():
        if not hosts:
            continue
        _check_group_uniform(chk, group, hosts, GROUP_KEYS)
        first = hosts[0]
        unknown = [h for h in hosts if nodes[h]["gpu_ids"] is None]
        counts = {nodes[h]["num_gpus"] for h in hosts if h not in unknown}
        if unknown:
            counts = {None}  # refused on its own line already; nothing to compare
        elif len(counts) > 1:
            chk.fail(group, "cluster_gpu_ids", "GPUs per node differ: %s"
                     % {h: nodes[h]["num_gpus"] for h in hosts},
                     "use the same number of GPUs on every node of a group")
        gpus_used = counts.pop() if len(counts) == 1 and None not in counts else None
        par = _check_parallelism(chk, group, hosts, gpus_used)
        pd_group = pd_plan.check_group(chk, group, first, par, len(hosts))
        model = chk.get(first, "sglang_model_path")
        _check_model_path(chk, group, model)
        backend = chk.get(first, "sglang_backend")
        if backend not in BACKENDS:
            chk.fail(group, "sglang_backend", "unknown backend %r" % (backend,),
                     "use one of %s" % ", ".join(BACKENDS))
        if chk.get(first, "sglang_api_key_required") and not hostvars.get(first, {}).get("_api_key_set"):
            chk.fail(group, "sglang_server_api_key", "required (sglang_api_key_required) but not set",
                     "put sglang_server_api_key in a vault-encrypted group_vars file")
        extra_args = _check_extra_args(chk, group, first)
        timeouts = {}
        for key in ("sglang_watchdog_timeout", "sglang_dist_timeout"):
            value = chk.get(first, key)
            if value is not None and (not _is_int(value) or value < 1):
                chk.fail(group, key, "%r is not a number of seconds" % (value,),
                         "set %s to a whole number of seconds >= 1, or null for SGLang's default" % key)
                value = None
            timeouts[key[len("sglang_"):]] = value
        group_ports = {"sglang_port": chk.port(first, "sglang_port"),
                       "sglang_dist_init_port": chk.port(first, "sglang_dist_init_port")}
        bootstrap = pd_plan.bootstrap_port(chk, first, pd_group["pd_role"] or "none")
        if bootstrap is not None:
            group_ports["sglang_pd_bootstrap_port"] = bootstrap
        span = chk.get(first, "sglang_dist_port_span")
        if not _is_int(span) or span < DIST_NEIGHBOURS:
            chk.fail(group, "sglang_dist_port_span", "%r leaves no room for SGLang's ports just above "
                     "dist-init (%d of them) and the group's fence port at dist-init + span"
                     % (span, DIST_NEIGHBOURS),
                     "set sglang_dist_port_span to at least %d (default %d)"
                     % (DIST_NEIGHBOURS, DEFAULTS["sglang_dist_port_span"]))
            span = None
        host_ports = {h: _host_ports(chk, h, group_ports, span) for h in hosts}
        ranks = _ranks(chk, group, hosts) or {}
        ordered = sorted(hosts, key=lambda h: ranks.get(h, 0))
        rank0 = ordered[0]
        for host in hosts:
            nodes[host].update(node_rank=ranks.get(host), ports=host_ports[host])
        dist_port = group_ports["sglang_dist_init_port"]
        groups[group] = dict(
            par or {}, hosts=ordered, nnodes=len(hosts), rank0=rank0, backend=backend,
            model_path=model, model_revision=chk.get(first, "sglang_model_revision") or "",
            http_port=group_ports["sglang_port"],
            # What the model prefetch creates and hands to the cluster user (never a parent).
            model_dirs=owned_dirs(model, dirs["sglang_data_dir"])
            if isinstance(model, str) and model.startswith("/") else [],
            dist_init_addr=format_hostport(nodes[rank0]["cluster_ip"], dist_port)
            if nodes[rank0]["cluster_ip"] and dist_port else None,
            api_key_required=bool(chk.get(first, "sglang_api_key_required")),
            dist_port_span=span, extra_args=extra_args, **timeouts,
            # The group's fence (fate-sharing) listens on the last port of the dist-init span,
            # which the firewall already opens to cluster members only.
            fence_port=dist_port + span if dist_port and span else None,
            bootstrap_port=bootstrap, **pd_group,
        )

    rerun_mode = chk.get(all_hosts[0], "cluster_rerun")
    if rerun_mode not in RERUN_MODES:
        chk.fail(ROOT_GROUP, "cluster_rerun", "%r is not a re-run mode" % (rerun_mode,),
                 "use fast (a re-run stops when every node is as the last deploy left it) or full")
    rdma_nodes, rdma_mode = pd_plan.check_rdma(chk, all_hosts, ROOT_GROUP)
    for host, fields in rdma_nodes.items():
        nodes[host].update(fields)
    pd = pd_plan.check_deployment(chk, all_hosts, groups, ROOT_GROUP)
    router = _router(chk, all_hosts, groups, nodes)
    if router and pd:
        router.update(pd_plan.router_targets(groups, nodes, pd, format_hostport))
    metrics = metrics_plan.check(chk, all_hosts, nodes, groups, router)
    proxy_env = _proxy_env(chk, all_hosts[0], [n["cluster_ip"] for n in nodes.values() if n["cluster_ip"]])
    head = ray_head or all_hosts[0]
    if head not in nodes:
        chk.fail(head, "ray_head", "the Ray head is not a node of %s" % ROOT_GROUP,
                 "put a host of %s in the ray_head group" % ROOT_GROUP)
    if chk.problems:
        raise PlanError(chk.problems, all_hosts, model_groups)

    ip_version = families.pop() if families else 4
    loopback = "::1" if ip_version == 6 else "127.0.0.1"
    for host, node in nodes.items():
        node["is_ray_head"] = host == head
        node["gpus_real"] = bool(node["num_gpus"]) and not node["gpus_fake"]
        # NCCL where real GPUs run the collective (SGLang's own choice), gloo elsewhere.
        node["collective_backend"] = "nccl" if node["gpus_real"] else "gloo"
    for spec in groups.values():
        # Rank 0's API as seen on rank 0 itself (readiness waits, verify's probe). Over HTTPS at
        # the cluster IP, the name its certificate carries (a certificate rarely names loopback).
        spec["scheme"] = nodes[spec["rank0"]]["api_scheme"]
        spec["local_url"] = "%s://%s" % (spec["scheme"], format_hostport(
            loopback if spec["scheme"] == "http" else nodes[spec["rank0"]]["cluster_ip"], spec["http_port"]))
        spec["master_addr"] = nodes[spec["rank0"]]["cluster_ip"]
    if router:
        router["scheme"] = nodes[router["host"]]["api_scheme"]
        router["local_url"] = "%s://%s" % (router["scheme"], format_hostport(
            loopback if router["scheme"] == "http" else router["ip"], router["port"]))
    gcs_port = chk.get(head, "ray_gcs_port")
    settings = {key: chk.get(all_hosts[0], key) for key in LAYOUT_DIRS + ("ray_unit_name",)}
    ray_layout = layout(settings, list(groups))
    return {
        "version": 1,
        "ip_version": ip_version,
        "loopback": loopback,
        "layout": ray_layout,
        "hosts": all_hosts,
        "ray": {
            "head": head, "head_ip": nodes[head]["cluster_ip"],
            "gcs_address": format_hostport(nodes[head]["cluster_ip"], gcs_port),
            "nodes": len(all_hosts), "gpus": sum(n["num_gpus"] for n in nodes.values()),
            "workers": [h for h in all_hosts if h != head],
            "members": {h: nodes[h]["cluster_ip"] for h in all_hosts},
            # Ray's gRPC over mutual TLS (RAY_USE_TLS): on every node or none. tls_env: what every
            # Ray process and client (units, CLI, verify, the Ray backend's driver) needs then.
            "tls": all(n["ray_tls"] for n in nodes.values()),
            "tls_env": ray_tls_env(ray_layout) if all(n["ray_tls"] for n in nodes.values()) else {},
        },
        "cidrs": [str(n) for n in cidrs],
        # Whether any node has real GPUs (else SGLang cannot serve anywhere: CPU test hosts).
        "gpus_real": any(n["gpus_real"] for n in nodes.values()),
        "router": router,
        # Metrics ports, scrapers and the Prometheus host (module_utils/metrics.py); None when off.
        "metrics": metrics,
        # The PD deployment (transfer backend, prefill and decode groups), None without one.
        "pd": pd,
        # auto: RDMA checked and used where devices exist; required: its absence fails; off.
        "rdma": {"mode": rdma_mode},
        # deploy.yml re-runs (module_utils/rerun.py); the cluster_plan action adds the inputs key.
        "rerun": {"mode": rerun_mode},
        # The environment of every task that downloads (pip, the Hugging Face hub).
        "proxy_env": proxy_env,
        "groups": groups,
        "nodes": nodes,
    }
