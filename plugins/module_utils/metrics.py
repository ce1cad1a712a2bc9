"""Metrics: what every node exposes to Prometheus, who may scrape it, and what Prometheus is told.

Why this exists: SGLang, the router and Ray each serve Prometheus metrics, but on ports of their
own choosing (the router binds 0.0.0.0:29000 unless told otherwise) and with nothing that
scrapes them. Here the plan fixes every metrics port, the one host allowed to scrape them (the
firewall drops everyone else), and the scrape targets with their labels (group, rank, role);
the monitoring role only prints what this module returns: Prometheus's configuration, its alert
rules, or a file_sd target file for a site's own Prometheus.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

# The metrics a fence writes for the node exporter's textfile collector (module_utils/fence.py).
FENCE_METRICS_FILE = "fence.prom"
# Where Prometheus keeps its configuration and rules on its host (inside cluster_config_dir).
PROMETHEUS_CONFIG = "prometheus.yml"
PROMETHEUS_RULES = "prometheus-rules.yml"
JOBS = ("node", "ray", "ray_node", "router", "sglang", "dcgm")
_FILE_SD = re.compile(r"^/[A-Za-z0-9_./+=@,-]*\.(json|ya?ml)\Z")


def _addr(ip, port):
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def check(chk, all_hosts, nodes, groups, router):
    """plan["metrics"] (None when cluster_metrics is false); problems go to `chk`.

    nodes/groups/router: the plan's, with ports and ranks already set. Every metrics port is
    checked against the node's own ports (Ray, SGLang, dist-init span) and the router's.
    """
    first = all_hosts[0]
    if not chk.get(first, "cluster_metrics"):
        return None
    node_port = chk.port(first, "cluster_node_exporter_port")
    router_port = router.get("metrics_port") if router else None
    dcgm = bool(chk.get(first, "cluster_dcgm_exporter"))
    dcgm_port = chk.port(first, "cluster_dcgm_exporter_port") if dcgm else None
    prom_host = chk.get(first, "cluster_prometheus_host")
    prom_port = None
    if prom_host is not None:
        if prom_host not in nodes:
            chk.fail(first, "cluster_prometheus_host", "%r is not a node of the cluster" % (prom_host,),
                     "name one of the cluster's hosts, or leave it unset and set cluster_metrics_file_sd "
                     "for the site's own Prometheus")
            prom_host = None
        else:
            prom_port = chk.port(first, "cluster_prometheus_port")
    file_sd = chk.get(first, "cluster_metrics_file_sd") or ""
    if file_sd and (not isinstance(file_sd, str) or not _FILE_SD.match(file_sd)
                    or file_sd != posixpath.normpath(file_sd)):
        chk.fail(first, "cluster_metrics_file_sd", "%r is not an absolute .json or .yml path" % (file_sd,),
                 "write the controller path your Prometheus's file_sd_configs reads, e.g. "
                 "/etc/prometheus/file_sd/sglang.json")
        file_sd = ""
    scrapers = []
    for cidr in chk.get(first, "cluster_metrics_scrape_cidrs") or []:
        try:
            scrapers.append(str(ipaddress.ip_network(str(cidr), strict=False)))
        except ValueError:
            chk.fail(first, "cluster_metrics_scrape_cidrs", "%r is not a CIDR" % (cidr,),
                     "list the addresses of your Prometheus servers, e.g. ['10.0.9.5/32']")
    if prom_host and nodes[prom_host]["cluster_ip"]:
        ip = nodes[prom_host]["cluster_ip"]
        scrapers.insert(0, "%s/%d" % (ip, 128 if ":" in ip else 32))
    ray_nodes = bool(chk.get(first, "cluster_ray_node_metrics"))
    per_host = {}
    for host in all_hosts:
        node = nodes[host]
        node_ports = node.get("ports") or {}
        # Ray's cluster view: the autoscaler's metrics on the head (autoscaler_active_nodes); a
        # node's own metrics agent (ray_metrics_export_port) serves only with ray[default]'s
        # opencensus installed, hence cluster_ray_node_metrics.
        ports = {"node": node_port, "ray": node_ports.get("ray_autoscaler_metrics_port")}
        if ray_nodes:
            ports["ray_node"] = node_ports.get("ray_metrics_export_port")
        if router and router.get("host") == host:
            ports["router"] = router_port
        if dcgm and node["num_gpus"] and not node["gpus_fake"]:
            ports["dcgm"] = dcgm_port
        if host == prom_host:
            ports["prometheus"] = prom_port
        taken = {v: k for k, v in (node.get("ports") or {}).items() if v}
        if router and router.get("host") == host and router.get("port"):
            taken[router["port"]] = "sglang_router_port"
        span = groups.get(node["group"], {}).get("dist_port_span")
        dist = (node.get("ports") or {}).get("sglang_dist_init_port")
        if router and router.get("host") == host and router_port:
            taken[router_port] = "sglang_router_metrics_port"
        for kind, key in (("node", "cluster_node_exporter_port"), ("dcgm", "cluster_dcgm_exporter_port"),
                          ("prometheus", "cluster_prometheus_port")):
            port = ports.get(kind)
            if port is None:
                continue
            if port in taken:
                chk.fail(host, key, "port %d is also %s" % (port, taken[port]), "give %s a port of its own" % key)
            elif dist and span and dist <= port <= dist + span:
                chk.fail(host, key, "port %d falls in the SGLang dist-init ports %d-%d" % (port, dist, dist + span),
                         "move %s out of %d-%d" % (key, dist, dist + span))
            taken.setdefault(port, key)
        per_host[host] = {k: v for k, v in ports.items() if v}
    return {
        "node_exporter_port": node_port, "router_port": router_port, "dcgm": dcgm, "ray_nodes": ray_nodes,
        "prometheus": {"host": prom_host, "ip": nodes[prom_host]["cluster_ip"], "port": prom_port,
                       "url": "http://%s" % _addr(nodes[prom_host]["cluster_ip"], prom_port)}
        if prom_host and nodes[prom_host]["cluster_ip"] and prom_port else None,
        "file_sd": file_sd,
        # Who may open a connection to a metrics port (besides the node itself).
        "scrapers": scrapers,
        "ports": per_host,
    }


def scrape_only_ports(plan, host):
    """The ports of `host` that only the Prometheus host (and cluster_metrics_scrape_cidrs) reach:
    its node exporter, both of Ray's metrics ports (scraped or not), the router's metrics,
    DCGM's. Prometheus's own port stays a cluster port (operators and Grafana query it)."""
    metrics = plan.get("metrics")
    if not metrics:
        return []
    ray = plan["nodes"][host]["ports"]
    return sorted({p for k, p in metrics["ports"].get(host, {}).items() if k != "prometheus"}
                  | {ray["ray_metrics_export_port"], ray["ray_autoscaler_metrics_port"]})


def cluster_only_ports(plan, host):
    """Prometheus's own port on its host: a cluster port like Ray's (operators and Grafana in
    the cluster's networks query it); nobody outside the cluster."""
    metrics = plan.get("metrics")
    port = ((metrics or {}).get("ports") or {}).get(host, {}).get("prometheus")
    return [port] if port else []


def _serving_groups(plan, start):
    """Groups whose SGLang ranks run (start: {group: {start, reason}}, node_spec's decisions)."""
    return [g for g in plan["groups"] if (start.get(g) or {}).get("start")]


def targets(plan, start):
    """Every scrape target: [{job, address, labels}] (labels: node, group, rank, role).

    start: {group: {start, reason}}; an SGLang rank that never starts (no GPU) is no target:
    Prometheus would only report it down. Ray on every node, the router where it runs.
    """
    metrics = plan["metrics"]
    out = []
    for host, node in plan["nodes"].items():
        ports = metrics["ports"][host]
        labels = {"node": host, "group": node["group"], "rank": str(node["node_rank"]),
                  "role": "ray-head" if node["is_ray_head"] else "ray-worker"}
        out.append({"job": "node", "address": _addr(node["cluster_ip"], ports["node"]),
                    "labels": dict(labels, role="node")})
        if node["is_ray_head"]:
            out.append({"job": "ray", "address": _addr(node["cluster_ip"], ports["ray"]), "labels": labels})
        if "ray_node" in ports:
            out.append({"job": "ray_node", "address": _addr(node["cluster_ip"], ports["ray_node"]), "labels": labels})
        if "router" in ports:
            out.append({"job": "router", "address": _addr(node["cluster_ip"], ports["router"]),
                        "labels": {"node": host, "role": "router"}})
        if "dcgm" in ports:
            out.append({"job": "dcgm", "address": _addr(node["cluster_ip"], ports["dcgm"]),
                        "labels": dict(labels, role="gpu")})
    for group in _serving_groups(plan, start):
        spec = plan["groups"][group]
        hosts = spec["hosts"] if spec["backend"] == "native" else [spec["rank0"]]
        for host in hosts:
            node = plan["nodes"][host]
            out.append({"job": "sglang", "address": _addr(node["cluster_ip"], spec["http_port"]),
                        "labels": {"node": host, "group": group, "rank": str(node["node_rank"]),
                                   "role": spec.get("pd_role") if spec.get("pd_role") not in (None, "none") else "server",
                                   "scheme": spec["scheme"]}})
    return out


def not_scraped(plan, start):
    """[(group, reason)] of the groups whose SGLang ranks are no target, and why."""
    return [(g, (start.get(g) or {}).get("reason") or "not started") for g in plan["groups"]
            if not (start.get(g) or {}).get("start")]


def prometheus_config(plan, start, rules_file, ca_file=None, interval="15s"):
    """Prometheus's configuration (a dict; the role writes it as YAML): one job per kind."""
    jobs = {}
    for target in targets(plan, start):
        labels = {k: v for k, v in target["labels"].items() if k != "scheme"}
        jobs.setdefault(target["job"], {"scheme": target["labels"].get("scheme", "http"), "configs": []})
        jobs[target["job"]]["configs"].append({"targets": [target["address"]], "labels": labels})
    scrape = []
    for job in JOBS:
        if job not in jobs:
            continue
        entry = {"job_name": job, "static_configs": jobs[job]["configs"]}
        if jobs[job]["scheme"] == "https":
            entry["scheme"] = "https"
            if ca_file:
                entry["tls_config"] = {"ca_file": ca_file}
        scrape.append(entry)
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [rules_file], "scrape_configs": scrape}


