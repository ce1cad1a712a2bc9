"""The fence's network side against hostile peers, on loopback, with the real sockets and code.

A group of two: a coordinator (Server + Coordinator) and two agents whose units are stand-ins
(a state and a list of the commands they received). Rank 0 is planned at 127.0.0.1, rank 1 at
127.0.0.2; 127.0.0.3 is a host of the cluster network that is not a member. Every hostile peer
below either stopped the group, killed the coordinator or went unnoticed with the fence as it was
before the group key (a plain JSON line protocol): each test asserts the group survives it, or
that the agent notices it within its grace period.
"""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import fence

KEY = b"k3y-of-the-group-" * 3
GROUP = "g1"
MEMBERS = {0: "127.0.0.1", 1: "127.0.0.2"}
STRANGER = "127.0.0.3"
FENCE_PY = Path(fence.__file__)


def wait(predicate, timeout=5.0, explain=lambda: ""):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError("timed out %s" % (explain(),))


class Unit:
    """A rank's server unit as the agent sees it: a state, and the commands it was given."""

    def __repr__(self):
        return "Unit(%s, %s)" % (self.state, orders(self))

    def __init__(self, state="active"):
        self.state, self.commands = state, []

    def get(self, _unit):
        return self.state

    def act(self, _unit, command, _log):
        self.commands.append((command, time.monotonic()))
        self.state = "inactive" if command == "stop" else "active"


def orders(unit):
    """The commands a unit was given, repeats collapsed (a stop is repeated until all stopped)."""
    out = []
    for command, _t in unit.commands:
        if not out or out[-1] != command:
            out.append(command)
    return out


def run_thread(target):
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


class Group:
    """A coordinator and two agents on loopback, armed."""

    def __init__(self, grace=3.0):
        self.logs = []
        self.coord = fence.Coordinator(2, silent_after=2.0)
        self.server = fence.Server(self.coord, KEY, GROUP, MEMBERS, ("127.0.0.1", 0), self.logs.append, grace=grace)
        self.address = "127.0.0.1:%d" % self.server.port
        self.units = [Unit(), Unit()]
        self.agents = [fence.Agent("u", r, GROUP, KEY, self.address, MEMBERS[r], grace, self.logs.append,
                                   state=self.units[r].get, command=self.units[r].act) for r in (0, 1)]
        self.threads = [run_thread(self.server.serve)] + [run_thread(a.run) for a in self.agents]

    def stop(self):
        for agent in self.agents:
            agent.stopped.set()
        self.server.stopped.set()
        for thread in self.threads:
            thread.join(5)

    def unharmed(self, seconds=None):
        """Still armed, no rank was ordered anything, both agents still report and hear."""
        time.sleep(seconds if seconds is not None else 3 * fence.LIMITS["interval"])
        assert all(t.is_alive() for t in self.threads)
        assert self.coord.phase == "armed"
        assert [u.commands for u in self.units] == [[], []]
        now = time.monotonic()
        assert all(now - t < 1.0 for _s, t in self.coord.reports.values())
        assert all(now - a.heard < 1.0 for a in self.agents)


@pytest.fixture(name="group")
def fixture_group(monkeypatch):
    monkeypatch.setitem(fence.LIMITS, "interval", 0.1)
    monkeypatch.setitem(fence.LIMITS, "handshake", 1.0)
    grp = Group()
    wait(lambda: grp.coord.phase == "armed")
    yield grp
    grp.stop()


def seal_raw(key, label, body):
    return hmac.new(key, label + b"\n" + body, hashlib.sha256).hexdigest().encode() + b" " + body + b"\n"


