#!/usr/bin/python
"""Module: one node's share of the port mesh (listen on its free ports, probe every peer)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: port_mesh
short_description: Check that this node reaches every peer's cluster ports, with temporary listeners
version_added: 0.1.0
description:
  - Starts a transient systemd unit (C(sglang-preflight-mesh)) that listens on O(address) on every
    port of O(ports) nothing listens on yet, and exits by itself once each peer has connected to
    each of them, or after O(linger) seconds.
  - Then connects to every port of every peer in O(peers) at the same time. Refused or timed-out
    connections are retried for O(settle) seconds, while peers' listeners come up.
  - Ports a real service already holds (a running Ray, a running server) are probed as they are.
  - Reports every probe; the controller decides. Leaves nothing behind on the node, so it reports
    C(changed=false). In check mode nothing is started or probed.
  - With O(state=stopped), stops this node's temporary listener instead. Run it once every node's
    probes are in. A port whose probe was dropped on the way never sees its connection, and the
    listener would hold every free port (Ray's among them) until O(linger) runs out, so a Ray or
    server start right after a failed check would find them taken.
options:
  state:
    description: C(probed) listens and probes; C(stopped) stops what is left of the listener.
    type: str
    choices: [probed, stopped]
    default: probed
  address:
    description: This node's cluster IP. Required with O(state=probed).
    type: str
  ports:
    description: This node's cluster ports (listened on where free). Required with O(state=probed).
    type: list
    elements: int
  peers:
    description: The other nodes, C({host, address, ports}). Required with O(state=probed).
    type: list
    elements: dict
  timeout:
    description: Seconds one connection attempt may take.
    type: float
    default: 2.0
  settle:
    description: Seconds a failing probe is retried before it counts as failed.
    type: float
    default: 10.0
  linger:
    description: Longest life of the temporary listener, in seconds.
    type: int
    default: 60
attributes:
  check_mode:
    support: none
    description: Skipped in check mode; nothing is started or probed.
notes:
  - Needs C(systemd-run); the listener runs the node's C(/usr/bin/python3).
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: Probe the peers
  sglang_ops.cluster.port_mesh:
    address: 10.0.0.11
    ports: [6379, 20000, 30000]
    peers: [{host: gpu-a-1, address: 10.0.0.12, ports: [6379, 20000, 30000]}]

- name: Stop what is left of the listener, once every node's probes are in
  sglang_ops.cluster.port_mesh:
    state: stopped
"""

RETURN = r"""
listened:
  description: Ports the temporary listener held on this node.
  type: list
  elements: int
  returned: when O(state=probed)
in_use:
  description: Ports a service already held on this node.
  type: list
  elements: int
  returned: when O(state=probed)
results:
  description: One entry per probe, C({to, address, port, ok, error, ms}).
  type: list
  elements: dict
  returned: when O(state=probed)
elapsed:
  description: Seconds this node spent, listener start included.
  type: float
  returned: when O(state=probed)
stopped:
  description: Whether a listener was still running and was stopped.
  type: bool
  returned: when O(state=stopped)
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sglang_ops.cluster.plugins.module_utils.mesh import LISTENER, free_ports, probe_all

UNIT = "sglang-preflight-mesh"
READY = "/run/sglang-preflight-mesh.ready"


def stop_listener(module, systemctl):
    """Stop this node's listener if it runs; whether it did (stopping an unloaded unit fails)."""
    running = module.run_command([systemctl, "is-active", "--quiet", UNIT + ".service"])[0] == 0
    if running:
        module.run_command([systemctl, "stop", UNIT + ".service"], check_rc=True)
    return running


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["probed", "stopped"], default="probed"),
            address=dict(type="str"),
            ports=dict(type="list", elements="int"),
            peers=dict(type="list", elements="dict"),
            timeout=dict(type="float", default=2.0),
            settle=dict(type="float", default=10.0),
            linger=dict(type="int", default=60),
        ),
        required_if=[("state", "probed", ("address", "ports", "peers"))],
        supports_check_mode=False,
    )
    p = module.params
    t0 = time.monotonic()
    systemctl = module.get_bin_path("systemctl", required=True)
    if p["state"] == "stopped":
        # Nothing of ours is left either way; the listener was never meant to outlive the check.
        module.exit_json(changed=False, stopped=stop_listener(module, systemctl))
    systemd_run = module.get_bin_path("systemd-run", required=True)
    # A listener left by an interrupted run would hold the ports: stop it first.
    stop_listener(module, systemctl)
    free, busy = free_ports(p["address"], p["ports"])
    if free:
        if os.path.exists(READY):
            os.unlink(READY)
        module.run_command(
            [systemd_run, "--unit", UNIT, "--collect", "--quiet", "-p", "RuntimeMaxSec=%d" % p["linger"],
             "/usr/bin/python3", "-c", LISTENER, p["address"], str(len(p["peers"])), str(p["linger"]), READY]
            + [str(port) for port in free], check_rc=True)
        # Probe only once our own listener is bound, so peers never wait on us.
        deadline = time.monotonic() + 10
        while not os.path.exists(READY):
            if time.monotonic() > deadline:
                module.fail_json(msg="the temporary listener on %s did not start: journalctl -u %s"
                                 % (p["address"], UNIT))
            time.sleep(0.02)
        os.unlink(READY)
    results = probe_all(p["peers"], timeout=p["timeout"], settle=p["settle"])
    module.exit_json(changed=False, listened=free, in_use=busy, results=results,
                     elapsed=round(time.monotonic() - t0, 2))


if __name__ == "__main__":
    main()
