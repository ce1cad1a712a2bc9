#!/usr/bin/python
"""Module: compare a node with the seal of the last complete deploy, or write that seal."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rerun_seal
short_description: Tell whether a node is exactly as the last complete deploy left it
version_added: 0.2.0
description:
  - A complete C(deploy.yml) ends with O(state=seal) on every node. The key of the deploy's inputs
    (O(inputs), computed by the plan on the controller, and this node's O(secrets)) and a
    fingerprint of everything the roles manage on the node go into the seal at O(path).
  - O(state=check) computes the same and reports RV(sealed) when both match. The fingerprint has
    one digest per part, so RV(drift) names what differs (never its content).
  - 'The parts: every file and directory under O(trees) (type, mode, owner, group, and content up
    to 1 MiB, else size and modification time; O(exclude) left out), each path of O(files), the
    state and the loaded files of every unit of O(units) (C(systemctl show): load, active and sub
    state, enablement, a pending daemon-reload, unit file and drop-ins), each venv of O(venvs) (its
    interpreter and site-packages directories, which every pip install or removal changes), the
    nftables tables of O(nft_tables) (without counters; C(ip filter) and C(ip6 filter) only their
    ufw chains; none without nft), the users of O(users), the addresses of O(interfaces), with
    O(rdma) the RDMA ports, and the host: boot id, kernel release, OS release, the dpkg status (every
    package install or removal), GPU and RDMA device nodes.'
  - A check that finds no match removes the old seal (outside check mode), so a deploy that stops
    half way never leaves a node that looks sealed. Never reports a change, like the check stamps
    it sits beside, since the seal is bookkeeping, not the node's configuration.
  - The seal is a 0600 file of root holding digests only.
options:
  state:
    description: Compare with the seal (C(check)) or write it (C(seal)).
    type: str
    choices: [check, seal]
    default: check
  path:
    description: The seal file (its directory is made 0700 when missing).
    type: path
    required: true
  inputs:
    description: The key of the deploy's inputs, from the plan (no secret in it).
    type: str
    required: true
  secrets:
    description: This node's secret inputs (e.g. a digest of them, as deploy.yml passes); part of the key, never returned or logged.
    type: dict
    default: {}
  trees:
    description: Directories compared with everything under them.
    type: list
    elements: path
    default: []
  exclude:
    description: Paths under O(trees) left out with everything below them (caches, run-time data).
    type: list
    elements: path
    default: []
  files:
    description: Single paths compared (not followed when links).
    type: list
    elements: path
    default: []
  units:
    description: Systemd units (full names) whose state and files are compared; a missing unit counts as such.
    type: list
    elements: str
    default: []
  venvs:
    description: Python venvs whose installed packages are compared.
    type: list
    elements: path
    default: []
  nft_tables:
    description: nftables tables as C(family name), e.g. C(inet sglang_ops); a missing table counts as such.
    type: list
    elements: str
    default: []
  users:
    description: Users (and their primary groups) compared.
    type: list
    elements: str
    default: []
  interfaces:
    description: Network interfaces whose MTU, state and addresses are compared (not temporary IPv6 addresses).
    type: list
    elements: str
    default: []
  rdma:
    description: Also compare every RDMA port's state, link layer and GID table (sysfs), which the server units follow.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Compares as usual; writes and removes no seal.
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: Is this node as the last complete deploy left it?
  sglang_ops.cluster.rerun_seal:
    path: /etc/sglang/checked/deploy
    inputs: "{{ sglang_cluster_plan.rerun.inputs }}"
    trees: [/etc/sglang, /usr/local/lib/sglang-ops]
    units: [sglang-ray.service, sglang-firewall.service]
    venvs: [/opt/sglang/venv]
    nft_tables: [inet sglang_ops]
    users: [sglang]
    interfaces: [eth0]
  register: seal
"""

RETURN = r"""
sealed:
  description: With C(check), whether the seal matches (the same inputs, nothing drifted).
  type: bool
  returned: always
drift:
  description: With C(check), what differs from the seal (C(inputs), part names such as C(units) or C(tree:/etc/sglang)), or C(no seal).
  type: list
  elements: str
  returned: always
parts:
  description: How many parts the fingerprint has.
  type: int
  returned: always
written:
  description: With C(seal), whether the seal was written (never in check mode).
  type: bool
  returned: always
"""

