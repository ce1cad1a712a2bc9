"""GPU facts parsed from the vendors' real output formats, and the declared-vs-found verdict."""

from pathlib import Path

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import gpu

FIX = Path(__file__).parent / "fixtures"


def read(name):
    return (FIX / name).read_text()


def test_nvidia_h100x8():
    info = gpu.parse_nvidia_csv(read("nvidia-smi-query-h100x8.csv"))
    assert (info["vendor"], info["count"], info["driver_version"]) == ("nvidia", 8, "570.133.20")
    assert info["gpus"][7] == {"index": 7, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559,
                               "uuid": "GPU-5f6a7b8c-9d0e-4f1a-9b2c-7d8e9fa0b1c7", "pci_bus_id": "00000000:DB:00.0"}
    assert gpu.parse_nvidia_banner(read("nvidia-smi-banner.txt")) == "12.8"


@pytest.mark.parametrize("fixture,links", [("nvidia-smi-nvlink-status.txt", 18),
                                           ("nvidia-smi-nvlink-status-pcie.txt", 0)])
def test_nvlink_links(fixture, links):
    assert gpu.parse_nvlink_status(read(fixture)) == links


@pytest.mark.parametrize("fixture,count,driver,bdf", [
    ("amd-smi-static-mi300x-rocm6.json", 2, "6.7.0", "0000:26:00.0"),
    ("amd-smi-static-mi300x-rocm7.json", 1, "6.14.14", "0000:83:00.0"),
])
def test_amd_smi_static(fixture, count, driver, bdf):
    info = gpu.parse_amd_smi_static(read(fixture))
    assert (info["vendor"], info["count"], info["driver_version"]) == ("amd", count, driver)
    assert info["gpus"][-1]["pci_bus_id"] == bdf
    assert info["gpus"][0]["name"] == "AMD Instinct MI300X"
    assert info["gpus"][0]["memory_mib"] == 187485  # 196592 MB (decimal) in MiB


def test_amd_versions_and_rocm_smi():
    assert gpu.parse_amd_smi_version(read("amd-smi-version.json")) == "6.3.1"
    info = gpu.parse_rocm_smi(read("rocm-smi-mi250x.json"))
    assert (info["count"], info["driver_version"], info["gpus"][1]["name"]) == (2, "6.3.6", "AMD Instinct MI250X")
    assert info["gpus"][0]["memory_mib"] == 65520


@pytest.mark.parametrize("text", ["", "No devices were found\n"])
def test_no_nvidia_devices(text):
    assert gpu.parse_nvidia_csv(text)["count"] == 0


H100 = gpu.parse_nvidia_csv(read("nvidia-smi-query-h100x8.csv"))


@pytest.mark.parametrize("info,declared,fake,ids,expected", [
    (H100, 8, False, None, []),
    (H100, 8, False, [4, 5, 6, 7], []),
    (H100, 4, False, None, ["gpu1: cluster_gpus_per_node: 4 declared, 8 found (nvidia)"]),
    (gpu.empty(), 8, False, None, ["gpu1: cluster_gpus_per_node: 8 declared but no GPU found"]),
    (gpu.empty(), 4, True, None, []),
    (H100, 4, True, None, ["gpu1: cluster_gpus_fake: the node has 8 real nvidia GPUs"]),
])
def test_check_gpus(info, declared, fake, ids, expected):
    problems = gpu.check_gpus("gpu1", info, declared, fake, ids)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start) and "Fix:" in problem
