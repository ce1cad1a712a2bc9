"""meta/argument_specs.yml is the single truth: defaults files and the plan code must agree."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta/argument_specs.yml").exists())


def spec_options(role, entry="main"):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
    return spec["argument_specs"][entry]["options"]


def all_entry_options(role):
    """Options of every entry point (main, remove, ...): a role's defaults serve them all."""
    spec = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
    options = {}
    for entry, body in spec["argument_specs"].items():
        for key, option in (body.get("options") or {}).items():
            assert options.get(key, option) == option, "%s: %s documented differently in %s" % (role, key, entry)
            options[key] = option
    return options


def test_plan_defaults_documented_exactly():
    """The plan role's spec is the one list of cluster-wide options, equal to the plan code."""
    options = spec_options("plan", "plan")
    assert list(options) == list(DEFAULTS)
    for key, value in DEFAULTS.items():
        assert options[key].get("default") == value, key
        assert options[key].get("description"), key


def test_plan_options_written_once():
    """No other role's spec repeats a plan option."""
    for role in ROLES:
        if role == "plan":
            continue
        spec = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
        for entry, body in spec["argument_specs"].items():
            assert not set(body.get("options") or {}) & set(DEFAULTS), (role, entry)


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_match_specs(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults/main.yml").read_text()) or {}
    options = {k: v for k, v in all_entry_options(role).items() if k not in DEFAULTS}
    assert set(defaults) == set(options), role
    for key, value in defaults.items():
        assert options[key].get("default") == value, "%s: %s" % (role, key)
        assert options[key].get("description"), "%s: %s undocumented" % (role, key)
        assert key.startswith(role + "_"), "%s: %s lacks the role prefix" % (role, key)


def test_every_role_has_specs():
    assert set(ROLES) == {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()}
