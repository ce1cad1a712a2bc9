"""Preflight verdicts on node facts: identity, GPUs, MTU, clock, disk, parity, collective."""

import copy
from pathlib import Path

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import collective, preflight
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.gpu import empty

FIX = Path(__file__).parent / "fixtures"
IP_JSON = (FIX / "ip-addr.json").read_text()


def test_parse_ip_addr():
    eth0 = preflight.parse_ip_addr(IP_JSON, "eth0")
    assert eth0 == {"exists": True, "up": True, "operstate": "UP", "mtu": 1500,
                    "addresses": ["10.89.78.11", "fd42:5a6c:78::b", "fe80::ff:aff:fe59:4e0b"]}
    assert preflight.parse_ip_addr(IP_JSON, "ib0")["up"] is False
    assert preflight.parse_ip_addr(IP_JSON, "eth9")["exists"] is False


PLAN = build_plan({"g": ["a", "b"]}, {
    "a": dict(ansible_host="10.89.78.11", cluster_interface="eth0", cluster_gpus_per_node=4, cluster_gpus_fake=True,
              sglang_model_path="m"),
    "b": dict(ansible_host="10.89.78.12", cluster_interface="eth0", cluster_gpus_per_node=4, cluster_gpus_fake=True,
              sglang_model_path="m")})


def facts(ip, **over):
    f = {"interface": {"exists": True, "up": True, "operstate": "UP", "mtu": 1500, "addresses": [ip]},
         "interfaces": ["lo", "eth0"], "rdma_devices": [], "gpu": empty(), "clock_skew": 0.1,
         "disk_free_gb": 80.0, "disk_path": "/var/lib", "venv_python": "3.11.2",
         "venv": {"torch": "2.13.0+cpu", "ray": "2.60.0"}}
    f.update(over)
    return f


def both(**over_b):
    return {"a": facts("10.89.78.11"), "b": facts("10.89.78.12", **over_b)}


@pytest.mark.parametrize("over,expected", [
    ({}, []),
    ({"interface": {"exists": False, "up": False, "operstate": None, "mtu": None, "addresses": []}},
     ["b: cluster_interface: eth0 does not exist on this node (it has lo, eth0)"]),
    ({"interface": {"exists": True, "up": False, "operstate": "DOWN", "mtu": 1500, "addresses": ["10.89.78.12"]}},
     ["b: cluster_interface: eth0 is DOWN"]),
    ({"interface": {"exists": True, "up": True, "operstate": "UP", "mtu": 1500, "addresses": ["10.1.1.1"]}},
     ["b: cluster_ip: 10.89.78.12 is not an address of eth0 (it has 10.1.1.1)"]),
    ({"interface": {"exists": True, "up": True, "operstate": "UP", "mtu": 9000, "addresses": ["10.89.78.12"]}},
     ["b: cluster_interface: MTU 9000, the rest of g uses 1500"]),
    ({"clock_skew": -93.5}, ["b: clock: -93.50 s from the controller"]),
    ({"clock_skew": 95.0, "clock_window": 1.5}, ["b: clock: +93.50 s from the controller"]),
    ({"clock_skew": 3.1, "clock_window": 1.5}, []),  # may be transit: not certain
    ({"disk_free_gb": 3.2}, ["b: disk: 3.2 GB free at /var/lib, 50 GB needed"]),
    ({"gpu": dict(empty("nvidia"), count=8)}, ["b: cluster_gpus_fake: the node has 8 real nvidia GPUs"]),
])
def test_node_problems(over, expected):
    problems = preflight.node_problems(PLAN, both(**over), max_skew_s=2.0, min_free_gb=50)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected):
        assert problem.startswith(start) and "Fix:" in problem


def test_parity_names_the_odd_node():
    f = {h: facts("10.0.0.%d" % i) for i, h in enumerate(["a", "b", "c"])}
    f["c"]["venv"] = {"torch": "2.13.0+cpu", "ray": "2.59.0"}
    f["b"]["venv_python"] = "3.12.1"
    problems = preflight.parity_problems(f)
    assert problems[0].startswith("b: python 3.12.1 differs from 3.11.2")
    assert problems[1].startswith("c: ray 2.59.0 differs from 2.60.0")
    assert len(problems) == 2


def test_parity_against_pins_names_the_odd_one_of_two():
    f = {"a": facts("10.0.0.1"), "b": facts("10.0.0.2", venv={"torch": "2.13.0+cpu", "ray": "2.59.0"})}
    assert preflight.parity_problems(f, {"ray": "2.60.0", "torch": "2.13.0"}) == [
        "b: ray 2.59.0, but sglang_versions pins 2.60.0. Fix: re-run deploy.yml (the install puts every "
        "node on the pins)"]
    tie = preflight.parity_problems(f)
    assert tie == ["a, b: ray differs between nodes (a 2.60.0, b 2.59.0). Fix: install the same ray on every node"]


def test_parity_ignores_unknown_and_equal():
    f = {"a": facts("10.0.0.1"), "b": facts("10.0.0.2", venv={}, venv_python=None)}
    assert preflight.parity_problems(f) == []


def test_nccl_transport_detection():
    assert collective.nccl_transport((FIX / "nccl-info-ib.log").read_text()) == ("IB", ["NET/IB"])
    assert collective.nccl_transport((FIX / "nccl-info-socket.log").read_text()) == ("Socket", ["NET/Socket"])
    assert collective.nccl_transport("") == (None, [])


OK0 = {"rank": 0, "ok": True, "backend": "nccl", "transport": "IB",
       "figures": [{"bytes": 16 << 20, "latency_us": 900.0, "algbw_gbps": 18.6, "busbw_gbps": 18.6}]}


def test_collective_names_the_rank_that_failed_first():
    results = {"a": {"rank": 0, "ok": False, "stage": "peer", "error": "stopped: rank 1 failed first"},
               "b": {"rank": 1, "ok": False, "stage": "init", "backend": "gloo",
                     "error": "RuntimeError: Unable to find address for: eth9"}}
    problems = collective.collective_problems("g", results)[0]
    assert len(problems) == 1 and problems[0].startswith("b: collective (gloo, group g): RuntimeError")


def test_collective_socket_fallback_and_floor():
    results = {"a": OK0, "b": dict(OK0, rank=1, transport="Socket")}
    problems, warnings = collective.collective_problems("g", results, rdma_hosts={"b"})
    assert problems and "fell back to NET/Socket" in problems[0] and not warnings
    problems, warnings = collective.collective_problems("g", results, rdma_hosts={"b"}, socket_fallback="warn")
    assert not problems and warnings
    problems = collective.collective_problems("g", {"a": OK0}, min_busbw_gbps=40)[0]
    assert problems == ["g: collective: bus bandwidth 18.600 GB/s is below preflight_min_busbw_gbps 40"]
    assert collective.collective_problems("g", {"a": copy.deepcopy(OK0)}, min_busbw_gbps=10) == ([], [])


def test_figures_table():
    assert collective.format_figures(OK0["figures"]) == [
        "  size   latency        algbw        busbw", "16 MiB  900.0 us  18.600 GB/s  18.600 GB/s"]
