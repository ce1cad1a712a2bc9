"""Every role's options, read from the roles' own meta/argument_specs.yml at run time.

Why this exists: the plan judges every role's inputs on the controller before any host is
contacted, and refuses variables nobody reads (a misspelled `sglang_tp_size` would otherwise be
ignored while the operator believes it took effect). Both need the list of options, their types
and their defaults (role defaults are not in hostvars). The argument specs are that list: this
module reads them from the collection's roles/ directory next to plugins/, so no second copy of
any option exists in Python.
"""

from __future__ import annotations

import os

import yaml

# The collection root is two directories above this file (plugins/plugin_utils/).
COLLECTION_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES_DIR = os.path.join(COLLECTION_DIR, "roles")
SPEC_FILES = ("argument_specs.yml", "argument_specs.yaml")


def _spec_file(role_dir):
    for name in SPEC_FILES:
        path = os.path.join(role_dir, "meta", name)
        if os.path.isfile(path):
            return path
    return None


def load(roles_dir=ROLES_DIR):
    """{option: {role, entry_points, type, elements, choices, default, no_log, required}}.

    Every entry point of every role counts (main, remove, ...). An option documented by two
    roles keeps the first role's entry (sorted by role name); its entry points accumulate.
    """
    options = {}
    for role in sorted(os.listdir(roles_dir)):
        path = _spec_file(os.path.join(roles_dir, role))
        if path is None:
            continue
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        for entry, body in (data.get("argument_specs") or {}).items():
            for name, spec in ((body or {}).get("options") or {}).items():
                spec = spec or {}
                known = options.setdefault(name, {
                    "role": role,
                    "entry_points": [],
                    "type": spec.get("type", "str"),
                    "elements": spec.get("elements"),
                    "choices": spec.get("choices"),
                    "default": spec.get("default"),
                    "no_log": bool(spec.get("no_log", False)),
                    "required": bool(spec.get("required", False)),
                })
                known["entry_points"].append("%s:%s" % (role, entry))
    return options


def roles(roles_dir=ROLES_DIR):
    """Names of the collection's roles (their names are the variable namespaces)."""
    return sorted(d for d in os.listdir(roles_dir) if os.path.isdir(os.path.join(roles_dir, d)))
