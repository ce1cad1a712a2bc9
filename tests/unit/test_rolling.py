"""Rolling restarts behind the router: which groups roll, in which batches, and how the router's
and a worker's answers are read (module_utils/rolling.py)."""

import json

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils import rolling
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan


def plan_for(groups, router=True, **extra):
    """Groups of one node each (name -> node count), 10.0.0.x, the router on the first rank 0."""
    hv, model_groups, n = {}, {}, 0
    for index, (name, count) in enumerate(groups.items()):
        model_groups[name] = []
        for _node in range(count):
            host = "gpu%d" % n
            hv[host] = dict(ansible_host="10.0.0.%d" % (10 + n), cluster_interface="eth0", cluster_gpus_per_node=8,
                            sglang_model_path="/models/m", sglang_port=30000 + index,
                            sglang_dist_init_port=20000 + 200 * index, sglang_router=router, **extra)
            model_groups[name].append(host)
            n += 1
    return build_plan(model_groups, hv, list(hv))


LIVE = {"rolling": True, "batch": 1, "router_active": True}
THREE = {"a": 2, "b": 1, "c": 1}


@pytest.mark.parametrize("name, groups, changed, settings, rolls, batches, reason", [
    ("one group changed rolls alone", THREE, ["gpu2"], LIVE, True, [["b"]], "rolling 1 of 3 groups"),
    ("a rank of a two-node group is enough", THREE, ["gpu1"], LIVE, True, [["a"]], "1 at a time"),
    ("all changed roll in inventory order", THREE, ["gpu3", "gpu0", "gpu2"], LIVE, True, [["a"], ["b"], ["c"]],
     "a then b then c"),
    ("batch of two", THREE, ["gpu0", "gpu2", "gpu3"], dict(LIVE, batch=2), True, [["a", "b"], ["c"]], "2 at a time"),
    ("batch capped: one group keeps serving", {"a": 1, "b": 1}, ["gpu0", "gpu1"], dict(LIVE, batch=5), True,
     [["a"], ["b"]], "sglang_server_roll_batch 5 capped at 1"),
    ("batch as the string a template renders", THREE, ["gpu0", "gpu2"], dict(LIVE, batch="2"), True, [["a", "b"]], ""),
    ("nothing changed", THREE, [], LIVE, False, [], "no group restarts"),
    ("turned off", THREE, ["gpu0"], dict(LIVE, rolling=False), False, [], "sglang_server_rolling is false"),
    ("check mode never calls the router", THREE, ["gpu0"], dict(LIVE, check_mode=True), False, [], "check mode"),
    ("first start: no router runs yet", THREE, ["gpu0"], dict(LIVE, router_active=False), False, [],
     "the router is not running yet"),
    ("the router restarts too", THREE, ["gpu0"], dict(LIVE, router_restarts=True), False, [], "the router restarts"),
    ("a group that does not start does not roll", THREE, ["gpu0", "gpu2"],
     dict(LIVE, starts={"a": {"start": False, "reason": "no GPU"}, "b": {"start": True}}), True, [["b"]], ""),
    # Counted by the groups that start: with "a" down, "b" out would leave only "c" serving.
    ("batch capped by the groups that start", THREE, ["gpu2", "gpu3"],
     dict(LIVE, batch=2, starts={"a": {"start": False, "reason": "no GPU"}}), True, [["b"], ["c"]],
     "rolling 2 of 2 groups behind the router, 1 at a time (sglang_server_roll_batch 2 capped at 1"),
    ("one group that starts behind the router restarts as before", {"a": 1, "b": 1}, ["gpu1"],
     dict(LIVE, starts={"a": {"start": False, "reason": "no GPU"}}), False, [], "fewer than two groups that start"),
])
def test_roll_plan(name, groups, changed, settings, rolls, batches, reason):
    plan = plan_for(groups)
    out = rolling.roll_plan(plan, {h: h in changed for h in plan["nodes"]}, settings)
    assert out["rolling"] is rolls, name
    assert out["batches"] == batches, name
    assert reason in out["reason"], (name, out["reason"])
    assert out["groups"] == [g for b in batches for g in b]


def test_roll_plan_without_router_or_with_one_group():
    plan = plan_for(THREE, router=False)
    out = rolling.roll_plan(plan, {"gpu0": True}, LIVE)
    assert (out["rolling"], out["restart"], out["reconcile"]) == (False, ["a"], False)
    assert "no router" in out["reason"]
    plan = plan_for({"a": 2})
    out = rolling.roll_plan(plan, {"gpu0": True}, LIVE)
    assert not out["rolling"] and "fewer than two groups that start" in out["reason"]
    # One group: the running router's list is still made whole (a removed worker comes back).
    assert out["reconcile"] is True


