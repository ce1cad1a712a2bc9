"""The verify report: rows from check results, and a table that never calls 'not run' a pass."""

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.report import render, totals, verify_rows

PLAN = build_plan({"g": ["a", "b"]}, {
    h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=2, cluster_gpus_fake=True,
            sglang_model_path="m") for h, ip in (("a", "10.0.0.10"), ("b", "10.0.0.11"))})
UNIT_OK = {"status": {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled"}}
RAY = {"nodes": [{"ip": "10.0.0.10", "alive": True, "gpus": 2.0, "node_id": "aa" * 20},
                 {"ip": "10.0.0.11", "alive": True, "gpus": 2.0, "node_id": "bb" * 20}],
       "placement": [{"ip": "10.0.0.10", "gpu_ids": ["0"]}, {"ip": "10.0.0.10", "gpu_ids": ["1"]},
                     {"ip": "10.0.0.11", "gpu_ids": ["0"]}, {"ip": "10.0.0.11", "gpu_ids": ["1"]}]}


def results(**over):
    base = {h: {"ray_unit": UNIT_OK, "firewall_unit": UNIT_OK, "ray": RAY,
                "mesh": {"results": [{"to": "x", "port": 1, "ok": True}]},
                "collective": {"ok": True, "backend": "gloo", "figures": [{"busbw_gbps": 0.7}]}} for h in ("a", "b")}
    for host, values in over.items():
        base[host].update(values)
    return base


def status(rows, check, node):
    return next(r for r in rows if r["check"] == check and r["node"] == node)


def test_healthy_cpu_cluster():
    rows = verify_rows(results(), PLAN, gpu_real=False)
    assert {r["status"] for r in rows if r["check"] in ("ray unit", "port mesh", "collective", "GPU placement")} == {"pass"}
    served = [r for r in rows if r["check"] in ("health_generate", "v1/models", "test generation", "benchmark")]
    assert len(served) == 4 and all(r["status"] == "not run" and "no GPU" in r["reason"] for r in served)
    assert render(rows)[-1] == "14 passed, 0 failed, 4 not run"


def test_failures_are_named():
    dead = dict(RAY, nodes=[RAY["nodes"][0], dict(RAY["nodes"][1], alive=False)], placement=None)
    rows = verify_rows(results(b={"ray_unit": {"status": {"LoadState": "loaded", "ActiveState": "failed",
                                                           "UnitFileState": "enabled"}},
                                  "mesh": {"results": [{"to": "a", "port": 20000, "ok": False}]}},
                               a={"ray": dead}, ), PLAN, gpu_real=True)
    assert status(rows, "ray unit", "b")["reason"].startswith("sglang-ray is failed / enabled")
    assert status(rows, "port mesh", "b")["reason"] == "cannot reach a:20000"
    assert status(rows, "GPU placement", "a")["status"] == "not run"
    assert "no SGLang server deployed" in status(rows, "health_generate", "a")["reason"]
    lines = render(rows)
    assert "FAIL ray unit on b: sglang-ray is failed / enabled (journalctl -u sglang-ray)" in lines
    assert lines[0].split() == ["check", "a", "b"]


def test_firewall_disabled_and_missing_unit():
    rows = verify_rows(results(a={"firewall_unit": {"skipped": True}}, b={"firewall_unit": {"status": {"LoadState": "not-found"}}}),
                       PLAN, gpu_real=False)
    assert status(rows, "firewall", "a")["status"] == "not run"
    assert status(rows, "firewall", "b")["reason"] == "sglang-firewall is not installed"


def test_totals_line():
    assert totals(results(), PLAN) == ("Ray ? at 10.0.0.10:6379: 2 / 2 nodes alive, 4 / 4 GPUs "
                                       "(declared fake: CPU test hosts)")
