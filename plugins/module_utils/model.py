"""Is a model directory complete? Decided from a listing, so it is testable without a node.

Why this exists: a half-copied or half-downloaded model loads on some nodes and fails on others
minutes into a start, with an error far from its cause. Checking config.json and every shard the
weights index names, before any server starts, turns that into one line naming host and file.
"""

from __future__ import annotations

import hashlib
import json
import os

SOURCES = ("none", "hf", "controller", "path")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def check_listing(files, index=None, weights_required=True):
    """Problems of a model directory, [] when complete.

    files:   {relative path: size in bytes}
    index:   parsed weights index (its weight_map names the shards), or None
    weights_required: False for `--load-format dummy`, where only config and tokenizer matter
    """
    problems = []
    if "config.json" not in files:
        problems.append("config.json is missing")
    elif files["config.json"] == 0:
        problems.append("config.json is empty")
    if index is not None:
        shards = sorted(set((index.get("weight_map") or {}).values()))
        if not shards:
            problems.append("the weights index names no shard")
        missing = [s for s in shards if s not in files]
        if missing:
            problems.append("%d of %d shards missing: %s"
                            % (len(missing), len(shards), ", ".join(missing[:5])))
        empty = [s for s in shards if files.get(s) == 0]
        if empty:
            problems.append("empty shards: %s" % ", ".join(empty[:5]))
    elif weights_required and not any(f.endswith(WEIGHT_SUFFIXES) for f in files):
        problems.append("no weights (*.safetensors, *.bin) and no weights index")
    partial = [f for f in files if f.endswith((".incomplete", ".part", ".lock"))]
    if partial:
        problems.append("unfinished download files: %s" % ", ".join(sorted(partial)[:5]))
    return problems


def read_index(text):
    """The weights index, or a problem when it is not valid JSON."""
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, "the weights index is not valid JSON (%s)" % exc


def source_problem(source, model_path, src_dir=None, repo=None):
    """A refusal for an impossible prefetch setting, or None."""
    if source not in SOURCES:
        return "sglang_model_source %r: use one of %s" % (source, ", ".join(SOURCES))
    if source != "none" and not str(model_path or "").startswith("/"):
        return ("sglang_model_source %s needs sglang_model_path to be a directory on the node "
                "(an absolute path), not %r" % (source, model_path))
    if source == "controller" and not src_dir:
        return "sglang_model_source controller needs sglang_model_src_dir (a directory on the controller)"
    if source == "hf" and not repo:
        return "sglang_model_source hf needs sglang_model_repo (e.g. meta-llama/Llama-3.1-8B-Instruct)"
    return None


def _files(root):
    """(relative path, stat) of every file of a model directory, without the .cache folder
    downloads leave; a dangling link counts as missing."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (dirpath == root and d == ".cache")]
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                yield os.path.relpath(full, root), os.stat(full)
            except OSError:
                continue


def listing(root):
    """{relative path: size} of a model directory."""
    return {rel: st.st_size for rel, st in _files(root)}


def manifest(root):
    """The controller's copy of a model: {files: {path: size}, key}. The key also covers each
    file's mtime, so an edit of the source that keeps a size still gives a new key."""
    entries = sorted((rel, st.st_size, st.st_mtime_ns) for rel, st in _files(root))
    return {"files": {rel: size for rel, size, _mtime in entries},
            "key": hashlib.sha256(json.dumps([list(e) for e in entries]).encode()).hexdigest()}


def manifest_differences(files, wanted):
    """What differs between a node's listing and the manifest's files (extra files are the
    node's own and do not count): [] when every file is there with its size."""
    missing = sorted(f for f in wanted if f not in files)
    resized = sorted(f for f in wanted if f in files and files[f] != wanted[f])
    problems = []
    if missing:
        problems.append("%d missing: %s" % (len(missing), ", ".join(missing[:5])))
    if resized:
        problems.append("%d of another size: %s" % (len(resized), ", ".join(resized[:5])))
    return problems
