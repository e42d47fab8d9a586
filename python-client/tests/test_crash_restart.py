"""The server process dies (kill -9): requests fail clearly or are retried, the next use gets
a new server, and every committed row is still there."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import sqlite_rpc
from sqlite_rpc import process

from conftest import subprocess_env

# They kill the server under the client: this process's private one.
pytestmark = pytest.mark.private_server


def _kill_server() -> int:
    srv = process.get_server()
    pid = srv.pid
    os.kill(pid, signal.SIGKILL)
    srv.proc.wait()  # gone for sure; the client has not noticed yet
    return pid


@pytest.fixture
def committed(tmp_path):
    path = str(tmp_path / "crash.sqlite")
    db = sqlite_rpc.connect(path)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t(v) VALUES (?)", [("row %d" % i,) for i in range(100)])
    db.commit()
    return path, db


def test_read_on_an_idle_connection_is_retried_on_a_new_server(committed):
    path, db = committed
    old = _kill_server()
    assert db.execute("SELECT count(*) FROM t").fetchone() == (100,)
    assert process.get_server().pid != old


def test_a_request_the_dead_server_never_answered_fails_with_server_gone(committed):
    # ServerGone is the client's own kind, with its own code: not the server's WorkerFailed.
    srv = process.get_server()
    _kill_server()
    with pytest.raises(sqlite3.OperationalError) as e:
        srv.call("ping", {})
    assert e.value.rpc_kind == "ServerGone"
    assert e.value.rpc_code == sqlite_rpc.protocol.KINDS["ServerGone"].code == -31000
    assert e.value.rpc_code != sqlite_rpc.protocol.KINDS["WorkerFailed"].code


def test_write_after_a_crash_goes_to_a_new_server(committed):
    # The dead server never received it (the pipe had no reader), so it is sent to a new one.
    path, db = committed
    db.isolation_level = None
    old = _kill_server()
    assert db.execute("INSERT INTO t(v) VALUES ('after crash')").rowcount == 1
    assert process.get_server().pid != old
    assert db.execute("SELECT count(*) FROM t WHERE v = 'after crash'").fetchone() == (1,)


def test_fetch_of_a_result_cut_by_a_crash_fails_clearly(committed):
    path, db = committed
    db.executemany("INSERT INTO t(v) VALUES (?)", [("more",)] * 5000)
    db.commit()
    cur = db.execute("SELECT * FROM t")
    assert len(cur.fetchmany(10)) == 10
    _kill_server()
    with pytest.raises(sqlite3.OperationalError, match="server exited unexpectedly.*rest of this result was lost"):
        cur.fetchall()
    assert db.execute("SELECT count(*) FROM t").fetchone() == (5100,)
    assert cur.fetchall() == []  # the cursor is done, as if exhausted


def test_fetch_after_another_connection_noticed_the_crash(committed):
    path, db = committed
    db.executemany("INSERT INTO t(v) VALUES (?)", [("more",)] * 5000)
    db.commit()
    cur = db.execute("SELECT * FROM t")
    cur.fetchone()
    _kill_server()
    assert sqlite_rpc.connect(path).execute("SELECT 1").fetchone() == (1,)  # new server now
    with pytest.raises(sqlite3.OperationalError, match="rest of this result was lost"):
        cur.fetchall()


def test_transaction_idle_during_the_crash_is_reported_lost(committed):
    path, db = committed
    db.execute("INSERT INTO t(v) VALUES ('uncommitted')")
    assert db.in_transaction
    _kill_server()
    with pytest.raises(sqlite3.OperationalError, match="open transaction was lost and nothing of it was committed"):
        db.execute("SELECT count(*) FROM t")
    assert not db.in_transaction
    assert db.execute("SELECT count(*) FROM t").fetchone() == (100,)
    db.commit()  # nothing pending: a no-op, as in sqlite3


def test_transaction_lost_is_reported_when_the_crash_was_noticed_first(committed):
    path, db = committed
    db.execute("INSERT INTO t(v) VALUES ('uncommitted')")
    _kill_server()
    other = sqlite_rpc.connect(path)  # notices the dead server and starts a new one
    assert other.execute("SELECT count(*) FROM t").fetchone() == (100,)
    with pytest.raises(sqlite3.OperationalError, match="open transaction was lost"):
        db.commit()
    assert not db.in_transaction
    db.execute("INSERT INTO t(v) VALUES ('again')")
    db.commit()
    assert other.execute("SELECT count(*) FROM t").fetchone() == (101,)


def test_in_flight_write_fails_and_committed_data_survives(committed):
    path, db = committed
    box = []

    def long_write():
        c = sqlite_rpc.connect(path, isolation_level=None)
        try:
            # Long enough (seconds) to be certainly in flight when the server is killed.
            c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000000) "
                      "INSERT INTO t(v) SELECT 'bulk' FROM n")
            box.append("completed")
        except Exception as e:  # noqa: BLE001
            box.append(e)

    th = threading.Thread(target=long_write)
    th.start()
    time.sleep(0.5)
    _kill_server()
    th.join()
    assert isinstance(box[0], sqlite3.OperationalError), box
    assert "server exited unexpectedly" in str(box[0])
    fresh = sqlite_rpc.connect(path)
    assert fresh.execute("SELECT count(*) FROM t").fetchone() == (100,)
    assert fresh.execute("SELECT count(*) FROM t WHERE v = 'bulk'").fetchone() == (0,)


def test_in_flight_read_is_retried_transparently(committed):
    path, db = committed
    # The kill must land while the read is in flight: once its request is out (the client's
    # table of pending requests), at once. On a loaded machine this thread may still run late
    # and find the read answered by the old server: that attempt proves nothing, so it is
    # made again (the next connect starts a new server).
    for _attempt in range(5):
        box = []

        def long_read():
            c = sqlite_rpc.connect(path)
            try:
                box.append(c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
                                     "SELECT count(*), (SELECT count(*) FROM t) FROM n").fetchone())
            except Exception as e:  # noqa: BLE001
                box.append(e)

        db.execute("SELECT 1")  # after a missed attempt: the client notices the kill and starts a server
        srv = process.get_server()
        th = threading.Thread(target=long_read)
        th.start()
        deadline = time.monotonic() + 60
        while not srv._pending and not box and time.monotonic() < deadline:
            time.sleep(0.001)
        old = _kill_server()
        th.join()
        if process.get_server().pid != old:
            break
        assert box == [(3000000, 100)]  # answered before the kill; try again
    else:
        raise AssertionError("in 5 attempts the kill never found the read in flight")
    assert box == [(3000000, 100)]


def test_memory_database_lost_in_a_crash_is_reported_not_replaced(committed):
    mem = sqlite_rpc.connect(":memory:")
    mem.execute("CREATE TABLE m(x)")
    mem.execute("INSERT INTO m VALUES (1)")
    mem.commit()
    _kill_server()
    for _ in range(2):  # and it stays reported: never silently an empty database
        with pytest.raises(sqlite3.OperationalError, match="in-memory database was lost"):
            mem.execute("SELECT * FROM m")
    mem.close()
    assert sqlite_rpc.connect(":memory:").execute("SELECT 1").fetchone() == (1,)


def test_new_connections_after_a_crash_use_a_new_server(committed):
    path, db = committed
    old = _kill_server()
    fresh = sqlite_rpc.connect(path)
    assert fresh.execute("SELECT v FROM t WHERE id = 100").fetchone() == ("row 99",)
    assert process.get_server().pid != old
    assert fresh._srv is process.get_server()


def test_idle_transaction_rolled_back_by_the_server_is_reported(tmp_path):
    # A separate child Python, so that the server can run with a short --idle-tx-timeout.
    code = r"""
import sqlite3, sys, time, sqlite_rpc
path = sys.argv[1]
db = sqlite_rpc.connect(path)
db.execute("CREATE TABLE t(x)")
db.commit()
db.execute("INSERT INTO t VALUES (1)")
time.sleep(1.0)
try:
    db.execute("INSERT INTO t VALUES (2)")
    print("no error")
except sqlite3.OperationalError as e:
    print("error:", e)
print("in_transaction:", db.in_transaction)
db.execute("INSERT INTO t VALUES (3)")
db.commit()
print("rows:", db.execute("SELECT x FROM t").fetchall())
"""
    env = subprocess_env(SQLITE_RPC_ARGS="--idle-tx-timeout 200")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "idle.sqlite")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("error:") and "transaction" in lines[0].lower(), out.stdout
    assert lines[1:] == ["in_transaction: False", "rows: [(3,)]"], out.stdout
