"""Hostile values through the systemd quoting filters, read back by a real systemd (a lab host).

A unit is built the way the roles' templates build theirs (ExecStart= with systemd_cmdline,
Environment= with systemd_environment, Description= with systemd_text, paths with systemd_word),
from values carrying every control character, quotes, `$`, `%` and `;`. `systemd-analyze verify`
must accept it, systemd must see no line we did not write (no ExecStartPre=), and the process it
starts must get exactly the argv and environment we meant. Needs only the lab hosts, no deploy.
"""

import json
import subprocess

from ansible_collections.sglang_ops.cluster.plugins.filter.systemd import (
    systemd_cmdline,
    systemd_environment,
    systemd_text,
    systemd_word,
)
from conftest import H1, on_host

UNIT = "sglang-quoting-test"
OUT = "/run/%s.json" % UNIT
HOSTILE = ["x\rExecStartPre=+/bin/touch /run/injected-r", "x\nExecStartPre=+/bin/touch /run/injected-n",
           "tab\there", 'q"uote', "it's", "back\\slash\\", "50%n", "$HOME ${PATH}", "esc\x1b[0m\x7f\x01",
           ";", "", "ünïcødé", "a;b", "\\;", "-dash", "+plus"]
ENV = {"HOSTILE_TAB_NL": "a\tb\nc", "HOSTILE_DOLLAR": "$HOME ${X} $$", "HOSTILE_PCT": "%n%%", "HOSTILE_Q": "\"'\\",
       "HOSTILE_SEMI": ";", "HOSTILE_EMPTY": ""}
DUMP = "import json, os, sys; json.dump([sys.argv[1:], dict(os.environ)], open(%r, 'w'))" % OUT


def unit_text():
    return "\n".join([
        "[Unit]",
        "Description=%s" % systemd_text("quoting test %n 100% (not a specifier)"),
        "[Service]",
        "Type=oneshot",
        "WorkingDirectory=%s" % systemd_word("/run"),
        "Environment=%s" % systemd_environment(ENV),
        "ExecStart=%s" % systemd_cmdline(["/usr/bin/python3", "-c", DUMP] + HOSTILE),
        "",
    ])


def test_hostile_values_reach_the_process_unchanged(lab_hosts):
    path = "/run/systemd/system/%s.service" % UNIT
    subprocess.run(["podman", "exec", "-i", H1, "sh", "-c", "cat > %s" % path], input=unit_text(), text=True,
                   check=True)
    try:
        on_host(H1, "systemctl daemon-reload")
        verify = subprocess.run(["podman", "exec", H1, "systemd-analyze", "verify", "--man=no", path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert verify.returncode == 0 and UNIT not in verify.stdout, verify.stdout
        assert on_host(H1, "systemctl show -p ExecStartPre --value %s" % UNIT).strip() == ""  # nothing injected
        assert on_host(H1, "systemctl show -p Description --value %s" % UNIT).strip() == \
            "quoting test %n 100% (not a specifier)"
        on_host(H1, "systemctl start %s" % UNIT)
        argv, env = json.loads(on_host(H1, "cat %s" % OUT))
        assert argv == HOSTILE
        assert {k: env.get(k) for k in ENV} == ENV
        assert on_host(H1, "ls /run/injected-r /run/injected-n 2>/dev/null || true").strip() == ""
    finally:
        on_host(H1, "rm -f %s %s; systemctl daemon-reload" % (path, OUT))
