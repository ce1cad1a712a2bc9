#!/usr/bin/python
"""Module: the node's GPUs, from nvidia-smi, amd-smi or rocm-smi."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_info
short_description: Report the GPUs of a node (NVIDIA or AMD) and their driver and runtime versions
version_added: 0.1.0
description:
  - NVIDIA through C(nvidia-smi --query-gpu ... --format=csv); the CUDA version from its banner;
    active NVLink links of GPU 0 and the NVSwitch count where those are cheap to read.
  - AMD through C(amd-smi static --json) (C(amd-smi version --json) for the ROCm version), or
    C(rocm-smi --json) where amd-smi is absent.
  - A node without any of these tools, or where they list nothing, reports vendor C(none) and
    count 0. Fake GPUs of test hosts are never reported here; the inventory declares them.
  - Read-only; the same in check mode.
options: {}
extends_documentation_fragment:
  - sglang_ops.cluster.read_only
"""

EXAMPLES = r"""
- name: Read the GPUs
  sglang_ops.cluster.gpu_info:
  register: gpus
"""

RETURN = r"""
vendor:
  description: C(nvidia), C(amd) or C(none).
  type: str
  returned: always
count:
  description: Number of GPUs.
  type: int
  returned: always
gpus:
  description: One entry per GPU.
  type: list
  elements: dict
  returned: always
  sample: [{index: 0, name: NVIDIA H100 80GB HBM3, memory_mib: 81559, uuid: GPU-5d1c..., pci_bus_id: "00000000:18:00.0"}]
driver_version:
  description: Kernel driver version.
  type: str
  returned: always
cuda_version:
  description: CUDA version the NVIDIA driver supports.
  type: str
  returned: always
rocm_version:
  description: ROCm version (AMD).
  type: str
  returned: always
nvlink_links:
  description: Active NVLink links of GPU 0.
  type: int
  returned: always
nvswitches:
  description: NVSwitch devices the driver exposes.
  type: int
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils import gpu

NVSWITCH_DIR = "/proc/driver/nvidia-nvswitch/devices"


def run(module, argv):
    rc, out, err = module.run_command(argv)
    return out if rc == 0 else None


def nvidia(module, smi):
    out = run(module, [smi] + gpu.NVIDIA_ARGS)
    if out is None:
        return None
    info = gpu.parse_nvidia_csv(out)
    info["cuda_version"] = gpu.parse_nvidia_banner(run(module, [smi]) or "")
    if info["count"]:
        info["nvlink_links"] = gpu.parse_nvlink_status(run(module, [smi, "nvlink", "--status", "-i", "0"]) or "")
    if os.path.isdir(NVSWITCH_DIR):
        info["nvswitches"] = len(os.listdir(NVSWITCH_DIR))
    return info


def amd(module, amd_smi, rocm_smi):
    if amd_smi:
        out = run(module, [amd_smi, "static", "--asic", "--vram", "--driver", "--bus", "--json"])
        if out:
            info = gpu.parse_amd_smi_static(out)
            version = run(module, [amd_smi, "version", "--json"])
            info["rocm_version"] = gpu.parse_amd_smi_version(version) if version else None
            return info
    if rocm_smi:
        out = run(module, [rocm_smi, "--showproductname", "--showmeminfo", "vram",
                           "--showdriverversion", "--json"])
        if out:
            return gpu.parse_rocm_smi(out)
    return None


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    paths = ["/usr/bin", "/usr/local/bin", "/opt/rocm/bin"]
    smi = module.get_bin_path("nvidia-smi", opt_dirs=paths)
    info = nvidia(module, smi) if smi else None
    if not info or not info["count"]:
        info = amd(module, module.get_bin_path("amd-smi", opt_dirs=paths),
                   module.get_bin_path("rocm-smi", opt_dirs=paths)) or info
    module.exit_json(changed=False, **(info or gpu.empty()))


if __name__ == "__main__":
    main()
