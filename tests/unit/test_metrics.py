"""Metrics: planned ports and refusals, scrape targets, alert rules, the firewall's metrics rules,
the flags the units get, verify's rows, and the dashboard's metric names."""

import json
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.sglang_ops.cluster.plugins.module_utils import fence, metrics, node_spec, report, server
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import PlanError, build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.firewall import nft_ruleset
from ansible_collections.sglang_ops.cluster.plugins.module_utils.host_firewall import openings

ROOT = Path(__file__).resolve().parents[2]
FAKE = {"g": {"start": False, "reason": "not started: no GPU"}}
REAL = {"g": {"start": True, "reason": "GPUs present"}}


def make_plan(fake=True, **extra):
    hv = {h: dict(ansible_host="10.0.0.%d" % (10 + i), cluster_interface="eth0", cluster_gpus_per_node=4,
                  cluster_gpus_fake=fake, sglang_model_path="m", cluster_cidrs=["10.0.0.0/24"],
                  sglang_router=True, **extra) for i, h in enumerate(("a", "b"))}
    return build_plan({"g": ["a", "b"]}, hv)


def test_defaults_fix_every_metrics_port():
    m = make_plan()["metrics"]
    assert m["ports"] == {"a": {"node": 9100, "ray": 6386, "router": 29000}, "b": {"node": 9100, "ray": 6386}}
    assert m["prometheus"] is None and m["scrapers"] == [] and m["file_sd"] == ""


def test_prometheus_host_is_the_one_scraper():
    m = make_plan(cluster_prometheus_host="b", cluster_metrics_scrape_cidrs=["192.0.2.9"])["metrics"]
    assert m["prometheus"] == {"host": "b", "ip": "10.0.0.11", "port": 9090, "url": "http://10.0.0.11:9090"}
    assert m["scrapers"] == ["10.0.0.11/32", "192.0.2.9/32"]
    assert m["ports"]["b"]["prometheus"] == 9090 and "prometheus" not in m["ports"]["a"]


def test_metrics_off():
    plan = make_plan(cluster_metrics=False)
    assert plan["metrics"] is None
    assert metrics.scrape_only_ports(plan, "a") == []
    assert "--enable-metrics" not in server.group_units(plan, "g", {})["a"]["argv"]
    argv = server.router_unit(plan, {})["a"]["argv"]
    # The router serves metrics anyway: on loopback then, never 0.0.0.0.
    assert argv[argv.index("--prometheus-host") + 1] == "127.0.0.1"


@pytest.mark.parametrize("extra, key, words", [
    ({"cluster_prometheus_host": "c"}, "cluster_prometheus_host", "is not a node"),
    ({"cluster_node_exporter_port": 6379}, "cluster_node_exporter_port", "is also ray_gcs_port"),
    ({"cluster_node_exporter_port": 20050}, "cluster_node_exporter_port", "dist-init ports 20000-20100"),
    ({"cluster_node_exporter_port": 80}, "cluster_node_exporter_port", "below 1024"),
    ({"sglang_router_metrics_port": 30080}, "sglang_router_metrics_port", "is also sglang_router_port"),
    ({"sglang_router_metrics_port": 30000}, "sglang_router_metrics_port", "is also sglang_port"),
    ({"cluster_prometheus_host": "a", "cluster_prometheus_port": 9100}, "cluster_prometheus_port",
     "is also cluster_node_exporter_port"),
    ({"cluster_metrics_file_sd": "targets.json"}, "cluster_metrics_file_sd", "not an absolute .json or .yml"),
    ({"cluster_metrics_file_sd": "/etc/p/../x.json"}, "cluster_metrics_file_sd", "not an absolute"),
    ({"cluster_metrics_scrape_cidrs": ["prom.example"]}, "cluster_metrics_scrape_cidrs", "is not a CIDR"),
])
def test_refused(extra, key, words):
    with pytest.raises(PlanError) as err:
        make_plan(**extra)
    line = next(p for p in err.value.problems if key in p)
    assert words in line and "Fix:" in line


def test_targets_without_gpus_leave_sglang_out():
    plan = make_plan(cluster_prometheus_host="a")
    got = {(t["job"], t["address"]): t["labels"] for t in metrics.targets(plan, FAKE)}
    # Ray: its cluster view on the head (the autoscaler's metrics); node agents only when asked.
    assert set(got) == {("node", "10.0.0.10:9100"), ("node", "10.0.0.11:9100"), ("ray", "10.0.0.10:6386"),
                        ("router", "10.0.0.10:29000")}
    assert got[("ray", "10.0.0.10:6386")] == {"node": "a", "group": "g", "rank": "0", "role": "ray-head"}
    agents = {(t["job"], t["address"]): t["labels"]
              for t in metrics.targets(make_plan(cluster_ray_node_metrics=True, cluster_prometheus_host="a"), FAKE)}
    assert agents[("ray_node", "10.0.0.11:6385")] == {"node": "b", "group": "g", "rank": "1", "role": "ray-worker"}
    assert metrics.not_scraped(plan, FAKE) == [("g", "not started: no GPU")]


