#!/usr/bin/python
"""Module: this node's rank of the torch.distributed all_reduce check."""

from __future__ import annotations

DOCUMENTATION = r"""
module: collective_check
short_description: Run one rank of a real torch.distributed all_reduce across the nodes
version_added: 0.1.0
description:
  - Run on every node of a model group at the same time. Each node runs one rank with the
    venv's torch, meeting at O(master_addr):O(master_port) (rank 0's dist-init port, as SGLang
    does), with C(NCCL_SOCKET_IFNAME) and C(GLOO_SOCKET_IFNAME) set to O(interface).
  - Checks the reduced value, then times all_reduce for each of O(sizes) and reports latency,
    algorithm and bus bandwidth (rank 0's figures are the group's).
  - Bounded by O(timeout). A rank that fails tells the others through the rendezvous store, so
    they stop at once and name it rather than wait.
  - With the C(nccl) backend, runs with C(NCCL_DEBUG=INFO) and reports the transport NCCL chose.
  - Nothing persists on the node (C(changed=false)); skipped in check mode.
options:
  venv_dir:
    description: Venv with torch.
    type: path
    required: true
  rank:
    description: This node's rank in the group.
    type: int
    required: true
  world_size:
    description: Nodes in the group.
    type: int
    required: true
  master_addr:
    description: Rank 0's cluster IP (no brackets).
    type: str
    required: true
  master_port:
    description: Rank 0's dist-init port.
    type: int
    required: true
  interface:
    description: Cluster interface (C(NCCL_SOCKET_IFNAME), C(GLOO_SOCKET_IFNAME)).
    type: str
    required: true
  backend:
    description: C(gloo) on CPU nodes, C(nccl) on GPU nodes (RCCL on ROCm).
    type: str
    choices: [gloo, nccl]
    default: gloo
  cuda_visible_devices:
    description: C(CUDA_VISIBLE_DEVICES) for the rank (it uses the first listed GPU).
    type: str
    default: ""
  sizes:
    description: Message sizes in bytes.
    type: list
    elements: int
    default: [4096, 1048576, 16777216]
  iters:
    description: Timed iterations per size.
    type: int
    default: 5
  timeout:
    description: Seconds for rendezvous, init and the run together.
    type: int
    default: 60
attributes:
  check_mode:
    support: none
    description: Skipped in check mode (no venv may exist yet on a fresh node).
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: All-reduce across the group
  sglang_ops.cluster.collective_check:
    venv_dir: /opt/sglang/venv
    rank: 0
    world_size: 2
    master_addr: 10.0.0.11
    master_port: 20000
    interface: eth0
"""

RETURN = r"""
ok:
  description: Whether this rank completed the all_reduce and the timings.
  type: bool
  returned: always
stage:
  description: Where a failure happened (import, rendezvous, init, peer, verify).
  type: str
  returned: on failure
error:
  description: What failed.
  type: str
  returned: on failure
figures:
  description: Per size C({bytes, latency_us, algbw_gbps, busbw_gbps}).
  type: list
  elements: dict
  returned: on success
transport:
  description: Network transport NCCL chose (C(IB), C(Socket)), with the nccl backend.
  type: str
  returned: always
channels:
  description: Distinct NCCL channel transports seen (C(NET/IB), C(NET/Socket), C(P2P/IPC)...).
  type: list
  elements: str
  returned: always
"""

import json
import os
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils.collective import SCRIPT, nccl_transport


def main():
    module = AnsibleModule(
        argument_spec=dict(
            venv_dir=dict(type="path", required=True),
            rank=dict(type="int", required=True),
            world_size=dict(type="int", required=True),
            master_addr=dict(type="str", required=True),
            master_port=dict(type="int", required=True),
            interface=dict(type="str", required=True),
            backend=dict(type="str", choices=["gloo", "nccl"], default="gloo"),
            cuda_visible_devices=dict(type="str", default=""),
            sizes=dict(type="list", elements="int", default=[4096, 1048576, 16777216]),
            iters=dict(type="int", default=5),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=False,
    )
    p = module.params
    args = {k: p[k] for k in ("rank", "world_size", "master_addr", "master_port", "backend", "sizes",
                              "iters", "timeout")}
    args["host"] = socket.gethostname()
    env = {"GLOO_SOCKET_IFNAME": p["interface"], "NCCL_SOCKET_IFNAME": p["interface"],
           "CUDA_VISIBLE_DEVICES": p["cuda_visible_devices"], "OMP_NUM_THREADS": "1"}
    if p["backend"] == "nccl":
        env["NCCL_DEBUG"] = "INFO"
    python = os.path.join(p["venv_dir"], "bin", "python")
    # The script bounds itself; this outer limit only guards against a wedged interpreter.
    cmd = ["timeout", "--kill-after=5", str(p["timeout"] + 20), python, "-c", SCRIPT, json.dumps(args)]
    rc, out, err = module.run_command(cmd, environ_update=env)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {
        "ok": False, "stage": "process", "rank": p["rank"], "backend": p["backend"],
        "error": "rank exited %d without a result: %s" % (rc, (err or out).strip()[-1500:])}
    result["transport"], result["channels"] = nccl_transport(err) if p["backend"] == "nccl" else (None, [])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
