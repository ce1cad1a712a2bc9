"""Secrets stay secret: a -vvv deploy with the Ray token, an API key and an HF token in vars
prints none of them, and each lands only in its own 0600 file."""

import secrets

import yaml

from conftest import H1, H2, INVENTORY, on_host, playbook
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

RAY_UNIT = DEFAULTS["ray_unit_name"]  # the lab inventory keeps the plan's default


def test_vvv_never_prints_a_secret(deployed, tmp_path):
    token = on_host(H1, "cat /etc/sglang/ray-auth-token").strip()  # the cluster's own: nothing restarts
    ray_since = on_host(H1, "systemctl show -p ActiveEnterTimestampMonotonic --value " + RAY_UNIT)
    api_key = "sk-sglang-" + secrets.token_hex(12)
    hf_token = "hf_" + secrets.token_hex(16)
    extra = tmp_path / "secrets.yml"  # as a vault file would hand them over
    extra.write_text(yaml.safe_dump({"ray_auth_token": token, "sglang_server_api_key": api_key, "sglang_hf_token": hf_token}))
    run = playbook("playbooks/deploy.yml", INVENTORY, "-vvv", "-e", "@%s" % extra)
    try:
        assert run.rc == 0
        assert len(run.out) > 100000  # -vvv really was verbose
        for secret in (token, api_key, hf_token):
            assert secret not in run.out
        # The given Ray token is the one in place: Ray did not restart.
        assert on_host(H1, "systemctl show -p ActiveEnterTimestampMonotonic --value " + RAY_UNIT) == ray_since
        for host in (H1, H2):
            # Each secret lands in its own 0600 file...
            assert on_host(host, "stat -c '%a %U' /etc/sglang/sglang-server-lab_model.env").split() == ["600", "root"]
            assert on_host(host, "cat /etc/sglang/sglang-server-lab_model.env").strip() == "SGLANG_OPS_API_KEY=" + api_key
            assert on_host(host, "stat -c '%a %U' /etc/sglang/hf-token").split() == ["600", "sglang"]
            assert on_host(host, "cat /etc/sglang/hf-token") == hf_token
            # ...and in no process list, unit file or world-readable configuration.
            visible = on_host(host, "ps -eo args; cat /etc/systemd/system/sglang-*.service")
            for secret in (token, api_key, hf_token):
                assert secret not in visible
        # The key is enforced where it lands: the router (which runs here; SGLang cannot) gets it
        # from its 0600 file through the launcher and refuses requests without it.
        on_host(H1, "systemctl start sglang-router")
        # Until the router answers at all (any HTTP status), at most 60 s on a loaded machine.
        codes = on_host(H1, "for i in $(seq 60); do curl -s -m 2 -o /dev/null http://127.0.0.1:30080/health && break; "
                        "sleep 1; done; for k in 'X: none' 'Authorization: Bearer wrong' 'Authorization: Bearer %s'; do "
                        "curl -s -m 10 -o /dev/null -w '%%{http_code} ' -H \"$k\" -H 'Content-Type: application/json' "
                        "-d '{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}' "
                        "http://127.0.0.1:30080/v1/chat/completions; done" % api_key).split()
        assert codes[:2] == ["401", "401"] and codes[2] == "503", codes  # 503: no server behind it
        assert api_key not in on_host(H1, "ps -eo args")
    finally:
        on_host(H1, "systemctl stop sglang-router")
        clean = playbook("playbooks/deploy.yml", INVENTORY)
        for host in (H1, H2):
            on_host(host, "rm -f /etc/sglang/hf-token")
    assert clean.rc == 0
    assert on_host(H1, "cat /etc/sglang/sglang-server-lab_model.env") == ""
