"""sglang-ops: day-2 operations on a cluster deployed by the sglang_ops.cluster collection."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import threading
import time

from sglang_ops_cli import __version__

EXAMPLES = """\
examples:
  sglang-ops -i inventories/prod status            every node: Ray, ranks, fence, rank 0, router
  sglang-ops -i inventories/prod status --json     the same, as JSON (exit 1 when unhealthy)
  sglang-ops logs                                  every unit's journal of every node, in time order
  sglang-ops logs llama70b -f --since -10min       one group's ranks and fences, following
  sglang-ops logs ray -n 50                        the Ray units, the last 50 lines of each node
  sglang-ops restart llama70b                      fence, rank 0, other ranks; all ranks; wait
  sglang-ops stop llama70b                         (start GROUP starts them again, together)
  sglang-ops exec -- uptime                        a command on every node, per-host exit code
  sglang-ops exec -g llama70b -- nvidia-smi -L     on one group's nodes
  sglang-ops ray -- status                         the Ray CLI on the head, with the cluster's token

The inventory, vault options and SSH settings are the playbooks' (ansible-inventory --list);
without -i, ansible.cfg's or ANSIBLE_INVENTORY's inventory is used.
exit status: 0 healthy / done, 1 unhealthy or a command failed (hosts named), 2 usage,
inventory or refusal."""

LOG_TARGETS = ("ray", "fence", "router")


class UsageError(Exception):
    """Exit status 2, one line with the fix."""


def parser():
    p = argparse.ArgumentParser(prog="sglang-ops", description=__doc__, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="%(prog)s " + __version__)
    p.add_argument("-i", "--inventory", action="append", default=[], metavar="PATH",
                   help="inventory source, as for ansible-playbook (repeatable)")
    p.add_argument("--vault-password-file", action="append", default=[], metavar="FILE")
    p.add_argument("--vault-id", action="append", default=[], metavar="ID")
    p.add_argument("-J", "--ask-vault-pass", action="store_true")
    p.add_argument("--connect-timeout", type=float, default=None, metavar="S",
                   help="SSH connect timeout per host (default 10 s, or the inventory's ConnectTimeout)")
    p.add_argument("--no-color", action="store_true", help="no colour even on a terminal")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    s = sub.add_parser("status", help="one table of every node; exit 1 when anything planned is unhealthy",
                       description="Every node at once: the Ray unit and the node in Ray, each rank's unit, "
                       "its sglang::scheduler processes and GPU memory, the fence, rank 0's "
                       "/health_generate, the router. Groups the plan does not start (no GPU) are "
                       "reported as such, as verify does.")
    s.add_argument("--json", action="store_true", help="print JSON instead of the table")
    lg = sub.add_parser("logs", help="the journals of all nodes, merged in time order",
                        description="Journals of every node merged into one stream by timestamp, each "
                        "line prefixed with host and rank. TARGET: a model group (its ranks and fences), "
                        "ray, fence or router; default: all of them.",
                        epilog="example: sglang-ops logs lab_model -f --since '-5min'",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    lg.add_argument("target", nargs="?", metavar="GROUP|ray|fence|router")
    lg.add_argument("-f", "--follow", action="store_true", help="follow every node at once")
    lg.add_argument("--since", metavar="TIME", help="as journalctl --since (e.g. -10min, '2026-01-01 12:00')")
    lg.add_argument("-n", "--lines", type=int, metavar="N",
                    help="last N lines per node and unit set (default 100 without --since, 10 with -f)")
    lg.add_argument("--hold", type=float, default=1.0, metavar="S",
                    help="with -f: hold each line S seconds to order lines of all nodes (default 1)")
    for action, text in (("restart", "stop, then start the group, in the roles' order"),
                         ("stop", "stop the group: router, fence, rank 0, then the other ranks"),
                         ("start", "start every rank together, the fence, wait for rank 0, the router")):
        a = sub.add_parser(action, help=text, description=text + ". A single rank is refused: it "
                           "cannot rejoin its group alone.",
                           epilog="example: sglang-ops %s lab_model" % action)
        a.add_argument("group", metavar="GROUP")
        a.add_argument("--timeout", type=int, metavar="S",
                       help="wait for rank 0's /health_generate at most S seconds "
                       "(default: sglang_server_ready_timeout)")
    e = sub.add_parser("exec", help="run a command on every node (or a group's) in parallel",
                       description="Run CMD (a shell command, as root) on every node at once; prints "
                       "each host's output and exit code.", epilog="example: sglang-ops exec -- df -h /")
    e.add_argument("-g", "--group", help="only this model group's nodes")
    e.add_argument("--user", action="store_true", help="as the SSH user instead of root")
    e.add_argument("--timeout", type=int, default=300, metavar="S")
    e.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    r = sub.add_parser("ray", help="the Ray CLI on the head, with the cluster's token",
                       description="Run the cluster's Ray CLI wrapper on the Ray head (as the cluster "
                       "user, token from its file; never in a command line).",
                       epilog="example: sglang-ops ray -- status")
    r.add_argument("args", nargs=argparse.REMAINDER, metavar="-- ARGS")
    return p


def strip_dashes(words):
    return words[1:] if words and words[0] == "--" else words


def join_since(argv):
    """`--since -10min` as `--since=-10min`: argparse takes a value starting with '-' for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--since" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append("--since=" + argv[i + 1])
            i += 2
            continue
        if argv[i] == "--":
            return out + list(argv[i:])
        out.append(argv[i])
        i += 1
    return out


