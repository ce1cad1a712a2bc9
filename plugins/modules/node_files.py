#!/usr/bin/python
"""Module: converge a node's files, unit files and enabled units in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_files
short_description: Converge a node's directories, files, secret files and systemd units in one call
version_added: 0.2.0
description:
  - Creates the O(directories), writes every file of O(files) and O(secrets) whose content,
    owner or mode differs (atomically, with its final owner and mode from the start), removes the
    paths of O(absent), runs one C(systemctl daemon-reload) when a unit or drop-in was written or
    removed, runs C(systemd-analyze verify) on every unit file written, and enables the units of
    O(enable) that are not yet.
  - One round trip instead of one per file, so a re-run with nothing to change only reads.
  - O(secrets) are never shown (no diff, no content in any result or log); only their paths are.
  - A symlink at a file's path is replaced, never followed.
options:
  directories:
    description: Directories to create when missing, and whose owner and mode are set.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory.
        type: path
        required: true
      owner:
        description: Its owner (a name).
        type: str
        default: root
      group:
        description: Its group (a name).
        type: str
        default: root
      mode:
        description: Its mode (octal string).
        type: str
        default: "0755"
  files:
    description: Files and their content. Written when any of content, owner and mode differ.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file (its directory must exist or be in O(directories)).
        type: path
        required: true
      content:
        description: Its whole content.
        type: str
        required: true
      owner:
        description: Its owner (a name).
        type: str
        default: root
      group:
        description: Its group (a name).
        type: str
        default: root
      mode:
        description: Its mode (octal string).
        type: str
        default: "0644"
      kind:
        description:
          - C(unit) is a systemd unit file (daemon-reload, then C(systemd-analyze verify) when written);
            C(dropin) a drop-in (daemon-reload when written); C(file) anything else.
        type: str
        choices: [file, unit, dropin]
        default: file
      validate:
        description:
          - A command run on the new content (its temporary file in place of the one C(%s) word, no
            shell) before it replaces the file; a non-zero exit keeps the old file and fails.
        type: str
  secrets:
    description:
      - Secret files, path to content; written like O(files) (owner O(secrets_owner), group
        O(secrets_group), mode O(secrets_mode)), never shown (no diff, no content in any result or
        log line; a top-level no_log option, since Ansible's journal line masks nested values only
        where their text is unchanged, and a multi-line key is escaped there).
    type: dict
    default: {}
  secrets_owner:
    description: Owner of every file of O(secrets).
    type: str
    default: root
  secrets_group:
    description: Group of every file of O(secrets).
    type: str
    default: root
  secrets_mode:
    description: Mode of every file of O(secrets).
    type: str
    default: "0600"
  absent:
    description:
      - Files to remove (secrets no longer set, files of a former layout). Not units, since a unit
        is stopped before its file goes, which is the removing role's work.
    type: list
    elements: path
    default: []
  enable:
    description: Units to enable (after the daemon-reload) unless C(systemctl is-enabled) says they are.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what would change; writes nothing. A unit that would be written is not verified.
  diff_mode:
    support: full
    description: The before and after of every file of O(files) that would be written.
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: The Ray unit, its CLI wrapper and the TLS files that must go, in one call
  sglang_ops.cluster.node_files:
    directories:
      - {path: /etc/sglang, group: sglang, mode: "0750"}
    files:
      - {path: /etc/systemd/system/sglang-ray.service, content: "{{ lookup('template', 'ray.service.j2') }}", kind: unit}
      - {path: /usr/local/bin/sglang-ray, content: "{{ lookup('template', 'ray-cli.sh.j2') }}", mode: "0755"}
    absent:
      - /etc/sglang/ray-tls-key.pem
    enable: [sglang-ray]
  register: ray_files
"""

RETURN = r"""
changed_paths:
  description: Every path written, re-owned, re-moded, created or removed (secret files by path only).
  type: list
  elements: str
  returned: always
written:
  description: The paths whose content was (or in check mode would be) written.
  type: list
  elements: str
  returned: always
removed:
  description: The paths of O(absent) that were there and were removed.
  type: list
  elements: str
  returned: always
enabled:
  description: The units of O(enable) that were (or would be) enabled.
  type: list
  elements: str
  returned: always
verified:
  description: The unit files checked with C(systemd-analyze verify).
  type: list
  elements: str
  returned: always
daemon_reload:
  description: Whether systemd was (or would be) reloaded.
  type: bool
  returned: always
"""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils.node_files import (
    KINDS, NodeFilesError, current, directory_actions, file_actions, ids, needs_enable, needs_reload, parse_mode,
    remove, validate_argv, write_atomically)

DIRECTORY = dict(path=dict(type="path", required=True), owner=dict(type="str", default="root"),
                 group=dict(type="str", default="root"), mode=dict(type="str", default="0755"))
