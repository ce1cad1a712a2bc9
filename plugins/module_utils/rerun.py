"""A node's seal: what the last complete deploy left on it, so a re-run can tell "nothing to do".

A complete deploy.yml ends by writing, on every node, the key of its inputs (every role option
of every host, the collection's own content, a digest of the secrets, in a no_log option) and a
fingerprint of what the roles manage there: the collection's files and directories, its units'
files and states, the venv's packages, the nftables tables, the cluster user, the cluster
interface's addresses and the host itself (boot, kernel, OS packages, GPU devices). A re-run
with the same inputs whose fingerprint is unchanged on every node has nothing to converge; any
difference, or a missing or foreign seal, runs every phase, which repairs it. The seal never
makes a check pass: it only records that the phases that ran after their checks left exactly
this state.

The seal holds digests only (0600 root, like the check stamps): no content, no secret.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import stat

from ansible_collections.sglang_ops.cluster.plugins.module_utils.stamp import path_state

# Regular files up to this size are compared by content (unit files, configs, scripts, secrets);
# larger ones (model weights) by size and modification time.
HASHED_MAX = 1 << 20
# What systemctl show reports per unit, compared as the unit's state. Not timestamps or PIDs: a
# unit that systemd restarted by itself (Restart=) is as the deploy left it.
UNIT_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "UnitFileState",
                   "NeedDaemonReload", "FragmentPath", "DropInPaths")
# nftables' changing numbers: the packets and bytes of counters (firewalld's and ufw's rules
# count; ours do not).
NFT_COUNTERS = re.compile(r"\bcounter packets \d+ bytes \d+")
# Not /dev/nvidia-uvm-tools or nvidia-caps: the driver makes those on demand.
GPU_DEVICES = ("/dev/nvidia[0-9]*", "/dev/nvidiactl", "/dev/kfd", "/dev/dri/renderD*", "/dev/infiniband/*")
# What the server units' NCCL_IB_HCA, GID index and --disaggregation-ib-device follow: which RDMA
# ports are up, their link layer and their GID tables.
RDMA_FILES = ("/sys/class/infiniband/*/ports/*/state", "/sys/class/infiniband/*/ports/*/link_layer",
              "/sys/class/infiniband/*/ports/*/gids/*", "/sys/class/infiniband/*/ports/*/gid_attrs/types/*")
# Firewall tools' saved rules: an edit shows in their tables only after their next reload.
HOST_FIREWALL_TREES = ("/etc/firewalld/zones",)
HOST_FIREWALL_FILES = ("/etc/ufw/ufw.conf", "/etc/ufw/user.rules", "/etc/ufw/user6.rules")
# The distributions' own exporters, which the monitoring role keeps stopped and disabled.
DISTRO_UNITS = ("prometheus-node-exporter", "prometheus")
HOST_FILES = ("/proc/sys/kernel/random/boot_id", "/proc/sys/kernel/osrelease", "/etc/os-release")
# Every apt/dpkg install or removal rewrites it.
DPKG_STATUS = "/var/lib/dpkg/status"


def digest(value):
    """Short sha256 of a JSON-able value (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_digest(path):
    """sha256 of a file's bytes, read in blocks (OSError when unreadable)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def entry_state(path):
    """One path's state: type, mode, owner, group, and content (small files), size and mtime
    (large ones) or link target; None when missing. Never follows a symlink."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    state = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
    if stat.S_ISLNK(st.st_mode):
        state.append(os.readlink(path))
    elif stat.S_ISREG(st.st_mode):
        if st.st_size <= HASHED_MAX:
            try:
                state.append(file_digest(path))
            except OSError:
                state.append(None)
        else:
            state.extend([st.st_size, st.st_mtime_ns])
    return state


def tree_state(root, exclude=()):
    """[[path relative to root, state]] of root and everything under it, sorted; `exclude`:
    absolute paths left out with everything below them. A missing root is [["", None]]."""
    skip = set(exclude)
    found = [["", entry_state(root)]]
    if found[0][1] is None or not stat.S_ISDIR(found[0][1][0]):
        return found
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.join(top, d) not in skip)
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            if path in skip:
                continue
            found.append([os.path.relpath(path, root), entry_state(path)])
    found.sort()
    return found


def parse_unit_show(text):
    """{unit: {property: value}} from `systemctl show -p ...` of several units (blank-line
    separated blocks, each with Id=)."""
    units = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = {k: props.get(k, "") for k in UNIT_PROPERTIES}
    return units


def unit_files(units):
    """The unit and drop-in files systemd loaded for these units (from parse_unit_show)."""
    paths = set()
    for props in units.values():
        if props.get("FragmentPath"):
            paths.add(props["FragmentPath"])
        paths.update(p for p in props.get("DropInPaths", "").split() if p)
    return sorted(paths)


def nft_state(text):
    """A table as `nft list table` prints it, without its packet and byte counts."""
    return NFT_COUNTERS.sub("counter", text).strip()


def ufw_state(text):
    """The ufw chains of an `nft list table ip filter` listing (ufw runs on iptables-nft), without
    the chains of other tools (Docker, fail2ban), whose changes are not ours to repair."""
    kept, keep = [], False
    for line in nft_state(text).splitlines():
        stripped = line.strip()
        if stripped.startswith("chain "):
            keep = stripped.split()[1].startswith("ufw")
        if keep:
            kept.append(stripped)
    return "\n".join(kept)


