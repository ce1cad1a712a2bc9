#!/usr/bin/python
"""Module: ask a running SGLang group's rank 0 what an operator would ask it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: server_probe
short_description: Health, models, API key enforcement, a test generation and a short benchmark against rank 0
version_added: 0.1.0
description:
  - C(GET /health_generate) (the server runs a generation), C(GET /v1/models), the same without the
    key when O(api_key) is set (must be refused with 401), one chat completion at temperature 0, and
    a bounded benchmark of streamed chat completions measured here - requests/s, output tokens/s,
    time to first token p50 and p99.
  - Sends traffic only to O(url); every request has a timeout and the benchmark a fixed count.
extends_documentation_fragment: [sglang_ops.cluster.read_only]
options:
  url:
    description: Base URL of rank 0, e.g. C(http://127.0.0.1:30000).
    type: str
    required: true
  api_key:
    description: The server's API key, when it has one.
    type: str
    default: ""
  ca_path:
    description: CA certificate (PEM file) an C(https://) O(url) must chain to, e.g. the plan's C(credentials.tls_ca) file.
    type: path
  prompt:
    description: Prompt of the test generation and the benchmark.
    type: str
    default: What is the capital of France? Answer in one word.
  max_tokens:
    description: Tokens per completion.
    type: int
    default: 32
  bench_requests:
    description: Completions in the benchmark; 0 skips it.
    type: int
    default: 16
  bench_concurrency:
    description: Completions in flight at once.
    type: int
    default: 4
  timeout:
    description: Seconds per request.
    type: float
    default: 120
"""

EXAMPLES = r"""
- name: Probe rank 0
  sglang_ops.cluster.server_probe:
    url: http://127.0.0.1:30000
    api_key: "{{ sglang_server_api_key }}"
  no_log: false
  register: probe
"""

RETURN = r"""
health_generate:
  description: "{ok, status} of GET /health_generate."
  type: dict
  returned: always
models:
  description: "{ok, status, ids} of GET /v1/models."
  type: dict
  returned: always
unauthorized:
  description: "{ok, status} of GET /v1/models without the key (ok when 401); absent without O(api_key)."
  type: dict
  returned: when api_key is set
generation:
  description: "{ok, status, text, seconds} of one chat completion at temperature 0."
  type: dict
  returned: always
benchmark:
  description: requests, succeeded, seconds, req_per_s, output_tok_per_s, ttft_p50_ms, ttft_p99_ms.
  type: dict
  returned: when bench_requests > 0 and the generation succeeded
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sglang_ops.cluster.plugins.module_utils.probe import benchmark, chat_body, request


def main():
    module = AnsibleModule(
        argument_spec=dict(url=dict(type="str", required=True), api_key=dict(type="str", default="", no_log=True),
                           prompt=dict(type="str", default="What is the capital of France? Answer in one word."),
                           max_tokens=dict(type="int", default=32, no_log=False), bench_requests=dict(type="int", default=16),
                           bench_concurrency=dict(type="int", default=4), timeout=dict(type="float", default=120),
                           ca_path=dict(type="path")),
        supports_check_mode=True)
    p = module.params
    base, key, timeout, ca = p["url"].rstrip("/"), p["api_key"], p["timeout"], p["ca_path"]
    result = {"changed": False}
    status = request(base + "/health_generate", timeout=timeout, ca_path=ca)[0]
    result["health_generate"] = {"ok": status == 200, "status": status}
    status, body = request(base + "/v1/models", api_key=key, timeout=timeout, ca_path=ca)
    ids = []
    if status == 200:
        try:
            ids = [m["id"] for m in json.loads(body).get("data", [])]
        except (ValueError, KeyError, TypeError):
            ids = []
    result["models"] = {"ok": status == 200 and bool(ids), "status": status, "ids": ids}
    if key:
        status = request(base + "/v1/models", timeout=timeout, ca_path=ca)[0]
        result["unauthorized"] = {"ok": status == 401, "status": status}
    model = ids[0] if ids else "default"
    t0 = time.monotonic()
    status, body = request(base + "/v1/chat/completions", chat_body(model, p["prompt"], p["max_tokens"]),
                           api_key=key, timeout=timeout, ca_path=ca)
    text = ""
    if status == 200:
        try:
            text = json.loads(body)["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            text = ""
    result["generation"] = {"ok": status == 200 and bool(text.strip()), "status": status, "text": text[:200],
                            "seconds": round(time.monotonic() - t0, 3)}
    if p["bench_requests"] > 0 and result["generation"]["ok"]:
        result["benchmark"] = benchmark(base + "/v1/chat/completions",
                                        chat_body(model, p["prompt"], p["max_tokens"], stream=True),
                                        key, p["bench_requests"], p["bench_concurrency"], timeout, ca_path=ca)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
