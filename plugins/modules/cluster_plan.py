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
options: {}
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
ansible_facts:
  description: The plan, as the fact C(sglang_cluster_plan).
  type: dict
  returned: success
  contains:
    sglang_cluster_plan:
      description: Groups, nodes and Ray layout.
      type: dict
"""
