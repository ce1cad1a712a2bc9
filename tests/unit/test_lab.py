"""The lab's addressing: fixed IPs and MACs that survive re-creation."""

import pytest

import lab


def test_addresses_and_mac():
    hosts = lab.lab_hosts("lab", 2, 11)
    assert [h["ipv4"] for h in hosts] == ["10.89.78.11", "10.89.78.12"]
    assert hosts[0]["ipv6"] == "fd42:5a6c:78::b"
    assert hosts[1]["mac"] == "02:00:0a:59:4e:0c"


@pytest.mark.parametrize("count", [0, 9])
def test_host_count_bounded(count):
    with pytest.raises(SystemExit, match="between 1 and 8"):
        lab.lab_hosts("lab", count, 11)


def test_inventory_shape():
    inv = lab.render_inventory(lab.lab_hosts("mol", 2, 51), "lab_model")
    hosts = inv["all"]["children"]["sglang_nodes"]["children"]["lab_model"]["hosts"]
    assert hosts["mol2"]["ansible_host"] == "10.89.78.52"
    assert inv["all"]["vars"]["ansible_user"] == "root"


def test_wheels_follow_the_role_pins():
    reqs = lab.pinned_requirements()
    assert any(r.startswith("ray==") for r in reqs) and all("==" in r for r in reqs)
