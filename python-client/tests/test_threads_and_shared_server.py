"""Many threads, one server: every connection of the process shares one server process."""
from __future__ import annotations

import sqlite3
import threading

import pytest

import sqlite_rpc
from sqlite_rpc import process


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
