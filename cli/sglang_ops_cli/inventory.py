"""The playbooks' inventory, as `ansible-inventory --list` gives it, made usable by the CLI.

Why this exists: sglang-ops must act on the same hosts, with the same variables, as deploy.yml.
`ansible-inventory` resolves the sources, group_vars and host_vars; what it leaves raw
(inline-vaulted values, Jinja templates) is decrypted with the same vault secrets and templated
with Ansible's own templar here. The SSH settings Ansible would use (user, key, port, bastion
through ProxyJump / ProxyCommand, host key checking) are read from the same variables.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

ROOT_GROUP = "sglang_nodes"  # same names as module_utils.cluster_plan (checked by a unit test)
HEAD_GROUP = "ray_head"
# Variables besides the collection's own that the plan and the connections read.
SSH_KEYS = ("ansible_host", "ansible_user", "ansible_ssh_user", "ansible_port", "ansible_ssh_port",
            "ansible_ssh_private_key_file", "ansible_private_key_file", "ansible_ssh_common_args",
            "ansible_ssh_extra_args", "ansible_ssh_args", "ansible_host_key_checking",
            "ansible_ssh_host_key_checking", "ansible_become_method")


class InventoryError(Exception):
    """The inventory cannot be read: one line naming the source and the fix."""


class Inventory:
    """groups: {name: {hosts: [...], children: [...]}}; hostvars: {host: {name: value}} (raw)."""

    def __init__(self, data, sources=()):
        self.sources = list(sources)
        self.hostvars = (data.get("_meta") or {}).get("hostvars") or {}
        self.groups = {name: {"hosts": list((body or {}).get("hosts") or []),
                              "children": list((body or {}).get("children") or [])}
                       for name, body in data.items() if name != "_meta"}

    def hosts_of(self, group, _seen=None):
        """Every host of `group` and its descendants, in inventory order, once each."""
        seen = _seen if _seen is not None else set()
        if group in seen or group not in self.groups:
            return []
        seen.add(group)
        out = list(self.groups[group]["hosts"])
        for child in self.groups[group]["children"]:
            out += [h for h in self.hosts_of(child, seen) if h not in out]
        return out

    def model_groups(self):
        """{child group of sglang_nodes: [its hosts]}, in inventory order (as the action plugin)."""
        if ROOT_GROUP not in self.groups:
            where = ", ".join(self.sources) or "the default inventory (ansible.cfg)"
            raise InventoryError("%s: no group %s in %s. Fix: pass the inventory deploy.yml used "
                                 "(-i PATH), with every GPU server under a model group that is a "
                                 "child of %s" % (ROOT_GROUP, ROOT_GROUP, where, ROOT_GROUP))
        root = self.hosts_of(ROOT_GROUP)
        return {child: [h for h in self.hosts_of(child) if h in root]
                for child in self.groups[ROOT_GROUP]["children"]}


def inventory_argv(sources, vault_ids=(), vault_password_files=(), ask_vault_pass=False):
    argv = ["ansible-inventory", "--list"]
    for src in sources:
        argv += ["-i", src]
    for vid in vault_ids:
        argv += ["--vault-id", vid]
    for path in vault_password_files:
        argv += ["--vault-password-file", path]
    if ask_vault_pass:
        argv.append("--ask-vault-pass")
    return argv


def check_sources(sources):
    """A source that looks like a path must exist (ansible-inventory only warns and lists nothing)."""
    for src in sources:
        looks_like_path = os.sep in src or src.endswith((".yml", ".yaml", ".ini", ".json")) or "," not in src
        if looks_like_path and not os.path.exists(src):
            raise InventoryError("inventory %s: no such file or directory. Fix: pass the inventory "
                                 "deploy.yml used, e.g. -i inventories/two_node (or set "
                                 "ANSIBLE_INVENTORY)" % src)


def load(sources=(), vault_ids=(), vault_password_files=(), ask_vault_pass=False, runner=subprocess.run):
    """Run ansible-inventory --list and return an Inventory (raw values)."""
    check_sources(sources)
    argv = inventory_argv(sources, vault_ids, vault_password_files, ask_vault_pass)
    try:
        proc = runner(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                      stdin=None if ask_vault_pass else subprocess.DEVNULL)
    except FileNotFoundError:
        raise InventoryError("ansible-inventory: not found. Fix: run from the tooling venv "
                             "(make venv; export PATH=$PWD/.venv/bin:$PATH)") from None
    if proc.returncode != 0:
        err = " ".join((proc.stderr or "").split())[-600:]
        raise InventoryError("ansible-inventory failed (rc %d): %s. Fix: check the inventory and the "
                             "vault options (--vault-password-file)" % (proc.returncode, err))
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise InventoryError("ansible-inventory printed no JSON (%s)" % exc) from None
    return Inventory(data, sources)


# --- values: vault and templates ----------------------------------------------------------------

class Unreadable(Exception):
    """A value that cannot be resolved; only the error's class travels (it may quote a secret)."""


def vault_secrets(vault_ids=(), vault_password_files=(), ask_vault_pass=False):
    from ansible.cli import CLI
    from ansible.parsing.dataloader import DataLoader
    loader = DataLoader()
    return loader, CLI.setup_vault_secrets(loader, vault_ids=list(vault_ids),
                                           vault_password_files=list(vault_password_files),
                                           ask_vault_pass=ask_vault_pass)


def is_vaulted(value):
    return isinstance(value, dict) and set(value) == {"__ansible_vault"}


