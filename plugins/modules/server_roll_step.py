#!/usr/bin/python
"""Module: one step of a rolling restart, against the router's worker API or a worker's load."""

from __future__ import annotations

DOCUMENTATION = r"""
module: server_roll_step
short_description: Take workers out of the sglang-router, put them back, or wait for a worker to drain
version_added: 0.3.0
description:
  - O(action=remove) deletes the listed workers from the router's list (C(DELETE /workers/{id}))
    and waits until the router no longer lists them; O(action=add) adds those it does not list
    (C(POST /workers)) and waits until it lists each as healthy, failing when it does not within
    O(wait); O(action=drain) polls a worker's C(/v1/loads) until no request runs or waits, for at
    most O(wait) seconds.
  - Keys are read here, on the node, from their 0600 files (O(key_file), O(worker_key_file)); they
    are never a parameter, an argument or a result.
  - Used by the sglang_server role's rolling restart; check mode changes nothing and calls nothing.
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [remove, add, drain]
  url:
    description: Base URL of the router (remove, add) or of the worker's rank 0 (drain).
    type: str
    required: true
  workers:
    description: Worker URLs as the router knows them (the plan's C(router.group_workers)); O(action=add) adds
      those not listed and waits for them only.
    type: list
    elements: str
    default: []
  key_file:
    description: File holding the bearer key the API at O(url) wants; none when unset or absent.
    type: path
  worker_key_file:
    description: File holding the key the router sends to an added worker (the servers' API key).
    type: path
  ca_path:
    description: CA certificate (PEM file) an C(https://) URL must chain to.
    type: path
  wait:
    description: Seconds to wait for the router (remove, add) or for the worker to drain.
    type: float
    default: 60
attributes:
  check_mode:
    support: full
    description: In check mode it calls nothing and reports what it would do.
author:
  - sglang_ops maintainers (@sglang-ops)
"""

EXAMPLES = r"""
- name: Take a group out of the router
  sglang_ops.cluster.server_roll_step:
    action: remove
    url: http://127.0.0.1:30080
    workers: [http://10.0.0.11:30000]
    key_file: /etc/sglang-ops/api_key
"""

RETURN = r"""
changed_workers:
  description: The workers removed or added.
  type: list
  returned: remove, add
healthy_others:
  description: Healthy workers the router lists besides O(workers) (what serves meanwhile).
  type: int
  returned: remove
workers_listed:
  description: "The router's list after the step: [{url, healthy}]."
  type: list
  returned: remove, add
in_flight:
  description: Requests still running or waiting on the worker (null when its load cannot be read).
  type: int
  returned: drain
drained:
  description: Whether the worker reported no request in flight.
  type: bool
  returned: drain
checkable:
  description: Whether the worker's load could be read at all (else the step waited O(wait)).
  type: bool
  returned: drain
seconds:
  description: How long the step waited.
  type: float
  returned: always
"""

import json
import os
import time
import urllib.error
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError, open_url
from ansible_collections.sglang_ops.cluster.plugins.module_utils import rolling

POLL = 0.5