import grp
import json
import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils import rerun
from ansible_collections.sglang_ops.cluster.plugins.module_utils.stamp import (
    path_state, read_stamp, venv_paths, write_stamp)

# The seal's parts (a few dozen digests) fit far inside the stamp's 64 KiB.
PARTS_KEEP = 60000


def user_state(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = None
    return [entry.pw_uid, entry.pw_gid, group, entry.pw_dir, entry.pw_shell]


def fingerprint(module, p):
    """{part name: digest} of the node, as described in DOCUMENTATION."""
    parts = {}
    for root in p["trees"]:
        parts["tree:" + root] = rerun.digest(rerun.tree_state(root, p["exclude"]))
    for path in p["files"]:
        parts["file:" + path] = rerun.digest(rerun.entry_state(path))
    if p["units"]:
        rc, out, err = module.run_command(
            ["systemctl", "show", "--no-pager", "-p", ",".join(rerun.UNIT_PROPERTIES), "--"] + p["units"])
        units = rerun.parse_unit_show(out) if rc == 0 else {"error": err.strip()}
        parts["units"] = rerun.digest(units)
        parts["unit files"] = rerun.digest([[f, rerun.entry_state(f)] for f in rerun.unit_files(units)])
    for venv in p["venvs"]:
        parts["venv:" + venv] = rerun.digest([[v, path_state(v)] for v in venv_paths(venv)])
    nft = module.get_bin_path("nft") if p["nft_tables"] else None
    for table in p["nft_tables"]:
        rc, out, _err = module.run_command([nft, "list", "table"] + table.split()) if nft else (1, "", "")
        text = (rerun.ufw_state(out) if table.split()[1:] == ["filter"] else rerun.nft_state(out)) if rc == 0 else None
        parts["nft:" + table] = rerun.digest(text)
    for name in p["users"]:
        parts["user:" + name] = rerun.digest(user_state(name))
    ip = module.get_bin_path("ip") if p["interfaces"] else None
    for ifname in p["interfaces"]:
        rc, out, _err = module.run_command([ip, "-j", "addr", "show", "dev", ifname]) if ip else (1, "", "")
        parts["interface:" + ifname] = rerun.digest(rerun.addresses(out) if rc == 0 else None)
    if p["rdma"]:
        parts["rdma"] = rerun.digest(rerun.rdma_state())
    parts["host"] = rerun.digest(rerun.host_state())
    return parts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["check", "seal"], default="check"),
            path=dict(type="path", required=True),
            inputs=dict(type="str", required=True, no_log=False),
            # Top level and no_log: Ansible's journal line masks only whole top-level values.
            secrets=dict(type="dict", default={}, no_log=True),
            trees=dict(type="list", elements="path", default=[]),
            exclude=dict(type="list", elements="path", default=[]),
            files=dict(type="list", elements="path", default=[]),
            units=dict(type="list", elements="str", default=[]),
            venvs=dict(type="list", elements="path", default=[]),
            nft_tables=dict(type="list", elements="str", default=[]),
            users=dict(type="list", elements="str", default=[]),
            interfaces=dict(type="list", elements="str", default=[]),
            rdma=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for table in p["nft_tables"]:
        if len(table.split()) != 2:
            module.fail_json(msg="rerun_seal: nft_tables: %r is not 'family name'" % table)
    key = rerun.seal_key(p["inputs"], p["secrets"])
    parts = fingerprint(module, p)
    if p["state"] == "seal":
        written = False
        if not module.check_mode:
            write_stamp(p["path"], key, json.dumps(parts, sort_keys=True), keep=PARTS_KEEP)
            written = True
        module.exit_json(changed=False, sealed=True, drift=[], parts=len(parts), written=written)

    stamp = read_stamp(p["path"])
    if stamp is None:
        differs = ["no seal"]
    elif stamp["key"] != key:
        differs = ["inputs"]
    else:
        try:
            sealed_parts = json.loads(stamp["stdout"])
        except ValueError:
            sealed_parts = {}
        differs = rerun.drift(sealed_parts if isinstance(sealed_parts, dict) else {}, parts)
    if differs and stamp is not None and not module.check_mode:
        try:
            os.unlink(p["path"])
        except OSError:
            pass
    module.exit_json(changed=False, sealed=not differs, drift=differs, parts=len(parts), written=False)


if __name__ == "__main__":
    main()
