"""Start SGLang's server (or only check its arguments) as the sglang_server units run it.

Why this exists: a secret on a command line is readable by every user through /proc, one in the
environment by every process of the service user (/proc/PID/environ), and SGLang logs its whole
`server_args=ServerArgs(... api_key='...')` at start. The units hand the secrets over as
credentials (a private tmpfs directory, $CREDENTIALS_DIRECTORY, filled by root at start as
LoadCredential= would, which hands over nothing inside containers); this launcher turns
each into its flag inside the process, and before SGLang starts it puts a redactor between every
process of the unit and the journal, which writes each secret (and any `api_key='...'`-style
field) as `<redacted>`. `--validate` runs the checks SGLang's Engine makes before it starts
anything (flag parsing, then resolve_once() and check_server_args()), so a rendered unit is
proven against the installed SGLang without a GPU.

    python sglang-launch.py [--validate] SGLANG_ARGS...
    python sglang-launch.py [--validate] --router SGLANG_ROUTER_ARGS...
"""

import json
import os
import re
import signal
import sys
import time

# Credential id (the plan's layout.credentials) -> (flag, its word: the secret's {value} or the
# credential file's {path}). Words made from a value are redacted from the output.
SERVER_FLAGS = {"api_key": ("--api-key", "{value}"), "admin_api_key": ("--admin-api-key", "{value}"),
                "tls_cert": ("--ssl-certfile", "{path}"), "tls_key": ("--ssl-keyfile", "{path}")}
# sglang-router 0.3.2: --api-key (clients and workers), its control plane's admin key
# (id:name:role:key), its own TLS and the CA it verifies HTTPS workers with.
ROUTER_FLAGS = {"api_key": ("--api-key", "{value}"),
                "admin_api_key": ("--control-plane-api-keys", "sglang-ops:sglang_ops admin:admin:{value}"),
                "tls_cert": ("--tls-cert-path", "{path}"), "tls_key": ("--tls-key-path", "{path}"),
                "tls_ca": ("--ca-cert-paths", "{path}")}
REDACTED = b"<redacted>"
# Fields that carry a secret however they are printed: api_key='x', "admin_api_key": "x",
# api_key: Some("x"), ssl_keyfile_password=...
SECRET_FIELD = re.compile(rb"""((?:admin_)?api_key|ssl_keyfile_password|[Aa]uthorization)(['"]?\s*[=:]\s*(?:Some\()?\s*)(['"])(?:(?!\3).)*\3""")
# A line longer than this reaches the journal in pieces (journald splits at 48 KiB anyway).
MAX_LINE = 1 << 16


def credential_args(flags, directory):
    """(argv words, secrets) for every credential the unit handed over, in a stable order."""
    words, secrets = [], []
    if not directory:
        return words, secrets
    for cid in sorted(flags):
        path = os.path.join(directory, cid)
        if not os.path.exists(path):
            continue
        flag, word = flags[cid]
        if "{value}" in word:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
            if value:
                words += [flag, word.format(value=value)]
                secrets.append(value)
        else:
            words += [flag, word.format(path=path)]
    return words, secrets


def redact(line, secrets):
    """The line with every secret, and every secret-looking field, replaced by <redacted>."""
    for secret in secrets:
        line = line.replace(secret, REDACTED)
    return SECRET_FIELD.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED + m.group(3), line)


def start_redactor(secrets):
    """Route fds 1 and 2 (and so every child's output) through a redacting process.

    The redactor ignores SIGTERM, so a stop does not lose the last lines: it ends when the last
    writer closes the pipe (KillMode=control-group kills it with the others after the timeout).
    It is forked twice, so it is no child of SGLang's process: SGLang's kill_process_tree on exit
    would end it before the final traceback was written.
    """
    secrets = [s.encode() for s in secrets if s]
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        if os.fork() != 0:
            os._exit(0)
        os.close(write_end)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sink = os.dup(2)
        with os.fdopen(read_end, "rb") as src:
            while True:
                line = src.readline(MAX_LINE)
                if not line:
                    break
                data = redact(line, secrets)
                while data:
                    data = data[os.write(sink, data):]
        os._exit(0)
    os.waitpid(child, 0)
    os.close(read_end)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)


def main():
    argv = sys.argv[1:]
    validate = bool(argv) and argv[0] == "--validate"
    if validate:
        argv = argv[1:]
    router = bool(argv) and argv[0] == "--router"
    if router:
        argv = argv[1:]
    words, secrets = credential_args(ROUTER_FLAGS if router else SERVER_FLAGS,
                                     os.environ.get("CREDENTIALS_DIRECTORY", ""))
    argv = argv + words
    if not validate:
        start_redactor(secrets)
    if router:
        return run_router(argv, validate)
    from sglang.srt.server_args import prepare_server_args

    if validate:
        t0 = time.monotonic()
        args = prepare_server_args(argv)
        args.resolve_once()
        args.check_server_args()
        import sglang

        print(json.dumps({"ok": True, "sglang": sglang.__version__,
                          "seconds": round(time.monotonic() - t0, 2)}))
        return 0
    # As `python -m sglang.launch_server` does, minus its own argv parsing.
    from sglang.launch_server import run_server
    from sglang.srt.plugins import load_plugins
    from sglang.srt.utils import kill_process_tree

    load_plugins()
    sys.argv = [sys.argv[0]] + argv  # in-process only: /proc/<pid>/cmdline keeps the original
    server_args = prepare_server_args(argv)
    try:
        run_server(server_args)
    finally:
        kill_process_tree(os.getpid(), include_parent=False)
    return 0


def run_router(argv, validate):
    """sglang-router: its own parser checks the arguments; then its launcher starts it."""
    from sglang_router import launch_router as lr

    if validate:
        args = lr.parse_router_args(argv)
        import sglang_router

        print(json.dumps({"ok": True, "sglang_router": getattr(sglang_router, "__version__", "?"),
                          "workers": len(getattr(args, "worker_urls", []) or [])}))
        return 0
    sys.argv = [sys.argv[0]] + argv  # in-process only, as above
    lr.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
