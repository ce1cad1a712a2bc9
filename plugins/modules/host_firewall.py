#!/usr/bin/python
"""Module: open the cluster's ports in the host's own firewall (firewalld or ufw)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_firewall
short_description: Open the cluster's ports in firewalld or ufw, from the cluster and client networks only
version_added: 0.1.0
description:
  - With C(firewalld), keeps a permanent zone C(sglang) whose sources are the cluster networks and whose
    ports are the cluster ports and the API, and a zone C(sglang-clients) whose sources are the client
    networks with the API ports only; then reloads firewalld. Zones are matched by source, so nothing
    else is opened for other addresses.
  - With C(ufw), keeps one C(allow from SOURCE to any port PORT proto tcp) rule per source and port,
    each commented C(sglang_ops); rules of ours that are no longer wanted are deleted, others are never
    touched.
  - Changes only what differs; in check mode reports the commands it would run (also as diff).
  - With O(state=absent), removes every opening of ours (both zones, every rule with our comment) and
    nothing else; the cluster options are not needed then.
  - A zone of ours that is deleted also loses the backup firewalld keeps of it (C(NAME.xml.old)).
options:
  backend:
    description: The host firewall to configure.
    type: str
    required: true
    choices: [firewalld, ufw]
  state:
    description: C(present) keeps exactly the openings given; C(absent) removes all of ours.
    type: str
    choices: [present, absent]
    default: present
  cluster_sources:
    description: Cluster networks (CIDRs). Required with O(state=present).
    type: list
    elements: str
  cluster_ports:
    description: Ports cluster members may reach, C(N) or C(LO-HI). Required with O(state=present).
    type: list
    elements: str
  client_sources:
    description: Client networks allowed to reach O(client_ports).
    type: list
    elements: str
    default: []
  client_ports:
    description: The API ports (rank 0's HTTP port, the router's).
    type: list
    elements: str
    default: []
  ssh_ports:
    description:
      - SSH ports (the firewall role's C(firewall_ssh_ports) and the Ansible connection's port). With C(firewalld) both
        zones accept them too, since a zone bound by source takes every packet from its sources (firewalld 1.0 and later
        no longer let them fall through to the interface's zone); a controller or bastion inside the cluster or client
        networks keeps SSH. C(ufw) rules only add, so nothing is added there.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reports the commands it would run, without running them.
  diff_mode:
    support: full
    description: Returns the firewall's ports and services before and after.
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: Open the cluster's ports in firewalld
  sglang_ops.cluster.host_firewall:
    backend: firewalld
    cluster_sources: [10.0.0.0/24]
    cluster_ports: ["6379", "11000-11499", "20000-20100", "30000"]
    client_sources: [198.51.100.0/24]
    client_ports: ["30000"]

- name: Remove every opening of ours from ufw
  sglang_ops.cluster.host_firewall:
    backend: ufw
    state: absent
"""

RETURN = r"""
commands:
  description: The firewall-cmd or ufw argument lists run (or, in check mode, that would run).
  type: list
  elements: list
  returned: always
removed_files:
  description: firewalld's backups of our deleted zones, removed (or, in check mode, that would be).
  type: list
  elements: str
  returned: always
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils.host_firewall import (
    check_opening, firewalld_backups, firewalld_changes, firewalld_stale, firewalld_want, parse_ufw_added, ufw_changes, ufw_rules)


def run(module, argv):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg="%s failed: %s" % (" ".join(argv), (err or out).strip()))
    return out


def firewalld(module, opening):
    """opening None: nothing of ours is wanted."""
    cmd = module.get_bin_path("firewall-cmd", required=True)
    zones = run(module, [cmd, "--permanent", "--get-zones"]).split()
    want = firewalld_want(opening) if opening else {}
    have = {}
    for zone in list(want) + firewalld_stale(zones, want):
        if zone in zones:
            have[zone] = {"sources": run(module, [cmd, "--permanent", "--zone=%s" % zone, "--list-sources"]).split(),
                          "ports": run(module, [cmd, "--permanent", "--zone=%s" % zone, "--list-ports"]).split()}
    commands = []
    for zone, args in firewalld_changes(want, have):
        if args[0].startswith("--new-zone"):
            commands.append([cmd, "--permanent"] + args)
        else:
            commands.append([cmd, "--permanent", "--zone=%s" % zone] + args)
    stale = firewalld_stale(zones, want)
    commands += [[cmd, "--permanent", "--delete-zone=%s" % z] for z in stale]
    if commands:
        commands.append([cmd, "--reload"])
    backups = [path for zone, path in sorted(firewalld_backups(want).items()) if zone in stale or os.path.exists(path)]
    return commands, backups, {"before": json.dumps(have, indent=1, sort_keys=True) + "\n",
                               "after": json.dumps(want, indent=1, sort_keys=True) + "\n"}


def ufw(module, opening):
    cmd = module.get_bin_path("ufw", required=True)
    have = parse_ufw_added(run(module, [cmd, "show", "added"]))
    want = ufw_rules(opening) if opening else []
    add, delete = ufw_changes(want, have)
    return [[cmd] + a for a in add] + [[cmd, "--force"] + d for d in delete], [], {
        "before": "".join("allow from %s port %s\n" % r for r in have),
        "after": "".join("allow from %s port %s\n" % r for r in want)}


def main():
    module = AnsibleModule(
        argument_spec=dict(backend=dict(type="str", required=True, choices=["firewalld", "ufw"]),
                           state=dict(type="str", default="present", choices=["present", "absent"]),
                           cluster_sources=dict(type="list", elements="str"),
                           cluster_ports=dict(type="list", elements="str"),
                           client_sources=dict(type="list", elements="str", default=[]),
                           client_ports=dict(type="list", elements="str", default=[]),
                           ssh_ports=dict(type="list", elements="str", default=[])),
        required_if=[("state", "present", ("cluster_sources", "cluster_ports"))],
        supports_check_mode=True)
    p = module.params
    opening = None
    if p["state"] == "present":
        try:
            opening = check_opening({"cluster": {"sources": sorted(p["cluster_sources"]), "ports": p["cluster_ports"]},
                                     "clients": {"sources": sorted(p["client_sources"]), "ports": p["client_ports"]},
                                     "ssh": p["ssh_ports"]})
        except ValueError as exc:
            module.fail_json(msg="%s: %s" % (p["backend"], exc))
    commands, backups, diff = (firewalld if p["backend"] == "firewalld" else ufw)(module, opening)
    if not module.check_mode:
        for argv in commands:
            run(module, argv)
        for path in backups:
            if os.path.exists(path):
                os.remove(path)
    module.exit_json(changed=bool(commands or backups), commands=commands, removed_files=backups, diff=diff)


if __name__ == "__main__":
    main()
