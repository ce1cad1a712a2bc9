"""sglang-ops on the deployed lab: status against verify's truth, a stopped unit named, the
journals of both hosts merged while following, the ordered group restart (journal timestamps),
errors for an unreachable host, an unknown group and a single rank. Every unit a test stops is
started again, every drop-in and file it writes is removed."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from conftest import H1, H2, INVENTORY, ROOT, on_host, run_double_in

GROUP = "lab_model"
UNIT = "sglang-server-" + GROUP
FENCE = "sglang-fence-" + GROUP
ROUTER = "sglang-router"
CLI = [sys.executable, "-m", "sglang_ops_cli"]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "cli")] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
           ANSIBLE_NOCOLOR="1")
DOUBLE_DIR = "/run/sglang-ops-test-double"


def cli(*args, inventory=(INVENTORY,), timeout=300):
    inv = [w for i in inventory for w in ("-i", str(i))]
    t0 = time.monotonic()
    proc = subprocess.run(CLI + inv + list(args), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    print("\n--- sglang-ops %s (rc %d, %.1f s)\n%s%s" % (" ".join(args), proc.returncode, time.monotonic() - t0,
                                                      proc.stdout[-4000:], proc.stderr[-2000:]))
    return proc


def test_status_matches_verify_and_names_a_stopped_unit(deployed):
    run = cli("status", "--json")
    assert run.returncode == 0, run.stdout
    data = json.loads(run.stdout)
    assert data["ok"] is True and data["ray"]["alive"] == 2
    assert data["groups"][GROUP]["start"] is False
    assert data["groups"][GROUP]["reason"].startswith("not started: no GPU")
    on_host(H2, "systemctl stop %s" % FENCE)
    try:
        run = cli("status")
        js = cli("status", "--json")
    finally:
        on_host(H2, "systemctl start %s" % FENCE)
    assert run.returncode == 1 and js.returncode == 1
    # verify's words for the ranks the plan does not start
    assert "%s: not started: no GPU (cluster_gpus_fake on %s, %s)" % (GROUP, H1, H2) in run.stdout
    assert "FAIL %s: %s is inactive (journalctl -u %s)" % (H2, FENCE, FENCE) in run.stdout
    assert run.stdout.strip().endswith("1 of 2 nodes healthy; unhealthy: %s" % H2)
    data = json.loads(js.stdout)
    rows = {r["host"]: r for r in data["nodes"]}
    assert data["ok"] is False and rows[H1]["ok"] is True and rows[H2]["ok"] is False
    # --json says what the table says, cell for cell
    for host, row in rows.items():
        line = next(l for l in run.stdout.splitlines() if l.startswith(host + " "))
        assert line.split()[:4] == [host, GROUP, str(row["rank"]), row["ray_unit"].split()[0]]
        assert row["fence"].split()[0] in line
        for problem in row["problems"]:
            assert "FAIL " + problem in run.stdout


def journal_line(host, message):
    """A line in the fence unit's journal (journalctl -u matches OBJECT_SYSTEMD_UNIT from root)."""
    on_host(host, "printf 'MESSAGE=%s\\nOBJECT_SYSTEMD_UNIT=%s.service\\n' | logger --journald" % (message, FENCE))


