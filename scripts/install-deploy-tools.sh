#!/usr/bin/env bash
# The Debian tools the deploy tests check artifacts with: promtool and prometheus (rules, configs, and a real
# scrape of a live cocina), docker-compose (the compose file; no Docker daemon needed), systemd-analyze (systemd)
# and unshare (util-linux: the edge bundle runs in a namespace with no network). PostgreSQL 15 (initdb, pg_ctl)
# for the store tests. The Python ones (kubernetes-validate, hadolint, jsonschema) come with `pip install -e .[dev]`.
# Idempotent: installs only what is missing; needs root (apt-get) for that.
set -euo pipefail
need=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v unshare >/dev/null || need+=(util-linux)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v kubectl >/dev/null || echo "cocina: kubectl is not installed; the kustomize check needs it" >&2
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "cocina: missing ${need[*]}: run as root, or: sudo apt-get install ${need[*]}" >&2
    exit 1
fi
echo "cocina: installing ${need[*]} from Debian ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
