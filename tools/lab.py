#!/usr/bin/env python3
"""Local lab: systemd Debian hosts in rootful podman, reachable over SSH like real servers.

Why this exists: there is no GPU cluster in CI, yet every role must run for real against
systemd, sshd and nftables. The lab boots N podman containers with systemd as PID 1 on one
bridge with fixed IPv4/IPv6 addresses (and a MAC derived from the IPv4, so neighbours' ARP
caches stay valid when a host is recreated), writes an Ansible inventory for them and serves
a wheelhouse on the bridge gateway, because the hosts cannot reach a package index. An HTTP(S)
proxy (tinyproxy) on the gateway carries every lab download, so the collection's proxy settings
are exercised against a real proxy whose log shows who fetched what.
Molecule's create/destroy call this same tool, so there is one way test hosts are made.

    lab.py deps                 install/check the podman stack (Debian, root)
    lab.py image [--force]      build the cached host image with debootstrap
    lab.py wheels               download the pinned wheels for the hosts' Python
    lab.py model                write the tiny model the lab copies to its hosts
    lab.py cache                image + wheels + model, under the lock `up` takes (make test
                                runs it beside the checks that need no lab; `up` waits for it)
    lab.py up [-n N]            deps + image + hosts + wheelhouse + proxy + inventory
    lab.py down                 remove this prefix's hosts (and the wheel server and proxy if none remain)
    lab.py list                 name, IPv4, IPv6, state
    lab.py slurm up|down        a real SLURM cluster on this prefix's hosts (munge, slurmctld, slurmd)
    lab.py inventory            print the inventory path (written by `up`)
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LAB_CACHE", "/var/cache/sglang-lab"))
KEY = CACHE / "id_ed25519"
WHEELHOUSE = CACHE / "wheelhouse"
SERVER_PID = CACHE / "wheelhouse.pid"
MODEL_DIR = CACHE / "models" / "tiny-llama"
IMAGE = os.environ.get("LAB_IMAGE", "localhost/sglang-lab:bookworm")
NETWORK = os.environ.get("LAB_NETWORK", "sglab")
NET4 = ipaddress.ip_network(os.environ.get("LAB_NET4", "10.89.78.0/24"))
NET6 = ipaddress.ip_network(os.environ.get("LAB_NET6", "fd42:5a6c:78::/64"))
GATEWAY4 = NET4.network_address + 1
WHEEL_PORT = int(os.environ.get("LAB_WHEEL_PORT", "8765"))
# The lab's proxy; inventories/lab/group_vars/all/lab.yml points cluster_http(s)_proxy at it.
PROXY_PORT = int(os.environ.get("LAB_PROXY_PORT", "8766"))
PROXY_PID = CACHE / "proxy.pid"
PROXY_CONF = CACHE / "proxy.conf"
PROXY_LOG = CACHE / "proxy.log"
PROXY_FILTER = CACHE / "proxy.filter"
# Where the proxy lets the hosts go: the wheelhouse on the gateway, and the Hugging Face hub so
# that a download's request is seen (the controller cannot resolve it: it fails there). Nothing
# else, so the hosts stay without a package index, as real air-gapped nodes would be.
PROXY_DESTINATIONS = (str(GATEWAY4), "huggingface.co")
MIRROR = os.environ.get("LAB_MIRROR", "")
MAX_HOSTS = 8

# tinyproxy-bin: Debian's tinyproxy without its service (no systemd here to run one, and
# nothing should listen before the lab asks for it).
APT_PACKAGES = [
    "podman", "runc", "conmon", "netavark", "aardvark-dns", "iptables", "nftables",
    "debootstrap", "openssh-client", "ca-certificates", "zstd", "curl", "python3", "python3-venv",
    "tinyproxy-bin",
]
# No systemd on the machine to manage cgroups and no journald: cgroupfs + file events.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"

[network]
network_backend = "netavark"
"""
# netbase: /etc/protocols + /etc/services, without which `nft -f` cannot resolve "icmp".
IMAGE_PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,python3-apt,sudo,iproute2,"
    "nftables,procps,curl,ca-certificates,iputils-ping,netbase,netcat-openbsd,"
    # Installed, not running: the firewall tests turn one on to play a host that uses it
    # (firewalld needs polkitd, which needs a logind: libpam-systemd).
    "libpam-systemd,firewalld,ufw,"
    # Installed, not running: real components that tests start where they need them (SLURM
    # with munge, Prometheus and the node exporter, the RDMA tools that report "no device").
    "munge,slurm-wlm,prometheus,prometheus-node-exporter,ibverbs-utils,perftest,openssl"
)
# Enabled by their packages; a lab host starts with none of them (tests turn them on).
DISABLED_UNITS = [
    "firewalld.service", "munge.service", "slurmctld.service", "slurmd.service",
    "prometheus.service", "prometheus-node-exporter.service",
]
# Units that make no sense in a container: no tty, no udev, no real kernel filesystems.
MASKED_UNITS = [
    "getty@.service", "serial-getty@.service", "console-getty.service", "getty.target",
    "systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udev-settle.service",
    "systemd-udevd-control.socket", "systemd-udevd-kernel.socket", "systemd-remount-fs.service",
    "systemd-firstboot.service", "sys-kernel-config.mount", "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount", "apt-daily.timer",
    "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "systemd-tmpfiles-clean.timer",
]
HOSTKEY_UNIT = """\
[Unit]
Description=Generate this host's SSH host key (the image ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
[Install]
WantedBy=ssh.service
"""
SSHD_CONF = """\
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
"""
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]


