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


class FilterModule:
    """`plan | nft_ruleset(host, client_cidrs, ssh_ports, dynamic_ports)`,
    `setting | firewall_backend(firewalld_active, ufw_active)`,
    `plan | firewall_openings(host, client_cidrs, dynamic_ports)`."""

    def filters(self):
        return {"nft_ruleset": nft_ruleset, "firewall_backend": firewall_backend,
                "firewall_openings": openings}
