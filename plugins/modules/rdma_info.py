#!/usr/bin/python
"""Module: a node's RDMA facts from the tools operators use, parsed by module_utils.rdma."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rdma_info
short_description: Report a node's RDMA devices, ports, GIDs, GPU-NIC topology and GPUDirect module
version_added: 0.1.0
description:
  - Runs C(ibv_devinfo -v) (rdma-core's C(ibverbs-utils)), reads the GID table from sysfs as
    C(show_gids) prints it (C(/sys/class/infiniband/DEV/ports/N/gids), C(gid_attrs/types),
    C(gid_attrs/ndevs)), C(nvidia-smi topo -m) where C(nvidia-smi) exists, and C(/proc/modules)
    (C(nvidia_peermem)).
  - Where a device exists and O(bandwidth_peer) is set, runs perftest's C(ib_write_bw) against a
    peer that runs it in server mode (O(bandwidth_server)), bounded by O(bandwidth_seconds).
  - The facts are judged across nodes on the controller (filter C(rdma_report)). Read-only apart
    from the short-lived perftest process; the same in check mode (no bandwidth test there).
options:
  bandwidth_device:
    description: RDMA device for C(ib_write_bw); empty takes the first ACTIVE one.
    type: str
    default: ''
  bandwidth_peer:
    description: Address of the peer whose C(ib_write_bw) server this node connects to; empty runs no test.
    type: str
    default: ''
  bandwidth_server:
    description: Run C(ib_write_bw) as the server a peer connects to (returns when it finished or timed out).
    type: bool
    default: false
  bandwidth_port:
    description: TCP port of perftest's out-of-band exchange.
    type: int
    default: 18515
  bandwidth_seconds:
    description: Duration of the bandwidth test (C(-D)); the whole run is bounded by twice this plus 10 s.
    type: int
    default: 3
extends_documentation_fragment:
  - sglang_ops.cluster.read_only
"""

EXAMPLES = r"""
- name: Read the node's RDMA facts
  sglang_ops.cluster.rdma_info:
  register: rdma
"""

RETURN = r"""
rdma:
  description: C(rdma_core) (ibv_devinfo found), C(devices) (name, ports with state, active_mtu,
    link_layer, gids), C(gids) (show_gids rows), C(topology) (nvidia-smi topo -m, or null),
    C(peermem) (nvidia_peermem loaded), C(gpu_vendor) (nvidia where nvidia-smi exists).
  type: dict
  returned: always
bandwidth:
  description: The parsed C(ib_write_bw) result (bytes, iterations, peak_gbps, average_gbps), null
    when it printed none, absent when no test ran.
  type: dict
  returned: when a bandwidth test ran
bandwidth_output:
  description: The last lines of C(ib_write_bw)'s output when it ran.
  type: str
  returned: when a bandwidth test ran
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils import rdma

SYSFS = "/sys/class/infiniband"


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def sysfs_gids():
    """The GID table of every device and port, as show_gids rows."""
    rows = []
    if not os.path.isdir(SYSFS):
        return rows
    for dev in sorted(os.listdir(SYSFS)):
        ports = os.path.join(SYSFS, dev, "ports")
        for port in sorted(os.listdir(ports)) if os.path.isdir(ports) else []:
            base = os.path.join(ports, port)
            entries = {}
            gid_dir = os.path.join(base, "gids")
            for index in os.listdir(gid_dir) if os.path.isdir(gid_dir) else []:
                if not index.isdigit():
                    continue
                entries[int(index)] = (_read(os.path.join(base, "gids", index)),
                                       _read(os.path.join(base, "gid_attrs", "types", index)),
                                       _read(os.path.join(base, "gid_attrs", "ndevs", index)))
            if port.isdigit():
                rows += rdma.sysfs_gid_rows(dev, int(port), entries)
    return rows


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bandwidth_device=dict(type="str", default=""),
            bandwidth_peer=dict(type="str", default=""),
            bandwidth_server=dict(type="bool", default=False),
            bandwidth_port=dict(type="int", default=18515),
            bandwidth_seconds=dict(type="int", default=3),
        ),
        supports_check_mode=True,
    )
    p = module.params
    devinfo_bin = shutil.which("ibv_devinfo")
    devinfo = None
    if devinfo_bin:
        # rdma-core says "No IB devices found" (and may exit non-zero) on a node without devices.
        _rc, out, err = module.run_command([devinfo_bin, "-v"])
        devinfo = out + err
    topo = None
    smi = shutil.which("nvidia-smi")
    if smi:
        rc, out, _err = module.run_command([smi, "topo", "-m"])
        topo = out if rc == 0 else None
    gids = sysfs_gids()
    facts = rdma.facts_from_outputs(devinfo, None, topo, _read("/proc/modules"), rdma_core=bool(devinfo_bin),
                                    gpu_vendor="nvidia" if smi else None)
    if gids:
        facts["gids"] = gids
    result = {"changed": False, "rdma": facts}
    device = p["bandwidth_device"] or next(iter(rdma.active_devices(facts)), "")
    if device and (p["bandwidth_peer"] or p["bandwidth_server"]) and not module.check_mode:
        perftest = shutil.which("ib_write_bw")
        if not perftest:
            module.fail_json(msg="ib_write_bw (perftest) is not installed on this node. Fix: install perftest, "
                                 "or turn the bandwidth test off (preflight_rdma_bandwidth: false)", **result)
        seconds = p["bandwidth_seconds"]
        argv = ["timeout", str(2 * seconds + 10), perftest, "-d", device, "-p", str(p["bandwidth_port"]),
                "-D", str(seconds), "--report_gbits", "-F"]
        if not p["bandwidth_server"]:
            argv.append(p["bandwidth_peer"])
        _rc, out, err = module.run_command(argv)
        result["bandwidth"] = rdma.parse_ib_write_bw(out)
        result["bandwidth_output"] = "\n".join((out + err).strip().splitlines()[-8:])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