def file_sd(plan, start):
    """The file_sd target list a site's own Prometheus reads: one entry per target, with a
    `job` label (one scrape job over the file can relabel on it)."""
    return [{"targets": [t["address"]],
             "labels": dict({k: v for k, v in t["labels"].items() if k != "scheme"}, job=t["job"])}
            for t in targets(plan, start)]


def alert_rules(plan, start):
    """Prometheus alert rules over metrics that exist on this deployment. No Go templates in the
    annotations (Ansible would read `{{ }}` as its own): every alert carries its target's labels
    (node, group, rank, role)."""
    fenced = [g for g, spec in plan["groups"].items() if spec["backend"] == "native" and spec["nnodes"] > 1]
    rules = [
        {"alert": "NodeDown", "expr": 'up{job="node"} == 0', "for": "2m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "the node exporter does not answer: the host (label node) is down or "
                                    "unreachable from Prometheus"}},
        # Ray's own count of its nodes (the autoscaler's view on the head) against the plan's.
        {"alert": "RayNodeLost", "expr": "sum(autoscaler_active_nodes) < %d" % len(plan["nodes"]), "for": "1m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "Ray counts fewer nodes than the plan's %d" % len(plan["nodes"])}},
        {"alert": "RayHeadDown", "expr": 'up{job="ray"} == 0', "for": "2m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "Ray's head (its autoscaler monitor's metrics) does not answer"}},
    ]
    if plan.get("router"):
        rules.append({"alert": "RouterDown", "expr": 'up{job="router"} == 0', "for": "2m",
                      "labels": {"severity": "critical"},
                      "annotations": {"summary": "the sglang-router does not answer"}})
    if _serving_groups(plan, start):
        rules.append({"alert": "SGLangRank0Unhealthy", "expr": 'up{job="sglang",rank="0"} == 0', "for": "2m",
                      "labels": {"severity": "critical"},
                      "annotations": {"summary": "rank 0 of the group does not serve its HTTP API "
                                                 "(/metrics on the API port)"}})
    if fenced:
        # Written by the fence's coordinator on rank 0 (node exporter textfile collector).
        rules.append({"alert": "FenceGaveUp", "expr": "sglang_ops_fence_gave_up == 1", "for": "0m",
                      "labels": {"severity": "critical"},
                      "annotations": {"summary": "the group's fence gave up restarting it: the group "
                                                 "stays stopped until an operator starts it"}})
    return {"groups": [{"name": "sglang_ops", "rules": rules}]}


