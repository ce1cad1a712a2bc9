"""The plan's layout for the host under test, from its inventory variables and the plan code.

testinfra checks a deployed node from outside; the names it looks for (units, directories,
secret files) come from the same `layout()` the roles read, so a renamed unit is followed too.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import (  # noqa: E402
    DEFAULTS, LAYOUT_DIRS, ROOT_GROUP, layout)


@pytest.fixture
def plan_layout(host):
    hostvars = host.ansible.get_variables()
    settings = {k: hostvars.get(k, DEFAULTS[k]) for k in LAYOUT_DIRS + ("ray_unit_name",)}
    groups = [g for g in hostvars.get("group_names", []) if g not in (ROOT_GROUP, "ray_head")]
    return layout(settings, groups)
