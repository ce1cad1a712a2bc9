"""Stamps of checks that passed: a re-run repeats a check only when what it judged changed.

A stamp is a 0600 file of root (the module's user under become) holding the key of the inputs a check passed with (its argv, its
environment, the state of the venv it ran and any file it reads) and the tail of its output. A
missing, unreadable or different stamp only costs running the check again: stamps never make a
check pass that has not passed with exactly these inputs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import stat

# The tail of a passing check's output kept in its stamp, so a skipped check still reports
# (e.g. the SGLang version that accepted the arguments).
KEPT_OUTPUT = 2048
# What of a venv a pip install, uninstall or upgrade changes: its interpreter and the entries of
# its site-packages directories (every install adds or removes a *.dist-info directory, which
# changes the directory's mtime).
VENV_PATHS = ("bin/python", "lib/python*/site-packages", "lib64/python*/site-packages")


def venv_paths(venv):
    """The paths whose state stands for the venv's installed packages."""
    found = []
    for pattern in VENV_PATHS:
        found.extend(sorted(glob.glob(os.path.join(venv, pattern))))
    return found


def path_state(path):
    """What a change of the path changes: type, inode, size, mtime (ns); None when missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns]


def stamp_key(argv, environ, paths, inputs=None):
    """sha256 of everything the check depends on; any change gives another key."""
    material = {"argv": list(argv), "environ": sorted((environ or {}).items()),
                "paths": [[p, path_state(p)] for p in paths], "inputs": inputs}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def read_stamp(path):
    """The stamp's {key, stdout} if it is a regular 0600 file of the reader (root under become),
    else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        # Only a stamp nobody else could have written counts.
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077 or st.st_size > 65536:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = None
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        if fd is not None:
            os.close(fd)
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return None
    return {"key": data["key"], "stdout": str(data.get("stdout", ""))}


def matches(stamp, key):
    return stamp is not None and stamp["key"] == key


def write_stamp(path, key, stdout="", keep=KEPT_OUTPUT):
    """Write the stamp atomically: 0600, in a directory made 0700 (with any missing parent: the
    roles set the configuration directory's owner and mode when they reach it). `keep`: how much
    of stdout's tail is kept."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"key": key, "stdout": stdout[-keep:]}, f)
    os.replace(tmp, path)
    return True
