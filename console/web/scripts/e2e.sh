#!/usr/bin/env bash
# The console's browser tests: Debian's Chromium (installed here with apt-get
# when missing; never a downloaded browser build) drives the console of a
# real `herd up` on the machine's Postgres.
#   HERD_E2E_PG   server to create the test database on (default postgres://postgres@127.0.0.1:5432/postgres)
#   HERD_BIN      herd binary to test (default: built here from ../../cmd/herd)
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules/playwright-core ] || npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

if [ ! -x /usr/bin/chromium ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq chromium >/dev/null
fi

pg=${HERD_E2E_PG:-postgres://postgres@127.0.0.1:5432/postgres}
if ! psql -X -q -At "$pg" -c 'select 1' >/dev/null 2>&1; then
	echo "console e2e: no Postgres at $pg (start it, or set HERD_E2E_PG)" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "${HERD_BIN:-}" ]; then
	(cd ../.. && go build -o "$tmp/herd" ./cmd/herd)
	export HERD_BIN=$tmp/herd
fi

node --test --test-concurrency=1 --test-timeout=180000 e2e/
