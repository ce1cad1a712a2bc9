"""node_files: the decisions of module_utils/node_files.py, and the module run for real on tmp_path."""

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import node_files as nf

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins/modules/node_files.py"
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
UID, GID = os.getuid(), os.getgid()


def st(mode, uid=UID, gid=GID):
    return SimpleNamespace(st_mode=mode, st_uid=uid, st_gid=gid)


REG = stat.S_IFREG


@pytest.mark.parametrize("found, content, mode, expected", [
    (None, b"x", 0o644, {"write"}),                                   # missing
    ((st(REG | 0o644), b"x"), b"x", 0o644, set()),                    # as wanted
    ((st(REG | 0o644), b"x"), b"y", 0o644, {"write"}),                # other content
    ((st(REG | 0o644), b"x"), b"x\n", 0o644, {"write"}),              # a newline counts
    ((st(REG | 0o666), b"x"), b"x", 0o644, {"chmod"}),                # widened by hand
    ((st(REG | 0o644, uid=UID + 1), b"x"), b"x", 0o644, {"chown"}),   # another owner
    ((st(REG | 0o600, gid=GID + 1), b"x"), b"x", 0o644, {"chown", "chmod"}),
    ((st(stat.S_IFLNK | 0o777), None), b"x", 0o644, {"write"}),       # a symlink is replaced
])
def test_file_actions(found, content, mode, expected):
    assert nf.file_actions(found, content, UID, GID, mode) == expected


@pytest.mark.parametrize("found, mode, expected", [
    (None, 0o750, {"create"}),
    (st(stat.S_IFDIR | 0o750), 0o750, set()),
    (st(stat.S_IFDIR | 0o755), 0o750, {"chmod"}),
    (st(stat.S_IFDIR | 0o750, uid=UID + 1), 0o750, {"chown"}),
])
def test_directory_actions(found, mode, expected):
    assert nf.directory_actions(found, UID, GID, mode) == expected


def test_a_file_where_a_directory_belongs_is_refused():
    with pytest.raises(nf.NodeFilesError, match="not a directory"):
        nf.directory_actions(st(REG | 0o644), UID, GID, 0o755)


@pytest.mark.parametrize("mode, value", [("0644", 0o644), ("600", 0o600), ("0755", 0o755), ("4755", 0o4755)])
def test_modes(mode, value):
    assert nf.parse_mode(mode) == value


@pytest.mark.parametrize("mode", ["", "0o644", "u+x", "08", "12345", "-1", "0644 "])
def test_bad_modes_are_refused(mode):
    with pytest.raises(nf.NodeFilesError, match="octal mode"):
        nf.parse_mode(mode)


@pytest.mark.parametrize("state, needed", [("enabled\n", False), ("static\n", False), ("alias", False),
                                           ("disabled\n", True), ("masked\n", True), ("", True), ("linked", True)])
def test_needs_enable(state, needed):
    assert nf.needs_enable(state) is needed


@pytest.mark.parametrize("kind, reload", [("unit", True), ("dropin", True), ("file", False)])
def test_needs_reload(kind, reload):
    assert nf.needs_reload(kind) is reload


def test_unknown_names_are_named():
    with pytest.raises(nf.NodeFilesError, match="no user 'no-such-user-x'"):
        nf.ids("no-such-user-x", MY_GROUP)
    with pytest.raises(nf.NodeFilesError, match="no group 'no-such-group-x'"):
        nf.ids(ME, "no-such-group-x")


def test_write_is_atomic_and_never_wider_than_asked(tmp_path):
    target = tmp_path / "secret"
    target.symlink_to(tmp_path / "elsewhere")
    nf.write_atomically(str(target), b"s3cret", UID, GID, 0o600)
    assert not target.is_symlink() and target.read_bytes() == b"s3cret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (tmp_path / "elsewhere").exists()  # the link was replaced, not followed
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary file left


def test_remove(tmp_path):
    (tmp_path / "f").write_text("x")
    assert nf.remove(str(tmp_path / "f")) is True
    assert nf.remove(str(tmp_path / "f")) is False
    (tmp_path / "d").mkdir()
    with pytest.raises(nf.NodeFilesError, match="is a directory"):
        nf.remove(str(tmp_path / "d"))


