"""The fence's decisions: arm, fence on failure or silence, restart together, give up.

The protocol and the hostile peers on loopback are in test_fence_peers.py.
"""

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.fence import Coordinator


def step(coord, now, **states):
    for rank, state in states.items():
        coord.report(int(rank[1:]), state, now)
    return coord.decide(now)


def armed(nnodes=2, **kw):
    coord = Coordinator(nnodes, **kw)
    assert step(coord, 0, r0="active", r1="active")[0] is None
    assert coord.phase == "armed"
    return coord


def test_does_not_arm_until_every_rank_is_active():
    coord = Coordinator(2)
    assert step(coord, 0, r0="active") == (None, None)
    assert step(coord, 1, r0="active", r1="activating") == (None, None)
    assert coord.phase == "idle"
    # A never-started group (the CPU lab: inactive units) is never fenced.
    assert step(coord, 2, r0="inactive", r1="failed") == (None, None)


def test_failed_rank_stops_all_then_restarts_together():
    coord = armed()
    command, line = step(coord, 5, r0="active", r1="failed")
    assert command == "stop" and "rank 1 failed" in line
    assert step(coord, 6, r0="deactivating", r1="failed")[0] == "stop"
    command, line = step(coord, 7, r0="inactive", r1="failed")
    assert command == "start" and "restart 1 of at most 3" in line
    assert step(coord, 8, r0="activating", r1="activating") == (None, None)
    assert step(coord, 9, r0="active", r1="active")[0] is None
    assert coord.phase == "armed"


def test_silent_agent_fences():
    coord = armed(silent_after=10)
    coord.report(0, "active", 20)
    command, line = coord.decide(20)
    assert command == "stop" and "rank 1 silent" in line


def test_operator_stop_disarms_without_restart():
    coord = armed()
    assert step(coord, 3, r0="inactive", r1="active") == (None, None)
    command, line = step(coord, 4, r0="inactive", r1="inactive")
    assert command is None and "disarmed" in line
    assert step(coord, 5, r0="inactive", r1="inactive") == (None, None)


def test_gives_up_after_max_restarts_in_window():
    coord = armed(max_restarts=2, window=100)
    now = 0
    for _round in range(2):
        now += 1
        assert step(coord, now, r0="active", r1="failed")[0] == "stop"
        now += 1
        assert step(coord, now, r0="inactive", r1="failed")[0] == "start"
        now += 1
        step(coord, now, r0="active", r1="active")
    now += 1
    assert step(coord, now, r0="failed", r1="active")[0] == "stop"
    now += 1
    command, line = step(coord, now, r0="failed", r1="inactive")
    assert command == "stop" and line.startswith("gave up: 2 group restarts")
    assert coord.phase == "gave-up"
    # An operator's start re-arms it.
    assert step(coord, now + 1, r0="active", r1="active")[0] is None and coord.phase == "armed"


def test_restarts_outside_the_window_do_not_count():
    coord = armed(max_restarts=1, window=10)
    step(coord, 1, r0="active", r1="failed")
    assert step(coord, 2, r0="inactive", r1="failed")[0] == "start"
    step(coord, 3, r0="active", r1="active")
    step(coord, 30, r0="active", r1="failed")
    assert step(coord, 31, r0="inactive", r1="failed")[0] == "start"


def test_failed_restart_fences_again():
    coord = armed(max_restarts=3)
    step(coord, 1, r0="active", r1="failed")
    step(coord, 2, r0="inactive", r1="inactive")
    command, line = step(coord, 3, r0="failed", r1="activating")
    assert command == "stop" and "restart failed" in line


def test_stop_times_out_into_restart_decision():
    coord = armed(stop_timeout=30)
    step(coord, 1, r0="active", r1="failed")
    assert step(coord, 20, r0="deactivating", r1="failed")[0] == "stop"
    assert step(coord, 40, r0="deactivating", r1="failed")[0] == "start"


@pytest.mark.parametrize("rank, state", [
    (None, "active"), ("0", "active"), (True, "active"), (1.0, "active"), (float("nan"), "active"),
    (float("inf"), "active"), (10 ** 400, "active"), (2, "active"), (-1, "active"),
    (0, "bogus"), (0, None), (0, 5),
])
def test_reports_outside_the_group_or_its_states_are_refused(rank, state):
    """A rank that is not in the group would keep it from arming or fence it 10 s later."""
    coord = Coordinator(2)
    with pytest.raises(ValueError):
        coord.report(rank, state, 0)
    assert coord.reports == {}


def probes(coord, *results):
    for ok in results:
        coord.probe(ok)


def test_a_hung_group_is_fenced_after_n_failed_probes_in_a_row():
    """Every unit active, rank 0 no longer answers /health_generate: a rank hangs in a collective."""
    coord = armed(health_failures=3)
    probes(coord, False, False, False, False)  # the model still loads: not a hang
    assert step(coord, 1, r0="active", r1="active") == (None, None)
    assert coord.probe(True) == "rank 0's /health_generate answers: watching for hangs"
    assert coord.probe(True) is None
    probes(coord, False, False, True, False, False)  # an answer starts the count over
    assert step(coord, 2, r0="active", r1="active") == (None, None)
    probes(coord, False)
    command, line = step(coord, 3, r0="active", r1="active")
    assert command == "stop" and "rank 0's /health_generate failed 3 times in a row (hung)" in line
    assert step(coord, 4, r0="inactive", r1="inactive")[0] == "start"
    probes(coord, False, False, False)  # while starting: ignored
    step(coord, 5, r0="active", r1="active")
    assert coord.phase == "armed" and coord.health == {"ok_since_armed": False, "failed": 0}


def test_without_probes_health_never_fences():
    coord = armed()
    probes(coord, True, *[False] * 10)
    assert step(coord, 1, r0="active", r1="active") == (None, None) and coord.phase == "armed"
