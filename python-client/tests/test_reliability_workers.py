"""Issue 7, item 4, as a Python program sees it: a reader worker of the server dies (the
test hook debug.crash_reader). What it held fails with sqlite3.OperationalError saying so;
the connection, the server and every other connection carry on. The protocol side
(WorkerFailed for each queued request, respawn, no thread leak) is test/70.reliability.workers.
"""
from __future__ import annotations

import sqlite3

import pytest

import sqlite_rpc
from sqlite_rpc import process

from _reliability import db_stats, process_server_args


@pytest.fixture
def hooked(tmp_path):
    path = str(tmp_path / "workers.sqlite")
    with process_server_args("--enable-test-hooks", "--pool-size", "1", "--inline-read-us", "0"):
        db = sqlite_rpc.connect(path)
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t(v) VALUES (?)", (("row %d" % i,) for i in range(10000)))
        db.commit()
        yield path, db


def test_cursor_being_fetched_when_its_worker_dies(hooked):
    path, db = hooked
    pid = process.get_server().pid
    cur = db.execute("SELECT id FROM t ORDER BY id")  # 10000 rows: first page now, a cursor for the rest
    assert cur.fetchmany(10) == [(i,) for i in range(1, 11)]
    assert process.get_server().call("debug.crash_reader", {"path": path}) == {}
    with pytest.raises(sqlite3.OperationalError, match="reader worker restarted"):
        cur.fetchall()
    # Same connection, same server, new query: served by the respawned worker.
    assert db.execute("SELECT count(*), max(id) FROM t").fetchone() == (10000, 10000)
    assert process.get_server().pid == pid
    st = db_stats(path)
    assert st["reader_respawns"] == 1 and st["readers"] == 1


def test_other_connections_do_not_notice(hooked):
    path, db = hooked
    others = [sqlite_rpc.connect(path) for _ in range(3)]
    for i in range(5):
        assert process.get_server().call("debug.crash_reader", {"path": path}) == {}
        for c in others:
            # A read issued after the crash was answered goes to the respawned worker.
            assert c.execute("SELECT v FROM t WHERE id = ?", (i + 1,)).fetchone() == ("row %d" % i,)
    db.execute("INSERT INTO t(v) VALUES ('written after the crashes')")
    db.commit()
    assert others[0].execute("SELECT count(*) FROM t").fetchone() == (10001,)
    assert db_stats(path)["reader_respawns"] == 5
    for c in others:
        c.close()