def decrypt_all(value, decrypt):
    """Replace every {"__ansible_vault": ...} in value by decrypt(ciphertext) (recursively)."""
    if is_vaulted(value):
        return decrypt(value["__ansible_vault"])
    if isinstance(value, dict):
        return {k: decrypt_all(v, decrypt) for k, v in value.items()}
    if isinstance(value, list):
        return [decrypt_all(v, decrypt) for v in value]
    return value


def has_template(value):
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


class Resolver:
    """Decrypts and templates one inventory's variables with Ansible's own vault and templar."""

    def __init__(self, inventory, secrets=None, loader=None):
        self.inventory = inventory
        self.loader = loader
        self.vault = None
        if secrets:
            from ansible.parsing.vault import VaultLib
            self.vault = VaultLib(secrets)

    def _decrypt(self, ciphertext):
        if self.vault is None:
            raise Unreadable("vaulted, and no vault password was given (--vault-password-file)")
        return self.vault.decrypt(ciphertext).decode("utf-8")

    def host_values(self, host, wanted):
        """({name: value} for the names `wanted(name)` accepts, {name: error} for unreadable ones)."""
        raw = self.inventory.hostvars.get(host, {})
        context, values, unreadable = {}, {}, {}
        for name, value in raw.items():
            try:
                context[name] = decrypt_all(value, self._decrypt)
            except Exception as exc:  # pylint: disable=broad-except
                if wanted(name):
                    unreadable[name] = str(exc) if isinstance(exc, Unreadable) else type(exc).__name__
        templar = None
        for name, value in context.items():
            if not wanted(name):
                continue
            if not has_template(value):
                values[name] = value
                continue
            if templar is None:
                templar = self._templar(host, context)
            try:
                values[name] = _plain(templar.template(_trust(value)))
            except Exception as exc:  # pylint: disable=broad-except
                unreadable[name] = type(exc).__name__
        return values, unreadable

    def _templar(self, host, context):
        from ansible.parsing.dataloader import DataLoader
        from ansible.template import Templar
        variables = {k: _trust(v) for k, v in context.items()}
        variables.update(inventory_hostname=host, inventory_hostname_short=host.split(".")[0],
                         groups={g: self.inventory.hosts_of(g) for g in self.inventory.groups},
                         group_names=sorted(g for g in self.inventory.groups
                                            if host in self.inventory.groups[g]["hosts"]))
        return Templar(loader=self.loader or DataLoader(), variables=variables)


def _trust(value):
    """ansible-core >= 2.19 templates only strings marked trusted; older ones template all."""
    try:
        from ansible.template import trust_as_template
    except ImportError:
        return value
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trust(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trust(v) for v in value]
    return value


def _plain(value):
    """Ansible's tagged or lazy containers as plain Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


# --- SSH settings ---------------------------------------------------------------------------------

def ssh_options(args):
    """{option (lower case): value} from ssh argument strings (`-o K=V`, `-oK=V`, `-J`, `-i`, `-p`, `-l`)."""
    opts = {}
    for text in args:
        if not text:
            continue
        words = shlex.split(str(text))
        i = 0
        while i < len(words):
            word = words[i]
            flag, value = word[:2], word[2:]
            if flag in ("-o", "-J", "-i", "-p", "-l", "-F"):
                if not value:
                    i += 1
                    value = words[i] if i < len(words) else ""
                if flag == "-o":
                    key, _, val = value.replace("=", " ", 1).partition(" ")
                    opts.setdefault(key.strip().lower(), val.strip())
                else:
                    key = {"-J": "proxyjump", "-i": "identityfile", "-p": "port", "-l": "user",
                           "-F": "configfile"}[flag]
                    opts.setdefault(key, value)
            i += 1
    return opts


def _bool(value, default):
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def ssh_target(host, hv, host_key_checking=True):
    """How Ansible's ssh connection would reach `host`: a dict for remote.connect()."""
    opts = ssh_options([hv.get("ansible_ssh_common_args"), hv.get("ansible_ssh_extra_args"),
                        hv.get("ansible_ssh_args")])
    port = hv.get("ansible_port") or hv.get("ansible_ssh_port") or opts.get("port")
    strict = _bool(hv.get("ansible_host_key_checking", hv.get("ansible_ssh_host_key_checking")),
                   host_key_checking)
    if opts.get("stricthostkeychecking", "").lower() in ("no", "off", "accept-new"):
        strict = False
    known = opts.get("userknownhostsfile")
    user = hv.get("ansible_user") or hv.get("ansible_ssh_user") or opts.get("user")
    jump = opts.get("proxyjump")
    return {
        "name": host,
        "host": str(hv.get("ansible_host") or host),
        "user": str(user) if user else None,
        "port": int(port) if port else None,
        "key_filename": os.path.expanduser(str(hv.get("ansible_ssh_private_key_file")
                                               or hv.get("ansible_private_key_file")
                                               or opts.get("identityfile") or "")) or None,
        # ssh takes a list of jumps; the first one is the bastion reached directly.
        "proxy_jump": jump if jump and jump.lower() != "none" else None,
        "proxy_command": opts.get("proxycommand") if (opts.get("proxycommand") or "").lower() != "none" else None,
        "strict_host_keys": strict,
        "known_hosts": None if known in (None, "") else os.path.expanduser(known),
        "connect_timeout": float(opts["connecttimeout"]) if opts.get("connecttimeout", "").isdigit() else None,
        "become": str(user or "") != "root",
    }
