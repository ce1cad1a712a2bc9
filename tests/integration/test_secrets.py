"""Secrets stay secret: a -vvv deploy with the Ray token, an API key, an admin API key, an HF
token and a TLS key in vars prints none of them; each lands only in its own 0600 file; the real
server unit, started with its GPU condition overridden, fails without a GPU and leaves none of
them in the journal, the playbook output (the excerpt deploy shows on a failed start), a command
line or a process environment. The router serves HTTPS with the certificate (a CA made in the
test) and refuses plain HTTP."""

import secrets

import yaml

from conftest import H1, H2, INVENTORY, IP1, IP2, on_host, playbook
from tls_ca import key_body, make_ca
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

RAY_UNIT = DEFAULTS["ray_unit_name"]  # the lab inventory keeps the plan's default
SERVER = "sglang-server-lab_model"
CONFIG = DEFAULTS["cluster_config_dir"]
# The test's override of the unit's GPU condition (ConditionPathExists*=): an empty assignment
# resets the list, so the unit really starts on these CPU hosts.
DROPIN_DIR = "/etc/systemd/system/%s.service.d" % SERVER
DROPIN = DROPIN_DIR + "/zz-test-no-gpu-condition.conf"
# A bound only: SGLang fails on these CPU hosts (no CPU kernels in the lab's venv) about 60 s after
# its start (100 s on a loaded 2-core machine), after printing its arguments, and the deploy's wait
# ends as soon as rank 0's unit failed (no fence here). --device cpu (test only) gets SGLang past
# its device check.
READY_TIMEOUT = 600
EXTRA_ARGS = ["--load-format", "dummy", "--device", "cpu"]