def parse(argv):
    args = parser().parse_args(join_since(list(argv)))
    if args.command == "exec":
        args.cmd = strip_dashes(args.cmd)
        if not args.cmd:
            raise UsageError("exec: no command. Fix: sglang-ops exec -- CMD (e.g. sglang-ops exec -- uptime)")
    if args.command == "ray":
        args.args = strip_dashes(args.args)
        if not args.args:
            raise UsageError("ray: no arguments. Fix: sglang-ops ray -- ARGS (e.g. sglang-ops ray -- status)")
    if args.command == "logs" and args.lines is not None and args.lines < 0:
        raise UsageError("logs: -n must be >= 0")
    return args


class Out:
    """Printing, with colour only on a terminal, and progress on stderr."""

    def __init__(self, colour):
        self.colour = colour
        self.lock = threading.Lock()

    def line(self, text=""):
        with self.lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def progress(self, text):
        with self.lock:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def paint(self, text, code):
        return "\033[%sm%s\033[0m" % (code, text) if self.colour else text


def load_cluster(args):
    from sglang_ops_cli import inventory, plan
    inv = inventory.load(args.inventory, args.vault_id, args.vault_password_file, args.ask_vault_pass)
    secrets, loader = None, None
    if args.vault_id or args.vault_password_file or args.ask_vault_pass or os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE"):
        loader, secrets = inventory.vault_secrets(args.vault_id, args.vault_password_file, args.ask_vault_pass)
    from ansible import constants as C
    return plan.compute(inv, inventory.Resolver(inv, secrets, loader), bool(C.HOST_KEY_CHECKING))


# --- commands -----------------------------------------------------------------------------------

def cmd_status(cluster, hosts, args, out):
    from sglang_ops_cli import status
    rows, ray = status.collect(cluster, hosts)
    if args.json:
        out.line(json.dumps(status.as_json(rows, ray, cluster), indent=2))
    else:
        for text in status.render(rows, ray, cluster):
            if text.startswith("FAIL "):
                text = out.paint("FAIL", "31") + text[4:]
            out.line(text)
    return 0 if all(r["ok"] for r in rows) else 1


def log_units(cluster, target):
    """{host: (label, [units])} for a logs TARGET; raises UsageError for an unknown one."""
    plan, units = cluster.plan, cluster.layout["units"]
    out = {}
    if target is not None and target not in LOG_TARGETS and target not in cluster.groups:
        raise UsageError("logs: unknown target %r. Fix: use a model group (%s) or one of %s"
                         % (target, ", ".join(cluster.groups), ", ".join(LOG_TARGETS)))
    for host in plan["hosts"]:
        group = cluster.group_of(host)
        label = "r%s" % cluster.rank(host)
        chosen = []
        if target in (None, "ray"):
            chosen.append(units["ray"])
        if target is None or target == group:
            chosen.append(cluster.unit(group))
        if (target in (None, "fence") or target == group) and cluster.fenced(group):
            chosen.append(cluster.fence_unit(group))
        if target in (None, "router") and cluster.router_host() == host:
            chosen.append(units["router"])
        if chosen:
            out[host] = (label, chosen)
    return out


class _LineSink:
    """A file-like Fabric writes a remote stream into; complete lines go to `emit`."""

    def __init__(self, emit):
        self.emit, self.buf = emit, ""

    def write(self, data):
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            self.emit(line)

    def flush(self):
        pass


