#!/usr/bin/env bash
# Tools the benchmarks use beside the Python environment: wrk (an HTTP load generator, from Debian's packages),
# for benchmarks/serving_core.py's concurrent echo load. Idempotent; needs root (or sudo) for apt-get.
set -euo pipefail
if ! command -v wrk >/dev/null 2>&1; then
    echo "cocina: installing wrk (apt-get) ..." >&2
    sudo_=""
    [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    $sudo_ apt-get install -y -qq wrk >/dev/null
fi
wrk --version 2>&1 | head -1