def addresses(ip_json):
    """The link's MTU and state and its [family, address, prefix] of `ip -j addr show dev IF`,
    sorted: not lifetimes, nor the temporary (privacy) IPv6 addresses that rotate by themselves."""
    found = []
    for link in json.loads(ip_json or "[]"):
        found.append(["link", link.get("mtu"), link.get("operstate")])
        for addr in link.get("addr_info", []):
            if addr.get("temporary") or addr.get("deprecated"):
                continue
            found.append([addr.get("family"), addr.get("local"), addr.get("prefixlen")])
    return sorted(found, key=json.dumps)


def rdma_state(read=None):
    """{sysfs file: content} of every RDMA port's state, link layer and GID table."""
    read = read or _read_text
    return {path: read(path) for pattern in RDMA_FILES for path in sorted(glob.glob(pattern))}


def host_state(read=None):
    """The host under the deploy: boot (a reboot clears what lives in memory), kernel, OS
    release, OS packages, GPU and RDMA device nodes."""
    read = read or _read_text
    return {
        "files": {p: read(p) for p in HOST_FILES},
        "dpkg": path_state(DPKG_STATUS),
        "devices": sorted(d for pattern in GPU_DEVICES for d in glob.glob(pattern)),
    }


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(65536).strip()
    except OSError:
        return None


def seal_key(inputs, secrets):
    """sha256 of the deploy's inputs and the secrets' digest (never logged: a no_log option)."""
    return hashlib.sha256(json.dumps({"inputs": inputs, "secrets": secrets}, sort_keys=True,
                                     default=str).encode()).hexdigest()


def drift(sealed, parts):
    """Names of the parts whose digest differs from the seal's (sorted), [] when none does."""
    names = sorted(set(sealed) | set(parts))
    return [n for n in names if sealed.get(n) != parts.get(n)]


def _service(name):
    return name if name.endswith(".service") else name + ".service"


def fingerprint_spec(plan, host):
    """What rerun_seal compares on `host`: the collection's directories and files there, its units
    (also those of other groups and of the router, so a unit left over or missing counts), the
    venv, the firewall tables (ours, firewalld's, ufw's), the cluster user and interface, the
    model directory. Run-time data (Ray's temp dir, Prometheus' data, the HF cache) is outside."""
    the_layout, node = plan["layout"], plan["nodes"][host]
    units, files = the_layout["units"], the_layout["files"]
    group = plan["groups"][node["group"]]
    model_path = group.get("model_path") or ""
    trees = [the_layout["config_dir"], the_layout["libexec_dir"], files["nftables_dropin"].rsplit("/", 1)[0]]
    if model_path.startswith("/") and model_path not in trees:
        trees.append(model_path)
    trees += list(HOST_FIREWALL_TREES)
    # Directories whose contents are run-time data: their own type, mode and owner only (the data
    # directory's 0750 hides Ray's sockets and the HF cache from other local users).
    dirs = [the_layout["data_dir"], the_layout["ray_temp_dir"], the_layout["hf_home"],
            files["prometheus_data"]] + list(the_layout["ansible_tmp_dirs"]) + list(group.get("model_dirs") or [])
    names = [units["ray"], units["firewall"], units["router"], units["node_exporter"], units["prometheus"],
             "nftables"] + list(DISTRO_UNITS) + sorted(units["servers"].values()) + sorted(units["fences"].values())
    return {
        "path": files["rerun_seal"],
        "trees": trees,
        # The check stamps only spare checks (a missing one costs the check): playbooks other than
        # deploy.yml rewrite them, which is no drift.
        "exclude": [the_layout["config_dir"] + "/checked"],
        "files": sorted(set(dirs) - set(trees)) + [files["ray_cli"]] + list(HOST_FIREWALL_FILES),
        "units": [_service(n) for n in names],
        "venvs": [node["venv_dir"]],
        "nft_tables": ["inet " + the_layout["nft_table"], "inet firewalld", "ip filter", "ip6 filter"],
        "users": [node["user"]],
        "interfaces": [node["cluster_interface"]] if node.get("cluster_interface") else [],
        "rdma": plan.get("rdma", {}).get("mode", "off") != "off",
    }


def verdict(results, hosts, active):
    """{sealed, message} of a re-run from each host's rerun_seal check (in `hosts` order; a
    skipped or missing result counts as not compared). Sealed only when every host of the play
    is still in it and matched its seal: one node to converge runs every phase everywhere (the
    phases work across nodes: the mesh, Ray's join, the collective)."""
    lines = []
    for host, res in zip(hosts, results):
        if not isinstance(res, dict) or res.get("skipped") or "sealed" not in res:
            return {"sealed": False, "message": "Re-run: every phase runs (a run of every phase with "
                    "cluster_rerun=fast and preflight_mode changed compares nodes with their seals)"}
        if host not in active:
            lines.append("%s: not reachable" % host)
        elif not res["sealed"]:
            lines.append("%s: %s" % (host, ", ".join(res.get("drift") or ["differs"])))
    if lines:
        return {"sealed": False, "message": "Re-run: every phase runs, for %d of %d nodes differ from their "
                "seal: %s" % (len(lines), len(hosts), "; ".join(lines))}
    return {"sealed": True, "message": "Re-run: all %d nodes are as the last complete deploy left them "
            "(same inputs; files, units, venv, firewall tables, user, addresses and host unchanged): "
            "nothing can change, later phases end at once. cluster_rerun=full runs them; verify.yml "
            "checks the running cluster." % len(hosts)}


def every_phase(run_tags, skip_tags, known_tags, limited=False):
    """Whether a run converges every phase of deploy.yml: no --tags, no --limit, and no
    --skip-tags that names a tag of the collection (molecule skips molecule-notest, which none
    of its tasks carry)."""
    return (list(run_tags or ["all"]) == ["all"] and not limited
            and not set(skip_tags or ()) & set(known_tags))
