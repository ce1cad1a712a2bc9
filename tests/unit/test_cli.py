"""sglang-ops (cli/sglang_ops_cli): parsing, the inventory adapter, ordering, status judgement,
the journal merge and the error messages, table-driven. No SSH: the facts are given."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "cli"))

from sglang_ops_cli import inventory, journal, main, ops  # noqa: E402

pytest.importorskip("ansible")


def lab_inventory(fake=True, hosts=("n1", "n2"), router=True, extra=None, groups=None):
    """ansible-inventory --list output of a lab-like cluster."""
    common = {"cluster_interface": "eth0", "cluster_cidrs": ["10.0.0.0/24"], "cluster_gpus_per_node": 4,
              "cluster_gpus_fake": fake, "sglang_model_path": "/var/lib/sglang/models/m", "sglang_tp": 4 * len(hosts),
              "sglang_router": router, "ansible_user": "root",
              "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}
    common.update(extra or {})
    hv = {h: dict(common, ansible_host="10.0.0.%d" % (11 + i)) for i, h in enumerate(hosts)}
    groups = groups or {"lab_model": list(hosts)}
    data = {"_meta": {"hostvars": hv}, "all": {"children": ["sglang_nodes", "ungrouped"]},
            "sglang_nodes": {"children": list(groups)}}
    for g, members in groups.items():
        data[g] = {"hosts": members}
    return inventory.Inventory(data, ["test"])


def cluster_of(inv):
    from sglang_ops_cli import plan
    return plan.compute(inv, inventory.Resolver(inv))


# --- arguments ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,check", [
    (["status"], lambda a: a.command == "status" and not a.json),
    (["-i", "a", "-i", "b", "status", "--json"], lambda a: a.inventory == ["a", "b"] and a.json),
    (["logs"], lambda a: a.target is None and not a.follow),
    (["logs", "grp", "-f", "--since", "-5min"], lambda a: a.target == "grp" and a.follow and a.since == "-5min"),
    (["restart", "grp", "--timeout", "30"], lambda a: a.group == "grp" and a.timeout == 30),
    (["exec", "--", "uptime", "-p"], lambda a: a.cmd == ["uptime", "-p"]),
    (["exec", "-g", "grp", "--", "ls"], lambda a: a.group == "grp" and a.cmd == ["ls"]),
    (["ray", "--", "status"], lambda a: a.args == ["status"]),
    (["--vault-password-file", "pw", "status"], lambda a: a.vault_password_file == ["pw"]),
])
def test_parse(argv, check):
    assert check(main.parse(argv))


@pytest.mark.parametrize("argv,message", [
    (["exec"], "exec: no command. Fix: sglang-ops exec -- CMD"),
    (["exec", "--"], "exec: no command"),
    (["ray"], "ray: no arguments. Fix: sglang-ops ray -- ARGS"),
    (["logs", "-n", "-1"], "-n must be >= 0"),
])
def test_parse_refuses(argv, message):
    with pytest.raises(main.UsageError, match=message.replace("(", r"\(")):
        main.parse(argv)


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main.parse(["--help"])
    text = capsys.readouterr().out
    for example in ("sglang-ops ray -- status", "sglang-ops restart", "logs llama70b -f", "status --json"):
        assert example in text


def test_missing_inventory_is_named(capsys):
    assert main.main(["-i", "/nonexistent/inventory", "status"]) == 2
    err = capsys.readouterr().err
    assert "inventory /nonexistent/inventory: no such file or directory. Fix:" in err


# --- inventory ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,expected", [
    (["-o ProxyJump=ops@bastion"], {"proxyjump": "ops@bastion"}),
    (["-oProxyJump=ops@bastion:2222 -o StrictHostKeyChecking=no"],
     {"proxyjump": "ops@bastion:2222", "stricthostkeychecking": "no"}),
    (["-o 'ProxyCommand ssh -W %h:%p jump'"], {"proxycommand": "ssh -W %h:%p jump"}),
    (["-J a@b", "-i ~/.ssh/k -p 2200 -l admin"], {"proxyjump": "a@b", "identityfile": "~/.ssh/k",
                                                    "port": "2200", "user": "admin"}),
    ([None, ""], {}),
    # ssh takes the first value of an option given twice
    (["-o Port=1", "-o Port=2"], {"port": "1"}),
])
def test_ssh_options(args, expected):
    assert inventory.ssh_options(args) == expected


@pytest.mark.parametrize("hv,expected", [
    ({"ansible_host": "1.2.3.4", "ansible_user": "ubuntu", "ansible_port": 2222,
      "ansible_ssh_common_args": "-o ProxyJump=ops@bastion.example.net"},
     {"host": "1.2.3.4", "user": "ubuntu", "port": 2222, "proxy_jump": "ops@bastion.example.net",
      "strict_host_keys": True, "become": True}),
    ({"ansible_user": "root", "ansible_ssh_private_key_file": "/k",
      "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"},
     {"host": "h", "user": "root", "key_filename": "/k", "strict_host_keys": False,
      "known_hosts": "/dev/null", "become": False, "proxy_jump": None}),
    ({"ansible_ssh_extra_args": "-o ProxyJump=none -o ConnectTimeout=3"},
     {"proxy_jump": None, "connect_timeout": 3.0, "user": None}),
])
def test_ssh_target(hv, expected):
    got = inventory.ssh_target("h", hv)
    assert {k: got[k] for k in expected} == expected


def test_model_groups_in_inventory_order_and_root_required():
    inv = lab_inventory(hosts=("a", "b", "c"), groups={"g2": ["c"], "g1": ["a", "b"]})
    assert inv.model_groups() == {"g2": ["c"], "g1": ["a", "b"]}
    empty = inventory.Inventory({"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]}}, ["inv.yml"])
    with pytest.raises(inventory.InventoryError, match="no group sglang_nodes in inv.yml. Fix: pass the inventory"):
        empty.model_groups()


def test_group_names_match_the_plan():
    from sglang_ops_cli import plan  # noqa: F401  (puts the collection on the path)
    from ansible_collections.sglang_ops.cluster.plugins.module_utils import cluster_plan
    assert (inventory.ROOT_GROUP, inventory.HEAD_GROUP) == (cluster_plan.ROOT_GROUP, cluster_plan.HEAD_GROUP)


def test_templates_and_vault_resolved_like_ansible(tmp_path):
    from ansible.parsing.vault import VaultLib, VaultSecret
    secret = [("default", VaultSecret(b"pw"))]
    cipher = VaultLib(secret).encrypt("s3cret").decode()
    inv = lab_inventory(extra={"cluster_ip": "{{ ansible_host }}", "vault_key": {"__ansible_vault": cipher},
                               "sglang_server_api_key": "{{ vault_key }}",
                               "sglang_port": "{{ 30000 + 1 }}"})
    values, bad = inventory.Resolver(inv, secret).host_values("n1", lambda n: n.startswith(("cluster_", "sglang_")))
    assert values["cluster_ip"] == "10.0.0.11" and values["sglang_server_api_key"] == "s3cret"
    assert str(values["sglang_port"]) == "30001" and not bad
    # No vault password: the vaulted value is unreadable, named, and its text never shown.
    values, bad = inventory.Resolver(inv).host_values("n1", lambda n: n.startswith(("sglang_", "vault_")))
    assert "sglang_server_api_key" in bad and "s3cret" not in json.dumps(bad)
    assert "vault_key" in bad and "no vault password" in bad["vault_key"]


def test_plan_problems_are_the_plans_own():
    inv = lab_inventory(extra={"sglang_tp": 3})
    with pytest.raises(inventory.InventoryError) as err:
        cluster_of(inv)
    assert "not a valid SGLang cluster" in str(err.value) and "sglang_tp" in str(err.value)


# --- ordering -------------------------------------------------------------------------------------

def steps(cluster, action, group="lab_model"):
    return [(s.verb, s.title, [h for h, _ in s.targets]) for s in ops.plan_steps(cluster, action, group)]


def test_restart_order_on_gpus():
    c = cluster_of(lab_inventory(fake=False, hosts=("n1", "n2", "n3")))
    assert steps(c, "restart") == [
        ("stop", "router", ["n1"]), ("stop", "fence", ["n1", "n2", "n3"]), ("stop", "rank 0", ["n1"]),
        ("stop", "ranks 1-2", ["n2", "n3"]), ("start", "all ranks", ["n1", "n2", "n3"]),
        ("start", "fence", ["n1", "n2", "n3"]), ("wait", "rank 0 /health_generate", ["n1"]),
        ("start", "router", ["n1"]), ("wait", "router /health", ["n1"])]
    assert steps(c, "stop") == steps(c, "restart")[:4]
    assert steps(c, "start") == steps(c, "restart")[4:]


def test_restart_order_without_gpus_reports_verify_truth():
    c = cluster_of(lab_inventory(fake=True))
    got = ops.plan_steps(c, "start", "lab_model")
    assert [(s.verb, s.title) for s in got] == [("skip", "all ranks"), ("start", "fence"), ("skip", "router")]
    assert got[0].reason.startswith("not started: no GPU (cluster_gpus_fake on n1, n2)")


def test_one_node_group_has_no_fence_and_no_router_when_off():
    c = cluster_of(lab_inventory(fake=False, hosts=("n1",), router=False))
    assert steps(c, "restart") == [("stop", "rank 0", ["n1"]), ("start", "all ranks", ["n1"]),
                                   ("wait", "rank 0 /health_generate", ["n1"])]


def test_status_reads_the_fence_state_file_rank0s_fence_writes():
    from sglang_ops_cli import status
    from ansible_collections.sglang_ops.cluster.plugins.module_utils import server
    c = cluster_of(lab_inventory(fake=False))
    written = server.fence_argv(c.plan, "lab_model", "n1")
    assert status.node_args(c, "n1")["fence_state"] == written[written.index("--state") + 1]
    assert status.node_args(c, "n2")["fence_state"] is None  # only rank 0's coordinator writes it


@pytest.mark.parametrize("target,message", [
    ("n2", "n2 is rank 1 of lab_model: a rank restarted alone cannot rejoin its group"),
    ("nope", "unknown group 'nope'. Fix: use one of the inventory's model groups: lab_model"),
])
def test_single_rank_and_unknown_group_refused(target, message):
    c = cluster_of(lab_inventory())
    with pytest.raises(ops.Refused, match=message.replace("(", r"\(")):
        ops.resolve_group(c, target)


def test_logs_targets():
    c = cluster_of(lab_inventory())
    assert main.log_units(c, None) == {"n1": ("r0", ["sglang-ray", "sglang-server-lab_model",
                                                     "sglang-fence-lab_model", "sglang-router"]),
                                       "n2": ("r1", ["sglang-ray", "sglang-server-lab_model", "sglang-fence-lab_model"])}
    assert main.log_units(c, "router") == {"n1": ("r0", ["sglang-router"])}
    assert main.log_units(c, "lab_model")["n2"] == ("r1", ["sglang-server-lab_model", "sglang-fence-lab_model"])
    with pytest.raises(main.UsageError, match="unknown target 'x'. Fix: use a model group \\(lab_model\\)"):
        main.log_units(c, "x")


# --- status judgement -----------------------------------------------------------------------------

def unit(active="active", enabled="enabled", cgroup=""):
    return {"LoadState": "loaded", "ActiveState": active, "UnitFileState": enabled, "ControlGroup": cgroup}


def facts(ray="active", server=None, fence="active", router=None, procs=(), gpu=None, phase="armed", health=None):
    u = {"sglang-ray": unit(ray), "sglang-server-lab_model": server or unit("inactive"),
         "sglang-fence-lab_model": unit(fence)}
    if router:
        u["sglang-router"] = router
    f = {"units": u, "procs": {"sglang-server-lab_model": [list(p) for p in procs]}, "gpu": gpu,
         "fence_state": {"phase": phase}}
    if health is not None:
        f["health"] = health
    return f


RAY_OK = {"ray_version": "2.60.0", "nodes": [{"ip": "10.0.0.11", "alive": True, "gpus": 4.0},
                                             {"ip": "10.0.0.12", "alive": True, "gpus": 4.0}]}
RUNNING = dict(server=unit("active"), procs=[(10, "sglang::scheduler_TP0"), (11, "python")],
               gpu="10, 70000\n99, 5\n")


@pytest.mark.parametrize("name,fake,host,f,ray,ok,problem", [
    ("lab, all as planned", True, "n1", facts(router=unit("inactive")), RAY_OK, True, None),
    ("lab rank 1", True, "n2", facts(), RAY_OK, True, None),
    ("ray unit stopped", True, "n2", facts(ray="inactive"), RAY_OK, False,
     "n2: sglang-ray is inactive (journalctl -u sglang-ray)"),
    ("node gone from ray", True, "n2", facts(), {"nodes": RAY_OK["nodes"][:1]}, False,
     "n2: 10.0.0.12 is absent in the Ray cluster"),
    ("ray unreadable on the head", True, "n1", facts(router=unit("inactive")), {"error": "rc 1: boom"}, False,
     "n1: cannot read the Ray cluster at 10.0.0.11:6379: rc 1: boom"),
    ("unit not enabled", True, "n2", facts(server=unit("inactive", "disabled")), RAY_OK, False,
     "n2: sglang-server-lab_model is disabled, not enabled"),
    ("fence stopped", True, "n2", facts(fence="inactive"), RAY_OK, False,
     "n2: sglang-fence-lab_model is inactive"),
    ("fence gave up", True, "n1", facts(phase="gave-up", router=unit("inactive")), RAY_OK, False,
     "n1: sglang-fence-lab_model gave up after repeated group failures"),
    ("unreachable", True, "n2", {"error": "n2 (root@10.0.0.12): unreachable: timed out"}, RAY_OK, False,
     "n2 (root@10.0.0.12): unreachable"),
    ("gpu rank running", False, "n2", facts(**RUNNING), RAY_OK, True, None),
    ("gpu rank without GPU memory", False, "n2", facts(**dict(RUNNING, gpu="99, 5\n")), RAY_OK, False,
     "n2: sglang-server-lab_model (rank 1): 1 scheduler(s) but no memory held on the GPUs"),
    ("gpu rank with no schedulers", False, "n2", facts(**dict(RUNNING, procs=[(11, "python")])), RAY_OK, False,
     "unit active but no sglang::* process"),
    ("gpu rank stopped", False, "n2", facts(), RAY_OK, False, "n2: sglang-server-lab_model (rank 1): unit is inactive"),
    ("gpu rank 0 healthy", False, "n1", facts(**RUNNING, router=unit("active"), health={"status": 200})
     | {"router_health": {"status": 200}}, RAY_OK, True, None),
    ("gpu rank 0 not answering", False, "n1", facts(**RUNNING, router=unit("active"),
                                                    health={"status": None, "error": "URLError: refused"})
     | {"router_health": {"status": 200}}, RAY_OK, False, "n1: lab_model /health_generate: URLError: refused"),
    ("router stopped", False, "n1", facts(**RUNNING, router=unit("failed"), health={"status": 200}), RAY_OK, False,
     "n1: sglang-router is failed"),
])
def test_judge_node(name, fake, host, f, ray, ok, problem):
    from sglang_ops_cli import status
    c = cluster_of(lab_inventory(fake=fake))
    row = status.judge_node(c, host, f, ray)
    assert row["ok"] is ok, (name, row["problems"])
    if problem:
        assert any(problem in p for p in row["problems"]), (name, row["problems"])
    else:
        assert row["problems"] == []


def test_lab_rank_reads_as_verify_says():
    from sglang_ops_cli import status
    c = cluster_of(lab_inventory(fake=True))
    row = status.judge_node(c, "n1", facts(router=unit("inactive")), RAY_OK)
    assert row["server"] == "inactive; not started: no GPU"
    assert row["health"] == "not run" and row["router"] == "inactive; not started"
    assert row["fence"] == "active (armed)" and row["ray_node"] == "alive 4 GPU"


def test_table_and_json_say_the_same():
    from sglang_ops_cli import status
    c = cluster_of(lab_inventory(fake=True))
    rows = [status.judge_node(c, "n1", facts(router=unit("inactive")), RAY_OK),
            status.judge_node(c, "n2", facts(ray="failed"), RAY_OK)]
    lines = status.render(rows, RAY_OK, c)
    data = status.as_json(rows, RAY_OK, c)
    assert data["ok"] is False and [n["ok"] for n in data["nodes"]] == [True, False]
    assert lines[-1] == "1 of 2 nodes healthy; unhealthy: n2"
    assert "FAIL n2: sglang-ray is failed (journalctl -u sglang-ray)" in lines
    assert "lab_model: not started: no GPU (cluster_gpus_fake on n1, n2); units installed, enabled and validated" in lines
    header = lines[1].split()
    assert header[:2] == ["host", "group"]
    for row in data["nodes"]:
        line = next(l for l in lines if l.startswith(row["host"] + " "))
        for key in ("ray_unit", "ray_node", "fence", "health"):
            assert str(row[key]) in line


@pytest.mark.parametrize("stdout,rc,error,expected", [
    ('{"ray_version": "2.60.0", "nodes": []}\n', 0, None, {"ray_version": "2.60.0", "nodes": []}),
    ("warning\n" + '{"nodes": [1]}', 0, None, {"nodes": [1]}),
    ("", 1, None, {"error": "rc 1: no output"}),
    ("", None, "h: unreachable: x", {"error": "h: unreachable: x"}),
])
def test_parse_ray(stdout, rc, error, expected):
    from sglang_ops_cli import remote, status
    assert status.parse_ray(remote.Result("h", rc, stdout, "", error)) == expected


# --- journal --------------------------------------------------------------------------------------

def jline(ts, msg, unit="sglang-ray.service", field="_SYSTEMD_UNIT"):
    return json.dumps({"__REALTIME_TIMESTAMP": str(ts), "MESSAGE": msg, field: unit})


@pytest.mark.parametrize("line,expected", [
    (jline(5, "hi"), (5, "h", "r0", "sglang-ray", "hi")),
    (jline(6, "Started x", "sglang-fence-g.service", "UNIT"), (6, "h", "r0", "sglang-fence-g", "Started x")),
    (json.dumps({"__REALTIME_TIMESTAMP": "7", "MESSAGE": [104, 105, 255]}), (7, "h", "r0", "", "hi\ufffd")),
    (json.dumps({"__REALTIME_TIMESTAMP": "8", "MESSAGE": None}), (8, "h", "r0", "", "")),
    ("-- No entries --", None),
    ("{broken", None),
    (json.dumps({"MESSAGE": "no time"}), None),
])
def test_parse_line(line, expected):
    assert journal.parse_line(line, "h", "r0") == expected


@pytest.mark.parametrize("streams,order", [
    ({"a": [(1, "a", "", "", "a1"), (4, "a", "", "", "a4")], "b": [(2, "b", "", "", "b2"), (3, "b", "", "", "b3")]},
     ["a1", "b2", "b3", "a4"]),
    # same microsecond: host order, then each host's own order
    ({"b": [(1, "b", "", "", "b1")], "a": [(1, "a", "", "", "a1"), (1, "a", "", "", "a1'")]}, ["a1", "a1'", "b1"]),
    ({"a": [], "b": []}, []),
])
def test_merge(streams, order):
    assert [e[4] for e in journal.merge(streams)] == order


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_follower_orders_lines_arriving_out_of_order():
    clock = Clock()
    f = journal.Follower(delay=1.0, clock=clock)
    f.add((200, "b", "", "", "b200"))
    clock.now = 0.5
    f.add((100, "a", "", "", "a100"))  # written earlier on a, arrived later
    assert f.release() == []  # nothing held for 1 s yet
    clock.now = 1.0
    assert [e[4] for e in f.release()] == ["a100", "b200"]
    f.add((300, "a", "", "", "a300"))
    clock.now = 1.5
    f.add((250, "b", "", "", "b250"))
    clock.now = 2.0
    # a300 is due; b250 (earlier, not yet due) goes out with it, before it
    assert [e[4] for e in f.release()] == ["b250", "a300"]
    f.add((400, "a", "", "", "a400"))
    assert [e[4] for e in f.release(everything=True)] == ["a400"]


def test_journal_command_quotes_and_follows():
    cmd = journal.journal_command(["sglang-ray", "sglang-server-g"], since="-5 min", lines=10, follow=True)
    assert "-u sglang-ray.service -u sglang-server-g.service" in cmd
    assert "--since '-5 min' -n 10 -f" in cmd and "-o json" in cmd


def test_format_entry_has_host_and_rank():
    line = journal.format_entry((1700000000123456, "lab1", "r0", "sglang-ray", "hello"), width=10)
    assert line.endswith("lab1 r0    sglang-ray: hello")


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("exc,fix", [
    (type("AuthenticationException", (Exception,), {})("Authentication failed."), "check ansible_user"),
    (TimeoutError("timed out"), "check that the host is up"),
])
def test_unreachable_named_with_fix(exc, fix):
    from sglang_ops_cli import remote
    line = remote.describe_error({"name": "n2", "host": "10.0.0.12", "user": "root", "port": 2222}, exc)
    assert line.startswith("n2 (root@10.0.0.12:2222): unreachable: ") and fix in line


def test_become_only_for_non_root():
    from sglang_ops_cli import remote
    assert remote.become("systemctl stop x", {"become": False}) == "systemctl stop x"
    assert remote.become("systemctl stop x", {"become": True}) == "sudo -n -- sh -c 'systemctl stop x'"
