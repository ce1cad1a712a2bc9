"""Where pip takes packages from, and what exactly it installs: online index or a wheelhouse.

Why this exists: air-gapped clusters and the lab install from a wheelhouse the controller
serves; the flags differ in ways that fail quietly (pip ignores a plain-HTTP find-links URL
without --trusted-host and then reports "No matching distribution").
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

MODES = ("online", "offline")

# Run with a venv's python: every installed distribution as {normalized name: version}.
READ_VERSIONS = (
    "import importlib.metadata as m, json, re\n"
    "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
    " for d in m.distributions() if d.metadata['Name']}))"
)


def pip_source_args(mode, wheelhouse_url=None, index_url=None):
    """pip options for `mode`: the index (online) or only the wheelhouse (offline)."""
    if mode not in MODES:
        raise ValueError("sglang_install_mode %r: use one of %s" % (mode, ", ".join(MODES)))
    if mode == "online":
        return ["--index-url", index_url] if index_url else []
    if not wheelhouse_url:
        raise ValueError("sglang_install_mode offline needs sglang_wheelhouse_url "
                         "(http://controller:port/ or a directory on the node)")
    args = ["--no-index", "--find-links", wheelhouse_url]
    parsed = urlparse(wheelhouse_url)
    if parsed.scheme == "http":
        args += ["--trusted-host", parsed.hostname]
    return args


def pinned_requirements(packages, versions):
    """`name==version` for each package; every package must have a pin."""
    missing = [p for p in packages if p not in versions]
    if missing:
        raise ValueError("no version pinned for %s in sglang_versions" % ", ".join(missing))
    return ["%s==%s" % (p, versions[p]) for p in packages]


def install_requirements(packages, versions, lock=None):
    """What the venv must hold: the full lock when one is given, else the pinned packages.

    A lock (every distribution, installed with --no-deps) must agree with sglang_versions and
    cover every package the role installs, or nodes would run what nobody pinned.
    """
    if not lock:
        return pinned_requirements(packages, versions)
    locked = {}
    for req in lock:
        name, version = parse_pin(req)
        if name in locked and locked[name] != version:
            raise ValueError("sglang_lock pins %s twice (%s and %s)" % (name, locked[name], version))
        locked[name] = version
    for name, version in sorted(versions.items()):
        have = locked.get(normalize_name(name))
        if have is None:
            raise ValueError("sglang_versions pins %s %s, but sglang_lock has no %s: add %s==%s "
                             "to sglang_lock" % (name, version, name, name, version))
        if have != str(version):
            raise ValueError("sglang_versions pins %s %s, but sglang_lock has %s==%s: make them "
                             "agree" % (name, version, name, have))
    missing = [p for p in packages if normalize_name(p) not in locked]
    if missing:
        raise ValueError("sglang_install_packages lists %s, which sglang_lock does not pin"
                         % ", ".join(missing))
    return list(lock)


def normalize_name(name):
    """PEP 503 name: `Foo_Bar.baz` and `foo-bar-baz` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(requirement):
    """`name==version` -> (normalized name, version); anything looser is refused."""
    name, sep, version = requirement.partition("==")
    if not sep or not name.strip() or not version.strip() or any(c in version for c in "<>=!~*,"):
        raise ValueError("%r is not an exact pin (name==version)" % (requirement,))
    return normalize_name(name.strip()), version.strip()


def version_matches(installed, pinned):
    """`2.13.0+cpu` satisfies `==2.13.0` (a local build label), as pip itself treats it."""
    if installed == pinned:
        return True
    return "+" not in pinned and installed.split("+", 1)[0] == pinned


def plan_install(requirements, installed):
    """What pip must do for the pins to hold.

    installed: {normalized name: version} read from the venv.
    Returns [{name, want, have}] for every pin that is missing or at another version.
    """
    todo = []
    for req in requirements:
        name, want = parse_pin(req)
        have = installed.get(name)
        if have is None or not version_matches(have, want):
            todo.append({"name": name, "want": want, "have": have})
    return todo


# The KV transfer engine each --disaggregation-transfer-backend imports at run time.
TRANSFER_ENGINES = {"mooncake": "mooncake-transfer-engine", "mooncake_tcp": "mooncake-transfer-engine",
                    "nixl": "nixl"}


def transfer_engine_packages(plan, host, enabled=True):
    """[the transfer engine] for a node of a prefill/decode group, [] elsewhere (or when off)."""
    pd = plan.get("pd")
    group = plan["groups"][plan["nodes"][host]["group"]]
    if not enabled or not pd or group.get("pd_role", "none") == "none":
        return []
    return [TRANSFER_ENGINES[pd["transfer_backend"]]]


def transfer_engine_problem(role, backend, versions, lock):
    """Why a PD node's pins lack its transfer engine ('' when they have it).

    role: the node's sglang_pd_role; backend: sglang_pd_transfer_backend.
    """
    engine = TRANSFER_ENGINES.get(backend)
    if role in (None, "none") or engine is None:
        return ""
    pinned = {normalize_name(n) for n in versions}
    if engine not in pinned:
        return "sglang_versions"
    if lock and engine not in {parse_pin(r)[0] for r in lock}:
        return "sglang_lock"
    return ""
