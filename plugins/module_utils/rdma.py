"""RDMA facts, parsed from the real tools' output, and judged together across nodes.

Why this exists: a PD deployment moves the KV cache over RDMA (Mooncake, NIXL) and NCCL runs its
collectives over it; both fail late, or silently fall back to TCP, when a port is DOWN, a RoCE
GID is missing, GPUDirect (nvidia-peermem) is not loaded, links differ between nodes or the
wrong NIC serves a GPU. The parsers read what operators read (`ibv_devinfo -v`, the sysfs GID
table as `show_gids` prints it, `nvidia-smi topo -m`, perftest's `ib_write_bw`, /proc/modules);
the judge turns the facts of every node into one verdict per check and node: pass, fail, or
"not run" with its reason (never a pass where nothing was measured). The same facts choose
`--disaggregation-ib-device` and the NCCL IB variables, so a unit and the check cannot disagree.
"""

from __future__ import annotations

import json
import re

# Environment the plan owns where RDMA is planned; sglang_server_env may not set it.
NCCL_IB_ENV = ("NCCL_IB_HCA", "NCCL_IB_GID_INDEX", "NCCL_IB_DISABLE")
ACTIVE = "PORT_ACTIVE"
# nvidia-smi topo -m: how far a NIC is from a GPU, nearest first.
TOPO_RANK = {"X": 0, "PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}
# The perftest bandwidth floor below which a link counts as broken (Gbit/s), unless configured.
DEFAULT_BW_FLOOR_GBPS = 50.0

_PORT = re.compile(r"^\s*port:\s*(\d+)\s*$")
_KV = re.compile(r"^\s*([A-Za-z_ ]+?):\s*(.*?)\s*$")
_GID = re.compile(r"^\s*GID\[\s*(\d+)\]:\s*([0-9a-fA-F:.]+)(?:,\s*(.+?))?\s*$")


def _first_int(text):
    match = re.match(r"\s*(\d+)", text or "")
    return int(match.group(1)) if match else None


def parse_ibv_devinfo(text):
    """`ibv_devinfo -v` -> [{name, transport, fw_ver, vendor_id, vendor_part_id, ports: [...]}].

    Each port: {port, state, active_mtu, link_layer, gids: [{index, gid, type}]}. The tool's
    "No IB devices found" (rdma-core installed, no device) is [].
    """
    devices, dev, port = [], None, None
    for line in text.splitlines():
        if line.startswith("hca_id:"):
            dev = {"name": line.split(":", 1)[1].strip(), "ports": []}
            devices.append(dev)
            port = None
            continue
        if dev is None:
            continue
        match = _PORT.match(line)
        if match:
            port = {"port": int(match.group(1)), "state": None, "active_mtu": None, "link_layer": None,
                    "gids": []}
            dev["ports"].append(port)
            continue
        match = _GID.match(line)
        if match and port is not None:
            port["gids"].append({"index": int(match.group(1)), "gid": match.group(2).lower(),
                                 "type": (match.group(3) or "").strip() or None})
            continue
        match = _KV.match(line)
        if not match:
            continue
        key, value = match.group(1).strip(), match.group(2)
        if port is None:
            if key in ("transport", "fw_ver", "vendor_id", "vendor_part_id", "board_id", "node_guid"):
                dev[key] = value
        elif key == "state":
            port["state"] = value.split()[0] if value else None
        elif key == "active_mtu":
            port["active_mtu"] = _first_int(value)
        elif key == "link_layer":
            port["link_layer"] = value
    return devices


def parse_show_gids(text):
    """The GID table as `show_gids` prints it (DEV PORT INDEX GID IPv4 VER DEV) -> rows.

    Rows: {device, port, index, gid, ipv4, type ("RoCE v2", "RoCE v1", "IB"), netdev}.
    The rdma_info module prints the sysfs table (ports/N/gids, gid_attrs/types, gid_attrs/ndevs)
    in this same shape (`sysfs_gid_rows`), so one parser serves both.
    """
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        dev, port, index, gid = parts[0], int(parts[1]), int(parts[2]), parts[3].lower()
        rest = parts[4:]
        ipv4 = rest.pop(0) if rest and re.match(r"^\d+\.\d+\.\d+\.\d+\Z", rest[0]) else None
        kind = None
        if rest and rest[0] in ("v1", "v2"):
            kind = "RoCE " + rest.pop(0)
        elif len(rest) >= 2 and rest[0] == "RoCE":
            kind = "RoCE " + rest[1]
            rest = rest[2:]
        elif rest and rest[0] == "IB":
            kind = "IB"
            rest.pop(0)
        rows.append({"device": dev, "port": port, "index": index, "gid": gid, "ipv4": ipv4,
                     "type": kind, "netdev": rest[0] if rest else None})
    return rows


def sysfs_gid_rows(device, port, entries):
    """show_gids rows from sysfs: entries {index: (gid, type, ndev)} of one port (zero GIDs,
    the unused slots, are left out as show_gids leaves them out)."""
    rows = []
    for index in sorted(entries):
        gid, kind, ndev = entries[index]
        gid = (gid or "").strip().lower()
        if not gid or set(gid.replace(":", "")) <= {"0"}:
            continue
        kind = (kind or "").strip()
        if kind.lower() == "roce v2":
            kind = "RoCE v2"
        elif kind.lower() == "ib/roce v1" and not ndev:
            kind = "IB"
        else:
            kind = "RoCE v1" if kind else None
        ipv4 = None
        if gid.startswith("0000:0000:0000:0000:0000:ffff:"):
            tail = gid.split(":")[-2:]
            ipv4 = ".".join(str(int(h[i:i + 2], 16)) for h in tail for i in (0, 2))
        rows.append({"device": device, "port": port, "index": index, "gid": gid, "ipv4": ipv4,
                     "type": kind, "netdev": (ndev or "").strip() or None})
    return rows


def _ipv4_of_gid(gid):
    """The IPv4 address an IPv4-mapped GID carries (::ffff:a.b.c.d or its long form), else None."""
    gid = gid.lower()
    if gid.startswith("::ffff:") and "." in gid:
        return gid[len("::ffff:"):]
    parts = gid.split(":")
    if len(parts) == 8 and all(p in ("0", "0000") for p in parts[:5]) and parts[5] == "ffff":
        return ".".join(str(int(h.zfill(4)[i:i + 2], 16)) for h in parts[6:] for i in (0, 2))
    return None


def gid_rows_from_devinfo(devices):
    """show_gids rows from `ibv_devinfo -v`'s GID lines (where sysfs is not readable)."""
    rows = []
    for dev in devices:
        for port in dev.get("ports", []):
            for gid in port.get("gids", []):
                kind = gid.get("type") or ("IB" if port.get("link_layer") == "InfiniBand" else None)
                rows.append({"device": dev["name"], "port": port["port"], "index": gid["index"],
                             "gid": gid["gid"], "ipv4": _ipv4_of_gid(gid["gid"]), "type": kind,
                             "netdev": None})
    return rows


def facts_from_outputs(devinfo, gids_text=None, topo_text=None, modules_text=None, rdma_core=True,
                       gpu_vendor=None):
    """One node's RDMA facts from the tools' outputs (the rdma_info module runs them).

    devinfo: `ibv_devinfo -v` (None: not installed); gids_text: the show_gids table (None: taken
    from devinfo's GID lines); topo_text: `nvidia-smi topo -m` (None: unknown); modules_text:
    /proc/modules.
    """
    devices = parse_ibv_devinfo(devinfo) if devinfo else []
    gids = parse_show_gids(gids_text) if gids_text else gid_rows_from_devinfo(devices)
    modules = parse_modules(modules_text) if modules_text else set()
    return {
        "rdma_core": bool(rdma_core and devinfo is not None),
        "devices": devices,
        "gids": gids,
        "topology": parse_topo(topo_text) if topo_text else None,
        "peermem": "nvidia_peermem" in modules,
        "gpu_vendor": gpu_vendor,
    }


def parse_topo(text):
    """`nvidia-smi topo -m` -> {"gpus": {gpu index: {nic name: link}}, "nics": {NICn: name}}."""
    header, gpus, legend = None, {}, {}
    for line in text.splitlines():
        match = re.match(r"^\s*(NIC\d+):\s*(\S+)\s*$", line)
        if match:
            legend[match.group(1)] = match.group(2)
            continue
        cells = line.split()
        if not cells:
            continue
        if header is None and cells[0] == "GPU0" and len(cells) > 1 and cells[1] != "X":
            # The columns before "CPU Affinity": GPUs, then NICs (NICn with a legend, or older
            # nvidia-smi versions: the device names themselves).
            header = cells[:cells.index("CPU")] if "CPU" in cells else cells
            continue
        if header and re.match(r"^GPU\d+\Z", cells[0]):
            links = cells[1:1 + len(header)]
            gpus[int(cells[0][3:])] = {col: link for col, link in zip(header, links)
                                       if not col.startswith("GPU")}
    named = {}
    for gpu, links in gpus.items():
        named[gpu] = {legend.get(col, col): link for col, link in links.items()}
    return {"gpus": named, "nics": legend}


def nearest_nics(topology, candidates):
    """{gpu index: nearest NIC among candidates} (PIX before PXB before PHB, NODE, SYS)."""
    out = {}
    for gpu, links in (topology or {}).get("gpus", {}).items():
        ranked = sorted((TOPO_RANK.get(link, 9), i, nic) for i, (nic, link) in enumerate(links.items())
                        if nic in candidates)
        if ranked:
            out[gpu] = ranked[0][2]
    return out


def parse_ib_write_bw(text):
    """perftest `ib_write_bw` (client side) -> {bytes, iterations, peak_gbps, average_gbps}.

    Reads the unit from the header (`BW average[Gb/sec]` with --report_gbits, `[MB/sec]`
    otherwise); None when the run printed no result line (it failed).
    """
    unit = None
    for line in text.splitlines():
        if "#bytes" in line and "BW average" in line:
            match = re.search(r"BW average\[(\w+)/sec\]", line)
            unit = match.group(1) if match else None
            continue
        cells = line.split()
        if unit and len(cells) >= 4 and cells[0].isdigit() and cells[1].isdigit():
            peak, avg = float(cells[2]), float(cells[3])
            factor = 1.0 if unit == "Gb" else 8.0 / 1000.0 if unit == "MB" else None
            if factor is None:
                return None
            return {"bytes": int(cells[0]), "iterations": int(cells[1]),
                    "peak_gbps": round(peak * factor, 2), "average_gbps": round(avg * factor, 2)}
    return None


def parse_modules(text):
    """Names of the loaded kernel modules (/proc/modules or lsmod)."""
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] != "Module":
            names.add(parts[0])
    return names


