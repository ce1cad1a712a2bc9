"""Filters that print values safely into systemd unit files.

Why this exists: systemd does not parse ExecStart= like a shell. `%` starts a specifier, `$`
expands variables, and quoting rules differ, so `quote` from the shell would be wrong.
"""

from __future__ import annotations


def systemd_quote(word, expands_variables=True):
    """One word as systemd reads it back unchanged.

    ExecStart= expands `$NAME`, so `$` is doubled there; Environment= does not ("the `$`
    character has no special meaning", systemd.exec), so doubling it would change the value.
    """
    word = str(word).replace("%", "%%")
    if expands_variables:
        word = word.replace("$", "$$")
    if word and not any(c in word for c in " \t\n\"'\\;"):
        return word
    return '"%s"' % word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def systemd_cmdline(argv):
    """A whole argv list as one ExecStart= value."""
    return " ".join(systemd_quote(a) for a in argv)


def systemd_environment(env):
    """A mapping as `"KEY=value"` words for one Environment= line, sorted for stable output."""
    return " ".join(systemd_quote("%s=%s" % (k, v), expands_variables=False) for k, v in sorted(env.items()))


class FilterModule:
    """systemd quoting filters."""

    def filters(self):
        return {
            "systemd_quote": systemd_quote,
            "systemd_cmdline": systemd_cmdline,
            "systemd_environment": systemd_environment,
        }
