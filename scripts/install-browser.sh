#!/usr/bin/env bash
# Install the browser the web page's tests drive: Debian's own `chromium` package (idempotent).
#
# Playwright drives it through `executable_path`; never `playwright install`, which downloads a browser build of
# its own (and fails offline). The smoke test catches a chromium that cannot start headless (Debian bugs
# #1141488, #1141613: some 150.x builds crashed with SIGTRAP at headless start).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "cocina: no chromium and no apt-get: the browser tests will be skipped" >&2
        exit 0
    fi
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "cocina: installing chromium (Debian package) for the browser tests ..." >&2
    $sudo apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        chromium >/dev/null
fi
if ! timeout 60 chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1; then
    echo "cocina: chromium is installed but does not start headless: the browser tests will fail" >&2
    exit 1
fi
