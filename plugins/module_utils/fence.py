"""Fate-sharing for a multi-node SGLang group: when one rank fails, stop all, restart together.

Why this exists: when one rank of a group dies, the others hang in NCCL forever, and a rank
restarted alone cannot rejoin. systemd's Restart= would do exactly that, so the server units
never restart themselves; this fence does it for the whole group, a bounded number of times.

Design: one fence process per node and group (unit sglang-fence-<group>), standard library
only. Every fence runs an agent that reports its rank's unit state once a second; the fence on
rank 0's node also runs the coordinator that the agents connect to (TCP, JSON lines, on the
group's fence port, which the firewall opens to cluster members only). The coordinator arms
once every rank was seen active, and fences when a rank's unit is `failed` or its agent went
silent: it orders every agent to stop its rank, waits until none is running, then orders a
start of all ranks together, at most `max_restarts` times per `window` seconds. An agent that
loses the coordinator while its rank runs stops its rank after `grace` seconds (rank 0's node
is gone, so the rank would hang). An operator's `systemctl stop` leaves units inactive, not
failed, and the fence disarms.

The decision logic (`Coordinator.decide`) is pure and unit-tested; this same file runs on the
nodes:  python3 fence.py --group G --rank R --nnodes N --unit U --coordinator HOST:PORT
[--listen HOST:PORT] [--max-restarts 3] [--window 600] [--grace 20] [--state FILE]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time

RUNNING = ("active", "activating", "deactivating", "reloading")


class Coordinator:
    """The group's state machine. Feed it reports; it answers with commands for all ranks."""

    def __init__(self, nnodes, max_restarts=3, window=600.0, silent_after=10.0, stop_timeout=180.0):
        self.nnodes = nnodes
        self.max_restarts = max_restarts
        self.window = window
        self.silent_after = silent_after
        self.stop_timeout = stop_timeout
        self.reports = {}  # rank -> (state, time)
        self.phase = "idle"  # idle | armed | stopping | starting | gave-up
        self.restarts = []  # times of group restarts
        self.phase_since = 0.0
        self.reason = ""

    def report(self, rank, state, now):
        self.reports[rank] = (state, now)

    def forget(self, rank):
        self.reports.pop(rank, None)

    def _states(self, now):
        return {r: (s if now - t <= self.silent_after else "silent")
                for r, (s, t) in self.reports.items()}

    def decide(self, now):
        """One step: returns (command or None, log line or None). Commands: stop, start."""
        states = self._states(now)
        all_seen = len(states) == self.nnodes
        if self.phase in ("idle", "gave-up"):
            if all_seen and all(s == "active" for s in states.values()):
                self.phase, self.phase_since = "armed", now
                return None, "armed: all %d ranks active" % self.nnodes
            return None, None
        if self.phase == "armed":
            bad = sorted(r for r, s in states.items() if s in ("failed", "silent"))
            missing = sorted(set(range(self.nnodes)) - set(states))
            if bad or missing:
                what = ", ".join(["rank %d %s" % (r, states[r]) for r in bad]
                                 + ["rank %d silent" % r for r in missing])
                self.reason = what
                self.phase, self.phase_since = "stopping", now
                return "stop", "fence: %s; stopping every rank of the group" % what
            if all(s == "inactive" for s in states.values()):
                self.phase = "idle"
                return None, "disarmed: the group was stopped"
            return None, None
        if self.phase == "stopping":
            running = sorted(r for r, s in states.items() if s in RUNNING)
            if running and now - self.phase_since < self.stop_timeout:
                return "stop", None  # repeated: an agent that reconnects hears it too
            self.restarts = [t for t in self.restarts if now - t < self.window]
            if len(self.restarts) >= self.max_restarts:
                self.phase = "gave-up"
                return "stop", ("gave up: %d group restarts in %.0f s (after %s); the group stays "
                                "stopped until an operator starts it" % (len(self.restarts), self.window, self.reason))
            self.restarts.append(now)
            self.phase, self.phase_since = "starting", now
            return "start", "restart %d of at most %d in %.0f s: starting every rank together" % (
                len(self.restarts), self.max_restarts, self.window)
        if self.phase == "starting":
            if all_seen and all(s == "active" for s in states.values()):
                self.phase, self.phase_since = "armed", now
                return None, "armed: all %d ranks active again" % self.nnodes
            if any(s == "failed" for s in states.values()) or now - self.phase_since > self.stop_timeout:
                self.reason = "start failed: %s" % states
                self.phase, self.phase_since = "stopping", now
                return "stop", "fence: the restart failed (%s); stopping the group" % states
            return None, None
        return None, None


