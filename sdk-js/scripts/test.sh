#!/usr/bin/env bash
# The browser SDK's unit tests, from a fresh clone: install the pinned npm
# packages, check that the committed dist/ is what esbuild builds from src/,
# check the size budget, run node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

# esbuild and playwright-core need no install scripts: esbuild's binary comes
# in its platform package, and playwright-core never downloads a browser.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node scripts/build.mjs --outdir "$tmp"
if ! diff -rq "$tmp" dist >/dev/null; then
	diff -rq "$tmp" dist || true
	echo "sdk-js/dist is stale: run 'make sdk' and commit sdk-js/dist" >&2
	exit 1
fi
node scripts/size.mjs
node --test test/
