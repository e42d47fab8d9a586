"""The server process: environment, logging, fork, shutdown at exit, and the stdlib fallback."""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time

import pytest

import sqlite_rpc
from sqlite_rpc import process

from conftest import BINARY, subprocess_env
from _harness import in_forked_child

# The private server: its environment, stderr, exit with its process, its own after fork
# (test_shared_server.py has the shared server's).
pytestmark = pytest.mark.private_server


def _run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=60)


def _gone(pid: int, wait: float = 10.0) -> bool:
    """True once no process `pid` runs (a zombie counts as gone). Polls; no timing claim."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# ---- environment and logging ------------------------------------------------------------

def test_node_options_of_the_parent_do_not_reach_the_server():
    # Precondition: the binary honours NODE_OPTIONS, so this flag would stop it from starting.
    bad = subprocess.run([BINARY, "--version"], env=dict(os.environ, NODE_OPTIONS="--invalid-flag"),
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "NODE_OPTIONS" in bad.stderr
    out = _run_python(
        "import sqlite_rpc; c = sqlite_rpc.connect(':memory:'); "
        "print(sqlite_rpc.backend(), c.execute('SELECT 40 + 2').fetchone()[0], type(c).__module__)",
        NODE_OPTIONS="--invalid-flag", NODE_EXTRA_CA_CERTS="/nonexistent", NODE_DEBUG="x")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["sqlite-rpc", "42", "sqlite_rpc.dbapi"]
    assert "RuntimeWarning" not in out.stderr


def test_server_stderr_is_forwarded_to_logging(caplog):
    sqlite_rpc.shutdown()  # the next use starts a server whose start-up log we can see
    with caplog.at_level(logging.INFO, logger="sqlite_rpc.server"):
        sqlite_rpc.connect(":memory:").execute("SELECT 1")
        pid = process.get_server().pid
        deadline = time.monotonic() + 10
        while not any(r.name == "sqlite_rpc.server" and r.getMessage().startswith("ready") for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.02)
    ready = [r for r in caplog.records if r.getMessage().startswith("ready")][0]
    assert ready.levelno == logging.INFO
    assert ready.sqlite_rpc["pid"] == pid  # the JSON fields ride along on the record


def test_server_is_restarted_after_shutdown():
    first = process.get_server().pid
    sqlite_rpc.shutdown()
    assert _gone(first)
    assert sqlite_rpc.connect(":memory:").execute("SELECT 1").fetchone() == (1,)
    assert process.get_server().pid != first


# ---- exit -----------------------------------------------------------------------------------

def test_clean_exit_leaves_no_server_behind(tmp_path):
    code = ("import sqlite_rpc; from sqlite_rpc import process; c = sqlite_rpc.connect(%r); "
            "c.execute('CREATE TABLE t(x)'); c.execute('INSERT INTO t VALUES (1)'); c.commit(); "
            "print(process.get_server().pid)" % str(tmp_path / "exit.sqlite"))
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    assert _gone(int(out.stdout))
    assert sqlite3.connect(str(tmp_path / "exit.sqlite")).execute("SELECT x FROM t").fetchall() == [(1,)]


def test_abrupt_exit_still_stops_the_server(tmp_path):
    # os._exit skips atexit: the server sees end of input on its stdin and stops by itself.
    code = ("import os, sqlite_rpc; from sqlite_rpc import process; c = sqlite_rpc.connect(':memory:'); "
            "c.execute('SELECT 1'); print(process.get_server().pid, flush=True); os._exit(0)")
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    assert _gone(int(out.stdout))


# ---- fork -----------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_server(tmp_path):
    path = str(tmp_path / "fork.sqlite")
    parent = sqlite_rpc.connect(path)
    parent.execute("CREATE TABLE t(who TEXT)")
    parent.execute("INSERT INTO t VALUES ('parent before fork')")
    parent.commit()
    mem = sqlite_rpc.connect(":memory:")
    mem.execute("CREATE TABLE m(x)")
    parent_pid = process.get_server().pid

    def child(report):  # the child reports; it leaves without the parent's atexit/pytest
        c = sqlite_rpc.connect(path)
        report["rows"] = c.execute("SELECT who FROM t ORDER BY rowid").fetchall()
        c.execute("INSERT INTO t VALUES ('child')")
        c.commit()
        report["server"] = process.get_server().pid
        # A connection made before the fork reopens its file in the child's server...
        report["inherited"] = parent.execute("SELECT count(*) FROM t").fetchone()[0]
        # ...but an in-memory database stayed with the parent: reported, not replaced.
        try:
            mem.execute("SELECT * FROM m")
            report["memory"] = "no error"
        except sqlite3.OperationalError as e:
            report["memory"] = str(e)
        sqlite_rpc.shutdown()
        report["child server gone"] = _gone(report["server"])

    report = in_forked_child(child)
    assert "error" not in report, report
    assert report["rows"] == [["parent before fork"]]
    assert report["server"] not in (parent_pid, None)
    assert report["inherited"] == 2
    assert "forked" in report["memory"] and "in-memory database was lost" in report["memory"]
    assert report["child server gone"] is True
    # The parent and its server are untouched.
    assert process.get_server().pid == parent_pid
    assert parent.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("parent before fork",), ("child",)]
    assert mem.execute("SELECT count(*) FROM m").fetchone() == (0,)


# ---- fallback to the stdlib -----------------------------------------------------------------

FALLBACK_PROBE = r"""
import asyncio, json, sqlite3, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import sqlite_rpc
    from sqlite_rpc import aio
    c1 = sqlite_rpc.connect(":memory:")
    c2 = sqlite_rpc.connect(sys.argv[1])
    c2.execute("CREATE TABLE t(x)")
    c2.execute("INSERT INTO t VALUES (1)")
    c2.commit()
    db = sqlite_rpc.Database(sys.argv[1])
    db.execute_update("INSERT INTO t VALUES (?)", (2,))
    rows = db.execute_query("SELECT x FROM t ORDER BY x")
    db.close()

    async def main():
        async with aio.connect(sys.argv[1]) as a:
            await a.execute("INSERT INTO t VALUES (3)")
            await a.commit()
            async with a.execute("SELECT count(*) FROM t") as cur:
                return (await cur.fetchone())[0]

    n = asyncio.run(main())
