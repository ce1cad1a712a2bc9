"""Shared documentation of the collection's read-only fact modules."""

from __future__ import annotations


class ModuleDocFragment:
    """`extends_documentation_fragment: sglang_ops.cluster.read_only`"""

    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same way in check mode.
author:
  - sglang_ops maintainers (@sglang-ops)
"""
