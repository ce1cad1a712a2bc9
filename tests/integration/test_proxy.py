"""Downloads go through the operator's proxy: pip's wheels and the Hugging Face hub.

The lab points cluster_http_proxy / cluster_https_proxy at a real proxy (tinyproxy on the bridge
gateway, started by tools/lab.py) whose log names the client of every request. The wheelhouse
lives on the gateway, not on a cluster IP, so a deploy's wheels must pass through it; the hub
request must too, and since the lab has no internet the download fails, in words an operator
can act on.
"""

import re
import subprocess
import time
from urllib.parse import unquote

import pytest
import yaml

from conftest import HOSTS, INVENTORY, ROOT, lab, on_host, playbook
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

DATA, CONFIG = DEFAULTS["sglang_data_dir"], DEFAULTS["cluster_config_dir"]  # the lab keeps the defaults
TEST_MODEL_DIR = DATA + "/models/proxy-test"
# A repository that does not exist, in case the hub is reachable after all: the download fails
# either way, and nothing real is fetched.
TEST_REPO = "sglang-ops/no-such-model"


def created(host):
    """When the lab host's container was created: requests before it came from an older host."""
    return int(subprocess.run(["podman", "inspect", "-f", "{{.Created.Unix}}", host], check=True,
                              stdout=subprocess.PIPE, text=True).stdout)


def proxied(since):
    """The proxy's requests from this session's hosts since `since`, as (client, method, target)."""
    ips = {h["ipv4"] for h in HOSTS}
    return [r for r in lab.proxy_requests(lab.PROXY_LOG.read_text()) if r["client"] in ips and r["time"] >= since]


def canonical(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_key(filename):
    """(name, version) of a wheel file; a local label (+cpu, +sglangops1) satisfies its pin."""
    name, version = filename.split("-")[:2]
    return canonical(name), version.split("+")[0]


def task_output(out, task):
    """What a task printed: from its TASK line to the next one."""
    return out.split("TASK [%s]" % task, 1)[-1].split("\nTASK [", 1)[0] if "TASK [%s]" % task in out else ""


def failure(out, host):
    """The last 'fatal: [host]' block of a playbook's output, the one that ended the host's play
    (the YAML callback indents its fields)."""
    lines = out.splitlines()
    start = next((i for i in reversed(range(len(lines))) if lines[i].startswith("fatal: [%s]" % host)), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    return "\n".join(lines[start:end])


def test_wheels_come_through_the_proxy(deployed):
    venv = task_output(deployed.out, "sglang_ops.cluster.sglang : Show what the venv changed")
    if not all("ok: [%s]" % h["name"] in venv for h in HOSTS):
        pytest.skip("the hosts already had their venv (LAB_KEEP): this deploy downloaded nothing")
    lock = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/versions.yml").read_text())["sglang_lock"]
    want = {(canonical(pin.split()[0].split("==")[0]), pin.split()[0].split("==")[1]) for pin in lock}
    for host in HOSTS:
        since = created(host["name"])
        fetched = {wheel_key(unquote(r["target"].rsplit("/", 1)[1])) for r in proxied(since)
                   if r["client"] == host["ipv4"] and r["method"] == "GET"
                   and r["target"].startswith(lab.wheel_url()) and r["target"].endswith(".whl")}
        print("%s fetched %d wheels through %s" % (host["name"], len(fetched), lab.proxy_url()))
        assert want <= fetched, (host["name"], sorted(want - fetched)[:10])
        # And none around it: the wheel server saw this host only through the proxy.
        direct = [line for line in (lab.CACHE / "wheelhouse.log").read_text().splitlines()
                  if line.startswith(host["ipv4"] + " ")
                  and time.mktime(time.strptime(line.split("[", 1)[1][:20], "%d/%b/%Y %H:%M:%S")) >= since]
        assert not direct, direct[:3]


# What an install with a Hugging Face model may touch on a node; it must look the same afterwards.
STATE = ("for d in {c} {d} {d}/models {d}/.cache; do echo \"$d:\"; ls -A \"$d\" 2>/dev/null; done; true"
         .format(c=CONFIG, d=DATA))
TOKEN_FILE = CONFIG + "/hf-token"


def install_from_hub(*extra):
    """The install phase with a Hugging Face model that cannot be had; the lab is left as it was
    (the test model path and a token file it wrote are removed: a token file would change the
    server units of the next deploy)."""
    before = {h["name"]: on_host(h["name"], STATE) for h in HOSTS}
    t0 = time.time() - 1
    try:
        run = playbook("playbooks/deploy.yml", INVENTORY, "--tags", "install",
                       "-e", "sglang_model_source=hf", "-e", "sglang_model_repo=%s" % TEST_REPO,
                       "-e", "sglang_model_revision=%s" % ("0" * 40), "-e", "sglang_model_path=%s" % TEST_MODEL_DIR, *extra)
        return run, proxied(t0)
    finally:
        for h in HOSTS:
            had_token = "hf-token" in before[h["name"]].split()
            on_host(h["name"], "rm -rf %s%s" % (TEST_MODEL_DIR, "" if had_token else " " + TOKEN_FILE))
            assert on_host(h["name"], STATE) == before[h["name"]], h["name"]


@pytest.fixture(scope="module")
def hub_with_token(deployed):
    # A made-up token: it would reach the hub only if the hub were reachable, and opens nothing.
    return install_from_hub("-e", "sglang_hf_token=hf_sglangops_proxy_test_not_a_token")


@pytest.fixture(scope="module")
def hub_without_token(deployed):
    return install_from_hub()


def hub_clients(requests):
    return {r["client"] for r in requests if r["method"] == "CONNECT" and r["target"] == "huggingface.co:443"}


def test_hub_download_goes_through_the_proxy(hub_with_token):
    run, requests = hub_with_token
    assert run.rc != 0, run.out[-3000:]  # no internet: the download cannot succeed
    assert TEST_MODEL_DIR in run.out  # the plan took the path given with -e
    assert hub_clients(requests) == {h["ipv4"] for h in HOSTS}, requests[-10:]


def test_hub_download_failure_is_explained(hub_with_token):
    run, _ = hub_with_token
    assert "Traceback" not in run.out
    for h in HOSTS:
        said = failure(run.out, h["name"])
        assert h["name"] in said and "sglang_model_repo" in said and "Fix:" in said, said or run.out[-3000:]


def test_hub_download_without_a_token_goes_through_the_proxy(hub_without_token):
    run, requests = hub_without_token
    assert run.rc != 0, run.out[-3000:]
    assert hub_clients(requests) == {h["ipv4"] for h in HOSTS}, requests[-10:]
