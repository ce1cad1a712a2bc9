#!/usr/bin/python
"""Documentation of the cluster_plan action plugin (it runs on the controller only)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_plan
short_description: Validate the inventory and compute the cluster plan, on the controller
version_added: 0.1.0
description:
  - Reads the children of the C(sglang_nodes) group (one model group each) and every host's
    cluster variables, refuses an invalid inventory with one message per problem (host,
    variable, fix) without contacting any host, and publishes the fact C(sglang_cluster_plan).
  - The plan holds, per model group, the ordered hosts, C(nnodes), tp/pp/dp and the dist-init
    address; per node its rank, cluster IP and interface, GPU ids, C(CUDA_VISIBLE_DEVICES) and
    ports; and the Ray head, GCS address and expected node and GPU totals.
  - Variables and their defaults are documented in the C(preflight) role's argument specs.
options:
  publish:
    description:
      - C(fact) sets the fact C(sglang_cluster_plan) on every host of the play.
      - C(result) returns the plan as RV(plan) for a following C(set_fact), which is what the C(plan)
        role does. Ansible deep-copies every host fact of every host at every task, which makes a
        plan held as a fact cost time quadratic in the number of nodes; a C(set_fact) variable
        is shared.
    type: str
    choices: [fact, result]
    default: fact
attributes:
  check_mode:
    support: full
    description: Contacts no host and changes nothing; the same in check mode.
notes:
  - "Run it once (C(run_once: true)); the fact is then set on every host of the play."
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: Compute the cluster plan
  sglang_ops.cluster.cluster_plan:
  run_once: true
"""

RETURN = r"""
plan:
  description: The plan, with O(publish=result).
  type: dict
  returned: success and O(publish=result)
summary:
  description: One line per model group (nodes, ranks, addresses, GPUs) and one for Ray, for display.
  type: list
  elements: str
  returned: success
ansible_facts:
  description: The plan, as the fact C(sglang_cluster_plan).
  type: dict
  returned: success
  contains:
    sglang_cluster_plan:
      description: Groups, nodes and Ray layout.
      type: dict
"""
