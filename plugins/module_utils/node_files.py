"""One call converges a node's files and units: the logic of the node_files module.

Why one call: a re-run with nothing to change spent most of its time in round trips, one per
file, per removed path, per daemon-reload, per `systemd-analyze verify` and per enabled unit.
Here a role hands over every file it owns on the node at once; the node compares them all and
touches only what differs.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import tempfile

KINDS = ("file", "unit", "dropin")
# What `systemctl is-enabled` prints for a unit that needs no `systemctl enable`.
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient")


class NodeFilesError(Exception):
    """A request the node cannot carry out; the message names the path or the name and the fix."""


def ids(owner, group):
    """uid and gid of the names on this node."""
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise NodeFilesError("no user %r on this node (create it before the files it owns)" % owner) from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise NodeFilesError("no group %r on this node (create it before the files it owns)" % group) from None
    return uid, gid


def parse_mode(mode):
    """An octal string such as "0640" (what the roles pass) as an int; anything else refused."""
    text = str(mode)
    if not text or len(text) > 4 or any(c not in "01234567" for c in text):
        raise NodeFilesError("mode %r is not an octal mode such as 0644" % (mode,))
    return int(text, 8)


def current(path):
    """(stat, bytes) of a regular file at the path, (stat, None) for anything else there, or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return st, None
    with open(path, "rb") as f:
        return st, f.read()


def file_actions(found, content, uid, gid, mode):
    """What bringing a file to (content, uid, gid, mode) takes: a subset of {"write", "chown", "chmod"}.

    found: current(path). A write sets owner and mode too; a symlink or other non-regular entry is
    replaced by a write (never followed).
    """
    if found is None or found[1] is None or found[1] != content:
        return {"write"}
    return ownership_actions(found[0], uid, gid, mode)


def ownership_actions(st, uid, gid, mode):
    """{"chown", "chmod"} or a part of it: what an entry of the right content needs."""
    actions = set()
    if (st.st_uid, st.st_gid) != (uid, gid):
        actions.add("chown")
    if stat.S_IMODE(st.st_mode) != mode:
        actions.add("chmod")
    return actions


def directory_actions(st, uid, gid, mode):
    """What bringing a directory to (uid, gid, mode) takes: {"create"} or a subset of {"chown", "chmod"}."""
    if st is None:
        return {"create"}
    if not stat.S_ISDIR(st.st_mode):
        raise NodeFilesError("not a directory (remove what is there, or fix the path)")
    return ownership_actions(st, uid, gid, mode)


def write_atomically(path, content, uid, gid, mode, validate=None):
    """Write a temporary file beside the path with its final owner and mode, then rename it over the
    path: a reader sees the old file or the new one, never a part, and never a mode wider than asked.

    validate: called with the temporary file's path before the rename; it raises to keep the old file.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if validate is not None:
            validate(tmp)
        os.rename(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def validate_argv(command, path):
    """The argv of a validate command such as `/usr/sbin/nft -c -f %s` for the file at path."""
    words = command.split()
    if not words or command.count("%s") != 1 or "%s" not in words:
        raise NodeFilesError("validate %r must be a command with one %%s word (the file to check)" % command)
    return [path if word == "%s" else word for word in words]


def remove(path):
    """Remove a file or symlink at the path; True when something was there. A directory is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise NodeFilesError("is a directory; only files are removed here")
    os.unlink(path)
    return True


def needs_enable(state):
    """Whether a unit whose `systemctl is-enabled` printed this state needs `systemctl enable`."""
    return state.strip() not in ENABLED_STATES


def needs_reload(kind):
    """A changed unit or drop-in needs a daemon-reload; other files never do."""
    return kind in ("unit", "dropin")
