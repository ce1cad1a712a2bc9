"""The verdict on a live Ray cluster: who is missing, how many GPUs; and the probe that reads it."""

import json
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import PROBE, summarize

NODES = [
    {"ip": "10.0.0.10", "alive": True, "gpus": 4.0},
    {"ip": "10.0.0.11", "alive": False, "gpus": 4.0},  # Ray keeps dead nodes listed
    {"ip": "10.0.0.11", "alive": True, "gpus": 4.0},   # ... and the rejoined one
]


def test_complete_cluster():
    s = summarize(NODES, {"a": "10.0.0.10", "b": "10.0.0.11"}, 8)
    assert (s["alive_nodes"], s["dead_nodes"], s["gpus_total"], s["missing"], s["problems"]) == (2, 1, 8.0, [], [])


def test_missing_host_and_gpus_named():
    s = summarize(NODES[:2], {"a": "10.0.0.10", "b": "10.0.0.11"}, 8)
    assert s["missing"] == ["b"]
    assert s["problems"] == ["not alive in the Ray cluster: b (10.0.0.11)", "4 GPUs alive, 8 expected"]


from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import placement_problems  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.module_utils import slurm_node  # noqa: E402

PLAN = build_plan({"g": ["a", "b"]}, {
    h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=4, cluster_gpu_ids=[2, 3],
            sglang_model_path="m") for h, ip in (("a", "10.0.0.10"), ("b", "10.0.0.11"))})


def task(ip, gpu):
    return {"ip": ip, "gpu_ids": [gpu], "cuda_visible_devices": gpu}


def test_placement_as_planned():
    tasks = [task("10.0.0.10", "2"), task("10.0.0.10", "3"), task("10.0.0.11", "2"), task("10.0.0.11", "3")]
    assert placement_problems(tasks, PLAN) == []


def test_placement_problems_named():
    tasks = [task("10.0.0.10", "2"), task("10.0.0.10", "2"), task("10.0.0.11", "0"), task("10.0.0.11", "3")]
    problems = placement_problems(tasks, PLAN)
    assert problems[0].startswith("a: Ray placed 2 GPU tasks with ids ['2', '2'], 2 GPUs planned")
    assert problems[1] == "b: Ray handed out GPU ids ['0'] outside CUDA_VISIBLE_DEVICES 2,3"


# The probe itself, run as a separate Python against a test double of Ray's GCS client (a `ray`
# package in tmp_path that answers from a script of node tables): when it stops polling, what it
# prints, and how it fails. The real client is exercised on the lab (test_ray, test_ray_tls).


GCS_CLIENT_DOUBLE = r'''
import json, os
class _Info:
    def __init__(self, d):
        self.node_id = bytes.fromhex(d["id"])
        self.node_manager_address, self.node_manager_hostname = d["ip"], d["host"]
        self.state = 0 if d["alive"] else 1
        self.resources_total = {"GPU": d["gpus"], "CPU": 2.0}
class GcsClient:
    """Test double: answer i of the script on the i-th read (the last one from then on)."""
    def __init__(self, address):
        self.address = address
    def get_all_node_info(self, timeout=None):
        path = os.environ["GCS_DOUBLE_SCRIPT"]
        script = json.load(open(path))
        n = int(open(path + ".reads").read()) if os.path.exists(path + ".reads") else 0
        open(path + ".reads", "w").write(str(n + 1))
        answer = script[min(n, len(script) - 1)]
        if isinstance(answer, str):
            raise RuntimeError(answer)
        return {i: _Info(d) for i, d in enumerate(answer)}
'''
A = {"id": "aa", "ip": "10.0.0.1", "host": "a", "alive": True, "gpus": 4.0}
B = {"id": "bb", "ip": "10.0.0.2", "host": "b", "alive": True, "gpus": 4.0}
B_DEAD = dict(B, alive=False)


