"""The corpus of broken inventories, through the real action plugin: `ansible-playbook -i CASE
tests/unit/refusals/plan_only.yml` for every case of tests/unit/fixtures/broken/*.yml.

Each refused case must fail (rc 2) with exactly one problem line, naming where (host, group or
sglang_nodes), the variable and the fix; secrets must appear nowhere in the output, also with
-vvv. No host is contacted (fake names on TEST-NET addresses, connection local, and the plan
never connects). All cases run in one driver process (tests/unit/refusals/run_cases.py).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests/unit/fixtures/broken"
PLAYBOOK = "tests/unit/refusals/plan_only.yml"
LINE = re.compile(r"^\s*- (.*)$")

BASE_ALL = {"cluster_interface": "eth0", "cluster_cidrs": ["192.0.2.0/24"], "cluster_gpus_per_node": 8}
BASE_GROUP = {"sglang_model_path": "meta-llama/Llama-3.1-70B-Instruct"}
# A PD deployment's nodes install the transfer engine: pinned like every other package.
PD_VERSIONS = {"sglang": "0.5.23", "torch": "2.14.1", "ray": "2.60.0", "mooncake-transfer-engine": "0.3.13.post1",
               "nixl": "1.5.1"}
BASE_HOSTS = {"gpu0": {"ansible_host": "192.0.2.10"}, "gpu1": {"ansible_host": "192.0.2.11"}}


def load_cases():
    cases = []
    for path in sorted(CORPUS.glob("*.yml")):
        for case in yaml.safe_load(path.read_text()):
            case["class"] = path.stem
            cases.append(case)
    return cases


CASES = load_cases()


def inventory(case):
    if "inventory" in case:
        return case["inventory"]
    hosts = {h: dict(v, **case.get(h, {})) for h, v in BASE_HOSTS.items()}
    if case.get("base") == "pd":
        # A PD deployment: gpu0 alone in the prefill group, gpu1 alone in the decode group.
        return {"all": {"vars": {**BASE_ALL, "sglang_router": True, "sglang_versions": PD_VERSIONS,
                                 **case.get("all", {})}, "children": {
            "sglang_nodes": {"children": {
                "prefill": {"hosts": {"gpu0": hosts["gpu0"]},
                            "vars": {**BASE_GROUP, "sglang_pd_role": "prefill", **case.get("prefill", {})}},
                "decode": {"hosts": {"gpu1": hosts["gpu1"]},
                           "vars": {**BASE_GROUP, "sglang_pd_role": "decode", **case.get("decode", {})}}}}}}}
    return {"all": {"vars": dict(BASE_ALL, **case.get("all", {})), "children": {"sglang_nodes": {"children": {
        "llama": {"hosts": hosts, "vars": dict(BASE_GROUP, **case.get("group", {}))}}}}}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{case id: (rc, output)} for the whole corpus, run once."""
    work = tmp_path_factory.mktemp("refusals")
    todo = []
    for case in CASES:
        inv = work / ("%s.yml" % case["id"])
        inv.write_text(yaml.safe_dump(inventory(case), allow_unicode=True))
        argv = ["-i", str(inv), PLAYBOOK] + list(case.get("args", []))
        if "extra_vars" in case:
            argv += ["-e", json.dumps(case["extra_vars"])]
        todo.append({"id": case["id"], "argv": argv})
    (work / "cases.json").write_text(json.dumps(todo))
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    subprocess.run([sys.executable, str(ROOT / "tests/unit/refusals/run_cases.py"), str(work / "cases.json"),
                    str(work)], cwd=ROOT, env=env, check=True, timeout=600)
    out = {}
    for case in CASES:
        rc_file = work / ("%s.rc" % case["id"])
        out[case["id"]] = (int(rc_file.read_text()) if rc_file.exists() else None,
                           (work / ("%s.out" % case["id"])).read_text(errors="replace"))
    return out


def problem_lines(output):
    """The refusal's problem lines (the `- ...` lines after 'no host was contacted:')."""
    if "no host was contacted:" not in output:
        return []
    rest = output.split("no host was contacted:", 1)[1]
    lines = []
    for line in rest.splitlines()[1:]:
        match = LINE.match(line)
        if not match:
            break
        lines.append(match.group(1))
    return lines


def test_corpus_size_and_classes():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len([c for c in CASES if c.get("rc", 2) != 0]) >= 80
    assert {c["class"] for c in CASES} >= {"unsafe", "late", "types", "unknown", "noise", "secrets", "valid", "pd"}
    assert len([c for c in CASES if c["class"] == "pd" and c.get("rc", 2) != 0]) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case, runs):
    rc, output = runs[case["id"]]
    if case.get("secret"):
        assert case["secret"] not in output, "secret echoed"
    if case.get("rc", 2) == 0:
        assert rc == 0, output[-3000:]
        assert "no host was contacted" not in output
        return
    assert rc == case.get("rc", 2), output[-3000:]
    lines = problem_lines(output)
    assert lines, output[-3000:]
    where, variable, fix = case["expect"]
    first = lines[0]
    assert first.startswith("%s: %s: " % (where, variable)), "first line: %s\nall: %s" % (first, lines)
    assert "Fix: " in first and fix in first.split("Fix: ", 1)[1], first
    if case.get("problem"):
        assert case["problem"] in first.split("Fix: ", 1)[0], first
    assert len(lines) == 1 + case.get("extra_lines", 0), "more than one problem line: %s" % lines
    assert "no host was contacted" in output
