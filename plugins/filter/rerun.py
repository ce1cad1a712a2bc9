"""Filters of deploy.yml's re-run check (module_utils/rerun.py): what to compare, and the verdict."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils.rerun import every_phase, fingerprint_spec, verdict
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.filters import wrap_errors


class FilterModule:
    """`plan | rerun_spec(host)`, `results | rerun_verdict(hosts, active)`,
    `run_tags | rerun_every_phase(skip_tags, known_tags, limited)`."""

    def filters(self):
        return {"rerun_spec": wrap_errors(fingerprint_spec), "rerun_verdict": wrap_errors(verdict),
                "rerun_every_phase": wrap_errors(every_phase)}
