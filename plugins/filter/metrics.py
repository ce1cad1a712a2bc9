"""Filters exposing module_utils.metrics to the monitoring and verify roles."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import metrics
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.filters import wrap_errors


class FilterModule:
    """`plan | metrics_spec(host, start)`, `plan | metrics_pending(start, answer)`."""

    def filters(self):
        return {"metrics_spec": wrap_errors(metrics.host_spec),
                "metrics_pending": wrap_errors(metrics.pending)}
