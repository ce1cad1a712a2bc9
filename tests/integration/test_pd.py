"""A prefill/decode (PD) deployment on lab hosts: planned, rendered, checked by the installed
SGLang for every rank, deployed idempotently; the router in PD mode starts and enforces its key;
the bootstrap port passes the nodes' mesh while an outsider finds it closed; preflight's RDMA
table and verify say "not run" where nothing can run (no RDMA device, no GPU), never "pass".

Three hosts: the shared pair (the `deployed` fixture) as the prefill group (H1, also the router)
and the first decode node (H2), and one more host of its own (prefix `<IT_PREFIX>pd`, address
IT_FIRST+2) as the decode group's second node. At the end the third host goes and the shared
pair is deployed back with the lab inventory (the PD units are removed as groups no longer
planned), so later modules find them as the `deployed` fixture left them.
"""

import json
import secrets
import shutil
import subprocess
import time

import os

import pytest
import yaml

from conftest import FIRST, H1, H2, INVENTORY, IP1, IP2, LAB, PORT_SCAN, PREFIX, ROOT, lab, on_host, playbook

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

# Opt-in (IT_PD=1) until a full run of this module has passed in CI: its one run so far, on a
# machine shared by six helpers (load 20-30 on 2 cores), stopped at the router check's process
# list assertion (since corrected); the PD deploy and its changed=0 re-run on three hosts passed.
pytestmark = pytest.mark.skipif(not os.environ.get("IT_PD"), reason="not run: set IT_PD=1 (three hosts, several "
                                "minutes; not yet part of CI)")
PD_PREFIX = PREFIX + "pd"
H3_SPEC = lab.lab_hosts(PD_PREFIX, 1, FIRST + 2)[0]
H3, IP3 = H3_SPEC["name"], H3_SPEC["ipv4"]
BOOTSTRAP = 8998


