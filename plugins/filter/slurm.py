"""Filters exposing module_utils.slurm (the sbatch job from the plan, SLURM's answers) to the
slurm_job role."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils import slurm
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils.filters import wrap_errors


class FilterModule:
    """`plan | slurm_job(settings, node_program, launcher)`, `result | slurm_result(kind, what)`,
    `job | slurm_job_report(log_text)`."""

    def filters(self):
        return {
            "slurm_job": wrap_errors(slurm.job_with_script),
            "slurm_result": wrap_errors(slurm.command_result),
            "slurm_job_report": wrap_errors(slurm.job_report),
        }