def active_devices(facts):
    """Names of devices with at least one ACTIVE port."""
    return [d["name"] for d in (facts or {}).get("devices", [])
            if any(p.get("state") == ACTIVE for p in d.get("ports", []))]


def used_devices(node, facts):
    """The devices a node uses: pinned (cluster_rdma_devices), else every active one found."""
    return list(node.get("rdma_devices") or []) or active_devices(facts)


def ib_device_arg(node, facts, mode="auto"):
    """--disaggregation-ib-device for the node, or None (no RDMA: SGLang detects nothing).

    With the topology known, a JSON map from each local GPU index (its place in
    CUDA_VISIBLE_DEVICES, as SGLang counts) to its nearest device; else the devices joined.
    """
    if mode == "off":
        return None
    devices = used_devices(node, facts)
    if not devices:
        return None
    nearest = nearest_nics((facts or {}).get("topology"), devices)
    ids = node.get("gpu_ids") or []
    if ids and all(i in nearest for i in ids):
        return json.dumps({str(local): nearest[gpu] for local, gpu in enumerate(ids)}, sort_keys=True)
    return ",".join(devices)


def roce_gid_index(facts, device):
    """The GID index of a RoCE v2 GID carrying an IPv4 address on the device (NCCL's choice), or None."""
    for row in (facts or {}).get("gids", []):
        if row["device"] == device and row["type"] == "RoCE v2" and row["ipv4"]:
            return row["index"]
    return None


