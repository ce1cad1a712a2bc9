"""Secrets out of what the collection shows: the launcher's journal redactor and the controller's
`redact` filter, the same patterns, and the launcher's credentials-to-flags mapping."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import redact as controller
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import CREDENTIALS
from ansible_collections.sglang_ops.cluster.plugins.module_utils.server import ROUTER_CREDENTIALS, SERVER_CREDENTIALS

LAUNCHER = Path(__file__).resolve().parents[2] / "roles/sglang_server/files/sglang-launch.py"
SPEC = importlib.util.spec_from_file_location("sglang_launch", LAUNCHER)
launch = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(launch)
KEY, ADMIN = "sk-SENTINEL-0123456789", "adm-SENTINEL-9876543210"

CASES = [
    # SGLang 0.5.x's own start line (server_args=ServerArgs(...)), keys in it.
    ("server_args=ServerArgs(model_path='m', api_key='%s', admin_api_key='%s', port=1)" % (KEY, ADMIN),
     "server_args=ServerArgs(model_path='m', api_key='<redacted>', admin_api_key='<redacted>', port=1)"),
    # No key set: nothing to hide, nothing changed.
    ("ServerArgs(api_key=None, admin_api_key=None)", "ServerArgs(api_key=None, admin_api_key=None)"),
    # JSON, Rust Debug (the router), a header, the key on its own in a traceback.
    ('{"api_key": "abc", "n": 1}', '{"api_key": "<redacted>", "n": 1}'),
    ('RouterConfig { api_key: Some("xyz"), port: 1 }', 'RouterConfig { api_key: Some("<redacted>"), port: 1 }'),
    ("Authorization: 'Bearer q'", "Authorization: '<redacted>'"),
    ("ValueError: bad key %s" % KEY, "ValueError: bad key <redacted>"),
    ("--admin-api-key %s" % ADMIN, "--admin-api-key <redacted>"),
    ("nothing secret here", "nothing secret here"),
]


@pytest.mark.parametrize("line, want", CASES)
def test_launcher_and_filter_redact_alike(line, want):
    assert controller.redact(line, [KEY, ADMIN]) == want
    assert launch.redact(line.encode(), [KEY.encode(), ADMIN.encode()]) == want.encode()


def test_filter_ignores_empty_and_tiny_secrets():
    assert controller.redact("a b c", ["", None, "a"]) == "a b c"
    assert controller.redact(None) == ""


def test_patterns_are_the_same():
    assert launch.SECRET_FIELD.pattern.decode() == controller.SECRET_FIELD.pattern


def test_launcher_maps_every_credential_the_units_load(tmp_path):
    """Each credential id the plan names for the units has its flag in the launcher."""
    assert set(SERVER_CREDENTIALS) <= set(launch.SERVER_FLAGS) <= set(CREDENTIALS)
    assert set(ROUTER_CREDENTIALS) <= set(launch.ROUTER_FLAGS) <= set(CREDENTIALS)
    (tmp_path / "api_key").write_text(KEY + "\n")
    (tmp_path / "admin_api_key").write_text(ADMIN)
    (tmp_path / "tls_key").write_text("-----BEGIN PRIVATE KEY-----\n")
    words, secrets = launch.credential_args(launch.SERVER_FLAGS, str(tmp_path))
    assert words == ["--admin-api-key", ADMIN, "--api-key", KEY, "--ssl-keyfile", str(tmp_path / "tls_key")]
    assert secrets == [ADMIN, KEY]
    (tmp_path / "tls_cert").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "tls_ca").write_text("-----BEGIN CERTIFICATE-----\n")
    words, secrets = launch.credential_args(launch.ROUTER_FLAGS, str(tmp_path))
    assert words == ["--control-plane-api-keys", "sglang-ops:sglang_ops admin:admin:" + ADMIN, "--api-key", KEY,
                     "--ca-cert-paths", str(tmp_path / "tls_ca"), "--tls-cert-path", str(tmp_path / "tls_cert"),
                     "--tls-key-path", str(tmp_path / "tls_key")]
    assert secrets == [ADMIN, KEY]
    assert launch.credential_args(launch.SERVER_FLAGS, "") == ([], [])


def test_redactor_covers_children_and_outlives_a_killed_parent(tmp_path):
    """Every process of the unit writes through the redactor, also a child killed with its tree
    and the parent's final traceback (as SGLang's kill_process_tree and a failed start do)."""
    script = tmp_path / "run.py"
    script.write_text(
        "import importlib.util, os, subprocess, sys\n"
        "spec = importlib.util.spec_from_file_location('l', %r)\n"
        "l = importlib.util.module_from_spec(spec); spec.loader.exec_module(l)\n"
        "l.start_redactor([%r])\n"
        "print(\"server_args=ServerArgs(api_key='%s')\", flush=True)\n"
        "subprocess.run([sys.executable, '-c', 'import sys; sys.stderr.write(\"child %s\\\\n\")'])\n"
        "raise RuntimeError('no GPU; key was %s')\n" % (str(LAUNCHER), KEY, KEY, KEY, KEY))
    proc = subprocess.run([sys.executable, str(script)], check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = proc.stdout
    assert proc.returncode == 1
    assert KEY not in out
    assert "api_key='<redacted>'" in out and "child <redacted>" in out
    assert "RuntimeError: no GPU; key was <redacted>" in out


def test_role_writes_every_credential_the_units_get():
    """The sglang_server role writes a file for each credential id a unit may stage (a unit that
    stages a file nobody wrote fails to start)."""
    import yaml

    mapping = yaml.safe_load((LAUNCHER.parents[1] / "vars/main.yml").read_text())["_sglang_server_secrets"]
    assert set(mapping) == set(SERVER_CREDENTIALS) | set(ROUTER_CREDENTIALS)
