"""Filter exposing the nftables ruleset builder of module_utils.firewall to the firewall role."""

from __future__ import annotations

from ansible_collections.sglang_ops.cluster.plugins.module_utils.firewall import nft_ruleset


class FilterModule:
    """`plan | nft_ruleset(host, client_cidrs, ssh_ports, dynamic_ports)`."""

    def filters(self):
        return {"nft_ruleset": nft_ruleset}