def _link_layer(facts, device):
    for dev in (facts or {}).get("devices", []):
        if dev["name"] == device:
            layers = {p.get("link_layer") for p in dev.get("ports", []) if p.get("state") == ACTIVE}
            return layers.pop() if len(layers) == 1 else None
    return None


def nccl_env(node, facts, mode="auto"):
    """NCCL's IB variables for the node, from the plan and its RDMA facts ({} where none)."""
    if mode == "off":
        return {"NCCL_IB_DISABLE": "1"}
    devices = used_devices(node, facts)
    if not devices:
        return {}
    # "=": exact names (mlx5_1 would otherwise also select mlx5_10 ...).
    env = {"NCCL_IB_HCA": "=" + ",".join(devices)}
    gid = node.get("rdma_gid_index")
    if gid is None and _link_layer(facts, devices[0]) == "Ethernet":
        gid = roce_gid_index(facts, devices[0])
    if gid is not None:
        env["NCCL_IB_GID_INDEX"] = str(gid)
    return env


def _verdict(status, detail):
    return {"status": status, "detail": detail}


def judge(plan, facts_by_host, bandwidth=None, floor_gbps=DEFAULT_BW_FLOOR_GBPS):
    """{host: {check: {status, detail}}} for every node, judged together.

    facts_by_host: {host: rdma_info facts}; bandwidth: {host: parsed ib_write_bw result or None}
    from the pairwise test (absent: not run). Checks: rdma stack, rdma devices, rdma ports,
    rdma link (layer and MTU equal across nodes), rdma gid (RoCE v2), gpu-nic affinity,
    nvidia-peermem, rdma bandwidth.
    """
    mode = plan.get("rdma", {}).get("mode", "auto")
    out = {}
    links = {}
    for host, node in plan["nodes"].items():
        facts = facts_by_host.get(host) or {}
        rows = out.setdefault(host, {})
        if mode == "off":
            for check in ("rdma stack", "rdma devices", "rdma ports", "rdma link", "rdma gid",
                          "gpu-nic affinity", "nvidia-peermem", "rdma bandwidth"):
                rows[check] = _verdict("not run", "cluster_rdma is off")
            continue
        present = {d["name"]: d for d in facts.get("devices", [])}
        pinned = node.get("rdma_devices") or []
        missing = [d for d in pinned if d not in present]
        required = mode == "required" or bool(pinned)
        if not facts.get("rdma_core"):
            rows["rdma stack"] = _verdict("fail" if required else "not run",
                                          "rdma-core (libibverbs, ibv_devinfo) not installed")
        else:
            rows["rdma stack"] = _verdict("pass", "rdma-core present")
        if not present:
            reason = "no RDMA device"
            for check in ("rdma devices", "rdma ports", "rdma link", "rdma gid", "gpu-nic affinity",
                          "nvidia-peermem", "rdma bandwidth"):
                rows[check] = _verdict("not run", reason)
            if required:
                rows["rdma devices"] = _verdict("fail", "no RDMA device, but %s" % (
                    "cluster_rdma is required" if mode == "required" else "cluster_rdma_devices lists %s"
                    % ", ".join(pinned)))
            continue
        if missing:
            rows["rdma devices"] = _verdict("fail", "cluster_rdma_devices lists %s, which the node lacks "
                                            "(it has %s)" % (", ".join(missing), ", ".join(sorted(present))))
        else:
            rows["rdma devices"] = _verdict("pass", ", ".join(used_devices(node, facts) or sorted(present)))
        used = [d for d in (pinned or sorted(present)) if d in present]
        down = ["%s port %d %s" % (d, p["port"], p.get("state") or "unknown")
                for d in used for p in present[d].get("ports", []) if p.get("state") != ACTIVE]
        active = [d for d in used if any(p.get("state") == ACTIVE for p in present[d]["ports"])]
        if down and (pinned or not active):
            rows["rdma ports"] = _verdict("fail", "not ACTIVE: %s" % ", ".join(down))
        else:
            rows["rdma ports"] = _verdict("pass", "ACTIVE: %s" % ", ".join(active))
        layer_mtu = sorted({(p.get("link_layer"), p.get("active_mtu")) for d in active
                            for p in present[d]["ports"] if p.get("state") == ACTIVE}, key=str)
        links[host] = layer_mtu
        roce = [d for d in active if any(p.get("link_layer") == "Ethernet" for p in present[d]["ports"])]
        if not roce:
            rows["rdma gid"] = _verdict("not run", "InfiniBand link layer: no RoCE GID needed") if active \
                else _verdict("not run", "no ACTIVE port")
        else:
            lacking = [d for d in roce if roce_gid_index(facts, d) is None]
            gid = node.get("rdma_gid_index")
            wrong = []
            if gid is not None:
                for d in roce:
                    row = next((r for r in facts.get("gids", []) if r["device"] == d and r["index"] == gid), None)
                    if row is None or row["type"] != "RoCE v2":
                        wrong.append(d)
            if lacking:
                rows["rdma gid"] = _verdict("fail", "no RoCE v2 GID with an IPv4 address on %s (address "
                                            "the RoCE netdev, check `show_gids`)" % ", ".join(lacking))
            elif wrong:
                rows["rdma gid"] = _verdict("fail", "cluster_rdma_gid_index %d is not a RoCE v2 GID on %s"
                                            % (gid, ", ".join(wrong)))
            else:
                rows["rdma gid"] = _verdict("pass", ", ".join("%s index %d" % (d, roce_gid_index(facts, d))
                                                              for d in roce))
        topology = facts.get("topology")
        if topology and topology.get("gpus"):
            nearest = nearest_nics(topology, active)
            far = [g for g in node.get("gpu_ids") or [] if g in topology["gpus"] and g in nearest
                   and TOPO_RANK.get(topology["gpus"][g].get(nearest[g]), 9) >= TOPO_RANK["SYS"]]
            text = ", ".join("GPU%d %s" % (g, nearest[g]) for g in sorted(nearest))
            rows["gpu-nic affinity"] = (_verdict("fail", "only SYS-distant NICs for GPU %s: %s"
                                                 % (", ".join(map(str, far)), text)) if far
                                        else _verdict("pass", text))
        else:
            rows["gpu-nic affinity"] = _verdict("not run", "topology unknown (no nvidia-smi topo -m)")
        if node.get("gpus_real") and facts.get("gpu_vendor") == "nvidia":
            rows["nvidia-peermem"] = (_verdict("pass", "nvidia_peermem loaded") if facts.get("peermem")
                                      else _verdict("fail", "nvidia_peermem not loaded: no GPUDirect RDMA "
                                                    "(modprobe nvidia-peermem; persist it in modules-load.d)"))
        else:
            rows["nvidia-peermem"] = _verdict("not run", "no NVIDIA GPU in use")
        result = (bandwidth or {}).get(host, "absent")
        if result == "absent":
            rows["rdma bandwidth"] = _verdict("not run", "no pairwise ib_write_bw for this node")
        elif result is None:
            rows["rdma bandwidth"] = _verdict("fail", "ib_write_bw printed no result")
        elif result["average_gbps"] < floor_gbps:
            rows["rdma bandwidth"] = _verdict("fail", "ib_write_bw %.1f Gb/s, below the floor %.1f Gb/s"
                                              % (result["average_gbps"], floor_gbps))
        else:
            rows["rdma bandwidth"] = _verdict("pass", "ib_write_bw %.1f Gb/s" % result["average_gbps"])
    distinct = {tuple(v) for v in links.values() if v}
    if len(distinct) > 1:
        detail = "; ".join("%s %s" % (h, ", ".join("%s MTU %s" % lm for lm in v)) for h, v in links.items())
        for host in links:
            out[host]["rdma link"] = _verdict("fail", "link layer or active MTU differ between nodes: %s"
                                              % detail)
    else:
        for host, value in links.items():
            out[host]["rdma link"] = _verdict("pass", ", ".join("%s MTU %s" % lm for lm in value))
    return out


