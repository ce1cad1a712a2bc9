#!/usr/bin/python
"""Module: run a read-only check only when what it judges changed since it last passed."""

from __future__ import annotations

DOCUMENTATION = r"""
module: stamped_check
short_description: Run a read-only check again only when its inputs changed since it passed
version_added: 0.2.0
description:
  - Computes a key from O(argv), O(environ), the state of O(venv) (its interpreter and the
    entries of its site-packages, which every pip install or removal changes), the state of
    every path in O(files), and O(inputs).
  - When the stamp at O(stamp) holds that key, the check passed with exactly these inputs
    before, so it is not run again and RV(cached) is true. Otherwise the command runs as O(user)
    with a clean environment plus O(environ), and on exit code 0 the key is written to the stamp.
  - A stamp counts only as a regular 0600 file owned by the module's user (root under become). A missing or different stamp only
    costs running the check again; C(force=true) runs it regardless.
  - Never reports a change, since the stamp is bookkeeping of the check, not the node's configuration.
    In check mode the check runs and no stamp is written.
  - O(action=compare) and O(action=record) serve checks that run elsewhere (e.g. across nodes at
    once). C(compare) only reports whether the stamp holds the key of O(argv) and the other inputs
    (RV(cached)); C(record) writes it, after the caller judged the check passed.
options:
  argv:
    description: The check's command line (no shell); with C(compare) and C(record), what identifies it.
    type: list
    elements: str
    required: true
  action:
    description: Run the check unless stamped (C(run)), only compare the stamp, or record it.
    type: str
    choices: [run, compare, record]
    default: run
  environ:
    description: Variables added to the command's clean environment (PATH, HOME, LANG, USER).
    type: dict
    default: {}
  user:
    description: Run the command as this user (with its groups); the module itself runs as root.
    type: str
  venv:
    description: A Python venv whose installed packages the check depends on.
    type: path
  files:
    description: Other paths whose state (inode, size, mtime) the check depends on.
    type: list
    elements: path
    default: []
  inputs:
    description: Anything else the check depends on (compared as JSON).
    type: raw
  stamp:
    description: The stamp file (its directory is made 0700 when missing).
    type: path
    required: true
  force:
    description: Run the check even when the stamp matches.
    type: bool
    default: false
  timeout:
    description: Seconds the check may run before it is killed (exit code 124).
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    description: Runs the check (it is read-only); writes no stamp.
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: SGLang's check of this rank's arguments, again only when they or the venv changed
  sglang_ops.cluster.stamped_check:
    argv: [/opt/sglang/venv/bin/python, /usr/local/lib/sglang-ops/sglang-launch.py, --check, --model-path, /m]
    user: sglang
    venv: /opt/sglang/venv
    files: [/usr/local/lib/sglang-ops/sglang-launch.py]
    stamp: /etc/sglang/checked/sglang-server-llama
  register: validation
"""

RETURN = r"""
rc:
  description: The check's exit code (0 when RV(cached)).
  type: int
  returned: always
stdout:
  description: Its output; when RV(cached), the tail kept from the run that passed.
  type: str
  returned: always
stderr:
  description: Its error output (empty when RV(cached)).
  type: str
  returned: always
stdout_lines:
  description: RV(stdout) split into lines.
  type: list
  elements: str
  returned: always
stderr_lines:
  description: RV(stderr) split into lines.
  type: list
  elements: str
  returned: always
cached:
  description: Whether the check was skipped because it passed before with the same inputs.
  type: bool
  returned: always
written:
  description: With C(record), whether the stamp was written (never in check mode).
  type: bool
  returned: when action is record
key:
  description: The sha256 key of the inputs.
  type: str
  returned: always
"""

import os
import pwd
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils.stamp import (
    matches, read_stamp, stamp_key, venv_paths, write_stamp)


def as_user(name):
    """preexec function dropping to the user (and its groups), and the clean environment."""
    entry = pwd.getpwnam(name)

    def drop():
        os.setgid(entry.pw_gid)
        os.initgroups(name, entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop, {"HOME": entry.pw_dir, "USER": name, "LOGNAME": name}, entry.pw_dir


def main():
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str", required=True),
            action=dict(type="str", choices=["run", "compare", "record"], default="run"),
            environ=dict(type="dict", default={}),
            user=dict(type="str"),
            venv=dict(type="path"),
            files=dict(type="list", elements="path", default=[]),
            inputs=dict(type="raw"),
            stamp=dict(type="path", required=True),
            force=dict(type="bool", default=False),
            timeout=dict(type="int", default=900),
        ),
        supports_check_mode=True,
    )
    p = module.params
    environ = {str(k): str(v) for k, v in p["environ"].items()}
    paths = (venv_paths(p["venv"]) if p["venv"] else []) + list(p["files"])
    key = stamp_key(p["argv"], environ, paths, p["inputs"])
    result = dict(changed=False, key=key)
    if p["action"] == "record":
        written = False if module.check_mode else write_stamp(p["stamp"], key)
        module.exit_json(rc=0, stdout="", stderr="", stdout_lines=[], stderr_lines=[], written=written, cached=False,
                         **result)
    stamp = read_stamp(p["stamp"])
    if p["action"] == "compare":
        module.exit_json(rc=0, stdout="", stderr="", stdout_lines=[], stderr_lines=[],
                         cached=matches(stamp, key) and not p["force"], **result)
    if matches(stamp, key) and not p["force"]:
        out = stamp["stdout"]
        module.exit_json(rc=0, stdout=out, stderr="", stdout_lines=out.splitlines(), stderr_lines=[], cached=True,
                         **result)

    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    preexec, cwd = None, "/"
    if p["user"]:
        try:
            preexec, identity, cwd = as_user(p["user"])
        except KeyError:
            module.fail_json(msg="stamped_check: no user %r on this node" % p["user"], cached=False, **result)
        env.update(identity)
        cwd = cwd if os.path.isdir(cwd) else "/"
    env.update(environ)
    try:
        proc = subprocess.run(p["argv"], env=env, cwd=cwd, preexec_fn=preexec, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=p["timeout"], check=False)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = 124, exc.stdout or b"", (exc.stderr or b"") + b"\ntimed out after %d s" % p["timeout"]
    except OSError as exc:
        module.fail_json(msg="stamped_check: cannot run %s: %s" % (p["argv"][0], exc), cached=False, **result)
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if rc == 0 and not module.check_mode:
        try:
            write_stamp(p["stamp"], key, out)
        except OSError as exc:
            module.warn("stamped_check: the stamp %s was not written (%s): the check runs again next time"
                        % (p["stamp"], exc))
    module.exit_json(rc=rc, stdout=out, stderr=err, stdout_lines=out.splitlines(),
                     stderr_lines=err.splitlines(), cached=False, **result)


if __name__ == "__main__":
    main()
