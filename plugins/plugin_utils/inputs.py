"""Judge every role's inputs on the controller, before the plan and before any host is touched.

Why this exists: a bad value used to surface late (a missing pin after the driver stage had
rebooted nodes, an unknown server env key after the firewall and Ray had changed), or in
Ansible's raw argument-spec text without host or fix, or not at all (a misspelled variable is
silently ignored; `torch: ">=2.14"` became `torch==>=2.14` for pip). Here each host's variables are
judged against every role's argument spec (types, choices, defaults: plugin_utils.role_specs),
the collection's own validators (module_utils install, model, server, firewall) run on the
controller, and every refusal is a (where, variable, problem, fix) tuple for the plan's report.
Values of no_log options (API key, tokens) are never echoed.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import posixpath
import re
from urllib.parse import urlparse

from ansible.module_utils.parsing.convert_bool import BOOLEANS_FALSE, BOOLEANS_TRUE

from ansible_collections.sglang_ops.cluster.plugins.module_utils import firewall, install, model, server
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import (
    DEFAULTS,
    OPTION_TYPES,
    PEM_CERT,
    PEM_KEY,
    RAY_PORT_KEYS,
)

# Facts the collection publishes under its own prefixes (the plan's, read by every later play).
PUBLISHED = ("sglang_cluster_plan",)
# Names people reach for that the plan derives: the hint beats a difflib guess.
DERIVED = {
    "sglang_nnodes": "nnodes is the number of hosts in the model group: add or remove hosts",
    "sglang_nodes": "sglang_nodes is the group of every managed host, not a variable",
    "sglang_node_count": "the node count is the number of hosts in the model group",
    "sglang_dist_init_addr": "the plan sets it from rank 0's cluster_ip and sglang_dist_init_port",
    "ray_head": "ray_head is a group: put the head's host in a group named ray_head",
}
# Lower bounds of the numeric options of the roles (others: >= 0).
MINIMUMS = {
    "ray_join_timeout": 1, "ray_gcs_reconnect_timeout": 1, "gpu_driver_reboot_timeout": 1,
    "sglang_server_ready_timeout": 1, "sglang_server_stop_timeout": 1, "sglang_server_fence_window": 1,
    "preflight_mesh_timeout": 0.1, "preflight_collective_timeout": 1, "preflight_collective_iters": 1,
    "verify_bench_concurrency": 1,
}
# Flags the plan or a role sets itself; a second copy would split the truth.
RAY_MANAGED = ("--head", "--port", "--address", "--node-ip-address", "--num-gpus", "--resources",
               "--temp-dir", "--block", "--include-dashboard", "--dashboard-host", "--dashboard-port",
               "--ray-client-server-port", "--node-manager-port", "--object-manager-port",
               "--runtime-env-agent-port", "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port",
               "--metrics-export-port", "--min-worker-port", "--max-worker-port")
ROUTER_MANAGED = ("--worker-urls", "--host", "--port", "--api-key", "--pd-disaggregation", "--prefill", "--decode")
VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*\Z")
# One released version (PEP 440 without ranges, wildcards or markers): 2.14.1, 0.5.23.post1, 2.13.0+cpu.
PIN_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+!_-]*\Z")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}\Z")
COMMIT = re.compile(r"^[0-9a-f]{40}\Z")
PORT_RANGE = re.compile(r"^([0-9]{1,5})-([0-9]{1,5})\Z")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# PEM text is lines by nature; it only ever lands in a file (never a unit or a command line).
PEM_OPTIONS = ("cluster_tls_ca", "sglang_server_tls_cert", "sglang_server_tls_key", "ray_tls_cert", "ray_tls_key")
TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
              "path": "a path", "list": "a list", "dict": "a mapping (NAME: value)", "raw": "a value"}
SECRET_FIX = "the value is not shown (no_log); set it from a vault"


class _Bad(Exception):
    """One value refused: (problem, fix)."""


def namespaces(role_names):
    """The variable prefixes the collection owns: one per role, and cluster_ (the plan role's
    options are cluster_*, sglang_* and ray_*; a generic plan_* is left to others)."""
    return tuple(sorted({"cluster_"} | {r + "_" for r in role_names if r != "plan"}))


def _show(value, secret):
    return "the value" if secret else repr(value)


def _convert(value, typ, secret, where="value"):
    """The value as `typ`, converted as Ansible's role validation converts it (an integer
    written "30000" from -e, a boolean written "yes"), or _Bad. Lists and mappings are not
    split out of strings: the roles would iterate the characters."""
    shown = _show(value, secret)
    if typ == "raw":
        return value
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (
                isinstance(value, str) and not re.match(r"^[+-]?[0-9]+\Z", value)):
            raise _Bad("%s is not an integer" % shown)
        return int(value)
    if typ == "float":
        if isinstance(value, bool):
            raise _Bad("%s is not a number" % shown)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _Bad("%s is not a number" % shown) from None
    if typ == "bool":
        if isinstance(value, bool):
            return value
        key = value.lower() if isinstance(value, str) else value
        if not isinstance(value, (list, dict)) and key in BOOLEANS_TRUE:
            return True
        if not isinstance(value, (list, dict)) and key in BOOLEANS_FALSE:
            return False
        raise _Bad("%s is not a boolean" % shown)
    if typ in ("str", "path"):
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        # YAML reads 6.10 as the float 6.1 and yes as true: a string option never takes them.
        raise _Bad("%s is %s, not a string" % (shown, type(value).__name__))
    if typ == "list":
        if not isinstance(value, list):
            raise _Bad("%s is not a list" % shown)
        return value
    if typ == "dict":
        if not isinstance(value, dict):
            raise _Bad("%s is not a mapping" % shown)
        return value
    return value


def _type_fix(key, typ, elements, choices):
    if choices:
        return "set %s to one of %s" % (key, ", ".join(str(c) for c in choices))
    if typ == "list":
        items = TYPE_WORDS.get(elements or "raw", "values").replace("an ", "").replace("a ", "") + "s"
        return ("write %s as a YAML list of %s, one item per line or [a, b]; on the command line "
                "-e '{\"%s\": [...]}'" % (key, items, key))
    if typ == "bool":
        return "write %s: true or %s: false, without quotes" % (key, key)
    if typ in ("str", "path"):
        return "write %s as a quoted string, e.g. %s: \"...\"" % (key, key)
    return "set %s to %s" % (key, TYPE_WORDS.get(typ, "a valid value"))


def _control(value, path=""):
    """The first control character in a value (keys and items included): (where, char) or None."""
    if isinstance(value, str):
        match = CONTROL.search(value)
        return (path, match.group(), match.start()) if match else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _control(str(k), "%s key" % path) or _control(v, "%s[%s]" % (path, k))
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _control(v, "%s[%d]" % (path, i))
            if found:
                return found
    return None


def judge_value(key, value, spec):
    """(converted value, None) or (None, (problem, fix)) for one option's value."""
    typ, elements, choices = spec.get("type") or "str", spec.get("elements"), spec.get("choices")
    secret = spec.get("no_log")
    found = _control(value.replace("\r\n", "").replace("\n", "") if key in PEM_OPTIONS and isinstance(value, str) else value)
    if found:
        where, char, pos = found
        detail = "" if secret else " (%r at position %d%s)" % (char, pos, where)
        problem = "contains a control character%s" % detail
        return None, (problem, "remove line breaks, tabs and other control characters (a value read "
                               "from a file keeps its trailing newline: add | trim)")
    try:
        converted = _convert(value, typ, secret)
        if typ == "list" and elements:
            items = []
            for i, item in enumerate(converted):
                try:
                    items.append(_convert(item, elements, secret))
                except _Bad as exc:
                    raise _Bad("item %d: %s" % (i, exc)) from None
            converted = items
        if choices:
            for item in converted if typ == "list" else [converted]:
                if item not in choices:
                    raise _Bad("%s is not one of %s" % (_show(item, secret), ", ".join(map(str, choices))))
    except _Bad as exc:
        return None, (str(exc), _type_fix(key, typ, elements, choices))
    if typ in ("int", "float") and converted < MINIMUMS.get(key, 0):
        return None, ("%s is below %s" % (converted, MINIMUMS.get(key, 0)),
                      "set %s to at least %s" % (key, MINIMUMS.get(key, 0)))
    return converted, None