def read_key(path):
    if not path or not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def call(method, url, key, ca, body=None, timeout=10.0):
    """(status, bytes); status 0 when nothing answered."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer %s" % key
    data = json.dumps(body).encode() if body is not None else None
    try:
        with open_url(url, data=data, headers=headers, method=method, timeout=timeout, ca_path=ca) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError, UrlsConnectionError) as exc:
        return 0, str(exc).encode()


def main():
    module = AnsibleModule(
        argument_spec=dict(action=dict(type="str", required=True, choices=["remove", "add", "drain"]),
                           url=dict(type="str", required=True), workers=dict(type="list", elements="str", default=[]),
                           key_file=dict(type="path", no_log=False), worker_key_file=dict(type="path", no_log=False),
                           ca_path=dict(type="path"), wait=dict(type="float", default=60)),
        supports_check_mode=True)
    p = module.params
    base, ca, action = p["url"].rstrip("/"), p["ca_path"], p["action"]
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="check mode: the router and the workers are not called")
    key = read_key(p["key_file"])
    t0 = time.monotonic()
    deadline = t0 + p["wait"]

    if action == "drain":
        seen = None
        checkable = False
        while True:
            status, body = call("GET", base + rolling.LOADS_PATH, key, ca)
            seen = rolling.in_flight(body) if status == 200 else None
            checkable = checkable or seen is not None
            if seen == 0 or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        module.exit_json(changed=False, drained=seen == 0, in_flight=seen, checkable=checkable,
                         seconds=round(time.monotonic() - t0, 1),
                         msg=("%s: no request in flight" % base) if seen == 0 else
                         ("%s: %s request(s) still in flight after %.0f s" % (base, seen, p["wait"])) if checkable else
                         ("%s: its load is not readable (GET %s: HTTP %s); waited %.0f s" % (base, rolling.LOADS_PATH, status, p["wait"])))

    def listing():
        status, body = call("GET", base + rolling.WORKERS_PATH, key, ca)
        workers = rolling.parse_workers(body) if status == 200 else None
        if workers is None:
            module.fail_json(msg="the router at %s did not list its workers (GET %s: HTTP %s %s). Fix: check that "
                                 "it runs (systemctl status) and that its API key is the deployed one"
                                 % (base, rolling.WORKERS_PATH, status, body[:200].decode("utf-8", "replace")),
                             seconds=round(time.monotonic() - t0, 1))
        return workers

    def shown(workers):
        return [{"url": w["url"], "healthy": w["healthy"]} for w in workers]

    workers = listing()
    if action == "remove":
        gone = rolling.to_remove(workers, p["workers"])
        for wid, url in gone:
            status, body = call("DELETE", base + rolling.WORKERS_PATH + "/" + quote(wid, safe=""), key, ca)
            if status not in (200, 202, 204, 404):
                module.fail_json(msg="the router refused to remove %s (HTTP %s %s)" % (url, status, body[:200].decode("utf-8", "replace")))
        while rolling.to_remove(workers, p["workers"]) and time.monotonic() < deadline:
            time.sleep(POLL)
            workers = listing()
        left = rolling.to_remove(workers, p["workers"])
        if left:
            module.fail_json(msg="the router still lists %s %.0f s after their removal" % (", ".join(u for _wid, u in left), p["wait"]),
                             workers_listed=shown(workers))
        module.exit_json(changed=bool(gone), changed_workers=[u for _wid, u in gone], workers_listed=shown(workers),
                         healthy_others=rolling.healthy_others(workers, p["workers"]),
                         seconds=round(time.monotonic() - t0, 1))

    # add
    missing = rolling.to_add(workers, p["workers"])
    worker_key = read_key(p["worker_key_file"])
    for url in missing:
        body = {"url": url}
        if worker_key:
            body["api_key"] = worker_key
        status, answer = call("POST", base + rolling.WORKERS_PATH, key, ca, body)
        if status not in (200, 201, 202):
            module.fail_json(msg="the router refused to add %s (HTTP %s %s)" % (url, status, answer[:200].decode("utf-8", "replace")))
    # Only the workers added here are awaited: one the router already lists keeps its own health
    # checks (a minute apart by default), which no deploy should wait for.
    while rolling.not_yet_serving(workers, missing) and time.monotonic() < deadline:
        time.sleep(POLL)
        workers = listing()
    late = rolling.not_yet_serving(workers, missing)
    if late:
        module.fail_json(msg="the router does not list %s as healthy %.0f s after adding it" % (", ".join(late), p["wait"]),
                         changed=bool(missing), changed_workers=missing, workers_listed=shown(workers))
    module.exit_json(changed=bool(missing), changed_workers=missing, workers_listed=shown(workers),
                     seconds=round(time.monotonic() - t0, 1))


if __name__ == "__main__":
    main()