def log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, check: bool = True, capture: bool = False, **kw) -> subprocess.CompletedProcess:
    if capture:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(cmd, check=check, text=True, **kw)


def out(*cmd: str) -> str:
    return run(*cmd, capture=True).stdout.strip()


# --- addressing (pure, unit-tested) -------------------------------------------------------

def host_ipv4(index: int, first: int) -> str:
    """Address of host `index` (1-based): host 1 gets .first."""
    return str(NET4.network_address + first + index - 1)


def host_ipv6(index: int, first: int) -> str:
    return str(NET6.network_address + first + index - 1)


def host_mac(ipv4: str) -> str:
    """02:00 + the four IPv4 bytes: stable across re-creation, so ARP caches stay right."""
    return "02:00:" + ":".join(f"{int(b):02x}" for b in ipv4.split("."))


def lab_hosts(prefix: str, count: int, first: int) -> list[dict]:
    if not 1 <= count <= MAX_HOSTS:
        raise SystemExit(f"lab: -n must be between 1 and {MAX_HOSTS}, got {count}")
    return [{"name": f"{prefix}{i}", "ipv4": host_ipv4(i, first), "ipv6": host_ipv6(i, first),
             "mac": host_mac(host_ipv4(i, first))} for i in range(1, count + 1)]


def proxy_url() -> str:
    return f"http://{GATEWAY4}:{PROXY_PORT}"


def proxy_filter(destinations) -> str:
    """tinyproxy filter lines (regular expressions on the host name) matching exactly these hosts."""
    return "".join("^%s$\n" % host.replace(".", "\\.") for host in destinations)


def proxy_config(listen: str, port: int, allow: str, logfile: Path, filter_file: Path) -> str:
    """tinyproxy's configuration: clients of the lab network only, to the filter's hosts only,
    every request logged with its client."""
    return (
        "# Written by tools/lab.py: the lab's HTTP(S) proxy on the bridge gateway.\n"
        f"Listen {listen}\n"
        f"Port {port}\n"
        f"Allow {allow}\n"
        f'Filter "{filter_file}"\n'
        "FilterDefaultDeny Yes\n"
        # Root drops to nobody once the port is bound and the log is open.
        "User nobody\n"
        "Group nogroup\n"
        f'LogFile "{logfile}"\n'
        # Connect: one line per client connection (its address) and one per request line.
        "LogLevel Connect\n"
        "MaxClients 64\n"
        "Timeout 120\n"
        "ConnectPort 443\n"
    )


def proxy_log_time(stamp: str, now: float) -> float:
    """Epoch seconds of a tinyproxy time stamp ("Dec 02 08:22:09.668", local time, no year):
    this year's, unless that lies ahead of `now` (a log written last December)."""
    def at(year: int) -> float:
        day, _, millis = stamp.partition(".")
        return time.mktime(time.strptime(f"{year} {day}", "%Y %b %d %H:%M:%S")) + float("0." + (millis or "0"))
    year = time.localtime(now).tm_year
    return at(year) if at(year) <= now + 86400 else at(year - 1)


PROXY_LOG_LINE = re.compile(r"^\S+\s+(?P<stamp>\w{3} \d\d [\d:.]+) \[(?P<pid>\d+)\]: "
                            r"(?P<kind>Connect|Request) \(file descriptor (?P<fd>\d+)\): (?P<value>.*)$")


def proxy_requests(log_text: str, now: float | None = None) -> list[dict]:
    """The requests in a tinyproxy log: client address, method, target, time (epoch seconds).

    tinyproxy logs a connection's client and its request line on two lines tied by the file
    descriptor ("Connect (file descriptor 7): 10.89.78.51", then "Request (file descriptor 7):
    GET http://... HTTP/1.1"); a descriptor is reused only after its connection closed, so the
    latest Connect line of a descriptor names the client of its next Request line."""
    now = time.time() if now is None else now
    clients: dict[tuple[str, str], str] = {}
    found = []
    for line in log_text.splitlines():
        m = PROXY_LOG_LINE.match(line)
        if not m:
            continue
        if m["kind"] == "Connect":
            clients[(m["pid"], m["fd"])] = m["value"].strip()
            continue
        method, _, target = m["value"].removesuffix(" HTTP/1.1").removesuffix(" HTTP/1.0").partition(" ")
        found.append({"client": clients.get((m["pid"], m["fd"])), "method": method, "target": target,
                      "time": proxy_log_time(m["stamp"], now)})
    return found


