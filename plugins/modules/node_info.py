#!/usr/bin/python
"""Module: the facts preflight compares across nodes (interface, RDMA, versions, clock, disk)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_info
short_description: Report a node's cluster interface, RDMA devices, venv versions, clock and free disk
version_added: 0.1.0
description:
  - Reads the state, MTU and addresses of O(interface) (C(ip -j addr)), the RDMA devices in
    C(/sys/class/infiniband), the Python and package versions of the venv at O(venv_dir) when it
    exists, the node's clock and the free space where the model cache lives.
  - Read-only; the same in check mode. The cross-node verdict is made on the controller.
options:
  interface:
    description: Name of the cluster interface.
    type: str
    required: true
  venv_dir:
    description: The cluster venv; versions are empty when it does not exist yet.
    type: path
    required: true
  disk_path:
    description: Where the model cache lives (the plan's data directory); the nearest existing parent
      is measured.
    type: path
    required: true
  controller_time:
    description: The controller's clock when the task started; the node reports its offset from it.
    type: float
  packages:
    description: Packages whose versions are read from the venv.
    type: list
    elements: str
    default: [torch, ray, sglang, sgl-kernel]
extends_documentation_fragment:
  - sglang_ops.cluster.read_only
"""

EXAMPLES = r"""
- name: Read the node's facts
  sglang_ops.cluster.node_info:
    interface: eth0
    venv_dir: /opt/sglang/venv
"""

RETURN = r"""
interface:
  description: C(exists), C(up), C(operstate), C(mtu) and C(addresses) of O(interface).
  type: dict
  returned: always
interfaces:
  description: Every interface name on the node.
  type: list
  elements: str
  returned: always
rdma_devices:
  description: RDMA devices (InfiniBand/RoCE HCAs).
  type: list
  elements: str
  returned: always
venv_python:
  description: Python version of the venv, or null.
  type: str
  returned: always
venv:
  description: Versions of O(packages) in the venv (normalized names), absent ones omitted.
  type: dict
  returned: always
clock_skew:
  description: Node clock minus O(controller_time), in seconds; null without O(controller_time).
    It includes the time the task took to reach the node, so the controller judges it together
    with the time the whole round trip took.
  type: float
  returned: always
controller_time:
  description: O(controller_time), echoed so the controller can bound the transit time.
  type: float
  returned: always
disk_free_gb:
  description: Free space at RV(disk_path) in GB.
  type: float
  returned: always
disk_path:
  description: The path that was measured.
  type: str
  returned: always
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils.install import READ_VERSIONS, normalize_name
from ansible_collections.sglang_ops.cluster.plugins.module_utils.preflight import parse_ip_addr


def main():
    module = AnsibleModule(
        argument_spec=dict(
            interface=dict(type="str", required=True),
            venv_dir=dict(type="path", required=True),
            disk_path=dict(type="path", required=True),
            controller_time=dict(type="float"),
            packages=dict(type="list", elements="str", default=["torch", "ray", "sglang", "sgl-kernel"]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    now = time.time()
    ip = module.get_bin_path("ip", required=True)
    rc, out, err = module.run_command([ip, "-j", "addr", "show"])
    if rc != 0:
        module.fail_json(msg="ip -j addr show failed: %s" % err)
    links = json.loads(out or "[]")
    ib = "/sys/class/infiniband"
    result = dict(changed=False, interface=parse_ip_addr(out, p["interface"]),
                  interfaces=[link["ifname"] for link in links],
                  rdma_devices=sorted(os.listdir(ib)) if os.path.isdir(ib) else [],
                  venv_python=None, venv={})
    python = os.path.join(p["venv_dir"], "bin", "python")
    if os.path.exists(python):
        rc, out, err = module.run_command([python, "-c", READ_VERSIONS])
        if rc == 0:
            installed = json.loads(out)
            result["venv"] = {n: installed[normalize_name(n)] for n in p["packages"]
                              if normalize_name(n) in installed}
        rc, out, err = module.run_command([python, "-c", "import platform; print(platform.python_version())"])
        result["venv_python"] = out.strip() if rc == 0 else None
    path = p["disk_path"]
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    result.update(disk_path=path, disk_free_gb=round(st.f_bavail * st.f_frsize / 1e9, 1),
                  clock_skew=round(now - p["controller_time"], 3) if p["controller_time"] else None,
                  controller_time=p["controller_time"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
