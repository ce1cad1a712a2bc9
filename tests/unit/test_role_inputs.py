"""The input judge's pieces: the specs it reads, the plan spec it must not be pre-empted by, and
value judgements a user would notice (what is accepted, what is refused and how)."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, OPTION_TYPES, report
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils import inputs, role_specs

ROOT = Path(__file__).resolve().parents[2]


def test_specs_are_read_from_the_collections_roles():
    assert Path(role_specs.ROLES_DIR).resolve() == ROOT / "roles"
    specs = role_specs.load()
    assert specs["ray_join_timeout"]["type"] == "int" and specs["ray_join_timeout"]["default"] == 120
    assert specs["sglang_server_api_key"]["no_log"] is True
    assert specs["firewall_backend"]["choices"] == ["auto", "nftables", "firewalld", "ufw"]
    # Every role and every entry point counts.
    assert "plan" in role_specs.roles() and "sglang_server" in role_specs.roles()
    assert inputs.namespaces(role_specs.roles()) == (
        "cluster_", "firewall_", "gpu_driver_", "monitoring_", "preflight_", "ray_", "sglang_", "sglang_server_",
        "slurm_job_", "verify_")


def test_plan_spec_is_raw_and_names_each_type():
    """Ansible's own role check must not stop the play before the plan judges: every plan
    option is raw, has no choices, and its description opens with the type the plan judges."""
    spec = yaml.safe_load((ROOT / "roles/plan/meta/argument_specs.yml").read_text())
    options = spec["argument_specs"]["plan"]["options"]
    assert set(options) == set(DEFAULTS) == set(OPTION_TYPES)
    for key, option in options.items():
        assert option["type"] == "raw" and "choices" not in option and "elements" not in option, key
        typ, elements = OPTION_TYPES[key]
        label = "list of %s" % elements if typ == "list" else typ
        text = option["description"] if isinstance(option["description"], str) else option["description"][0]
        assert text.startswith("(%s) " % label) or text.startswith("(path) ") and typ == "str", key


@pytest.mark.parametrize("key,value,spec,want", [
    ("p", "30001", {"type": "int"}, 30001),
    ("p", 30001, {"type": "int"}, 30001),
    ("b", "yes", {"type": "bool"}, True),
    ("b", "false", {"type": "bool"}, False),
    ("f", "3", {"type": "float"}, 3.0),
    ("s", 570, {"type": "str"}, "570"),
    ("l", ["22", 2222], {"type": "list", "elements": "int"}, [22, 2222]),
    ("c", "ufw", {"type": "str", "choices": ["nftables", "ufw"]}, "ufw"),
])
def test_accepted_as_ansible_converts(key, value, spec, want):
    assert inputs.judge_value(key, value, spec) == (want, None)


@pytest.mark.parametrize("value,spec,problem,fix", [
    ("abc", {"type": "int"}, "'abc' is not an integer", "an integer"),
    (True, {"type": "int"}, "True is not an integer", "an integer"),
    ("maybe", {"type": "bool"}, "'maybe' is not a boolean", "true or"),
    ("10.0.0.0/8", {"type": "list", "elements": "str"}, "is not a list", "YAML list"),
    (6.1, {"type": "str"}, "6.1 is float, not a string", "quoted string"),
    ("iptables", {"type": "str", "choices": ["nftables", "ufw"]}, "'iptables' is not one of", "one of nftables, ufw"),
    ("eth0\n", {"type": "str"}, "control character ('\\n' at position 4)", "| trim"),
    (-1, {"type": "int"}, "-1 is below 0", "at least 0"),
])
def test_refused_with_the_value_and_a_fix(value, spec, problem, fix):
    converted, bad = inputs.judge_value("x", value, spec)
    assert converted is None and problem in bad[0] and fix in bad[1], bad


@pytest.mark.parametrize("value,spec", [
    (["SECRET1"], {"type": "str", "no_log": True}),
    ("SECRET2\n", {"type": "str", "no_log": True}),
    ({"a": "SECRET3"}, {"type": "str", "no_log": True}),
])
def test_secrets_never_echoed(value, spec):
    bad = inputs.judge_value("sglang_server_api_key", value, spec)[1]
    assert bad and "SECRET" not in repr(bad)


def test_unknown_names_suggest_and_site_names_pass():
    specs, names = role_specs.load(), role_specs.roles()
    hv = {"h": {"sglang_tp_size": 8, "ray_gcs_prot": 1, "sglang_site_rack": "r1", "other_var": 1,
                "cluster_extra_vars_allowed": ["sglang_site_*"], "sglang_cluster_plan": {}}}
    judged = inputs.judge(["h"], hv, specs, names)
    unknown = {p[1]: p for p in judged.problems}
    assert set(unknown) == {"sglang_tp_size", "ray_gcs_prot"}
    assert "did you mean sglang_tp?" in unknown["sglang_tp_size"][2]
    assert unknown["ray_gcs_prot"][3].startswith("rename it to ray_gcs_port")


def test_report_merges_hosts_and_sorts():
    items = [("b", "k", "p", "f"), ("a", "k", "p", "f"), ("a", "z", "q", "g"), ("g1", "y", "r", "h")]
    assert report(items, ["a", "b"], {"g1": ["b"]}) == [
        "sglang_nodes: k: p. Fix: f", "a: z: q. Fix: g", "g1: y: r. Fix: h"]
    assert report([("a", "k", "p", "f"), ("b", "k", "p", "f")], ["a", "b", "c"], {"m": ["a", "b"]}) == [
        "m: k: p. Fix: f"]
