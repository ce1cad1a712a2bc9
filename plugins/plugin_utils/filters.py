"""Controller-side helpers shared by the collection's filter plugins.

Why this exists: filters wrap the plain-Python decisions of module_utils, which refuse bad
settings with ValueError naming the variable and the fix; Ansible should show that text as a
filter error, not a traceback. One wrapper, used by every filter file.
"""

from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError


def wrap_errors(func):
    """`func` as a filter: a ValueError becomes an AnsibleFilterError with the same message."""

    @functools.wraps(func)
    def filt(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValueError as exc:
            raise AnsibleFilterError(str(exc)) from exc

    return filt