def problems(verdicts):
    """One line per failed check: 'host: check: detail'."""
    return ["%s: %s: %s" % (host, check, v["detail"]) for host, rows in verdicts.items()
            for check, v in rows.items() if v["status"] == "fail"]


def bandwidth_plan(plan, facts_by_host, host):
    """This node's part in the pairwise ib_write_bw ring: {serve, peer} (peer: the address of
    the next node's server). Only where every node has an ACTIVE device; else nothing runs."""
    hosts = list(plan["nodes"])
    if len(hosts) < 2 or plan.get("rdma", {}).get("mode") == "off" or not all(
            active_devices(facts_by_host.get(h)) for h in hosts):
        return {"serve": False, "peer": ""}
    nxt = hosts[(hosts.index(host) + 1) % len(hosts)]
    return {"serve": True, "peer": plan["nodes"][nxt]["cluster_ip"]}


CHECKS = ("rdma stack", "rdma devices", "rdma ports", "rdma link", "rdma gid", "gpu-nic affinity",
          "nvidia-peermem", "rdma bandwidth")


def report(plan, facts_by_host, bandwidth=None, floor_gbps=DEFAULT_BW_FLOOR_GBPS):
    """{verdicts, problems, table (lines: check x node), summary} for preflight to print."""
    verdicts = judge(plan, facts_by_host, bandwidth, floor_gbps)
    hosts = sorted(verdicts)  # one order in the table and the notes, whatever order facts arrived in
    width = max([len(c) for c in CHECKS] + [5]) + 2
    cols = [max(len(h), 8) + 2 for h in hosts]
    table = ["check".ljust(width) + "".join(h.ljust(w) for h, w in zip(hosts, cols))]
    for check in CHECKS:
        table.append(check.ljust(width) + "".join(verdicts[h][check]["status"].ljust(w) for h, w in zip(hosts, cols)))
    notes = {}
    for host in hosts:
        for check in CHECKS:
            v = verdicts[host][check]
            if v["status"] != "pass":
                notes.setdefault((check, v["status"], v["detail"]), []).append(host)
    lines = ["%s: %s on %s: %s" % (status, check, ", ".join(hs), detail)
             for (check, status, detail), hs in notes.items()]
    counts = {s: sum(1 for h in hosts for c in CHECKS if verdicts[h][c]["status"] == s)
              for s in ("pass", "fail", "not run")}
    return {"verdicts": verdicts, "problems": problems(verdicts), "table": table + [""] + lines,
            "summary": "%(pass)d passed, %(fail)d failed, %(not run)d not run" % counts}
