"""The verify report: every check on every node as pass / fail / not run, with the reason.

Why this exists: operators need one answer they can trust after a deploy, including what was
*not* checked and why (no GPU, no server deployed), instead of a green run that skipped things.
The rows are built from the registered results of the verify role's checks; this module
decides, renders the table and the JSON.
"""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import metrics

PASS, FAIL, NOT_RUN = "pass", "fail", "not run"


def row(check, node, status, reason=""):
    return {"check": check, "node": node, "status": status, "reason": reason}


def _unit_row(check, host, result, unit):
    status = (result or {}).get("status") or {}
    if status.get("LoadState") in (None, "not-found"):
        return row(check, host, FAIL, "%s is not installed" % unit)
    active, enabled = status.get("ActiveState"), status.get("UnitFileState")
    if active == "active" and enabled == "enabled":
        return row(check, host, PASS, "%s active, enabled" % unit)
    return row(check, host, FAIL, "%s is %s / %s (journalctl -u %s)" % (unit, active, enabled, unit))


GROUP_CHECKS = ("health_generate", "v1/models", "api key enforced", "test generation", "benchmark")


def _probe_rows(node, probe):
    """The group's rows from rank 0's server_probe result."""
    if not probe or probe.get("skipped"):
        return [row(c, node, NOT_RUN, "rank 0 was not probed") for c in GROUP_CHECKS]
    if probe.get("failed") and "health_generate" not in probe:
        return [row(c, node, FAIL, probe.get("msg", "probe failed")) for c in GROUP_CHECKS]
    rows = []
    for check, key in (("health_generate", "health_generate"), ("v1/models", "models")):
        r = probe.get(key) or {}
        rows.append(row(check, node, PASS if r.get("ok") else FAIL, "HTTP %s%s" % (
            r.get("status"), (" " + ", ".join(r["ids"])) if r.get("ids") else "")))
    una = probe.get("unauthorized")
    rows.append(row("api key enforced", node, NOT_RUN, "sglang_server_api_key is not set") if una is None
                else row("api key enforced", node, PASS if una.get("ok") else FAIL,
                         "HTTP %s without the key" % una.get("status")))
    gen = probe.get("generation") or {}
    rows.append(row("test generation", node, PASS if gen.get("ok") else FAIL,
                    "%r in %.2f s" % (gen.get("text", ""), gen.get("seconds", 0)) if gen.get("ok")
                    else "HTTP %s" % gen.get("status")))
    bench = probe.get("benchmark")
    if not bench:
        rows.append(row("benchmark", node, NOT_RUN, "no successful generation to measure"))
    elif not bench.get("succeeded"):
        rows.append(row("benchmark", node, FAIL, "0 of %d requests succeeded: %s" % (
            bench.get("requests", 0), "; ".join(bench.get("errors", [])))))
    else:
        rows.append(row("benchmark", node, PASS if bench["succeeded"] == bench["requests"] else FAIL,
                        "%d/%d ok, %.2f req/s, %.1f output tok/s, TTFT p50 %.0f ms p99 %.0f ms" % (
                            bench["succeeded"], bench["requests"], bench["req_per_s"], bench["output_tok_per_s"],
                            bench["ttft_p50_ms"], bench["ttft_p99_ms"])))
    return rows


def _server_rows(group, spec, plan, results, decision, gpu_real):
    """Per node: the server unit and the rank's own health; at rank 0: the group's checks."""
    if decision is None:
        reason = ("no GPU: CPU test hosts cannot serve SGLang" if not gpu_real
                  else "the sglang_server role has not run")
        return [row(c, spec["rank0"], NOT_RUN, reason) for c in GROUP_CHECKS]
    unit = plan["layout"]["units"]["servers"][group]
    rows = []
    hosts = spec["hosts"] if spec.get("backend", "native") == "native" else [spec["rank0"]]
    for host in hosts:
        res = results.get(host, {})
        status = ((res.get("server_unit") or {}).get("status") or {})
        if status.get("LoadState") in (None, "not-found"):
            rows.append(row("server unit", host, FAIL, "%s is not installed (run deploy.yml)" % unit))
        elif decision["start"]:
            rows.append(_unit_row("server unit", host, res.get("server_unit"), unit))
        else:
            enabled = status.get("UnitFileState") == "enabled"
            rows.append(row("server unit", host, PASS if enabled else FAIL, "%s installed, %s; %s" % (
                unit, status.get("UnitFileState"), decision["reason"])))
        health = res.get("server_health")
        if not decision["start"]:
            rows.append(row("server rank", host, NOT_RUN, decision["reason"]))
        elif not health or health.get("skipped"):
            rows.append(row("server rank", host, NOT_RUN, "not read"))
        else:
            rows.append(row("server rank", host, PASS if health.get("ok") else FAIL,
                            health.get("reason") or health.get("msg", "?")))
    if not decision["start"]:
        rows += [row(c, spec["rank0"], NOT_RUN, decision["reason"]) for c in GROUP_CHECKS]
    else:
        rows += _probe_rows(spec["rank0"], results.get(spec["rank0"], {}).get("probe"))
    return rows


