"""The verify report: rows from check results, and a table that never calls 'not run' a pass."""

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.report import render, totals, verify_rows

RAY_UNIT = DEFAULTS["ray_unit_name"]

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
    # The 6th: metrics, with no Prometheus of ours to ask (cluster_prometheus_host unset).
    assert status(rows, "metrics", "a")["status"] == "not run"
    assert render(rows)[-1] == "14 passed, 0 failed, 6 not run"


NOT_STARTED = {"g": {"start": False, "reason": "not started: no GPU (cluster_gpus_fake on a, b)"}}
STARTED = {"g": {"start": True, "reason": "GPUs present"}}
ENABLED = {"status": {"LoadState": "loaded", "ActiveState": "inactive", "UnitFileState": "enabled"}}
PROBE = {"health_generate": {"ok": True, "status": 200}, "models": {"ok": True, "status": 200, "ids": ["m"]},
         "unauthorized": {"ok": True, "status": 401},
         "generation": {"ok": True, "status": 200, "text": "Paris", "seconds": 0.2},
         "benchmark": {"requests": 16, "succeeded": 16, "req_per_s": 8.0, "output_tok_per_s": 250.0,
                       "ttft_p50_ms": 40.0, "ttft_p99_ms": 90.0}}


def test_lab_server_installed_but_never_passed_as_running():
    rows = verify_rows(results(a={"server_unit": ENABLED}, b={"server_unit": ENABLED}), PLAN, False, NOT_STARTED)
    assert status(rows, "server unit", "b")["status"] == "pass"
    assert "not started: no GPU" in status(rows, "server unit", "b")["reason"]
    for check in ("health_generate", "api key enforced", "test generation", "benchmark"):
        assert status(rows, check, "a")["status"] == "not run"
    assert status(rows, "server rank", "a")["status"] == "not run"


def test_running_group_probed_at_rank0():
    health = {"ok": True, "reason": "2 scheduler(s), 9000 MiB on the GPUs"}
    rows = verify_rows(results(a={"server_unit": UNIT_OK, "server_health": health, "probe": PROBE},
                               b={"server_unit": UNIT_OK, "server_health": health}), PLAN, True, STARTED)
    assert all(r["status"] == "pass" for r in rows if r["check"] not in ("GPU placement", "metrics")), render(rows)
    assert "TTFT p50 40 ms p99 90 ms" in status(rows, "benchmark", "a")["reason"]


def test_running_group_failures_are_named():
    dead = {"ok": False, "reason": "unit active but no sglang::* process (1 processes)"}
    probe = dict(PROBE, unauthorized={"ok": False, "status": 200}, generation={"ok": False, "status": 500})
    del probe["benchmark"]
    rows = verify_rows(results(a={"server_unit": UNIT_OK, "probe": probe, "server_health": {"ok": True, "reason": "x"}},
                               b={"server_unit": {"status": {"LoadState": "not-found"}}, "server_health": dead}),
                       PLAN, True, STARTED)
    assert status(rows, "server unit", "b")["status"] == "fail"
    assert status(rows, "server rank", "b")["reason"].startswith("unit active but no sglang")
    assert status(rows, "api key enforced", "a")["reason"] == "HTTP 200 without the key"
    assert status(rows, "test generation", "a")["status"] == "fail"
    assert status(rows, "benchmark", "a")["status"] == "not run"


def test_failures_are_named():
    dead = dict(RAY, nodes=[RAY["nodes"][0], dict(RAY["nodes"][1], alive=False)], placement=None)
    failed_unit = {"status": {"LoadState": "loaded", "ActiveState": "failed", "UnitFileState": "enabled"}}
    rows = verify_rows(results(b={"ray_unit": failed_unit,
                                  "mesh": {"results": [{"to": "a", "port": 20000, "ok": False}]}},
                               a={"ray": dead}), PLAN, gpu_real=True)
    assert status(rows, "ray unit", "b")["reason"].startswith("%s is failed / enabled" % RAY_UNIT)
    assert status(rows, "port mesh", "b")["reason"] == "cannot reach a:20000"
    assert status(rows, "GPU placement", "a")["status"] == "not run"
    assert "the sglang_server role has not run" in status(rows, "health_generate", "a")["reason"]
    lines = render(rows)
    assert "FAIL ray unit on b: %s is failed / enabled (journalctl -u %s)" % (RAY_UNIT, RAY_UNIT) in lines
    assert lines[0].split() == ["check", "a", "b"]


