"""The fence on the lab against peers without the group's secret: a host of the cluster network
that is not a member (the controller, inside cluster_cidrs, so the firewall lets it through) and
a member that does not hold the secret. Neither can stop the armed group. The secret itself is a
0600 root file, the same on every rank, in no command line, journal or playbook output. And a
rank 0 that hangs (frozen, its unit still active) is detected by the fence's health probe."""

import hashlib
import hmac
import json
import re
import secrets
import shlex
import socket
import subprocess
import time
from pathlib import Path

from conftest import FENCE, H1, H2, IP1, IP2, fence_log, on_host, wait_for
import lab  # noqa: E402  (the project's lab tool, on the path conftest set)

UNIT = "sglang-server-lab_model"
SECRET = "/etc/sglang/%s.secret" % FENCE
DROPIN = "/etc/systemd/system/%s.service.d/stand-in.conf" % UNIT
# What the fence without a secret obeyed from anyone: rank 1 failed, the group is stopped.
FORGED = b'{"rank": 1, "state": "failed"}\n'


def forged_hello(rank):
    """A hello in the fence's format, its MAC made with a key that is not the group's."""
    body = json.dumps({"an": secrets.token_hex(16), "rank": rank, "t": "hello"}, sort_keys=True,
                      separators=(",", ":")).encode()
    label = b"a2c hello lab_model"
    return hmac.new(secrets.token_bytes(48), label + b"\n" + body, hashlib.sha256).hexdigest().encode() + b" " + body + b"\n"


def fence_port():
    return int(re.search(r"--coordinator \S+:(\d+)", on_host(H1, "cat /etc/systemd/system/%s.service" % FENCE))[1])


def main_pids():
    return [on_host(h, "systemctl show -p MainPID --value %s" % UNIT).strip() for h in (H1, H2)]


# Run on H2 (a member's address) without the secret: every form of order the fence must refuse.
MEMBER_ATTACK = """
import socket, sys
s = socket.create_connection((%(ip1)r, %(port)d), timeout=5, source_address=(%(ip2)r, 0))
try:
    s.sendall(%(payload)r)
    while s.recv(4096):
        pass
    print("closed by the fence")
except OSError as err:
    print("closed by the fence (%%s)" %% err)
"""


def test_no_outsider_and_no_member_without_the_secret_can_stop_the_group(deployed):
    port = fence_port()
    since = int(on_host(H1, "date +%s"))
    on_host(H1, "systemctl restart %s" % FENCE)  # a fresh coordinator and log
    for host in (H1, H2):  # SGLang cannot run here: a stand-in process in the real unit, as in test_server
        on_host(host, "mkdir -p %s.d && printf '[Unit]\\nConditionPathExistsGlob=\\nConditionPathExists=\\n"
                "[Service]\\nExecStart=\\nExecStart=/bin/sleep infinity\\n' > %s "
                "&& systemctl daemon-reload && systemctl start %s" % (DROPIN.rsplit(".d/", 1)[0], DROPIN, UNIT))
    try:
        wait_for(lambda: "armed: all 2 ranks active" in fence_log(since))
        pids = main_pids()
        # 1. The controller: inside cluster_cidrs, not a member.
        try:
            with socket.create_connection((IP1, port), timeout=3) as sock:
                sock.sendall(FORGED * 5 + forged_hello(1))
                sock.settimeout(5)
                while sock.recv(4096):
                    pass
            outsider = "connected, then closed by the fence"
        except OSError as err:  # IPAddressDeny= drops it before the fence sees it
            outsider = "no connection (%s)" % err
        # 2. A member (rank 1's own address) without the secret: old-style orders, a hello with a
        # wrong MAC, a hello for another rank.
        for payload in (FORGED * 5, forged_hello(1) + FORGED, forged_hello(0)):
            script = MEMBER_ATTACK % {"ip1": IP1, "ip2": IP2, "port": port, "payload": payload}
            said = on_host(H2, "python3 -c %s" % shlex.quote(script))
            assert "closed by the fence" in said
        time.sleep(4)  # the coordinator decides every second: a forged failure would have fenced by now
        log = fence_log(since)
        print("outsider: %s\n%s" % (outsider, log))
        assert "fence:" not in log and "stopping" not in log and "restart" not in log
        assert main_pids() == pids and all(on_host(h, "systemctl is-active %s || true" % UNIT).strip() == "active"
                                           for h in (H1, H2))
        assert "dropped %s: no MAC" % IP2 in log
        assert "dropped %s: wrong MAC" % IP2 in log
        assert outsider.startswith("no connection") or "refused %s: not a member of group lab_model" % lab.GATEWAY4 in log
        # The group still fences for real: its own failure is heard.
        on_host(H2, "systemctl kill -s KILL %s" % UNIT)
        wait_for(lambda: "fence: rank 1 failed" in fence_log(since), timeout=20)
    finally:
        for host in (H1, H2):
            on_host(host, "rm -rf %s && systemctl daemon-reload && systemctl stop %s; systemctl reset-failed %s || true"
                    % (DROPIN.rsplit("/", 1)[0], UNIT, UNIT))


