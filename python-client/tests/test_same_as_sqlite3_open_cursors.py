"""Differential: half-read cursors (issue 11). A cursor whose result is larger than one page
keeps a server cursor open; such cursors, kept alive, dropped, broken out of or re-executed,
must never make reads fail, on this connection or on any other (the stdlib has no limit).

Each script runs through sqlite3 and through sqlite_rpc and the records are compared. The
files are in WAL mode on both sides (sqlite_rpc always uses WAL): with the stdlib's default
rollback journal a reader's open statement would block the other connection's COMMIT."""
from __future__ import annotations

import gc
import sqlite3

import pytest

import sqlite_rpc
from sqlite_rpc import process

from _harness import Corpus, assert_same

C = Corpus()
N = 5000  # more than one 4096-row page: each SELECT of the whole table leaves a server cursor
BIG = "SELECT i, s FROM t ORDER BY i"


def _setup(r):
    db = r.connect()
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(i INTEGER PRIMARY KEY, s TEXT)")
    db.execute("CREATE TABLE u(k INTEGER PRIMARY KEY, v TEXT)")
    db.call("insert %d rows" % N, lambda c: c.executemany("INSERT INTO t VALUES (?, ?)", ((i, "row %d" % i) for i in range(1, N + 1))))
    db.commit()
    return db


def _other_connection_works(r, other, i):
    """Another connection reads (a result larger than a page, and a small one) and writes."""
    r.attempt("other: big read %d" % i, lambda: [len(rows), rows[0], rows[-1]] if (rows := other.raw.execute(BIG).fetchall()) else rows)
    r.attempt("other: small read %d" % i, lambda: other.raw.execute("SELECT count(*), max(i) FROM t").fetchone())
    r.attempt("other: write %d" % i, lambda: other.raw.execute("INSERT INTO u(v) VALUES (?)", ("w%d" % i,)).rowcount)
    r.attempt("other: commit %d" % i, other.raw.commit)


@C.script
def hundred_half_read_cursors_kept_alive_while_another_connection_works(r):
    a = _setup(r)
    b = r.connect()
    kept = []
    for i in range(100):
        def half_read(i=i):
            cur = a.raw.execute(BIG if i % 2 else "SELECT i, s FROM t ORDER BY i DESC")
            kept.append(cur)
            return cur.fetchone()
        r.attempt("a: execute + fetchone %d" % i, half_read)
        if i % 10 == 9:
            _other_connection_works(r, b, i)
    # The other connection changes the table the open cursors read: they keep their snapshot.
    r.attempt("other: update", lambda: b.raw.execute("UPDATE t SET s = 'changed'").rowcount)
    b.commit()
    r.attempt("other: read after update", lambda: b.raw.execute("SELECT count(*) FROM t WHERE s = 'changed'").fetchone())
    _other_connection_works(r, b, 100)

    def rest(cur):
        rows = cur.fetchall()
        return [len(rows), rows[:2], rows[-1:], sum(1 for x in rows if x[1] == "changed")]

    for i, cur in enumerate(kept):
        r.attempt("a: rest of cursor %d" % i, lambda cur=cur: rest(cur))
    kept.clear()
    # Every statement of `a` is finished now: its next read sees the update (sqlite3 too).
    r.attempt("a: read after its cursors ended", lambda: a.raw.execute("SELECT count(*) FROM t WHERE s = 'changed'").fetchone())


@C.script
def hundred_connection_execute_fetchone_cursors_discarded(r):
    a = _setup(r)
    b = r.connect()
    for i in range(100):
        r.attempt("a: conn.execute(big).fetchone() %d" % i, lambda: a.raw.execute(BIG).fetchone())
        if i % 20 == 19:
            _other_connection_works(r, b, i)
            r.attempt("a: whole big read %d" % i, lambda: len(a.raw.execute(BIG).fetchall()))


@C.script
def for_row_in_cursor_break_in_a_loop(r):
    a = _setup(r)
    b = r.connect()
    for i in range(60):
        def first_row():
            cur = a.raw.execute(BIG)
            for row in cur:
                return row
        r.attempt("a: for row in cur: break %d" % i, first_row)
    for i in range(60):
        def loop_variable(i=i):
            got = None
            for row in a.raw.execute("SELECT i, s FROM t WHERE i > ? ORDER BY i", (i,)):
                got = row
                break
            return got
        r.attempt("a: for row in conn.execute(...): break %d" % i, loop_variable)
    _other_connection_works(r, b, 0)


@C.script
def reexecuting_a_half_read_cursor(r):
    a = _setup(r)
    b = r.connect()
    cur = a.raw.cursor()
    for i in range(100):
        def again(i=i):
            cur.execute("SELECT i, s FROM t WHERE i > ? ORDER BY i", (i,))
            return cur.fetchone()
        r.attempt("a: re-execute + fetchone %d" % i, again)
    r.attempt("a: re-executed with executemany", lambda: cur.executemany("INSERT INTO u(v) VALUES (?)", [("x",), ("y",)]).rowcount)
    a.commit()
    # Twenty cursors, each re-executed many times while the others stay half-read.
    curs = [a.raw.cursor() for _ in range(20)]
    for i in range(15):
        for j, c in enumerate(curs):
            r.attempt("a: cursor %d re-executed %d" % (j, i), lambda c=c, i=i: c.execute(BIG).fetchmany(2 + i % 3))
    _other_connection_works(r, b, 0)
    r.attempt("a: rest of the re-executed cursors", lambda: [len(c.fetchall()) for c in curs])


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)