def test_firewall_disabled_and_missing_unit():
    rows = verify_rows(results(a={"firewall_unit": {"skipped": True}}, b={"firewall_unit": {"status": {"LoadState": "not-found"}}}),
                       PLAN, gpu_real=False)
    assert status(rows, "firewall", "a")["status"] == "not run"
    assert status(rows, "firewall", "b")["reason"] == "sglang-firewall is not installed"


def test_totals_line():
    assert totals(results(), PLAN) == ("Ray ? at 10.0.0.10:6379: 2 / 2 nodes alive, 4 / 4 GPUs "
                                       "(declared fake: CPU test hosts)")


ROUTER_PLAN = build_plan({"g": ["a", "b"]}, {
    h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=2, sglang_model_path="m",
            sglang_router=True) for h, ip in (("a", "10.0.0.10"), ("b", "10.0.0.11"))})


def test_router_row():
    rows = verify_rows(results(a={"router_unit": ENABLED}), ROUTER_PLAN, False, NOT_STARTED)
    assert status(rows, "router", "a")["status"] == "pass"
    assert "not started: no GPU" in status(rows, "router", "a")["reason"]
    up = {"json": {"workers": [{"url": "http://10.0.0.10:30000", "is_healthy": True}]}}
    rows = verify_rows(results(a={"router_unit": UNIT_OK, "router_workers": up}), ROUTER_PLAN, True, STARTED)
    assert status(rows, "router", "a") == {"check": "router", "node": "a", "status": "pass",
                                           "reason": "1 of 1 groups healthy behind it"}
    down = {"json": {"workers": [{"url": "http://10.0.0.10:30000", "is_healthy": False}]}}
    rows = verify_rows(results(a={"router_unit": UNIT_OK, "router_workers": down}), ROUTER_PLAN, True, STARTED)
    assert status(rows, "router", "a")["status"] == "fail"
    rows = verify_rows(results(), ROUTER_PLAN, True, STARTED)
    assert "not installed" in status(rows, "router", "a")["reason"]


PD_PLAN = build_plan({"pre": ["a"], "dec": ["b"]}, {
    h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=2, cluster_gpus_fake=fake,
            sglang_model_path="m", sglang_router=True, sglang_pd_role=role)
    for h, ip, role, fake in (("a", "10.0.0.10", "prefill", True), ("b", "10.0.0.11", "decode", True))})


def test_pd_rows_honest_without_gpu_and_judged_with_servers():
    stopped = {g: {"start": False, "reason": "not started: no GPU (cluster_gpus_fake on a)"} for g in ("pre", "dec")}
    rows = verify_rows(results(a={"router_unit": ENABLED}), PD_PLAN, False, stopped)
    assert status(rows, "pd prefill", "a")["status"] == "not run"
    assert status(rows, "pd decode", "b")["reason"] == "not started: no GPU (cluster_gpus_fake on a)"
    running = {g: {"start": True, "reason": "GPUs present"} for g in ("pre", "dec")}
    both = {"json": {"workers": [{"url": "http://10.0.0.10:30000", "is_healthy": True},
                                 {"url": "http://10.0.0.11:30000", "is_healthy": True}]}}
    rows = verify_rows(results(a={"router_unit": UNIT_OK, "router_workers": both}), PD_PLAN, True, running)
    assert status(rows, "pd prefill", "a") == {
        "check": "pd prefill", "node": "a", "status": "pass",
        "reason": "http://10.0.0.10:30000 healthy behind the router (prefill, bootstrap port 8998)"}
    assert status(rows, "router", "a")["reason"] == "PD mode: 2 of 2 prefill/decode servers healthy behind it"
    one = {"json": {"workers": [{"url": "http://10.0.0.10:30000", "is_healthy": True}]}}
    rows = verify_rows(results(a={"router_unit": UNIT_OK, "router_workers": one}), PD_PLAN, True, running)
    assert status(rows, "pd decode", "b")["status"] == "fail"
    assert status(rows, "router", "a")["status"] == "fail"