FILE = dict(path=dict(type="path", required=True), content=dict(type="str", required=True),
            owner=dict(type="str", default="root"), group=dict(type="str", default="root"),
            mode=dict(type="str", default="0644"), kind=dict(type="str", choices=list(KINDS), default="file"),
            validate=dict(type="str"))


def run(argv):
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def validator(command):
    """A function running the validate command on a file, raising with its output; None without one."""
    if not command:
        return None

    def validate(path):
        rc, out = run(validate_argv(command, path))
        if rc != 0:
            raise NodeFilesError("%s rejects the new content (the file is unchanged): %s" % (command.split()[0], out.strip()))

    return validate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=DIRECTORY),
            files=dict(type="list", elements="dict", default=[], options=FILE),
            secrets=dict(type="dict", default={}, no_log=True),
            # Names of the files' owner, group and mode, not secrets.
            secrets_owner=dict(type="str", default="root", no_log=False),
            secrets_group=dict(type="str", default="root", no_log=False),
            secrets_mode=dict(type="str", default="0600", no_log=False),
            absent=dict(type="list", elements="path", default=[]),
            enable=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    result = dict(changed_paths=[], written=[], removed=[], enabled=[], verified=[], daemon_reload=False)
    diffs, reload_needed, units_written = [], False, []

    def owner_ids(entry):
        # In check mode on a fresh node the user an earlier task would create is not there yet:
        # the path then counts as to be written (-1 matches no real owner).
        try:
            return ids(entry["owner"], entry["group"])
        except NodeFilesError:
            if check:
                return -1, -1
            raise

    def fail(path, error):
        module.fail_json(msg="node_files: %s: %s" % (path, error), **result)

    for d in p["directories"]:
        path = d["path"]
        try:
            uid, gid = owner_ids(d)
            mode = parse_mode(d["mode"])
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                st = None
            actions = directory_actions(st, uid, gid, mode)
            if actions:
                result["changed_paths"].append(path)
            if actions and not check:
                if "create" in actions:
                    os.makedirs(path, mode=0o700, exist_ok=True)
                os.chown(path, uid, gid)
                os.chmod(path, mode)
        except (NodeFilesError, OSError) as exc:
            fail(path, exc)

    secret_files = [dict(path=path, content=str(content), owner=p["secrets_owner"], group=p["secrets_group"],
                         mode=p["secrets_mode"]) for path, content in sorted(p["secrets"].items())]
    for path in p["secrets"]:
        if not os.path.isabs(path):
            module.fail_json(msg="node_files: secrets: %r is not an absolute path" % path, **result)
    for f, secret in [(f, False) for f in p["files"]] + [(f, True) for f in secret_files]:
        path = f["path"]
        content = f["content"].encode("utf-8")
        kind = f.get("kind", "file")
        try:
            uid, gid = owner_ids(f)
            mode = parse_mode(f["mode"])
            found = current(path)
            actions = file_actions(found, content, uid, gid, mode)
            if not actions:
                continue
            result["changed_paths"].append(path)
            reload_needed = reload_needed or needs_reload(kind)
            if "write" in actions:
                result["written"].append(path)
                if kind == "unit":
                    units_written.append(path)
                if not secret and module._diff:
                    before = found[1] if found and found[1] is not None else b""
                    diffs.append(dict(before_header=path, after_header=path,
                                      before=before.decode("utf-8", "replace"), after=f["content"]))
            if check:
                continue
            if "write" in actions:
                write_atomically(path, content, uid, gid, mode, validator(f.get("validate")))
            else:
                if "chown" in actions:
                    os.chown(path, uid, gid)
                if "chmod" in actions:
                    os.chmod(path, mode)
        except (NodeFilesError, OSError) as exc:
            fail(path, exc)

    for path in p["absent"]:
        try:
            there = os.path.lexists(path)
            if there and not check:
                remove(path)
        except (NodeFilesError, OSError) as exc:
            fail(path, exc)
        if there:
            result["changed_paths"].append(path)
            result["removed"].append(path)

    if reload_needed:
        result["daemon_reload"] = True
        if not check:
            rc, out = run(["systemctl", "daemon-reload"])
            if rc != 0:
                module.fail_json(msg="node_files: systemctl daemon-reload failed: %s" % out.strip(), **result)
    # A unit only about to be written in check mode is not there to verify.
    for path in [] if check else units_written:
        rc, out = run(["systemd-analyze", "verify", path])
        result["verified"].append(path)
        if rc != 0:
            module.fail_json(msg="node_files: systemd-analyze verify rejects %s: %s" % (path, out.strip()), **result)
    for name in p["enable"]:
        rc, out = run(["systemctl", "is-enabled", name])
        if not needs_enable(out if rc == 0 else ""):
            continue
        result["enabled"].append(name)
        if not check:
            rc, out = run(["systemctl", "enable", name])
            if rc != 0:
                module.fail_json(msg="node_files: systemctl enable %s failed: %s" % (name, out.strip()), **result)
    result["changed"] = bool(result["changed_paths"] or result["enabled"])
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