def test_plan_names_each_groups_worker():
    plan = plan_for(THREE)
    assert plan["router"]["group_workers"] == {"a": "http://10.0.0.10:30000", "b": "http://10.0.0.12:30001",
                                               "c": "http://10.0.0.13:30002"}
    assert plan["router"]["workers"] == list(plan["router"]["group_workers"].values())


@pytest.mark.parametrize("settings, reconcile", [
    (LIVE, True), (dict(LIVE, check_mode=True), False), (dict(LIVE, router_active=False), False),
    (dict(LIVE, router_restarts=True), False), (dict(LIVE, rolling=False), True),
])
def test_reconcile_only_a_running_router_that_stays(settings, reconcile):
    plan = plan_for(THREE)
    assert rolling.roll_plan(plan, {}, settings)["reconcile"] is reconcile


@pytest.mark.parametrize("starts, workers", [
    ({}, ["a", "b", "c"]),
    ({"b": {"start": False, "reason": "no GPU"}}, ["a", "c"]),
    ({g: {"start": False, "reason": "no GPU"} for g in "abc"}, []),
])
def test_a_running_router_gets_only_the_workers_of_groups_that_start(starts, workers):
    # A router up after a reboot on hosts whose groups do not start: nothing to add, nothing to await.
    plan = plan_for(THREE)
    out = rolling.roll_plan(plan, {}, dict(LIVE, starts=starts))
    assert out["workers"] == {g: plan["router"]["group_workers"][g] for g in workers}
    assert out["reconcile"] is bool(workers)


@pytest.mark.parametrize("batch, message", [
    (0, "sglang_server_roll_batch: 0 is below 1"), ("two", "'two' is not a whole number"),
    (True, "True is not a whole number"), (-1, "-1 is below 1"),
])
def test_roll_batch_refused(batch, message):
    with pytest.raises(rolling.RollError, match=message):
        rolling.roll_plan(plan_for(THREE), {"gpu0": True}, dict(LIVE, batch=batch))


@pytest.mark.parametrize("secrets, expected", [
    ({}, None), ({"api_key": True}, "api_key"), ({"api_key": True, "admin_api_key": True}, "admin_api_key"),
])
def test_router_auth_prefers_the_admin_key(secrets, expected):
    plan = plan_for(THREE)
    plan["nodes"]["gpu0"]["secrets"] = secrets
    got = rolling.router_auth(plan)
    assert got == (plan["layout"]["credentials"][expected] if expected else None)


# sglang-router 0.3.2's GET /workers, as the lab's router answers (shortened).
LISTING = json.dumps({"workers": [
    {"id": "ecb2a378-b6e2-4ef2-9e57-c34a6c83129d", "url": "http://10.0.0.10:30000", "is_healthy": True, "load": 0},
    {"id": "9df30c08-8540-4bc6-b3e2-df190bd8579a", "url": "http://10.0.0.12:30001/", "is_healthy": False},
    {"id": "03d2e05d-4f09-46c0-8f5b-0581f5ad6a54", "url": "http://10.0.0.13:30002", "is_healthy": True}],
    "total": 3}).encode()


def test_router_listing_read_and_judged():
    listing = rolling.parse_workers(LISTING)
    assert [w["url"] for w in listing] == ["http://10.0.0.10:30000", "http://10.0.0.12:30001", "http://10.0.0.13:30002"]
    assert rolling.to_remove(listing, ["http://10.0.0.12:30001/"]) == [("9df30c08-8540-4bc6-b3e2-df190bd8579a",
                                                                        "http://10.0.0.12:30001")]
    assert rolling.to_remove(listing, ["http://10.0.0.99:1"]) == []
    assert rolling.to_add(listing, ["http://10.0.0.10:30000", "http://10.0.0.99:1"]) == ["http://10.0.0.99:1"]
    assert rolling.healthy_others(listing, ["http://10.0.0.10:30000"]) == 1
    assert rolling.healthy_others(listing, ["http://10.0.0.10:30000", "http://10.0.0.13:30002"]) == 0
    assert rolling.not_yet_serving(listing, ["http://10.0.0.12:30001", "http://10.0.0.13:30002"]) == [
        "http://10.0.0.12:30001"]


@pytest.mark.parametrize("body", [b"", b"not json", b'{"error": "unauthorized"}', b'{"workers": [{"url": "x"}]}'])
def test_router_listing_of_another_shape_is_none(body):
    assert rolling.parse_workers(body) is None


@pytest.mark.parametrize("body, expected", [
    (b'{"loads": [{"dp_rank": 0, "num_running_reqs": 0, "num_waiting_reqs": 0}]}', 0),
    (b'{"loads": [{"dp_rank": 0, "num_running_reqs": 2}, {"dp_rank": 1, "num_waiting_reqs": 3}]}', 5),
    (b'{"loads": []}', 0),
    (b'{"detail": "Not Found"}', None), (b"<html>", None), (b'{"loads": [1]}', None),
])
def test_in_flight_from_v1_loads(body, expected):
    assert rolling.in_flight(body) == expected
