#!/usr/bin/python
"""Module: wait a slice of time for a started SGLang group's rank 0, from rank 0's node."""

from __future__ import annotations

DOCUMENTATION = r"""
module: server_ready
short_description: Wait for a started SGLang group's rank 0 to answer, or for it to have ended
version_added: 0.4.0
description:
  - Polls rank 0's C(/health_generate) every O(poll) seconds for at most O(wait) seconds, and
    rank 0's unit state (and its group fence's phase) at each poll.
  - Returns as soon as rank 0 answers (RV(ready)), or as soon as nothing will bring the group up
    any more (RV(ended)) - rank 0's unit failed or inactive with no fence restarting the group, or
    the fence gave up - so a server that crashed while loading ends the wait at once instead of
    after the whole readiness timeout.
  - Meant to be called in a loop of short slices (C(until)), so a model load of many minutes shows
    progress; it never fails on its own, the caller judges RV(ready) and RV(ended).
  - The health endpoints need no API key (SGLang lets them through); none is sent.
extends_documentation_fragment: [sglang_ops.cluster.read_only]
options:
  url:
    description: Base URL of rank 0's API on this node (the plan's C(local_url)).
    type: str
    required: true
  unit:
    description: Rank 0's systemd unit.
    type: str
    required: true
  fence_state:
    description: The group fence coordinator's state file (JSON with its C(phase)); omitted when the
      group has no fence. A missing file reads as a fence that is not restarting the group.
    type: path
  ca_path:
    description: CA certificate (PEM file) an C(https://) URL must chain to.
    type: path
  wait:
    description: Seconds this call polls at most.
    type: float
    default: 10
  poll:
    description: Seconds between two polls.
    type: float
    default: 1
"""

EXAMPLES = r"""
- name: Wait for rank 0 (10 s slices, 30 minutes at most)
  sglang_ops.cluster.server_ready:
    url: http://127.0.0.1:30000
    unit: sglang-server-llama405b
    fence_state: /run/sglang-fence-llama405b/state.json
  register: ready
  until: ready.ready or ready.ended
  retries: 180
  delay: 0
"""

RETURN = r"""
ready:
  description: Whether rank 0 answered C(/health_generate) with 200.
  type: bool
  returned: always
ended:
  description: Whether the wait can stop without an answer - nothing will bring the group up any more.
  type: bool
  returned: always
status:
  description: HTTP status of the last C(/health_generate) (0 when nothing answered).
  type: int
  returned: always
unit_state:
  description: Rank 0's unit C(ActiveState) at the last poll.
  type: str
  returned: always
fence_phase:
  description: The fence's phase at the last poll (null without a fence).
  type: str
  returned: always
msg:
  description: One line - why it returned.
  type: str
  returned: always
  sample: rank 0's unit is failed
seconds:
  description: How long this call polled.
  type: float
  returned: always
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils.fence import unit_state
from ansible_collections.sglang_ops.cluster.plugins.module_utils.probe import ready_verdict, request


def fence_phase(path):
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return str(json.load(fh).get("phase") or "idle")
    except (OSError, ValueError, AttributeError):
        return "idle"  # not written yet, or the fence is not running: it restarts nothing


def main():
    module = AnsibleModule(
        argument_spec=dict(url=dict(type="str", required=True), unit=dict(type="str", required=True),
                           fence_state=dict(type="path"), ca_path=dict(type="path"),
                           wait=dict(type="float", default=10), poll=dict(type="float", default=1)),
        supports_check_mode=True)
    p = module.params
    url = p["url"].rstrip("/") + "/health_generate"
    t0 = time.monotonic()
    deadline = t0 + p["wait"]
    while True:
        # A health generation may take seconds on a busy server; never past the slice, though.
        status, _body = request(url, timeout=max(1.0, deadline - time.monotonic()), ca_path=p["ca_path"])
        state, phase = unit_state(p["unit"]), fence_phase(p["fence_state"])
        verdict, why = ready_verdict(status, state, phase)
        if verdict != "wait" or time.monotonic() + p["poll"] > deadline:
            break
        time.sleep(p["poll"])
    module.exit_json(changed=False, ready=verdict == "ready", ended=verdict == "ended", status=status,
                     unit_state=state, fence_phase=phase, msg=why, seconds=round(time.monotonic() - t0, 1))


if __name__ == "__main__":
    main()
