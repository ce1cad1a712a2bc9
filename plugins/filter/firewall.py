"""Filter exposing the nftables ruleset builder of module_utils.firewall to the firewall role."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sglang_ops.cluster.plugins.module_utils.firewall import nft_ruleset
from ansible_collections.sglang_ops.cluster.plugins.module_utils.host_firewall import choose_backend, openings


def firewall_backend(setting, firewalld_active, ufw_active):
    """nftables, firewalld or ufw: the operator's choice, or the host's own active firewall."""
    try:
        return choose_backend(setting, firewalld_active, ufw_active)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _ruleset(plan, host, client_cidrs=(), ssh_ports=(22,), dynamic_ports="32768-60999"):
    try:
        return nft_ruleset(plan, host, client_cidrs, ssh_ports, dynamic_ports)
    except ValueError as exc:
        raise AnsibleFilterError("nft_ruleset: %s" % exc) from exc


def _openings(plan, host, client_cidrs=(), dynamic_ports="32768-60999", ssh_ports=()):
    try:
        return openings(plan, host, client_cidrs, dynamic_ports, ssh_ports)
    except ValueError as exc:
        raise AnsibleFilterError("firewall_openings: %s" % exc) from exc


class FilterModule:
    """`plan | nft_ruleset(host, client_cidrs, ssh_ports, dynamic_ports)`,
    `setting | firewall_backend(firewalld_active, ufw_active)`,
    `plan | firewall_openings(host, client_cidrs, dynamic_ports, ssh_ports)`; every port is
    checked before it is printed (a ValueError becomes the filter's error)."""

    def filters(self):
        return {"nft_ruleset": _ruleset, "firewall_backend": firewall_backend,
                "firewall_openings": _openings}