class Peer:
    """A client of the coordinator that says what the test tells it (with or without the key)."""

    def __init__(self, group, source, key=KEY, port=None):
        self.key = key
        self.sock = socket.create_connection(("127.0.0.1", port or group.server.port), timeout=3,
                                             source_address=(source, 0))
        self.buf = b""
        self.channel = None
        self.sent = []  # every line, for a replay

    def send(self, data):
        self.sent.append(data)
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def hello(self, rank=1):
        an = os.urandom(16).hex()
        self.send(fence.seal(self.key, fence.hello_label(GROUP, "a2c"), {"t": "hello", "rank": rank, "an": an}))
        welcome = self.line()
        if welcome is None:
            return None
        fields = fence.unseal(self.key, fence.hello_label(GROUP, "c2a"), welcome)
        self.channel = fence.Channel(self.key, GROUP, an, fields["cn"], "a2c")
        return fields

    def report(self, state="failed", rank=1):
        self.send(self.channel.seal({"t": "report", "rank": rank, "state": state}))

    def closed(self, timeout=3.0):
        """Whether the coordinator closes this connection (reading what it sends meanwhile)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        except socket.timeout:
            return False
        return True


def test_a_group_with_the_key_fences_and_restarts_together(group):
    """The protocol does its job: rank 1 fails, both ranks are stopped, then started."""
    group.units[1].state = "failed"
    wait(lambda: orders(group.units[0]) == ["stop", "start"])
    wait(lambda: orders(group.units[1]) == ["stop", "start"])
    wait(lambda: group.coord.phase == "armed")
    assert "fence: rank 1 failed; stopping every rank of the group" in group.logs


@pytest.mark.parametrize("payload", [
    b'{"rank": 1, "state": "failed"}\n',  # what the fence without a key obeyed
    b"\x00\xff\xfe garbage\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"0" * 64 + b' {"t": "hello", "rank": 1, "an": "00000000000000000000000000000000"}\n',
])
def test_unsigned_and_garbage_lines_are_refused(group, payload):
    for source in MEMBERS.values():
        peer = Peer(group, source)
        peer.send(payload * 5)
        assert peer.closed()
    group.unharmed()


def test_a_member_without_the_key_cannot_stop_the_group(group):
    peer = Peer(group, MEMBERS[1], key=b"not-the-key-of-the-group-" * 2)
    assert peer.hello() is None  # the coordinator hangs up on a hello with a wrong MAC
    assert any("wrong MAC" in line for line in group.logs)
    group.unharmed()


def test_a_recorded_session_cannot_be_replayed(group):
    """A session recorded earlier (rank 1 failing, valid MACs) replayed: the coordinator's nonce
    differs, so every report's MAC is wrong; replaying a report within a session is refused too."""
    old = fence.Server(fence.Coordinator(2), KEY, GROUP, MEMBERS, ("127.0.0.1", 0), lambda line: None)
    run_thread(old.serve)
    try:
        recorder = Peer(group, MEMBERS[1], port=old.port)
        recorder.hello()
        recorder.report("failed")
        recorder.report("failed")
        recorded = recorder.sent
        wait(lambda: 1 in old.coord.reports)  # the recording was valid where it was made
    finally:
        old.stopped.set()
    replay = Peer(group, MEMBERS[1])
    replay.send(recorded[0])
    assert replay.line() is not None  # a hello alone proves nothing; it gets a fresh nonce
    replay.send(b"".join(recorded[1:]))
    assert replay.closed()
    assert any("wrong MAC" in line for line in group.logs)
    group.unharmed()
    # Within one session: the same valid report twice.
    peer = Peer(group, MEMBERS[1])
    peer.hello()
    peer.report("active")
    peer.send(peer.sent[-1])
    assert peer.closed()
    assert any("replayed, dropped or reordered" in line for line in group.logs)
    group.unharmed()


def test_an_oversize_line_is_cut_off(group):
    peer = Peer(group, MEMBERS[1])
    try:
        peer.send(b"a" * (16 << 20))
    except OSError:
        pass  # the coordinator hung up long before 16 MiB
    assert peer.closed()
    assert any("a line longer than 512 bytes" in line for line in group.logs)
    group.unharmed()


BAD_REPORTS = [
    b'{"n":1,"rank":null,"state":"failed","t":"report"}',
    b'{"n":1,"rank":"1","state":"failed","t":"report"}',
    b'{"n":1,"rank":true,"state":"failed","t":"report"}',
    b'{"n":1,"rank":1.0,"state":"failed","t":"report"}',
    b'{"n":1,"rank":NaN,"state":"failed","t":"report"}',
    b'{"n":1,"rank":1e400,"state":"failed","t":"report"}',
    b'{"n":1,"rank":' + b"9" * 400 + b',"state":"failed","t":"report"}',
    b'{"n":1,"rank":0,"state":"failed","t":"report"}',  # rank 0's report in rank 1's session
    b'{"n":1,"rank":7,"state":"failed","t":"report"}',
    b'{"n":1,"rank":1,"state":"exploded","t":"report"}',
    b'{"n":1,"rank":1,"state":["failed"],"t":"report"}',
    b'{"n":1,"rank":1,"state":"failed","t":"report","extra":1}',
    b'{"n":true,"rank":1,"state":"failed","t":"report"}',
    b'{"n":Infinity,"rank":1,"state":"failed","t":"report"}',
    b'[1, "failed"]',
    b'"\xff"',
]


