"""Issue 7, item 5: disk full, simulated with PRAGMA max_page_count.

SQLITE_FULL must reach Python as sqlite3 reports it (OperationalError 'database or disk is
full', SQLITE_FULL), the transaction must be rolled back as SQLite rolls it back, the file
must stay intact, and writes must work again once there is room.

How the limit reaches the server's connections: a PRAGMA runs on the file's one writer
(DIFFERENCES.md 4), which does every write, so one connection's max_page_count binds every
connection of that file, for as long as the server keeps the file open; the readers never
write and do not need it.
"""
from __future__ import annotations

import os

import pytest

import sqlite_rpc

from _harness import Corpus, assert_same
from _reliability import Pipe, check_file, db_stats, process_server_args, wait_until

C = Corpus()


def _limited(r, extra_pages, **kw):
    """A WAL file (both sides, so page counts agree) with a table, limited to a few more pages."""
    db = r.connect(**kw)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    db.execute("INSERT INTO t(v) VALUES (x'00')")
    db.commit()
    db.execute("PRAGMA page_count")
    pages = db.raw.execute("PRAGMA page_count").fetchone()[0]
    db.execute("PRAGMA max_page_count = %d" % (pages + extra_pages))
    return db


def _after(r, db):
    db.execute("PRAGMA max_page_count = 1000000")
    db.execute("INSERT INTO t(v) VALUES (zeroblob(100000))")
    db.commit()
    db.execute("SELECT count(*), sum(length(v)) FROM t")
    db.execute("PRAGMA integrity_check")


@C.script
def full_inside_an_implicit_transaction(r):
    db = _limited(r, 3)
    db.execute("INSERT INTO t(v) VALUES (x'01')")
    db.execute("INSERT INTO t(v) VALUES (zeroblob(100000))")  # needs ~25 pages
    db.execute("SELECT count(*) FROM t")
    db.commit()
    _after(r, db)


@C.script
def full_in_autocommit(r):
    db = _limited(r, 3, isolation_level=None)
    db.execute("INSERT INTO t(v) VALUES (x'01')")
    db.execute("INSERT INTO t(v) VALUES (zeroblob(100000))")
    db.execute("SELECT count(*) FROM t")
    _after(r, db)


@C.script
def full_part_way_through_executemany(r):
    db = _limited(r, 6)
    db.executemany("INSERT INTO t(v) VALUES (zeroblob(?))", [(3000,)] * 20)
    db.execute("SELECT count(*) FROM t")
    db.rollback()
    _after(r, db)


@C.script
def full_in_update_create_index_and_script(r):
    db = _limited(r, 4)
    db.executemany("INSERT INTO t(v) VALUES (?)", [(bytes([i]) * 300,) for i in range(20)])
    db.commit()
    db.execute("UPDATE t SET v = zeroblob(20000)")
    db.execute("CREATE INDEX tv ON t(v)")
    db.executescript("CREATE TABLE u(x); INSERT INTO u VALUES (zeroblob(50000));")
    db.execute("SELECT count(*) FROM t")
    _after(r, db)


@C.script
def full_inside_a_savepoint(r):
    db = _limited(r, 3, isolation_level=None)
    db.execute("BEGIN")
    db.execute("INSERT INTO t(v) VALUES (x'02')")
    db.execute("SAVEPOINT sp")
    db.execute("INSERT INTO t(v) VALUES (zeroblob(100000))")
    db.execute("ROLLBACK TO sp")
    db.execute("COMMIT")
    db.execute("SELECT count(*) FROM t")
    _after(r, db)


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    log = assert_same(script, tmp_path)
    # Each script must really have run out of room (else it proves nothing).
    assert "SQLITE_FULL" in repr(log)


def test_full_in_a_group_commit_fails_only_the_write_that_did_not_fit(tmp_path):
    # 16 small autocommit writes from 4 sessions and one that overflows, all in one chunk of
    # input, so that they share one outer transaction. SQLITE_FULL rolls that whole
    # transaction back; the small writes must be re-run, not lost, and all acknowledged.
    path = str(tmp_path / "group.sqlite")
    with Pipe([], stderr_path=str(tmp_path / "stderr")) as p:
        p.init()
        for s in range(1, 6):
            p.call("open", {"session": s, "path": path})
        p.call("execute", {"session": 1, "sql": "CREATE TABLE t(s INTEGER, v BLOB)"})
        pages = p.call("execute", {"session": 1, "sql": "PRAGMA page_count"})["rows"][0][0]
        p.call("execute", {"session": 1, "sql": "PRAGMA max_page_count = %d" % (pages + 10)})
        frames, small, big = [], [], None
        for i in range(4):
            for s in range(1, 5):
                rid, data = p.request_bytes("execute", {"session": s, "sql": "INSERT INTO t VALUES (?, ?)", "params": [s, os.urandom(100)]})
                small.append(rid)
                frames.append(data)
            if i == 1:
                big, data = p.request_bytes("execute", {"session": 5, "sql": "INSERT INTO t VALUES (5, zeroblob(400000))"})
                frames.append(data)
        assert p.write(b"".join(frames))
        for rid in small:
            assert p.reply(rid).get("result", {}).get("changes") == 1, p.reply(rid)
        err = p.reply(big)["error"]
        assert err["message"] == "database or disk is full"
        assert err["data"]["kind"] == "SqliteError" and err["data"]["sqlite_code"] == "SQLITE_FULL"
        assert err["data"]["dbapi"] == "OperationalError"
        verdict, con = check_file(path)
        try:
            assert verdict == "ok"
            assert con.execute("SELECT s, count(*) FROM t GROUP BY s").fetchall() == [(1, 4), (2, 4), (3, 4), (4, 4)]
        finally:
            con.close()
        # Room again: the same write succeeds.
        p.call("execute", {"session": 1, "sql": "PRAGMA max_page_count = 1000000"})
        assert p.call("execute", {"session": 5, "sql": "INSERT INTO t VALUES (5, zeroblob(400000))"})["changes"] == 1
        assert p.shutdown() == 0
        assert not p.garbage
    verdict, con = check_file(path)
    assert verdict == "ok"
    assert con.execute("SELECT count(*) FROM t").fetchone() == (17,)
    con.close()


def test_one_connections_limit_binds_every_connection_of_the_file_while_it_is_open(tmp_path):
    path = str(tmp_path / "shared-limit.sqlite")
    with process_server_args("--db-idle-close-ms", "200"):
        a = sqlite_rpc.connect(path, isolation_level=None)
        a.execute("CREATE TABLE t(v BLOB)")
        pages = a.execute("PRAGMA page_count").fetchone()[0]
        a.execute("PRAGMA max_page_count = %d" % (pages + 2))
        b = sqlite_rpc.connect(path, isolation_level=None)
        assert b.execute("PRAGMA max_page_count").fetchone() == (pages + 2,)
        with pytest.raises(sqlite_rpc.OperationalError, match="database or disk is full"):
            b.execute("INSERT INTO t VALUES (zeroblob(100000))")
        a.close()
        b.close()
        # Once nobody uses the file the server closes it; the next writer is a fresh
        # connection, without the limit (as a new sqlite3 connection would be).
        from sqlite_rpc import process

        wait_until(lambda: all(d["path"] != os.path.realpath(path) for d in process.get_server().call("stats", {})["databases"]),
                   "the server to close the idle database")
        c = sqlite_rpc.connect(path, isolation_level=None)
        assert c.execute("INSERT INTO t VALUES (zeroblob(100000))").rowcount == 1
        c.close()
