"""Metrics on the shared pair: Prometheus (the monitoring role, on H1) scrapes the node exporter and
Ray of every host and the router; promtool passes its configuration and alert rules; verify reads
every target through Prometheus's API; the metrics ports answer the Prometheus host only.

The deploy of the `deployed` fixture already runs the node exporters and every metrics flag
(cluster_metrics is on by default); this module adds the Prometheus host and, to have an outsider
on the lab bridge, narrows the cluster's networks to the two nodes, with the firewall and
monitoring plays only, and puts both back afterwards. SGLang cannot serve on these CPU hosts: its
ranks are no scrape target here (verify says "not run: no GPU"). The router runs without healthy
workers; on CPU hosts deploy leaves it enabled and stopped, so the test starts it as an operator
would (test_secrets.py does the same).
"""

import json
import subprocess
import time
import urllib.parse

import pytest
import yaml

from conftest import FENCE, H1, H2, INVENTORY, IP1, IP2, PORT_SCAN, on_host, playbook
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, ROUTER_UNIT

PROM = "http://%s:%d" % (IP1, DEFAULTS["cluster_prometheus_port"])
NODE, RAY, RAY_AGENT, ROUTER = (DEFAULTS["cluster_node_exporter_port"], DEFAULTS["ray_autoscaler_metrics_port"],
                                DEFAULTS["ray_metrics_export_port"], DEFAULTS["sglang_router_metrics_port"])
# Ray: its cluster view, the autoscaler's metrics on the head (H1). The nodes' own Ray metrics
# agents need ray[default]'s opencensus, which the pinned install lacks (cluster_ray_node_metrics).
WANT = {("node", "%s:%d" % (IP1, NODE)), ("node", "%s:%d" % (IP2, NODE)), ("ray", "%s:%d" % (IP1, RAY)),
        ("router", "%s:%d" % (IP1, ROUTER))}
TAGS = ["--tags", "firewall,monitoring"]


def prometheus(path):
    return json.loads(on_host(H1, "curl -sf --max-time 5 '%s%s'" % (PROM, path)))


@pytest.fixture(scope="module")
def monitored(deployed, tmp_path_factory):
    extra = tmp_path_factory.mktemp("metrics") / "metrics.yml"
    # Extra vars outrank the lab's group_vars: the controller (the bridge's gateway) is then outside.
    extra.write_text(yaml.safe_dump({"cluster_prometheus_host": H1, "cluster_cidrs": ["%s/32" % IP1, "%s/32" % IP2]}))
    run = playbook("playbooks/deploy.yml", INVENTORY, "-e", "@%s" % extra, *TAGS)
    assert run.rc == 0, run.out[-5000:]
    on_host(H1, "systemctl start %s" % ROUTER_UNIT)
    yield {"extra": extra, "run": run}
    on_host(H1, "systemctl stop %s" % ROUTER_UNIT)
    t0 = time.monotonic()
    back = playbook("playbooks/deploy.yml", INVENTORY, *TAGS)
    print("shared pair back to its own networks, no Prometheus: %.1f s" % (time.monotonic() - t0))
    assert back.rc == 0, back.out[-3000:]
    assert on_host(H1, "systemctl is-active sglang-prometheus || true").strip() == "inactive"