# ---- the server-side cursor is released at once ---------------------------------------------

def _server_cursors() -> int:
    return process.get_server().call("stats", {})["cursors"]


@pytest.fixture
def big_db(tmp_path):
    path = str(tmp_path / "big.sqlite")
    db = sqlite_rpc.connect(path)
    db.execute("CREATE TABLE t(i INTEGER PRIMARY KEY, s TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", ((i, "row %d" % i) for i in range(1, N + 1)))
    db.commit()
    yield db
    db.close()


def test_dropped_broken_out_of_and_reexecuted_cursors_release_their_server_cursor(big_db):
    db = big_db
    base = _server_cursors()
    # The connection's execute shortcut, the cursor dropped at once (CPython frees it).
    assert db.execute(BIG).fetchone() == (1, "row 1")
    assert _server_cursors() == base
    # for row in cur: break, then the cursor dropped.
    cur = db.execute(BIG)
    for _row in cur:
        break
    assert _server_cursors() == base + 1
    del cur
    assert _server_cursors() == base
    # Re-executed: the previous result's server cursor is released.
    cur = db.cursor()
    cur.execute(BIG).fetchone()
    assert _server_cursors() == base + 1
    cur.execute(BIG).fetchone()
    assert _server_cursors() == base + 1
    cur.execute("SELECT 1").fetchone()
    assert _server_cursors() == base
    # Closed.
    cur.execute(BIG).fetchone()
    cur.close()
    assert _server_cursors() == base
    # Collected by the cycle collector (a cursor kept in a reference cycle).
    cur = db.execute(BIG)
    cur.fetchone()
    cur.me = cur
    del cur
    gc.collect()
    assert _server_cursors() == base


@pytest.mark.private_server  # it stops the server twice (a shared server numbers cursors across connections)
@pytest.mark.parametrize("release", ["close", "re-execute", "drop"])
def test_a_cursor_of_a_restarted_server_is_not_released_on_the_new_one(big_db, tmp_path, release):
    # Cursor ids are per server, counted from 1: after a restart, releasing a cursor of the
    # old server must not close whichever cursor the new server gave the same id.
    db = big_db
    process.get_server().close()
    assert db.execute("SELECT 1").fetchone() == (1,)  # db moves to a fresh server
    old = db.execute(BIG)
    old.fetchone()
    process.get_server().close()
    assert db.execute("SELECT 1").fetchone() == (1,)  # and again: its old cursor's server is gone
    other = sqlite_rpc.connect(str(tmp_path / "big.sqlite"))
    try:
        cur = other.execute(BIG)
        cur.fetchone()
        assert cur._cursor_id == old._cursor_id  # the same id, on another server
        if release == "close":
            old.close()
        elif release == "re-execute":
            assert old.execute("SELECT 2").fetchone() == (2,)
        else:
            del old
            gc.collect()
        rest = cur.fetchall()
        assert len(rest) == N - 1 and rest[-1] == (N, "row %d" % N)
    finally:
        other.close()


def test_documented_difference_a_hoard_of_large_half_read_results(tmp_path):
    """DIFFERENCES.md 18: past 64 open results per reader thread, each with more than 2 MiB
    unread, the connection holding the most loses its least recently used one (DataError on
    its next fetch); the results under that, and every other connection, are unaffected."""
    from _reliability import process_server_args

    path = str(tmp_path / "wide.sqlite")
    with process_server_args("--pool-size", "1", "--page-bytes", "1024"):
        db = sqlite_rpc.connect(path)
        other = sqlite_rpc.connect(path)
        try:
            db.execute("CREATE TABLE w(i INTEGER PRIMARY KEY, b BLOB)")
            db.executemany("INSERT INTO w VALUES (?, zeroblob(3000))", ((i,) for i in range(1, 1001)))
            db.commit()
            kept = []
            for _ in range(70):  # each result: one row read, ~3 MB left
                cur = db.execute("SELECT i, b FROM w ORDER BY i")
                assert cur.fetchone()[0] == 1
                kept.append(cur)
            assert len(other.execute("SELECT i, b FROM w").fetchall()) == 1000
            lost = 0
            for n, cur in enumerate(kept):
                try:
                    row = cur.fetchone()
                except sqlite3.DataError as e:
                    assert "closed to free a reader connection" in str(e)
                    assert n < 10  # the least recently used ones
                    lost += 1
                    assert cur.fetchall() == []
                else:
                    assert row[0] == 2
                    if n >= 68:  # (every page is one row here: two are read to the end)
                        rows = cur.fetchall()
                        assert len(rows) == 998 and rows[-1][0] == 1000
            # 70 of db's, and for a moment the other connection's own: 71 results over 64.
            assert lost == 70 + 1 - 64
        finally:
            kept = []
            db.close()
            other.close()
