"""Many threads, one server: every connection of the process shares one server process."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import threading

import pytest

import sqlite_rpc
from sqlite_rpc import process

from conftest import RUNTIME_ROOT, subprocess_env


def test_sixteen_threads_with_their_own_connections(tmp_path):
    path = str(tmp_path / "threads.sqlite")
    with sqlite_rpc.connect(path) as db:
        db.execute("CREATE TABLE t(thread INTEGER, n INTEGER, PRIMARY KEY (thread, n))")
    errors, seen = [], {}
    per_thread = 25

    def work(k: int) -> None:
        try:
            db = sqlite_rpc.connect(path, timeout=30)
            for n in range(per_thread):
                with db:
                    db.execute("INSERT INTO t VALUES (?, ?)", (k, n))
                # read-your-writes after commit, from this thread's own connection
                assert db.execute("SELECT count(*) FROM t WHERE thread = ?", (k,)).fetchone() == (n + 1,)
            seen[k] = db.execute("SELECT n FROM t WHERE thread = ? ORDER BY n", (k,)).fetchall()
            db.close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(seen[k] == [(n,) for n in range(per_thread)] for k in range(16))
    with sqlite_rpc.connect(path) as db:
        assert db.execute("SELECT count(*), count(DISTINCT thread) FROM t").fetchone() == (16 * per_thread, 16)


def test_one_connection_shared_by_threads(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    db = sqlite_rpc.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("CREATE TABLE t(k INTEGER, v TEXT)")
    errors = []

    def work(k: int) -> None:
        try:
            for i in range(20):
                db.execute("INSERT INTO t VALUES (?, ?)", (k, "v%d" % i))
                cur = db.execute("SELECT count(*) FROM t WHERE k = ?", (k,))
                assert cur.fetchone() == (i + 1,)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.execute("SELECT count(*) FROM t").fetchone() == (160,)
    db.close()


def test_shared_cursor_fetches_every_row_once(tmp_path):
    db = sqlite_rpc.connect(str(tmp_path / "c.sqlite"), check_same_thread=False)
    db.execute("CREATE TABLE t(i INTEGER)")
    db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10000)])
    db.commit()
    cur = db.execute("SELECT i FROM t")
    got, lock = [], threading.Lock()

    def drain() -> None:
        while True:
            row = cur.fetchone()
            if row is None:
                return
            with lock:
                got.append(row[0])

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(10000))


def test_check_same_thread_refuses_other_threads(tmp_path):
    db = sqlite_rpc.connect(str(tmp_path / "c.sqlite"))
    box = []
    t = threading.Thread(target=lambda: box.append(pytest.raises(sqlite3.ProgrammingError, db.execute, "SELECT 1")))
    t.start()
    t.join()
    assert "same thread" in str(box[0].value)
    assert db.execute("SELECT 1").fetchone() == (1,)


def test_all_connections_and_threads_use_one_server(tmp_path):
    srv = process.get_server()
    conns = [sqlite_rpc.connect(str(tmp_path / ("db%d.sqlite" % i))) for i in range(5)]
    conns.append(sqlite_rpc.connect(":memory:"))
    from_threads = []

    def connect_in_thread() -> None:
        c = sqlite_rpc.connect(str(tmp_path / "db0.sqlite"))
        c.execute("SELECT 1")
        from_threads.append(c._srv)
        c.close()

    threads = [threading.Thread(target=connect_in_thread) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert {id(c._srv) for c in conns} | {id(s) for s in from_threads} == {id(srv)}
    assert process.get_server().pid == srv.pid
    assert sqlite_rpc.server_info()["server"]["name"] == "sqlite-rpc"


def test_requests_from_threads_are_multiplexed_on_one_pipe(tmp_path):
    # Replies come back out of order across sessions; each caller still gets its own.
    path = str(tmp_path / "m.sqlite")
    with sqlite_rpc.connect(path) as db:
        db.execute("CREATE TABLE t(k INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(k,) for k in range(50)])
    errors = []

    def ask(k: int) -> None:
        try:
            c = sqlite_rpc.connect(path)
            for _ in range(50):
                assert c.execute("SELECT k, ? FROM t WHERE k = ?", (k * 10, k)).fetchone() == (k, k * 10)
            c.close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


_COLLECTED_WHILE_WRITING = r"""
import gc, os, sys
import sqlite_rpc
from sqlite_rpc import dbapi

con = sqlite_rpc.connect(sys.argv[1])
other = sqlite_rpc.connect(sys.argv[1])
_write = os.write


def write(fd, data):
    # The cycle collector runs wherever an allocation reaches its threshold: here, inside
    # ServerProcess._write, which holds the server's write lock.
    gc.collect()
    return _write(fd, data)


class Holder:
    pass


os.write = write
for i in range(40):
    c = sqlite_rpc.connect(":memory:" if i % 2 else sys.argv[1])
    c.execute("SELECT 1")
    cur = other.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) SELECT i FROM n")
    cur.fetchone()  # a server cursor left open: its __del__ has something to send too
    h = Holder()
    h.c, h.cur, h.me = c, cur, h  # a reference cycle: only the collector frees it
    del c, cur, h
    con.execute("SELECT ?", ("x" * 100,)).fetchall()
os.write = _write
con.execute("SELECT 1")
print("deferred:", len(dbapi._deferred), "sessions:", sqlite_rpc.stats()["sessions"])
"""


def test_connections_and_cursors_collected_while_a_request_is_written(tmp_path):
    # Regression (CPython suite, test_statement_finalization_on_close_db hung): the cycle
    # collector ran Connection.__del__ while this thread was inside ServerProcess._write,
    # holding its non-reentrant write lock, and __del__'s close waited for that lock forever.
    # Now __del__ never waits for it: what it cannot send at once goes before the next request.
    try:
        # A shared server of its own (a runtime folder of its own): it counts the server's sessions.
        runtime = tempfile.mkdtemp(dir=RUNTIME_ROOT)
        out = subprocess.run([sys.executable, "-c", _COLLECTED_WHILE_WRITING, str(tmp_path / "gc.sqlite")],
                             env=subprocess_env(XDG_RUNTIME_DIR=runtime), capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: a connection or cursor collected while a request was being written hung the process")
    assert out.returncode == 0, out.stderr
    # Every collected connection's session was closed on the server (con and other remain).
    assert out.stdout.split() == ["deferred:", "0", "sessions:", "2"], out.stdout
