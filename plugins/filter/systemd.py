"""Filters that print values safely into systemd unit files.

Why this exists: systemd does not parse ExecStart= like a shell. `%` starts a specifier, `$`
expands variables, and quoting rules differ, so `quote` from the shell would be wrong.
"""

from __future__ import annotations

def systemd_quote(word):
    """One argv word as systemd reads it back unchanged."""
    word = str(word).replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\n\"'\\;"):
        return word
    return '"%s"' % word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def systemd_cmdline(argv):
    """A whole argv list as one ExecStart= value."""
    return " ".join(systemd_quote(a) for a in argv)


def systemd_environment(env):
    """A mapping as `"KEY=value"` words for one Environment= line, sorted for stable output."""
    return " ".join(systemd_quote("%s=%s" % (k, v)) for k, v in sorted(env.items()))


class FilterModule:
    """systemd quoting filters."""

    def filters(self):
        return {
            "systemd_quote": systemd_quote,
            "systemd_cmdline": systemd_cmdline,
            "systemd_environment": systemd_environment,
        }