class Judged:
    """What the judge found: values per host (converted), problems, refused (host, variable)."""

    def __init__(self):
        self.values = {}
        self.problems = []
        self.refused = set()

    def fail(self, host, key, problem, fix):
        if (host, key) in self.refused:
            return
        self.problems.append((host, key, problem, fix))
        self.refused.add((host, key))

    def ok(self, host, *keys):
        return not any((host, k) in self.refused for k in keys)


def plan_specs():
    """The plan's own options as argument-spec entries (its spec says raw: see OPTION_TYPES)."""
    specs = {}
    for key, (typ, elements) in OPTION_TYPES.items():
        specs[key] = {"role": "plan", "type": typ, "elements": elements, "default": DEFAULTS[key],
                      "choices": ["native", "ray"] if key == "sglang_backend" else None}
    return specs


def judge(hosts, hostvars, role_specs, role_names, check_mode=False, unreadable=None):
    """Judge every host's variables. hostvars: {host: {name: value}} (every variable the host has
    in the collection's namespaces, and ansible_host); role_specs: plugin_utils.role_specs.load();
    unreadable: {(host, name): error} for values that could not be templated.
    """
    result = Judged()
    specs = dict((k, v) for k, v in role_specs.items() if k not in OPTION_TYPES)
    specs.update(plan_specs())
    prefixes = namespaces(role_names)
    known = set(specs) | set(PUBLISHED)
    for host in hosts:
        hv = hostvars.get(host, {})
        values = result.values[host] = {}
        for (h, name), error in (unreadable or {}).items():
            if h == host:
                secret = (specs.get(name) or {}).get("no_log")
                result.fail(host, name, "cannot be templated%s" % ("" if secret else " (%s)" % error),
                            "define every variable the value refers to, or fix its Jinja")
        allowed = hv.get("cluster_extra_vars_allowed") or []
        allowed = [a for a in allowed if isinstance(a, str)] if isinstance(allowed, list) else []
        for name in sorted(hv):
            if name in known or not name.startswith(prefixes) or any(
                    fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
                continue
            hint = DERIVED.get(name)
            close = difflib.get_close_matches(name, sorted(known - set(PUBLISHED)), n=1, cutoff=0.6)
            problem = "unknown variable in the collection's namespace (%s*)" % name.split("_")[0]
            if hint:
                problem += "; %s" % hint
            elif close:
                problem += "; did you mean %s?" % close[0]
            result.fail(host, name, problem,
                        ("rename it to %s, or remove it" % close[0] if close and not hint else "remove it")
                        + "; a site variable of your own: list it in cluster_extra_vars_allowed")
        for name, spec in specs.items():
            if (host, name) in result.refused:
                values[name] = None
                continue
            present = name in hv and hv[name] is not None
            if not present and spec["role"] == "plan":
                values[name] = None  # the plan applies its own defaults
                continue
            if name in hv and hv[name] is None and spec.get("default") not in (None, ""):
                result.fail(host, name, "empty (null), which replaces the role's default %r"
                            % (spec["default"],), "remove the line, or give %s a value" % name)
                values[name] = None
                continue
            value = hv[name] if present else spec.get("default")
            if value is None:
                values[name] = None
                continue
            converted, bad = judge_value(name, value, spec)
            if bad:
                result.fail(host, name, *bad)
            values[name] = converted
        _relations(result, host, values, hv, check_mode)
    return result


def _relations(res, host, v, hv, check_mode):
    """The roles' own validators, run on the controller, and checks across options."""
    fail = res.fail
    # Install: exact pins (install.pinned_requirements, parse_pin, install_requirements).
    if res.ok(host, "sglang_versions", "sglang_install_packages", "sglang_lock"):
        versions, packages, lock = v["sglang_versions"] or {}, v["sglang_install_packages"] or [], v["sglang_lock"] or []
        loose = [(p, ver) for p, ver in versions.items() if not isinstance(ver, str)]
        if loose:
            fail(host, "sglang_versions", "%s: %r is a YAML %s, not a version string"
                 % (loose[0][0], loose[0][1], type(loose[0][1]).__name__),
                 "quote every version, e.g. %s: \"%s\" (YAML reads 2.10 as 2.1)" % (loose[0][0], loose[0][1]))
        else:
            try:
                for req in install.pinned_requirements(packages, versions):
                    install.parse_pin(req)
                    if not PIN_VERSION.match(req.split("==", 1)[1]):
                        raise ValueError("%r is not an exact pin (name==version)" % req)
            except ValueError as exc:
                fail(host, "sglang_versions", str(exc),
                     "pin every package of sglang_install_packages to one exact version, e.g. "
                     "torch: \"2.14.1\" (a range such as >=2.14 would reach pip as torch==>=2.14)")
            else:
                try:
                    for req in lock:
                        install.parse_pin(req)
                    install.install_requirements(packages, versions, lock)
                except ValueError as exc:
                    fail(host, "sglang_lock", str(exc),
                         "make sglang_lock a pip freeze of a tested node (name==version per item) "
                         "that agrees with sglang_versions")
    # A PD node needs its KV transfer engine pinned (install.transfer_engine_problem).
    if v.get("sglang_transfer_engine_install", True) and res.ok(
            host, "sglang_versions", "sglang_lock", "sglang_pd_role", "sglang_pd_transfer_backend"):
        backend = v.get("sglang_pd_transfer_backend") or DEFAULTS["sglang_pd_transfer_backend"]
        try:
            missing = install.transfer_engine_problem(v.get("sglang_pd_role"), backend,
                                                      v["sglang_versions"] or {}, v["sglang_lock"] or [])
        except ValueError:
            missing = ""  # a malformed lock is refused above
        if missing:
            engine = install.TRANSFER_ENGINES[backend]
            fail(host, missing, "the nodes of a PD deployment with transfer backend %s need %s, which %s "
                 "does not pin" % (backend, engine, missing),
                 "add %s to %s (e.g. %s), or set sglang_transfer_engine_install: false where the venv "
                 "carries it already" % (engine, missing, "mooncake-transfer-engine: \"0.3.13.post1\""
                                         if engine.startswith("mooncake") else "nixl: \"1.5.1\""))
    if res.ok(host, "sglang_install_mode", "sglang_wheelhouse_url", "sglang_index_url", "sglang_wheelhouse_allow_http"):
        try:
            install.pip_source_args(v["sglang_install_mode"], v["sglang_wheelhouse_url"] or None,
                                    v["sglang_index_url"] or None, bool(v.get("sglang_wheelhouse_allow_http")))
        except ValueError as exc:
            if "plain HTTP" in str(exc):
                fail(host, "sglang_wheelhouse_url", str(exc),
                     "serve the wheelhouse over https:// or from a directory on the nodes, or accept plain HTTP "
                     "with sglang_wheelhouse_allow_http: true (with a hashed sglang_lock)")
            else:
                fail(host, "sglang_wheelhouse_url", str(exc),
                     "serve a wheelhouse (pip download ... -d wheels/) and set sglang_wheelhouse_url, or "
                     "set sglang_install_mode: online")
        for key, dirs_ok in (("sglang_wheelhouse_url", True), ("sglang_index_url", False)):
            url = v[key]
            if url and not (urlparse(url).scheme in ("http", "https") and urlparse(url).hostname) and not (
                    dirs_ok and url.startswith("/") and posixpath.normpath(url) == url.rstrip("/") or "/" == url):
                fail(host, key, "%r is not an http(s) URL%s" % (url, " or an absolute directory" if dirs_ok else ""),
                     "write http://HOST:PORT/ or https://HOST/PATH%s" % (", or /DIR on the nodes" if dirs_ok else ""))
    # Model prefetch (model.source_problem), with the group's model path.
    if res.ok(host, "sglang_model_source", "sglang_model_path", "sglang_model_src_dir", "sglang_model_repo"):
        problem = model.source_problem(v["sglang_model_source"], v["sglang_model_path"],
                                       v["sglang_model_src_dir"], v["sglang_model_repo"])
        if problem:
            needed = re.search(r"needs (sglang_\w+)", problem)
            key = needed.group(1) if needed else "sglang_model_source"
            fail(host, key, problem, "set %s (see the sglang role's README), or sglang_model_source: none" % key)
    repo, revision = v.get("sglang_model_repo"), v.get("sglang_model_revision")
    if repo and res.ok(host, "sglang_model_repo") and (
            ".." in repo or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*\Z", repo)):
        fail(host, "sglang_model_repo", "%r is not a Hugging Face repository id (org/name)" % (repo,),
             "write org/name with letters, digits and ._- only")
    if revision and res.ok(host, "sglang_model_revision") and (".." in revision or not REVISION.match(revision)):
        fail(host, "sglang_model_revision", "%r is not a branch, tag or commit" % (revision,),
             "write a branch, tag or commit hash (letters, digits, ._/-)")
    elif v.get("sglang_model_source") == "hf" and repo and not COMMIT.match(revision or "") \
            and res.ok(host, "sglang_model_revision", "sglang_model_source", "sglang_model_repo"):
        # A branch or tag moves: every node (and every later deploy) could get other weights.
        fail(host, "sglang_model_revision", "%s for sglang_model_source: hf, but a download must be pinned "
             "to a commit" % ("%r is a branch or tag" % revision if revision else "not set"),
             "set sglang_model_revision to the 40-hex commit of %s to deploy (the repository's history "
             "on the hub, or huggingface_hub.model_info(repo).sha)" % repo)
    # TLS certificates and keys (vault): both or neither, PEM-shaped; never echoed.
    for cert_key, key_key in (("sglang_server_tls_cert", "sglang_server_tls_key"), ("ray_tls_cert", "ray_tls_key")):
        if not res.ok(host, cert_key, key_key):
            continue
        cert, key = hv.get(cert_key), hv.get(key_key)
        if bool(cert) != bool(key):
            missing, given = (key_key, cert_key) if cert else (cert_key, key_key)
            fail(host, missing, "not set, but %s is: TLS needs both" % given,
                 "set %s and %s together (from a vault), or neither" % (cert_key, key_key))
        elif cert and not PEM_CERT.match(cert):
            fail(host, cert_key, "not a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
                 "paste the node's certificate in PEM form (the chain may follow it)")
        elif key and not PEM_KEY.match(key):
            fail(host, key_key, "not a PEM private key (-----BEGIN PRIVATE KEY----- ...)",
                 "paste the unencrypted PEM key of %s from a vault" % cert_key)
    # The admin key opens what the client key must not: the two may not be one.
    admin = hv.get("sglang_server_admin_api_key")
    if admin and res.ok(host, "sglang_server_admin_api_key", "sglang_server_api_key") and admin == hv.get("sglang_server_api_key"):
        fail(host, "sglang_server_admin_api_key", "equals sglang_server_api_key, so every client could use the "
             "admin endpoints", "give the admin key a value of its own (e.g. openssl rand -hex 32) in the vault")
    # Server environment (server._check_env) and arguments the plan or role owns.
    if res.ok(host, "sglang_server_env") and v["sglang_server_env"] is not None:
        try:
            server._check_env(v["sglang_server_env"])  # pylint: disable=protected-access
        except ValueError as exc:
            fail(host, "sglang_server_env", str(exc).split(": ", 1)[-1].split(". Fix:")[0],
                 "use NAME: value pairs with names of letters, digits and _ (not starting with a digit), "
                 "none of %s" % ", ".join(server.MANAGED_ENV))
    for key, managed, fix in (("ray_extra_args", RAY_MANAGED, "the ray role sets it from the plan"),
                              ("sglang_server_router_args", ROUTER_MANAGED, "the role sets it from the plan")):
        if res.ok(host, key):
            for arg in v[key] or []:
                if arg.split("=", 1)[0] in managed:
                    fail(host, key, "%s is set by the collection" % arg.split("=", 1)[0],
                         "remove it; %s" % fix)
                    break
    listen = v.get("sglang_server_host")
    if listen and res.ok(host, "sglang_server_host"):
        try:
            ipaddress.ip_address(listen)
        except ValueError:
            fail(host, "sglang_server_host", "%r is not an IP address" % (listen,),
                 "leave it empty (every address) or set one address of this node")
    # Firewall: networks, SSH ports, the ephemeral range, and who may reach an API without a key.
    _firewall(res, host, v, hv)
    # GPU driver: a vendor forced on a host declared CPU-only would install a driver and reboot.
    vendor = v.get("gpu_driver_vendor")
    if vendor in ("nvidia", "amd") and res.ok(host, "gpu_driver_vendor") and not check_mode:
        count, fake = v.get("cluster_gpus_per_node"), v.get("cluster_gpus_fake")
        if count == 0 or fake:
            fail(host, "gpu_driver_vendor", "%s is forced on a host declared without real GPUs (%s): the "
                 "driver role would install a kernel module and reboot it"
                 % (vendor, "cluster_gpus_fake" if fake else "cluster_gpus_per_node: 0"),
                 "set gpu_driver_vendor: auto or none for this host (run with --check to only see the plan)")
    for key in ("gpu_driver_nvidia_version", "gpu_driver_amd_version", "gpu_driver_rocm_version"):
        value = v.get(key)
        if value and res.ok(host, key) and not VERSION.match(value):
            fail(host, key, "%r is not a version (digits and dots)" % (value,),
                 "write the exact version or branch in quotes, e.g. \"570.133.20\" or \"570\"")
    path = v.get("preflight_disk_path")
    if path and res.ok(host, "preflight_disk_path") and (
            not path.startswith("/") or posixpath.normpath(path) != path):
        fail(host, "preflight_disk_path", "%r is not a normalized absolute path" % (path,),
             "write an absolute path without '..' or '//', or leave it empty (the plan's data directory)")
    for key in ("preflight_collective_sizes",):
        if res.ok(host, key) and any(s < 1 for s in v.get(key) or []):
            fail(host, key, "message sizes must be at least 1 byte", "list sizes in bytes, e.g. [4096, 1048576]")


def _cluster_ports(v):
    """(name, first, last) of every port the plan gives this host, from the judged values."""
    def get(key):
        return v.get(key) if v.get(key) is not None else DEFAULTS[key]

    ports = [(k, get(k), get(k)) for k in RAY_PORT_KEYS + ("sglang_port",)]
    ports.append(("ray_min_worker_port", get("ray_min_worker_port"), get("ray_max_worker_port")))
    dist, span = get("sglang_dist_init_port"), get("sglang_dist_port_span")
    ports.append(("sglang_dist_init_port", dist, dist + span if isinstance(span, int) else dist))
    if get("sglang_router"):
        ports.append(("sglang_router_port", get("sglang_router_port"), get("sglang_router_port")))
    return [p for p in ports if isinstance(p[1], int) and isinstance(p[2], int)]


def _firewall(res, host, v, hv):
    fail = res.fail
    nets = []
    if res.ok(host, "firewall_client_cidrs"):
        cidrs = v["firewall_client_cidrs"] or []
        try:
            # The ruleset's own parse, not a second copy.
            firewall._split(cidrs)  # pylint: disable=protected-access
            nets = [ipaddress.ip_network(str(c), strict=False) for c in cidrs]
        except ValueError as exc:
            fail(host, "firewall_client_cidrs", "not a list of networks (%s)" % exc,
                 "write networks as ADDRESS/PREFIX, e.g. 198.51.100.0/24")
    cluster = []
    for cidr in v.get("cluster_cidrs") or []:
        try:
            cluster.append(ipaddress.ip_network(str(cidr), strict=False))
        except ValueError:
            pass  # the plan refuses it
    wide = [n for n in nets if not any(n.version == c.version and n.subnet_of(c) for c in cluster)]
    key_set = bool(hv.get("sglang_server_api_key")) and res.ok(host, "sglang_server_api_key")
    if wide and not key_set and not v.get("cluster_allow_unauthenticated_api") and v.get("firewall_enabled", True):
        fail(host, "firewall_client_cidrs", "%s reaches beyond the cluster's networks (%s), but no "
             "sglang_server_api_key is set: the SGLang API would be open to it unauthenticated"
             % (", ".join(str(n) for n in wide), ", ".join(str(c) for c in cluster) or "none set"),
             "set sglang_server_api_key from a vault, narrow firewall_client_cidrs to cluster_cidrs, or "
             "accept an open API with cluster_allow_unauthenticated_api: true")
    if res.ok(host, "firewall_ssh_ports"):
        ssh = v["firewall_ssh_ports"] or []
        bad = [p for p in ssh if not 1 <= p <= 65535]
        if bad:
            fail(host, "firewall_ssh_ports", "%s is not a TCP port" % bad[0], "list SSH ports between 1 and 65535")
        else:
            for name, lo, hi in _cluster_ports(v):
                clash = [p for p in ssh if lo <= p <= hi]
                if clash and res.ok(host, name):
                    fail(host, name, "port %d is an SSH port (firewall_ssh_ports)" % clash[0],
                         "move %s off the SSH ports" % name)
    port = hv.get("ansible_port")
    if port is not None and v.get("firewall_enabled", True):
        try:
            firewall.check_port(port, "ansible_port")
        except ValueError:
            fail(host, "ansible_port", "%r is not a TCP port, and the firewall keeps this port open for SSH" % (port,),
                 "set ansible_port to the node's SSH port (1-65535), or remove it (22)")
    dyn = v.get("firewall_dynamic_ports")
    if dyn and res.ok(host, "firewall_dynamic_ports"):
        match = PORT_RANGE.match(dyn)
        if not match or not 1024 <= int(match.group(1)) <= int(match.group(2)) <= 65535:
            fail(host, "firewall_dynamic_ports", "%r is not a port range FIRST-LAST" % (dyn,),
                 "write FIRST-LAST between 1024 and 65535, e.g. 32768-60999 (net.ipv4.ip_local_port_range), "
                 "or leave it empty")
