"""systemd quoting: what systemd reads back must be the argv we meant."""

import pytest

from ansible_collections.sglang_ops.cluster.plugins.filter.systemd import (
    systemd_cmdline,
    systemd_environment,
    systemd_quote,
)


@pytest.mark.parametrize("word,quoted", [
    ("--port=6379", "--port=6379"),
    ("50%", "50%%"),
    ("$HOME", "$$HOME"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("", '""'),
    ("a;b", '"a;b"'),
    ('{"rank":0}', '"{\\"rank\\":0}"'),
])
def test_quote(word, quoted):
    assert systemd_quote(word) == quoted


def test_cmdline_and_environment():
    assert systemd_cmdline(["/v/bin/ray", "start", "--x=a b"]) == '/v/bin/ray start "--x=a b"'
    assert systemd_environment({"B": "2", "A": "x y"}) == '"A=x y" B=2'
    # Environment= expands specifiers but not variables: `$` stays single there.
    assert systemd_environment({"P": "a$b%c"}) == "P=a$b%%c"
