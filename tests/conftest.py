"""Make `ansible_collections.sglang_ops.cluster` importable from a checkout, as Ansible sees it."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "tools"))
