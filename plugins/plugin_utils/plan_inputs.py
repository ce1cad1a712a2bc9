"""From raw inventory values to the cluster plan: shared by the cluster_plan action and sglang-ops.

Both must judge the roles' inputs and build the plan the same way, so that the day-2 command
line names exactly the ranks, units and paths that deploy.yml made.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os

import yaml

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import (
    DEFAULTS,
    HEAD_GROUP,
    PlanError,
    build_plan,
    report,
)
from ansible_collections.sglang_ops.cluster.plugins.module_utils import model, rerun
from ansible_collections.sglang_ops.cluster.plugins.plugin_utils import inputs, role_specs

# Read per host besides the collection's own variables.
EXTRA_KEYS = ("ansible_host", "ansible_port")  # ansible_port: the firewall keeps it open for SSH


def namespaces():
    """The variable prefixes of the collection's roles (cluster_, sglang_, ray_, ...)."""
    return inputs.namespaces(role_specs.roles())


def compute(model_groups, root_hosts, heads, raw, unreadable, check_mode=False, specs=None):
    """(plan, None, judged) or (None, [one line per problem], judged).

    model_groups: {group: [hosts in order]}; root_hosts: every host of sglang_nodes in order;
    heads: the hosts of the ray_head group; raw: {host: {variable: value}} (the collection's
    namespaces and EXTRA_KEYS); unreadable: {(host, variable): why} for values that could not be
    templated; specs: role_specs.load(), when the caller has it already. judged.values holds
    every role option with its default, for callers that read role settings.
    """
    judged = inputs.judge(root_hosts, raw, specs or role_specs.load(), role_specs.roles(), check_mode, unreadable)
    plain = {}
    for host in root_hosts:
        plain[host] = {k: judged.values[host].get(k) for k in DEFAULTS}
        plain[host].update({k: raw[host][k] for k in EXTRA_KEYS if k in raw[host]})
        # Only whether a key exists travels into the plan, never the key itself.
        plain[host]["_api_key_set"] = bool(raw[host].get("sglang_server_api_key"))
        plain[host]["_admin_api_key_set"] = bool(raw[host].get("sglang_server_admin_api_key"))
        plain[host]["_tls_api_set"] = bool(raw[host].get("sglang_server_tls_cert") and raw[host].get("sglang_server_tls_key"))
        plain[host]["_tls_ray_set"] = bool(raw[host].get("ray_tls_cert") and raw[host].get("ray_tls_key"))
        # The service units require the firewall's unit where the firewall role loads it.
        plain[host]["_firewall_enabled"] = judged.values[host].get("firewall_enabled") is not False
    items = list(judged.problems)
    if len(heads) > 1:
        items.append((HEAD_GROUP, "groups", "the ray_head group has %d hosts (%s)"
                      % (len(heads), ", ".join(heads)), "keep one host in ray_head"))
    plan = None
    try:
        plan = build_plan(model_groups, plain, root_hosts, heads[0] if heads else None,
                          refused=judged.refused)
    except PlanError as exc:
        items.extend(exc.items)
    if items:
        return None, report(items, root_hosts, model_groups), judged
    return plan, None, judged


# Options that choose how much a run checks, not what it leaves on a node: a run with
# preflight_mode=full seals the same state as one without.
RERUN_NEUTRAL = ("cluster_rerun", "preflight_mode", "sglang_server_validate_always")
# The collection's own content: a new version of a role or plugin is a new input.
CONTENT_DIRS = ("roles", "plugins", "playbooks")
_content_key = {}
_tags = {}


def collection_tags(root=role_specs.COLLECTION_DIR):
    """Every tag the collection's roles and playbooks use: a --skip-tags of none of these (e.g.
    molecule's molecule-notest) skips nothing of deploy.yml. Read once per process, by the filter
    rerun_every_phase (only deploy.yml asks), not by the plan step every playbook runs."""
    if root not in _tags:
        found = set()

        def walk(node):
            if isinstance(node, dict):
                tags = node.get("tags")
                if isinstance(tags, str):
                    found.add(tags)
                elif isinstance(tags, list):
                    found.update(t for t in tags if isinstance(t, str))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        for pattern in ("roles/*/tasks/*.yml", "playbooks/*.yml"):
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                try:
                    with open(path, encoding="utf-8") as f:
                        walk(yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
                except (OSError, yaml.YAMLError):
                    continue
        _tags[root] = sorted(found)
    return _tags[root]


def content_key(root=role_specs.COLLECTION_DIR):
    """sha256 over the collection's roles, plugins and playbooks (names and bytes; no caches)."""
    if root not in _content_key:
        h = hashlib.sha256()
        for top in CONTENT_DIRS:
            for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                for name in sorted(filenames):
                    if name.endswith((".pyc", ".pyo")):
                        continue
                    path = os.path.join(dirpath, name)
                    h.update(os.path.relpath(path, root).encode() + b"\0")
                    try:
                        with open(path, "rb") as f:
                            h.update(hashlib.sha256(f.read()).digest())
                    except OSError:
                        h.update(b"?")
        _content_key[root] = h.hexdigest()
    return _content_key[root]


def rerun_inputs(plan, judged, raw, model_groups, heads, specs, ansible_version):
    """The plan's `rerun` entry completed: `inputs` (sha256 of every role option of every host
    except secrets, the groups, the collection's content, Ansible's version and the controller's
    model copies and file_sd file), `secret_vars` (the option names whose values deploy.yml
    digests into rerun_seal's no_log option, so that neither they nor the digest reach a log or a
    fact) and `enabled`."""
    secret = sorted(n for n, s in specs.items() if s.get("no_log"))
    hosts = list(judged.values)
    values = {h: {k: v for k, v in judged.values[h].items() if k not in secret and k not in RERUN_NEUTRAL}
              for h in hosts}
    models = {}
    for h in hosts:
        v = judged.values[h]
        if v.get("sglang_model_source") == "controller" and v.get("sglang_model_src_dir"):
            src = v["sglang_model_src_dir"]
            if src not in models:
                models[src] = model.manifest(src)["key"] if os.path.isdir(src) else None
    # The controller's file_sd file (the monitoring role writes it there): its current bytes.
    file_sd = {}
    for h in hosts:
        path = judged.values[h].get("cluster_metrics_file_sd")
        if path and path not in file_sd:
            file_sd[path] = _file_digest(path)
    material = {
        "values": values,
        "extra": {h: {k: raw.get(h, {}).get(k) for k in EXTRA_KEYS} for h in hosts},
        # In order, as lists: the first host of the first group is the Ray head by default, and
        # the order of groups and hosts gives ranks and rolls (sort_keys would lose it).
        "groups": [[g, list(members)] for g, members in model_groups.items()], "hosts": hosts,
        "heads": list(heads), "content": content_key(), "ansible": ansible_version, "models": models,
        "file_sd": file_sd,
    }
    plan["rerun"].update(
        inputs=hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest(),
        secret_vars=secret,
        # preflight_mode=full and sglang_server_validate_always ask for every check every run.
        enabled=plan["rerun"]["mode"] == "fast"
        and all(judged.values[h].get("preflight_mode") != "full"
                and not judged.values[h].get("sglang_server_validate_always") for h in hosts))
    return plan


def _file_digest(path):
    try:
        return rerun.file_digest(path)
    except OSError:
        return None
