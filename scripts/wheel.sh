#!/usr/bin/env bash
# Builds a platform wheel of the Python client with the server binary inside (as ruff and
# uv ship theirs): `pip install` of this one file gives a working sqlite_rpc on a machine
# without Node. Output: dist/wheels/sqlite_rpc-<version>-py3-none-<platform>.whl
# Run after `npm run build` (or via `npm run wheel`, which builds first).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x dist/sqlite-rpc ] || { echo "dist/sqlite-rpc is missing: run npm run build first" >&2; exit 1; }
py=${PYTHON:-.venv/bin/python}
# The addon is built against this machine's glibc; tag the wheel with that floor.
glibc=$("$py" -c 'import platform; print(platform.libc_ver()[1].replace(".", "_"))')
plat="manylinux_${glibc}_$(uname -m)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r python-client "$work/src"
rm -rf "$work/src/tests" "$work/src/build" "$work"/src/*.egg-info
mkdir -p "$work/src/sqlite_rpc/bin"
cp dist/sqlite-rpc "$work/src/sqlite_rpc/bin/sqlite-rpc"
chmod 755 "$work/src/sqlite_rpc/bin/sqlite-rpc"
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
        zi.external_attr = (0o100755 << 16) if info.filename.endswith("bin/sqlite-rpc") else (0o100644 << 16)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zout.writestr(zi, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append("%s,sha256=%s,%d" % (info.filename, digest, len(data)))
    rows.append("%s,," % record_name)
    zout.writestr(record_name, "\n".join(rows) + "\n")
print(dst)
PY