def cmd_logs(cluster, hosts, args, out):
    from sglang_ops_cli import journal
    chosen = log_units(cluster, args.target)
    width = max(len("%s %s" % (h, label)) for h, (label, _) in chosen.items())
    colours = {h: journal.COLOURS[i % len(journal.COLOURS)] for i, h in enumerate(chosen)} if out.colour else {}
    lines = args.lines if args.lines is not None else (10 if args.follow else (None if args.since else 100))
    if not args.follow:
        commands = {h: journal.journal_command(u, args.since, lines) for h, (_, u) in chosen.items()}
        results = hosts.run_all(commands, 300)
        streams, failed = {}, []
        for host, res in results.items():
            if res.error or res.rc != 0:
                failed.append(res.error or "%s: journalctl failed (rc %s): %s" % (host, res.rc, res.stderr.strip()[-300:]))
                continue
            label = chosen[host][0]
            streams[host] = [e for e in (journal.parse_line(l, host, label) for l in res.stdout.splitlines()) if e]
        for entry in journal.merge(streams):
            out.line(journal.format_entry(entry, width, colours.get(entry[1])))
        for line in failed:
            out.progress(out.paint("FAIL", "31") + " " + line)
        return 1 if failed else 0
    follower = journal.Follower(delay=args.hold)
    failed = []

    def follow(host, label, units):
        sink = _LineSink(lambda l: follower.add(e) if (e := journal.parse_line(l, host, label)) else None)
        res = hosts.run(host, journal.journal_command(units, args.since, lines, follow=True), out_stream=sink)
        failed.append(res.error or "%s: journalctl ended (rc %s): %s" % (host, res.rc, res.stderr.strip()[-300:]))

    threads = [threading.Thread(target=follow, args=(h, label, u), daemon=True) for h, (label, u) in chosen.items()]
    for t in threads:
        t.start()
    out.progress("following %s on %s (Ctrl-C to stop)" % (
        ", ".join(sorted({u for _, us in chosen.values() for u in us})), ", ".join(chosen)))
    reported = 0
    try:
        while True:
            for entry in follower.release():
                out.line(journal.format_entry(entry, width, colours.get(entry[1])))
            while reported < len(failed):
                out.progress(out.paint("FAIL", "31") + " " + failed[reported])
                reported += 1
            if not any(t.is_alive() for t in threads):
                for entry in follower.release(everything=True):
                    out.line(journal.format_entry(entry, width, colours.get(entry[1])))
                return 1
            time.sleep(0.1)
    except KeyboardInterrupt:
        for entry in follower.release(everything=True):
            out.line(journal.format_entry(entry, width, colours.get(entry[1])))
        return 0


def _systemctl(hosts, verb, targets):
    """Run `systemctl VERB units` on each host of targets at once; failures as lines."""
    from sglang_ops_cli.ops import by_host
    per_host = by_host(targets)
    commands = {h: "systemctl %s %s" % (verb, " ".join(shlex.quote(u + ".service") for u in units))
                for h, units in per_host.items()}
    results = hosts.run_all(commands, 600)
    return ["%s: systemctl %s %s failed (rc %s): %s. Fix: journalctl -u %s on %s"
            % (h, verb, " ".join(per_host[h]), r.rc, " ".join(r.stderr.split())[-300:], per_host[h][0], h)
            if not r.error else r.error for h, r in results.items() if not r.ok]


HEALTH_SCRIPT = r"""
import json, sys, urllib.request, urllib.error
url, key_file = sys.argv[1:3]
key = ""
try:
    key = open(key_file).read().strip()
except OSError:
    pass
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + key} if key else {})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception as e:
    print(0)
"""


def wait_health(cluster, hosts, step, timeout, out):
    """Poll an HTTP endpoint on its node: rank 0's /health_generate or the router's /health (every
    2 s, a progress line every 10 s); fail early when a unit it needs is no longer running.
    Returns None or a problem line."""
    group = step.group
    host, unit = step.targets[0]
    if unit == cluster.layout["units"]["router"]:
        url, watched, what = cluster.plan["router"]["local_url"] + "/health", {host: unit}, "the router"
    else:
        spec = cluster.groups[group]
        url, what = spec["local_url"] + "/health_generate", "rank 0"
        watched = {h: unit for h in spec["hosts"]}
    check = "python3 -c %s %s %s" % (shlex.quote(HEALTH_SCRIPT), shlex.quote(url), shlex.quote(cluster.key_file()))
    states = {h: "systemctl is-active %s.service || true" % shlex.quote(u) for h, u in watched.items()}
    path = url.split("/", 3)[-1]
    t0 = time.monotonic()
    last = 0
    while True:
        res = hosts.run(host, check, 30)
        code = res.stdout.strip() if res.ok else ""
        waited = time.monotonic() - t0
        if code == "200":
            out.progress("  %s (%s) answers /%s after %.0f s" % (what, host, path, waited))
            return None
        active = {h: (r.stdout.strip() if not r.error else "unreachable") for h, r in hosts.run_all(states, 30).items()}
        dead = {h: s for h, s in active.items() if s not in ("active", "activating")}
        if dead:
            return ("%s: %s not running (%s); %s did not become ready. Fix: sglang-ops logs %s"
                    % (group, unit, ", ".join("%s %s" % hs for hs in dead.items()), what,
                       "router" if what == "the router" else group))
        if waited >= timeout:
            return ("%s: %s (%s) did not answer /%s within %d s (last: %s). Fix: sglang-ops logs %s"
                    % (group, what, host, path, timeout, code or res.error or "no answer",
                       "router" if what == "the router" else group))
        if waited - last >= 10:
            last = waited
            out.progress("  waiting for %s's /%s: %.0f of %d s (%s)"
                         % (what, path, waited, timeout, ", ".join("%s %s" % hs for hs in active.items())))
        time.sleep(2)