def test_targets_with_gpus_scrape_every_rank_and_dcgm():
    plan = make_plan(fake=False, cluster_prometheus_host="a", cluster_dcgm_exporter=True)
    got = {(t["job"], t["address"]): t["labels"] for t in metrics.targets(plan, REAL)}
    assert got[("sglang", "10.0.0.10:30000")] == {
        "node": "a", "group": "g", "rank": "0", "role": "server", "scheme": "http"}
    assert ("sglang", "10.0.0.11:30000") in got and ("dcgm", "10.0.0.11:9400") in got


def test_prometheus_config_one_job_per_kind_and_rules():
    plan = make_plan(fake=False, cluster_prometheus_host="a")
    spec = metrics.host_spec(plan, "a", REAL)
    config = spec["prometheus_config"]
    assert [j["job_name"] for j in config["scrape_configs"]] == ["node", "ray", "router", "sglang"]
    assert config["rule_files"] == ["/etc/sglang/prometheus-rules.yml"]
    assert spec["prometheus_argv"] == [
        "/usr/bin/prometheus", "--config.file=/etc/sglang/prometheus.yml", "--storage.tsdb.path=/var/lib/sglang/prometheus",
        "--storage.tsdb.retention.time=15d", "--web.listen-address=10.0.0.10:9090"]
    alerts = {r["alert"]: r["expr"] for r in spec["alert_rules"]["groups"][0]["rules"]}
    assert alerts == {"NodeDown": 'up{job="node"} == 0', "RayNodeLost": "sum(autoscaler_active_nodes) < 2",
                      "RayHeadDown": 'up{job="ray"} == 0',
                      "RouterDown": 'up{job="router"} == 0', "SGLangRank0Unhealthy": 'up{job="sglang",rank="0"} == 0',
                      "FenceGaveUp": "sglang_ops_fence_gave_up == 1"}
    # Ansible would template Go's {{ }}; the annotations carry none.
    assert "{{" not in json.dumps(spec["alert_rules"])
    # Without GPUs no rank runs: no rank 0 rule over a target that does not exist.
    cpu = metrics.alert_rules(make_plan(cluster_prometheus_host="a"), FAKE)
    assert "SGLangRank0Unhealthy" not in json.dumps(cpu)
    assert metrics.host_spec(plan, "b", REAL)["prometheus_host"] is False


def test_file_sd_carries_the_job_label():
    plan = make_plan(cluster_metrics_file_sd="/srv/prom/sglang.json")
    spec = metrics.host_spec(plan, "a", FAKE)
    assert {"targets": ["10.0.0.11:9100"], "labels": {"node": "b", "group": "g", "rank": "1", "role": "node",
                                                      "job": "node"}} in spec["file_sd_targets"]
    assert "prometheus_config" not in spec


def test_node_exporter_argv():
    argv = metrics.node_exporter_argv(make_plan(), "b")
    assert argv[:3] == ["/usr/bin/prometheus-node-exporter", "--web.listen-address=10.0.0.11:9100", "--collector.systemd"]
    include = argv[3].split("=", 1)[1]
    for unit in ("sglang-ray.service", "sglang-server-g.service", "sglang-fence-g.service", "sglang-router.service"):
        assert re.fullmatch(include, unit)
    assert not re.fullmatch(include, "ssh.service")
    assert argv[4] == "--collector.textfile.directory=/run/sglang-fence-g"


def test_units_get_the_metrics_flags():
    plan = make_plan()
    assert "--enable-metrics" in server.group_units(plan, "g", {})["b"]["argv"]
    argv = server.router_unit(plan, {})["a"]["argv"]
    assert argv[argv.index("--prometheus-host") + 1] == "10.0.0.10"
    assert argv[argv.index("--prometheus-port") + 1] == "29000"
    r0 = server.fence_argv(plan, "g", "a")
    assert r0[r0.index("--metrics") + 1] == "/run/sglang-fence-g/fence.prom"
    assert "--metrics" not in server.fence_argv(plan, "g", "b")


def test_fence_textfile(tmp_path):
    path = str(tmp_path / "fence.prom")
    fence.write_atomic(path, fence.metrics_text("g", "gave-up", 3))
    text = Path(path).read_text()
    assert 'sglang_ops_fence_gave_up{group="g"} 1\n' in text and 'sglang_ops_fence_restarts{group="g"} 3\n' in text
    assert 'sglang_ops_fence_gave_up{group="g"} 0' in fence.metrics_text("g", "armed", 0)