@pytest.mark.parametrize("body", BAD_REPORTS)
def test_every_field_is_checked_even_with_a_valid_mac(group, body):
    """A peer with the key (a buggy or compromised member) still cannot crash the coordinator
    or slip a rank or state outside the group's into it."""
    peer = Peer(group, MEMBERS[1])
    peer.hello()
    peer.send(seal_raw(peer.channel.key, peer.channel.out_label, body))
    assert peer.closed()
    assert sorted(group.coord.reports) == [0, 1]
    group.unharmed()


@pytest.mark.parametrize("rank", [b"null", b'"1"', b"true", b"1.0", b"NaN", b"1e400", b"2", b"-1", b"9" * 400])
def test_hello_fields_are_checked_even_with_a_valid_mac(group, rank):
    peer = Peer(group, MEMBERS[1])
    body = b'{"an":"' + b"0" * 32 + b'","rank":' + rank + b',"t":"hello"}'
    peer.send(seal_raw(KEY, fence.hello_label(GROUP, "a2c"), body))
    assert peer.closed()
    group.unharmed()


def test_only_the_planned_address_of_a_rank_is_heard(group):
    """A host of the cluster network that is not a member is refused on connect; a member
    speaking for another rank is refused on its hello, even with the key."""
    stranger = Peer(group, STRANGER)
    stranger.send(b"x")
    assert stranger.closed()
    assert any("refused 127.0.0.3: not a member of group g1" in line for line in group.logs)
    impersonator = Peer(group, MEMBERS[0])
    assert impersonator.hello(rank=1) is None
    assert any("rank 1 is planned at 127.0.0.2" in line for line in group.logs)
    group.unharmed()


def test_a_flood_of_connections_neither_starves_the_group_nor_spawns_threads(group):
    threads = threading.active_count()
    flood = [Peer(group, source) for _n in range(100) for source in (MEMBERS[1], STRANGER)]
    wait(lambda: len(group.server.peers) <= group.server.max_peers)
    assert threading.active_count() == threads
    # A genuine new session still gets in (the silent ones are evicted first) and is heard.
    late = Peer(group, MEMBERS[1])
    assert late.hello()["rank"] == 1
    late.report("active")
    assert late.line() is not None  # the next heartbeat
    assert len(group.server.peers) <= group.server.max_peers
    late.sock.close()
    group.unharmed()
    for peer in flood:
        peer.sock.close()


class Impostor:
    """A listener at the coordinator's address: without the key, or with it and then silent."""

    def __init__(self, speak):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.srv.getsockname()[1]
        self.speak = speak
        self.conns = []
        run_thread(self.serve)

    def serve(self):
        while True:
            try:
                conn, _addr = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            run_thread(lambda c=conn: self.speak(c))

    def close(self):
        self.srv.close()
        for conn in self.conns:
            conn.close()


def agent_against(impostor, grace, monkeypatch):
    monkeypatch.setitem(fence.LIMITS, "interval", 0.1)
    unit, logs = Unit(), []
    agent = fence.Agent("u", 1, GROUP, KEY, impostor.address, MEMBERS[1], grace, logs.append,
                        state=unit.get, command=unit.act)
    t0 = time.monotonic()
    run_thread(agent.run)
    return agent, unit, logs, t0


def chatter(conn):
    """Orders in every form the agent must not obey: plain, signed with another key, a replayed welcome."""
    wrong = b"the-impostors-key-" * 3
    try:
        for _attempt in range(50):
            conn.sendall(b'{"cmd": "stop"}\n')
            conn.sendall(fence.seal(wrong, fence.hello_label(GROUP, "c2a"),
                                    {"t": "welcome", "rank": 1, "an": "0" * 32, "cn": "1" * 32}))
            time.sleep(0.05)
    except OSError:
        pass