print(json.dumps({
    "types": [type(c1).__module__ + "." + type(c1).__name__, type(c2).__name__],
    "is_stdlib": type(c1) is sqlite3.Connection,
    "backend": sqlite_rpc.backend(),
    "warnings": [(w.category.__name__, str(w.message)) for w in caught],
    "rows": rows, "aio_count": n,
    "version": sqlite_rpc.sqlite_version,
}))
"""


@pytest.mark.parametrize("env", [
    {"SQLITE_RPC_DISABLE": "1"},
    {"SQLITE_RPC_BINARY": "/nonexistent/sqlite-rpc"},
    {"SQLITE_RPC_BINARY": "/bin/false"},  # exists, but is no server: it cannot start
], ids=["disabled", "binary-missing", "binary-unstartable"])
def test_fallback_to_the_stdlib_with_one_warning(env, tmp_path):
    out = _run_python(FALLBACK_PROBE, str(tmp_path / "fb.sqlite"), **env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["types"] == ["sqlite3.Connection", "Connection"] and got["is_stdlib"] is True
    assert got["backend"] == "sqlite3"
    assert len(got["warnings"]) == 1, got["warnings"]
    category, message = got["warnings"][0]
    assert category == "RuntimeWarning" and "using the stdlib sqlite3" in message
    assert got["rows"] == [{"x": 1}, {"x": 2}]
    assert got["aio_count"] == 3
    assert got["version"] == sqlite3.sqlite_version


def test_no_fallback_and_no_warning_when_the_server_runs(tmp_path):
    out = _run_python(FALLBACK_PROBE, str(tmp_path / "fb.sqlite"))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["types"] == ["sqlite_rpc.dbapi.Connection", "Connection"]
    assert got["backend"] == "sqlite-rpc" and got["warnings"] == []
    assert got["rows"] == [{"x": 1}, {"x": 2}] and got["aio_count"] == 3


def test_a_server_started_from_a_deleted_folder_still_reads_on_its_workers(tmp_path):
    # A server outlives the temporary folder its process started in; Node's worker start-up
    # reads the working folder, and every read on a reader worker failed with uv_cwd ENOENT.
    gone = tmp_path / "gone"
    gone.mkdir()
    db = str(tmp_path / "w.db")
    code = """
import os, sys, sqlite_rpc
os.chdir(sys.argv[1]); os.rmdir(sys.argv[1])
c = sqlite_rpc.connect(sys.argv[2], shared=False)
c.execute("CREATE TABLE t(x)")
c.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50000)])
c.commit()
rows = c.execute("SELECT x FROM t").fetchall()  # more than a page: read on a worker
print(len(rows), sum(r[0] for r in rows))
"""
    r = _run_python(code, str(gone), db)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["50000", str(sum(range(50000)))]
