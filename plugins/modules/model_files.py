#!/usr/bin/python
"""Module: is the model directory on this node complete (config, every shard of the index)?"""

from __future__ import annotations

DOCUMENTATION = r"""
module: model_files
short_description: Check that a model directory on the node is complete
version_added: 0.1.0
description:
  - Lists O(path) (skipping the C(.cache) folder that Hugging Face downloads leave), and checks
    that C(config.json) is there and not empty, that every shard the weights index
    (C(model.safetensors.index.json) or C(pytorch_model.bin.index.json)) names exists and is not
    empty, and that no unfinished download files remain.
  - Reports the problems; the caller decides whether to fetch or fail.
extends_documentation_fragment: [sglang_ops.cluster.read_only]
options:
  path:
    description: The model directory (what C(--model-path) gets).
    type: path
    required: true
  weights_required:
    description: Whether weights must be present; false for C(--load-format dummy).
    type: bool
    default: true
  manifest:
    description:
      - The files the directory must hold, as a mapping of relative path to size (the
        controller's copy, from the C(model_manifest) filter). RV(manifest_differences) lists what differs.
    type: dict
"""

EXAMPLES = r"""
- name: Check the model before the servers start
  sglang_ops.cluster.model_files:
    path: /var/lib/sglang/models/Llama-3.1-8B-Instruct
  register: model
"""

RETURN = r"""
exists:
  description: Whether O(path) is a directory.
  type: bool
  returned: always
complete:
  description: Whether no problem was found.
  type: bool
  returned: always
problems:
  description: What is missing or broken, one line each.
  type: list
  elements: str
  returned: always
  sample: ["2 of 30 shards missing: model-00029-of-00030.safetensors"]
manifest_differences:
  description: Files of O(manifest) missing or of another size here; empty without O(manifest).
  type: list
  elements: str
  returned: always
  sample: ["1 missing: tokenizer.json"]
files:
  description: Number of files found.
  type: int
  returned: always
bytes:
  description: Their total size.
  type: int
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils.model import (
    INDEX_FILES, check_listing, listing, manifest_differences, read_index)


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type="path", required=True),
                           weights_required=dict(type="bool", default=True),
                           manifest=dict(type="dict")),
        supports_check_mode=True,
    )
    path = module.params["path"]
    if not os.path.isdir(path):
        module.exit_json(changed=False, exists=False, complete=False, files=0, bytes=0,
                         problems=["%s is not a directory" % path], manifest_differences=["no directory"])
    files = listing(path)
    index, problems = None, []
    for name in INDEX_FILES:
        if name in files:
            with open(os.path.join(path, name)) as handle:
                index, problem = read_index(handle.read())
            if problem:
                problems.append(problem)
            break
    problems += check_listing(files, index, module.params["weights_required"])
    differences = manifest_differences(files, module.params["manifest"]) if module.params["manifest"] else []
    module.exit_json(changed=False, exists=True, complete=not problems, problems=problems,
                     files=len(files), bytes=sum(files.values()), manifest_differences=differences)


if __name__ == "__main__":
    main()