def test_an_impostor_coordinator_is_not_obeyed(monkeypatch):
    impostor = Impostor(chatter)
    try:
        agent, unit, logs, t0 = agent_against(impostor, 3.0, monkeypatch)
        time.sleep(2.0)
        assert unit.commands == [] and unit.state == "active"
        assert any("wrong MAC" in line or "no MAC" in line for line in logs)
        # Not hearing its coordinator, the agent stops its rank once the grace period is over.
        wait(lambda: unit.commands, timeout=4)
        assert unit.commands[0][0] == "stop" and 3.0 <= unit.commands[0][1] - t0 < 4.5
        agent.stopped.set()
    finally:
        impostor.close()


def test_a_replayed_welcome_is_refused(monkeypatch):
    """An impostor that recorded a genuine welcome (valid group MAC) replays it to a new session."""
    recorded = fence.seal(KEY, fence.hello_label(GROUP, "c2a"),
                          {"t": "welcome", "rank": 1, "an": "ab" * 16, "cn": "cd" * 16})
    impostor = Impostor(lambda conn: conn.sendall(recorded))
    try:
        agent, unit, logs, _t0 = agent_against(impostor, 3.0, monkeypatch)
        wait(lambda: any("a welcome of another session (replayed)" in line for line in logs))
        assert unit.commands == []
        agent.stopped.set()
    finally:
        impostor.close()


def silent_with_key(conn):
    """Answers the hello correctly (it holds the key), then never says anything again."""
    line = b""
    while not line.endswith(b"\n"):
        line += conn.recv(1)
    fields = fence.unseal(KEY, fence.hello_label(GROUP, "a2c"), line)
    conn.sendall(fence.seal(KEY, fence.hello_label(GROUP, "c2a"),
                            {"t": "welcome", "rank": 1, "an": fields["an"], "cn": "ef" * 16}))
    while conn.recv(4096):
        pass


def never_answers(conn):
    while conn.recv(4096):
        pass


@pytest.mark.parametrize("speak", [never_answers, silent_with_key])
def test_a_silent_coordinator_is_noticed_within_the_grace_period(monkeypatch, speak):
    """It accepts (TCP alone would never notice), maybe even answers the hello, then is silent."""
    impostor = Impostor(speak)
    try:
        agent, unit, logs, t0 = agent_against(impostor, 1.5, monkeypatch)
        wait(lambda: unit.commands, timeout=4)
        took = unit.commands[0][1] - t0
        assert unit.commands[0][0] == "stop" and 1.5 <= took < 2.5, took
        assert any("no word from the coordinator" in line for line in logs)
        agent.stopped.set()
    finally:
        impostor.close()


