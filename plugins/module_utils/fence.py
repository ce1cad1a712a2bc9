"""Fate-sharing for a multi-node SGLang group: when one rank fails, stop all, restart together.

Why this exists: when one rank of a group dies, the others hang in NCCL forever, and a rank
restarted alone cannot rejoin. systemd's Restart= would do exactly that, so the server units
never restart themselves; this fence does it for the whole group, a bounded number of times.

Design: one fence process per node and group (unit sglang-fence-<group>), standard library
only. Every fence runs an agent that reports its rank's unit state once a second; the fence on
rank 0's node also runs the coordinator that the agents connect to (TCP, one message a line, on
the group's fence port, which the firewall opens to cluster members only). The coordinator arms
once every rank was seen active, and fences when a rank's unit is `failed` or its agent went
silent: it orders every agent to stop its rank, waits until none is running, then orders a
start of all ranks together, at most `max_restarts` times per `window` seconds. An agent that
has not heard its coordinator for `grace` seconds while its rank runs stops its rank (rank 0's
node is gone or its fence hangs, so the rank would hang). An operator's `systemctl stop` leaves
units inactive, not failed, and the fence disarms. A rank stuck in a collective keeps every unit
active: with --health-url the coordinator probes rank 0's /health_generate every
--health-interval seconds, and once it answered after the group was armed, --health-failures
failed probes in a row fence the group like a failed rank.

Every peer is hostile until it proves the group's secret (a 0600 root file, whose path, never its
content, is in argv): the coordinator accepts connections only from the planned
members' addresses, each rank only from its own; every message carries an HMAC-SHA256; a
session starts with a nonce from each side (so neither side can be replayed a recorded
session) and counts its messages each way (so none is replayed or dropped within one). Lines
are bounded, every field is checked against a fixed type and range, one event loop serves every
connection (at most `2 * nnodes + 8` at a time, the unproven ones evicted first), both sides
send a message every second and TCP keepalive runs below. Any error that is not a peer's fault
ends the process with a non-zero status, and systemd restarts it.

Protocol (one line: 64 hex digits of MAC, a space, a JSON object):
  agent -> coordinator, MAC with the group key:   {"t": "hello", "rank": R, "an": NONCE}
  coordinator -> agent, MAC with the group key:   {"t": "welcome", "rank": R, "an": NONCE, "cn": NONCE}
  then with the session key HMAC(key, an, cn), n = 1, 2, 3 ... on each side:
  agent -> coordinator:  {"t": "report", "rank": R, "state": ActiveState, "n": N}
  coordinator -> agent:  {"t": "order", "cmd": null | "stop" | "start", "n": N}

The decision logic (`Coordinator.decide`) is pure and unit-tested, and so is the protocol; this
same file runs on the nodes:  python3 fence.py --group G --rank R --nnodes N --unit U
--coordinator HOST:PORT --member 0=ADDR --member 1=ADDR ... --key-file FILE
[--listen HOST:PORT] [--max-restarts 3] [--window 600] [--grace 20] [--state FILE] [--metrics FILE]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.request

RUNNING = ("active", "activating", "deactivating", "reloading")
# systemd's ActiveState values, and "unknown" when systemctl answers nothing: a report carries one.
STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance",
          "refreshing", "unknown")
COMMANDS = (None, "stop", "start")
MAX_LINE = 512  # the longest legitimate line is about 190 bytes
MIN_KEY = 32
MAX_COUNTER = 2 ** 53
NONCE_HEX = 32
EXIT_INTERNAL = 70  # EX_SOFTWARE: a fault of this program, not of a peer
LIMITS = {"handshake": 5.0, "interval": 1.0}


class ProtocolError(ValueError):
    """A peer's message the fence refuses (no or wrong MAC, replay, a field out of range)."""


class InternalError(RuntimeError):
    """A fault of this node (systemctl missing, a state file not writable): exit, be restarted."""


# --- messages ---------------------------------------------------------------------------------

def _refuse_constant(name):
    raise ProtocolError("%s is not a number the fence accepts" % name)


def _refuse_float(text):
    raise ProtocolError("%s: no field of the fence is a float" % text[:20])


