#!/usr/bin/python
"""Module: the membership of a live Ray cluster, optionally waiting until expected nodes join."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ray_cluster_info
short_description: Report the nodes and GPUs of a running Ray cluster, or wait for them
version_added: 0.1.0
description:
  - Joins the Ray cluster at O(address) as a short-lived driver, using the Python of the
    cluster's own venv, and returns every node Ray knows (alive or dead) with its IP and GPUs.
  - With O(expect_nodes) and O(expect_gpus), polls until those nodes are alive and that many
    GPUs are registered, or fails after O(timeout) seconds naming the hosts that never joined.
  - Read-only; runs the same way in check mode.
options:
  venv_dir:
    description: Virtual environment that holds Ray (its C(bin/python) runs the probe).
    type: path
    required: true
  address:
    description: GCS address of the head, C(IP:PORT) (IPv6 in brackets).
    type: str
    required: true
  expect_nodes:
    description: Hosts that must be alive, as a mapping of inventory name to cluster IP.
    type: dict
    default: {}
  expect_gpus:
    description: Minimum number of GPUs (real or declared) that the alive nodes must offer.
    type: int
    default: 0
  timeout:
    description: Seconds to wait for the expectation; C(0) reads the cluster once.
    type: int
    default: 0
  auth_token_file:
    description: Token file of a cluster with token authentication (C(RAY_AUTH_MODE=token)).
    type: path
  tls_environment:
    description:
      - Ray's TLS variables (C(RAY_USE_TLS), C(RAY_TLS_SERVER_CERT), C(RAY_TLS_SERVER_KEY), C(RAY_TLS_CA_CERT)) of a
        cluster with mutual TLS, as the cluster plan's C(ray.tls_env) gives them (paths, no secrets).
    type: dict
    default: {}
  fail_on_missing:
    description: Fail when the expectation is not met after O(timeout); with C(false) the result only
      reports it (C(missing)), for callers that build their own report.
    type: bool
    default: true
  placement:
    description: Also run one task per GPU in a placement group, each reporting the node and the
      GPU ids Ray gave it (C(ray.get_gpu_ids()), C(CUDA_VISIBLE_DEVICES)).
    type: bool
    default: false
extends_documentation_fragment:
  - sglang_ops.cluster.read_only
"""

EXAMPLES = r"""
- name: Wait until both nodes and their 8 GPUs joined
  sglang_ops.cluster.ray_cluster_info:
    venv_dir: /opt/sglang/venv
    address: 10.0.0.11:6379
    expect_nodes: {gpu-a-0: 10.0.0.11, gpu-a-1: 10.0.0.12}
    expect_gpus: 8
    timeout: 120
  become: true
  become_user: sglang
"""

RETURN = r"""
ray_version:
  description: Version of Ray in the venv that probed the cluster.
  type: str
  returned: always
nodes:
  description: Every node Ray knows, alive or dead.
  type: list
  elements: dict
  returned: always
  sample: [{node_id: 4b1c..., ip: 10.0.0.11, hostname: gpu-a-0, alive: true, gpus: 4.0, cpus: 64.0}]
alive_nodes:
  description: Number of alive nodes.
  type: int
  returned: always
gpus_total:
  description: GPUs offered by the alive nodes.
  type: float
  returned: always
missing:
  description: Expected hosts that are not alive in the cluster.
  type: list
  elements: str
  returned: always
placement:
  description: With O(placement), one entry per GPU task, C({ip, gpu_ids, cuda_visible_devices});
    null when the cluster was incomplete and no task was placed.
  type: list
  elements: dict
  returned: when placement is true
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import PROBE, summarize


def main():
    module = AnsibleModule(
        argument_spec=dict(
            venv_dir=dict(type="path", required=True),
            address=dict(type="str", required=True),
            expect_nodes=dict(type="dict", default={}),
            expect_gpus=dict(type="int", default=0),
            timeout=dict(type="int", default=0),
            auth_token_file=dict(type="path"),
            tls_environment=dict(type="dict", default={}),
            placement=dict(type="bool", default=False),
            fail_on_missing=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    args = {"address": p["address"], "timeout": p["timeout"], "expect_gpus": p["expect_gpus"],
            "expect_ips": sorted(p["expect_nodes"].values()), "placement": p["placement"]}
    python = "%s/bin/python" % p["venv_dir"].rstrip("/")
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    if p["auth_token_file"]:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=p["auth_token_file"])
    env.update({str(k): str(v) for k, v in (p["tls_environment"] or {}).items()})
    rc, out, err = module.run_command([python, "-c", PROBE, json.dumps(args)], environ_update=env)
    if rc != 0:
        module.fail_json(msg="cannot read the Ray cluster at %s (rc %d): %s"
                         % (p["address"], rc, (err or out).strip()[-2000:]))
    probe = json.loads(out.strip().splitlines()[-1])
    summary = summarize(probe["nodes"], p["expect_nodes"], p["expect_gpus"])
    result = dict(changed=False, ray_version=probe["ray_version"], nodes=probe["nodes"],
                  **{k: v for k, v in summary.items() if k != "problems"})
    if p["placement"]:
        result["placement"] = probe.get("placement")
    if summary["problems"] and p["fail_on_missing"]:
        module.fail_json(msg="Ray cluster at %s after %d s: %s"
                         % (p["address"], p["timeout"], "; ".join(summary["problems"])), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
