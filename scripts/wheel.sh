#!/usr/bin/env bash
# Builds a platform wheel of the Python client with the server binary inside (as ruff and
# uv ship theirs): `pip install` of this one file gives a working sqlite_rpc on a machine
# without Node. Output: dist/wheels/sqlite_rpc-<version>-py3-none-manylinux_X_Y_<machine>.whl
#
#   bash scripts/wheel.sh [--arch x64|arm64] [--build]
#
# --arch (or SQLITE_RPC_ARCH=...): x64 (default) packs dist/sqlite-rpc, arm64 dist/arm64/sqlite-rpc
# (the cross build, scripts/build.mjs --arch arm64). --build builds the binary first
# (npm run wheel [-- --arch arm64] passes it).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${SQLITE_RPC_ARCH:-x64}
build=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?--arch needs a value}; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    --build) build=1; shift ;;
    *) echo "usage: bash scripts/wheel.sh [--arch x64|arm64] [--build]" >&2; exit 2 ;;
  esac
done
case "$arch" in
  x64|x86_64|amd64) arch=x64; dist=dist; machine=x86_64 ;;
  arm64|aarch64) arch=arm64; dist=dist/arm64; machine=aarch64 ;;
  *) echo "scripts/wheel.sh: unknown --arch $arch (x64 or arm64)" >&2; exit 2 ;;
esac
if [ "$build" = 1 ]; then
  npm run build -- --arch "$arch"
fi
[ -x "$dist/sqlite-rpc" ] || { echo "$dist/sqlite-rpc is missing: run npm run build -- --arch $arch first" >&2; exit 1; }
py=${PYTHON:-.venv/bin/python}
# The tag is what the binary needs, not the glibc of the machine that built it: the highest
# GLIBC_ version needed by the node executable and by the addons the SEA embeds (and writes
# out and dlopens at run time), read from their ELF version needs (scripts/elfneeds.py, which
# also refuses a library outside the manylinux allow-list or a too-new libstdc++ ABI).
# The addons are the files the build embedded, as listed in its sea-config.json.
mapfile -t assets < <("$py" -c 'import json, sys
for f in json.load(open(sys.argv[1]))["assets"].values():
    if f.endswith(".node"): print(f)' "$dist/sea-config.json")
[ "${#assets[@]}" -gt 0 ] || { echo "$dist/sea-config.json lists no .node assets" >&2; exit 1; }
for f in "${assets[@]}"; do
  [ "$f" -ot "$dist/sqlite-rpc" ] || {
    echo "$f is newer than $dist/sqlite-rpc, which embeds an older copy: build again (npm run build -- --arch $arch)" >&2; exit 1; }
done
plat=$("$py" scripts/elfneeds.py --manylinux "$machine" "$dist/sqlite-rpc" "${assets[@]}") || {
  echo "scripts/wheel.sh: $dist/sqlite-rpc and its addons cannot be tagged manylinux (above)" >&2; exit 1; }
echo "wheel tag: $plat (from $dist/sqlite-rpc ${assets[*]})" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r python-client "$work/src"
rm -rf "$work/src/tests" "$work/src/build" "$work"/src/*.egg-info
mkdir -p "$work/src/sqlite_rpc/bin"
cp "$dist/sqlite-rpc" "$work/src/sqlite_rpc/bin/sqlite-rpc"
chmod 755 "$work/src/sqlite_rpc/bin/sqlite-rpc"
# Litestream (replication, README "Replication and moving machines") beside the binary, where
# the server looks for it first: a static Go executable, so it changes nothing of the tag.
# npm has it for linux-x64 only here; the arm64 wheel goes without (the server then looks on PATH).
litestream="node_modules/@flydotio/litestream-linux-$arch/litestream"
if [ -x "$litestream" ]; then
  cp "$litestream" "$work/src/sqlite_rpc/bin/litestream"
  chmod 755 "$work/src/sqlite_rpc/bin/litestream"
  echo "litestream: $litestream ($("$litestream" version 2>/dev/null || echo "version unknown")) in the wheel" >&2
else
  echo "litestream: none for linux-$arch ($litestream is missing); the wheel goes without it" >&2
fi
PIP_RETRIES=0 "$py" -m pip wheel -q --no-deps --no-build-isolation "$work/src" -w "$work/out"
pure=$(ls "$work"/out/*.whl)
# Retag py3-none-any -> py3-none-<platform>: the wheel now carries a native binary.
"$py" - "$pure" "$plat" <<'PY'
import base64, hashlib, os, sys, zipfile
src, plat = sys.argv[1], sys.argv[2]
name = os.path.basename(src).replace("-any.whl", "-%s.whl" % plat)
dst = os.path.join(os.getcwd(), "dist", "wheels", name)
os.makedirs(os.path.dirname(dst), exist_ok=True)
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
    record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
    rows = []
    for info in zin.infolist():
        if info.filename == record_name:
            continue
        data = zin.read(info.filename)
        if info.filename.endswith(".dist-info/WHEEL"):
            text = data.decode().replace("Root-Is-Purelib: true", "Root-Is-Purelib: false")
            text = text.replace("Tag: py3-none-any", "Tag: py3-none-%s" % plat)
            data = text.encode()
        zi = zipfile.ZipInfo(info.filename, info.date_time)
        # S_IFREG + mode: pip restores the executable bit only when the file type is set too.
        executable = info.filename.endswith(("bin/sqlite-rpc", "bin/litestream"))
        zi.external_attr = (0o100755 << 16) if executable else (0o100644 << 16)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zout.writestr(zi, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append("%s,sha256=%s,%d" % (info.filename, digest, len(data)))
    rows.append("%s,," % record_name)
    zout.writestr(record_name, "\n".join(rows) + "\n")
print(dst)
PY
