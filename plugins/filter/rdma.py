"""Filters exposing the RDMA judgement of module_utils.rdma to the preflight role."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import rdma
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.filters import wrap_errors


def _report(facts_by_host, plan, bandwidth_by_host=None, floor_gbps=rdma.DEFAULT_BW_FLOOR_GBPS):
    bandwidth = {h: r["bandwidth"] for h, r in (bandwidth_by_host or {}).items()
                 if isinstance(r, dict) and "bandwidth" in r}
    return rdma.report(plan, facts_by_host or {}, bandwidth, float(floor_gbps))


class FilterModule:
    """`facts | rdma_report(plan, bandwidth, floor)`, `plan | rdma_bandwidth_plan(facts, host)`."""

    def filters(self):
        return {
            "rdma_report": wrap_errors(_report),
            "rdma_bandwidth_plan": wrap_errors(rdma.bandwidth_plan),
        }
