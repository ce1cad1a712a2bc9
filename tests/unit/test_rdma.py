"""RDMA parsers on the real tools' output shapes, and the cross-node judge, as tables.

Fixtures (tests/unit/fixtures/rdma/): `ibv_devinfo -v` of ConnectX on InfiniBand and on RoCE,
Broadcom bnxt_re and Intel irdma on RoCE, a port DOWN, a RoCE port without an IPv4 RoCE v2 GID,
rdma-core without a device ("No IB devices found"; on the lab hosts, whose kernel has no RDMA,
"Failed to get IB devices list: Function not implemented"); `show_gids`;
`nvidia-smi topo -m` of an 8-GPU, 4-NIC node; perftest `ib_write_bw` (Gb/s and MB/s, above and
below the floor); /proc/modules with and without nvidia_peermem.
"""

import json
from pathlib import Path

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import rdma, server
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan

FIX = Path(__file__).resolve().parent / "fixtures/rdma"


def fixture(name):
    return (FIX / name).read_text()


def facts(devinfo, gids=None, topo=None, modules="proc-modules-peermem.txt", vendor="nvidia"):
    return rdma.facts_from_outputs(fixture(devinfo), fixture(gids) if gids else None,
                                   fixture(topo) if topo else None, fixture(modules) if modules else None,
                                   gpu_vendor=vendor)


def plan_for(mode="auto", real=True, **host_vars):
    hv = {h: {"cluster_interface": "eth0", "cluster_gpus_per_node": 8, "cluster_gpus_fake": not real,
              "sglang_model_path": "org/m", "cluster_rdma": mode, "ansible_host": "10.0.0.%d" % (20 + i)}
          for i, h in enumerate(("n0", "n1"))}
    for host, extra in host_vars.items():
        hv[host].update(extra)
    return build_plan({"g": ["n0", "n1"]}, hv)


@pytest.mark.parametrize("name,want", [
    ("ibv_devinfo-v-mlx5-ib.txt", [("mlx5_0", "PORT_ACTIVE", "InfiniBand", 4096), ("mlx5_1", "PORT_ACTIVE", "InfiniBand", 4096)]),
    ("ibv_devinfo-v-mlx5-roce.txt", [("mlx5_0", "PORT_ACTIVE", "Ethernet", 4096)]),
    ("ibv_devinfo-v-mlx5-roce-port-down.txt", [("mlx5_0", "PORT_DOWN", "Ethernet", 4096)]),
    ("ibv_devinfo-v-bnxt_re-roce.txt", [("bnxt_re0", "PORT_ACTIVE", "Ethernet", 4096)]),
    ("ibv_devinfo-v-irdma-roce.txt", [("irdma0", "PORT_ACTIVE", "Ethernet", 4096)]),
    ("ibv_devinfo-v-mlx5-roce-no-ipv4-gid.txt", [("mlx5_0", "PORT_ACTIVE", "Ethernet", 1024)]),
    ("ibv_devinfo-no-device.txt", []),
    # What rdma-core 44 says on the lab hosts (a kernel without RDMA support; rc 255).
    ("ibv_devinfo-lab-no-kernel-support.txt", []),
])
def test_parse_ibv_devinfo(name, want):
    devices = rdma.parse_ibv_devinfo(fixture(name))
    assert [(d["name"], p["state"], p["link_layer"], p["active_mtu"]) for d in devices for p in d["ports"]] == want


def test_gids_from_devinfo_and_show_gids_agree():
    from_devinfo = rdma.gid_rows_from_devinfo(rdma.parse_ibv_devinfo(fixture("ibv_devinfo-v-mlx5-roce.txt")))
    from_table = rdma.parse_show_gids(fixture("show_gids-mlx5-roce.txt"))
    assert [(r["index"], r["type"], r["ipv4"]) for r in from_devinfo] == [
        (0, "RoCE v1", None), (1, "RoCE v2", None), (2, "RoCE v1", "10.0.0.20"), (3, "RoCE v2", "10.0.0.20")]
    assert [(r["index"], r["type"], r["ipv4"]) for r in from_table] == [(r["index"], r["type"], r["ipv4"]) for r in from_devinfo]
    assert from_table[3]["netdev"] == "ens1f0np0"
    assert rdma.roce_gid_index({"gids": from_table}, "mlx5_0") == 3


