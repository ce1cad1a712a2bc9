"""The verdict on a live Ray cluster: who is missing, how many GPUs."""

from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import summarize

NODES = [
    {"ip": "10.0.0.10", "alive": True, "gpus": 4.0},
    {"ip": "10.0.0.11", "alive": False, "gpus": 4.0},  # Ray keeps dead nodes listed
    {"ip": "10.0.0.11", "alive": True, "gpus": 4.0},   # ... and the rejoined one
]


def test_complete_cluster():
    s = summarize(NODES, {"a": "10.0.0.10", "b": "10.0.0.11"}, 8)
    assert (s["alive_nodes"], s["dead_nodes"], s["gpus_total"], s["missing"], s["problems"]) == (2, 1, 8.0, [], [])


def test_missing_host_and_gpus_named():
    s = summarize(NODES[:2], {"a": "10.0.0.10", "b": "10.0.0.11"}, 8)
    assert s["missing"] == ["b"]
    assert s["problems"] == ["not alive in the Ray cluster: b (10.0.0.11)", "4 GPUs alive, 8 expected"]