def render_inventory(hosts: list[dict], group: str) -> dict:
    """Inventory for lab hosts: one model group under sglang_nodes, root over SSH with the lab key."""
    return {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(KEY),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        },
        "children": {"sglang_nodes": {"children": {group: {
            "hosts": {h["name"]: {"ansible_host": h["ipv4"], "lab_ipv6": h["ipv6"]} for h in hosts},
        }}}},
    }}


# --- machine setup ------------------------------------------------------------------------

def deps(_args=None) -> None:
    missing = [b for b in ("podman", "debootstrap", "zstd", "nft", "iptables", "tinyproxy")
               if not shutil.which(b)]
    conf = Path("/etc/containers/containers.conf")
    if missing or not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        if not shutil.which("apt-get"):
            raise SystemExit(f"lab: missing {missing} and no apt-get: install the podman stack by hand")
        log(f"installing the podman stack (missing: {', '.join(missing) or 'config'})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run("apt-get", "update", "-qq", env=env)
        # --no-install-recommends: rootless extras (buildah, fuse-overlayfs, slirp4netns) are not needed.
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES, env=env,
            stdout=subprocess.DEVNULL)
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF)
    # Forwarding carries host<->container NAT; netavark sets it only when it creates a network.
    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        run("sysctl", "-qw", f"{key}=1")


def image_hash() -> str:
    h = hashlib.sha256()
    for part in (IMAGE_PACKAGES, "\n".join(MASKED_UNITS), "\n".join(DISABLED_UNITS), HOSTKEY_UNIT,
                 SSHD_CONF, MIRROR, KEY.with_suffix(".pub").read_text()):
        h.update(part.encode())
    return h.hexdigest()[:16]


def ensure_key() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    if not KEY.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sglang-lab", "-f", str(KEY))


