#!/usr/bin/env bash
# Install cocina, then answer the seed's question with the built-in demo model (no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
demo_dir=$(mktemp -d)
trap 'rm -rf "$demo_dir"' EXIT
.venv/bin/cocina init "$demo_dir" --template llm >/dev/null
cd "$demo_dir"
exec "$OLDPWD/.venv/bin/cocina" predict -i pregunta="${1:-Dime un producto de limpieza que blanquee la ropa}"
