"""The nftables ruleset: what it accepts, what it drops, and in which order."""

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.firewall import nft_ruleset


def plan(ip="10.0.0.%d", cidrs=("10.0.0.0/24",)):
    hv = {h: dict(ansible_host=ip % (10 + i), cluster_interface="ens1", cluster_gpus_per_node=8,
                  sglang_model_path="m", cluster_cidrs=list(cidrs)) for i, h in enumerate(("a", "b"))}
    return build_plan({"g": ["a", "b"]}, hv)


def test_order_ssh_cluster_then_drops():
    text = nft_ruleset(plan(), "a", ssh_ports=[22, 2222])
    lines = [line.strip() for line in text.splitlines()]
    assert lines[2:4] == ["table inet sglang_ops", "delete table inet sglang_ops"]  # atomic redefinition
    ssh = next(i for i, line in enumerate(lines) if line.startswith("tcp dport { 22, 2222 } accept"))
    cluster = next(i for i, line in enumerate(lines) if 'iifname "ens1" ip saddr @cluster_v4 accept' in line)
    drop = next(i for i, line in enumerate(lines) if "drop comment \"cluster-only ports\"" in line)
    assert ssh < cluster < drop
    assert "policy accept" in text and "flush" not in text
    assert ("tcp dport { 6379, 6380, 6381, 6382, 6383, 6384, 6385, 6386, 8265, 10001, 11000-11499, 20000-20100, "
            "32768-60999 } drop") in text
    assert "tcp dport { 30000 } drop" in text and "client_v4" not in text


def test_clients_ipv6_and_no_dynamic_range():
    text = nft_ruleset(plan("fd00::%d", ("fd00::/64",)), "b", client_cidrs=["192.0.2.0/24", "2001:db8::/32"],
                       dynamic_ports="")
    assert "set cluster_v6 { type ipv6_addr; flags interval; elements = { fd00::/64 } }" in text
    assert "cluster_v4" not in text
    assert "tcp dport { 30000 } ip saddr @client_v4 accept" in text and "tcp dport { 30000 } ip6 saddr @client_v6 accept" in text
    assert "32768-60999" not in text


def test_without_cidrs_only_the_node_itself():
    assert "elements = { 10.0.0.11/32 }" in nft_ruleset(plan(cidrs=()), "b")


def test_router_port_is_a_client_port_on_the_router_host_only():
    inv = {h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=8, sglang_model_path="m",
                   sglang_router=True) for h, ip in (("a", "10.0.0.10"), ("b", "10.0.0.11"))}
    plan = build_plan({"g": ["a", "b"]}, inv)
    assert plan["router"] == {"host": "a", "ip": "10.0.0.10", "port": 30080, "metrics_port": 29000,
                              "workers": ["http://10.0.0.10:30000"],
                              "local_url": "http://127.0.0.1:30080", "scheme": "http",
                              "group_workers": {"g": "http://10.0.0.10:30000"}}
    assert "tcp dport { 30000, 30080 } drop" in nft_ruleset(plan, "a", ["192.0.2.0/24"])
    assert "tcp dport { 30000 } drop" in nft_ruleset(plan, "b", ["192.0.2.0/24"])


# Every value printed into nft's language is checked first: a crafted one must never become a rule.
CRAFTED = [
    ("dynamic_ports", "32768-60999 } accept comment \"x\"; tcp dport { 1"),
    ("dynamic_ports", "60999-32768"),
    ("dynamic_ports", "0-65535"),
    ("dynamic_ports", "1024-70000"),
    ("dynamic_ports", "32768-60999\n"),
    ("ssh_ports", ["22 } accept"]),
    ("ssh_ports", [0]),
    ("ssh_ports", [True]),
    ("ssh_ports", [70000]),
    ("ssh_ports", ["22\n"]),
    ("ssh_ports", []),
]


@pytest.mark.parametrize("option,value", CRAFTED, ids=[repr(v) for _option, v in CRAFTED])
def test_crafted_values_are_refused(option, value):
    with pytest.raises(ValueError, match="ssh|dynamic"):
        nft_ruleset(plan(), "a", **{option: value})


@pytest.mark.parametrize("key,value", [("ray_gcs_port", "6379 } accept"), ("sglang_port", 0),
                                       ("ray_min_worker_port", 70000)])
def test_a_crafted_plan_port_is_refused(key, value):
    p = plan()
    p["nodes"]["a"]["ports"][key] = value
    with pytest.raises(ValueError, match=key):
        nft_ruleset(p, "a")


def test_plain_values_pass():
    text = nft_ruleset(plan(), "a", ssh_ports=["2222", 22, 22], dynamic_ports="40000-40010")
    assert "tcp dport { 22, 2222 } accept" in text and "40000-40010 } drop" in text
