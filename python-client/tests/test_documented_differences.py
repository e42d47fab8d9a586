"""Where sqlite_rpc cannot behave as sqlite3, it behaves as python-client/DIFFERENCES.md says.

Each test pins one entry of DIFFERENCES.md: what sqlite3 does (checked on the stdlib, so the
entry stays true of it) and what sqlite_rpc does instead. A test that starts failing means
the difference changed: update DIFFERENCES.md with it.
"""
from __future__ import annotations

import os
import re
import sqlite3
import threading
import urllib.parse

import pytest

import sqlite_rpc


def _both(tmp_path, name="db.sqlite"):
    return [(m, str(tmp_path / ("%s-%s" % (m.__name__, name)))) for m in (sqlite3, sqlite_rpc)]


def test_engine_is_sqlite_3_51_with_newer_functions():
    # "Engine version": jsonb() arrived in 3.45; the stdlib's 3.40 lacks it.
    with pytest.raises(sqlite3.OperationalError, match="no such function: jsonb"):
        sqlite3.connect(":memory:").execute("SELECT jsonb('[1]')")
    db = sqlite_rpc.connect(":memory:")
    assert db.execute("SELECT hex(jsonb('[1]'))").fetchone() == ("2B1331",)
    assert sqlite_rpc.sqlite_version != sqlite3.sqlite_version


def test_sum_of_floats_is_compensated_on_the_server():
    """DIFFERENCES.md 21: SQLite 3.43+ sums floats with Kahan-Babuska-Neumaier."""
    sql = "SELECT sum(x) FROM (SELECT 0.1 x UNION ALL SELECT 0.2 UNION ALL SELECT 0.3 UNION ALL SELECT 1e16 UNION ALL SELECT -1e16)"
    plain = sqlite3.connect(":memory:").execute(sql).fetchone()[0]
    served = sqlite_rpc.connect(":memory:").execute(sql).fetchone()[0]
    if sqlite3.sqlite_version_info < (3, 43, 0):
        assert plain == 0.0
    assert served == pytest.approx(0.6)


def test_quote_of_reals_needing_17_digits():
    # "Engine version": quote() (and so iterdump) spells such REALs differently; both round-trip.
    # The server's spelling is SQLite 3.52's and later (%!0.17g; 3.51 wrote 3.333333333333333148e-01).
    sql = "SELECT quote(1 / 3.0)"
    assert sqlite3.connect(":memory:").execute(sql).fetchone() == ("3.33333333333333314829e-01",)
    got = sqlite_rpc.connect(":memory:").execute(sql).fetchone()[0]
    assert got == "0.33333333333333332" and float(got) == 1 / 3


def test_databases_are_in_wal_mode(tmp_path):
    # "WAL": the server puts every database file in WAL mode (readers never block the writer).
    for m, path in _both(tmp_path):
        db = m.connect(path)
        db.execute("CREATE TABLE t(x)")
        db.commit()
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == ("delete" if m is sqlite3 else "wal")
        db.close()


def test_pragma_settings_are_shared_by_connections_to_the_same_file(tmp_path):
    # "PRAGMAs": connection-level settings apply to the file's one writer, shared by all.
    for m, path in _both(tmp_path):
        a, b = m.connect(path), m.connect(path)
        a.execute("PRAGMA foreign_keys = ON")
        assert b.execute("PRAGMA foreign_keys").fetchone() == ((0,) if m is sqlite3 else (1,))
        a.execute("PRAGMA foreign_keys = OFF")
        a.close()
        b.close()


def test_attach_is_shared_by_connections_to_the_same_file(tmp_path):
    # "ATTACH": runs on the shared writer too (another connection's reads outside a transaction
    # do not see it, as in sqlite3; its PRAGMAs and transactions, which run there, do).
    for m, path in _both(tmp_path):
        a, b = m.connect(path), m.connect(path)
        a.execute("ATTACH ':memory:' AS aux")
        names = [r[1] for r in b.execute("PRAGMA database_list")]
        assert ("aux" in names) is (m is sqlite_rpc)
        a.execute("DETACH aux")
        a.close()
        b.close()


