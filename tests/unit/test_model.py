"""Model directory completeness and prefetch settings, from listings."""

import pytest

import os

from ansible_collections.sglang_ops.cluster.plugins.module_utils.model import (
    check_listing, manifest, manifest_differences, read_index, source_problem)

INDEX = {"weight_map": {"a.w": "model-00001-of-00002.safetensors",
                        "b.w": "model-00002-of-00002.safetensors"}}
SHARDS = {"model-00001-of-00002.safetensors": 5, "model-00002-of-00002.safetensors": 5}


@pytest.mark.parametrize("files, index, weights, expected", [
    ({"config.json": 10, **SHARDS}, INDEX, True, []),
    ({"config.json": 10, "model.safetensors": 9}, None, True, []),
    ({"config.json": 10, "tokenizer.json": 3}, None, False, []),
    ({"config.json": 10, "tokenizer.json": 3}, None, True, ["no weights"]),
    ({**SHARDS}, INDEX, True, ["config.json is missing"]),
    ({"config.json": 0, **SHARDS}, INDEX, True, ["config.json is empty"]),
    ({"config.json": 1, "model-00001-of-00002.safetensors": 5}, INDEX, True,
     ["1 of 2 shards missing: model-00002-of-00002.safetensors"]),
    ({"config.json": 1, "model-00001-of-00002.safetensors": 5,
      "model-00002-of-00002.safetensors": 0}, INDEX, True, ["empty shards: model-00002"]),
    ({"config.json": 1}, {"weight_map": {}}, True, ["names no shard"]),
    ({"config.json": 1, "model.safetensors.incomplete": 4, "model.safetensors": 2}, None, True,
     ["unfinished download files: model.safetensors.incomplete"]),
])
def test_check_listing(files, index, weights, expected):
    problems = check_listing(files, index, weights)
    assert len(problems) == len(expected), problems
    for problem, want in zip(problems, expected):
        assert want in problem


def test_read_index():
    assert read_index('{"weight_map": {}}') == ({"weight_map": {}}, None)
    index, problem = read_index("{truncated")
    assert index is None and "not valid JSON" in problem


@pytest.mark.parametrize("source, path, src, repo, message", [
    ("none", "org/model", None, None, None),
    ("path", "/shared/models/m", None, None, None),
    ("controller", "/srv/sg/models/m", "/srv/models/m", None, None),
    ("hf", "/srv/sg/models/m", None, "org/m", None),
    ("s3", "/m", None, None, "use one of none, hf, controller, path"),
    ("hf", "org/m", None, "org/m", "an absolute path"),
    ("controller", "/m", None, None, "needs sglang_model_src_dir"),
    ("hf", "/m", None, None, "needs sglang_model_repo"),
])
def test_source_problem(source, path, src, repo, message):
    problem = source_problem(source, path, src, repo)
    if message is None:
        assert problem is None
    else:
        assert message in problem


def test_manifest_lists_sizes_and_keys_the_times(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/w.safetensors").write_bytes(b"12345")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache/lock").write_text("x")
    first = manifest(str(tmp_path))
    assert first["files"] == {"config.json": 2, "sub/w.safetensors": 5}
    assert manifest(str(tmp_path))["key"] == first["key"]
    os.utime(tmp_path / "config.json", ns=(1, 1))  # an edit that keeps the size
    assert manifest(str(tmp_path))["key"] != first["key"]


@pytest.mark.parametrize("files, problems", [
    ({"config.json": 2, "w.safetensors": 5}, []),
    ({"config.json": 2, "w.safetensors": 5, "extra.txt": 1}, []),
    ({"config.json": 2}, ["1 missing: w.safetensors"]),
    ({"config.json": 2, "w.safetensors": 4}, ["1 of another size: w.safetensors"]),
    ({}, ["2 missing: config.json, w.safetensors"]),
])
def test_manifest_differences(files, problems):
    assert manifest_differences(files, {"config.json": 2, "w.safetensors": 5}) == problems
