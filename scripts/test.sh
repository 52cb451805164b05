#!/usr/bin/env bash
# Install cocina with its development tools, then run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
.venv/bin/ruff check cocina tests benchmarks scripts conformance
.venv/bin/mypy cocina
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