def test_an_internal_error_ends_the_process_with_a_failure(tmp_path):
    """The coordinator cannot write its state file: the process exits non-zero (systemd then
    restarts it) instead of living on with its coordinator dead."""
    (tmp_path / "fence-key").write_bytes(KEY)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, str(FENCE_PY), "--group", GROUP, "--rank", "0", "--nnodes", "2", "--unit", "none.service",
            "--coordinator", "127.0.0.1:%d" % port, "--member", "0=127.0.0.1", "--member", "1=127.0.0.2",
            "--key-file", str(tmp_path / "fence-key"), "--state", str(tmp_path / "missing" / "state.json")]
    proc = subprocess.run(argv, timeout=20,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == fence.EXIT_INTERNAL
    assert "cannot write the state file" in proc.stdout
    assert KEY.decode() not in proc.stdout + proc.stderr + " ".join(argv)


@pytest.mark.parametrize("content, message", [(None, "cannot read the group's key"),
                                              (b"short\n", "has 5 bytes, fewer than 32")])
def test_a_missing_or_short_key_is_refused_with_the_fix(tmp_path, content, message):
    if content is not None:
        (tmp_path / "fence-key").write_bytes(content)
    argv = [sys.executable, str(FENCE_PY), "--group", GROUP, "--rank", "1", "--nnodes", "2", "--unit", "u",
            "--coordinator", "127.0.0.1:1", "--member", "0=127.0.0.1", "--member", "1=127.0.0.2",
            "--key-file", str(tmp_path / "fence-key")]
    proc = subprocess.run(argv, timeout=20,
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Fix:" in proc.stderr


def test_lines_are_bounded_and_split():
    lines = fence.Lines()
    assert lines.feed(b"a\nb") == [b"a\n"] and lines.feed(b"c\n") == [b"bc\n"]
    with pytest.raises(fence.ProtocolError):
        lines.feed(b"x" * (fence.MAX_LINE + 1))


def test_messages_carry_no_float_and_no_secret():
    line = fence.seal(KEY, b"label", {"t": "hello", "rank": 1, "an": "0" * 32})
    assert KEY not in line and len(line) < fence.MAX_LINE
    assert json.loads(line.split(b" ", 1)[1]) == {"t": "hello", "rank": 1, "an": "0" * 32}
    with pytest.raises(fence.ProtocolError, match="wrong MAC"):
        fence.unseal(KEY, b"other label", line)


class HealthDouble:
    """Test double of rank 0's /health_generate: 200 until frozen, then no answer at all."""

    def __init__(self):
        import http.server  # pylint: disable=import-outside-toplevel
        double = self
        self.frozen = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if double.frozen.is_set():
                    time.sleep(5)
                    return
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/health_generate" % self.srv.server_address[1]
        run_thread(self.srv.serve_forever)


def test_a_frozen_rank0_is_detected_and_the_group_restarted(monkeypatch):
    monkeypatch.setitem(fence.LIMITS, "interval", 0.1)
    double = HealthDouble()
    grp = Group()
    grp.server.stopped.set()  # replaced by a coordinator that probes the double
    grp.threads[0].join(5)
    grp.coord = fence.Coordinator(2, silent_after=2.0, health_failures=3)
    grp.server = fence.Server(grp.coord, KEY, GROUP, MEMBERS, ("127.0.0.1", int(grp.address.rsplit(":", 1)[1])),
                              grp.logs.append, grace=3.0, health_url=double.url, health_interval=0.3)
    grp.threads[0] = run_thread(grp.server.serve)
    try:
        wait(lambda: grp.coord.phase == "armed" and grp.coord.health["ok_since_armed"])
        double.frozen.set()
        took = wait(lambda: grp.units[0].commands and grp.units[1].commands, timeout=5)
        assert 0.6 <= took < 2.5, took  # three probes of 0.3 s each, then the next tick
        assert any("failed 3 times in a row (hung)" in line for line in grp.logs)
        double.frozen.clear()
        wait(lambda: orders(grp.units[0]) == orders(grp.units[1]) == ["stop", "start"],
             explain=lambda: (grp.units, grp.logs))
    finally:
        grp.stop()
        double.srv.shutdown()


def test_the_health_probe_of_an_https_api_trusts_the_clusters_ca(tmp_path):
    """With TLS on the API (cluster_tls_ca), rank 0's fence probes over HTTPS with that CA: without
    it every probe would fail verification and a healthy group would be restarted as hung."""
    import http.server  # pylint: disable=import-outside-toplevel
    import ssl  # pylint: disable=import-outside-toplevel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    import tls_ca  # pylint: disable=import-outside-toplevel

    pems = tls_ca.make_ca(tmp_path, ["127.0.0.1"])
    for name in ("ca", "cert", "key"):
        (tmp_path / ("%s.pem" % name)).write_text(pems[name])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    run_thread(srv.serve_forever)
    url = "https://127.0.0.1:%d/health_generate" % srv.server_address[1]
    try:
        results = {}
        for label, ca in (("with the CA", str(tmp_path / "ca.pem")), ("without", None)):
            server = fence.Server(fence.Coordinator(2, health_failures=3), KEY, GROUP, MEMBERS, ("127.0.0.1", 0),
                                  lambda line: None, health_url=url, health_interval=0.2, health_ca=ca)
            thread = run_thread(server.probe_health)
            wait(lambda s=server: len(s.probes) >= 2)
            server.stopped.set()
            thread.join(2)
            server.srv.close()
            results[label] = list(server.probes)[:2]
        assert all(ok for ok, _detail in results["with the CA"]), results
        assert not any(ok for ok, _detail in results["without"]) and "CERTIFICATE_VERIFY_FAILED" in results["without"][0][1]
    finally:
        srv.shutdown()
