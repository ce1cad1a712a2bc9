"""Shared by the unit tests: run one of the collection's modules for real, as Ansible would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def module_run(tmp_path):
    """module_run(name, check=False, diff=False, **args) -> the module's JSON result; cwd tmp_path."""

    def run(name, check=False, diff=False, **args):
        args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        args_file = tmp_path / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        proc = subprocess.run([sys.executable, str(ROOT / "plugins/modules" / (name + ".py")), str(args_file)],
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path, check=False,
                              env=dict(os.environ, PYTHONPATH=str(ROOT / "collections")))
        return json.loads(proc.stdout)

    return run