def test_sysfs_rows_like_show_gids():
    rows = rdma.sysfs_gid_rows("mlx5_0", 1, {
        0: ("fe80:0000:0000:0000:0e42:a1ff:fe65:8e2a\n", "IB/RoCE v1\n", "ens1f0np0\n"),
        1: ("fe80:0000:0000:0000:0e42:a1ff:fe65:8e2a", "RoCE v2", "ens1f0np0"),
        3: ("0000:0000:0000:0000:0000:ffff:0a00:0014", "RoCE v2", "ens1f0np0"),
        4: ("0000:0000:0000:0000:0000:0000:0000:0000", "", "")})
    assert [(r["index"], r["type"], r["ipv4"]) for r in rows] == [(0, "RoCE v1", None), (1, "RoCE v2", None),
                                                                  (3, "RoCE v2", "10.0.0.20")]


def test_topology_nearest_nic():
    topo = rdma.parse_topo(fixture("nvidia-smi-topo-m-h100x8.txt"))
    assert topo["nics"] == {"NIC0": "mlx5_0", "NIC1": "mlx5_1", "NIC2": "mlx5_2", "NIC3": "mlx5_3"}
    assert topo["gpus"][4]["mlx5_2"] == "PIX"
    nearest = rdma.nearest_nics(topo, ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"])
    assert nearest == {0: "mlx5_0", 1: "mlx5_0", 2: "mlx5_1", 3: "mlx5_1", 4: "mlx5_2", 5: "mlx5_2", 6: "mlx5_3", 7: "mlx5_3"}
    # Only two NICs usable: GPUs 4-7 get the nearest of those (SYS), which the judge flags.
    assert rdma.nearest_nics(topo, ["mlx5_0", "mlx5_1"])[6] == "mlx5_0"


@pytest.mark.parametrize("name,average", [("ib_write_bw-ok.txt", 391.52), ("ib_write_bw-below-floor.txt", 23.41),
                                          ("ib_write_bw-mb.txt", 391.52)])
def test_parse_ib_write_bw(name, average):
    assert rdma.parse_ib_write_bw(fixture(name))["average_gbps"] == average


def test_ib_write_bw_without_result():
    assert rdma.parse_ib_write_bw("Couldn't connect to 10.0.0.21:18515\nUnable to open file descriptor\n") is None


def test_modules():
    assert "nvidia_peermem" in rdma.parse_modules(fixture("proc-modules-peermem.txt"))
    assert "nvidia_peermem" not in rdma.parse_modules(fixture("proc-modules-no-peermem.txt"))


OK_IB = ("ibv_devinfo-v-mlx5-ib.txt", None)
CASES = [
    # id, mode, (n0 facts args), (n1 facts args), bandwidth {host: fixture}, {(host, check): status}, fragment
    ("healthy-ib", "auto", OK_IB, OK_IB, {"n0": "ib_write_bw-ok.txt"},
     {("n0", "rdma ports"): "pass", ("n0", "rdma link"): "pass", ("n0", "rdma gid"): "not run",
      ("n0", "nvidia-peermem"): "pass", ("n0", "rdma bandwidth"): "pass", ("n1", "rdma bandwidth"): "not run"}, None),
    ("healthy-roce", "auto", ("ibv_devinfo-v-mlx5-roce.txt", "show_gids-mlx5-roce.txt"),
     ("ibv_devinfo-v-mlx5-roce.txt", None), {},
     {("n0", "rdma gid"): "pass", ("n1", "rdma gid"): "pass", ("n0", "rdma link"): "pass"}, "index 3"),
    ("port-down", "auto", ("ibv_devinfo-v-mlx5-roce-port-down.txt", None), ("ibv_devinfo-v-mlx5-roce.txt", None), {},
     {("n0", "rdma ports"): "fail", ("n1", "rdma ports"): "pass"}, "PORT_DOWN"),
    ("missing-gid", "auto", ("ibv_devinfo-v-mlx5-roce-no-ipv4-gid.txt", None), ("ibv_devinfo-v-mlx5-roce.txt", None), {},
     {("n0", "rdma gid"): "fail", ("n1", "rdma gid"): "pass", ("n0", "rdma link"): "fail"}, "no RoCE v2 GID"),
    ("peermem-missing", "auto", ("ibv_devinfo-v-mlx5-ib.txt", None, None, "proc-modules-no-peermem.txt"), OK_IB, {},
     {("n0", "nvidia-peermem"): "fail", ("n1", "nvidia-peermem"): "pass"}, "modprobe nvidia-peermem"),
    ("bandwidth-below-floor", "auto", OK_IB, OK_IB, {"n0": "ib_write_bw-below-floor.txt", "n1": "ib_write_bw-ok.txt"},
     {("n0", "rdma bandwidth"): "fail", ("n1", "rdma bandwidth"): "pass"}, "below the floor"),
    ("mixed-ib-and-roce", "auto", OK_IB, ("ibv_devinfo-v-mlx5-roce.txt", None), {},
     {("n0", "rdma link"): "fail", ("n1", "rdma link"): "fail"}, "differ between nodes"),
    ("broadcom-and-intel-roce", "auto", ("ibv_devinfo-v-bnxt_re-roce.txt", None), ("ibv_devinfo-v-irdma-roce.txt", None), {},
     {("n0", "rdma gid"): "pass", ("n1", "rdma gid"): "pass", ("n0", "rdma ports"): "pass"}, "bnxt_re0 index 3"),
    ("no-device-auto", "auto", ("ibv_devinfo-no-device.txt", None), ("ibv_devinfo-no-device.txt", None), {},
     {("n0", "rdma devices"): "not run", ("n0", "rdma ports"): "not run", ("n1", "rdma bandwidth"): "not run"},
     "no RDMA device"),
    ("no-device-required", "required", ("ibv_devinfo-no-device.txt", None), OK_IB, {},
     {("n0", "rdma devices"): "fail", ("n1", "rdma devices"): "pass"}, "cluster_rdma is required"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_judge(case):
    _name, mode, f0, f1, bw, want, fragment = case
    plan = plan_for(mode)
    verdicts = rdma.judge(plan, {"n0": facts(*f0), "n1": facts(*f1)},
                          {h: rdma.parse_ib_write_bw(fixture(n)) for h, n in bw.items()})
    got = {key: verdicts[key[0]][key[1]]["status"] for key in want}
    assert got == want, verdicts
    if fragment:
        assert any(fragment in v["detail"] for rows in verdicts.values() for v in rows.values()), verdicts
    failed = rdma.problems(verdicts)
    assert bool(failed) == ("fail" in want.values()), failed


def test_pinned_device_missing_and_affinity():
    plan = plan_for("auto", n0={"cluster_rdma_devices": ["mlx5_0", "mlx5_7"]})
    verdicts = rdma.judge(plan, {"n0": facts("ibv_devinfo-v-mlx5-ib.txt", None, "nvidia-smi-topo-m-h100x8.txt"),
                                 "n1": facts("ibv_devinfo-v-mlx5-ib.txt", None, "nvidia-smi-topo-m-h100x8.txt")})
    assert verdicts["n0"]["rdma devices"]["status"] == "fail" and "mlx5_7" in verdicts["n0"]["rdma devices"]["detail"]
    # n1 uses both its active NICs, mlx5_0 and mlx5_1: GPUs 4-7 reach them only across sockets.
    assert verdicts["n1"]["gpu-nic affinity"]["status"] == "fail"


def test_off_mode_runs_nothing():
    verdicts = rdma.judge(plan_for("off"), {})
    assert {v["status"] for rows in verdicts.values() for v in rows.values()} == {"not run"}


def test_ib_device_argument_and_nccl_env():
    plan = plan_for("auto")
    node = plan["nodes"]["n0"]
    topo4 = facts("ibv_devinfo-v-mlx5-ib.txt", None, "nvidia-smi-topo-m-h100x8.txt")
    # Two NICs found, the topology known: each GPU its nearest.
    mapping = json.loads(rdma.ib_device_arg(node, topo4))
    assert mapping == {"0": "mlx5_0", "1": "mlx5_0", "2": "mlx5_1", "3": "mlx5_1",
                       "4": "mlx5_0", "5": "mlx5_0", "6": "mlx5_0", "7": "mlx5_0"}
    assert rdma.ib_device_arg(node, facts("ibv_devinfo-v-mlx5-ib.txt")) == "mlx5_0,mlx5_1"
    assert rdma.ib_device_arg(node, facts("ibv_devinfo-no-device.txt")) is None
    assert rdma.nccl_env(node, facts("ibv_devinfo-v-mlx5-ib.txt")) == {"NCCL_IB_HCA": "=mlx5_0,mlx5_1"}
    roce = facts("ibv_devinfo-v-mlx5-roce.txt", "show_gids-mlx5-roce.txt")
    assert rdma.nccl_env(node, roce) == {"NCCL_IB_HCA": "=mlx5_0", "NCCL_IB_GID_INDEX": "3"}
    assert rdma.nccl_env(node, facts("ibv_devinfo-no-device.txt")) == {}
    assert rdma.nccl_env(node, roce, "off") == {"NCCL_IB_DISABLE": "1"}
    pinned = plan_for("auto", n0={"cluster_rdma_devices": ["mlx5_1"], "cluster_rdma_gid_index": 5})["nodes"]["n0"]
    assert rdma.nccl_env(pinned, roce) == {"NCCL_IB_HCA": "=mlx5_1", "NCCL_IB_GID_INDEX": "5"}


def test_server_unit_takes_rdma_facts():
    hv = {h: {"cluster_interface": "eth0", "cluster_gpus_per_node": 8, "sglang_model_path": "org/m",
              "ansible_host": "10.0.0.%d" % (20 + i), "sglang_router": True,
              "sglang_pd_role": "prefill" if h == "p0" else "decode"} for i, h in enumerate(("p0", "d0"))}
    plan = build_plan({"pre": ["p0"], "dec": ["d0"]}, hv)
    opts = {"rdma": {"p0": facts("ibv_devinfo-v-mlx5-roce.txt", "show_gids-mlx5-roce.txt")}}
    unit = server.group_units(plan, "pre", opts)["p0"]
    argv, env = unit["argv"], unit["env"]
    assert argv[argv.index("--disaggregation-ib-device") + 1] == "mlx5_0"
    assert env["NCCL_IB_HCA"] == "=mlx5_0" and env["NCCL_IB_GID_INDEX"] == "3"
    decode = server.group_units(plan, "dec", opts)["d0"]
    assert "--disaggregation-ib-device" not in decode["argv"] and "NCCL_IB_HCA" not in decode["env"]


def test_collective_fails_when_rdma_planned_and_nccl_uses_sockets():
    from ansible_collections.sglang_ops.cluster.plugins.module_utils import collective

    fixtures = Path(__file__).resolve().parent / "fixtures"
    socket = collective.nccl_transport((fixtures / "nccl-info-socket.log").read_text())[0]
    ib = collective.nccl_transport((fixtures / "nccl-info-ib.log").read_text())[0]
    assert (socket, ib) == ("Socket", "IB")
    results = {"n0": {"ok": True, "rank": 0, "backend": "nccl", "figures": [], "transport": socket},
               "n1": {"ok": True, "rank": 1, "backend": "nccl", "figures": [], "transport": ib}}
    # Planned: a failure even when the operator chose to only warn about the fall-back.
    problems, warnings = collective.collective_problems("g", results, (), "warn", 0, rdma_planned={"n0", "n1"})
    assert len(problems) == 1 and problems[0].startswith("n0: collective: NCCL fell back to NET/Socket although the plan")
    # Not planned, no devices: nothing to say.
    assert collective.collective_problems("g", results, (), "warn", 0) == ([], [])


def test_report_on_the_lab_shape_is_not_run():
    """rdma-core installed, no device (the lab image): every check but the stack is not run."""
    lab = {h: rdma.facts_from_outputs(fixture("ibv_devinfo-lab-no-kernel-support.txt"), gpu_vendor=None)
           for h in ("n0", "n1")}
    out = rdma.report(plan_for("auto", real=False), lab)
    assert out["problems"] == [] and out["summary"] == "2 passed, 0 failed, 14 not run"
    assert any(line.startswith("not run: rdma devices on n0, n1: no RDMA device") for line in out["table"])
    assert rdma.bandwidth_plan(plan_for("auto"), lab, "n0") == {"serve": False, "peer": ""}
    ib = {h: facts("ibv_devinfo-v-mlx5-ib.txt") for h in ("n0", "n1")}
    assert rdma.bandwidth_plan(plan_for("auto"), ib, "n1") == {"serve": True, "peer": "10.0.0.20"}