def cmd_group(cluster, hosts, args, out):
    from sglang_ops_cli import ops
    group = ops.resolve_group(cluster, args.group)
    steps = ops.plan_steps(cluster, args.command, group)
    timeout = args.timeout or cluster.value("sglang_server_ready_timeout", cluster.groups[group]["rank0"]) or 1800
    t_all = time.monotonic()
    for n, step in enumerate(steps, 1):
        where = ", ".join("%s %s" % t for t in step.targets)
        head = "[%d/%d] %s %s: %s" % (n, len(steps), step.verb, step.title, where)
        if step.verb == "skip":
            out.line("%s: %s" % (head, step.reason))
            continue
        out.line(head)
        t0 = time.monotonic()
        if step.verb == "wait":
            problem = wait_health(cluster, hosts, step, timeout, out)
            problems = [problem] if problem else []
        else:
            problems = _systemctl(hosts, step.verb, step.targets)
        if problems:
            for p in problems:
                out.line(out.paint("FAIL", "31") + " " + p)
            out.line("%s %s stopped at step %d of %d; nothing after it was done" % (args.command, group, n, len(steps)))
            return 1
        out.progress("      done in %.1f s" % (time.monotonic() - t0))
    d = cluster.decision(group)
    out.line("%s %s: done in %.1f s%s" % (args.command, group, time.monotonic() - t_all,
                                          "" if d["start"] or args.command == "stop" else "; %s" % d["reason"]))
    return 0


def cmd_exec(cluster, hosts, args, out):
    chosen = cluster.plan["hosts"]
    if args.group:
        if args.group not in cluster.groups:
            raise UsageError("exec: unknown group %r. Fix: use one of %s" % (args.group, ", ".join(cluster.groups)))
        chosen = cluster.groups[args.group]["hosts"]
    command = " ".join(shlex.quote(w) for w in args.cmd) if len(args.cmd) > 1 else args.cmd[0]
    results = hosts.run_all({h: command for h in chosen}, args.timeout, as_root=not args.user)
    width = max(len(h) for h in chosen)
    for host in chosen:
        res = results[host]
        for stream in (res.stdout, res.stderr):
            for line in stream.splitlines():
                out.line("%s | %s" % (host.ljust(width), line))
    bad = 0
    for host in chosen:
        res = results[host]
        # An SSH failure's line starts with the host already.
        status = res.error or "%s: rc %d" % (host, res.rc)
        if not res.ok:
            bad += 1
            status = out.paint(status, "31")
        out.line(status)
    return 1 if bad else 0


def cmd_ray(cluster, hosts, args, out):
    head = cluster.plan["ray"]["head"]
    command = " ".join(shlex.quote(w) for w in [cluster.layout["files"]["ray_cli"]] + args.args)
    res = hosts.run(head, command, 600)
    if res.error:
        out.line(out.paint("FAIL", "31") + " " + res.error)
        return 1
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.rc


COMMANDS = {"status": cmd_status, "logs": cmd_logs, "restart": cmd_group, "stop": cmd_group,
            "start": cmd_group, "exec": cmd_exec, "ray": cmd_ray}


def main(argv=None):
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write("sglang-ops: %s\n" % exc)
        return 2
    colour = sys.stdout.isatty() and not args.no_color and not os.environ.get("NO_COLOR")
    out = Out(colour)
    from sglang_ops_cli.inventory import InventoryError
    try:
        cluster = load_cluster(args)
        from sglang_ops_cli.ops import Refused
        from sglang_ops_cli.remote import Hosts
        hosts = Hosts(cluster.targets, args.connect_timeout)
        try:
            return COMMANDS[args.command](cluster, hosts, args, out)
        finally:
            hosts.close()
    except (InventoryError, UsageError, RuntimeError) as exc:
        sys.stderr.write("sglang-ops: %s\n" % exc)
        return 2
    except Refused as exc:
        sys.stderr.write("sglang-ops: refused: %s\n" % exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
