"""Filters of deploy.yml's re-run check (module_utils/rerun.py): what to compare, and the verdict."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils.rerun import every_phase, fingerprint_spec, verdict
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.filters import wrap_errors
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.plan_inputs import collection_tags


def rerun_every_phase(run_tags, skip_tags, limited=False):
    """every_phase against the collection's own tags."""
    return every_phase(run_tags, skip_tags, collection_tags(), limited)


class FilterModule:
    """`plan | rerun_spec(host)`, `results | rerun_verdict(hosts, active)`,
    `run_tags | rerun_every_phase(skip_tags, limited)`."""

    def filters(self):
        return {"rerun_spec": wrap_errors(fingerprint_spec), "rerun_verdict": wrap_errors(verdict),
                "rerun_every_phase": wrap_errors(rerun_every_phase)}
