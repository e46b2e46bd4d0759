#!/usr/bin/env bash
# Rebuilds dist/ from src/ (commit the result: the Go binary embeds dist/).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/esbuild ] || npm ci --ignore-scripts --no-audit --no-fund
node scripts/build.mjs
node scripts/size.mjs