def test_two_connections_cannot_share_a_temp_table_name(tmp_path):
    # "TEMP tables": one writer holds them all.
    for m, path in _both(tmp_path):
        a, b = m.connect(path), m.connect(path)
        a.execute("CREATE TEMP TABLE scratch(x)")
        if m is sqlite3:
            b.execute("CREATE TEMP TABLE scratch(x)")
        else:
            with pytest.raises(sqlite3.OperationalError, match="table scratch already exists"):
                b.execute("CREATE TEMP TABLE scratch(x)")
        a.close()
        b.close()


def test_temp_tables_are_seen_by_other_connections_transactions(tmp_path):
    # "TEMP tables": they live on the file's writer. The connection that made one reads it as in
    # sqlite3 (tests/test_same_as_sqlite3_schemas.py); another connection's transaction, which
    # runs on that writer too, sees it where sqlite3's does not.
    for m, path in _both(tmp_path):
        a, b = m.connect(path), m.connect(path)
        b.execute("CREATE TABLE t(y)")
        b.commit()
        a.execute("CREATE TEMP TABLE tt(x)")
        a.execute("INSERT INTO tt VALUES (1)")
        a.commit()
        assert a.execute("SELECT x FROM tt").fetchall() == [(1,)]
        with pytest.raises(sqlite3.OperationalError, match="no such table: tt"):
            b.execute("SELECT x FROM tt")  # b's read outside a transaction: as in sqlite3
        b.execute("INSERT INTO t VALUES (1)")  # b's transaction
        if m is sqlite3:
            with pytest.raises(sqlite3.OperationalError, match="no such table: tt"):
                b.execute("SELECT x FROM tt")
        else:
            assert b.execute("SELECT x FROM tt").fetchall() == [(1,)]
        b.rollback()
        a.close()
        b.close()


def test_connection_state_functions_outside_a_transaction(tmp_path):
    # "last_insert_rowid() and changes() in SQL": outside a transaction a SELECT runs on a
    # reader, whose counters are not the connection's; the cursor attributes are right.
    for m, path in _both(tmp_path):
        db = m.connect(path, isolation_level=None)
        db.execute("CREATE TABLE t(x)")
        cur = db.execute("INSERT INTO t VALUES (5)")
        assert (cur.lastrowid, cur.rowcount, db.total_changes) == (1, 1, 1)
        got = db.execute("SELECT last_insert_rowid(), changes()").fetchone()
        assert got == ((1, 1) if m is sqlite3 else (0, 0))
        db.close()


def test_shared_cache_memory_uri_is_private(tmp_path):
    # ":memory: with cache=shared": every in-memory database is private to its connection.
    for m in (sqlite3, sqlite_rpc):
        a = m.connect("file::memory:?cache=shared", uri=True)
        b = m.connect("file::memory:?cache=shared", uri=True)
        a.execute("CREATE TABLE z(x)")
        names = b.execute("SELECT name FROM sqlite_master").fetchall()
        assert names == ([("z",)] if m is sqlite3 else [])


def test_begin_takes_the_write_lock_at_once(tmp_path):
    # "BEGIN takes the write lock": the server's deferred BEGIN waits for (then fails on) a
    # writer that another connection holds; sqlite3's succeeds and the write after it fails.
    # A plain BEGIN in SQL rides with the next statement, which fails as sqlite3's write does.
    for m, path in _both(tmp_path):
        a = m.connect(path)
        a.execute("CREATE TABLE t(x)")
        a.commit()
        a.execute("INSERT INTO t VALUES (1)")  # a holds the write lock
        b = m.connect(path, timeout=0.1)
        b.execute("BEGIN")
        assert b.in_transaction
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            b.execute("INSERT INTO t VALUES (2)")
        assert b.in_transaction  # the deferred transaction stays open, on both
        if m is sqlite3:
            assert b.execute("SELECT count(*) FROM t").fetchone() == (0,)
        else:
            with pytest.raises(sqlite3.OperationalError, match="database is locked") as e:
                b.execute("SELECT count(*) FROM t")  # the difference: the BEGIN sent with it waits
            assert e.value.sqlite_errorname == "SQLITE_BUSY"
            assert b.in_transaction
        b.rollback()
        assert not b.in_transaction
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            b.execute("INSERT INTO t VALUES (2)")  # sqlite3's implicit BEGIN, then the write
        assert b.in_transaction  # an empty transaction left open, on both
        b.rollback()
        a.commit()
        b.execute("INSERT INTO t VALUES (2)")
        b.commit()
        assert a.execute("SELECT count(*) FROM t").fetchone() == (2,)
        a.close()
        b.close()


