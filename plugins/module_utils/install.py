"""Where pip takes packages from, and what exactly it installs: online index or a wheelhouse.

Why this exists: air-gapped clusters and the lab install from a wheelhouse the controller
serves; the flags differ in ways that fail quietly (pip ignores a plain-HTTP find-links URL
without --trusted-host and then reports "No matching distribution"). pip runs as root: a lock
whose lines carry hashes (`name==version --hash=sha256:...`) is installed with
--require-hashes, so a wheel swapped on the index, the wheelhouse or the wire is refused, and a
plain-HTTP wheelhouse is used only when the inventory says so.
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

# Run with a venv's python, argv: jobs, then the normalized names of the distributions pip just
# installed. pip compiles their .py files one by one (about 40 s of the lock's install on one
# core); this compiles the same files, every CPU of the node at once. A file no Python of this
# version can compile (torch ships Python 3.12 syntax in its tests) fails here as it failed
# silently in pip: counted, not fatal. Prints {"files": N, "failed": N}.
COMPILE_INSTALLED = (
    "import compileall, concurrent.futures as cf, functools, importlib.metadata as m, json, re, sys\n"
    "jobs, names = int(sys.argv[1]), set(sys.argv[2:])\n"
    "files = [str(d.locate_file(f)) for d in m.distributions() if d.metadata['Name']\n"
    "         and re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() in names\n"
    "         for f in (d.files or []) if f.suffix == '.py']\n"
    "with cf.ProcessPoolExecutor(jobs) as ex:\n"
    "    ok = list(ex.map(functools.partial(compileall.compile_file, quiet=2), files, chunksize=64))\n"
    "print(json.dumps({'files': len(files), 'failed': sum(1 for r in ok if not r)}))\n"
)


def compile_jobs(cpus):
    """Workers compiling the installed files: 0 leaves it to pip (one core), else the node's CPUs
    (at most 32). Measured with venv_packages on the lab's 2-core host alone: the lock's install
    86 s with pip's compile, 62 s compiled by 2 workers, the same .pyc files."""
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 2:
        return 0
    return min(cpus, 32)


def installed_changed(before, after):
    """Normalized names of the distributions that are new or of another version after pip ran."""
    return sorted(name for name, version in after.items() if before.get(name) != version)


HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}\Z")


def pip_source_args(mode, wheelhouse_url=None, index_url=None, allow_http=False):
    """pip options for `mode`: the index (online) or only the wheelhouse (offline).

    A plain-HTTP URL (anyone on the path may swap a wheel) needs allow_http
    (sglang_wheelhouse_allow_http); --trusted-host is added only then.
    """
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
        if not allow_http:
            raise ValueError("sglang_wheelhouse_url %s is plain HTTP: anyone on the path can swap a wheel "
                             "pip installs as root" % wheelhouse_url)
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
    hashed(lock)
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


def split_hashes(requirement):
    """`name==version --hash=sha256:H ...` -> (`name==version`, [`--hash=sha256:H`, ...])."""
    words = str(requirement).split()
    if not words:
        return "", []
    bad = [w for w in words[1:] if not HASH.match(w)]
    if bad:
        raise ValueError("%r: %r is not --hash=sha256:<64 hex digits>" % (requirement, bad[0]))
    return words[0], words[1:]


def hashed(requirements):
    """Whether the requirements carry hashes (then pip runs with --require-hashes); all or none."""
    with_hashes = [r for r in requirements if split_hashes(r)[1]]
    if with_hashes and len(with_hashes) != len(requirements):
        without = next(r for r in requirements if not split_hashes(r)[1])
        raise ValueError("sglang_lock: %d lines carry --hash but %r does not; pip's --require-hashes "
                         "needs a hash on every line" % (len(with_hashes), without))
    return bool(with_hashes)


def pip_requirements(requirements):
    """(pip options, requirements file text or None): a hashed lock goes to pip as a file (hashes
    are valid only there) with --require-hashes; plain pins as arguments."""
    if hashed(requirements):
        return ["--require-hashes", "-r"], "".join(r + "\n" for r in requirements)
    return list(requirements), None


def parse_pin(requirement):
    """`name==version` (optionally with --hash=sha256:... words) -> (normalized name, version);
    anything looser is refused."""
    name, sep, version = split_hashes(requirement)[0].partition("==")
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
