"""Parsing what the GPU vendors' tools print, into one shape the preflight checks compare.

Why this exists: a node with a GPU missing, another driver, or another CUDA/ROCm runtime fails
multi-node SGLang late (a hang at NCCL init, or a kernel mismatch after model load). These
parsers are pure functions over the tools' text/JSON so they are tested on faithful fixtures;
the gpu_info module only runs the tools.
"""

from __future__ import annotations

import json
import re

NVIDIA_QUERY = "index,name,memory.total,driver_version,uuid,pci.bus_id"
NVIDIA_ARGS = ["--query-gpu=%s" % NVIDIA_QUERY, "--format=csv,noheader,nounits"]
_UNITS = {"B": 1 / 2 ** 20, "KB": 1e3 / 2 ** 20, "MB": 1e6 / 2 ** 20, "GB": 1e9 / 2 ** 20,
          "KIB": 1 / 1024, "MIB": 1, "GIB": 1024}


def empty(vendor="none"):
    return {"vendor": vendor, "count": 0, "gpus": [], "driver_version": None,
            "cuda_version": None, "rocm_version": None, "nvlink_links": 0, "nvswitches": 0}


def parse_nvidia_csv(text):
    """`nvidia-smi --query-gpu=<NVIDIA_QUERY> --format=csv,noheader,nounits`."""
    info = empty("nvidia")
    for line in text.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6 or not fields[0].isdigit():
            continue
        info["gpus"].append({"index": int(fields[0]), "name": fields[1],
                             "memory_mib": int(float(fields[2])) if fields[2][:1].isdigit() else None,
                             "uuid": fields[4], "pci_bus_id": fields[5]})
        info["driver_version"] = fields[3]
    info["count"] = len(info["gpus"])
    return info


def parse_nvidia_banner(text):
    """The CUDA version the driver supports, from plain `nvidia-smi`'s banner."""
    match = re.search(r"CUDA Version:\s*([0-9.]+)", text)
    return match.group(1) if match else None


def parse_nvlink_status(text):
    """Active links of one GPU, from `nvidia-smi nvlink --status -i 0` (inactive links say so)."""
    return sum(1 for line in text.splitlines()
               if re.match(r"\s*Link \d+:", line) and "inactive" not in line.lower()
               and "N/A" not in line)


def _mib(value):
    """amd-smi sizes: {"value": 196592, "unit": "MB"}, "196592 MB", or a number of MB."""
    if isinstance(value, dict):
        number, unit = value.get("value"), str(value.get("unit", "MB"))
    elif isinstance(value, str):
        parts = value.split()
        number, unit = (parts[0], parts[1]) if len(parts) == 2 else (value, "MB")
    else:
        number, unit = value, "MB"
    try:
        return int(round(float(number) * _UNITS.get(unit.upper(), 1)))
    except (TypeError, ValueError):
        return None


def parse_amd_smi_static(text):
    """`amd-smi static --asic --vram --driver --bus --json`: a list (ROCm 6) or {"gpu_data": [...]} (ROCm 7)."""
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("gpu_data", [])
    info = empty("amd")
    for entry in data:
        asic, vram, driver = entry.get("asic", {}), entry.get("vram", {}), entry.get("driver", {})
        size = vram.get("size", vram.get("vram_size"))
        info["gpus"].append({"index": int(entry.get("gpu", len(info["gpus"]))),
                             "name": asic.get("market_name"), "memory_mib": _mib(size),
                             "uuid": asic.get("asic_serial"),
                             "pci_bus_id": entry.get("bus", {}).get("bdf")})
        info["driver_version"] = driver.get("version", driver.get("driver_version"))
    info["count"] = len(info["gpus"])
    return info


def parse_amd_smi_version(text):
    """`amd-smi version --json`: [{"tool": ..., "rocm_version": "6.2.0", ...}] or a dict."""
    data = json.loads(text)
    entry = data[0] if isinstance(data, list) and data else data
    return entry.get("rocm_version") if isinstance(entry, dict) else None


def parse_rocm_smi(text):
    """`rocm-smi --showproductname --showmeminfo vram --showdriverversion --json` (older ROCm)."""
    data = json.loads(text)
    info = empty("amd")
    cards = sorted((k for k in data if k.startswith("card")), key=lambda k: int(k[4:]))
    for key in cards:
        card = data[key]
        total = card.get("VRAM Total Memory (B)")
        info["gpus"].append({"index": int(key[4:]), "name": card.get("Card series") or card.get("Card SKU"),
                             "memory_mib": _mib({"value": total, "unit": "B"}) if total else None,
                             "uuid": card.get("Unique ID"), "pci_bus_id": card.get("PCI Bus")})
    info["driver_version"] = data.get("system", {}).get("Driver version")
    info["count"] = len(info["gpus"])
    return info


def check_gpus(host, info, declared, fake, ids):
    """Problems between what the inventory declares and what the node has (empty = fine)."""
    if fake:
        if info["count"]:
            return ["%s: cluster_gpus_fake: the node has %d real %s GPUs. Fix: remove "
                    "cluster_gpus_fake on real GPU servers" % (host, info["count"], info["vendor"])]
        return []
    if info["count"] == 0:
        return ["%s: cluster_gpus_per_node: %s declared but no GPU found (nvidia-smi, amd-smi and "
                "rocm-smi absent or empty). Fix: install the GPU driver (role gpu_driver), or set "
                "cluster_gpus_fake: true on CPU test hosts" % (host, declared)]
    problems = []
    if declared != info["count"]:
        problems.append("%s: cluster_gpus_per_node: %s declared, %d found (%s). Fix: set "
                        "cluster_gpus_per_node: %d or check the missing GPUs"
                        % (host, declared, info["count"], info["vendor"], info["count"]))
    present = {g["index"] for g in info["gpus"]}
    missing = [i for i in ids or [] if i not in present]
    if missing:
        problems.append("%s: cluster_gpu_ids: GPU %s not present (found %s). Fix: use indexes "
                        "the node has" % (host, missing, sorted(present)))
    return problems
