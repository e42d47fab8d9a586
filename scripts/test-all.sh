#!/usr/bin/env bash
# Every test: typecheck, the TypeScript suites (vitest, against the built binary), mypy
# --strict on the Python client and the Python suites (pytest). Installs and builds first
# when a fresh clone lacks anything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ ! -x .venv/bin/python ] || [ ! -x dist/sqlite-rpc ]; then
  bash scripts/setup.sh --no-demo
else
  npm run build >/dev/null
fi
echo "==> typecheck" >&2
npx tsc --noEmit -p tsconfig.json
echo "==> vitest" >&2
npx vitest run
echo "==> mypy --strict (python-client/sqlite_rpc)" >&2
# A .venv made before mypy joined the test extras gets it here.
.venv/bin/python -c "import mypy" 2>/dev/null || .venv/bin/python -m pip install -q -e 'python-client[test]'
(cd python-client && ../.venv/bin/python -m mypy --strict)
echo "==> pytest" >&2
.venv/bin/python -m pytest -q python-client/tests
