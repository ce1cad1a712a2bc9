"""SSH to the nodes with Fabric, in parallel, one result per host (an unreachable host is named,
the others are still reported)."""

from __future__ import annotations

import concurrent.futures
import getpass
import shlex
import socket
import threading

CONNECT_TIMEOUT = 10.0


class Result:
    """One host's outcome: rc/stdout/stderr, or error (the host could not be reached)."""

    def __init__(self, host, rc=None, stdout="", stderr="", error=None):
        self.host, self.rc, self.stdout, self.stderr, self.error = host, rc, stdout, stderr, error

    @property
    def ok(self):
        return self.error is None and self.rc == 0

    def __repr__(self):
        return "Result(%r, rc=%r, error=%r)" % (self.host, self.rc, self.error)


def describe_error(target, exc):
    """One line for an SSH failure, naming the host, the address and what to check."""
    where = "%s (%s%s%s)" % (target["name"], (target.get("user") + "@") if target.get("user") else "",
                              target["host"], (":%d" % target["port"]) if target.get("port") else "")
    kind = type(exc).__name__
    text = " ".join(str(exc).split()) or kind
    if kind in ("AuthenticationException", "BadAuthenticationType", "PasswordRequiredException"):
        fix = "check ansible_user and ansible_ssh_private_key_file"
    elif kind in ("BadHostKeyException",) or "not found in known_hosts" in text or "known_hosts" in text:
        fix = "add the host key to known_hosts (ssh-keyscan), or set host_key_checking as the playbooks do"
    else:
        fix = "check that the host is up and sshd answers (ansible -m ping %s)" % target["name"]
    return "%s: unreachable: %s (%s). Fix: %s" % (where, text, kind, fix)


def become(command, target):
    """The command as root: directly when the SSH user is root, else through `sudo -n`."""
    return command if not target.get("become") else "sudo -n -- sh -c %s" % shlex.quote(command)


class Hosts:
    """Fabric connections to the planned nodes, opened lazily, one per host and thread."""

    def __init__(self, targets, connect_timeout=None):
        self.targets = targets
        self.connect_timeout = connect_timeout
        self._conns = {}
        self._locks = {}
        self._guard = threading.Lock()

    def lock(self, name, slot=0):
        with self._guard:
            return self._locks.setdefault((name, slot), threading.Lock())

    def connection(self, name, slot=0):
        """The host's connection number `slot` (a second slot runs beside a busy first one)."""
        from fabric import Connection
        import paramiko
        cache = self._conns
        if (name, slot) in cache:
            return cache[(name, slot)]
        t = self.targets[name]
        timeout = self.connect_timeout or t.get("connect_timeout") or CONNECT_TIMEOUT
        kwargs = {"banner_timeout": timeout, "auth_timeout": timeout}
        if t.get("key_filename"):
            kwargs["key_filename"] = t["key_filename"]
        gateway = None
        if t.get("proxy_jump"):
            jump = t["proxy_jump"].split(",")[0]
            gateway = Connection(jump, connect_timeout=timeout,
                                 connect_kwargs={k: v for k, v in kwargs.items() if k == "key_filename"})
        elif t.get("proxy_command"):
            gateway = t["proxy_command"].replace("%h", t["host"]).replace("%p", str(t.get("port") or 22)) \
                .replace("%r", t.get("user") or getpass.getuser())
        conn = Connection(t["host"], user=t.get("user"), port=t.get("port"), connect_timeout=timeout,
                          connect_kwargs=kwargs, gateway=gateway)
        client = conn.client
        if t.get("strict_host_keys"):
            if t.get("known_hosts") and t["known_hosts"] != "/dev/null":
                client.load_host_keys(t["known_hosts"])
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        if t.get("become") is None or t.get("user") is None:
            t["become"] = (t.get("user") or conn.user) != "root"
        cache[(name, slot)] = conn
        return conn

    def run(self, name, command, timeout=None, as_root=True, slot=0, **kw):
        """Run `command` (sh) on one host; a Result, never an exception."""
        t = self.targets[name]
        try:
            with self.lock(name, slot):
                conn = self.connection(name, slot)
                cmd = become(command, t) if as_root else command
                res = conn.run(cmd, hide=True, warn=True, timeout=timeout, in_stream=False, **kw)
            return Result(name, res.return_code, res.stdout, res.stderr)
        except Exception as exc:  # pylint: disable=broad-except
            if type(exc).__name__ == "CommandTimedOut":
                return Result(name, 124, "", "", error="%s: no answer within %s s" % (name, timeout))
            return Result(name, error=describe_error(t, exc))

    def run_all(self, commands, timeout=None, **kw):
        """{host: Result} for {host: command}, all hosts at once."""
        if not commands:
            return {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, len(commands))) as pool:
            futures = {h: pool.submit(self.run, h, c, timeout, **kw) for h, c in commands.items()}
            return {h: f.result() for h, f in futures.items()}

    def close(self):
        for conn in list(self._conns.values()):
            try:
                conn.close()
            except (OSError, socket.error):
                pass