def image(args=None) -> None:
    ensure_key()
    want = image_hash()
    have = run("podman", "image", "inspect", "--format", '{{index .Labels "lab.hash"}}', IMAGE,
               check=False, capture=True).stdout.strip()
    if have == want and not getattr(args, "force", False):
        log(f"image {IMAGE} up to date ({want})")
        return
    t0 = time.monotonic()
    log(f"building {IMAGE} with debootstrap (about a minute)")
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "rootfs"
        run("debootstrap", "--variant=minbase", f"--include={IMAGE_PACKAGES}", "bookworm", str(root),
            *([MIRROR] if MIRROR else []), stdout=subprocess.DEVNULL)
        for unit in MASKED_UNITS:
            link = root / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        for ssh_key in (root / "etc/ssh").glob("ssh_host_*"):
            ssh_key.unlink()
        (root / "etc/systemd/system/ssh-hostkey.service").write_text(HOSTKEY_UNIT)
        (root / "etc/ssh/sshd_config.d/lab.conf").write_text(SSHD_CONF)
        run("chroot", str(root), "systemctl", "enable", "ssh.service", "ssh-hostkey.service",
            capture=True)
        run("chroot", str(root), "systemctl", "disable", *DISABLED_UNITS, capture=True)
        for timer in (root / "lib/systemd/system").glob("prometheus-node-exporter-*.timer"):
            run("chroot", str(root), "systemctl", "disable", timer.name, capture=True)
        dot_ssh = root / "root/.ssh"
        dot_ssh.mkdir(mode=0o700, exist_ok=True)
        (dot_ssh / "authorized_keys").write_text(KEY.with_suffix(".pub").read_text())
        (dot_ssh / "authorized_keys").chmod(0o600)
        # Empty machine-id: each host gets its own at boot.
        (root / "etc/machine-id").write_text("")
        (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*",
                        "usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*"):
            for p in root.glob(pattern):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        for f in ("etc/resolv.conf", "etc/hostname"):  # podman bind-mounts these
            (root / f).unlink(missing_ok=True)
            (root / f).write_text("")
        old = run("podman", "image", "inspect", "--format", "{{.Id}}", IMAGE, check=False,
                  capture=True).stdout.strip()
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-c", "."],
                               stdout=subprocess.PIPE)
        # CMD /sbin/init puts podman in systemd mode: tmpfs /run and /tmp, a writable cgroup,
        # STOPSIGNAL SIGRTMIN+3.
        run("podman", "import", "--change", 'CMD ["/sbin/init"]', "--change", f"LABEL lab.hash={want}",
            "-", IMAGE, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        tar.wait()
        if old:  # no -f: that would also remove containers still running the old image
            run("podman", "image", "rm", old, check=False, capture=True)
    log(f"built {IMAGE} ({want}) in {time.monotonic() - t0:.0f} s")


# --- wheelhouse ---------------------------------------------------------------------------

def pinned_requirements() -> list[str]:
    """The lab inventory's pins, which the install role applies, so wheels and venv cannot drift:
    the full lock when the inventory has one, else the pinned packages."""
    import yaml  # from the control venv (ansible-core needs PyYAML)

    defaults = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/versions.yml").read_text())
    if defaults.get("sglang_lock"):
        # The lock's --hash words are for the install (--require-hashes); pip download takes pins.
        return [line.split()[0] for line in defaults["sglang_lock"]]
    versions = defaults["sglang_versions"]
    return [f"{name}=={versions[name]}" for name in defaults["sglang_install_packages"]]


# torchvision from PyPI registers fake kernels for ops its C++ library provides; beside the
# CPU torch that library does not load, the registration raises and `import sglang` fails.
# torchvision guards its other registrations with `_has_ops()`; the lab's build guards these two
# the same way and says so in its version (+sglangops1), which still satisfies the pin.
TV_FILE = "torchvision/_meta_registrations.py"
TV_LOCAL = "sglangops1"
TV_GUARD = (
    "\n\ndef _register_fake_if_ops(name):\n"
    "    if torchvision.extension._has_ops():\n"
    "        return torch.library.register_fake(name)\n"
    "    return lambda fn: fn\n"
)


def patch_torchvision_source(text: str) -> str:
    fakes = ('@torch.library.register_fake("torchvision::nms")',
             '@torch.library.register_fake("torchvision::qnms")')
    if not all(f in text for f in fakes) or "\n\n\ndef register_meta(" not in text:
        raise SystemExit(f"lab: {TV_FILE} changed upstream; review the torchvision guard")
    for fake in fakes:
        text = text.replace(fake, fake.replace("torch.library.register_fake", "_register_fake_if_ops"))
    return text.replace("\n\n\ndef register_meta(", TV_GUARD + "\n\ndef register_meta(", 1)


def rewrite_wheel(wheel: Path, target: Path, rename=lambda n: n, patch=lambda name, data: data) -> None:
    """Write `wheel` to `target` with entries renamed and patched and RECORD made anew.

    Byte for byte reproducible (fixed times and modes): the lab's lock carries the repacked
    wheel's hash, and pip installs it with --require-hashes.
    """
    import base64
    import hashlib
    import zipfile

    def entry(arcname):
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        return info

    records, record_name = [], None
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            arcname = rename(item.filename)
            if arcname.endswith(".dist-info/RECORD"):
                record_name = arcname
                continue
            data = patch(item.filename, src.read(item))
            dst.writestr(entry(arcname), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{arcname},sha256={digest},{len(data)}")
        records.append(f"{record_name},,")
        dst.writestr(entry(record_name), "\n".join(records) + "\n")


def repack_torchvision(wheel: Path) -> Path:
    """Rewrite a torchvision wheel with the guard, as version X+sglangops1 (RECORD updated)."""
    name, version, rest = wheel.name.split("-", 2)
    new_version = f"{version}+{TV_LOCAL}"
    old_info, new_info = f"{name}-{version}.dist-info/", f"{name}-{new_version}.dist-info/"
    target = wheel.with_name(f"{name}-{new_version}-{rest}")

    def patch(filename, data):
        if filename == TV_FILE:
            return patch_torchvision_source(data.decode()).encode()
        if filename == old_info + "METADATA":
            return data.decode().replace(f"\nVersion: {version}\n", f"\nVersion: {new_version}\n", 1).encode()
        return data

    rewrite_wheel(wheel, target, lambda n: n.replace(old_info, new_info, 1), patch)
    wheel.unlink()
    return target


def lock_hashes(_args=None) -> None:
    """Print the lab's lock with the sha256 of each wheel in the wheelhouse (for versions.yml)."""
    import hashlib

    files = {}
    for wheel in WHEELHOUSE.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        files[(re.sub(r"[-_.]+", "-", name).lower(), version.split("+")[0])] = wheel
    for pin in pinned_requirements():
        name, version = pin.split("==")
        wheel = files.get((re.sub(r"[-_.]+", "-", name).lower(), version))
        if wheel is None:
            raise SystemExit(f"lab: no wheel for {pin} in {WHEELHOUSE}: run `lab.py wheels` first")
        print(f"  - {pin} --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}")


def wheels(_args=None) -> None:
    reqs = pinned_requirements()
    stamp = WHEELHOUSE / ".requirements"
    if stamp.exists() and stamp.read_text() == "\n".join(reqs):
        log(f"wheelhouse up to date ({len(list(WHEELHOUSE.glob('*.whl')))} wheels)")
        return
    t0 = time.monotonic()
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    # Target the hosts' interpreter (bookworm: CPython 3.11, glibc 2.36), not this machine's;
    # pip does not expand manylinux_2_X to older tags by itself, so list them all.
    plats = [a for m in range(17, 37) for a in ("--platform", f"manylinux_2_{m}_x86_64")]
    plats += ["--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64"]
    log(f"downloading {len(reqs)} pinned wheels")
    # A lock is complete: --no-deps keeps pip from pulling what it leaves out (CUDA builds).
    run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(WHEELHOUSE),
        "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
        "--abi", "abi3", "--abi", "none", *plats, *reqs)
    for wheel in WHEELHOUSE.glob("torchvision-*.whl"):
        if f"+{TV_LOCAL}" not in wheel.name:
            repacked = repack_torchvision(wheel)
            log(f"repacked {repacked.name} (guarded fake-op registrations)")
    stamp.write_text("\n".join(reqs))
    log(f"wheelhouse ready in {time.monotonic() - t0:.0f} s")


def tiny_model(_args=None) -> Path:
    """The lab's model directory on the controller; the install role copies it to the hosts."""
    sys.path.insert(0, str(ROOT / "tools"))
    import tiny_model as tm

    tm.write(MODEL_DIR)
    return MODEL_DIR


def wheel_url() -> str:
    return f"http://{GATEWAY4}:{WHEEL_PORT}/"


def serve() -> None:
    """Serve the wheelhouse on the bridge gateway: reachable from the hosts only."""
    if SERVER_PID.exists() and Path(f"/proc/{SERVER_PID.read_text().strip()}").exists():
        return
    # The bridge and its gateway address exist only while a host runs.
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", str(GATEWAY4), "--directory", str(WHEELHOUSE),
         str(WHEEL_PORT)], stdout=subprocess.DEVNULL, stderr=open(CACHE / "wheelhouse.log", "w"),
        start_new_session=True)
    SERVER_PID.write_text(str(proc.pid))
    for _ in range(50):
        try:
            urllib.request.urlopen(wheel_url(), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"lab: wheel server did not start, see {CACHE / 'wheelhouse.log'}")