def test_open_cursor_does_not_see_later_writes_of_its_connection(tmp_path):
    # "Open cursors and later writes": the rest of the result is buffered first.
    db = sqlite_rpc.connect(str(tmp_path / "db.sqlite"))
    db.execute("CREATE TABLE t(i INTEGER PRIMARY KEY)")
    db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1, 5001)])
    cur = db.execute("SELECT i FROM t ORDER BY i")
    assert cur.fetchone() == (1,)
    db.execute("INSERT INTO t VALUES (100000)")
    rest = cur.fetchall()
    assert len(rest) == 4999 and rest[-1] == (5000,)


def test_invalid_utf8_text_arrives_with_replacement_characters():
    # "Invalid UTF-8 in TEXT": replaced by U+FFFD on the way; text_factory sees the replacement.
    db = sqlite_rpc.connect(":memory:")
    assert db.execute("SELECT CAST(x'ff61' AS TEXT)").fetchone() == ("\ufffda",)
    db.text_factory = bytes
    assert db.execute("SELECT CAST(x'ff61' AS TEXT)").fetchone() == (b"\xef\xbf\xbda",)


def test_file_names_that_are_not_utf8_are_refused(tmp_path):
    # "Invalid UTF-8": a file name that is not UTF-8 (bytes, a str with surrogate escapes, a
    # file: URI whose %-escapes spell such bytes) raises NotSupportedError naming it, and no
    # file is created (sqlite3 opens exactly that file).
    raw = os.fsencode(str(tmp_path)) + b"/db-\xe7w\xf0.sqlite"
    uri = "file:" + urllib.parse.quote(raw)
    with sqlite3.connect(raw) as cx:
        cx.execute("CREATE TABLE t(x)")
    assert os.path.exists(raw)
    os.unlink(raw)
    with sqlite3.connect(uri, uri=True):
        pass
    assert os.path.exists(raw)
    os.unlink(raw)
    for name, kw in [(raw, {}), (os.fsdecode(raw), {}), (uri, {"uri": True})]:
        with pytest.raises(sqlite3.NotSupportedError, match="not valid UTF-8"):
            sqlite_rpc.connect(name, **kw)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, args", [
    ("set_authorizer", (lambda *a: 0,)),
    ("set_progress_handler", (lambda: 0, 1)),
    ("set_trace_callback", (print,)),
    ("enable_load_extension", (True,)),
    ("load_extension", ("x",)),
    ("blobopen", ("t", "c", 1)),
    ("serialize", ()),
    ("deserialize", (b"",)),
    ("setlimit", (0, 1)),
    ("getlimit", (0,)),
    ("interrupt", ()),
])
def test_python_callbacks_and_local_handles_are_not_supported(name, args):
    # "Not supported": anything that runs Python inside SQLite or needs its in-process handle.
    db = sqlite_rpc.connect(":memory:")
    with pytest.raises(sqlite3.NotSupportedError, match="not supported by sqlite-rpc"):
        getattr(db, name)(*args)
    assert db.execute("SELECT 1").fetchone() == (1,)  # the connection is still usable


@pytest.mark.parametrize("register, sql, name", [
    (lambda db: db.create_function("twice", 1, lambda x: 2 * x), "SELECT twice(2)", "twice()"),
    (lambda db: db.create_aggregate("mysum", 1, object), "SELECT mysum(1)", "mysum()"),
    (lambda db: db.create_window_function("mywin", 1, object), "SELECT mywin(1) OVER ()", "mywin()"),
    (lambda db: db.create_collation("backwards", lambda a, b: 0), "SELECT 'a' < 'b' COLLATE backwards", "backwards"),
])
def test_user_defined_functions_register_but_fail_when_used(register, sql, name):
    # "User-defined functions": registering works (frameworks do it on connect); using one
    # raises NotSupportedError naming it, when the statement runs.
    db = sqlite_rpc.connect(":memory:")
    assert register(db) is None
    with pytest.raises(sqlite3.NotSupportedError, match=r"user-defined .*%s is not supported by sqlite-rpc" % re.escape(name)):
        db.execute(sql)
    assert db.execute("SELECT 1").fetchone() == (1,)