def test_prometheus_scrapes_node_exporters_ray_and_router(monitored):
    t0, last = time.monotonic(), None
    while True:
        targets = prometheus("/api/v1/targets?state=active")["data"]["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        if health != last:
            print("%5.1f s: %s" % (time.monotonic() - t0, sorted(health.items())))
            last = health
        if set(health) == WANT and set(health.values()) == {"up"}:
            break
        assert time.monotonic() - t0 < 120, "targets not all up after 120 s: %s" % health
        time.sleep(3)
    labels = {(t["labels"]["job"], t["labels"]["node"]): t["labels"] for t in targets}
    assert labels[("node", H2)]["rank"] == "1" and labels[("node", H2)]["group"] == "lab_model"
    assert labels[("ray", H1)]["role"] == "ray-head"
    assert labels[("router", H1)]["role"] == "router"
    # What each kind really serves: Ray's own metrics, the router's, the systemd units of ours,
    # and the fence's textfile (its coordinator runs on rank 0, H1).
    for query, want in (('sum(autoscaler_active_nodes{job="ray"})', "2"),
                        ('count({__name__=~"smg_.+", job="router"}) > 0', None),
                        # Whether each fence is active at this moment is other tests' subject
                        # (one may be restarting): both nodes report their fence unit's state.
                        ('count(node_systemd_unit_state{name="%s.service", state="active"})' % FENCE, "2"),
                        ('sglang_ops_fence_gave_up{group="lab_model"}', "0")):
        deadline = time.monotonic() + 60
        while True:
            result = prometheus("/api/v1/query?query=" + urllib.parse.quote(query, safe=""))["data"]["result"]
            if result or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert result, query
        if want is not None:
            assert {r["value"][1] for r in result} == {want}, (query, result)


def test_promtool_passes_config_and_rules_and_refuses_a_bad_rule(monitored):
    config = on_host(H1, "promtool check config /etc/sglang/prometheus.yml 2>&1")
    assert "SUCCESS" in config and "FAILED" not in config
    rules = on_host(H1, "promtool check rules /etc/sglang/prometheus-rules.yml 2>&1")
    # NodeDown, RayNodeLost, RayHeadDown, RouterDown, FenceGaveUp (no GPU: no rank 0 rule)
    assert "SUCCESS: 5 rules found" in rules
    # The same check refuses a broken expression: the template's validate can fail.
    bad = on_host(H1, "printf 'groups:\\n- name: x\\n  rules:\\n  - alert: X\\n    expr: up{ == 0\\n' > /tmp/bad.yml; "
                      "promtool check rules /tmp/bad.yml >/dev/null 2>&1; echo $?; rm -f /tmp/bad.yml")
    assert bad.strip() == "1"


def test_rerun_changes_nothing_with_the_router_up_and_its_group_not_started(monitored):
    # As after a reboot: the router's enabled unit runs while its group does not start (no GPU).
    # The re-run changes nothing and leaves the router alone: no worker of a group that does not
    # start is added to it and awaited (that failed after 60 s).
    # The monitoring play and the server play (the router's worker list), not the whole deploy: a
    # router in a state the last deploy did not leave makes every phase run (50 s here).
    since = on_host(H1, "systemctl show -p ActiveEnterTimestampMonotonic --value " + ROUTER_UNIT)
    again = playbook("playbooks/deploy.yml", INVENTORY, "-e", "@%s" % monitored["extra"], "--tags", "firewall,monitoring,server")
    assert again.rc == 0, again.out[-4000:]
    assert {h: r["changed"] for h, r in again.recap.items()} == {H1: 0, H2: 0}, again.changed_tasks
    assert on_host(H1, "systemctl show -p ActiveEnterTimestampMonotonic --value " + ROUTER_UNIT) == since


def test_verify_reads_every_target_through_prometheus(monitored, tmp_path):
    # The all_reduce and the placement tasks are other modules' subject: left out for time.
    report = tmp_path / "verify.json"
    run = playbook("playbooks/verify.yml", INVENTORY, "-e", "@%s" % monitored["extra"],
                   "-e", json.dumps({"verify_collective": False, "verify_ray_placement": False,
                                     "verify_report_path": str(report)}))
    assert run.rc == 0, run.out[-4000:]
    rows = {(r["check"], r["node"]): r for r in json.loads(report.read_text())["checks"]}
    for check, node in (("metrics node", H1), ("metrics node", H2), ("metrics ray", H1), ("metrics router", H1)):
        assert rows[(check, node)]["status"] == "pass", rows[(check, node)]
    assert ("metrics ray", H2) not in rows  # Ray's cluster view lives on the head only
    for node in (H1, H2):
        assert rows[("metrics sglang", node)]["status"] == "not run"
        assert rows[("metrics sglang", node)]["reason"].startswith("not started: no GPU")


def test_metrics_ports_answer_the_prometheus_host_only(monitored):
    ports = [NODE, RAY, RAY_AGENT, ROUTER, DEFAULTS["cluster_prometheus_port"]]
    targets = [[ip, p] for ip in (IP1, IP2) for p in ports]
    t0 = time.monotonic()
    outside = json.loads(subprocess.run(["python3", "-c", PORT_SCAN, json.dumps(targets)], check=True,
                                        stdout=subprocess.PIPE, text=True, timeout=60).stdout)
    print("\noutsider scan of %d metrics ports: %d open, %.1f s" % (len(targets), len(outside), time.monotonic() - t0))
    assert outside == []
    # The Prometheus host reaches H2's; the other cluster member does not reach H1's.
    assert on_host(H1, "nc -z -w 2 %s %d && echo open || echo closed" % (IP2, NODE)).strip() == "open"
    assert on_host(H2, "nc -z -w 2 %s %d && echo open || echo closed" % (IP1, NODE)).strip() == "closed"
    assert on_host(H2, "nc -z -w 2 %s %d && echo open || echo closed" % (IP1, ROUTER)).strip() == "closed"
