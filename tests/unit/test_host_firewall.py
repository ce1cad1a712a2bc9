"""Openings in firewalld and ufw: what must be open, and the commands that get there."""

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan
from ansible_collections.sglang_ops.cluster.plugins.module_utils.host_firewall import (
    choose_backend, firewalld_backups, firewalld_changes, firewalld_stale, firewalld_want, openings, parse_ufw_added,
    ufw_changes, ufw_rules)

PLAN = build_plan({"g": ["a", "b"]}, {
    h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=8, sglang_model_path="m",
            cluster_cidrs=["10.0.0.0/24"]) for h, ip in (("a", "10.0.0.10"), ("b", "10.0.0.11"))})


def test_openings_cluster_everything_clients_api_only():
    o = openings(PLAN, "a", ["192.0.2.0/24"])
    assert o["cluster"]["sources"] == ["10.0.0.0/24"]
    assert {"6379", "6386", "10001", "30000", "11000-11499", "20000-20100", "32768-60999"} <= set(o["cluster"]["ports"])
    assert o["clients"] == {"sources": ["192.0.2.0/24"], "ports": ["30000"]}


@pytest.mark.parametrize("setting, firewalld, ufw, expected", [
    ("auto", True, False, "firewalld"), ("auto", False, True, "ufw"), ("auto", False, False, "nftables"),
    ("auto", True, True, "firewalld"), ("nftables", True, False, "nftables"), ("ufw", False, False, "ufw"),
])
def test_choose_backend(setting, firewalld, ufw, expected):
    assert choose_backend(setting, firewalld, ufw) == expected


def test_choose_backend_refuses_unknown():
    with pytest.raises(ValueError, match="firewall_backend 'iptables'"):
        choose_backend("iptables", False, False)


def test_firewalld_from_nothing_then_nothing_to_do():
    want = firewalld_want(openings(PLAN, "a", ["192.0.2.0/24"]))
    steps = firewalld_changes(want, {})
    assert steps[0] == ("sglang", ["--new-zone=sglang"])
    assert steps[1] == ("sglang", ["--add-source=10.0.0.0/24"])  # firewall-cmd takes one option kind a call
    assert "--add-port=11000-11499/tcp" in steps[2][1] and all(a.startswith("--add-port") for a in steps[2][1])
    assert ("sglang-clients", ["--new-zone=sglang-clients"]) in steps
    assert firewalld_changes(want, want) == []


def test_firewalld_adjusts_and_drops_the_client_zone():
    want = firewalld_want(openings(PLAN, "a"))
    have = {"sglang": {"sources": ["10.9.0.0/16"], "ports": want["sglang"]["ports"] + ["9999/tcp"]}}
    assert firewalld_changes(want, have) == [("sglang", ["--add-source=10.0.0.0/24"]),
                                             ("sglang", ["--remove-source=10.9.0.0/16"]),
                                             ("sglang", ["--remove-port=9999/tcp"])]
    assert firewalld_stale(["public", "sglang", "sglang-clients"], want) == ["sglang-clients"]


def test_ufw_rules_round_trip_through_show_added():
    want = ufw_rules(openings(PLAN, "a", ["192.0.2.0/24"]))
    assert ("10.0.0.0/24", "11000:11499") in want and ("192.0.2.0/24", "30000") in want
    assert ("192.0.2.0/24", "6379") not in want
    shown = "Added user rules (see 'ufw status' for running firewall):\nufw allow 22/tcp\n" + "\n".join(
        "ufw allow from %s to any port %s proto tcp comment 'sglang_ops'" % r for r in want)
    have = parse_ufw_added(shown)
    assert have == want and ufw_changes(want, have) == ([], [])
    add, delete = ufw_changes(want[1:], have + [("10.9.0.0/16", "6379")])
    assert add == [] and delete[0][:3] == ["delete", "allow", "from"]
    assert ["delete", "allow", "from", "10.9.0.0/16", "to", "any", "port", "6379", "proto", "tcp"] in delete


def test_ufw_host_sources_as_ufw_prints_them():
    plan = build_plan({"g": ["a", "b"]}, {
        h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=8, sglang_model_path="m",
                cluster_cidrs=["10.0.0.10/32", "10.0.0.11/32"]) for h, ip in (("a", "10.0.0.10"), ("b", "10.0.0.11"))})
    want = ufw_rules(openings(plan, "a"))
    assert ("10.0.0.10", "6379") in want and not any(src.endswith("/32") for src, _port in want)
    shown = "\n".join("ufw allow from %s to any port %s proto tcp comment 'sglang_ops'" % r for r in want)
    assert ufw_changes(want, parse_ufw_added(shown)) == ([], [])


def test_removal_takes_every_opening_of_ours_and_nothing_else():
    """host_firewall state=absent: nothing wanted, so both zones go and every commented rule."""
    assert firewalld_changes({}, {}) == []
    assert firewalld_stale(["public", "sglang", "sglang-clients", "trusted"], {}) == ["sglang", "sglang-clients"]
    assert firewalld_stale(["public"], {}) == []
    shown = "ufw allow 22/tcp\n" + "\n".join(
        "ufw allow from %s to any port %s proto tcp comment 'sglang_ops'" % r
        for r in ufw_rules(openings(PLAN, "a", ["192.0.2.0/24"])))
    add, delete = ufw_changes([], parse_ufw_added(shown))
    assert add == [] and len(delete) == len(parse_ufw_added(shown)) > 0
    assert not any("22/tcp" in " ".join(d) for d in delete)
    assert ufw_changes([], []) == ([], [])


def test_backups_of_zones_no_longer_wanted():
    """firewall-cmd --delete-zone leaves NAME.xml.old behind: removed with the zone."""
    assert firewalld_backups({}) == {"sglang": "/etc/firewalld/zones/sglang.xml.old",
                                     "sglang-clients": "/etc/firewalld/zones/sglang-clients.xml.old"}
    assert list(firewalld_backups(firewalld_want(openings(PLAN, "a")))) == ["sglang-clients"]
    assert firewalld_backups(firewalld_want(openings(PLAN, "a", ["192.0.2.0/24"]))) == {}


def test_firewalld_zones_keep_ssh_and_ufw_adds_none():
    # A zone bound by source takes every packet from its sources (firewalld >= 1.0): without SSH
    # in it, a controller inside the cluster network loses SSH at the reload.
    o = openings(PLAN, "a", ["192.0.2.0/24"], ssh_ports=[22, 2222, 22])
    assert o["ssh"] == ["22", "2222"]
    want = firewalld_want(o)
    assert {"22/tcp", "2222/tcp"} <= set(want["sglang"]["ports"]) and {"22/tcp", "2222/tcp"} <= set(want["sglang-clients"]["ports"])
    assert len(want["sglang"]["ports"]) == len(set(want["sglang"]["ports"]))
    assert not [r for r in ufw_rules(o) if r[1] in ("22", "2222")]


@pytest.mark.parametrize("kwargs", [{"dynamic_ports": "1-2 x"}, {"ssh_ports": ["22/udp"]}, {"ssh_ports": [0]},
                                    {"client_cidrs": ["192.0.2.0/24 --add-port=1-65535/tcp"]}])
def test_openings_refuse_crafted_values(kwargs):
    with pytest.raises(ValueError):
        openings(PLAN, "a", **kwargs)