def running(pid_file: Path, program: str) -> bool:
    """Whether the process in pid_file is alive and still `program` (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid_file.read_text().strip()}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return program.encode() in cmdline


def proxy() -> None:
    """Run tinyproxy on the bridge gateway: the hosts' only way out, and a log of what went out.

    A plain process like the wheel server (the controller has no systemd), in the foreground of
    its own session so its pid is the one in PROXY_PID."""
    if running(PROXY_PID, "tinyproxy"):
        return
    if not shutil.which("tinyproxy"):
        raise SystemExit("lab: tinyproxy is not installed; run `tools/lab.py deps`")
    PROXY_FILTER.write_text(proxy_filter(PROXY_DESTINATIONS))
    PROXY_CONF.write_text(proxy_config(str(GATEWAY4), PROXY_PORT, str(NET4), PROXY_LOG, PROXY_FILTER))
    PROXY_LOG.write_text("")
    PROXY_LOG.chmod(0o644)
    shutil.chown(PROXY_LOG, "nobody", "nogroup")  # tinyproxy reopens it after dropping root
    proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(PROXY_CONF)], stdout=subprocess.DEVNULL,
                            stderr=open(CACHE / "proxy.stderr", "w"), start_new_session=True)
    PROXY_PID.write_text(str(proc.pid))
    for _ in range(50):
        if proc.poll() is not None:
            break
        try:
            socket.create_connection((str(GATEWAY4), PROXY_PORT), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"lab: proxy did not start, see {CACHE / 'proxy.stderr'} and {PROXY_LOG}")


def stop_serving() -> None:
    if SERVER_PID.exists():
        run("kill", SERVER_PID.read_text().strip(), check=False, capture=True)
        SERVER_PID.unlink()
    if PROXY_PID.exists():
        if running(PROXY_PID, "tinyproxy"):
            run("kill", PROXY_PID.read_text().strip(), check=False, capture=True)
        PROXY_PID.unlink()


# --- hosts --------------------------------------------------------------------------------

def ensure_network() -> None:
    if run("podman", "network", "exists", NETWORK, check=False).returncode != 0:
        run("podman", "network", "create", "--subnet", str(NET4), "--ipv6", "--subnet", str(NET6),
            NETWORK, stdout=subprocess.DEVNULL)


def wait_ssh(ip: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run("ssh", "-i", str(KEY), *SSH_OPTS, "-o", "ConnectTimeout=1", f"root@{ip}", "true",
               check=False, capture=True).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"lab: no SSH on {ip} after {timeout:.0f} s")


def start_hosts(hosts: list[dict], prefix: str, memory: str) -> None:
    for h in hosts:
        if run("podman", "container", "exists", h["name"], check=False).returncode == 0:
            run("podman", "start", h["name"], stdout=subprocess.DEVNULL)
            continue
        # NET_ADMIN/NET_RAW: nftables and ip in the host's own netns. SYS_ADMIN: systemd's
        # sandboxing mounts (PrivateTmp, ProtectSystem). Never --privileged: /proc/sys would
        # become writable and vm.*/kernel.* sysctls would change the real machine.
        # --shm-size: Ray's object store lives in /dev/shm (podman's default is 64m).
        run("podman", "run", "-d", "--name", h["name"], "--hostname", h["name"],
            "--label", f"lab.group={prefix}", "--network", NETWORK, "--ip", h["ipv4"],
            "--ip6", h["ipv6"], "--mac-address", h["mac"], "--cap-add", "NET_ADMIN,NET_RAW,SYS_ADMIN",
            "--shm-size", "2g", "--memory", memory, IMAGE, stdout=subprocess.DEVNULL)
    for h in hosts:
        wait_ssh(h["ipv4"])


def inventory_dir(prefix: str) -> Path:
    """One inventory directory per prefix, so labs never see each other's hosts. Its group_vars
    link to the committed inventories/lab/group_vars shared by every lab and molecule."""
    return ROOT / ".lab" / prefix


def inventory_path(prefix: str) -> Path:
    return inventory_dir(prefix) / "hosts.yml"


def write_inventory(prefix: str, hosts: list[dict], group: str) -> Path:
    import yaml

    inv = inventory_path(prefix)
    inv.parent.mkdir(parents=True, exist_ok=True)
    link = inv.parent / "group_vars"
    if not link.is_symlink():
        link.symlink_to(ROOT / "inventories/lab/group_vars")
    inv.write_text("# Written by tools/lab.py up; do not edit.\n"
                   + yaml.safe_dump(render_inventory(hosts, group), sort_keys=False))
    return inv


def sized_inventory(prefix: str, n: int) -> Path:
    """The inventory directory of the first n hosts of a benchmark's prefix."""
    return inventory_dir("%s-%d" % (prefix, n))


