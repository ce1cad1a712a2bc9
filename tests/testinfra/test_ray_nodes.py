"""Checks from outside, on each deployed node: what an operator would look at with ssh."""

import re

import pytest

VENV = "/opt/sglang/venv"


@pytest.fixture
def unit_text(host, plan_layout):
    return host.file("%s/%s.service" % (plan_layout["unit_dir"], plan_layout["units"]["ray"])).content_string


def test_unit_running_enabled_as_service_user(host, plan_layout):
    svc = host.service(plan_layout["units"]["ray"])
    assert svc.is_running and svc.is_enabled
    raylets = host.process.filter(comm="raylet")
    assert raylets and all(p.user == "sglang" for p in raylets)


def test_ray_binds_the_node_cluster_ip(host, unit_text):
    ipv4 = [a for a in host.interface("eth0").addresses if "." in a]
    text = unit_text
    assert "--node-ip-address=%s" % ipv4[0] in text
    # The node manager listens on its fixed port on that address, not on a random one.
    assert host.socket("tcp://%s:6380" % ipv4[0]).is_listening


def test_head_serves_gcs_and_dashboard_stays_off(host, unit_text):
    text = unit_text
    if "--head" in text:
        assert host.socket("tcp://0.0.0.0:6379").is_listening or host.socket("tcp://6379").is_listening
        assert "--include-dashboard=false" in text
        assert not host.socket("tcp://8265").is_listening
    else:
        assert re.search(r"--address=\S+:6379", text)


def test_venv_holds_the_pinned_ray(host):
    out = host.check_output("%s/bin/python -c 'import ray, torch; print(ray.__version__, torch.__version__)'" % VENV)
    ray_version, torch_version = out.split()
    assert ray_version == "2.60.0"
    assert torch_version.split("+")[0] == "2.13.0"
    assert host.file(VENV).user == "root"


def test_fake_gpus_visible_to_ray(unit_text):
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3" in unit_text
    assert "--num-gpus=4" in unit_text