def test_module_converges_then_changes_nothing(tmp_path, module_run):
    conf = tmp_path / "conf"
    args = dict(directories=[dict(path=str(conf), owner=ME, group=MY_GROUP, mode="0750")],
                files=[dict(path=str(conf / "a.txt"), content="alpha\n", owner=ME, group=MY_GROUP, mode="0644")],
                secrets={str(conf / "key"): "hunter2-secret"}, secrets_owner=ME, secrets_group=MY_GROUP,
                absent=[str(conf / "old.env"), str(conf / "never-there")])
    conf.mkdir(mode=0o755)
    (conf / "old.env").write_text("KEY=x")

    planned = module_run("node_files", check=True, diff=True, **args)
    assert planned["changed"] and sorted(planned["written"]) == [str(conf / "a.txt"), str(conf / "key")]
    assert planned["removed"] == [str(conf / "old.env")]
    assert (conf / "old.env").exists() and not (conf / "a.txt").exists()  # check mode wrote nothing
    assert [d["after"] for d in planned["diff"]] == ["alpha\n"]  # the secret has no diff
    assert "hunter2-secret" not in json.dumps(planned)

    first = module_run("node_files", **args)
    assert first["changed"] and not first.get("failed"), first
    assert sorted(first["changed_paths"]) == sorted([str(conf), str(conf / "a.txt"), str(conf / "key"), str(conf / "old.env")])
    assert stat.S_IMODE(conf.stat().st_mode) == 0o750
    assert (conf / "a.txt").read_text() == "alpha\n" and stat.S_IMODE((conf / "key").stat().st_mode) == 0o600
    assert not (conf / "old.env").exists()
    assert "hunter2-secret" not in json.dumps(first)

    again = module_run("node_files", **args)
    assert not again["changed"] and again["changed_paths"] == [] and not again["daemon_reload"], again

    os.chmod(conf / "key", 0o644)  # drift: only the mode is put back, the content is not rewritten
    inode = (conf / "key").stat().st_ino
    fixed = module_run("node_files", **args)
    assert fixed["changed_paths"] == [str(conf / "key")] and fixed["written"] == []
    assert stat.S_IMODE((conf / "key").stat().st_mode) == 0o600 and (conf / "key").stat().st_ino == inode


def test_module_names_the_path_and_the_missing_user(tmp_path, module_run):
    out = module_run("node_files", files=[dict(path=str(tmp_path / "x"), content="x", owner="no-such-user-x", group=MY_GROUP)])
    assert out["failed"] and out["msg"] == ("node_files: %s: no user 'no-such-user-x' on this node "
                                            "(create it before the files it owns)" % (tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command, argv", [("/usr/sbin/nft -c -f %s", ["/usr/sbin/nft", "-c", "-f", "/t/x"]),
                                           ("visudo -cf%s", None), ("nft -c -f", None), ("cat %s %s", None), ("", None)])
def test_validate_argv(command, argv):
    if argv is None:
        with pytest.raises(nf.NodeFilesError, match="one %s word"):
            nf.validate_argv(command, "/t/x")
    else:
        assert nf.validate_argv(command, "/t/x") == argv


def test_a_rejected_content_keeps_the_old_file(tmp_path, module_run):
    rules = tmp_path / "rules"
    rules.write_text("ok\n")
    wanted = dict(path=str(rules), owner=ME, group=MY_GROUP, mode="0640", validate="grep -q ok %s")
    out = module_run("node_files", files=[dict(wanted, content="accept everything\n")])
    assert out["failed"] and "grep rejects the new content (the file is unchanged)" in out["msg"], out
    assert rules.read_text() == "ok\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.json", "rules"]  # no temporary file left
    out = module_run("node_files", files=[dict(wanted, content="ok, new\n")])
    assert out["written"] == [str(rules)] and rules.read_text() == "ok, new\n"


def test_check_mode_on_a_fresh_node_reports_files_of_a_user_not_yet_created(tmp_path, module_run):
    (tmp_path / "conf").mkdir()
    args = dict(directories=[dict(path=str(tmp_path / "conf"), owner=ME, group="no-such-group-x", mode="0750")],
                files=[dict(path=str(tmp_path / "conf/x"), content="x", owner="no-such-user-x", group=MY_GROUP)])
    planned = module_run("node_files", check=True, **args)
    assert not planned.get("failed") and planned["written"] == [str(tmp_path / "conf/x")], planned
    assert str(tmp_path / "conf") in planned["changed_paths"]
    assert module_run("node_files", **args)["failed"]  # for real, the missing group is an error


def test_a_multi_line_secret_reaches_no_log_and_no_result(tmp_path, monkeypatch):
    # Ansible logs each module's invocation through syslog/journal; a multi-line secret nested in a
    # list option escaped its masking there (seen in the lab's journal). Secrets are one top-level
    # no_log option now, logged as NOT_LOGGING_PARAMETER.
    key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"
    logged = tmp_path / "logged"
    shim = tmp_path / "syslog.py"  # stands in for the syslog module the journal gets lines from
    shim.write_text("LOG_INFO = LOG_USER = 0\ndef openlog(*a, **k): pass\n"
                    "def syslog(*a):\n    open(%r, 'a').write(repr(a) + '\\n')\n" % str(logged))
    monkeypatch.setenv("PYTHONPATH", "%s:%s" % (tmp_path, ROOT / "collections"))
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {  # as Ansible sends it for a task without no_log
        "_ansible_no_log": False, "secrets": {str(tmp_path / "tls-key.pem"): key}, "secrets_owner": ME, "secrets_group": MY_GROUP}}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], stdout=subprocess.PIPE, text=True, check=False)
    assert json.loads(proc.stdout)["written"] == [str(tmp_path / "tls-key.pem")]
    assert "MIGHAgEAMBMGByqGSM49" not in proc.stdout
    assert "NOT_LOGGING_PARAMETER" in logged.read_text() and "MIGHAgEAMBMGByqGSM49" not in logged.read_text()


def test_secrets_need_absolute_paths(module_run):
    out = module_run("node_files", secrets={"relative/key": "x"})
    assert out["failed"] and out["msg"] == "node_files: secrets: 'relative/key' is not an absolute path"