def _router_row(plan, results, server):
    """The sglang-router: installed and enabled; where the groups run, up with every group healthy."""
    host = plan["router"]["host"]
    name = plan["layout"]["units"]["router"]
    res = results.get(host, {})
    status = ((res.get("router_unit") or {}).get("status") or {})
    if status.get("LoadState") in (None, "not-found"):
        return row("router", host, FAIL, "%s is not installed (run deploy.yml)" % name)
    stopped = [d["reason"] for d in server.values() if not d["start"]]
    if stopped:
        ok = status.get("UnitFileState") == "enabled"
        return row("router", host, PASS if ok else FAIL, "%s installed, %s; not started: %s"
                   % (name, status.get("UnitFileState"), stopped[0].replace("not started: ", "")))
    unit = _unit_row("router", host, res.get("router_unit"), name)
    if unit["status"] != PASS:
        return unit
    healthy = _router_healthy(res)
    if plan["router"].get("pd"):
        want = [p["url"] for p in plan["router"]["prefill"]] + list(plan["router"]["decode"])
        up = [u for u in want if u in healthy]
        return row("router", host, PASS if len(up) == len(want) else FAIL,
                   "PD mode: %d of %d prefill/decode servers healthy behind it" % (len(up), len(want)))
    want = len(plan["router"]["workers"])
    return row("router", host, PASS if len(healthy) == want else FAIL,
               "%d of %d groups healthy behind it" % (len(healthy), want))


def _router_healthy(res):
    """URLs of the workers the router lists as healthy (its /workers answer)."""
    workers = (res.get("router_workers") or {}).get("json") or {}
    return [w.get("url") for w in workers.get("workers") or [] if w.get("is_healthy", w.get("healthy"))]


def _pd_rows(plan, results, server):
    """Per PD group, at its rank 0: is it serving its side behind the router (not run where the
    group cannot start, e.g. no GPU)."""
    rows = []
    router = plan.get("router") or {}
    urls = {}
    for prefill in router.get("prefill", []):
        urls[prefill["url"]] = "prefill, bootstrap port %d" % prefill["bootstrap_port"]
    for url in router.get("decode", []):
        urls[url] = "decode"
    healthy = _router_healthy(results.get(router.get("host"), {}))
    for group in plan["pd"]["prefill"] + plan["pd"]["decode"]:
        spec = plan["groups"][group]
        decision = (server or {}).get(group)
        url = next((u for u in urls if u.endswith(":%d" % spec["http_port"]) and "//%s:" % plan["nodes"][
            spec["rank0"]]["cluster_ip"] in u), None)
        if decision is None or not decision["start"]:
            reason = decision["reason"] if decision else "the sglang_server role has not run"
            rows.append(row("pd " + spec["pd_role"], spec["rank0"], NOT_RUN, reason))
        elif url in healthy:
            rows.append(row("pd " + spec["pd_role"], spec["rank0"], PASS, "%s healthy behind the router (%s)"
                            % (url, urls[url])))
        else:
            rows.append(row("pd " + spec["pd_role"], spec["rank0"], FAIL, "the router does not list %s as healthy "
                            "(%s)" % (url, urls.get(url, "?"))))
    return rows


