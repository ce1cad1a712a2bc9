"""GPU driver detection on the kernel's and tools' real formats, and the install/reboot plan."""

from pathlib import Path

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import driver

FIX = Path(__file__).parent / "fixtures"


def read(name):
    return (FIX / name).read_text()


@pytest.mark.parametrize("devices,vendor", [
    ([("0x10de", "0x030200")] * 8 + [("0x1a03", "0x030000")], "nvidia"),  # 8 H100 + ASPEED BMC
    ([("0x1002", "0x038000"), ("0x1002", "0x030200")], "amd"),             # MI300X (3D controller)
    ([("0x1a03", "0x030000"), ("0x8086", "0x060000")], "none"),            # a CPU server
    ([("0x1002", "0x030000")], "none"),                                    # one onboard AMD VGA: not a GPU server
    ([("0x1002", "0x030000"), ("0x10de", "0x030200")], "nvidia"),
])
def test_detect_vendor(devices, vendor):
    assert driver.detect_vendor(devices) == vendor


def test_parse_loaded_and_on_disk():
    assert driver.parse_nvrm_version(read("proc-driver-nvidia-version-open.txt")) == ("570.133.20", "open")
    assert driver.parse_nvrm_version(read("proc-driver-nvidia-version-proprietary.txt")) == ("550.163.01", "proprietary")
    assert driver.parse_nvrm_version("") == (None, None)
    assert driver.parse_modinfo(read("modinfo-nvidia-open.txt")) == {"version": "570.133.20", "license": "Dual MIT/GPL", "flavor": "open"}
    assert driver.parse_modinfo(read("modinfo-nvidia-proprietary.txt"))["flavor"] == "proprietary"
    assert driver.parse_modinfo(read("modinfo-amdgpu.txt"))["version"] == "6.10.5"
    assert driver.parse_modinfo("modinfo: ERROR: Module nvidia not found.") == {"flavor": None}


OK = {"version": "570.133.20", "flavor": "open", "loaded": "570.133.20"}


@pytest.mark.parametrize("want,have,kw,action,reboot,packages", [
    ("570.133.20", OK, {}, "none", False, ["nvidia-driver-570-open", "nvidia-persistenced"]),
    ("570", OK, {}, "none", False, None),
    ("570.133.20", dict(OK, loaded="570.124.06"), {}, "none", True, None),
    ("570.133.20", {"version": None, "flavor": None, "loaded": None}, {}, "install", True, None),
    ("570.133.20", dict(OK, version="550.163.01", flavor="proprietary", loaded="550.163.01"), {}, "change", True, None),
    ("570.133.20", OK, {"flavor": "proprietary"}, "change", True, ["nvidia-driver-570-server", "nvidia-persistenced"]),
    ("570.133.20", OK, {"nvswitch": True, "distro": "Debian"}, "none", False,
     ["nvidia-open-570", "nvidia-fabricmanager-570", "nvidia-persistenced"]),
])
def test_nvidia_plan(want, have, kw, action, reboot, packages):
    p = driver.plan("nvidia", want, have, **kw)
    assert (p["action"], p["reboot"]) == (action, reboot), p["reason"]
    if packages:
        assert p["packages"] == packages
    assert all(v in (want, want + ".*") for v in p["pins"].values())


def test_amd_and_none_plans():
    p = driver.plan("amd", "6.10.5", {"version": "6.10.5", "loaded": None}, rocm="6.3.1")
    assert p["action"] == "none" and p["pins"] == {"amdgpu-dkms": "6.10.5*", "rocm": "6.3.1*"}
    assert p["requested"] == ["amdgpu-dkms=6.10.5*", "rocm=6.3.1*"]
    assert driver.plan("nvidia", "570", {"version": None})["requested"] == [
        "nvidia-driver-570-open=570.*", "nvidia-persistenced"]
    assert driver.plan("amd", "6.12", {"version": "6.10.5"})["action"] == "change"
    assert driver.plan("none", "", {}) == {"action": "none", "packages": [], "pins": {}, "reboot": False,
                                           "reason": "no GPU driver wanted", "requested": []}
    with pytest.raises(ValueError, match="use nvidia, amd, none or auto"):
        driver.plan("intel", "1", {})
