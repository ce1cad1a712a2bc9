"""Filters that print values safely into systemd unit files.

Why this exists: systemd does not parse ExecStart= like a shell. `%` starts a specifier, `$`
expands variables, and quoting rules differ, so `quote` from the shell would be wrong. A unit
file is read line by line, and systemd ends a line at `\\n` and at `\\r` alike: a raw control
character in a value starts a new unit line (`ExecStartPre=+...` runs as root). Every value a
template prints goes through one of these filters, which escape or refuse every control character.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# C escapes systemd's unquoting (extract_first_word with EXTRACT_CUNESCAPE) reads back; every other
# control character is written as \xNN. NUL cannot be in an argument or a variable at all.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t", "\v": "\\v"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Words that need no quotes: nothing systemd's word splitting, unquoting or unescaping touches.
_PLAIN = re.compile(r"^[^\x00-\x20\x7f\"'\\;]+\Z")
# systemd.syntax(7)/env_name_is_valid(): a variable name; env_value_is_valid() refuses every
# control character but tab and newline (such an assignment is ignored with a warning).
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV_BAD_VALUE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Settings that take one name or path as written (User=, WorkingDirectory=, After=...): no
# quoting applies there, so anything that would need it is refused, as are the prefixes some of
# them read (`-` ignore-missing, `+`/`!`/`@` on Exec*=, `~` home). A leading `:` stays allowed
# (an IPv6 address such as ::1 in IPAddressAllow=); Exec*= lines use systemd_cmdline.
_WORD = re.compile(r"^[^\x00-\x20\x7f\"'\\;\-+!@~][^\x00-\x20\x7f\"'\\;]*\Z")


def _refuse(kind, value, why):
    raise AnsibleFilterError("%s %r cannot be written into a systemd unit: %s" % (kind, value, why))


def systemd_quote(word, expands_variables=True):
    """One word as systemd reads it back unchanged.

    ExecStart= expands `$NAME`, so `$` is doubled there; Environment= does not ("the `$`
    character has no special meaning", systemd.exec), so doubling it would change the value.
    """
    word = str(word)
    if "\x00" in word:
        _refuse("word", word, "it contains NUL")
    word = word.replace("%", "%%")
    if expands_variables:
        word = word.replace("$", "$$")
    if _PLAIN.match(word):
        return word
    return '"%s"' % "".join(_ESCAPES.get(c) or ("\\x%02x" % ord(c) if _CONTROL.match(c) else c) for c in word)


def systemd_cmdline(argv):
    """A whole argv list as one ExecStart= value."""
    return " ".join(systemd_quote(a) for a in argv)


def systemd_environment(env):
    """A mapping as `"KEY=value"` words for one Environment= line, sorted for stable output.

    Names and values systemd would drop (invalid name, control characters other than tab and
    newline in the value) are refused here rather than silently missing from the service.
    """
    words = []
    for key, value in sorted(env.items()):
        key, value = str(key), str(value)
        if not _ENV_NAME.match(key):
            _refuse("environment variable name", key, "use letters, digits and _, not starting with a digit")
        if _ENV_BAD_VALUE.search(value):
            _refuse("value of %s" % key, value, "systemd ignores an assignment with control characters")
        words.append(systemd_quote("%s=%s" % (key, value), expands_variables=False))
    return " ".join(words)


def systemd_word(value):
    """One name or path for a setting that takes it as written (User=, WorkingDirectory=,
    ReadWritePaths=, EnvironmentFile=, RuntimeDirectory=, After=, IPAddressAllow=): `%` doubled, anything that
    would need quoting refused."""
    value = str(value)
    if not _WORD.match(value):
        _refuse("name or path", value, "no spaces, quotes, backslashes, ';', control characters or leading -+!@~")
    return value.replace("%", "%%")


def systemd_text(value):
    """Free text for Description= or a comment line: `%` doubled, control characters refused
    (a newline or carriage return would start a unit line), no trailing backslash (a line
    continuation)."""
    value = str(value)
    if _CONTROL.search(value):
        _refuse("text", value, "it contains control characters")
    if value.endswith("\\"):
        _refuse("text", value, "a trailing backslash continues the line")
    return value.replace("%", "%%")


class FilterModule:
    """systemd quoting filters."""

    def filters(self):
        return {
            "systemd_quote": systemd_quote,
            "systemd_cmdline": systemd_cmdline,
            "systemd_environment": systemd_environment,
            "systemd_word": systemd_word,
            "systemd_text": systemd_text,
        }
