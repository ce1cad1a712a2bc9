"""The node's nftables ruleset: cluster ports reachable only from the cluster networks.

Why this exists: Ray's GCS and dashboard run code for whoever reaches them (ShadowRay,
CVE-2023-48022), and NCCL/gloo need open high ports between nodes. The ruleset lives in a
table of its own with policy accept and only drops what this collection owns, so it never
fights the host's other rules and never locks out SSH.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.sglang_ops.cluster.plugins.module_utils.metrics import cluster_only_ports, scrape_only_ports

_RANGE = re.compile(r"^([0-9]{1,5})-([0-9]{1,5})\Z")


def check_port(value, what):
    """`value` as a TCP port (an int 1-65535, or such an int's digits), else ValueError naming `what`.

    Every port reaches the ruleset through here or check_range: a value is printed into nft's
    own language, so a crafted string (`1 } accept`) must never get that far.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("%s: %r is not a TCP port" % (what, value))
    if isinstance(value, str) and not re.match(r"^[0-9]{1,5}\Z", value):
        raise ValueError("%s: %r is not a TCP port" % (what, value))
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError("%s: %r is not a TCP port (1-65535)" % (what, value))
    return port


def check_range(value, what):
    """`LO-HI` with 1 <= LO <= HI <= 65535, returned in that spelling; else ValueError."""
    match = _RANGE.match(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)) <= 65535:
        raise ValueError("%s: %r is not a port range FIRST-LAST" % (what, value))
    return "%d-%d" % (int(match.group(1)), int(match.group(2)))


def _ports(plan, host):
    """(port set words, ranges) that only cluster members may open connections to."""
    node = plan["nodes"][host]
    ports = {k: check_port(v, "%s: %s" % (host, k)) for k, v in node["ports"].items() if v}
    single = {v for k, v in ports.items() if k not in ("ray_min_worker_port", "ray_max_worker_port", "sglang_port")}
    ranges = [check_range("%d-%d" % (ports["ray_min_worker_port"], ports["ray_max_worker_port"]),
                          "%s: ray_min_worker_port-ray_max_worker_port" % host)]
    dist, span = ports.get("sglang_dist_init_port"), plan["groups"][node["group"]].get("dist_port_span") or 0
    if dist and span:
        ranges.append(check_range("%d-%d" % (dist, dist + check_port(span, "%s: sglang_dist_port_span" % host)),
                                  "%s: sglang_dist_init_port + sglang_dist_port_span" % host))
    bounds = [tuple(map(int, r.split("-"))) for r in ranges]
    return sorted(p for p in single if not any(lo <= p <= hi for lo, hi in bounds)), ranges


def api_ports(plan, host):
    """Client-facing ports of `host`: its group's API, and the router's where it runs."""
    router = plan.get("router") or {}
    return [check_port(plan["nodes"][host]["ports"]["sglang_port"], "%s: sglang_port" % host)] + (
        [check_port(router["port"], "%s: sglang_router_port" % host)] if router.get("host") == host else [])


def _split(cidrs):
    nets = [ipaddress.ip_network(str(c), strict=False) for c in cidrs]
    return ([str(n) for n in nets if n.version == 4], [str(n) for n in nets if n.version == 6])


def nft_ruleset(plan, host, client_cidrs=(), ssh_ports=(22,), dynamic_ports="32768-60999"):
    """The whole file `nft -f` loads: (re)defines the collection's table atomically."""
    node = plan["nodes"][host]
    table = plan["layout"]["nft_table"]
    cluster4, cluster6 = _split(plan["cidrs"] or ["%s/%d" % (node["cluster_ip"], 32 if ":" not in node["cluster_ip"] else 128)])
    client4, client6 = _split(client_cidrs)
    single, ranges = _ports(plan, host)
    single = sorted(set(single) | {check_port(p, "%s: cluster_prometheus_port" % host) for p in cluster_only_ports(plan, host)})
    if dynamic_ports:
        dynamic_ports = check_range(dynamic_ports, "%s: firewall_dynamic_ports" % host)
    ssh = sorted({check_port(p, "%s: firewall_ssh_ports / ansible_port" % host) for p in ssh_ports})
    if not ssh:
        raise ValueError("%s: no SSH port to keep open (firewall_ssh_ports)" % host)
    guarded = ", ".join([str(p) for p in single] + ranges + ([dynamic_ports] if dynamic_ports else []))
    api_words = ", ".join(str(p) for p in api_ports(plan, host))
    scrape = [check_port(p, "%s: metrics port" % host) for p in scrape_only_ports(plan, host)]
    scrape4, scrape6 = _split((plan.get("metrics") or {}).get("scrapers") or [])
    iface = node["cluster_interface"]
    if not re.match(r"^[A-Za-z0-9_.-]{1,15}\Z", str(iface)):
        raise ValueError("%s: cluster_interface %r is not an interface name" % (host, iface))
    lines = [
        "# Managed by sglang_ops.cluster (firewall role). Loaded by %s.service."
        % plan["layout"]["units"]["firewall"],
        "# Policy accept: this table only drops the ports it owns, from everyone outside the cluster.",
        "table inet %s" % table,
        "delete table inet %s" % table,
        "table inet %s {" % table,
    ]
    for name, family, nets in (("cluster_v4", "ipv4_addr", cluster4), ("cluster_v6", "ipv6_addr", cluster6),
                               ("client_v4", "ipv4_addr", client4), ("client_v6", "ipv6_addr", client6),
                               ("scrapers_v4", "ipv4_addr", scrape4 if scrape else []),
                               ("scrapers_v6", "ipv6_addr", scrape6 if scrape else [])):
        if nets:
            lines.append("\tset %s { type %s; flags interval; elements = { %s } }" % (name, family, ", ".join(nets)))
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        '\t\tiif "lo" accept',
        "\t\tct state established,related accept",
        "\t\ttcp dport { %s } accept comment \"ssh is never locked out\"" % ", ".join(str(p) for p in ssh),
    ]
    if scrape:
        # Before the cluster's accept: other cluster members may not read a node's metrics either.
        scrape_words = ", ".join(str(p) for p in scrape)
        for family, name, nets in (("ip", "scrapers_v4", scrape4), ("ip6", "scrapers_v6", scrape6)):
            if nets:
                lines.append('\t\ttcp dport { %s } %s saddr @%s accept comment "metrics: the Prometheus host"'
                             % (scrape_words, family, name))
        lines.append('\t\ttcp dport { %s } drop comment "metrics: only the Prometheus host"' % scrape_words)
    for family, name, nets in (("ip", "cluster_v4", cluster4), ("ip6", "cluster_v6", cluster6)):
        if nets:
            lines.append('\t\tiifname "%s" %s saddr @%s accept comment "cluster traffic, NCCL/gloo included"'
                         % (iface, family, name))
    for family, name, nets in (("ip", "client_v4", client4), ("ip6", "client_v6", client6)):
        if nets:
            lines.append('\t\ttcp dport { %s } %s saddr @%s accept comment "SGLang API clients"' % (api_words, family, name))
    lines += [
        '\t\ttcp dport { %s } drop comment "cluster-only ports"' % guarded,
        '\t\ttcp dport { %s } drop comment "SGLang API: only cluster and client networks"' % api_words,
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