def test_vvv_never_prints_a_secret(deployed, tmp_path):
    token = on_host(H1, "cat %s/ray-auth-token" % CONFIG).strip()  # the cluster's own: nothing restarts
    ray_since = on_host(H1, "systemctl show -p ActiveEnterTimestampMonotonic --value " + RAY_UNIT)
    api_key = "sk-sglang-" + secrets.token_hex(12)
    admin_key = "sk-admin-" + secrets.token_hex(12)
    hf_token = "hf_" + secrets.token_hex(16)
    tls = make_ca(tmp_path, [IP1, IP2, "127.0.0.1"])
    sentinels = (token, api_key, admin_key, hf_token, key_body(tls["key"]))
    extra = tmp_path / "secrets.yml"  # as a vault file would hand them over
    extra.write_text(yaml.safe_dump({"ray_auth_token": token, "sglang_server_api_key": api_key,
                                     "sglang_server_admin_api_key": admin_key, "sglang_hf_token": hf_token,
                                     "sglang_server_tls_cert": tls["cert"], "sglang_server_tls_key": tls["key"],
                                     "cluster_tls_ca": tls["ca"],
                                     # The fence would restart the failing group; this test wants it failed.
                                     "sglang_server_fence": False, "sglang_extra_args": EXTRA_ARGS,
                                     "sglang_server_start": "always", "sglang_server_ready_timeout": READY_TIMEOUT}))
    for host in (H1, H2):
        on_host(host, "mkdir -p %s && printf '[Unit]\\nConditionPathExistsGlob=\\nConditionPathExists=\\n' > %s"
                % (DROPIN_DIR, DROPIN))
    try:
        # The real server unit starts (sglang_server_start: always), SGLang fails without a GPU,
        # and deploy stops waiting as soon as rank 0's unit failed (not after READY_TIMEOUT): it
        # fails with every rank's journal excerpt.
        run = playbook("playbooks/deploy.yml", INVENTORY, "-vvv", "-e", "@%s" % extra)
        assert run.rc != 0
        assert "did not answer /health_generate and will not: rank 0's unit is failed" in run.out, run.out[-3000:]
        assert run.seconds < READY_TIMEOUT
        assert len(run.out) > 100000  # -vvv really was verbose
        for secret in sentinels:
            assert secret not in run.out
        # The excerpt deploy showed is SGLang's own output up to its failure. Whether that tail
        # still holds the server_args line depends on how long SGLang's traceback was; the
        # journals below hold it, redacted.
        excerpt = run.out[run.out.index("did not answer /health_generate"):]
        assert "(rank 0): journalctl -u %s" % SERVER in excerpt and "Traceback" in excerpt, excerpt[:3000]
        if "server_args=" in excerpt:
            assert "'api_key': '<redacted>'" in excerpt, excerpt[:3000]
        # The given Ray token is the one in place: Ray did not restart.
        assert on_host(H1, "systemctl show -p ActiveEnterTimestampMonotonic --value " + RAY_UNIT) == ray_since
        for host in (H1, H2):
            # Both ranks really ran and failed (no GPU) ...
            for _ in range(150):
                if on_host(host, "systemctl show -p ActiveState --value %s" % SERVER).strip() == "failed":
                    break
                on_host(host, "sleep 1")
            assert on_host(host, "systemctl show -p ActiveState --value %s" % SERVER).strip() == "failed"
            journal = on_host(host, "journalctl -u %s --no-pager -o cat" % SERVER)
            # ... SGLang printed its arguments with both keys, and the journal holds them redacted.
            assert "'api_key': '<redacted>'" in journal and "'admin_api_key': '<redacted>'" in journal, journal[-3000:]
            # Each secret lands in its own 0600 file...
            for name, secret, owner in (("api-key", api_key, "root"), ("admin-api-key", admin_key, "root"),
                                        ("hf-token", hf_token, "sglang"), ("tls-key.pem", tls["key"], "root"),
                                        ("tls-cert.pem", tls["cert"], "root"), ("tls-ca.pem", tls["ca"], "root")):
                assert on_host(host, "stat -c '%%a %%U' %s/%s" % (CONFIG, name)).split() == ["600", owner]
                assert on_host(host, "cat %s/%s" % (CONFIG, name)) == secret
            unit = on_host(host, "cat /etc/systemd/system/%s.service" % SERVER)
            for cred in ("api_key", "admin_api_key", "tls_cert", "tls_key"):
                assert "/run/%s/%s\n" % (SERVER, cred) in unit
            # The unit's credential directory went with the failed unit (tmpfs, removed at stop).
            assert on_host(host, "test -e /run/%s && echo left || echo gone" % SERVER).strip() == "gone"
            # ...and in no journal, process list, process environment, unit file or other file of
            # the configuration directory.
            visible = on_host(host, "journalctl --no-pager -o cat; ps -eo args; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; "
                                    "cat /etc/systemd/system/sglang-*.service; "
                                    "find %s -type f ! -name api-key ! -name admin-api-key ! -name hf-token "
                                    "! -name ray-auth-token ! -name tls-key.pem -exec cat {} +" % CONFIG)
            for secret in sentinels:
                assert secret not in visible, host
        # The key is enforced where it lands: the router (which runs here; SGLang cannot) gets it
        # and its certificate as credentials through the launcher, serves HTTPS at the cluster IP
        # (checked against the test's CA) and refuses requests without the key.
        on_host(H1, "systemctl start sglang-router")
        https = "curl -s --cacert %s/tls-ca.pem https://%s:30080" % (CONFIG, IP1)
        # Each request is repeated while curl gets no HTTP answer at all (000: the router still
        # starting on a loaded machine, or a connection cut), at most 90 s each; a refusal is an HTTP
        # status, so a repeat cannot turn a 401 into a pass. curl's exit codes go into the message.
        answers = on_host(H1, "for k in 'X: none' 'Authorization: Bearer wrong' 'Authorization: Bearer %s'; do "
                          "for i in $(seq 90); do a=$(%s/v1/chat/completions -m 10 -o /dev/null -w '%%{http_code}:%%{exitcode}' "
                          "-H \"$k\" -H 'Content-Type: application/json' "
                          "-d '{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'); "
                          "case $a in 000:*) printf '%%s ' \"$a\"; sleep 1;; *) break;; esac; done; echo \"$a\"; done"
                          % (api_key, https)).splitlines()
        codes = [line.split()[-1].split(":")[0] for line in answers]
        assert codes == ["401", "401", "503"], answers  # 503: no server behind it
        # Plain HTTP gets no HTTP answer at all; a client that does not trust the CA is refused.
        assert on_host(H1, "curl -s -m 10 -o /dev/null -w '%%{http_code}' http://%s:30080/health; echo \" $?\"" % IP1).split()[0] == "000"
        assert on_host(H1, "curl -s -m 10 -o /dev/null https://%s:30080/health; echo $?" % IP1).strip() == "60"
        assert api_key not in on_host(H1, "ps -eo args; journalctl -u sglang-router --no-pager -o cat")
    finally:
        for host in (H1, H2):
            on_host(host, "systemctl stop sglang-router sglang-fence-lab_model %s; rm -rf %s; "
                          "systemctl daemon-reload; systemctl reset-failed %s sglang-fence-lab_model || true"
                    % (SERVER, DROPIN_DIR, SERVER))
        # The failed deploy changed nothing before the server play (Ray's start time is the
        # same, above): the server role alone puts the lab's units back and removes what is unset.
        clean = playbook("playbooks/server.yml", INVENTORY)
        for host in (H1, H2):
            on_host(host, "rm -f %s/hf-token" % CONFIG)
    assert clean.rc == 0
    for host in (H1, H2):
        # Unset secrets are removed again; the units load none.
        assert not set(on_host(host, "ls %s" % CONFIG).split()) & {"api-key", "admin-api-key", "tls-key.pem",
                                                                  "tls-cert.pem", "tls-ca.pem"}
        assert "CREDENTIALS_DIRECTORY" not in on_host(host, "cat /etc/systemd/system/%s.service" % SERVER)