def verify_rows(results, plan, gpu_real, server=None):
    """results: {host: {name: registered result}} for the verify role's checks.

    server: {group: {start, reason}}, whether each group's units are meant to run (and why not).
    """
    rows = []
    hosts = list(plan["nodes"])
    ray = next((r.get("ray") for r in results.values() if r.get("ray")), None) or {}
    alive = {n["ip"]: n for n in ray.get("nodes", []) if n.get("alive")}
    placement = {}
    for task in ray.get("placement", []) or []:
        placement.setdefault(task["ip"], []).extend(task["gpu_ids"])
    units = plan["layout"]["units"]
    for host in hosts:
        node, res = plan["nodes"][host], results.get(host, {})
        rows.append(_unit_row("ray unit", host, res.get("ray_unit"), units["ray"]))
        fw = res.get("firewall_unit")
        rows.append(_unit_row("firewall", host, fw, units["firewall"]) if fw and not fw.get("skipped")
                    else row("firewall", host, NOT_RUN, "firewall_enabled is false"))
        if ray.get("failed") and not ray.get("nodes"):
            rows.append(row("ray node alive", host, FAIL, ray.get("msg", "cannot read the Ray cluster")))
        else:
            me = alive.get(node["cluster_ip"])
            rows.append(row("ray node alive", host, PASS if me else FAIL,
                            "node %s" % me["node_id"][:8] if me else "%s not alive in Ray" % node["cluster_ip"]))
            gpus = int(me.get("gpus", 0)) if me else 0
            rows.append(row("ray GPUs", host, PASS if me and gpus == node["num_gpus"] else FAIL,
                            "%d of %d%s" % (gpus, node["num_gpus"], " (declared fake)" if node["gpus_fake"] else "")))
        if "placement" not in ray:
            rows.append(row("GPU placement", host, NOT_RUN, "verify_ray_placement is false or no GPUs"))
        elif ray["placement"] is None:
            rows.append(row("GPU placement", host, NOT_RUN, "the Ray cluster is incomplete"))
        else:
            seen = placement.get(node["cluster_ip"], [])
            ok = len(seen) == node["num_gpus"] == len(set(seen))
            rows.append(row("GPU placement", host, PASS if ok else FAIL, "GPU ids %s" % ",".join(sorted(seen))))
        mesh = res.get("mesh")
        if not mesh or mesh.get("skipped"):
            rows.append(row("port mesh", host, NOT_RUN, "verify_mesh is false"))
        else:
            bad = ["%s:%d" % (p["to"], p["port"]) for p in mesh.get("results", []) if not p["ok"]]
            rows.append(row("port mesh", host, FAIL if bad or mesh.get("failed") else PASS,
                            ("cannot reach " + ", ".join(bad)) if bad else "%d probes to peers" % len(mesh.get("results", []))))
        coll = res.get("collective")
        if not coll or coll.get("skipped"):
            rows.append(row("collective", host, NOT_RUN, "verify_collective is false"))
        else:
            best = max((f["busbw_gbps"] for f in coll.get("figures", [])), default=0)
            rows.append(row("collective", host, PASS if coll.get("ok") else FAIL,
                            "%s all_reduce, busbw %.3f GB/s" % (coll.get("backend"), best) if coll.get("ok")
                            else coll.get("error") or coll.get("msg", "failed")))
    for group, spec in plan["groups"].items():
        rows += _server_rows(group, spec, plan, results, (server or {}).get(group), gpu_real)
    if plan.get("router") and server:
        rows.append(_router_row(plan, results, server))
    if plan.get("pd"):
        rows += _pd_rows(plan, results, server)
    rows += _metrics_rows(plan, results, server)
    return rows


def _metrics_rows(plan, results, server):
    """Every scrape target as Prometheus reports it (module_utils/metrics.py decides)."""
    metrics_plan = plan.get("metrics")
    if not metrics_plan:
        return []
    if not metrics_plan.get("prometheus"):
        return [row("metrics", plan["hosts"][0], NOT_RUN, "no Prometheus of ours (cluster_prometheus_host unset)%s"
                    % ("; targets written to %s" % metrics_plan["file_sd"] if metrics_plan.get("file_sd") else ""))]
    answer = (results.get(metrics_plan["prometheus"]["host"], {}).get("metrics_targets") or {})
    if server is None:
        return [row("metrics", metrics_plan["prometheus"]["host"], NOT_RUN, "the sglang_server role has not run")]
    router_start = all(d["start"] for d in server.values())
    return metrics.target_rows(plan, server, answer.get("json") if answer.get("status") == 200 else None, row,
                               router_start)


def render(rows, header=()):
    """Lines of a check x node table, then the reasons of everything that is not a pass."""
    nodes = list(dict.fromkeys(r["node"] for r in rows))
    checks = list(dict.fromkeys(r["check"] for r in rows))
    cell = {(r["check"], r["node"]): r for r in rows}
    label = {PASS: "pass", FAIL: "FAIL", NOT_RUN: "not run"}
    table = [["check"] + nodes] + [[c] + [label[cell[(c, n)]["status"]] if (c, n) in cell else "-" for n in nodes]
                                   for c in checks]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table]
    notes = ["%s %s on %s: %s" % ("FAIL" if r["status"] == FAIL else "not run:", r["check"], r["node"], r["reason"])
             for r in rows if r["status"] != PASS]
    counts = {s: sum(r["status"] == s for r in rows) for s in (PASS, FAIL, NOT_RUN)}
    return (list(header) + lines + [""] + notes
            + ["", "%d passed, %d failed, %d not run" % (counts[PASS], counts[FAIL], counts[NOT_RUN])])


def totals(results, plan):
    """One line with the cluster totals: Ray version, alive nodes and GPUs against the plan."""
    ray = next((r.get("ray") for r in results.values() if r.get("ray")), None) or {}
    alive = [n for n in ray.get("nodes", []) if n.get("alive")]
    fake = any(n["gpus_fake"] for n in plan["nodes"].values())
    return "Ray %s at %s: %d / %d nodes alive, %d / %d GPUs%s" % (
        ray.get("ray_version", "?"), plan["ray"]["gcs_address"], len(alive), plan["ray"]["nodes"],
        int(sum(n.get("gpus", 0) for n in alive)), plan["ray"]["gpus"], " (declared fake: CPU test hosts)" if fake else "")