def test_backup_is_not_supported(tmp_path):
    db = sqlite_rpc.connect(":memory:")
    with pytest.raises(sqlite3.NotSupportedError):
        db.backup(sqlite3.connect(":memory:"))


def test_objects_are_not_instances_of_sqlite3_classes():
    # "Types": Connection, Cursor and Row are sqlite_rpc's classes with sqlite3's behaviour.
    db = sqlite_rpc.connect(":memory:")
    db.row_factory = sqlite3.Row
    row = db.execute("SELECT 1 AS a").fetchone()
    assert not isinstance(db, sqlite3.Connection) and not isinstance(db.cursor(), sqlite3.Cursor)
    assert not isinstance(row, sqlite3.Row)
    assert isinstance(row, sqlite_rpc.Row) and row["A"] == 1 and row.keys() == ["a"]


def test_connection_subclass_factory_gets_a_stdlib_connection(tmp_path):
    # "factory=": a sqlite3.Connection subclass needs the real sqlite3, so that is what you get.
    class Mine(sqlite3.Connection):
        pass

    db = sqlite_rpc.connect(str(tmp_path / "db.sqlite"), factory=Mine)
    assert type(db) is Mine
    db.close()


def test_executemany_outside_a_transaction_is_all_or_nothing(tmp_path):
    # "executemany outside a transaction": one unit on the server; sqlite3 keeps earlier rows.
    for m, path in _both(tmp_path):
        db = m.connect(path, isolation_level=None)
        db.execute("CREATE TABLE t(v UNIQUE)")
        with pytest.raises(sqlite3.IntegrityError):
            db.executemany("INSERT INTO t VALUES (?)", [("a",), ("b",), ("a",)])
        assert db.execute("SELECT count(*) FROM t").fetchone() == ((2,) if m is sqlite3 else (0,))
        # Sets are sent in chunks (the first of 256): a failure in the second keeps the first.
        with pytest.raises(sqlite3.IntegrityError):
            db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(300)] + [(0,)])
        assert db.execute("SELECT count(*) FROM t").fetchone() == ((302,) if m is sqlite3 else (256,))
        db.close()



def test_file_prefix_without_uri_is_a_plain_file_name(tmp_path, monkeypatch):
    # "file: names without uri=True".
    monkeypatch.chdir(tmp_path)
    db = sqlite_rpc.connect("file:plain.sqlite")
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()
    assert (tmp_path / "file:plain.sqlite").exists() and not (tmp_path / "plain.sqlite").exists()


def test_relative_attach_resolves_against_the_folder_at_connect(tmp_path, monkeypatch):
    # "ATTACH and VACUUM INTO are limited": a relative name resolves against the folder the
    # process had at connect() (sqlite3: the one it has at the statement).
    for m in (sqlite3, sqlite_rpc):
        home = tmp_path / m.__name__
        (home / "sub").mkdir(parents=True)
        monkeypatch.chdir(home)
        db = m.connect(str(home / "db.sqlite"))
        monkeypatch.chdir(home / "sub")
        db.execute("ATTACH 'other.db' AS o")
        db.execute("CREATE TABLE o.t(x)")
        db.commit()
        db.close()
        made = home / ("sub/other.db" if m is sqlite3 else "other.db")
        assert made.exists()


def test_attach_outside_the_database_folder_is_refused(tmp_path):
    # "ATTACH and VACUUM INTO are limited": checked before SQLite opens (and creates) the file.
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    for m in (sqlite3, sqlite_rpc):
        db = m.connect(str(home / ("%s.db" % m.__name__)))
        db.execute("ATTACH ? AS sib", (str(home / "sibling.db"),))
        target = str(elsewhere / ("%s-other.db" % m.__name__))
        if m is sqlite3:
            db.execute("ATTACH ? AS other", (target,))
            assert os.path.exists(target)
        else:
            with pytest.raises(sqlite3.DatabaseError, match="ATTACH refused"):
                db.execute("ATTACH ? AS other", (target,))
            assert not os.path.exists(target)
        db.close()
