"""The lab's addressing (fixed IPs and MACs that survive re-creation) and its proxy."""

import time
from pathlib import Path

import pytest
import yaml

import lab


def test_addresses_and_mac():
    hosts = lab.lab_hosts("lab", 2, 11)
    assert [h["ipv4"] for h in hosts] == ["10.89.78.11", "10.89.78.12"]
    assert hosts[0]["ipv6"] == "fd42:5a6c:78::b"
    assert hosts[1]["mac"] == "02:00:0a:59:4e:0c"


@pytest.mark.parametrize("count", [0, 9])
def test_host_count_bounded(count):
    with pytest.raises(SystemExit, match="between 1 and 8"):
        lab.lab_hosts("lab", count, 11)


def test_inventory_shape():
    inv = lab.render_inventory(lab.lab_hosts("mol", 2, 51), "lab_model")
    hosts = inv["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"]
    assert hosts["mol2"]["ansible_host"] == "10.89.78.52"
    assert inv["all"]["vars"]["ansible_user"] == "root"


def test_wheels_follow_the_role_pins():
    reqs = lab.pinned_requirements()
    assert any(r.startswith("ray==") for r in reqs) and all("==" in r for r in reqs)


# Lines as tinyproxy 1.11 writes them at LogLevel Connect; two connections interleave.
PROXY_LOG = """\
NOTICE    Dec 02 08:22:46.990 [9000]: Initializing tinyproxy ...
CONNECT   Dec 02 08:22:47.682 [9000]: Connect (file descriptor 5): 10.89.78.51
CONNECT   Dec 02 08:22:47.683 [9000]: Connect (file descriptor 7): 10.89.78.52
CONNECT   Dec 02 08:22:47.684 [9000]: Request (file descriptor 5): GET http://10.89.78.1:8765/ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl HTTP/1.1
CONNECT   Dec 02 08:22:47.688 [9000]: Established connection to host "10.89.78.1" using file descriptor 6.
CONNECT   Dec 02 08:22:47.712 [9000]: Request (file descriptor 7): CONNECT huggingface.co:443 HTTP/1.1
ERROR     Dec 02 08:22:47.717 [9000]: opensock: Could not retrieve address info for huggingface.co:443: Name or service not known
CONNECT   Dec 02 08:22:48.001 [9000]: Connect (file descriptor 5): 10.89.78.52
CONNECT   Dec 02 08:22:48.002 [9000]: Request (file descriptor 5): GET http://10.89.78.1:8765/ HTTP/1.1
"""


def test_proxy_log_names_each_request_client():
    now = time.mktime(time.strptime("2026 Dec 02 09:00:00", "%Y %b %d %H:%M:%S"))
    got = lab.proxy_requests(PROXY_LOG, now=now)
    assert [(r["client"], r["method"], r["target"]) for r in got] == [
        ("10.89.78.51", "GET", "http://10.89.78.1:8765/ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl"),
        ("10.89.78.52", "CONNECT", "huggingface.co:443"),
        ("10.89.78.52", "GET", "http://10.89.78.1:8765/"),
    ]
    assert got[0]["time"] == pytest.approx(now - 3600 + 47.684)


def test_proxy_log_time_of_last_december():
    now = time.mktime(time.strptime("2027 Jan 01 00:10:00", "%Y %b %d %H:%M:%S"))
    assert time.localtime(lab.proxy_log_time("Dec 31 23:59:00.500", now)).tm_year == 2026


def test_proxy_admits_the_lab_only():
    conf = lab.proxy_config("10.89.78.1", 8766, "10.89.78.0/24", Path("/c/proxy.log"), Path("/c/proxy.filter"))
    lines = conf.splitlines()
    for want in ("Listen 10.89.78.1", "Port 8766", "Allow 10.89.78.0/24", "FilterDefaultDeny Yes",
                 'Filter "/c/proxy.filter"', 'LogFile "/c/proxy.log"', "LogLevel Connect"):
        assert want in lines
    assert lab.proxy_filter(["10.89.78.1", "huggingface.co"]) == "^10\\.89\\.78\\.1$\n^huggingface\\.co$\n"


def test_lab_inventory_points_at_the_lab_servers():
    """The committed lab variables name the wheelhouse and the proxy that lab.py serves."""
    shared = yaml.safe_load((lab.ROOT / "inventories/lab/group_vars/all/lab.yml").read_text())
    assert shared["sglang_wheelhouse_url"] == lab.wheel_url()
    assert shared["cluster_http_proxy"] == shared["cluster_https_proxy"] == lab.proxy_url()


def test_slurm_conf_puts_the_controller_on_host_1_and_state_under_run():
    hosts = lab.lab_hosts("it", 2, 31)
    conf = lab.slurm_conf(hosts, cpus=2, memory_mb=1024)
    lines = conf.splitlines()
    assert "SlurmctldHost=it1(10.89.78.31)" in lines
    assert "NodeName=it2 NodeAddr=10.89.78.32 CPUs=2 RealMemory=1024 State=UNKNOWN" in lines
    assert "PartitionName=lab Nodes=ALL Default=YES MaxTime=60 MaxNodes=2 State=UP" in lines
    # Everything SLURM writes lives under /run (tmpfs): `slurm down` leaves no trace on the host.
    paths = [ln.split("=", 1)[1] for ln in lines if ln.split("=", 1)[0].endswith(("Location", "Dir", "File"))]
    assert paths and all(p.startswith(lab.SLURM_RUN + "/") for p in paths)
    assert "Gres" not in conf  # slurmd 22.05 drains a node declaring GPUs without device files


def test_lab_lock_is_hashed_and_downloads_plain_pins():
    """Every line of the lab's lock carries a sha256 (pip runs with --require-hashes); the
    wheelhouse download takes the pins without them."""
    lock = yaml.safe_load((lab.ROOT / "inventories/lab/group_vars/all/versions.yml").read_text())["sglang_lock"]
    assert all(len(line.split()) == 2 and line.split()[1].startswith("--hash=sha256:") for line in lock)
    assert lab.pinned_requirements() == [line.split()[0] for line in lock]


def test_repacked_wheel_is_reproducible(tmp_path):
    """The lock carries the repacked torchvision's hash: the repack must give the same bytes
    on every run (fixed times and modes), whatever the source wheel's timestamps."""
    import hashlib
    import zipfile

    src = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("pkg/__init__.py", "x = 1\n")
        z.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\nVersion: 1.0\n")
        z.writestr("pkg-1.0.dist-info/RECORD", "stale\n")
    digests = []
    for i in range(2):
        target = tmp_path / ("out%d.whl" % i)
        time.sleep(1.1 * i)  # a second later: the zip entries' times must not follow the clock
        lab.rewrite_wheel(src, target, patch=lambda name, data: data.replace(b"x = 1", b"x = 2"))
        digests.append(hashlib.sha256(target.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    with zipfile.ZipFile(tmp_path / "out0.whl") as z:
        assert z.read("pkg/__init__.py") == b"x = 2\n"
        assert z.read("pkg-1.0.dist-info/RECORD").decode().splitlines()[-1] == "pkg-1.0.dist-info/RECORD,,"