def textfile_dir(plan, host):
    """Where the node exporter reads textfiles: the runtime directory of the node's fence (a node
    serves one group), where its coordinator writes FENCE_METRICS_FILE; None without a fence."""
    group = plan["nodes"][host]["group"]
    spec = plan["groups"][group]
    if spec["backend"] != "native" or spec["nnodes"] < 2:
        return None
    return "/run/%s" % plan["layout"]["units"]["fences"][group]


def node_exporter_argv(plan, host, binary="/usr/bin/prometheus-node-exporter"):
    """The node exporter's command line: the cluster address only, our own systemd units."""
    node = plan["nodes"][host]
    units = plan["layout"]["units"]
    ours = [units["ray"], units["firewall"], units["router"]] + list(units["servers"].values()) + list(
        units["fences"].values())
    argv = [binary, "--web.listen-address=%s" % _addr(node["cluster_ip"], plan["metrics"]["ports"][host]["node"]),
            "--collector.systemd",
            # Our units only: the alert rules and the dashboard read these, nothing else.
            "--collector.systemd.unit-include=(%s)\\.service" % "|".join(re.escape(u) for u in ours)]
    textfiles = textfile_dir(plan, host)
    if textfiles:
        argv.append("--collector.textfile.directory=%s" % textfiles)
    return argv


