#!/usr/bin/python
"""Module: one SGLang rank's health from the node itself (unit, schedulers, GPU memory)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: server_node_health
short_description: Judge one SGLang rank from its node - unit state, scheduler processes, GPU memory
version_added: 0.1.0
description:
  - A rank >= 1 of a multi-node group answers C(/health) with 200 from a dummy server whatever its
    real state, so a rank's health is read here instead - the unit's C(ActiveState), the processes of
    its cgroup (SGLang titles its schedulers C(sglang::scheduler...)), and the memory those processes
    hold on the GPUs (C(nvidia-smi --query-compute-apps)).
extends_documentation_fragment: [sglang_ops.cluster.read_only]
options:
  unit:
    description: The rank's systemd unit.
    type: str
    required: true
  expect_gpu_memory:
    description: Require memory held on the GPUs by the unit's processes (real GPU nodes).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Judge this node's rank
  sglang_ops.cluster.server_node_health:
    unit: sglang-server-llama405b
  register: rank_health
"""

RETURN = r"""
ok:
  description: Whether the rank looks alive and holding its GPUs.
  type: bool
  returned: always
reason:
  description: One line for the report.
  type: str
  returned: always
  sample: 8 scheduler(s), 571234 MiB on the GPUs
active_state:
  description: The unit's ActiveState.
  type: str
  returned: always
processes:
  description: Names of the unit's processes.
  type: list
  elements: str
  returned: always
gpu_mib:
  description: GPU memory held by them (MiB), null where nvidia-smi is missing.
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils.probe import node_verdict, parse_compute_apps


def process_name(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            words = handle.read().split(b"\0")
        return words[0].decode(errors="replace") or str(pid)
    except OSError:
        return ""


def main():
    module = AnsibleModule(argument_spec=dict(unit=dict(type="str", required=True),
                                              expect_gpu_memory=dict(type="bool", default=True)),
                           supports_check_mode=True)
    unit = module.params["unit"]
    out = module.run_command(["systemctl", "show", "-p", "ActiveState", "-p", "ControlGroup", unit])[1]
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    state = props.get("ActiveState", "unknown")
    pids = []
    cgroup = props.get("ControlGroup", "")
    if cgroup:
        try:
            with open("/sys/fs/cgroup%s/cgroup.procs" % cgroup) as handle:
                pids = [int(p) for p in handle.read().split()]
        except OSError:
            pids = []
    names = [n for n in (process_name(p) for p in pids) if n]
    gpu_mib = None
    smi = module.get_bin_path("nvidia-smi")
    if smi:
        rc, out = module.run_command([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])[:2]
        gpu_mib = parse_compute_apps(out, set(pids)) if rc == 0 else None
    ok, reason = node_verdict(state, names, gpu_mib, module.params["expect_gpu_memory"])
    module.exit_json(changed=False, ok=ok, reason=reason, active_state=state, processes=names, gpu_mib=gpu_mib)


if __name__ == "__main__":
    main()
