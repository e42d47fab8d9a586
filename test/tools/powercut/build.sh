#!/usr/bin/env bash
# Builds powercut.so (the power-cut simulator, see powercut.c) into build/, when it is
# missing or older than its source. Called by scripts/setup.sh and by the tests that use it
# (python-client/tests/_reliability.py: powercut_shim()). Prints the .so's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
so="$here/build/powercut.so"
if [ ! -f "$so" ] || [ "$here/powercut.c" -nt "$so" ]; then
  mkdir -p "$here/build"
  tmp="$(mktemp "$here/build/powercut.so.XXXXXX")"
  # No _FILE_OFFSET_BITS=64 (open and open64 are both defined here) and no fortify wrappers.
  ${CC:-gcc} -O2 -g -Wall -Wextra -U_FORTIFY_SOURCE -U_FILE_OFFSET_BITS -fPIC -shared \
    -o "$tmp" "$here/powercut.c" -ldl -lpthread
  mv -f "$tmp" "$so"
fi
echo "$so"
