"""sglang-ops: day-2 operations on a cluster deployed by the sglang_ops.cluster collection.

The plan (ranks, unit names, paths, start decisions) is the collection's own Python
(plugins/module_utils), imported here, never re-implemented: `collection_path()` finds it.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

COLLECTION = ("ansible_collections", "sglang_ops", "cluster")


def _candidates():
    """Directories that may hold ansible_collections/sglang_ops/cluster, best first."""
    env = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS") or ""
    for path in env.split(os.pathsep):
        if path:
            yield os.path.expanduser(path)
    # A checkout (the editable install `make venv` makes): <repo>/cli/sglang_ops_cli/__init__.py,
    # and <repo>/collections links the repository as the collection.
    yield os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "collections")
    try:
        from ansible import constants as C  # ansible.cfg's collections_path
        for path in C.COLLECTIONS_PATHS or []:
            yield os.path.expanduser(path)
    except Exception:  # pylint: disable=broad-except
        return


def collection_path():
    """Put the collection on sys.path (once) and return its directory, or raise RuntimeError."""
    for base in _candidates():
        found = os.path.join(base, *COLLECTION)
        if os.path.isfile(os.path.join(found, "plugins", "module_utils", "cluster_plan.py")):
            if base not in sys.path:
                sys.path.insert(0, base)
            return found
    raise RuntimeError("the sglang_ops.cluster collection was not found. Fix: run from a checkout "
                       "(make venv), or install the collection and set ANSIBLE_COLLECTIONS_PATH")