def test_firewall_admits_only_the_prometheus_host_to_metrics_ports():
    plan = make_plan(cluster_prometheus_host="b")
    lines = [line.strip() for line in nft_ruleset(plan, "a").splitlines()]
    accept = lines.index('tcp dport { 6385, 6386, 9100, 29000 } ip saddr @scrapers_v4 accept comment '
                         '"metrics: the Prometheus host"')
    drop = lines.index('tcp dport { 6385, 6386, 9100, 29000 } drop comment "metrics: only the Prometheus host"')
    cluster = next(i for i, line in enumerate(lines) if "saddr @cluster_v4 accept" in line)
    # Before the cluster's accept: another cluster member is refused too.
    assert accept < drop < cluster
    assert "set scrapers_v4 { type ipv4_addr; flags interval; elements = { 10.0.0.11/32 } }" in lines
    # Prometheus's own port is a cluster port on its host (and nothing on the others).
    assert " 9090," in next(line for line in nft_ruleset(plan, "b").splitlines() if "cluster-only ports" in line)
    assert "9090" not in nft_ruleset(plan, "a")
    # No Prometheus host: nobody but the node itself.
    alone = nft_ruleset(make_plan(), "b")
    assert "scrapers" not in alone and 'tcp dport { 6385, 6386, 9100 } drop comment "metrics: only the Prometheus host"' in alone
    # A host firewall opens them to the cluster; our table narrows them.
    assert "9100" in openings(plan, "a")["cluster"]["ports"]


def test_mesh_leaves_metrics_ports_out():
    ports = node_spec.mesh_args(make_plan(cluster_prometheus_host="a"), "a")["ports"]
    assert not {6385, 6386, 9100} & set(ports)


def _answer(*targets):
    return {"status": "success", "data": {"activeTargets": [
        {"labels": {"job": j, "instance": a}, "health": h, "lastError": e} for j, a, h, e in targets]}}


def test_verify_rows_and_pending():
    plan = make_plan(cluster_prometheus_host="a")
    up = [("node", "10.0.0.10:9100", "up", ""), ("node", "10.0.0.11:9100", "down", "connection refused"),
          ("ray", "10.0.0.10:6386", "up", "")]
    answer = _answer(*up, ("router", "10.0.0.10:29000", "unknown", ""))
    assert metrics.pending(plan, FAKE, answer) == 1
    assert metrics.pending(plan, FAKE, None) == 4
    rows = {(r["check"], r["node"]): r for r in metrics.target_rows(plan, FAKE, _answer(*up), report.row, False)}
    assert rows[("metrics node", "a")]["status"] == "pass" and rows[("metrics ray", "a")]["status"] == "pass"
    assert rows[("metrics node", "b")]["status"] == "fail" and "connection refused" in rows[("metrics node", "b")]["reason"]
    assert rows[("metrics router", "a")]["status"] == "fail"  # not listed at all
    assert rows[("metrics sglang", "a")] == report.row("metrics sglang", "a", "not run", "not started: no GPU")
    down_router = _answer(*up, ("router", "10.0.0.10:29000", "down", "refused"))
    rows = {(r["check"], r["node"]): r for r in metrics.target_rows(plan, FAKE, down_router, report.row, False)}
    assert rows[("metrics router", "a")]["status"] == "not run"
    rows = {(r["check"], r["node"]): r for r in metrics.target_rows(plan, FAKE, down_router, report.row, True)}
    assert rows[("metrics router", "a")]["status"] == "fail"
    assert all(r["status"] == "fail" for r in metrics.target_rows(plan, FAKE, None, report.row) if r["check"] != "metrics sglang")


def test_verify_report_without_prometheus_says_so():
    plan = make_plan(cluster_metrics_file_sd="/srv/prom/sglang.json")
    rows = report.verify_rows({}, plan, False, FAKE)
    assert report.row("metrics", "a", "not run", "no Prometheus of ours (cluster_prometheus_host unset); targets "
                      "written to /srv/prom/sglang.json") in rows


KNOWN = {line.strip() for line in (ROOT / "tests/unit/fixtures/metric_names.txt").read_text().splitlines()
         if line.strip() and not line.startswith("#")}
METRIC = re.compile(r"\b(sglang:[a-z0-9_]+|smg_[a-z0-9_]+|autoscaler_[a-z_]+|DCGM_FI_[A-Z0-9_]+|sglang_ops_[a-z_]+|up)\b")


def _known(name):
    return name in KNOWN or re.sub(r"_(bucket|sum|count)\Z", "", name) in KNOWN


def test_dashboard_names_only_metrics_that_exist():
    dash = json.loads((ROOT / "roles/monitoring/files/sglang-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        names = METRIC.findall(expr)
        assert names, expr
        assert all(_known(n) for n in names), (expr, [n for n in names if not _known(n)])
    titles = " ".join(p["title"] for p in dash["panels"])
    for what in ("throughput", "first token", "queued", "KV cache", "GPU"):
        assert what in titles


def test_alert_rules_name_only_metrics_that_exist():
    rules = metrics.alert_rules(make_plan(fake=False, cluster_prometheus_host="a"), REAL)["groups"][0]["rules"]
    for rule in rules:
        assert all(_known(n) for n in METRIC.findall(rule["expr"])), rule
    yaml.safe_dump(rules)  # plain data, printable by to_nice_yaml
