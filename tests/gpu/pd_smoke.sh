#!/usr/bin/env bash
# PD smoke test for a lent machine with 2 GPUs: a prefill and a decode server (one GPU each),
# the router in PD mode, one generation through it. Needs nvidia-smi and a Python with SGLang,
# sglang-router and the transfer engine (SGLANG_PYTHON, default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${SGLANG_PYTHON:-python3}"
command -v nvidia-smi >/dev/null || { echo "pd smoke: no nvidia-smi: not a GPU machine"; exit 2; }
"$py" -c "import sglang, sglang_router" 2>/dev/null || { echo "pd smoke: SGLang or sglang-router is not importable by $py (set SGLANG_PYTHON)"; exit 2; }
export PYTHONUNBUFFERED=1
exec "$py" tests/gpu/pd_smoke.py