@pytest.fixture(scope="module")
def pd_inventory(deployed, tmp_path_factory):
    """The PD inventory on H1, H2 and a third host; the shared pair restored afterwards."""
    t0 = time.monotonic()
    subprocess.run(LAB + ["up", "--prefix", PD_PREFIX, "--first", str(FIRST + 2), "--count", "1"], check=True)
    # The shared pair's venv (3.8 GB, the same lock) copied to the third host instead of installed
    # from the wheelhouse again: the deploy then finds every pin installed there, as on the pair.
    venv = DEFAULTS["cluster_venv_dir"]
    with subprocess.Popen(["podman", "exec", H1, "tar", "-C", "/", "-cf", "-", venv.lstrip("/")],
                          stdout=subprocess.PIPE) as source:
        subprocess.run(["podman", "exec", "-i", H3, "tar", "-C", "/", "-xf", "-"], stdin=source.stdout, check=True)
    assert source.returncode == 0
    inv = tmp_path_factory.mktemp("pd-inventory")
    shutil.copytree(ROOT / "inventories/lab/group_vars", inv / "group_vars")
    # The lab model group's settings (the tiny model, its source, dummy weights) for both PD groups.
    model_vars = (inv / "group_vars/lab_model.yml").read_text()
    for group in ("pd_prefill", "pd_decode"):
        (inv / "group_vars" / ("%s.yml" % group)).write_text(model_vars)
    base = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    node = {k: v for k, v in base["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"][H1].items()
            if k != "ansible_host"}
    api_key = "sk-pd-" + secrets.token_hex(12)
    # Host vars outrank the lab's group_vars/all. The cluster's networks narrowed to the nodes'
    # own addresses: the outsider on the same bridge is then outside them.
    common = dict(cluster_cidrs=["%s/32" % ip for ip in (IP1, IP2, IP3)], cluster_gpus_per_node=4)
    data = {"all": {"vars": base["all"]["vars"], "children": {"sglang_nodes": {"children": {
        "pd_prefill": {"hosts": {H1: dict(node, ansible_host=IP1, **common)},
                       "vars": {"sglang_pd_role": "prefill", "sglang_pd_bootstrap_port": BOOTSTRAP}},
        "pd_decode": {"hosts": {H2: dict(node, ansible_host=IP2, **common), H3: dict(node, ansible_host=IP3, **common)},
                      "vars": {"sglang_pd_role": "decode"}}}},
        # The Ray head stays where the shared deploy put it.
        "ray_head": {"hosts": {H1: {}}}}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    # The lab's package index lacks mooncake-transfer-engine 0.3.13.post1 (it ends at 0.3.11.post1)
    # and the lab lock is the CPU validation set: the engine is planned but not installed here.
    # The KV transfer over TCP, the servers never start on CPU hosts.
    extra = inv / "pd.yml"
    extra.write_text(yaml.safe_dump({"sglang_pd_transfer_backend": "mooncake_tcp", "sglang_transfer_engine_install": False,
                                     "sglang_server_api_key": api_key, "sglang_router_host": H1}))
    print("\nthird host up: %.1f s" % (time.monotonic() - t0))
    yield {"hosts": inv / "hosts.yml", "extra": extra, "key": api_key}
    subprocess.run(LAB + ["down", "--prefix", PD_PREFIX], check=False)
    t1 = time.monotonic()
    run = playbook("playbooks/deploy.yml")
    print("restore the shared pair: %.1f s" % (time.monotonic() - t1))
    assert run.rc == 0, run.out[-3000:]


@pytest.fixture(scope="module")
def pd_deployed(pd_inventory):
    run = playbook("playbooks/deploy.yml", pd_inventory["hosts"], "-e", "@%s" % pd_inventory["extra"])
    assert run.rc == 0, run.out[-5000:]
    return run


def unit_argv(host, unit):
    return on_host(host, "systemctl show -p ExecStart --value %s" % unit)


def test_pd_deploy_converges_and_reruns_unchanged(pd_inventory, pd_deployed):
    # Every rank was checked by the installed SGLang before its unit was written.
    prefill = unit_argv(H1, "sglang-server-pd_prefill")
    assert "--disaggregation-mode prefill" in prefill and "--disaggregation-bootstrap-port %d" % BOOTSTRAP in prefill
    assert "--disaggregation-transfer-backend mooncake_tcp" in prefill
    decode = unit_argv(H3, "sglang-server-pd_decode")
    assert "--disaggregation-mode decode" in decode and "--node-rank 1" in decode and "bootstrap-port" not in decode
    assert "--disaggregation-ib-device" not in prefill  # no RDMA device on the lab
    router = unit_argv(H1, "sglang-router")
    assert "--pd-disaggregation --prefill http://%s:30000 %d --decode http://%s:30000" % (IP1, BOOTSTRAP, IP2) in router
    again = playbook("playbooks/deploy.yml", pd_inventory["hosts"], "-e", "@%s" % pd_inventory["extra"])
    assert again.rc == 0 and all(r["changed"] == 0 for r in again.recap.values()), again.recap
    assert set(again.recap) == {H1, H2, H3}


def test_router_in_pd_mode_enforces_its_key(pd_inventory, pd_deployed):
    key = pd_inventory["key"]
    on_host(H1, "systemctl start sglang-router")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code = on_host(H1, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:30080/v1/models || true")
            if code not in ("", "000"):
                break
            time.sleep(2)
        codes = on_host(H1, "for k in '' wrong %s; do curl -s -o /dev/null -w '%%{http_code} ' -H \"Authorization: "
                            "Bearer $k\" -H 'Content-Type: application/json' -d '{\"model\":\"m\",\"messages\":[]}' "
                            "http://127.0.0.1:30080/v1/chat/completions; done" % key).split()
        assert codes[:2] == ["401", "401"] and codes[2] not in ("401", "000"), codes
        # The router names its process `sglang::router` (its argv is the unit's ExecStart, checked
        # above); the key is in neither.
        args = on_host(H1, "ps -ww -eo args")
        assert key not in args and "sglang::router" in args
    finally:
        on_host(H1, "systemctl stop sglang-router")


def test_bootstrap_port_in_mesh_and_closed_to_an_outsider(pd_inventory, pd_deployed):
    run = playbook("playbooks/preflight.yml", pd_inventory["hosts"], "-e", "@%s" % pd_inventory["extra"],
                   "--tags", "preflight_mesh,preflight_rdma")
    assert run.rc == 0, run.out[-3000:]
    # RDMA: rdma-core is installed on the lab image, the kernel has no RDMA: nothing passes there.
    assert "RDMA: 3 passed, 0 failed, 21 not run" in run.out
    assert "not run: rdma devices on %s, %s, %s: no RDMA device" % (H1, H2, H3) in run.out
    # The bootstrap port listens (a stand-in on it, as the mesh's listener did) and still is closed
    # to an outsider: the controller on the lab bridge (its gateway), outside the nodes' /32s.
    on_host(H1, "systemd-run --unit pd-bootstrap-standin python3 -c \"import socket,time; s=socket.socket(); "
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', %d)); s.listen(); "
                "time.sleep(60)\"" % BOOTSTRAP)
    try:
        time.sleep(2)
        target = json.dumps([[IP1, BOOTSTRAP]])
        inside = subprocess.run(["podman", "exec", H2, "python3", "-c", PORT_SCAN, target], check=True,
                                stdout=subprocess.PIPE, text=True, timeout=60).stdout
        assert json.loads(inside) == [[IP1, BOOTSTRAP]]
        outside = subprocess.run(["python3", "-c", PORT_SCAN, target], check=True, stdout=subprocess.PIPE, text=True,
                                 timeout=60).stdout
        assert json.loads(outside) == []
    finally:
        on_host(H1, "systemctl stop pd-bootstrap-standin || true")


def test_verify_reports_pd_honestly(pd_inventory, pd_deployed):
    run = playbook("playbooks/verify.yml", pd_inventory["hosts"], "-e", "@%s" % pd_inventory["extra"])
    assert run.rc == 0, run.out[-3000:]
    assert "not run: pd prefill on %s: not started: no GPU" % H1 in run.out
    assert "not run: pd decode on %s: not started: no GPU" % H2 in run.out
    # The table's lines, as the play prints them: "    - pd prefill   -   -   not run".
    rows = [line.split() for line in run.out.splitlines()
            if line.strip().lstrip("- ").startswith(("pd prefill ", "pd decode "))]
    assert len(rows) == 2 and all("pass" not in row and "not" in row for row in rows), rows
