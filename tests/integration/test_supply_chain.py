"""What pip installs as root is what the lock says: the lab's lock carries the wheelhouse's own
hashes, and the venv_packages module installs a hashed lock with --require-hashes, refusing a wheel
whose hash differs (on a lab host, from the lab's wheelhouse, through its proxy)."""

import json

import yaml

from conftest import H1, INVENTORY, ROOT, on_host, playbook
import lab

LOCK = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/versions.yml").read_text())["sglang_lock"]
SHARED = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/lab.yml").read_text())
VENV = "/tmp/sglang-ops-hash-test"


def test_lab_lock_hashes_are_the_wheelhouse_files(lab_hosts, capsys):
    lab.lock_hashes()
    printed = [line.strip()[2:] for line in capsys.readouterr().out.splitlines()]
    assert printed == LOCK


def install(tmp_path, requirement):
    play = tmp_path / "hash.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": H1, "gather_facts": False,
        "environment": {"http_proxy": SHARED["cluster_http_proxy"], "https_proxy": SHARED["cluster_https_proxy"]},
        "tasks": [{"name": "venv with a hashed pin", "sglang_ops.cluster.venv_packages": {
            "path": VENV, "requirements": [requirement], "no_deps": True,
            "pip_args": ["--no-index", "--find-links", SHARED["sglang_wheelhouse_url"],
                         "--trusted-host", SHARED["sglang_wheelhouse_url"].split("/")[2].split(":")[0]]}}]}]))
    return playbook(str(play), INVENTORY, "-v")


def test_hashed_lock_installs_only_the_locked_file(deployed, tmp_path):
    pin = next(line for line in LOCK if line.startswith("six=="))
    name_version, good = pin.split()
    bad = "--hash=sha256:" + ("0" if good[-1] != "0" else "1") * 64
    try:
        run = install(tmp_path, "%s %s" % (name_version, bad))
        assert run.rc != 0 and "DO NOT MATCH THE HASHES" in run.out, run.out[-3000:]
        assert "six" not in json.loads(on_host(H1, "%s/bin/python -c 'import importlib.metadata as m, json; "
                                                   "print(json.dumps([d.metadata[\"Name\"] for d in m.distributions()]))'"
                                                   % VENV))
        run = install(tmp_path, pin)
        assert run.rc == 0 and run.recap[H1]["changed"] == 1, run.out[-3000:]
        assert on_host(H1, "%s/bin/python -c 'import six; print(six.__version__)'" % VENV).strip() == name_version.split("==")[1]
    finally:
        on_host(H1, "rm -rf %s" % VENV)