def up_sized(prefix: str, first: int, sizes, group: str = "lab_model") -> list[dict]:
    """For benchmarks that compare cluster sizes: max(sizes) hosts up, and an inventory of the
    first n hosts for each size n (sized_inventory). Returns every host."""
    subprocess.run([sys.executable, str(ROOT / "tools/lab.py"), "up", "--prefix", prefix, "--first", str(first),
                    "--count", str(max(sizes))], check=True)
    hosts = lab_hosts(prefix, max(sizes), first)
    for n in sizes:
        write_inventory("%s-%d" % (prefix, n), hosts[:n], group)
    return hosts


def down_sized(prefix: str, sizes, keep: bool = False) -> None:
    """The sized inventories removed, and the hosts too unless kept."""
    if not keep:
        subprocess.run([sys.executable, str(ROOT / "tools/lab.py"), "down", "--prefix", prefix], check=False)
    for n in sizes:
        shutil.rmtree(sized_inventory(prefix, n), ignore_errors=True)


def cache(_args=None) -> None:
    """What every lab is made from: the host image, the wheelhouse and the tiny model."""
    t0 = time.monotonic()
    image()
    wheels()
    tiny_model()
    log(f"image, wheelhouse and model ready in {time.monotonic() - t0:.1f} s")


def up(args) -> None:
    t0 = time.monotonic()
    deps()
    cache()
    hosts = lab_hosts(args.prefix, args.count, args.first)
    ensure_network()
    start_hosts(hosts, args.prefix, args.memory)
    serve()
    proxy()
    inv = write_inventory(args.prefix, hosts, args.group)
    log(f"{len(hosts)} hosts up in {time.monotonic() - t0:.1f} s; inventory {inv.parent.relative_to(ROOT)};"
        f" wheels {wheel_url()}; proxy {proxy_url()} (log {PROXY_LOG})")
    if args.json:
        print(json.dumps({"hosts": hosts, "key": str(KEY), "inventory": str(inv), "wheels": wheel_url(),
                          "proxy": proxy_url(), "proxy_log": str(PROXY_LOG)}))


def containers(prefix: str) -> list[str]:
    names = out("podman", "ps", "-a", "--filter", f"label=lab.group={prefix}", "--format", "{{.Names}}")
    return sorted(names.split(), key=lambda n: (len(n), n))


