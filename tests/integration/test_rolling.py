"""Rolling restarts behind the real sglang-router: two groups (roll_a on H1, roll_b on H2) behind
the router on H1; a change restarts them one at a time, and the router's own API, read every
0.2 s on its host while the playbook runs, never lists zero healthy workers. A group that does
not come back stops the roll with its name; the other keeps serving.

SGLang cannot serve on these CPU hosts: each server unit's ExecStart is replaced by a drop-in
running the test double of SGLang's HTTP side (tests/integration/doubles/sglang_rank_double.py);
the router, the units, the playbook and the roll are the real ones. At the end the shared pair's
servers are deployed back with the lab inventory (the two groups' units are removed as no
longer planned; nothing else was changed), so later modules find it as the `deployed` fixture
left it.
"""

import json
import secrets
import shutil
import subprocess
import time

import pytest
import yaml

from conftest import H1, H2, INVENTORY, IP1, IP2, ROOT, on_host, playbook, run_double_in, wait_for

# The lab group's port on both hosts: the firewall deployed for the lab already lets cluster
# members reach it, so the server play alone deploys and restores (no firewall or Ray play).
GROUPS = {"roll_a": (H1, IP1, 30000), "roll_b": (H2, IP2, 30000)}
UNIT = "sglang-server-%s"
ROUTER = "sglang-router"
ROUTER_PORT = 30080
DOUBLE_DIR = "/run/sglang-roll-double"  # tmpfs: nothing of it outlives the host's run
UNHEALTHY = DOUBLE_DIR + "/unhealthy"
BASE_ARGS = ["--load-format", "dummy"]
# Reads the router's worker list every 0.2 s on its host until the stop file appears: one JSON
# line per read, {t, workers: [[url, healthy]]} or {t, error}.
WATCH = r"""
import json, os, sys, time, urllib.request
url, key, out, stop = sys.argv[1:5]
with open(out, "w") as fh:
    while not os.path.exists(stop):
        t = time.time()
        try:
            req = urllib.request.Request(url, headers={"Authorization": "Bearer " + key})
            data = json.load(urllib.request.urlopen(req, timeout=2))
            line = {"t": t, "workers": [[w["url"], w["is_healthy"]] for w in data["workers"]]}
        except Exception as exc:
            line = {"t": t, "error": str(exc)}
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        time.sleep(0.2)
"""


def url(group):
    _, ip, port = GROUPS[group]
    return "http://%s:%d" % (ip, port)


def main_pid(group):
    host = GROUPS[group][0]
    return int(on_host(host, "systemctl show -p MainPID --value %s" % (UNIT % group)))


def unit_jobs(host, unit, since):
    """[(t, job)] of systemd's finished start/stop jobs of `unit` since `since` (seconds)."""
    text = on_host(host, "journalctl --no-pager -o json --since @%d -u %s.service" % (int(since), unit))
    out = []
    for line in text.splitlines():
        e = json.loads(line)
        if e.get("JOB_TYPE") in ("start", "stop") and e.get("JOB_RESULT") == "done":
            out.append((int(e["__REALTIME_TIMESTAMP"]) / 1e6, e["JOB_TYPE"]))
    return [j for j in out if j[0] >= since]


def set_extra_args(inv, group, extra):
    path = inv / "group_vars" / ("%s.yml" % group)
    data = yaml.safe_load(path.read_text())
    data["sglang_extra_args"] = BASE_ARGS + extra
    path.write_text(yaml.safe_dump(data))


class Watch:
    """The router's worker list, read on its host every 0.2 s while a playbook runs."""

    def __init__(self, key):
        self.key = key

    def __enter__(self):
        subprocess.run(["podman", "exec", "-i", H1, "sh", "-c", "rm -f %s/watch.stop; cat > %s/watch.py" % (DOUBLE_DIR, DOUBLE_DIR)],
                       input=WATCH, text=True, check=True)
        subprocess.run(["podman", "exec", "-d", H1, "/usr/bin/python3", "%s/watch.py" % DOUBLE_DIR,
                        "http://127.0.0.1:%d/workers" % ROUTER_PORT, self.key, "%s/watch.jsonl" % DOUBLE_DIR,
                        "%s/watch.stop" % DOUBLE_DIR], check=True)
        time.sleep(1)
        return self

    def __exit__(self, *exc):
        on_host(H1, "touch %s/watch.stop" % DOUBLE_DIR)
        time.sleep(0.6)
        self.samples = [json.loads(line) for line in on_host(H1, "cat %s/watch.jsonl" % DOUBLE_DIR).splitlines()]
        return False