def test_logs_follow_merges_both_hosts_in_time_order(deployed):
    proc = subprocess.Popen(CLI + ["-i", str(INVENTORY), "logs", "fence", "-f", "-n", "0", "--hold", "0.5"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    tag = "cli-test-%d" % os.getpid()
    try:
        # Following on both hosts once a line written on each comes through (bounded).
        deadline = time.monotonic() + 60
        while not all(any("%s-ready-%s" % (tag, h) in l for l in lines) for h in (H1, H2)):
            assert time.monotonic() < deadline, "logs -f never showed lines of both hosts: %s" % lines
            for h in (H1, H2):
                journal_line(h, "%s-ready-%s" % (tag, h))
            time.sleep(1)
        for n, host in enumerate([H1, H2, H1, H2, H2, H1]):
            journal_line(host, "%s-%d" % (tag, n))
            time.sleep(0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum("%s-" % tag in l and "ready" not in l for l in lines) < 6:
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    print("".join(lines))
    ours = [l.rstrip("\n") for l in list(lines) if tag + "-" in l and "ready" not in l]
    assert [l.rsplit("-", 1)[1] for l in ours] == ["0", "1", "2", "3", "4", "5"], ours
    hosts = [l.split()[2] for l in ours]
    assert hosts == [H1, H2, H1, H2, H2, H1]
    assert all(" r%d " % (0 if h == H1 else 1) in l for h, l in zip(hosts, ours))
    stamps = [" ".join(l.split()[:2]) for l in ours]
    assert stamps == sorted(stamps)


def now_us(host):
    return int(on_host(host, "date +%s%6N"))


def unit_jobs(host, units, since_us):
    """[(timestamp µs, host, unit, job)] of systemd's finished start/stop jobs since `since_us`."""
    args = " ".join("-u %s.service" % u for u in units)
    text = on_host(host, "journalctl --no-pager -o json --since @%d %s" % (since_us // 1000000, args))
    out = []
    for line in text.splitlines():
        e = json.loads(line)
        if int(e["__REALTIME_TIMESTAMP"]) < since_us:
            continue
        if e.get("JOB_TYPE") in ("start", "stop") and e.get("JOB_RESULT") == "done" and e.get("UNIT"):
            out.append((int(e["__REALTIME_TIMESTAMP"]), host, e["UNIT"][:-8], e["JOB_TYPE"]))
    return out


def test_restart_on_the_lab_reports_no_gpu_like_verify(deployed):
    since = now_us(H1)
    run = cli("restart", GROUP)
    assert run.returncode == 0, run.stdout
    assert "skip all ranks: %s %s, %s %s: not started: no GPU (cluster_gpus_fake on %s, %s)" % (
        H1, UNIT, H2, UNIT, H1, H2) in run.stdout
    assert "restart %s: done" % GROUP in run.stdout
    jobs = sorted(unit_jobs(H1, [FENCE], since) + unit_jobs(H2, [FENCE], since))
    assert [j[3] for j in jobs] == ["stop", "stop", "start", "start"], jobs
    assert on_host(H1, "systemctl is-active %s %s || true" % (FENCE, UNIT)).split() == ["active", "inactive"]


@pytest.fixture
def stand_ins(deployed, tmp_path):
    """The server units run the test double (drop-in), and an inventory source that says the
    group starts (sglang_server_start: always); everything is undone afterwards."""
    for host, port in ((H1, 30000), (H2, 0)):
        run_double_in(host, UNIT, port, DOUBLE_DIR)
    extra = tmp_path / "start.yml"
    extra.write_text(yaml.safe_dump({"all": {"children": {GROUP: {"vars": {"sglang_server_start": "always"}}}}}))
    yield [INVENTORY, extra]
    # Back to the deployed state: router and ranks stopped, fences running, no drop-in, no file.
    cli("stop", GROUP, inventory=[INVENTORY, extra])
    for host in (H1, H2):
        on_host(host, "rm -rf /etc/systemd/system/%s.service.d %s && systemctl daemon-reload && "
                "systemctl reset-failed %s %s 2>/dev/null; systemctl start %s" % (UNIT, DOUBLE_DIR, UNIT, ROUTER, FENCE))


def test_restart_follows_the_planned_order(stand_ins):
    for host in (H1, H2):  # the ranks run (their stop is what the order is read from)
        on_host(host, "systemctl start %s" % UNIT)
    since = now_us(H1)
    run = cli("restart", GROUP, "--timeout", "120", inventory=stand_ins)
    assert run.returncode == 0, run.stdout
    assert "rank 0 (%s) answers /health_generate" % H1 in run.stderr
    assert "the router (%s) answers /health" % H1 in run.stderr
    jobs = sorted(unit_jobs(H1, [ROUTER, FENCE, UNIT], since) + unit_jobs(H2, [FENCE, UNIT], since))
    print("\n".join("%d %s %s %s" % j for j in jobs))
    at = {}
    for ts, host, unit, job in jobs:
        at.setdefault((host, unit, job), ts)
    fence_stops = [at[(h, FENCE, "stop")] for h in (H1, H2)]
    rank_starts = [at[(h, UNIT, "start")] for h in (H1, H2)]
    fence_starts = [at[(h, FENCE, "start")] for h in (H1, H2)]
    # fence first, then rank 0, then rank 1; all ranks started together, then the fences, then the router
    assert max(fence_stops) < at[(H1, UNIT, "stop")] < at[(H2, UNIT, "stop")] < min(rank_starts)
    assert max(rank_starts) < min(fence_starts) < at[(H1, ROUTER, "start")]
    # the ranks run: status judges them as verify would (schedulers of the unit, no GPU memory expected)
    data = json.loads(cli("status", "--json", inventory=stand_ins).stdout)
    rows = {r["host"]: r for r in data["nodes"]}
    assert data["ok"] is True, data
    assert rows[H1]["schedulers"] == rows[H2]["schedulers"] == 1
    assert rows[H1]["health"] == "HTTP 200" and rows[H1]["router"] == "active"


@pytest.mark.parametrize("args,message", [
    (("restart", "no_such_group"), "unknown group 'no_such_group'. Fix: use one of the inventory's model groups: " + GROUP),
    (("restart", H2), "%s is rank 1 of %s: a rank restarted alone cannot rejoin its group" % (H2, GROUP)),
    (("logs", "nothing"), "logs: unknown target 'nothing'"),
], ids=["unknown group", "rank alone", "unknown logs target"])  # stable ids, whatever IT_PREFIX names the hosts
def test_refusals(deployed, args, message):
    run = cli(*args)
    assert run.returncode == 2 and message in run.stderr


def test_unreachable_host_is_named_and_the_others_reported(deployed, tmp_path):
    inv = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    inv["all"]["children"]["sglang_nodes"]["children"][GROUP]["hosts"][H2]["ansible_port"] = 1
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    (tmp_path / "group_vars").symlink_to(ROOT / "inventories/lab/group_vars")
    run = cli("status", inventory=[tmp_path])
    assert run.returncode == 1
    assert "FAIL %s (root@%s:1): unreachable" % (H2, inv["all"]["children"]["sglang_nodes"]["children"][GROUP]["hosts"][H2]["ansible_host"]) in run.stdout
    h1 = next(l for l in run.stdout.splitlines() if l.startswith(H1 + " "))
    assert "active" in h1 and "alive" in h1
    ex = cli("exec", "--", "hostname", inventory=[tmp_path])
    assert ex.returncode == 1 and "%s | %s" % (H1, H1) in ex.stdout and "%s: rc 0" % H1 in ex.stdout


def test_exec_and_ray(deployed):
    run = cli("exec", "--", "systemctl", "is-active", "sglang-ray")
    assert run.returncode == 0 and "%s | active" % H1 in run.stdout and "%s: rc 0" % H2 in run.stdout
    ray = cli("ray", "--", "status")
    assert ray.returncode == 0 and "Active:" in ray.stdout