def prometheus_argv(plan, config_file, storage_dir, retention="15d", binary="/usr/bin/prometheus"):
    """Prometheus's command line on its host: the cluster address, our config and storage."""
    prom = plan["metrics"]["prometheus"]
    return [binary, "--config.file=%s" % config_file, "--storage.tsdb.path=%s" % storage_dir,
            "--storage.tsdb.retention.time=%s" % retention,
            "--web.listen-address=%s" % _addr(prom["ip"], prom["port"])]


def target_rows(plan, start, answer, row, router_start=True):
    """Verify's rows from Prometheus's /api/v1/targets answer (None: not read).

    row: report.row. A planned target Prometheus does not list, or lists as down, fails; the
    router's is "not run" while down where the router is not meant to run (no group starts).
    """
    found = {}
    for t in ((answer or {}).get("data") or {}).get("activeTargets") or []:
        found[(t.get("labels", {}).get("job") or t.get("scrapePool"), t.get("labels", {}).get("instance"))] = t
    rows = []
    for target in targets(plan, start):
        node = target["labels"]["node"]
        check = "metrics " + target["job"]
        got = found.get((target["job"], target["address"]))
        if answer is None:
            rows.append(row(check, node, "fail", "Prometheus's /api/v1/targets was not read"))
        elif got is None:
            rows.append(row(check, node, "fail", "%s is not a target of Prometheus" % target["address"]))
        elif got.get("health") == "up":
            rows.append(row(check, node, "pass", "%s up" % target["address"]))
        elif target["job"] == "router" and not router_start:
            rows.append(row(check, node, "not run", "%s down: the router is not started (no group runs)"
                            % target["address"]))
        else:
            rows.append(row(check, node, "fail", "%s %s: %s" % (
                target["address"], got.get("health"), got.get("lastError") or "?")))
    for group, reason in not_scraped(plan, start):
        for host in plan["groups"][group]["hosts"]:
            rows.append(row("metrics sglang", host, "not run", reason))
    return rows


def pending(plan, start, answer):
    """How many planned targets Prometheus has not scraped yet (absent or health unknown): verify
    waits (bounded) until this is 0, then judges up or down."""
    if not answer:
        return len(targets(plan, start))
    seen = {(t.get("labels", {}).get("job"), t.get("labels", {}).get("instance")): t.get("health")
            for t in (answer.get("data") or {}).get("activeTargets") or []}
    return sum(seen.get((t["job"], t["address"]), "unknown") == "unknown" for t in targets(plan, start))


def host_spec(plan, host, start, retention="15d", interval="15s"):
    """Everything the monitoring role prints for `host`, decided here (None: metrics off)."""
    metrics = plan.get("metrics")
    if not metrics:
        return None
    files = plan["layout"]["files"]
    prom = metrics["prometheus"]
    spec = {"node_exporter_argv": node_exporter_argv(plan, host), "textfile_dir": textfile_dir(plan, host),
            "prometheus_host": bool(prom and prom["host"] == host), "file_sd": metrics["file_sd"]}
    if spec["prometheus_host"]:
        ca = plan["layout"]["credentials"]["tls_ca"] if any(
            g.get("scheme") == "https" for g in plan["groups"].values()) else None
        spec.update(
            prometheus_argv=prometheus_argv(plan, files["prometheus_config"], files["prometheus_data"], retention),
            prometheus_config=prometheus_config(plan, start, files["prometheus_rules"], ca, interval),
            alert_rules=alert_rules(plan, start), url=prom["url"])
    if metrics["file_sd"]:
        spec["file_sd_targets"] = file_sd(plan, start)
    return spec
