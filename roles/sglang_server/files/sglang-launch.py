"""Start SGLang's server (or only check its arguments) as the sglang_server units run it.

Why this exists: `--api-key` on a command line is readable by every user through /proc. The
units keep the key in a 0600 EnvironmentFile; this launcher moves it from the environment into
SGLang's arguments inside the process. `--validate` runs the checks SGLang's Engine makes
before it starts anything (flag parsing, then resolve_once() and check_server_args()), so a
rendered unit is proven against the installed SGLang without a GPU.

    python sglang-launch.py [--validate] SGLANG_ARGS...
    python sglang-launch.py [--validate] --router SGLANG_ROUTER_ARGS...
"""

import json
import os
import sys
import time

API_KEY_ENV = "SGLANG_OPS_API_KEY"


def main():
    argv = sys.argv[1:]
    validate = bool(argv) and argv[0] == "--validate"
    if validate:
        argv = argv[1:]
    router = bool(argv) and argv[0] == "--router"
    if router:
        argv = argv[1:]
    key = os.environ.pop(API_KEY_ENV, "")
    if key:
        argv = argv + ["--api-key", key]
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
