"""Run many `ansible-playbook -i CASE plan_only.yml` in one process: Ansible is imported once,
and each case runs in a forked child (a clean global state, two at a time on two cores).

Usage: python run_cases.py CASES.json OUTDIR. CASES.json: [{"id", "argv"}]; writes OUTDIR/ID.out
(stdout and stderr) and OUTDIR/ID.rc. Used by test_refusals.py.
"""

import json
import os
import sys

from ansible.cli.playbook import PlaybookCLI


def run_one(case, outdir):
    out = os.open(os.path.join(outdir, case["id"] + ".out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    try:
        rc = PlaybookCLI(["ansible-playbook"] + case["argv"]).run()
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # pylint: disable=broad-except
        print("driver: %r" % exc)
        rc = 250
    sys.stdout.flush()
    sys.stderr.flush()
    with open(os.path.join(outdir, case["id"] + ".rc"), "w") as handle:
        handle.write(str(rc))
    os._exit(0)


def _warm():
    """Fill the caches no run changes: the collection finder and ansible.builtin's routing
    metadata (a large YAML file every run would otherwise parse again). Nothing of a run's
    inventory or variables exists yet, so nothing of one case can reach another."""
    try:
        from ansible import constants as C
        from ansible.plugins.loader import init_plugin_loader
        from ansible.utils.collection_loader._collection_finder import _get_collection_metadata

        init_plugin_loader(C.COLLECTIONS_PATHS)
        _get_collection_metadata("ansible.builtin")
        # The plan's action plugin and what it imports (module_utils, plugin_utils).
        import ansible_collections.sglang_ops.cluster.plugins.action.cluster_plan  # noqa: F401  pylint: disable=unused-import
    except (ImportError, AttributeError):
        pass  # another ansible-core: the children pay the cost themselves


def main():
    cases = json.load(open(sys.argv[1]))
    outdir = sys.argv[2]
    workers = int(os.environ.get("REFUSAL_WORKERS", "2"))
    _warm()
    running = set()
    for case in cases:
        while len(running) >= workers:
            running.discard(os.wait()[0])
        pid = os.fork()
        if pid == 0:
            run_one(case, outdir)
        running.add(pid)
    while running:
        running.discard(os.wait()[0])


if __name__ == "__main__":
    main()
