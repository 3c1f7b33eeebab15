#!/usr/bin/env bash
# Installs what the test suite needs beyond Go, from Debian's packages:
# Chromium for the browser tests. PostgreSQL 18 comes from scripts/pg.sh.
# Idempotent; uses sudo when not run as root.
set -euo pipefail
# Independent implementations that tests check our protocols against
# (ALTCHA, Standard Webhooks), pinned by their package-lock.json files.
for dir in internal/challenge/testdata/altcha internal/stdwebhook/testdata/node; do
	(cd "$(dirname "$0")/.." && { [ -d "$dir/node_modules" ] || npm ci --silent --prefix "$dir"; })
done

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
