"""GPU driver state and the install plan: what is there, what the pins want, whether to reboot.

Why this exists: drivers are where GPU nodes drift (one node on 570.124, the rest on 570.133)
and where a careless role reboots a whole cluster. Detection parses what the kernel and the
tools report; the plan is plain Python, so "nothing to do" and "reboot needed" are decided in
unit-tested code, and check mode can show the exact packages and pins.
"""

from __future__ import annotations

import re

PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}
# PCI classes of GPUs: VGA (0x0300xx) and 3D controllers (0x0302xx, datacenter GPUs).
GPU_CLASSES = ("0x0300", "0x0302")


def detect_vendor(pci_devices):
    """pci_devices: [(vendor, class)] as /sys/bus/pci/devices/*/{vendor,class} read -> 'nvidia', 'amd' or 'none'.
    NVIDIA wins over an AMD VGA chip (BMCs and onboard graphics are often AMD/ASPEED)."""
    found = {PCI_VENDORS[v] for v, c in pci_devices if v in PCI_VENDORS and c.startswith(GPU_CLASSES)}
    if "nvidia" in found:
        return "nvidia"
    if any(PCI_VENDORS.get(v) == "amd" and c.startswith("0x0302") for v, c in pci_devices):
        return "amd"
    return "amd" if "amd" in found and len([1 for v, c in pci_devices if v == "0x1002"]) > 1 else "none"


def parse_nvrm_version(text):
    """/proc/driver/nvidia/version -> (version, 'open' | 'proprietary') of the loaded kernel module."""
    match = re.search(r"NVRM version: NVIDIA UNIX (?:Open Kernel Module for )?\S+\s+(?:Kernel Module\s+)?([0-9.]+)", text)
    if not match:
        return None, None
    return match.group(1), "open" if "Open Kernel Module" in text else "proprietary"


def parse_modinfo(text):
    """`modinfo nvidia` / `modinfo amdgpu` -> {version, license, flavor} of the module on disk."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("version", "license") and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    lic = fields.get("license")
    fields["flavor"] = None if lic is None else ("open" if "GPL" in lic or "MIT" in lic else "proprietary")
    return fields


def branch_of(version):
    return (version or "").split(".")[0] or None


def nvidia_packages(distro, branch, flavor, nvswitch):
    """Package names for one driver branch (NVIDIA's CUDA repository naming on Debian/Ubuntu)."""
    if distro == "Ubuntu":
        driver = "nvidia-driver-%s%s" % (branch, "-open" if flavor == "open" else "-server")
    else:
        driver = "nvidia-open-%s" % branch if flavor == "open" else "cuda-drivers-%s" % branch
    packages = [driver]
    if nvswitch:
        packages.append("nvidia-fabricmanager-%s" % branch)
    return packages


def plan(vendor, want, have, distro="Ubuntu", flavor="open", nvswitch=False, rocm=None):
    """What the role must do on one node.

    want:  the pinned version ('570.133.20', or a branch '570') for NVIDIA, the amdgpu-dkms
           version for AMD. have: {'version', 'flavor', 'loaded'} detected on the node.
    Returns {action, packages, pins, requested, reboot, reason}; action is 'none', 'install' or
    'change'; requested is what apt gets ('name=pin' where pinned).
    """
    result = _plan(vendor, want, have, distro, flavor, nvswitch, rocm)
    result["requested"] = ["%s=%s" % (p, result["pins"][p]) if p in result["pins"] else p for p in result["packages"]]
    return result


def _plan(vendor, want, have, distro, flavor, nvswitch, rocm):
    if vendor == "none":
        return {"action": "none", "packages": [], "pins": {}, "reboot": False, "reason": "no GPU driver wanted"}
    version, loaded = have.get("version"), have.get("loaded")
    if vendor == "nvidia":
        branch = branch_of(want)
        matches = version is not None and (version == want or (want == branch and branch_of(version) == branch))
        same_flavor = have.get("flavor") in (None, flavor)
        packages = nvidia_packages(distro, branch, flavor, nvswitch) + ["nvidia-persistenced"]
        pins = {p: (want if "." in want else "%s.*" % want) for p in packages if p != "nvidia-persistenced"}
    elif vendor == "amd":
        matches, same_flavor = version is not None and version.startswith(want), True
        packages = ["amdgpu-dkms"] + (["rocm"] if rocm else [])
        pins = {"amdgpu-dkms": "%s*" % want}
        if rocm:
            pins["rocm"] = "%s*" % rocm
    else:
        raise ValueError("gpu_driver_vendor %r: use nvidia, amd, none or auto" % vendor)
    if matches and same_flavor and (loaded is None or loaded == version):
        return {"action": "none", "packages": packages, "pins": pins, "reboot": False,
                "reason": "%s %s installed and loaded" % (vendor, version)}
    if matches and same_flavor:
        return {"action": "none", "packages": packages, "pins": pins, "reboot": True,
                "reason": "%s %s installed but %s is loaded: a reboot loads it" % (vendor, version, loaded)}
    action = "install" if version is None else "change"
    reason = ("no %s driver installed" % vendor if version is None
              else "%s %s (%s) installed, %s (%s) wanted" % (vendor, version, have.get("flavor"), want, flavor))
    # A new kernel module only takes effect after the old one is unloaded: reboot.
    return {"action": action, "packages": packages, "pins": pins, "reboot": True, "reason": reason}
