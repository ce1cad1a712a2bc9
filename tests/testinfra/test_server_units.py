"""SGLang server units on each deployed node, as an operator would inspect them over ssh."""

import re

UNIT = "sglang-server-lab_model"
FENCE = "sglang-fence-lab_model"


def unit_text(host):
    return host.file("/etc/systemd/system/%s.service" % UNIT).content_string


def test_unit_installed_enabled_and_not_running_without_gpu(host):
    svc = host.service(UNIT)
    assert svc.is_enabled
    # CPU lab: never started; nothing pretends a server runs.
    assert not svc.is_running
    assert not host.socket("tcp://30000").is_listening


def test_unit_runs_launch_server_as_service_user_with_rank(host):
    text = unit_text(host)
    assert re.search(r"^User=sglang$", text, re.M)
    assert re.search(r"--nnodes 2 --node-rank [01] --dist-init-addr \S+:20000", text)
    ipv4 = [a for a in host.interface("eth0").addresses if "." in a][0]
    assert "SGLANG_HOST_IP=%s" % ipv4 in text
    assert "NCCL_SOCKET_IFNAME=eth0" in text and "GLOO_SOCKET_IFNAME=eth0" in text
    assert "Restart=no" in text and "KillMode=control-group" in text


def test_secrets_file_is_root_only(host):
    env = host.file("/etc/sglang/%s.env" % UNIT)
    assert env.exists and env.mode == 0o600 and env.user == "root"


def test_fence_runs(host):
    assert host.service(FENCE).is_running and host.service(FENCE).is_enabled


def test_installed_sglang_accepts_the_unit(host):
    # The same check deploy runs, from outside: SGLang's parser, resolve_once, check_server_args.
    argv = re.search(r"^ExecStart=(.*)$", unit_text(host), re.M).group(1).split()
    i = argv.index("/usr/local/lib/sglang-ops/sglang-launch.py")
    cmd = argv[:i + 1] + ["--validate"] + argv[i + 1:] + ["--device", "cuda"]
    out = host.check_output("cd /var/lib/sglang && runuser -u sglang -- env HF_HUB_OFFLINE=1 %s 2>/dev/null | tail -1"
                            % " ".join(cmd))
    assert '"ok": true' in out