def seal(key, label, fields):
    """One line: the MAC of `label` and the body, a space, the body (compact JSON)."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    mac = hmac.new(key, label + b"\n" + body, hashlib.sha256).hexdigest().encode()
    return mac + b" " + body + b"\n"


def unseal(key, label, line):
    """The fields of one line, or ProtocolError. The MAC is checked before the body is parsed."""
    if len(line) > MAX_LINE:
        raise ProtocolError("line of %d bytes (at most %d)" % (len(line), MAX_LINE))
    mac, sep, body = line.rstrip(b"\n").partition(b" ")
    if not sep or len(mac) != 64:
        raise ProtocolError("no MAC")
    want = hmac.new(key, label + b"\n" + body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(mac, want):
        raise ProtocolError("wrong MAC (not the group's key, or another session)")
    try:
        fields = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_refuse_float)
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError included
        raise ProtocolError("not JSON: %s" % err) from None
    if not isinstance(fields, dict):
        raise ProtocolError("not a JSON object")
    return fields


def expect(fields, kind, keys):
    """The message's own checks: its type and exactly its keys."""
    if fields.get("t") != kind or set(fields) != set(keys) | {"t"}:
        raise ProtocolError("expected a %s message with %s, got %s" % (kind, ", ".join(sorted(keys)), sorted(fields)))
    return fields


def integer(fields, name, low, high):
    value = fields[name]
    # bool is an int in Python; a rank of true is not a rank.
    if type(value) is not int or not low <= value <= high:  # pylint: disable=unidiomatic-typecheck
        raise ProtocolError("%s %r is not an integer in %d..%d" % (name, value, low, high))
    return value


def nonce(fields, name):
    value = fields[name]
    if not isinstance(value, str) or len(value) != NONCE_HEX or value.strip("0123456789abcdef"):
        raise ProtocolError("%s is not a nonce of %d hex digits" % (name, NONCE_HEX))
    return value


def hello_label(group, direction):
    return ("%s hello %s" % (direction, group)).encode()


class Channel:
    """One authenticated session: its own key from both nonces, a counter each way (n = 1, 2, ...)."""

    def __init__(self, key, group, an, cn, outgoing):
        self.key = hmac.new(key, ("session %s %s %s" % (group, an, cn)).encode(), hashlib.sha256).digest()
        self.out_label = ("%s %s" % (outgoing, group)).encode()
        self.in_label = ("%s %s" % ("c2a" if outgoing == "a2c" else "a2c", group)).encode()
        self.sent = 0
        self.seen = 0

    def seal(self, fields):
        self.sent += 1
        return seal(self.key, self.out_label, dict(fields, n=self.sent))

    def open(self, line):
        fields = unseal(self.key, self.in_label, line)
        if "n" not in fields:
            raise ProtocolError("no counter")
        n = integer(fields, "n", 1, MAX_COUNTER)
        if n != self.seen + 1:
            raise ProtocolError("message %d after %d: replayed, dropped or reordered" % (n, self.seen))
        self.seen = n
        return fields


class Lines:
    """Complete lines out of a byte stream, never holding more than MAX_LINE bytes of one."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        if len(self.buf) > MAX_LINE or any(len(line) >= MAX_LINE for line in lines):
            raise ProtocolError("a line longer than %d bytes" % MAX_LINE)
        return [line + b"\n" for line in lines]


class Limiter:
    """At most one log line per kind of refusal and peer every `every` seconds (a flood must not
    flood the journal), saying how many were left out."""

    def __init__(self, log, clock=time.monotonic, every=30.0):
        self.log, self.clock, self.every = log, clock, every
        self.last = {}

    def __call__(self, key, line):
        now = self.clock()
        when, skipped = self.last.get(key, (None, 0))
        if when is not None and now - when < self.every:
            self.last[key] = (when, skipped + 1)
            return
        if len(self.last) > 256:
            self.last.clear()
        self.last[key] = (now, 0)
        self.log(line + (" (%d more like it in %.0f s)" % (skipped, now - when) if skipped else ""))


def keepalive(sock, grace):
    """TCP keepalive and a send timeout, so a peer that vanished is noticed even without traffic."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", int(grace * 1000))):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def address(text):
    """An IP address as the kernel reports a peer (IPv4-mapped IPv6 taken as IPv4)."""
    ip = ipaddress.ip_address(text.split("%")[0])
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip


