"""SGLang server units on each deployed node, as an operator would inspect them over ssh."""

import re

import pytest

GROUP = "lab_model"


@pytest.fixture
def unit(plan_layout):
    return plan_layout["units"]["servers"][GROUP]


@pytest.fixture
def unit_text(host, plan_layout, unit):
    return host.file("%s/%s.service" % (plan_layout["unit_dir"], unit)).content_string


def test_unit_installed_enabled_and_not_running_without_gpu(host, unit):
    svc = host.service(unit)
    assert svc.is_enabled
    # CPU lab: never started; nothing pretends a server runs.
    assert not svc.is_running
    assert not host.socket("tcp://30000").is_listening


def test_unit_runs_launch_server_as_service_user_with_rank(host, unit_text):
    text = unit_text
    assert re.search(r"^User=sglang$", text, re.M)
    assert re.search(r"--nnodes 2 --node-rank [01] --dist-init-addr \S+:20000", text)
    ipv4 = [a for a in host.interface("eth0").addresses if "." in a][0]
    assert "SGLANG_HOST_IP=%s" % ipv4 in text
    assert "NCCL_SOCKET_IFNAME=eth0" in text and "GLOO_SOCKET_IFNAME=eth0" in text
    assert "Restart=no" in text and "KillMode=control-group" in text


def test_secrets_are_root_only_credentials(host, plan_layout, unit, unit_text):
    # Each secret the unit gets (copied by root at start) is a 0600 root file; none in an environment file.
    assert not host.file("%s/%s.env" % (plan_layout["config_dir"], unit)).exists
    staged = re.findall(r"^ExecStartPre=\+/usr/bin/install -m 0400 -o \S+ -g \S+ (\S+) /run/[^/]+/([a-z_]+)$", unit_text, re.M)
    assert all(plan_layout["credentials"][cid] == path for path, cid in staged)
    for path in plan_layout["credentials"].values():
        f = host.file(path)
        assert not f.exists or (f.mode == 0o600 and f.user == "root")
    assert "EnvironmentFile" not in unit_text


def test_fence_runs(host, plan_layout):
    fence = host.service(plan_layout["units"]["fences"][GROUP])
    assert fence.is_running and fence.is_enabled


def test_installed_sglang_accepts_the_unit(host, plan_layout, unit_text):
    # The same check deploy runs, from outside: SGLang's parser, resolve_once, check_server_args.
    argv = re.search(r"^ExecStart=(.*)$", unit_text, re.M).group(1).split()
    i = argv.index(plan_layout["files"]["launcher"])
    cmd = argv[:i + 1] + ["--validate"] + argv[i + 1:] + ["--device", "cuda"]
    out = host.check_output("cd %s && runuser -u sglang -- env HF_HUB_OFFLINE=1 %s 2>/dev/null | tail -1"
                            % (plan_layout["data_dir"], " ".join(cmd)))
    assert '"ok": true' in out
