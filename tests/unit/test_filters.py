"""systemd quoting: what systemd reads back must be the argv we meant."""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.sglang_ops.cluster.plugins.filter.systemd import (
    systemd_cmdline,
    systemd_environment,
    systemd_quote,
    systemd_text,
    systemd_word,
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
    # Hostile: systemd ends a unit line at \r as at \n; every control character is escaped.
    ("x\rExecStartPre=+/bin/sh -c id", '"x\\rExecStartPre=+/bin/sh -c id"'),
    ("x\nExecStartPre=+/bin/id", '"x\\nExecStartPre=+/bin/id"'),
    ("a\tb", '"a\\tb"'),
    ("bell\x07", '"bell\\a"'),
    ("esc\x1b[0m", '"esc\\x1b[0m"'),
    ("del\x7f", '"del\\x7f"'),
    ("v\x0bf\x0c", '"v\\vf\\f"'),
    (";", '";"'),
    ("it's", '"it\'s"'),
    ("%n$USER", "%%n$$USER"),
])
def test_quote(word, quoted):
    assert systemd_quote(word) == quoted


def test_cmdline_and_environment():
    assert systemd_cmdline(["/v/bin/ray", "start", "--x=a b"]) == '/v/bin/ray start "--x=a b"'
    assert systemd_environment({"B": "2", "A": "x y"}) == '"A=x y" B=2'
    # Environment= expands specifiers but not variables: `$` stays single there.
    assert systemd_environment({"P": "a$b%c"}) == "P=a$b%%c"


HOSTILE = ["plain", "two words", "x\rExecStartPre=+/bin/sh", "x\nExecStartPre=+/bin/sh", "tab\there",
           'q"uote', "it's", "back\\slash\\", "50%n", "$HOME ${X}", "esc\x1b\x7f\x01", ";", "", "ünï"]


def _systemd_unquote(line):
    """Words as systemd's extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE) reads them back
    (the subset of C escapes the filters write), then specifiers (%%) and, for Exec*=, $$."""
    words, i = [], 0
    escapes = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               "\\": "\\", '"': '"', "'": "'"}
    assert "\n" not in line and "\r" not in line, "a raw line break: %r" % line
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        word, quote = "", None
        while i < len(line) and (quote or line[i] != " "):
            c = line[i]
            if c == "\\":
                nxt = line[i + 1]
                if nxt == "x":
                    word += chr(int(line[i + 2:i + 4], 16))
                    i += 4
                    continue
                word += escapes[nxt]
                i += 2
                continue
            if c == '"':
                quote = None if quote else '"'
            else:
                word += c
            i += 1
        words.append(word)
    return words


def test_every_hostile_word_reads_back_unchanged():
    line = systemd_cmdline(HOSTILE)
    back = [w.replace("%%", "%").replace("$$", "$") for w in _systemd_unquote(line)]
    assert back == HOSTILE


def test_environment_reads_back_and_refuses_what_systemd_drops():
    env = {"A": "x y", "B": "$HOME", "C": 'q"\\', "D": "tab\tnew\nline", "E": "50%"}
    words = _systemd_unquote(systemd_environment(env))
    assert dict(w.replace("%%", "%").split("=", 1) for w in words) == env
    for bad in ({"A": "x\ry"}, {"A": "esc\x1b"}, {"A": "nul\x00"}, {"1A": "x"}, {"A B": "x"}, {"A\nB": "x"}):
        with pytest.raises(AnsibleFilterError):
            systemd_environment(bad)


@pytest.mark.parametrize("value,ok", [
    ("/var/lib/sglang", "/var/lib/sglang"), ("sglang", "sglang"),
    ("sglang-server-lab_model.service", "sglang-server-lab_model.service"),
    ("/data/50%", "/data/50%%"), ("::1", "::1"), ("fd00::10", "fd00::10"),
    ("/a b", None), ("/a\rUser=root", None), ("/a\nUser=root", None), ('/a"', None), ("/a\\", None),
    ("-/var/lib", None), ("+x", None), ("", None), ("/a;b", None), ("~", None),
])
def test_word(value, ok):
    if ok is None:
        with pytest.raises(AnsibleFilterError):
            systemd_word(value)
    else:
        assert systemd_word(value) == ok


@pytest.mark.parametrize("value,ok", [
    ("SGLang lab_model rank 0", "SGLang lab_model rank 0"), ("50% done", "50%% done"),
    ("x\rExecStartPre=+/bin/sh", None), ("x\nExecStartPre=+/bin/sh", None), ("tab\t", None),
    ("ends in \\", None),
])
def test_text(value, ok):
    if ok is None:
        with pytest.raises(AnsibleFilterError):
            systemd_text(value)
    else:
        assert systemd_text(value) == ok
