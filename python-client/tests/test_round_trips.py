"""What connect(), a first statement and close() put on the pipe (issue 12, round trips):
the open leaves with the first statement in one write, a connection closed unused sends
nothing, and a close nobody waits for is a notification (no reply to write or read)."""
from __future__ import annotations

import os
import sqlite3

import msgpack
import pytest

import sqlite_rpc
from sqlite_rpc import process


@pytest.fixture
def writes(monkeypatch):
    """The frames of every write to the server, one list per write (once it has started)."""
    process.get_server()
    seen = []
    real = process.ServerProcess._write

    def spy(self, data):
        frames, rest = [], b"".join(c[2] for c in self._corked) + bytes(data)  # what _write writes
        while rest:
            head, _, rest = rest.partition(b"\r\n\r\n")
            n = int(head.split(b":")[1])
            frames.append(msgpack.unpackb(rest[:n], raw=False))
            rest = rest[n:]
        seen.append(frames)
        return real(self, data)

    monkeypatch.setattr(process.ServerProcess, "_write", spy)
    return seen


def methods(write):
    return [(f.get("method"), "id" in f) for f in write]


def test_the_open_leaves_with_the_first_statement(tmp_path, writes):
    db = sqlite_rpc.connect(str(tmp_path / "a.db"))
    assert writes == []
    assert db.execute("SELECT 1").fetchone() == (1,)
    assert [methods(w) for w in writes] == [[("open", True), ("execute", True)]]
    db.close()


def test_a_connection_closed_unused_sends_nothing(tmp_path, writes):
    for keep_open in (False, True):
        db = sqlite_rpc.connect(str(tmp_path / "b.db"), keep_open=keep_open)
        db.close()
    assert writes == []
    assert os.path.exists(tmp_path / "b.db")  # connect() made the file, as sqlite3's does


def test_a_close_nobody_waits_for_is_a_notification(tmp_path, writes):
    path = str(tmp_path / "c.db")
    w = sqlite_rpc.connect(path)
    w.execute("CREATE TABLE t(x)")
    w.commit()
    r = sqlite_rpc.connect(path)
    assert r.execute("SELECT count(*) FROM t").fetchone() == (0,)
    del writes[:]
    r.close()  # not the last connection to the file
    assert [methods(x) for x in writes] == [[("close", False)]]
    del writes[:]
    w.close()  # the last, after writes: waits for the fold
    assert [methods(x) for x in writes] == [[("close", True)]]
    check = sqlite3.connect(path)
    assert check.execute("SELECT count(*) FROM t").fetchone() == (0,)
    check.close()


def test_an_open_that_fails_is_reported_at_the_first_statement(tmp_path):
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not a database file, and it is long enough to have a header" * 4)
    db = sqlite_rpc.connect(str(bad))
    with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
        db.execute("SELECT 1")
    db.close()


def _bulk_with_a_duplicate(mod, path, n, bad, **kw):
    """executemany of n rows where row `bad` repeats a key: what each side leaves behind."""
    db = mod.connect(path, **kw)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, pad TEXT)")
    db.commit()
    rows = [(i if i != bad else 7, "name %d" % i, "x" * 60) for i in range(n)]
    cur = db.cursor()
    try:
        cur.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        outcome = "ok"
    except sqlite3.IntegrityError as e:
        outcome = str(e)
    seen = [outcome, cur.rowcount, db.in_transaction, db.total_changes,
            db.execute("SELECT count(*), max(id) FROM t").fetchone()]
    db.rollback()
    seen.append(db.execute("SELECT count(*) FROM t").fetchone())
    db.close()
    return seen


@pytest.mark.parametrize("bad", [300, 20_000, 39_999])
def test_executemany_sent_ahead_stops_at_the_failing_row_as_sqlite3(tmp_path, writes, bad):
    # 40,000 rows go in parts of about 512 KiB, each sent before the previous one's reply is
    # read: a part behind the failing one must not run (the server skips it).
    std = _bulk_with_a_duplicate(sqlite3, str(tmp_path / "std.db"), 40_000, bad)
    del writes[:]
    ours = _bulk_with_a_duplicate(sqlite_rpc, str(tmp_path / "rpc.db"), 40_000, bad)
    assert ours == std
    parts = [f for w in writes for f in w if f.get("method") == "executemany"]
    # at least the first part, the failing one and one sent ahead of its reply (skipped)
    assert len(parts) >= 3 and all("batch" in f["params"] for f in parts[1:])


def test_a_batch_part_behind_a_failed_one_is_skipped(tmp_path):
    db = sqlite_rpc.connect(str(tmp_path / "s.db"), isolation_level=None)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    srv = process.get_server()
    sql = "INSERT INTO t VALUES (?)"
    with pytest.raises(sqlite3.IntegrityError):
        srv.call("executemany", {"session": db._session, "sql": sql, "seq_of_params": [[1], [1]], "batch": 41})
    with pytest.raises(sqlite3.OperationalError, match="earlier part") as e:
        srv.call("executemany", {"session": db._session, "sql": sql, "seq_of_params": [[2]], "batch": 41})
    assert e.value.rpc_kind == "Skipped"
    srv.call("executemany", {"session": db._session, "sql": sql, "seq_of_params": [[3]], "batch": 42})
    assert db.execute("SELECT id FROM t ORDER BY id").fetchall() == [(3,)]
    db.close()


def test_a_connection_dropped_without_close_sends_a_notification_or_nothing(tmp_path, writes):
    # CrewAI's flow and checkpoint code never closes its connections: they are dropped. One
    # dropped unused sends nothing; one dropped after use sends its close as a notification.
    import gc

    path = str(tmp_path / "d.db")
    db = sqlite_rpc.connect(path, keep_open=True)
    del db
    gc.collect()
    assert writes == []
    db = sqlite_rpc.connect(path, keep_open=True)
    db.execute("SELECT 1").fetchone()
    del writes[:]
    del db
    gc.collect()
    assert [methods(w) for w in writes] == [[("close", False)]]
