"""Operations from Python (issue 6): metrics, the slow-query log through logging, and
optimistic locking (expect_rows, ConflictError, the helpers), on the real server."""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

import pytest

import sqlite_rpc
from sqlite_rpc.optimistic import ConflictError, execute_expecting, retry_on_conflict, update_versioned

SLOW_SQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c WHERE ? IS NOT NULL"


def _value(metrics, name, **labels):
    for m in metrics:
        if m["name"] == name:
            for v in m["values"]:
                if all(v["labels"].get(k) == want for k, want in labels.items()):
                    return v["value"]
    return None


def test_metrics_json_and_prometheus(tmp_path):
    path = str(tmp_path / "m.db")
    conn = sqlite_rpc.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (a)")
    for i in range(4):
        conn.execute("INSERT INTO t VALUES (?)", (i,))
    real = os.path.realpath(path)
    m = sqlite_rpc.metrics()
    assert _value(m, "sqlite_rpc_statements_total", db=real, kind="insert", role="writer") == 4
    assert _value(m, "sqlite_rpc_sessions", db=real) == 1
    text = sqlite_rpc.metrics("prometheus")
    assert '# TYPE sqlite_rpc_statements_total counter' in text
    assert 'sqlite_rpc_statements_total{db="%s",kind="insert",role="writer"} 4' % real in text
    with pytest.raises(ValueError, match="json' or 'prometheus"):
        sqlite_rpc.metrics("xml")
    conn.close()


@pytest.mark.parametrize("shared", [False, True], ids=["private", "shared"])
def test_slow_queries_reach_the_sqlite_rpc_slow_query_logger(tmp_path, caplog, shared):
    # A private server's stderr is forwarded; a shared server sends its `log` notification
    # to the connection whose session ran the statement.
    caplog.set_level(logging.WARNING, logger="sqlite_rpc.slow_query")
    conn = sqlite_rpc.connect(str(tmp_path / "slow.db"), slow_query_ms=1, shared=shared)
    secret = "do-not-log-this-value"
    assert conn.execute(SLOW_SQL, (300000, secret)).fetchone() == (300000,)
    deadline = time.monotonic() + 10  # stderr is forwarded by a thread, a notification read with a later reply: wait
    while time.monotonic() < deadline and not [r for r in caplog.records if r.name == "sqlite_rpc.slow_query"]:
        time.sleep(0.02)
    recs = [r for r in caplog.records if r.name == "sqlite_rpc.slow_query"]
    assert recs, "no slow_query record reached logging"
    r = recs[0]
    assert r.levelno == logging.WARNING
    assert "WITH RECURSIVE c(x)" in r.getMessage()
    assert r.sqlite_rpc["params"] == 2
    assert r.sqlite_rpc["plan"], "the query plan is part of the record"
    assert secret not in r.getMessage() and secret not in repr(r.sqlite_rpc)
    conn.close()


@pytest.fixture(params=["sqlite_rpc", "sqlite3"])
def conn(request, tmp_path):
    """The same helpers on the server and on a plain stdlib connection (the fallback)."""
    mod = sqlite_rpc if request.param == "sqlite_rpc" else sqlite3
    c = mod.connect(str(tmp_path / "opt.db"), isolation_level=None, check_same_thread=False)
    c.execute("CREATE TABLE doc (id INTEGER PRIMARY KEY, title TEXT, version INTEGER NOT NULL)")
    c.execute("INSERT INTO doc VALUES (1, 'a', 1), (2, 'b', 1)")
    yield c
    c.close()


def test_execute_expecting_undoes_and_raises(conn):
    assert execute_expecting(conn, "UPDATE doc SET title = 'x' WHERE id = 1", rows=1).rowcount == 1
    with pytest.raises(ConflictError) as ei:
        execute_expecting(conn, "UPDATE doc SET title = 'everything'", rows=1)
    assert isinstance(ei.value, sqlite3.OperationalError)
    assert (ei.value.expected_rows, ei.value.changes) == (1, 2)
    assert conn.execute("SELECT title FROM doc ORDER BY id").fetchall() == [("x",), ("b",)]
    # In a transaction, only the guarded statement is undone.
    conn.execute("BEGIN")
    conn.execute("INSERT INTO doc VALUES (3, 'kept', 1)")
    with pytest.raises(ConflictError):
        execute_expecting(conn, "DELETE FROM doc WHERE id = 99", rows=1)
    assert conn.in_transaction
    conn.execute("COMMIT")
    assert conn.execute("SELECT id FROM doc ORDER BY id").fetchall() == [(1,), (2,), (3,)]


def test_update_versioned_detects_a_lost_update(conn):
    assert update_versioned(conn, "doc", {"id": 1}, 1, {"title": "first"}) == 2
    with pytest.raises(ConflictError):
        update_versioned(conn, "doc", {"id": 1}, 1, {"title": "stale writer"})
    assert conn.execute("SELECT title, version FROM doc WHERE id = 1").fetchone() == ("first", 2)
    with pytest.raises(ValueError, match="identifier"):
        update_versioned(conn, "doc; DROP TABLE doc", {"id": 1}, 2, {"title": "x"})