# --- the coordinator's decisions -------------------------------------------------------------

class Coordinator:
    """The group's state machine. Feed it reports; it answers with commands for all ranks."""

    def __init__(self, nnodes, max_restarts=3, window=600.0, silent_after=10.0, stop_timeout=180.0,
                 health_failures=0):
        self.nnodes = nnodes
        # Rank 0's /health_generate: after `health_failures` failed probes in a row (0: not
        # probed), counted once it answered since the group was armed, the group has hung.
        self.health_failures = health_failures
        self.health = {"ok_since_armed": False, "failed": 0}
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
        # A rank outside the group would keep it from arming, or fence it as "silent" later.
        if type(rank) is not int or not 0 <= rank < self.nnodes:  # pylint: disable=unidiomatic-typecheck
            raise ValueError("rank %r is not a rank of this group (0..%d)" % (rank, self.nnodes - 1))
        if state not in STATES:
            raise ValueError("state %r is not a unit state" % (state,))
        self.reports[rank] = (state, now)

    def probe(self, ok):
        """One probe of rank 0's /health_generate. A rank stuck in a collective keeps every unit
        active, so only this tells a hung group from a serving one."""
        if self.phase != "armed":
            return None
        if ok:
            first = not self.health["ok_since_armed"]
            self.health.update(ok_since_armed=True, failed=0)
            return "rank 0's /health_generate answers: watching for hangs" if first else None
        if self.health["ok_since_armed"]:  # not while the model still loads
            self.health["failed"] += 1
        return None

    def _arm(self, now):
        self.phase, self.phase_since = "armed", now
        self.health.update(ok_since_armed=False, failed=0)

    def _states(self, now):
        return {r: (s if now - t <= self.silent_after else "silent")
                for r, (s, t) in self.reports.items()}

    def decide(self, now):
        """One step: returns (command or None, log line or None). Commands: stop, start."""
        states = self._states(now)
        all_seen = len(states) == self.nnodes
        if self.phase in ("idle", "gave-up"):
            if all_seen and all(s == "active" for s in states.values()):
                self._arm(now)
                return None, "armed: all %d ranks active" % self.nnodes
            return None, None
        if self.phase == "armed":
            bad = sorted(r for r, s in states.items() if s in ("failed", "silent"))
            missing = sorted(set(range(self.nnodes)) - set(states))
            hung = bool(self.health_failures) and self.health["failed"] >= self.health_failures
            if bad or missing or hung:
                what = ", ".join(["rank %d %s" % (r, states[r]) for r in bad]
                                 + ["rank %d silent" % r for r in missing]
                                 + (["rank 0's /health_generate failed %d times in a row (hung)"
                                     % self.health["failed"]] if hung else []))
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
                self._arm(now)
                return None, "armed: all %d ranks active again" % self.nnodes
            if any(s == "failed" for s in states.values()) or now - self.phase_since > self.stop_timeout:
                self.reason = "start failed: %s" % states
                self.phase, self.phase_since = "stopping", now
                return "stop", "fence: the restart failed (%s); stopping the group" % states
            return None, None
        return None, None


# --- the coordinator's network side ----------------------------------------------------------

class _Peer:
    def __init__(self, sock, ip, now):
        self.sock, self.ip, self.since, self.heard = sock, ip, now, now
        self.lines = Lines()
        self.rank = None
        self.channel = None
        self.proven = False  # sent one valid report: it holds the key and this session's nonces


