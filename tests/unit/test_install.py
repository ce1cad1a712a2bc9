"""Install decisions: pip sources and which pins need work."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.install import (
    COMPILE_INSTALLED,
    compile_jobs,
    install_requirements,
    installed_changed,
    normalize_name,
    parse_pin,
    pinned_requirements,
    pip_requirements,
    pip_source_args,
    plan_install,
    version_matches,
)


@pytest.mark.parametrize("mode,url,index,allow_http,expected", [
    ("online", None, None, False, []),
    ("online", None, "https://mirror/simple", False, ["--index-url", "https://mirror/simple"]),
    ("offline", "http://10.0.0.1:8765/", None, True,
     ["--no-index", "--find-links", "http://10.0.0.1:8765/", "--trusted-host", "10.0.0.1"]),
    ("offline", "https://wheels.example/", None, False, ["--no-index", "--find-links", "https://wheels.example/"]),
    ("offline", "/srv/wheels", None, False, ["--no-index", "--find-links", "/srv/wheels"]),
])
def test_pip_source_args(mode, url, index, allow_http, expected):
    assert pip_source_args(mode, url, index, allow_http) == expected


@pytest.mark.parametrize("mode,url,message", [
    ("offline", "", "needs sglang_wheelhouse_url"),
    ("sneakernet", None, "use one of online, offline"),
    # Plain HTTP only when the inventory says so (sglang_wheelhouse_allow_http).
    ("offline", "http://10.0.0.1:8765/", "plain HTTP"),
])
def test_pip_source_args_refused(mode, url, message):
    with pytest.raises(ValueError, match=message):
        pip_source_args(mode, url)


H1, H2 = "--hash=sha256:" + "a" * 64, "--hash=sha256:" + "b" * 64


@pytest.mark.parametrize("requirements, args, text", [
    (["ray==2.60.0", "torch==2.13.0"], ["ray==2.60.0", "torch==2.13.0"], None),
    # A hashed lock: a requirements file (hashes are valid only there) and --require-hashes.
    (["ray==2.60.0 " + H1, "torch==2.13.0 %s %s" % (H1, H2)], ["--require-hashes", "-r"],
     "ray==2.60.0 %s\ntorch==2.13.0 %s %s\n" % (H1, H1, H2)),
])
def test_pip_requirements(requirements, args, text):
    assert pip_requirements(requirements) == (args, text)


@pytest.mark.parametrize("requirements, message", [
    (["ray==2.60.0 " + H1, "torch==2.13.0"], "needs a hash on every line"),
    (["ray==2.60.0 --hash=md5:00"], "not --hash=sha256"),
    (["ray==2.60.0 --hash=sha256:" + "A" * 64], "not --hash=sha256"),
    (["ray==2.60.0 --no-deps"], "not --hash=sha256"),
])
def test_pip_requirements_refused(requirements, message):
    with pytest.raises(ValueError, match=message):
        pip_requirements(requirements)


def test_hashed_pins_parse_and_plan_like_plain_ones():
    assert parse_pin("Ray==2.60.0 " + H1) == ("ray", "2.60.0")
    assert plan_install(["ray==2.60.0 " + H1], {"ray": "2.60.0"}) == []
    versions = {"ray": "2.60.0"}
    assert install_requirements(["ray"], versions, ["ray==2.60.0 " + H1]) == ["ray==2.60.0 " + H1]


@pytest.mark.parametrize("installed,pinned,ok", [
    ("2.13.0+cpu", "2.13.0", True),
    ("2.13.0", "2.13.0", True),
    ("2.13.0+cu128", "2.13.0+cpu", False),
    ("2.13.1", "2.13.0", False),
    ("2.60.0", "2.6.0", False),
])
def test_version_matches(installed, pinned, ok):
    assert version_matches(installed, pinned) is ok


def test_plan_install_only_what_differs():
    installed = {"ray": "2.59.0", "torch": "2.13.0+cpu", "typing-extensions": "4.16.0"}
    todo = plan_install(["ray==2.60.0", "torch==2.13.0", "Typing_Extensions==4.16.0", "numpy==2.3.5"],
                        installed)
    assert todo == [{"name": "ray", "want": "2.60.0", "have": "2.59.0"},
                    {"name": "numpy", "want": "2.3.5", "have": None}]


@pytest.mark.parametrize("req", ["ray", "ray>=2.60", "ray==", "==1.0", "ray==2.*"])
def test_loose_pins_refused(req):
    with pytest.raises(ValueError, match="exact pin"):
        parse_pin(req)


def test_pinned_requirements():
    assert pinned_requirements(["ray"], {"ray": "2.60.0"}) == ["ray==2.60.0"]
    with pytest.raises(ValueError, match="no version pinned for torch"):
        pinned_requirements(["ray", "torch"], {"ray": "2.60.0"})
    assert normalize_name("Foo_Bar.baz") == "foo-bar-baz"


LOCK = ["sglang==0.5.23", "torch==2.13.0", "Ray==2.60.0", "msgpack==1.2.4"]


def test_install_requirements_without_lock_is_the_pins():
    assert install_requirements(["ray"], {"ray": "2.60.0"}) == ["ray==2.60.0"]
    assert install_requirements(["ray"], {"ray": "2.60.0"}, []) == ["ray==2.60.0"]


def test_install_requirements_takes_the_whole_lock():
    versions = {"sglang": "0.5.23", "torch": "2.13.0", "ray": "2.60.0"}
    assert install_requirements(["sglang", "ray"], versions, LOCK) == LOCK


@pytest.mark.parametrize("packages, versions, lock, message", [
    (["ray"], {"ray": "2.59.0"}, LOCK, "pins ray 2.59.0, but sglang_lock has ray==2.60.0"),
    (["ray"], {"numpy": "2.3.5"}, LOCK, "sglang_lock has no numpy"),
    (["numpy"], {}, LOCK, "sglang_install_packages lists numpy"),
    (["ray"], {}, LOCK + ["ray==2.59.0"], "pins ray twice"),
    (["ray"], {}, ["ray>=2"], "not an exact pin"),
])
def test_install_requirements_refused(packages, versions, lock, message):
    with pytest.raises(ValueError, match=message):
        install_requirements(packages, versions, lock)


@pytest.mark.parametrize("cpus, jobs", [
    (1, 0), (0, 0), (None, 0), (True, 0), (2, 2), (16, 16), (32, 32), (128, 32),
])
def test_compile_jobs(cpus, jobs):
    # One CPU: pip compiles as it always did; more: one worker each, capped.
    assert compile_jobs(cpus) == jobs


@pytest.mark.parametrize("before, after, names", [
    ({}, {"ray": "2.60.0", "torch": "2.13.0"}, ["ray", "torch"]),
    ({"ray": "2.59.0", "torch": "2.13.0"}, {"ray": "2.60.0", "torch": "2.13.0"}, ["ray"]),
    # pip completing loose pins installs distributions nobody pinned: compiled too.
    ({"ray": "2.60.0"}, {"ray": "2.60.0", "msgpack": "1.1.0"}, ["msgpack"]),
    ({"ray": "2.60.0"}, {"ray": "2.60.0"}, []),
])
def test_installed_changed(before, after, names):
    assert installed_changed(before, after) == names


def fake_distribution(root, name, files):
    """A distribution as pip leaves it: its files, and a dist-info naming them in RECORD."""
    info = root / ("%s-1.0.dist-info" % name.replace("-", "_"))
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n" % name)
    record = []
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        record.append("%s,," % rel)
    (info / "RECORD").write_text("\n".join(record + ["%s/RECORD,," % info.name]) + "\n")


def test_compile_installed_compiles_only_the_named_distributions(tmp_path):
    fake_distribution(tmp_path, "Good-Pkg", {"good_pkg/__init__.py": "X = 1\n", "good_pkg/sub/m.py": "def f():\n    return 2\n",
                                             "good_pkg/data.txt": "not python"})
    # As torch ships: a file only a newer Python parses.
    fake_distribution(tmp_path, "bad", {"bad/__init__.py": "", "bad/newer.py": "def f[T(x):\n    pass\n"})
    fake_distribution(tmp_path, "other", {"other/__init__.py": "Y = 2\n"})
    out = subprocess.run([sys.executable, "-c", COMPILE_INSTALLED, "2", "good-pkg", "bad"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert json.loads(out.stdout) == {"files": 4, "failed": 1}
    assert out.stderr == ""
    tag = sys.implementation.cache_tag
    for rel in ("good_pkg/__pycache__/__init__.%s.pyc" % tag, "good_pkg/sub/__pycache__/m.%s.pyc" % tag,
                "bad/__pycache__/__init__.%s.pyc" % tag):
        assert (tmp_path / rel).is_file(), rel
    assert not (tmp_path / ("bad/__pycache__/newer.%s.pyc" % tag)).exists()
    assert not (tmp_path / "other/__pycache__").exists()  # not installed in this run