def down(args) -> None:
    names = containers(args.prefix)
    # -t 5: systemd in the host gets SIGRTMIN+3 and halts in about a second. One `podman rm` per
    # host, all at once: removing a deployed host's layer (the 3.8 GB venv) takes about 14 s, and
    # one command removes its hosts one after the other.
    procs = [subprocess.Popen(["podman", "rm", "-f", "-t", "5", name], stdout=subprocess.DEVNULL) for name in names]
    failed = [name for name, proc in zip(names, procs) if proc.wait() != 0]
    if failed:
        raise SystemExit("lab: podman rm failed for %s" % " ".join(failed))
    shutil.rmtree(inventory_dir(args.prefix), ignore_errors=True)
    if not out("podman", "ps", "-q", "--filter", "label=lab.group"):
        stop_serving()
    log(f"removed {len(names)} hosts of '{args.prefix}'")


def list_hosts(args) -> None:
    for name in containers(args.prefix):
        print(out("podman", "inspect", "-f",
                  f'{{{{.Name}}}} {{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}} '
                  f'{{{{(index .NetworkSettings.Networks "{NETWORK}").GlobalIPv6Address}}}} '
                  "{{.State.Status}}", name))


# --- SLURM ---------------------------------------------------------------------------------
# Debian's slurm-wlm and munge are in the image, disabled. `lab.py slurm up` turns this prefix's
# hosts into one SLURM cluster: slurmctld on host 1, slurmd on every host, one shared munge key.
# Everything it writes is runtime state under /run (tmpfs) except /etc/slurm/slurm.conf, which
# SLURM's daemons and commands read from there: `slurm down` removes exactly that, so a host
# is afterwards as it was (the integration lab's remove test compares every host to a snapshot).
SLURM_RUN = "/run/sglang-lab-slurm"
SLURM_CONF = "/etc/slurm/slurm.conf"
# munged with its key, seed and log under /run, so /etc/munge and /var/lib/munge stay untouched.
MUNGE_DROPIN = "/run/systemd/system/munge.service.d/sglang-lab.conf"
SLURM_UNITS = ("slurmctld.service", "slurmd.service", "munge.service")
# No GPUs as generic resources: slurmd 22.05 counts a gres/gpu only through its device files, and
# with a bare `Name=gpu Count=4` it registers 0 and SLURM drains the node ("gres/gpu count
# reported lower than configured (0 < 4)"). Jobs on the lab therefore ask for no --gres.


def slurm_conf(hosts: list[dict], cpus: int, memory_mb: int) -> str:
    """slurm.conf for lab hosts: the controller on host 1, every host a node of partition `lab`.

    No cgroup plugins (a container's cgroup is not SLURM's to split), no accounting daemon;
    state, spool, pid and log files under /run."""
    ctld = hosts[0]
    nodes = "".join(f"NodeName={h['name']} NodeAddr={h['ipv4']} CPUs={cpus} RealMemory={memory_mb} "
                    "State=UNKNOWN\n" for h in hosts)
    return (
        "# Written by tools/lab.py slurm up; removed by `slurm down`.\n"
        "ClusterName=sglanglab\n"
        f"SlurmctldHost={ctld['name']}({ctld['ipv4']})\n"
        "SlurmUser=slurm\n"
        "AuthType=auth/munge\n"
        "CredType=cred/munge\n"
        f"StateSaveLocation={SLURM_RUN}/ctld\n"
        f"SlurmdSpoolDir={SLURM_RUN}/d\n"
        f"SlurmctldPidFile={SLURM_RUN}/slurmctld.pid\n"
        f"SlurmdPidFile={SLURM_RUN}/slurmd.pid\n"
        f"SlurmctldLogFile={SLURM_RUN}/slurmctld.log\n"
        f"SlurmdLogFile={SLURM_RUN}/slurmd.log\n"
        "ProctrackType=proctrack/linuxproc\n"
        "TaskPlugin=task/none\n"
        "JobAcctGatherType=jobacct_gather/none\n"
        "AccountingStorageType=accounting_storage/none\n"
        "SchedulerType=sched/backfill\n"
        "SelectType=select/cons_tres\n"
        "SelectTypeParameters=CR_Core\n"
        "MpiDefault=none\n"
        "ReturnToService=2\n"
        # Short: a test submits, waits and cancels within seconds.
        "KillWait=10\n"
        "MinJobAge=300\n"
        + nodes
        + "PartitionName=lab Nodes=ALL Default=YES MaxTime=60 MaxNodes=%d State=UP\n" % len(hosts)
    )


MUNGE_DROPIN_TEXT = (
    "# Written by tools/lab.py slurm up (runtime only): the lab's shared key, state under /run.\n"
    "[Service]\nExecStart=\n"
    f"ExecStart=/usr/sbin/munged --key-file={SLURM_RUN}/munge/munge.key "
    f"--seed-file={SLURM_RUN}/munge/munged.seed --log-file={SLURM_RUN}/munge/munged.log\n"
)