class Server:
    """The coordinator's listener: one selectors loop for every connection, a tick a second."""

    def __init__(self, coord, key, group, members, listen, log, state_file=None, clock=time.monotonic,
                 grace=20.0, health_url=None, health_interval=5.0, health_ca=None, metrics_file=None):
        self.coord, self.key, self.group = coord, key, group
        self.members = {rank: address(ip) for rank, ip in members.items()}
        self.log, self.state_file, self.clock, self.grace = log, state_file, clock, grace
        self.metrics_file = metrics_file
        self.refused = Limiter(log, clock)
        self.max_peers = 2 * coord.nnodes + 8
        self.peers = {}  # socket -> _Peer
        self.sel = selectors.DefaultSelector()
        host, port = listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.srv = socket.create_server((host, port), family=family, backlog=128)
        self.srv.setblocking(False)
        self.port = self.srv.getsockname()[1]
        self.sel.register(self.srv, selectors.EVENT_READ)
        self.last_phase = None
        self.stopped = threading.Event()
        self.health_url, self.health_interval, self.health_ca = health_url, health_interval, health_ca
        self.probes = collections.deque(maxlen=16)  # (ok, detail) from the probe thread

    def probe_health(self):
        """Rank 0's /health_generate every interval (its own thread: a hung server answers
        nothing, and the event loop must not wait for it). No proxy: it is this node's loopback."""
        handlers = [urllib.request.ProxyHandler({})]
        if self.health_ca:  # HTTPS API: trust the cluster's CA (cluster_tls_ca), verify the name
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=self.health_ca)))
        opener = urllib.request.build_opener(*handlers)
        started = time.monotonic()
        # One probe starts every interval; a hung server uses up the interval as its timeout.
        while not self.stopped.wait(max(0.0, started + self.health_interval - time.monotonic())):
            started = time.monotonic()
            try:
                with opener.open(self.health_url, timeout=self.health_interval) as answer:
                    self.probes.append((answer.status == 200, "HTTP %d" % answer.status))
            except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts, bad answers
                self.probes.append((False, str(err)))

    def serve(self):
        if self.health_url and self.coord.health_failures:
            threading.Thread(target=fatal(self.probe_health, self.log), daemon=True).start()
        next_tick = self.clock()
        while not self.stopped.is_set():
            for key, _events in self.sel.select(timeout=max(0.0, min(next_tick - self.clock(), 0.5))):
                if key.fileobj is self.srv:
                    self._accept()
                elif key.fileobj in self.peers:
                    self._read(self.peers[key.fileobj])
            now = self.clock()
            if now >= next_tick:
                next_tick = now + LIMITS["interval"]
                self.tick(now)
        for sock in list(self.peers):
            self._drop(self.peers[sock])
        self.sel.close()
        self.srv.close()

    def _accept(self):
        for _attempt in range(64):
            try:
                sock, addr = self.srv.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # e.g. out of file descriptors: the peers are still served
                self.refused("accept", "accept failed: %s" % err)
                return
            ip = address(addr[0])
            if ip not in self.members.values():
                self.refused(("stranger", ip), "refused %s: not a member of group %s" % (ip, self.group))
                sock.close()
                continue
            if len(self.peers) >= self.max_peers:
                unproven = sorted((p for p in self.peers.values() if not p.proven), key=lambda p: p.since)
                if not unproven:
                    self.refused(("full", ip), "refused %s: %d connections open" % (ip, len(self.peers)))
                    sock.close()
                    continue
                self._drop(unproven[0], "evicted (%d connections open)" % len(self.peers))
            sock.setblocking(False)
            keepalive(sock, self.grace)
            peer = _Peer(sock, ip, self.clock())
            self.peers[sock] = peer
            self.sel.register(sock, selectors.EVENT_READ)

    def _drop(self, peer, why=None):
        if why:
            self.refused((why.split(":")[0], peer.ip), "dropped %s%s: %s" % (
                peer.ip, "" if peer.rank is None else " (rank %d)" % peer.rank, why))
        self.peers.pop(peer.sock, None)
        try:
            self.sel.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        peer.sock.close()

    def _read(self, peer):
        try:
            data = peer.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._drop(peer, "connection error: %s" % err)
            return
        if not data:
            self._drop(peer)
            return
        try:
            for line in peer.lines.feed(data):
                if peer.sock not in self.peers:
                    return  # dropped while answering an earlier line
                self._message(peer, line)
        except ProtocolError as err:
            self._drop(peer, str(err))

    def _message(self, peer, line):
        now = self.clock()
        if peer.channel is None:
            fields = expect(unseal(self.key, hello_label(self.group, "a2c"), line), "hello", ("rank", "an"))
            rank = integer(fields, "rank", 0, self.coord.nnodes - 1)
            if self.members[rank] != peer.ip:
                raise ProtocolError("rank %d is planned at %s, not here" % (rank, self.members[rank]))
            an, cn = nonce(fields, "an"), secrets.token_hex(NONCE_HEX // 2)
            peer.rank = rank
            peer.channel = Channel(self.key, self.group, an, cn, "c2a")
            self._send(peer, seal(self.key, hello_label(self.group, "c2a"),
                                  {"t": "welcome", "rank": rank, "an": an, "cn": cn}))
            return
        fields = expect(peer.channel.open(line), "report", ("rank", "state", "n"))
        if integer(fields, "rank", 0, self.coord.nnodes - 1) != peer.rank:
            raise ProtocolError("a report for rank %r in rank %d's session" % (fields["rank"], peer.rank))
        if fields["state"] not in STATES:
            raise ProtocolError("state %r is not a unit state" % (fields["state"],))
        peer.heard = now
        if not peer.proven:
            peer.proven = True
            for other in list(self.peers.values()):
                if other is not peer and other.proven and other.rank == peer.rank:
                    self._drop(other)  # the agent reconnected: the new session replaces the old
        self.coord.report(peer.rank, fields["state"], now)

    def _send(self, peer, data):
        try:
            sent = peer.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as err:
            self._drop(peer, "connection error: %s" % err)
            return
        if sent != len(data):  # it has not read a socket buffer of messages: not an agent
            self._drop(peer, "not reading its messages")

    def tick(self, now):
        for peer in list(self.peers.values()):
            if not peer.proven and now - peer.since > LIMITS["handshake"]:
                self._drop(peer, "no valid report within %.0f s of connecting" % LIMITS["handshake"])
            elif peer.proven and now - peer.heard > self.coord.silent_after:
                self._drop(peer, "silent for %.0f s" % (now - peer.heard))
        while self.probes:
            ok, detail = self.probes.popleft()
            if not ok and self.coord.phase == "armed" and self.coord.health["ok_since_armed"]:
                self.refused("health", "rank 0's %s: %s" % (self.health_url, detail))
            line = self.coord.probe(ok)
            if line:
                self.log(line)
        command, line = self.coord.decide(now)
        if line:
            self.log(line)
        # Every second, to every proven agent: the command, or a heartbeat without one.
        for peer in list(self.peers.values()):
            if peer.proven:
                self._send(peer, peer.channel.seal({"t": "order", "cmd": command}))
        if self.state_file and self.coord.phase != self.last_phase:
            self.last_phase = self.coord.phase
            try:
                with open(self.state_file, "w") as out:
                    json.dump({"phase": self.coord.phase, "restarts": len(self.coord.restarts),
                               "reason": self.coord.reason}, out)
            except OSError as err:
                raise InternalError("cannot write the state file %s: %s" % (self.state_file, err)) from err
            if self.metrics_file:
                write_atomic(self.metrics_file, metrics_text(self.group, self.coord.phase, len(self.coord.restarts)))


# --- the agent on every node -------------------------------------------------------------------

def unit_state(unit):
    try:
        out = subprocess.run(["systemctl", "show", "-p", "ActiveState", "--value", unit],
                             capture_output=True, text=True, check=False).stdout.strip()
    except OSError as err:
        raise InternalError("systemctl: %s" % err) from err
    return out if out in STATES else "unknown"


def act(unit, command, log):
    try:
        if command == "stop":
            if unit_state(unit) in RUNNING:
                log("stopping %s" % unit)
                subprocess.run(["systemctl", "stop", "--no-block", unit], check=False)
        elif command == "start":
            log("starting %s" % unit)
            subprocess.run(["systemctl", "reset-failed", unit], check=False)
            subprocess.run(["systemctl", "start", "--no-block", unit], check=False)
    except OSError as err:
        raise InternalError("systemctl: %s" % err) from err


def split_hostport(value):
    host, port = value.rpartition(":")[::2]
    return host.strip("[]"), int(port)


class Agent:
    """Reports this rank's unit state to the coordinator and obeys only its authenticated orders.

    `heard` is when the coordinator last proved itself (a valid welcome or order): a rank > 0
    whose unit runs is stopped once that is `grace` seconds ago, whether the coordinator is
    unreachable, refuses us, or accepts and stays silent. Read timeouts follow from it.
    """

    def __init__(self, unit, rank, group, key, coordinator, source, grace, log,
                 state=unit_state, command=act, clock=time.monotonic):
        self.unit, self.rank, self.group, self.key = unit, rank, group, key
        self.coordinator, self.source, self.grace = coordinator, source, grace
        self.log, self.state, self.command, self.clock = log, state, command, clock
        self.refused = Limiter(log, clock)
        self.heard = clock()
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.session()
            except (OSError, ProtocolError) as err:
                self.refused(type(err).__name__, "coordinator %s: %s" % (self.coordinator, err))
            self.check_grace()
            self.stopped.wait(LIMITS["interval"])

    def check_grace(self):
        silent = self.clock() - self.heard
        if self.rank != 0 and silent > self.grace and self.state(self.unit) in RUNNING:
            self.refused("grace", "no word from the coordinator %s for %.0f s (grace %.0f s): stopping rank %d"
                         % (self.coordinator, silent, self.grace, self.rank))
            self.command(self.unit, "stop", self.log)

    def session(self):
        host, port = split_hostport(self.coordinator)
        timeout = max(0.1, min(5.0, self.grace / 2))
        with socket.create_connection((host, port), timeout=timeout, source_address=(self.source, 0)) as sock:
            keepalive(sock, self.grace)
            an = secrets.token_hex(NONCE_HEX // 2)
            sock.sendall(seal(self.key, hello_label(self.group, "a2c"), {"t": "hello", "rank": self.rank, "an": an}))
            channel, lines = None, Lines()
            next_report = self.clock()
            while not self.stopped.is_set():
                now = self.clock()
                if now - self.heard > self.grace:
                    raise ProtocolError("no valid message for %.0f s (grace)" % (now - self.heard))
                if channel is not None and now >= next_report:
                    next_report = now + LIMITS["interval"]
                    sock.sendall(channel.seal({"t": "report", "rank": self.rank, "state": self.state(self.unit)}))
                    self.check_grace()
                wait = min(next_report if channel else now + 0.5, self.heard + self.grace) - self.clock()
                sock.settimeout(max(0.05, wait))
                try:
                    data = sock.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    raise ProtocolError("the coordinator closed the connection")
                for line in lines.feed(data):
                    if channel is None:
                        fields = expect(unseal(self.key, hello_label(self.group, "c2a"), line),
                                        "welcome", ("rank", "an", "cn"))
                        if fields["an"] != an or integer(fields, "rank", 0, MAX_COUNTER) != self.rank:
                            raise ProtocolError("a welcome of another session (replayed)")
                        channel = Channel(self.key, self.group, an, nonce(fields, "cn"), "a2c")
                    else:
                        fields = expect(channel.open(line), "order", ("cmd", "n"))
                        if fields["cmd"] not in COMMANDS:
                            raise ProtocolError("command %r is not one of stop, start" % (fields["cmd"],))
                        if fields["cmd"]:
                            self.command(self.unit, fields["cmd"], self.log)
                    self.heard = self.clock()


# --- the program on the node -----------------------------------------------------------------

def read_key(path):
    """The group's key from its 0600 root file (argv names the file, never the key)."""
    try:
        with open(path, "rb") as handle:
            key = handle.read().strip()
    except OSError as err:
        raise SystemExit("fence: cannot read the group's key %s: %s. Fix: run the sglang_server role, "
                         "which writes it" % (path, err)) from None
    if len(key) < MIN_KEY:
        raise SystemExit("fence: the group's key %s has %d bytes, fewer than %d. Fix: delete its file on "
                         "rank 0 and run the sglang_server role again" % (path, len(key), MIN_KEY))
    return key


def members_arg(values, nnodes):
    members = {}
    for value in values:
        rank, _sep, ip = value.partition("=")
        members[int(rank)] = str(address(ip))
    if sorted(members) != list(range(nnodes)):
        raise SystemExit("fence: --member must name ranks 0..%d once each, got %s" % (nnodes - 1, sorted(members)))
    return members


def metrics_text(group, phase, restarts):
    """The coordinator's state for the node exporter's textfile collector (Prometheus text
    format): the alert "fence gave up" reads sglang_ops_fence_gave_up."""
    return ("# HELP sglang_ops_fence_gave_up 1 when the group's fence gave up restarting it.\n"
            "# TYPE sglang_ops_fence_gave_up gauge\n"
            'sglang_ops_fence_gave_up{group="%s"} %d\n'
            "# HELP sglang_ops_fence_restarts Group restarts the fence made in its current window.\n"
            "# TYPE sglang_ops_fence_restarts gauge\n"
            'sglang_ops_fence_restarts{group="%s"} %d\n' % (group, phase == "gave-up", group, int(restarts)))


def write_atomic(path, text):
    """Write then rename: the node exporter never reads half a file."""
    try:
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
    except OSError as err:
        raise InternalError("cannot write the metrics file %s: %s" % (path, err)) from err


def fatal(target, log):
    """A thread body whose unexpected exception ends the process (systemd restarts it)."""
    def body():
        try:
            target()
        except BaseException:  # pylint: disable=broad-exception-caught
            log("internal error, exiting: %s" % traceback.format_exc().replace("\n", " | "))
            os._exit(EXIT_INTERNAL)
    return body


def main(argv=None):
    p = argparse.ArgumentParser(description="fate-sharing fence of one SGLang group on one node")
    p.add_argument("--group", required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--nnodes", type=int, required=True)
    p.add_argument("--unit", required=True)
    p.add_argument("--coordinator", required=True, help="rank 0 node's HOST:PORT")
    p.add_argument("--member", action="append", default=[], help="RANK=ADDRESS of every rank")
    p.add_argument("--key-file", required=True, help="the group's key (a 0600 root file)")
    p.add_argument("--listen", help="HOST:PORT for the coordinator (rank 0 only)")
    p.add_argument("--max-restarts", type=int, default=3)
    p.add_argument("--window", type=float, default=600)
    p.add_argument("--grace", type=float, default=20)
    p.add_argument("--state", help="file for the coordinator's phase (JSON)")
    p.add_argument("--metrics", help="file for the coordinator's phase (Prometheus text, node exporter textfile)")
    p.add_argument("--health-url", help="rank 0's /health_generate, probed by the coordinator")
    p.add_argument("--health-interval", type=float, default=5)
    p.add_argument("--health-ca", help="CA file that signed rank 0's HTTPS certificate")
    p.add_argument("--health-failures", type=int, default=0, help="failed probes in a row that mean a hang (0: off)")
    a = p.parse_args(argv)
    members = members_arg(a.member, a.nnodes)
    key = read_key(a.key_file)

    def log(line):
        # This file is also a standalone program (the fence unit runs it on the nodes, outside
        # any module): its log is stdout, read by journald.
        print("%s rank %d: %s" % (a.group, a.rank, line), flush=True)  # pylint: disable=ansible-bad-function

    if a.rank == 0:
        coord = Coordinator(a.nnodes, a.max_restarts, a.window,
                            health_failures=a.health_failures if a.health_url else 0)
        server = Server(coord, key, a.group, members, split_hostport(a.listen or a.coordinator), log,
                        a.state, grace=a.grace, health_url=a.health_url, health_interval=a.health_interval,
                        health_ca=a.health_ca, metrics_file=a.metrics)
        threading.Thread(target=fatal(server.serve, log), daemon=True).start()
    agent = Agent(a.unit, a.rank, a.group, key, a.coordinator, members[a.rank], a.grace, log)
    fatal(agent.run, log)()


if __name__ == "__main__":
    # The fence unit's exit status (a standalone program here, not a module).
    sys.exit(main())  # pylint: disable=ansible-bad-function