def router_workers(key):
    """[(url, healthy)] the router lists now, sorted ([] while it does not answer)."""
    text = on_host(H1, "python3 -c 'import json, sys, urllib.request; print(json.dumps(json.load(urllib.request.urlopen("
                       "urllib.request.Request(sys.argv[1], headers={\"Authorization\": \"Bearer \" + sys.argv[2]})))))' "
                       "http://127.0.0.1:%d/workers %s 2>/dev/null || echo '{\"workers\": []}'" % (ROUTER_PORT, key))
    return sorted((w["url"].rstrip("/"), w["is_healthy"]) for w in json.loads(text)["workers"])


def listed(sample, group):
    """None: not listed; else whether the router holds the group's worker healthy."""
    for u, healthy in sample["workers"]:
        if u.rstrip("/") == url(group):
            return healthy
    return None


def first(samples, after, predicate):
    for s in samples:
        if s["t"] > after and predicate(s):
            return s["t"]
    raise AssertionError("never seen after %.1f" % after)


@pytest.fixture(scope="module")
def two_groups(deployed, tmp_path_factory):
    """roll_a on H1 and roll_b on H2 behind the router on H1, their units running the test double;
    the shared pair deployed back with the lab inventory afterwards."""
    inv = tmp_path_factory.mktemp("rolling-inventory")
    shutil.copytree(ROOT / "inventories/lab/group_vars", inv / "group_vars")
    model_vars = yaml.safe_load((inv / "group_vars/lab_model.yml").read_text())
    for group, (_, _, port) in GROUPS.items():
        (inv / "group_vars" / ("%s.yml" % group)).write_text(yaml.safe_dump(dict(model_vars, sglang_port=port)))
    base = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    nodes = base["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"]
    data = {"all": {"vars": base["all"]["vars"], "children": {
        "sglang_nodes": {"children": {"roll_a": {"hosts": {H1: nodes[H1]}}, "roll_b": {"hosts": {H2: nodes[H2]}}}},
        "ray_head": {"hosts": {H1: {}}}}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(data))
    key = "sk-roll-" + secrets.token_hex(12)
    extra = inv / "rolling.yml"
    # start: always, as on GPUs (the units run the double); a short readiness bound for the
    # group that is made not to come back.
    extra.write_text(yaml.safe_dump({"sglang_server_start": "always", "sglang_router_host": H1,
                                     "sglang_server_api_key": key, "sglang_server_ready_timeout": 20,
                                     "sglang_server_drain_timeout": 20}))
    for group, (host, _, port) in GROUPS.items():
        run_double_in(host, UNIT % group, port, DOUBLE_DIR, "--unhealthy-if %s" % UNHEALTHY)
    on_host(H1, "systemctl stop %s" % ROUTER)  # as the lab leaves it (its group does not start)
    t0 = time.monotonic()
    # The first deploy of two groups: no router runs yet, so they start together, then the router.
    run = playbook("playbooks/server.yml", inv / "hosts.yml", "-e", "@%s" % extra)
    print("two groups deployed: %.1f s" % (time.monotonic() - t0))
    assert run.rc == 0, run.out[-5000:]
    assert "the router is not running yet" in run.out
    # systemctl start returns before the router listens and has checked its workers.
    wait_for(lambda: router_workers(key) == [(url("roll_a"), True), (url("roll_b"), True)], timeout=90)
    yield {"inv": inv, "extra": extra, "key": key}
    # Back to the lab inventory's state: router stopped (the lab's groups do not start), drop-ins gone.
    on_host(H1, "systemctl stop %s" % ROUTER)
    for group, (host, _, _) in GROUPS.items():
        on_host(host, "systemctl stop %s; rm -rf /etc/systemd/system/%s.service.d %s && systemctl daemon-reload"
                % (UNIT % group, UNIT % group, DOUBLE_DIR))
    t1 = time.monotonic()
    run = playbook("playbooks/server.yml")
    print("restore the shared pair: %.1f s" % (time.monotonic() - t1))
    assert run.rc == 0, run.out[-3000:]


def server_play(env):
    return playbook("playbooks/server.yml", env["inv"] / "hosts.yml", "-e", "@%s" % env["extra"])


def test_a_change_rolls_one_group_at_a_time_and_the_router_always_serves(two_groups):
    pids = {g: main_pid(g) for g in GROUPS}
    for group in GROUPS:  # a change that restarts both groups
        set_extra_args(two_groups["inv"], group, ["--max-running-requests", "8"])
    since = float(on_host(H1, "date +%s.%N"))
    with Watch(two_groups["key"]) as watch:
        run = server_play(two_groups)
    assert run.rc == 0, run.out[-5000:]
    assert "rolling 2 of 2 groups behind the router, 1 at a time: roll_a then roll_b" in run.out
    samples = watch.samples
    errors = [s for s in samples if "error" in s]
    print("%d reads of the router's list over %.1f s, %d failed" % (
        len(samples), samples[-1]["t"] - samples[0]["t"], len(errors)))
    assert len(samples) > 50 and not errors, errors[:3]
    # Never zero: every read lists a healthy worker.
    empty = [s for s in samples if not any(h for _, h in s["workers"])]
    assert not empty, empty[:3]
    # The order, from the router's own list: A out, A back healthy, then B out, B back healthy.
    a_out = first(samples, 0, lambda s: listed(s, "roll_a") is None)
    a_back = first(samples, a_out, lambda s: listed(s, "roll_a") is True)
    b_out = first(samples, a_back, lambda s: listed(s, "roll_b") is None)
    b_back = first(samples, b_out, lambda s: listed(s, "roll_b") is True)
    assert all(listed(s, "roll_b") is True for s in samples if s["t"] < b_out)
    assert all(listed(s, "roll_a") is True for s in samples if s["t"] >= a_back)
    print("A out %.1f, back %.1f; B out %.1f, back %.1f (s after the first read)" % tuple(
        t - samples[0]["t"] for t in (a_out, a_back, b_out, b_back)))
    # Each group's units stopped and started while it was out of the router, never before.
    for group, out, back in (("roll_a", a_out, a_back), ("roll_b", b_out, b_back)):
        jobs = unit_jobs(GROUPS[group][0], UNIT % group, since)
        assert [j for _, j in jobs] == ["stop", "start"], (group, jobs)
        assert all(out < t < back for t, _ in jobs), (group, jobs, out, back)
    new = {g: main_pid(g) for g in GROUPS}
    assert all(new[g] != pids[g] for g in GROUPS), (pids, new)
    # The router itself never restarted.
    assert not unit_jobs(H1, ROUTER, since)

    # Again, nothing changed: nothing restarts, the router is not touched.
    run = server_play(two_groups)
    assert run.rc == 0, run.out[-3000:]
    assert all(r["changed"] == 0 for r in run.recap.values()), run.recap
    assert {g: main_pid(g) for g in GROUPS} == new


def test_a_group_that_does_not_come_back_stops_the_roll_and_the_other_serves(two_groups):
    on_host(H2, "touch %s" % UNHEALTHY)  # read by roll_b's double when it starts again
    try:
        pid_a = main_pid("roll_a")
        set_extra_args(two_groups["inv"], "roll_b", ["--max-running-requests", "8", "--max-total-tokens", "4096"])
        with Watch(two_groups["key"]) as watch:
            run = server_play(two_groups)
    finally:
        on_host(H2, "rm -f %s" % UNHEALTHY)
    assert run.rc != 0
    assert "roll_b: rank 0 (%s) did not answer /health_generate" % H2 in run.out
    assert "Rolling restart stopped at roll_b: it stays out of the router (%s)" % H1 in run.out
    assert "sglang_server_rolling" in run.out
    samples = watch.samples
    assert samples and not [s for s in samples if "error" in s]
    assert all(listed(s, "roll_a") is True for s in samples)
    assert listed(samples[-1], "roll_b") is None
    assert main_pid("roll_a") == pid_a
    # What a client sees: the router lists A healthy, B not at all.
    assert router_workers(two_groups["key"]) == [(url("roll_a"), True)]

    # Fixed (the double answers again once restarted): the next deploy waits for B's health and
    # puts it back into the router (the roll's unit change was already written: no restart).
    on_host(H2, "systemctl restart %s" % (UNIT % "roll_b"))
    run = server_play(two_groups)
    assert run.rc == 0, run.out[-3000:]
    assert router_workers(two_groups["key"]) == [(url("roll_a"), True), (url("roll_b"), True)]
