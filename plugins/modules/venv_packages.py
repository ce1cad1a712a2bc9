#!/usr/bin/python
"""Module: a venv with exact package pins, changed only when a pin does not hold."""

from __future__ import annotations

DOCUMENTATION = r"""
module: venv_packages
short_description: Keep a Python venv at exact package versions
version_added: 0.1.0
description:
  - Creates the venv at O(path) with O(python) when it does not exist, reads the versions
    installed in it, and runs pip only for pins that do not hold. A second run changes nothing.
  - A local build label counts as the pinned version (C(torch 2.13.0+cpu) satisfies C(torch==2.13.0)).
  - In check mode, reports which packages would be installed or changed, without touching the node.
  - Needs nothing on the node's system Python beyond the standard library (unlike M(ansible.builtin.pip)).
  - On a node with several CPUs, pip installs without compiling, and the installed distributions'
    C(.py) files are then compiled by one worker per CPU (at most 32) instead of pip's one at a time.
options:
  path:
    description: Directory of the venv.
    type: path
    required: true
  requirements:
    description:
      - Exact pins, C(name==version).
      - When every pin carries C(--hash=sha256:...) words (a hashed lock), pip gets them as a requirements
        file with C(--require-hashes) and refuses any file whose hash differs; all pins or none must carry hashes.
    type: list
    elements: str
    required: true
  pip_args:
    description: Extra pip options, e.g. C(--no-index --find-links URL) for a wheelhouse.
    type: list
    elements: str
    default: []
  no_deps:
    description:
      - Install with C(--no-deps), for a complete lock (every distribution pinned) rather than
        a few top-level pins that pip completes.
    type: bool
    default: false
  python:
    description: Interpreter that creates the venv.
    type: path
    default: /usr/bin/python3
attributes:
  check_mode:
    support: full
    description: Reports the packages that would be installed or changed, without touching the node.
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: Install Ray and torch from the controller's wheelhouse
  sglang_ops.cluster.venv_packages:
    path: /opt/sglang/venv
    requirements: [ray==2.60.0, torch==2.13.0]
    pip_args: [--no-index, --find-links, "http://192.0.2.1:8765/", --trusted-host, 192.0.2.1]
"""

RETURN = r"""
installed:
  description: Versions in the venv after the run (normalized names).
  type: dict
  returned: always
  sample: {ray: 2.60.0, torch: 2.13.0+cpu}
changes:
  description: Pins that did not hold before the run, with the version found (null when absent).
  type: list
  elements: dict
  returned: always
  sample: [{name: ray, want: 2.60.0, have: 2.59.0}]
created:
  description: Whether the venv itself was (or in check mode, would be) created.
  type: bool
  returned: always
compiled:
  description:
    - The installed files compiled by the module's workers (C(jobs), one per CPU); C(failed) counts
      the files no Python of the venv's version can compile, which pip skips as silently.
      C(jobs) 0 when pip compiled (one CPU) or nothing was installed.
  type: dict
  returned: always
  sample: {jobs: 16, files: 41250, failed: 1}
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils.install import (
    COMPILE_INSTALLED,
    READ_VERSIONS,
    compile_jobs,
    installed_changed,
    pip_requirements,
    plan_install,
)


def read_installed(module, venv_python):
    rc, out, err = module.run_command([venv_python, "-c", READ_VERSIONS])
    if rc != 0:
        module.fail_json(msg="cannot read the packages of %s: %s" % (venv_python, err.strip()))
    return json.loads(out)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            requirements=dict(type="list", elements="str", required=True),
            pip_args=dict(type="list", elements="str", default=[]),
            no_deps=dict(type="bool", default=False),
            python=dict(type="path", default="/usr/bin/python3"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    venv_python = os.path.join(p["path"], "bin", "python")
    created = not os.path.exists(venv_python)
    try:
        installed = {} if created else read_installed(module, venv_python)
        changes = plan_install(p["requirements"], installed)
        req_args, req_file = pip_requirements(p["requirements"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=bool(changes) or created, created=created, changes=changes,
                  installed=installed, compiled={"jobs": 0, "files": 0, "failed": 0})
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)
    if created:
        module.run_command([p["python"], "-m", "venv", p["path"]], check_rc=True)
    jobs = compile_jobs(len(os.sched_getaffinity(0))) if changes else 0
    if changes:
        if req_file is not None:
            # Hashes are valid only in a requirements file; it holds nothing secret.
            path = os.path.join(module.tmpdir, "requirements.txt")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(req_file)
            req_args = req_args + [path]
        rc, out, err = module.run_command(
            [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir",
             "--no-input"] + (["--no-deps"] if p["no_deps"] else []) + (["--no-compile"] if jobs else [])
            + p["pip_args"] + req_args)
        if rc != 0:
            module.fail_json(msg="pip install failed in %s: %s" % (p["path"], (err or out).strip()[-3000:]),
                             **result)
    result["installed"] = read_installed(module, venv_python)
    if jobs:
        names = installed_changed(installed, result["installed"])
        rc, out, err = module.run_command([venv_python, "-c", COMPILE_INSTALLED, str(jobs)] + names)
        if rc != 0:
            module.fail_json(msg="compiling the installed files in %s failed: %s" % (p["path"], err.strip()[-3000:]),
                             **result)
        result["compiled"] = dict(json.loads(out), jobs=jobs)
    still = plan_install(p["requirements"], result["installed"])
    if still:
        module.fail_json(msg="pins still not met after pip install: %s" % still, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
