"""Openings in a host's own firewall (firewalld or ufw) for the cluster, from the cluster plan.

Why this exists: the collection's nftables table only drops what it owns and accepts nothing
for anyone else, which is right on hosts with no firewall of their own. A host that runs
firewalld or ufw rejects everything it was not told about, so the same ports must also be
opened there: cluster ports from the cluster networks, the API from the client networks. The
desired state is computed here and compared with what the tool reports, so a re-run changes
nothing and --check shows the difference.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.sglang_ops.cluster.plugins.module_utils.firewall import _ports, api_ports, check_port, check_range
from ansible_collections.sglang_ops.cluster.plugins.module_utils.metrics import cluster_only_ports, scrape_only_ports

BACKENDS = ("auto", "nftables", "firewalld", "ufw")
ZONE = "sglang"
CLIENT_ZONE = "sglang-clients"
COMMENT = "sglang_ops"
# firewalld's permanent zone files; `--delete-zone` leaves the deleted zone's file as NAME.xml.old.
FIREWALLD_ZONES_DIR = "/etc/firewalld/zones"


def openings(plan, host, client_cidrs=(), dynamic_ports="32768-60999", ssh_ports=()):
    """{"cluster": {"sources": [...], "ports": [...]}, "clients": {...}, "ssh": [...]} for `host`.

    Ports are "N" or "LO-HI" (tcp). Cluster members reach every cluster port and the API;
    clients reach only the API. `ssh` (firewall_ssh_ports and the Ansible port) is what a
    firewalld zone bound by source must also accept: firewalld >= 1.0 no longer lets a packet
    that matched our zone fall through to the interface's zone, where SSH usually is.
    """
    single, ranges = _ports(plan, host)
    api = api_ports(plan, host)
    # Metrics ports too: the collection's own table then narrows them to the Prometheus host.
    cluster_ports = [str(p) for p in sorted(set(single) | set(api) | set(scrape_only_ports(plan, host)) | set(cluster_only_ports(plan, host)))] + ranges
    if dynamic_ports:
        cluster_ports.append(check_range(dynamic_ports, "%s: firewall_dynamic_ports" % host))
    cidrs = plan["cidrs"] or ["%s/%d" % (plan["nodes"][host]["cluster_ip"],
                                         128 if ":" in plan["nodes"][host]["cluster_ip"] else 32)]
    return check_opening({
        "cluster": {"sources": sorted(cidrs), "ports": cluster_ports},
        "clients": {"sources": sorted(str(c) for c in client_cidrs), "ports": [str(p) for p in api]},
        "ssh": [str(p) for p in sorted({check_port(p, "%s: firewall_ssh_ports / ansible_port" % host)
                                        for p in ssh_ports})]})


def check_opening(opening):
    """The opening with every source a network and every port N or LO-HI, else ValueError:
    these words become firewall-cmd and ufw arguments."""
    out = {}
    for kind in ("cluster", "clients"):
        sources = []
        for src in opening[kind]["sources"]:
            try:
                sources.append(str(ipaddress.ip_network(str(src), strict=False)))
            except ValueError as exc:
                raise ValueError("%s source %r is not a network" % (kind, src)) from exc
        ports = [check_range(p, "%s port" % kind) if "-" in str(p) else str(check_port(p, "%s port" % kind))
                 for p in opening[kind]["ports"]]
        out[kind] = {"sources": sources, "ports": ports}
    out["ssh"] = [str(check_port(p, "ssh port")) for p in opening.get("ssh", [])]
    return out


def choose_backend(setting, firewalld_active, ufw_active):
    """The backend to configure: the operator's, or the host's own firewall when one is active."""
    if setting not in BACKENDS:
        raise ValueError("firewall_backend %r: use one of %s" % (setting, ", ".join(BACKENDS)))
    if setting != "auto":
        return setting
    if firewalld_active:
        return "firewalld"
    if ufw_active:
        return "ufw"
    return "nftables"


# --- firewalld ------------------------------------------------------------------------------

def firewalld_ports(ports):
    """firewall-cmd spells ranges LO-HI/tcp."""
    return ["%s/tcp" % p for p in ports]


def firewalld_changes(want, have):
    """firewall-cmd --permanent arguments turning `have` into `want`, per zone.

    want/have: {zone: {"sources": [...], "ports": ["N/tcp", ...]}}; a zone absent from `have`
    does not exist yet. Returns [(zone, [args...])] with --new-zone first where needed; each
    step repeats one option only (firewall-cmd refuses --add-source with --add-port).
    """
    steps = []
    for zone, spec in want.items():
        current = have.get(zone)
        if current is None:
            steps.append((zone, ["--new-zone=%s" % zone]))
            current = {"sources": [], "ports": []}
        for kind, option in (("sources", "source"), ("ports", "port")):
            add = sorted(set(spec[kind]) - set(current[kind]))
            remove = sorted(set(current[kind]) - set(spec[kind]))
            if add:
                steps.append((zone, ["--add-%s=%s" % (option, v) for v in add]))
            if remove:
                steps.append((zone, ["--remove-%s=%s" % (option, v) for v in remove]))
    return steps


def firewalld_stale(existing_zones, want):
    """Zones of ours that exist but are no longer wanted (the client zone, when clients go)."""
    return [z for z in (ZONE, CLIENT_ZONE) if z in existing_zones and z not in want]


def firewalld_backups(want):
    """{zone: backup file} for our zones not wanted: what firewalld keeps of them after deletion."""
    return {z: "%s/%s.xml.old" % (FIREWALLD_ZONES_DIR, z) for z in (ZONE, CLIENT_ZONE) if z not in want}


def firewalld_want(opening):
    """Our zones. Each also accepts SSH: a zone bound by source takes every packet from its
    sources, so without SSH there a controller or bastion inside those networks is locked out."""
    ssh = opening.get("ssh", [])
    want = {ZONE: {"sources": opening["cluster"]["sources"],
                   "ports": firewalld_ports(_unique(opening["cluster"]["ports"] + ssh))}}
    if opening["clients"]["sources"]:
        want[CLIENT_ZONE] = {"sources": opening["clients"]["sources"],
                             "ports": firewalld_ports(_unique(opening["clients"]["ports"] + ssh))}
    return want


def _unique(ports):
    return list(dict.fromkeys(ports))


# --- ufw --------------------------------------------------------------------------------------

def ufw_source(cidr):
    """A source as ufw prints it back: a single host without its /32 or /128."""
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def ufw_rules(opening):
    """Desired ufw rules as (source, port spec) with ufw's LO:HI ranges."""
    rules = set()
    for kind in ("cluster", "clients"):
        for src in opening[kind]["sources"]:
            for port in opening[kind]["ports"]:
                rules.add((ufw_source(src), port.replace("-", ":")))
    return sorted(rules)


UFW_ADDED = re.compile(r"^ufw allow from (\S+) to any port (\S+) proto tcp comment '%s'$" % COMMENT)


def parse_ufw_added(text):
    """Our rules from `ufw show added` (those carrying our comment)."""
    found = []
    for line in text.splitlines():
        m = UFW_ADDED.match(line.strip())
        if m:
            found.append((m.group(1), m.group(2)))
    return sorted(set(found))


def ufw_changes(want, have):
    """(to add, to delete) as ufw argument lists."""
    def args(rule):
        return ["allow", "from", rule[0], "to", "any", "port", rule[1], "proto", "tcp", "comment", COMMENT]
    add = [args(r) for r in want if r not in have]
    delete = [["delete"] + args(r)[:-2] for r in have if r not in want]
    return add, delete