def test_the_secret_is_private_and_the_unit_hardened(deployed):
    secret = on_host(H1, "cat %s" % SECRET)
    assert len(secret) >= 32
    for host in (H1, H2):
        assert on_host(host, "stat -c '%%a %%U' %s" % SECRET).split() == ["600", "root"]
        assert on_host(host, "cat %s" % SECRET) == secret  # one secret per group, every rank
        pid = on_host(host, "systemctl show -p MainPID --value %s" % FENCE).strip()
        visible = on_host(host, "ps -eo args; cat /etc/systemd/system/%s.service; tr '\\0' ' ' < /proc/%s/environ; "
                                "journalctl -u %s -o cat --no-pager" % (FENCE, pid, FENCE))
        assert secret not in visible
        unit = on_host(host, "cat /etc/systemd/system/%s.service" % FENCE)
        # Rank 0's fence also probes its server's /health_generate on loopback.
        loopback = " localhost" if host == H1 else ""
        assert "IPAddressAllow=%s %s%s\nIPAddressDeny=any\n" % (IP1, IP2, loopback) in unit
        exposure = on_host(host, "systemd-analyze security %s | tail -1" % FENCE)
        print(host, exposure)
        assert re.search(r"exposure level for \S+: \d+\.\d (SAFE|OK)", exposure), exposure
    assert secret not in deployed.out


def test_a_frozen_rank0_is_detected_and_the_group_restarted(deployed):
    """A hang, not a crash: every unit stays active while rank 0 no longer answers. Rank 0's unit
    runs the test double of SGLang's HTTP side (tests/integration/sglang_worker_double.py), rank
    1 a stand-in process; SIGSTOP freezes the double, and the fence's probes of /health_generate
    (every 10 s, 3 failures in a row: the role's defaults) must restart the group."""
    double = "/run/sglang-worker-double.py"  # tmpfs: nothing of it outlives the host's run
    port = re.search(r"--port (\d+)", on_host(H1, "cat /etc/systemd/system/%s.service" % UNIT))[1]
    subprocess.run(["podman", "cp", str(Path(__file__).with_name("sglang_worker_double.py")), "%s:%s" % (H1, double)],
                   check=True)
    on_host(H1, "chmod 0644 %s" % double)
    since = int(on_host(H1, "date +%s"))
    on_host(H1, "systemctl restart %s" % FENCE)  # a fresh coordinator: no restart counted yet
    for host, command in ((H1, "/usr/bin/python3 %s %s" % (double, port)), (H2, "/bin/sleep infinity")):
        on_host(host, "mkdir -p %s.d && printf '[Unit]\\nConditionPathExistsGlob=\\nConditionPathExists=\\n"
                "[Service]\\nExecStart=\\nExecStart=%s\\n' > %s && systemctl daemon-reload && systemctl start %s"
                % (DROPIN.rsplit(".d/", 1)[0], command, DROPIN, UNIT))
    try:
        wait_for(lambda: "armed: all 2 ranks active" in fence_log(since))
        unit_log = "journalctl -u %s --since @%d -o cat --no-pager" % (UNIT, since)
        # A hang counts only after rank 0 answered since the group was armed (not while loading).
        wait_for(lambda: "rank 0's /health_generate answers: watching for hangs" in fence_log(since), timeout=30)
        assert "test double: GET /health_generate -> 200" in on_host(H1, unit_log)
        pids = main_pids()
        # Timed on H1's clock, from the freeze to the fence's journal line: how often the test
        # polls the journal (slower on a busy machine) is not the fence's detection time.
        frozen = float(on_host(H1, "systemctl kill -s STOP %s && date +%%s.%%N" % UNIT))
        wait_for(lambda: "failed 3 times in a row (hung)" in fence_log(since), timeout=60)
        wait_for(lambda: "restart 1 of at most 3" in fence_log(since), timeout=60)
        wait_for(lambda: all(on_host(h, "systemctl is-active %s || true" % UNIT).strip() == "active" for h in (H1, H2)))
        new = main_pids()
        detected = float(next(line.split()[0] for line in on_host(
            H1, "journalctl -u %s --since @%d -o short-unix --no-pager" % (FENCE, since)).splitlines()
            if "failed 3 times in a row (hung)" in line))
        running = float(on_host(H1, "date +%s.%N"))
        took = detected - frozen
        print("hang detected after %.1f s, group running again after %.1f s" % (took, running - frozen))
        assert new[0] != pids[0] and new[1] != pids[1]  # both ranks restarted, together
        # The first probe after the freeze times out 10 s after it starts (at most 10 s after the
        # freeze), and two more fail 10 s apart: 30-40 s; 20-45 allows for the probe's own timing.
        assert 20 <= took <= 45, took
    finally:
        for host in (H1, H2):
            on_host(host, "rm -rf %s && systemctl daemon-reload && systemctl stop %s; systemctl reset-failed %s || true"
                    % (DROPIN.rsplit("/", 1)[0], UNIT, UNIT))
        on_host(H1, "rm -f %s" % double)