@pytest.fixture
def gcs_double(tmp_path):
    """(address, env_for(script), reads()): a listening TCP port (the probe asks TCP first), the
    environment that makes a Python import the double answering `script`, and its read count."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray/__init__.py").write_text("__version__ = '9.9.9'\n")
    (tmp_path / "ray/_raylet.py").write_text(GCS_CLIENT_DOUBLE)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    script_file = tmp_path / "script.json"

    def env_for(script):
        script_file.write_text(json.dumps(script))
        return {"PYTHONPATH": str(tmp_path), "GCS_DOUBLE_SCRIPT": str(script_file)}

    def reads():
        done = tmp_path / "script.json.reads"
        return int(done.read_text()) if done.exists() else 0

    yield "127.0.0.1:%d" % listener.getsockname()[1], env_for, reads
    listener.close()


@pytest.fixture
def gcs(gcs_double):
    """A runner of the probe against the double."""
    address, env_for, reads = gcs_double

    def probe(script, timeout, expect_ips=(), expect_gpus=0, port=None):
        args = {"address": "127.0.0.1:%d" % port if port else address, "timeout": timeout,
                "expect_ips": list(expect_ips), "expect_gpus": expect_gpus}
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, check=False,
                              env=env_for(script))
        out = json.loads(proc.stdout.splitlines()[-1]) if proc.returncode == 0 else proc.stderr
        return proc.returncode, out, reads(), time.monotonic() - t0

    return probe


@pytest.mark.parametrize("script, expect, reads", [
    ([[A, B]], {"10.0.0.1", "10.0.0.2"}, 1),                # complete at once: one read
    ([[A], [A, B_DEAD], [A, B]], {"10.0.0.1", "10.0.0.2"}, 3),  # polled until b is alive
    (["unavailable", [A, B]], {"10.0.0.1", "10.0.0.2"}, 2),    # a failed read is retried
])
def test_probe_polls_until_the_expected_nodes_are_alive(gcs, script, expect, reads):
    rc, out, n, _seconds = gcs(script, timeout=20, expect_ips=expect, expect_gpus=8)
    assert rc == 0 and n == reads
    assert out["ray_version"] == "9.9.9"
    assert {x["ip"] for x in out["nodes"] if x["alive"]} == expect
    assert out["nodes"][0] == {"node_id": "aa", "ip": "10.0.0.1", "hostname": "a", "alive": True, "gpus": 4.0, "cpus": 2.0}


def test_probe_returns_the_incomplete_cluster_at_the_deadline(gcs):
    rc, out, n, seconds = gcs([[A, B_DEAD]], timeout=2, expect_ips=["10.0.0.1", "10.0.0.2"])
    assert rc == 0 and [x["alive"] for x in out["nodes"]] == [True, False]
    assert 2 <= seconds < 10 and n >= 3  # polled every 0.5 s, then gave the last table


def test_probe_reads_once_without_a_timeout(gcs):
    rc, out, n, _seconds = gcs([[A]], timeout=0, expect_ips=["10.0.0.2"])
    assert rc == 0 and n == 1 and len(out["nodes"]) == 1


def test_probe_names_the_last_error_when_it_never_read(gcs):
    rc, err, _reads, _seconds = gcs(["InvalidAuthToken: Authentication token is missing"], timeout=1)
    assert rc == 1 and "cannot read the GCS node table at 127.0.0.1:" in err and "InvalidAuthToken" in err


def test_probe_asks_tcp_first_where_nothing_listens(gcs):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    rc, err, reads, seconds = gcs([[A]], timeout=0, port=port)
    assert rc == 1 and reads == 0 and "ConnectionRefusedError" in err and seconds < 5


# The SLURM node program runs the same probe, shipped in the job's spec, on the Ray head.
def slurm_ray_spec(address, nodes):
    return {"ray": {"gcs_address": address, "nodes": len(nodes), "expect_ips": sorted(n["ip"] for n in nodes),
                    "probe": PROBE, "venv_python": sys.executable}}


def test_slurm_head_reports_the_nodes_once_all_joined(gcs_double):
    address, env_for, reads = gcs_double
    got = slurm_node.ray_probe(slurm_ray_spec(address, [A, B]), env_for([[A], [A, B]]), time.monotonic() + 20)
    assert got == {"ray_version": "9.9.9", "alive_nodes": 2, "alive_ips": ["10.0.0.1", "10.0.0.2"]} and reads() == 2


def test_slurm_head_names_the_error_when_the_gcs_never_answers(gcs_double):
    address, env_for, _reads = gcs_double
    got = slurm_node.ray_probe(slurm_ray_spec(address, [A, B]), env_for(["InvalidAuthToken: no token"]), time.monotonic() + 1)
    assert got["alive_nodes"] == 0 and "cannot read the GCS node table" in got["error"] and "InvalidAuthToken" in got["error"]
