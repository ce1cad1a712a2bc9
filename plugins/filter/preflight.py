"""Filters that feed the preflight modules from the plan and judge their results (module_utils)."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import collective, mesh, preflight, report


def collect(hostvars, hosts, name):
    """{host: hostvars[host][name]} for the hosts that have it (failed hosts drop out)."""
    return {h: hostvars[h][name] for h in hosts if name in hostvars[h]}


def mesh_report(results_by_host):
    """{host: port_mesh result} -> {failures: [...], table: [lines], probes: n, slowest_s: s}."""
    failures = mesh.mesh_failures({h: r.get("results", []) for h, r in results_by_host.items()})
    return {"failures": failures, "table": mesh.mesh_table(failures),
            "probes": sum(len(r.get("results", [])) for r in results_by_host.values()),
            "slowest_s": max((r.get("elapsed", 0) for r in results_by_host.values()), default=0)}


def node_problems(facts_by_host, plan, max_skew_s, min_free_gb):
    return preflight.node_problems(plan, facts_by_host, max_skew_s, min_free_gb)


def parity_problems(facts_by_host, pins=None):
    return preflight.parity_problems(facts_by_host, pins)


def collective_report(results_by_host, plan, facts_by_host, socket_fallback, min_busbw_gbps):
    """Per model group: problems, warnings, and rank 0's figures as printable lines."""
    report = {"problems": [], "warnings": [], "lines": []}
    rdma = {h for h, f in (facts_by_host or {}).items() if f.get("rdma_devices")}
    planned = {h for h, n in plan["nodes"].items()
               if plan.get("rdma", {}).get("mode") == "required" or n.get("rdma_devices")}
    for group, spec in plan["groups"].items():
        results = {h: results_by_host[h] for h in spec["hosts"] if h in results_by_host}
        problems, warnings = collective.collective_problems(group, results, rdma, socket_fallback, min_busbw_gbps,
                                                            planned)
        report["problems"] += problems
        report["warnings"] += warnings
        rank0 = results.get(spec["rank0"], {})
        if rank0.get("ok"):
            report["lines"].append("%s: %d nodes, %s, rank 0 %s" % (group, spec["nnodes"], rank0["backend"], spec["rank0"]))
            report["lines"] += ["  " + line for line in collective.format_figures(rank0["figures"])]
    return report


def verify_report(hostvars, plan, names, gpu_real, server=None):
    """Rows of the verify report from each host's registered results ({row name: variable}).

    server: {group: {start, reason}} from the sglang_server decision, None when it did not run."""
    results = {h: {k: hostvars[h].get(v) for k, v in names.items() if v in hostvars[h]} for h in plan["nodes"]
               if h in hostvars}
    rows = report.verify_rows(results, plan, gpu_real, server)
    return {"rows": rows, "lines": report.render(rows, [report.totals(results, plan), ""]),
            "failed": sum(r["status"] == report.FAIL for r in rows)}


class FilterModule:
    """Preflight and verify filters."""

    def filters(self):
        return {
            "collect": collect,
            "mesh_report": mesh_report,
            "node_problems": node_problems,
            "parity_problems": parity_problems,
            "collective_report": collective_report,
            "verify_report": verify_report,
        }