def test_retry_on_conflict_makes_concurrent_increments_exact(tmp_path):
    path = str(tmp_path / "counter.db")
    setup = sqlite_rpc.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER, version INTEGER NOT NULL)")
    setup.execute("INSERT INTO counter VALUES (1, 0, 0)")
    conflicts = []

    @retry_on_conflict(attempts=200, backoff=0.001)
    def bump(c):
        n, v = c.execute("SELECT n, version FROM counter WHERE id = 1").fetchone()
        try:
            update_versioned(c, "counter", {"id": 1}, v, {"n": n + 1})
        except ConflictError:
            conflicts.append(1)
            raise

    def worker():
        c = sqlite_rpc.connect(path, isolation_level=None)
        for _ in range(25):
            bump(c)
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Read-then-write without a transaction races; the version guard turns every lost
    # update into a retry, so the count is exact.
    assert setup.execute("SELECT n, version FROM counter").fetchone() == (100, 100)
    setup.close()


def test_retry_on_conflict_gives_up_after_attempts():
    calls = []

    @retry_on_conflict(attempts=3, backoff=0)
    def always():
        calls.append(1)
        raise ConflictError("conflict")

    with pytest.raises(ConflictError):
        always()
    assert len(calls) == 3


def test_expect_rows_on_cursor_and_seed_api(tmp_path):
    path = str(tmp_path / "seed.db")
    db = sqlite_rpc.Database(path)
    db.execute_update("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.execute_update("INSERT INTO t VALUES (1, 'a')")
    assert db.execute_update("UPDATE t SET v = 'b' WHERE id = ?", (1,), expect_rows=1) == 1
    with pytest.raises(ConflictError):
        db.execute_update("UPDATE t SET v = 'c' WHERE id = ?", (2,), expect_rows=1)
    conn = sqlite_rpc.connect(path)
    with pytest.raises(sqlite3.ProgrammingError, match="expect_rows"):
        conn.execute("SELECT * FROM t", expect_rows=1)
    conn.close()
    assert db.execute_query("SELECT v FROM t") == [{"v": "b"}]
    db.close()


# ---- backup, restore, check ------------------------------------------------------------


def test_backup_restore_and_check_from_python(tmp_path):
    path = str(tmp_path / "live.db")
    conn = sqlite_rpc.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (a TEXT)")
    conn.execute("INSERT INTO t VALUES ('v1')")
    dest = tmp_path / "live.backup"
    r = sqlite_rpc.backup(path, dest)
    assert r["integrity"] == "ok" and r["pages"] > 0
    with sqlite3.connect(str(dest)) as plain:  # the stdlib opens it as it is
        assert plain.execute("SELECT a FROM t").fetchall() == [("v1",)]
    with pytest.raises(sqlite3.OperationalError, match="exists"):
        sqlite_rpc.backup(conn, dest)
    assert sqlite_rpc.check(conn) == {"path": os.path.realpath(path), "mode": "quick", "ok": True, "problems": []}
    conn.execute("UPDATE t SET a = 'v2'")
    other = sqlite_rpc.connect(path, isolation_level=None)
    other.execute("BEGIN")
    other.execute("INSERT INTO t VALUES ('pending')")
    with pytest.raises(sqlite3.OperationalError, match="holds a transaction"):
        sqlite_rpc.restore(dest, path)
    assert sqlite_rpc.restore(dest, path, force=True)["aborted_transactions"] == 1
    with pytest.raises(sqlite3.OperationalError, match="rolled back"):
        other.execute("SELECT 1")
    assert not other.in_transaction
    assert conn.execute("SELECT a FROM t").fetchall() == [("v1",)]
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.OperationalError, match="not a SQLite database"):
        sqlite_rpc.restore(junk, path)
    assert conn.execute("SELECT a FROM t").fetchall() == [("v1",)]
    other.close()
    conn.close()


def test_backup_of_a_memory_connection(tmp_path):
    conn = sqlite_rpc.connect(":memory:")
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (7)")
    conn.commit()
    sqlite_rpc.backup(conn, tmp_path / "mem.backup")
    with sqlite3.connect(str(tmp_path / "mem.backup")) as plain:
        assert plain.execute("SELECT a FROM t").fetchall() == [(7,)]
    conn.close()


def test_audit_log_configured_from_python_through_server_args(tmp_path):
    # Server-wide settings reach the server through SQLITE_RPC_ARGS; a fresh process so the
    # shared server of this test run keeps its own flags.
    import json
    import subprocess
    import sys

    audit = tmp_path / "audit"
    db = tmp_path / "audited.db"
    code = (
        "import sqlite_rpc\n"
        "c = sqlite_rpc.connect(%r, isolation_level=None)\n"
        "c.execute('CREATE TABLE t (a)')\n"
        "c.execute('INSERT INTO t VALUES (1)')\n"
        "c.execute('UPDATE t SET a = 2')\n"
        "c.close()\n" % str(db)
    )
    env = dict(os.environ, SQLITE_RPC_ARGS="--audit-dir %s --audit-kinds ddl,update" % audit)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    recs = [json.loads(line) for line in (audit / "audited.db.audit.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["sql"], r["outcome"]) for r in recs] == [
        ("ddl", "CREATE TABLE t (a)", "ok"),
        ("update", "UPDATE t SET a = 2", "ok"),
    ]
    assert recs[1]["changes"] == 1
