"""Rolling restarts behind the router: which groups roll, in which batches, and how the router's
worker list and a worker's load are read.

Why this exists: with several groups behind the sglang-router, restarting them all at once
leaves the router with no worker. Rolling takes one batch out of the router (its worker API),
lets its in-flight requests finish, restarts it, waits for /health_generate and puts it back,
so the others serve meanwhile. Whether a run rolls, the order and the batches are decided here
from the plan and the run's facts (tested as tables); the tasks only carry them out. The
router API's answers are judged here too, so the module stays a thin HTTP shell.
"""

from __future__ import annotations

import json

# sglang-router 0.3.2's worker API: GET /workers lists {id, url, is_healthy}, POST /workers
# {url, api_key} queues an addition, DELETE /workers/{id} a removal (both answer 202 at once).
WORKERS_PATH = "/workers"
# SGLang 0.5.23's load of each DP rank (num_running_reqs, num_waiting_reqs); it has no
# /get_load.
LOADS_PATH = "/v1/loads?include=core"


class RollError(ValueError):
    """A rolling setting the plan refuses, naming the variable and the fix."""


def _batch_size(value):
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        raise RollError("sglang_server_roll_batch: %r is not a whole number. Fix: set it to 1 or more "
                        "(groups restarted at once)" % (value,))
    if int(value) < 1:
        raise RollError("sglang_server_roll_batch: %r is below 1. Fix: set it to 1 or more" % (value,))
    return int(value)


def router_auth(plan):
    """The credential file whose key the router's worker API wants, or None.

    With an admin key the router guards its control plane with it (the launcher hands it over as
    --control-plane-api-keys) and refuses the client key there; else the client key (--api-key).
    """
    router = plan.get("router")
    if not router:
        return None
    have = plan["nodes"][router["host"]].get("secrets") or {}
    for cid in ("admin_api_key", "api_key"):
        if have.get(cid):
            return plan["layout"]["credentials"][cid]
    return None


def roll_plan(plan, changed_hosts, settings):
    """How this run restarts the groups that changed: {rolling, reason, groups, batches, ...}.

    changed_hosts: {host: whether its server unit, launcher or secrets changed}; a group
    restarts when any of its hosts changed. settings: rolling (sglang_server_rolling), batch
    (sglang_server_roll_batch), router_active (its unit runs now), router_restarts (its unit or
    secrets changed in this run), check_mode, starts ({group: {start, reason}}, node_spec's
    start decisions: a group that does not start does not restart).

    Returns rolling (bool), reason (one line), groups (the groups rolled), batches (lists of
    them, in inventory order), workers ({group: worker URL} of the groups that start) and
    reconcile (whether the running router's list is made whole again: a roll that stopped midway
    left a group out).
    """
    starts = settings.get("starts") or {}

    def starting(group):
        return (starts.get(group) or {"start": True})["start"]

    restart = [g for g, spec in plan["groups"].items()
               if starting(g) and any(changed_hosts.get(h) for h in spec["hosts"])]
    router = plan.get("router")
    batch = _batch_size(settings.get("batch", 1))
    fronted = dict((router or {}).get("group_workers") or {})
    live_router = bool(router) and not router.get("pd") and bool(settings.get("router_active")) \
        and not settings.get("router_restarts") and not settings.get("check_mode")
    # A group that does not start (no GPU) never answers: its worker is neither rolled nor added
    # to a router that runs anyway (its enabled unit starts at boot), or the add would wait in vain.
    serving = {g: url for g, url in fronted.items() if starting(g)}
    out = {"rolling": False, "groups": [], "batches": [], "restart": restart, "workers": serving,
           "reconcile": live_router and bool(serving)}

    def together(reason):
        out["reason"] = reason
        return out

    if not restart:
        return together("no group restarts")
    if not router:
        return together("no router: the groups that changed restart together")
    if router.get("pd"):
        return together("a prefill/decode router: its groups restart together (rolling covers regular workers)")
    # Only groups that start serve: a roll needs one of them to keep serving while another is out.
    if len(serving) < 2:
        return together("the router fronts fewer than two groups that start: they restart as before")
    if not settings.get("rolling", True):
        return together("sglang_server_rolling is false: the groups that changed restart together")
    if settings.get("check_mode"):
        return together("check mode: the router is not called")
    if not settings.get("router_active"):
        return together("the router is not running yet: the groups start together, then the router")
    if settings.get("router_restarts"):
        return together("the router restarts in this run (its unit or secrets changed): the groups restart together")
    groups = [g for g in restart if g in serving]
    # Never the whole fleet at once: at least one group keeps serving while a batch is out.
    size = min(batch, len(serving) - 1)
    out.update(rolling=bool(groups), groups=groups,
               batches=[groups[i:i + size] for i in range(0, len(groups), size)])
    note = "" if size == batch else " (sglang_server_roll_batch %d capped at %d: one group keeps serving)" % (batch, size)
    out["reason"] = "rolling %d of %d groups behind the router, %d at a time%s: %s" % (
        len(groups), len(serving), size, note, " then ".join(", ".join(b) for b in out["batches"]))
    return out


# --- the router's and a worker's answers ------------------------------------------------------

def _norm(url):
    return str(url).rstrip("/")


def parse_workers(body):
    """[{id, url, healthy}] from GET /workers (bytes or str); None when it is not that shape."""
    try:
        data = json.loads(body)
        return [{"id": w["id"], "url": _norm(w["url"]), "healthy": bool(w.get("is_healthy"))}
                for w in data["workers"]]
    except (ValueError, KeyError, TypeError):
        return None


def to_remove(listing, urls):
    """The listed workers (id, url) whose URL is one of `urls`."""
    wanted = {_norm(u) for u in urls}
    return [(w["id"], w["url"]) for w in listing if w["url"] in wanted]


def to_add(listing, urls):
    """The URLs of `urls` the router does not list, in their order."""
    listed = {w["url"] for w in listing}
    return [_norm(u) for u in urls if _norm(u) not in listed]


def healthy_others(listing, urls):
    """How many healthy workers the router lists besides `urls` (what serves while they are out)."""
    out = {_norm(u) for u in urls}
    return sum(1 for w in listing if w["healthy"] and w["url"] not in out)


def not_yet_serving(listing, urls):
    """The URLs of `urls` the router does not list as healthy."""
    healthy = {w["url"] for w in listing if w["healthy"]}
    return [_norm(u) for u in urls if _norm(u) not in healthy]


def in_flight(body):
    """Requests running or waiting on a worker, from /v1/loads; None when it is not that shape."""
    try:
        loads = json.loads(body)["loads"]
        return sum(int(x.get("num_running_reqs", 0)) + int(x.get("num_waiting_reqs", 0)) for x in loads)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
