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


from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import placement_problems  # noqa: E402

PLAN = build_plan({"g": ["a", "b"]}, {
    h: dict(ansible_host=ip, cluster_interface="eth0", cluster_gpus_per_node=4, cluster_gpu_ids=[2, 3],
            sglang_model_path="m") for h, ip in (("a", "10.0.0.10"), ("b", "10.0.0.11"))})


def task(ip, gpu):
    return {"ip": ip, "gpu_ids": [gpu], "cuda_visible_devices": gpu}


def test_placement_as_planned():
    tasks = [task("10.0.0.10", "2"), task("10.0.0.10", "3"), task("10.0.0.11", "2"), task("10.0.0.11", "3")]
    assert placement_problems(tasks, PLAN) == []


def test_placement_problems_named():
    tasks = [task("10.0.0.10", "2"), task("10.0.0.10", "2"), task("10.0.0.11", "0"), task("10.0.0.11", "3")]
    problems = placement_problems(tasks, PLAN)
    assert problems[0].startswith("a: Ray placed 2 GPU tasks with ids ['2', '2'], 2 GPUs planned")
    assert problems[1] == "b: Ray handed out GPU ids ['0'] outside CUDA_VISIBLE_DEVICES 2,3"