# --- on the node --------------------------------------------------------------------------

def unit_state(unit):
    out = subprocess.run(["systemctl", "show", "-p", "ActiveState", "--value", unit],
                         capture_output=True, text=True, check=False).stdout.strip()
    return out or "unknown"


def act(unit, command, log):
    if command == "stop":
        if unit_state(unit) in RUNNING:
            log("stopping %s" % unit)
            subprocess.run(["systemctl", "stop", "--no-block", unit], check=False)
    elif command == "start":
        log("starting %s" % unit)
        subprocess.run(["systemctl", "reset-failed", unit], check=False)
        subprocess.run(["systemctl", "start", "--no-block", unit], check=False)


def split_hostport(value):
    host, port = value.rpartition(":")[::2]
    return host.strip("[]"), int(port)


def serve(coord, listen, log, state_file=None):
    clients = {}
    lock = threading.Lock()

    def handle(conn):
        rank = None
        try:
            for line in conn.makefile("r"):
                msg = json.loads(line)
                rank = msg["rank"]
                with lock:
                    clients[rank] = conn
                    coord.report(rank, msg["state"], time.monotonic())
        except (OSError, ValueError, KeyError):
            pass
        finally:
            with lock:
                if rank is not None and clients.get(rank) is conn:
                    del clients[rank]
            conn.close()

    host, port = split_hostport(listen)
    srv = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                               reuse_port=False)
    threading.Thread(target=lambda: [threading.Thread(target=handle, args=(c,), daemon=True).start()
                                     for c, _addr in iter(srv.accept, None)], daemon=True).start()
    last_phase = None
    while True:
        time.sleep(1)
        with lock:
            command, line = coord.decide(time.monotonic())
            if line:
                log(line)
            if command:
                for conn in list(clients.values()):
                    try:
                        conn.sendall((json.dumps({"cmd": command}) + "\n").encode())
                    except OSError:
                        pass
            if state_file and coord.phase != last_phase:
                last_phase = coord.phase
                with open(state_file, "w") as out:
                    json.dump({"phase": coord.phase, "restarts": len(coord.restarts),
                               "reason": coord.reason}, out)


def agent(unit, rank, coordinator, grace, log):
    lost_since = None
    while True:
        try:
            conn = socket.create_connection(split_hostport(coordinator), timeout=5)
        except OSError:
            lost_since = lost_since or time.monotonic()
            if rank != 0 and unit_state(unit) in RUNNING and time.monotonic() - lost_since > grace:
                log("coordinator %s unreachable for %.0f s: stopping rank %d" % (coordinator, grace, rank))
                act(unit, "stop", log)
            time.sleep(2)
            continue
        lost_since = None
        conn.settimeout(None)
        commands = conn.makefile("r")

        def listen():
            try:
                for line in commands:
                    act(unit, json.loads(line).get("cmd"), log)
            except (OSError, ValueError):
                pass

        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        try:
            while reader.is_alive():
                conn.sendall((json.dumps({"rank": rank, "state": unit_state(unit)}) + "\n").encode())
                time.sleep(1)
        except OSError:
            pass
        conn.close()
        log("lost the coordinator %s; reconnecting" % coordinator)
        lost_since = time.monotonic()


def main(argv=None):
    p = argparse.ArgumentParser(description="fate-sharing fence of one SGLang group on one node")
    p.add_argument("--group", required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--nnodes", type=int, required=True)
    p.add_argument("--unit", required=True)
    p.add_argument("--coordinator", required=True, help="rank 0 node's HOST:PORT")
    p.add_argument("--listen", help="HOST:PORT for the coordinator (rank 0 only)")
    p.add_argument("--max-restarts", type=int, default=3)
    p.add_argument("--window", type=float, default=600)
    p.add_argument("--grace", type=float, default=20)
    p.add_argument("--state", help="file for the coordinator's phase (JSON)")
    a = p.parse_args(argv)

    def log(line):
        # This file is also a standalone program (the fence unit runs it on the nodes, outside
        # any module): its log is stdout, read by journald.
        print("%s rank %d: %s" % (a.group, a.rank, line), flush=True)  # pylint: disable=ansible-bad-function

    if a.rank == 0:
        coord = Coordinator(a.nnodes, a.max_restarts, a.window)
        threading.Thread(target=serve, args=(coord, a.listen or a.coordinator, log, a.state),
                         daemon=True).start()
        time.sleep(0.5)
    agent(a.unit, a.rank, a.coordinator, a.grace, log)


if __name__ == "__main__":
    # The fence unit's exit status (a standalone program here, not a module).
    sys.exit(main())  # pylint: disable=ansible-bad-function
