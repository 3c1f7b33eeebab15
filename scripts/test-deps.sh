#!/usr/bin/env bash
# Installs what the test suite needs beyond Go, from Debian's packages:
# Chromium for the browser tests. PostgreSQL 18 comes from scripts/pg.sh.
# Idempotent; uses sudo when not run as root.
set -euo pipefail
[ -d "$(dirname "$0")/../internal/stdwebhook/testdata/node/node_modules" ] || npm ci --silent --no-audit --no-fund --prefix "$(dirname "$0")/../internal/stdwebhook/testdata/node"

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "test-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
	sudo="sudo"
fi
echo "test-deps: installing ${need[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
