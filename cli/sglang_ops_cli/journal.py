"""The journals of many nodes as one stream in time order.

Each node runs `journalctl -o json`; every entry carries __REALTIME_TIMESTAMP (microseconds since
the epoch, the node's clock). Without -f all entries are sorted at once; with -f lines arrive
from each node as they are written, so Follower holds each one for a short delay and releases
them in timestamp order (a line that arrives later than the delay is still printed, at once).
"""

from __future__ import annotations

import datetime
import heapq
import json
import shlex
import threading
import time


def journal_command(units, since=None, lines=None, follow=False):
    argv = ["journalctl", "--no-pager", "-o", "json", "--output-fields=MESSAGE,_SYSTEMD_UNIT,UNIT,"
            "OBJECT_SYSTEMD_UNIT,__REALTIME_TIMESTAMP,SYSLOG_IDENTIFIER,PRIORITY"]
    for unit in units:
        argv += ["-u", unit + ".service"]
    if since:
        argv += ["--since", since]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return " ".join(shlex.quote(a) for a in argv)


def _text(value):
    """MESSAGE is a string, or a list of bytes when it was not valid UTF-8, or null."""
    if isinstance(value, list):
        return bytes(v & 0xFF for v in value if isinstance(v, int)).decode("utf-8", "replace")
    return "" if value is None else str(value)


def parse_line(line, host, label):
    """One journalctl JSON line as (timestamp µs, host, label, unit, message), or None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
        ts = int(entry["__REALTIME_TIMESTAMP"])
    except (ValueError, KeyError, TypeError):
        return None
    unit = entry.get("UNIT") or entry.get("OBJECT_SYSTEMD_UNIT") or entry.get("_SYSTEMD_UNIT") or ""
    if isinstance(unit, list):
        unit = _text(unit)
    return (ts, host, label, unit[:-8] if unit.endswith(".service") else unit, _text(entry.get("MESSAGE")))


def merge(streams):
    """All entries of {host: [entries]} in time order (ties: host, then each host's own order)."""
    keyed = []
    for host, entries in streams.items():
        for i, e in enumerate(entries):
            keyed.append(((e[0], host, i), e))
    return [e for _, e in sorted(keyed, key=lambda k: k[0])]


def when(ts):
    return datetime.datetime.fromtimestamp(ts / 1e6).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93")


def format_entry(entry, width=0, colour=None):
    ts, host, label, unit, message = entry
    prefix = ("%s %s" % (host, label)).ljust(width)
    if colour:
        prefix = "\033[%sm%s\033[0m" % (colour, prefix)
    return "%s %s %s: %s" % (when(ts), prefix, unit, message)


class Follower:
    """Reorders entries from many nodes: each is released `delay` seconds after it arrived, in
    timestamp order; `release(now)` returns the entries due."""

    def __init__(self, delay=1.0, clock=time.monotonic):
        self.delay, self.clock = delay, clock
        self._heap, self._n = [], 0
        self._lock = threading.Lock()

    def add(self, entry):
        with self._lock:
            self._n += 1
            heapq.heappush(self._heap, (entry[0], self._n, self.clock(), entry))

    def release(self, now=None, everything=False):
        """Entries whose hold has passed, earliest timestamp first. An entry due holds back none
        that is not: a line still held with an earlier timestamp is released with it."""
        now = self.clock() if now is None else now
        out = []
        with self._lock:
            due = [item for item in self._heap if everything or now - item[2] >= self.delay]
            if not due:
                return out
            newest = max(item[0] for item in due)
            while self._heap and self._heap[0][0] <= newest:
                out.append(heapq.heappop(self._heap)[3])
        return out
