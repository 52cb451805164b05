#!/usr/bin/env bash
# Install cocina into ./.venv (idempotent). Usage: scripts/install.sh [--dev]
#
# torch goes first, pinned by constraints.txt: any later requirement that lets pip choose a newer torch would pull
# several GB of CUDA packages on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "cocina: creating .venv with $($py --version)" >&2
    "$py" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
stamp=".venv/.cocina-installed$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "cocina: installing torch (CPU build) and cocina$extras into .venv ..." >&2
    # (This machine's pip configuration lists local indexes that lack most packages; hide its noise.)
    "${pip[@]}" -c constraints.txt torch 2> >(grep -v "is ignored: it is neither" >&2)
    "${pip[@]}" -c constraints.txt -e ".$extras" 2> >(grep -v "is ignored: it is neither" >&2)
    touch "$stamp"
fi
# cocina's CPU kernels, compiled now rather than at a server's first request (warns and goes on without a compiler).
.venv/bin/cocina kernels build || echo "cocina: kernels not built; the engine will use PyTorch's ops" >&2
