#!/usr/bin/python
"""Module: which GPU vendor a node has (PCI IDs) and which driver is installed and loaded."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_driver_facts
short_description: Detect the GPU vendor from PCI IDs and the installed and loaded GPU driver
version_added: 0.1.0
description:
  - Reads C(/sys/bus/pci/devices/*/vendor) and C(class) (no driver needed), the loaded NVIDIA module from
    C(/proc/driver/nvidia/version), the module on disk from C(modinfo nvidia) or C(modinfo amdgpu), the NVSwitch
    devices, and the ROCm version from C(/opt/rocm/.info/version).
  - Read-only; the same in check mode.
options: {}
extends_documentation_fragment:
  - sglang_ops.cluster.read_only
"""

EXAMPLES = r"""
- name: Detect the GPU driver state
  sglang_ops.cluster.gpu_driver_facts:
  register: driver
"""

RETURN = r"""
vendor:
  description: C(nvidia), C(amd) or C(none), from the PCI devices.
  type: str
  returned: always
installed:
  description: C({version, flavor, loaded}) of the driver (module on disk, open or proprietary, loaded version).
  type: dict
  returned: always
nvswitch:
  description: Whether NVSwitch devices are present (fabric manager needed).
  type: bool
  returned: always
rocm_version:
  description: Installed ROCm version, or null.
  type: str
  returned: always
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils.driver import (
    detect_vendor,
    parse_modinfo,
    parse_nvrm_version,
)


def read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    devices = [(read(d + "/vendor"), read(d + "/class")) for d in glob.glob("/sys/bus/pci/devices/*")]
    vendor = detect_vendor(devices)
    installed = {"version": None, "flavor": None, "loaded": None}
    modinfo = module.get_bin_path("modinfo")
    if vendor in ("nvidia", "amd") and modinfo:
        rc, out, err = module.run_command([modinfo, "nvidia" if vendor == "nvidia" else "amdgpu"])
        if rc == 0:
            info = parse_modinfo(out)
            installed.update(version=info.get("version"), flavor=info.get("flavor"))
    if vendor == "nvidia":
        installed["loaded"] = parse_nvrm_version(read("/proc/driver/nvidia/version"))[0]
    # NVSwitch: NVIDIA PCI bridges (class 0x0680).
    nvswitch = any(v == "0x10de" and c.startswith("0x0680") for v, c in devices) or \
        os.path.isdir("/proc/driver/nvidia-nvswitch/devices")
    rocm = read("/opt/rocm/.info/version") or None
    module.exit_json(changed=False, vendor=vendor, installed=installed, nvswitch=nvswitch, rocm_version=rocm)


if __name__ == "__main__":
    main()
