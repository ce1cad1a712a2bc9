"""Ray with mutual TLS, as the ray role configures it (RAY_USE_TLS and the RAY_TLS_* files of the
plan's layout): a head and a worker on the two lab hosts form a cluster, a client with the
certificate sees both nodes, and a client without it is refused.

Short-lived Ray processes of their own, on ports clear of the deployed cluster's, in transient
units (stopped through systemd, never `ray stop`), under a directory removed afterwards; the
deployed Ray is not touched (restarting it for TLS would cost a minute per restart).
"""

import json
import subprocess

from conftest import H1, H2, IP1, IP2, on_host
from tls_ca import make_ca
from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import PROBE
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, ray_tls_env

USER, VENV = DEFAULTS["cluster_user"], DEFAULTS["cluster_venv_dir"]
WORK = DEFAULTS["sglang_data_dir"] + "/rtls"  # short: Ray's unix sockets live under it (108 bytes)
GCS = 16379
# Every port Ray opens, fixed and away from the deployed cluster's (6379-6386, 10001, 11000-11499).
PORTS = ["--node-manager-port=16380", "--object-manager-port=16381", "--runtime-env-agent-port=16382",
         "--dashboard-agent-grpc-port=16383", "--dashboard-agent-listen-port=16384", "--metrics-export-port=16385",
         "--min-worker-port=16400", "--max-worker-port=16450"]
UNIT = "sglang-ops-test-ray-tls"
# The ray role's environment names, with this test's files.
ENV = ray_tls_env({"files": {"ray_tls_cert": WORK + "/cert.pem", "ray_tls_key": WORK + "/key.pem",
                             "ray_tls_ca": WORK + "/ca.pem"}})
# Both clients give up on an unanswering GCS within seconds instead of Ray's minute: the refused
# one then fails (rc 1, "Failed to connect to GCS") rather than running into `timeout`.
CLIENT_TIMEOUTS = ["RAY_gcs_rpc_server_connect_timeout_s=2", "RAY_gcs_rpc_server_reconnect_timeout_s=5"]
# The client is the collection's own probe (ray_cluster_info, verify, sglang-ops status).
PROBE_ARGS = json.dumps({"address": "%s:%d" % (IP1, GCS), "timeout": 0, "expect_gpus": 0, "expect_ips": []})


def start(host, argv):
    env = sum((["-E", "%s=%s" % kv] for kv in sorted(dict(ENV, RAY_USAGE_STATS_ENABLED="0").items())), [])
    # As the ray role's unit stops Ray: SIGTERM to `ray start --block`, then the rest killed.
    on_host(host, " ".join(["systemd-run", "--unit=" + UNIT, "-p", "KillMode=mixed", "-p", "TimeoutStopSec=10", "--uid=" + USER, "--gid=" + USER, "-p",
                            "WorkingDirectory=" + WORK] + env + [VENV + "/bin/ray", "start", "--block"] + argv))


def client(host, tls):
    env = ["%s=%s" % kv for kv in sorted(ENV.items())] if tls else ["RAY_USE_TLS=0"]
    proc = subprocess.run(["podman", "exec", host, "timeout", "90", "runuser", "-u", USER, "--", "env", *env, *CLIENT_TIMEOUTS,
                           VENV + "/bin/python", "-c", PROBE, PROBE_ARGS], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def alive(out):
    """The alive nodes' addresses from the probe's JSON line (Ray's own log lines start "[20")."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return sorted(n["ip"] for n in json.loads(lines[-1])["nodes"] if n["alive"]) if lines else None


def test_ray_cluster_with_tls_refuses_a_client_without_it(deployed, tmp_path):
    tls = make_ca(tmp_path, [IP1, IP2, "127.0.0.1"])
    try:
        for host in (H1, H2):
            on_host(host, "install -d -o %s -g %s -m 0700 %s" % (USER, USER, WORK))
            for name in ("cert", "key", "ca"):
                subprocess.run(["podman", "exec", "-i", host, "sh", "-c", "umask 077; cat > %s/%s.pem; chown %s: %s/%s.pem"
                                % (WORK, name, USER, WORK, name)], input=tls[name], text=True, check=True)
        common = PORTS + ["--num-cpus=1", "--num-gpus=0", "--object-store-memory=78643200",
                          "--temp-dir=%s/tmp" % WORK, "--disable-usage-stats"]
        start(H1, ["--head", "--port=%d" % GCS, "--node-ip-address=" + IP1, "--include-dashboard=false",
                   "--ray-client-server-port=16386"] + common)
        start(H2, ["--address=%s:%d" % (IP1, GCS), "--node-ip-address=" + IP2] + common)
        # With the certificate: both nodes, within a minute on a loaded machine.
        seen = []
        for _ in range(12):
            rc, out = client(H1, tls=True)
            seen = (alive(out) if rc == 0 else None) or []
            if seen == sorted([IP1, IP2]):
                break
            on_host(H1, "sleep 5")
        assert seen == sorted([IP1, IP2]), out[-3000:]
        # Without it, on the same address the client above just used: refused, no node listed.
        rc, out = client(H2, tls=False)
        assert rc == 1 and alive(out) is None, out[-3000:]
        assert "Failed to connect to GCS" in out, out[-3000:]
    finally:
        for host in (H2, H1):  # the worker first: stopped after its head it waits for the GCS
            on_host(host, "systemctl stop %s 2>/dev/null; systemctl reset-failed %s 2>/dev/null; rm -rf %s; true"
                    % (UNIT, UNIT, WORK))
