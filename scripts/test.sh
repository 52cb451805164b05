#!/usr/bin/env bash
# Install cocina with its development tools (and the browser the web tests drive), then run the linters and the
# whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
scripts/install-deploy-tools.sh
scripts/install-browser.sh   # Debian's chromium for tests/web's browser tests (never a browser download)
.venv/bin/ruff check cocina tests benchmarks scripts conformance
.venv/bin/mypy cocina
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
