"""Secrets stay secret: a -vvv deploy with the Ray token and an API key in vars prints neither."""

import secrets

import yaml

from conftest import H1, INVENTORY, on_host, playbook


def test_vvv_never_prints_the_ray_token_or_the_api_key(deployed, tmp_path):
    token = on_host(H1, "cat /etc/sglang/ray-auth-token").strip()  # the cluster's own: nothing restarts
    api_key = "sk-sglang-" + secrets.token_hex(12)
    hf_token = "hf_" + secrets.token_hex(16)
    extra = tmp_path / "secrets.yml"  # as a vault file would hand them over
    extra.write_text(yaml.safe_dump({"ray_auth_token": token, "sglang_server_api_key": api_key, "sglang_hf_token": hf_token}))
    run = playbook("playbooks/deploy.yml", INVENTORY, "-vvv", "-e", "@%s" % extra)
    assert run.rc == 0
    assert run.recap[H1]["changed"] == 0  # the given token is the one in place
    assert len(run.out) > 100000  # -vvv really was verbose
    for secret in (token, api_key, hf_token):
        assert secret not in run.out
    # and not on any node's process list or unit files either
    for host in ("%s" % H1,):
        assert token not in on_host(host, "ps -eo args; cat /etc/systemd/system/sglang-*.service")
