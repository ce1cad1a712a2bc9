"""Stamps of passed checks (module_utils/stamp.py) and the stamped_check module run for real."""

import os

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import stamp


def test_key_changes_with_every_input(tmp_path):
    f = tmp_path / "launcher.py"
    f.write_text("a")
    base = stamp.stamp_key(["python", "-c", "x"], {"A": "1"}, [str(f)], {"sizes": [1]})
    assert base == stamp.stamp_key(["python", "-c", "x"], {"A": "1"}, [str(f)], {"sizes": [1]})
    others = [stamp.stamp_key(["python", "-c", "y"], {"A": "1"}, [str(f)], {"sizes": [1]}),
              stamp.stamp_key(["python", "-c", "x"], {"A": "2"}, [str(f)], {"sizes": [1]}),
              stamp.stamp_key(["python", "-c", "x"], {"A": "1"}, [str(f)], {"sizes": [2]}),
              stamp.stamp_key(["python", "-c", "x"], {"A": "1"}, [str(tmp_path / "gone")], {"sizes": [1]})]
    f.write_text("bb")  # another size
    others.append(stamp.stamp_key(["python", "-c", "x"], {"A": "1"}, [str(f)], {"sizes": [1]}))
    assert base not in others and len(set(others)) == len(others)


def test_a_pip_install_changes_the_venv_key(tmp_path):
    site = tmp_path / "venv/lib/python3.11/site-packages"
    site.mkdir(parents=True)
    (tmp_path / "venv/bin").mkdir()
    (tmp_path / "venv/bin/python").write_text("")
    paths = stamp.venv_paths(str(tmp_path / "venv"))
    assert paths == [str(tmp_path / "venv/bin/python"), str(site)]
    before = stamp.stamp_key([], {}, paths)
    os.utime(site, ns=(1, 1))
    (site / "sglang-0.5.24.dist-info").mkdir()  # what pip does
    assert stamp.stamp_key([], {}, paths) != before


def test_only_a_private_stamp_of_the_reader_counts(tmp_path):
    path = tmp_path / "checked/x"
    assert stamp.write_stamp(str(path), "k1", "out" * 2000)
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700" and oct(path.stat().st_mode & 0o777) == "0o600"
    got = stamp.read_stamp(str(path))
    assert stamp.matches(got, "k1") and not stamp.matches(got, "k2") and len(got["stdout"]) == stamp.KEPT_OUTPUT
    path.chmod(0o644)  # others could have read it, and a 0666 one written it: it no longer counts
    assert stamp.read_stamp(str(path)) is None
    path.chmod(0o600)
    link = tmp_path / "checked/link"
    link.symlink_to(path)
    assert stamp.read_stamp(str(link)) is None
    for junk in ("", "[]", '{"key": 1}', "not json"):
        path.write_text(junk)
        assert stamp.read_stamp(str(path)) is None
    assert stamp.read_stamp(str(tmp_path / "missing")) is None and not stamp.matches(None, "k1")


def test_module_runs_a_check_once_per_distinct_input(tmp_path, module_run):
    counter, dep = tmp_path / "runs", tmp_path / "launcher.py"
    dep.write_text("v1")
    check = ["sh", "-c", "echo run >> %s; echo \"$CHECK_ENV\"; echo version 1" % counter]
    common = dict(argv=check, environ={"CHECK_ENV": "env-a"}, files=[str(dep)], stamp=str(tmp_path / "checked/c"))
    first = module_run("stamped_check", **common)
    assert first["rc"] == 0 and not first["cached"] and not first["changed"] and first["stdout_lines"] == ["env-a", "version 1"]
    again = module_run("stamped_check", **common)
    assert again["cached"] and again["stdout_lines"] == ["env-a", "version 1"] and again["key"] == first["key"]
    assert counter.read_text().count("run") == 1
    assert module_run("stamped_check", force=True, **common)["cached"] is False  # force runs it
    dep.write_text("v2!")  # a file it depends on changed
    assert module_run("stamped_check", **common)["cached"] is False
    other_env = dict(common)
    other_env["environ"] = {"CHECK_ENV": "env-b"}
    assert module_run("stamped_check", **other_env)["stdout_lines"][0] == "env-b"
    assert counter.read_text().count("run") == 4


def test_module_never_stamps_a_failed_check(tmp_path, module_run):
    common = dict(argv=["sh", "-c", "echo bad >&2; exit 3"], stamp=str(tmp_path / "checked/c"))
    for _attempt in range(2):
        result = module_run("stamped_check", **common)
        assert result["rc"] == 3 and not result["cached"] and result["stderr_lines"] == ["bad"]
    assert not (tmp_path / "checked/c").exists()
    slow = module_run("stamped_check", argv=["sleep", "5"], timeout=1, stamp=str(tmp_path / "checked/s"))
    assert slow["rc"] == 124 and "timed out after 1 s" in slow["stderr"]


def test_module_compare_and_record(tmp_path, module_run):
    common = dict(argv=['{"rank": 0}'], stamp=str(tmp_path / "checked/collective"))
    assert module_run("stamped_check", action="compare", **common)["cached"] is False
    recorded = module_run("stamped_check", action="record", **common)
    assert recorded["written"] and not recorded["changed"]
    assert module_run("stamped_check", action="compare", **common)["cached"] is True
    assert module_run("stamped_check", action="compare", force=True, **common)["cached"] is False
    assert module_run("stamped_check", action="compare", argv=['{"rank": 1}'], stamp=common["stamp"])["cached"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="not run: dropping to another user needs root")
def test_module_runs_the_check_as_the_user(tmp_path, module_run):
    tmp_path.chmod(0o755)
    result = module_run("stamped_check", argv=["sh", "-c", "id -un; echo $HOME"], user="nobody", stamp=str(tmp_path / "checked/u"))
    assert result["rc"] == 0 and result["stdout_lines"][0] == "nobody"
