"""`python -m sglang_ops_cli`: the same as the `sglang-ops` command."""

from sglang_ops_cli.main import main

raise SystemExit(main())
