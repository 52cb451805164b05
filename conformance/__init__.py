"""Cog's own integration suite (testscript `.txtar` files), run against cocina.

Cog's harness (Go, testscript) is not vendored: this package is cocina's own reading of the same format and of the
custom commands the harness defines (`cog`, `curl`, `webhook-server-*`, `upload-server-*`, `wait-for`, ...), with
each `cog` command translated to its cocina counterpart. It lives outside `cocina/` because it is a test tool, not
part of the product, yet it runs on its own too: `python -m conformance --help`.

- `txtar.py`   the archive format (script + embedded files)
- `script.py`  the testscript engine: line parsing, `$VAR` expansion, `!` and `[cond]`, the built-in commands
- `harness.py` the commands of Cog's harness, and how each `cog ...` maps onto `cocina ...`
- `skips.py`   the tests that cannot apply to cocina (Docker images, registries, ...), each with its reason
- `suite.py`   discovery, parallel and serial scheduling, the report
"""
