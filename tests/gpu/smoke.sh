#!/usr/bin/env bash
# GPU smoke test for a lent accelerator: one node, our rendered command, the tiny dummy model.
# Needs nvidia-smi and a Python with SGLang (SGLANG_PYTHON, default python3). The answer of a
# dummy-weight model is noise; what counts is that the server came up and completed a request.
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${SGLANG_PYTHON:-python3}"
command -v nvidia-smi >/dev/null || { echo "smoke: no nvidia-smi: not a GPU machine"; exit 2; }
"$py" -c "import sglang" 2>/dev/null || { echo "smoke: SGLang is not importable by $py (set SGLANG_PYTHON)"; exit 2; }
export PYTHONUNBUFFERED=1
exec "$py" tests/gpu/smoke.py
