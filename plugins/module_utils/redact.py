"""Secrets out of text the collection shows: journal excerpts, error messages.

Why this exists: SGLang prints its whole ServerArgs (api_key='...') at start, and a failed start
makes deploy print the last journal lines of every rank. The units' launcher redacts the journal
as it is written (roles/sglang_server/files/sglang-launch.py, same patterns); this is the second
line for text read back on the controller (a journal written before the launcher redacted, or by
a process outside it).
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"
# Fields that carry a secret however they are printed: api_key='x', "admin_api_key": "x",
# api_key: Some("x"), Authorization: "Bearer x". Kept equal to the launcher's (a unit test checks).
SECRET_FIELD = re.compile(r"""((?:admin_)?api_key|ssl_keyfile_password|[Aa]uthorization)(['"]?\s*[=:]\s*(?:Some\()?\s*)(['"])(?:(?!\3).)*\3""")
# Secrets shorter than this are not searched for: replacing "a" everywhere would hide the text
# and say which letters the secret has.
MIN_SECRET = 4


def redact(text, secrets=()):
    """`text` with every secret of `secrets` and every secret-looking field as <redacted>."""
    text = "" if text is None else str(text)
    for secret in sorted({str(s) for s in secrets or () if s and len(str(s)) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return SECRET_FIELD.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED + m.group(3), text)
