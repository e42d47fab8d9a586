"""The platform wheel stands alone: built by scripts/wheel.sh from the checkout's binary,
installed into a fresh virtual environment, it serves queries with no node on PATH, no
HOME, and no access to this checkout. Its manylinux tag is what the binary and the addons it
embeds need (read with readelf, as auditwheel reads it), not the glibc of the build machine."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile

import pytest

from _elf import check_wheel

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.path.join(ROOT, "dist", "sqlite-rpc")
# The addons the single binary embeds (scripts/build.mjs) and dlopens from its cache folder.
ADDONS = {
    "better_sqlite3.node": os.path.join(ROOT, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node"),
    "peercred.node": os.path.join(ROOT, "native", "build", "Release", "peercred.node"),
}


@pytest.mark.skipif(not os.path.exists(BINARY), reason="dist/sqlite-rpc is not built")
def test_the_wheel_alone_gives_a_working_client(tmp_path):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "wheel.sh")], cwd=ROOT, env=dict(os.environ, PYTHON=sys.executable),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    wheel = out.stdout.strip().splitlines()[-1]
    assert os.path.basename(wheel).startswith("sqlite_rpc-") and "manylinux_" in wheel and wheel.endswith(".whl")
    with zipfile.ZipFile(wheel) as z:
        info = z.getinfo("sqlite_rpc/bin/sqlite-rpc")
        assert (info.external_attr >> 16) & 0o111, "the binary must be executable in the wheel"
        # The taxonomy travels as generated code; the package reads no protocol/ file.
        assert "sqlite_rpc/_taxonomy.py" in z.namelist() and "sqlite_rpc/errors.json" not in z.namelist()
    # manylinux_2_34 today (better_sqlite3.node: GLIBC_2.34); the build machine has 2.36.
    check_wheel(wheel, "x86_64", BINARY, ADDONS)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", wheel], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PIP_RETRIES="0", PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert pip.returncode == 0, pip.stderr[-3000:]

    script = (
        "import os, shutil, sqlite_rpc\n"
        "assert shutil.which('node') is None and 'HOME' not in os.environ\n"
        "c = sqlite_rpc.connect('w.db')\n"
        "c.execute('CREATE TABLE t(x)'); c.execute('INSERT INTO t VALUES (?)', (2**62,)); c.commit()\n"
        "print(sqlite_rpc.backend(), sqlite_rpc.process.find_binary(), c.execute('SELECT x, sqlite_version() FROM t').fetchone())\n"
    )
    run = subprocess.run([str(venv / "bin" / "python"), "-c", script], cwd=str(tmp_path), env={"PATH": "/nonexistent"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    backend, binary, row = run.stdout.strip().split(" ", 2)
    assert backend == "sqlite-rpc"
    assert binary.startswith(str(venv)) and binary.endswith("sqlite_rpc/bin/sqlite-rpc")
    assert row.startswith("(4611686018427387904, '3.")

    # The CrewAI demo, as a user runs it after `pip install` of the wheel: four kickoff
    # processes, one shared server, every row read back.
    demo = subprocess.run([str(venv / "bin" / "python"), "-m", "sqlite_rpc.adapters.crewai.demo", str(tmp_path / "crew")],
                          cwd=str(tmp_path), env={"PATH": "/nonexistent"}, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    assert lines[0] == "backend: sqlite-rpc" and lines[-1] == "ok", demo.stdout
    servers = next(line for line in lines if line.startswith("servers used")).split(": ", 1)[1].split()
    assert len(servers) == 1, "the four processes must meet in one shared server: %s" % demo.stdout
    assert {"flow_states.db", "latest_kickoff_task_outputs.db"} <= set(os.listdir(str(tmp_path / "crew")))

    # Replication from the wheel alone: the x64 wheel ships Litestream beside the binary, and
    # the server finds it there (no PATH, no checkout); the replica restores to the same rows.
    replica = tmp_path / "replica"
    script = (
        "import sqlite_rpc\n"
        "c = sqlite_rpc.connect('r.db', replicate='file://%s')\n"
        "c.execute('CREATE TABLE t(x)'); c.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(100)]); c.commit()\n"
        "import time\n"
        "deadline = time.monotonic() + 120\n"
        "while True:  # the shared server outlives this process: wait until the replica has every commit\n"
        "    st = [d for d in sqlite_rpc.stats()['databases'] if d['path'].endswith('r.db')][0]['replication']\n"
        "    if st['lag_ms'] == 0 or time.monotonic() > deadline: break\n"
        "    time.sleep(0.05)\n"
        "c.close()\n"
        "print(st['litestream'])\n"
    ) % replica
    run = subprocess.run([str(venv / "bin" / "python"), "-c", script], cwd=str(tmp_path), env={"PATH": "/nonexistent"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith(str(venv)) and run.stdout.strip().endswith("sqlite_rpc/bin/litestream"), run.stdout
    binary = glob.glob(str(venv / "lib" / "python*" / "site-packages" / "sqlite_rpc" / "bin" / "sqlite-rpc"))[0]
    restored = tmp_path / "restored.db"
    out = subprocess.run([binary, "restore", "--from", "file://%s/r.db" % replica, str(restored)], env={"PATH": "/nonexistent"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import sqlite3
    with sqlite3.connect(str(restored)) as c:
        assert c.execute("SELECT count(*), sum(x) FROM t").fetchone() == (100, 4950)