def _exec(host: str, command: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["podman", "exec", "-i", host, "sh", "-c", command], input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise SystemExit(f"lab: {host}: `{command}` failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode()


def _host_addresses(prefix: str) -> list[dict]:
    fmt = f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}'
    return [{"name": n, "ipv4": out("podman", "inspect", "-f", fmt, n)} for n in containers(prefix)]


def slurm(args) -> None:
    hosts = _host_addresses(args.prefix)
    if not hosts:
        raise SystemExit(f"lab: no hosts with prefix '{args.prefix}': run `lab.py up --prefix {args.prefix}` first")
    t0 = time.monotonic()
    if args.action == "down":
        for h in hosts:
            _exec(h["name"], "systemctl stop %s; rm -rf %s %s %s; rmdir %s 2>/dev/null; "
                  "systemctl daemon-reload; systemctl reset-failed %s 2>/dev/null; true"
                  % (" ".join(SLURM_UNITS), SLURM_RUN, SLURM_CONF, MUNGE_DROPIN,
                     os.path.dirname(MUNGE_DROPIN), " ".join(SLURM_UNITS)))
        log(f"SLURM stopped and removed on {', '.join(h['name'] for h in hosts)}")
        return
    key = os.urandom(1024)
    cpus = int(_exec(hosts[0]["name"], "nproc").strip())
    conf = slurm_conf(hosts, cpus, args.memory_mb)
    for h in hosts:
        name = h["name"]
        _exec(name, f"install -d -m 0755 {SLURM_RUN} && install -d -o munge -g munge -m 0700 {SLURM_RUN}/munge "
              f"&& install -d -o slurm -g slurm -m 0755 {SLURM_RUN}/ctld {SLURM_RUN}/d "
              f"&& install -d -m 0755 {os.path.dirname(MUNGE_DROPIN)}")
        _exec(name, f"cat > {SLURM_RUN}/munge/munge.key && chown munge:munge {SLURM_RUN}/munge/munge.key "
              f"&& chmod 0400 {SLURM_RUN}/munge/munge.key", stdin=key)
        _exec(name, f"cat > {MUNGE_DROPIN}", stdin=MUNGE_DROPIN_TEXT.encode())
        _exec(name, f"cat > {SLURM_CONF}", stdin=conf.encode())
        _exec(name, "systemctl daemon-reload && systemctl restart munge")
    _exec(hosts[0]["name"], "systemctl restart slurmctld")
    for h in hosts:
        _exec(h["name"], "systemctl restart slurmd")
    names = ",".join(h["name"] for h in hosts)
    deadline = time.monotonic() + 60
    while True:
        states = _exec(hosts[0]["name"], f"sinfo -h -N -n {names} -o '%N %T' 2>&1 || true")
        idle = [ln.split()[0] for ln in states.splitlines() if ln.split()[1:2] == ["idle"]]
        if len(set(idle)) == len(hosts):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"lab: SLURM nodes not idle after 60 s: {states.strip()}")
        time.sleep(1)
    log(f"SLURM up in {time.monotonic() - t0:.1f} s: slurmctld on {hosts[0]['name']}, nodes {names} idle"
        " (partition lab)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deps").set_defaults(fn=deps)
    sub.add_parser("image").add_argument("--force", action="store_true")
    sub.add_parser("wheels").set_defaults(fn=wheels)
    sub.add_parser("lock-hashes").set_defaults(fn=lock_hashes)
    sub.add_parser("model").set_defaults(fn=tiny_model)
    sub.add_parser("cache").set_defaults(fn=cache)
    for name, fn in (("up", up), ("down", down), ("list", list_hosts), ("inventory", None)):
        sp = sub.add_parser(name)
        sp.add_argument("--prefix", default="lab", help="host name prefix and podman label")
        sp.set_defaults(fn=fn)
        if name == "up":
            sp.add_argument("-n", "--count", type=int, default=2)
            sp.add_argument("--first", type=int, default=11, help="last IPv4 byte of host 1")
            sp.add_argument("--group", default="lab_model", help="model group the hosts form")
            sp.add_argument("--memory", default="6g", help="memory limit per host")
            sp.add_argument("--json", action="store_true", help="print the hosts as JSON")
    sp = sub.add_parser("slurm", help="a SLURM cluster on the prefix's hosts")
    sp.add_argument("action", choices=("up", "down"))
    sp.add_argument("--prefix", default="lab")
    sp.add_argument("--memory-mb", type=int, default=1024, help="RealMemory of each node")
    sp.set_defaults(fn=slurm)
    args = p.parse_args(argv)
    if args.cmd == "image":
        image(args)
    elif args.cmd == "inventory":
        print(inventory_dir(args.prefix))
    elif args.cmd in ("up", "down", "cache"):
        # Labs of other prefixes may come and go at once (a benchmark beside the tests): one at
        # a time builds the image, fills the wheelhouse, starts the servers or decides to stop them.
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / "lab.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            args.fn(args)
    else:
        args.fn(args)


if __name__ == "__main__":
    main()
