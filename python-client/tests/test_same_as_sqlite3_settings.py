"""Settings that used to be silently ignored (issue 11, item 6), differential.

Each one either works as in sqlite3 or fails with an error that names it:

1. Per-connection PRAGMAs (case_sensitive_like, reverse_unordered_selects, query_only,
   recursive_triggers, full_column_names, ...) apply to every connection a session's
   statements run on: the writer, the main-thread reader, the reader threads; and only to
   that session, as in sqlite3.
2. page_size and auto_vacuum set on a new database before its first table take effect: a new
   file stays in rollback mode until it has content.
3. A read-only session (mode=ro; immutable=1) never writes: executescript and executemany
   ran on the shared writer.
4. PRAGMA journal_mode = X answers X as sqlite3 does, and the file is given back in that mode
   when the server lets go of it (WAL while it serves it: DIFFERENCES.md 3).

What cannot work fails with an error naming the setting (page_size on a database already in
WAL, locking_mode = EXCLUSIVE): pinned at the end.
"""
from __future__ import annotations

import os
import sqlite3
import time

import pytest

import sqlite_rpc
from _harness import Corpus, assert_same

C = Corpus()

RELEASE_WAIT_S = 30.0


def _rows(r, name="db"):
    """A file with a table t of mixed-case text, written by the stdlib (as another tool would)."""
    path = r.path(name)
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT); INSERT INTO t(s) VALUES ('ABC'), ('abc'), ('Abd'), ('xyz');")
    db.close()
    return path


def on_disk(r, path):
    """journal_mode, page_size, auto_vacuum of the file as a new stdlib connection sees it, once
    nothing has it open: the server gives the journal mode back when it lets go of the file
    (--db-idle-close-ms), and SQLite removes the -wal and -shm then. (Only their absence is
    awaited: a connection opened to look would keep the server from switching the mode.)"""
    deadline = time.monotonic() + RELEASE_WAIT_S
    while any(os.path.exists(path + s) for s in ("-wal", "-shm")) and time.monotonic() < deadline:
        time.sleep(0.02)
    c = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    got = [c.execute("PRAGMA %s" % p).fetchone()[0] for p in ("journal_mode", "page_size", "auto_vacuum")]
    c.close()
    return got


# ---- 1. per-connection settings on every connection -------------------------------------------


@C.script
def case_sensitive_like_applies_to_reads(r):
    _rows(r)
    a = r.connect()
    b = r.connect()
    q = "SELECT s FROM t WHERE s LIKE 'ab%' ORDER BY id"
    a.execute(q)
    a.execute("PRAGMA case_sensitive_like = ON")
    for _ in range(6):  # the main-thread reader and the reader threads both
        a.execute(q)
        b.execute(q)  # another connection keeps its own setting
    a.execute("SELECT count(*) FROM t WHERE s LIKE 'ABC'")
    a.execute("UPDATE t SET s = s || '!' WHERE s LIKE 'ab%'")  # the writer, in a transaction
    a.execute(q)
    a.commit()
    b.execute("SELECT s FROM t ORDER BY id")
    a.execute("PRAGMA case_sensitive_like = off")
    for _ in range(3):
        a.execute(q)


@C.script
def case_sensitive_like_in_autocommit_writes(r):
    _rows(r)
    a = r.connect(isolation_level=None)
    b = r.connect(isolation_level=None)
    a.execute("PRAGMA case_sensitive_like = 1")
    a.execute("UPDATE t SET s = s || '?' WHERE s LIKE 'ab%'")  # group-committed units, on the writer
    a.execute("DELETE FROM t WHERE s LIKE 'X%'")
    b.execute("DELETE FROM t WHERE s LIKE 'X%'")
    b.executemany("UPDATE t SET s = s || '.' WHERE s LIKE ?", [("a%",)])
    a.executemany("UPDATE t SET s = s || ',' WHERE s LIKE ?", [("a%",)])
    a.execute("SELECT s FROM t ORDER BY id")


@C.script
def case_sensitive_like_from_executescript(r):
    _rows(r)
    a = r.connect()
    a.executescript("PRAGMA case_sensitive_like = 1; CREATE TABLE u(x);")
    for _ in range(4):
        a.execute("SELECT s FROM t WHERE s LIKE 'abc'")


@C.script
def reverse_unordered_selects_applies_to_reads(r):
    _rows(r)
    a = r.connect()
    b = r.connect()
    a.execute("PRAGMA reverse_unordered_selects = 1")
    for _ in range(4):
        a.execute("SELECT s FROM t")
        b.execute("SELECT s FROM t")
    a.execute("PRAGMA reverse_unordered_selects")
    b.execute("PRAGMA reverse_unordered_selects")


@C.script
def column_name_settings_apply_to_reads(r):
    _rows(r)
    a = r.connect()
    b = r.connect()
    a.execute("PRAGMA full_column_names = 1")
    for _ in range(3):
        a.execute("SELECT s FROM t WHERE id = 1")
        b.execute("SELECT s FROM t WHERE id = 1")
    a.execute("PRAGMA short_column_names = 0")
    a.execute("SELECT t.s FROM t WHERE id = 1")
    a.execute("PRAGMA full_column_names = 0")
    a.execute("SELECT t.s FROM t WHERE id = 1")


@C.script
def query_only_is_per_connection(r):
    _rows(r)
    a = r.connect()
    b = r.connect()
    a.execute("PRAGMA query_only = yes")
    a.execute("INSERT INTO t(s) VALUES ('a')")
    a.rollback()
    a.executescript("INSERT INTO t(s) VALUES ('script')")
    b.execute("INSERT INTO t(s) VALUES ('b')")  # the other connection still writes
    b.commit()
    a.execute("PRAGMA query_only")
    a.execute("SELECT count(*) FROM t")
    a.execute("PRAGMA query_only = 0")
    a.execute("INSERT INTO t(s) VALUES ('a again')")
    a.commit()
    b.execute("SELECT s FROM t ORDER BY id")


@C.script
def recursive_triggers_are_per_connection(r):
    path = r.path()
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE n(x); CREATE TABLE log(x);"
        "CREATE TRIGGER again AFTER INSERT ON n WHEN new.x < 5 BEGIN INSERT INTO n VALUES (new.x + 1); END;"
    )
    db.close()
    a = r.connect()
    b = r.connect()
    a.execute("PRAGMA recursive_triggers = ON")
    b.execute("INSERT INTO n VALUES (1)")  # not recursive: b never turned it on
    b.commit()
    a.execute("INSERT INTO n VALUES (1)")
    a.commit()
    a.execute("SELECT x FROM n ORDER BY rowid")
    a.execute("PRAGMA recursive_triggers")
    b.execute("PRAGMA recursive_triggers")


@C.script
def settings_of_a_read_only_connection(r):
    path = _rows(r)
    ro = r.connect("file:%s?mode=ro" % path, uri=True)
    other = r.connect(path)
    ro.execute("PRAGMA case_sensitive_like = true")
    for _ in range(4):
        ro.execute("SELECT s FROM t WHERE s LIKE 'abc'")
        other.execute("SELECT s FROM t WHERE s LIKE 'abc'")
    ro.execute("PRAGMA query_only")


# ---- 2. page_size and auto_vacuum before the first table --------------------------------------


@C.script
def page_size_before_the_first_table(r):
    a = r.connect()
    a.execute("PRAGMA page_size = 8192")
    a.execute("PRAGMA page_size")
    a.execute("CREATE TABLE t(x)")
    a.execute("INSERT INTO t VALUES (1)")
    a.commit()
    a.execute("PRAGMA page_size")
    a.execute("PRAGMA page_size = 1024")  # ignored once the file has content, as in sqlite3
    a.execute("PRAGMA page_size")
    a.close()
    r.note("on disk", on_disk(r, r.path()))


@C.script
def auto_vacuum_before_the_first_table(r):
    a = r.connect()
    a.execute("PRAGMA auto_vacuum = FULL")
    a.execute("PRAGMA auto_vacuum")
    a.execute("CREATE TABLE t(x)")
    a.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    a.commit()
    a.execute("PRAGMA auto_vacuum")
    a.close()
    r.note("on disk", on_disk(r, r.path()))


@C.script
def page_size_and_auto_vacuum_in_a_script(r):
    a = r.connect()
    a.executescript("PRAGMA page_size = 16384; PRAGMA auto_vacuum = INCREMENTAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
    a.execute("PRAGMA page_size")
    a.execute("PRAGMA auto_vacuum")
    a.execute("SELECT x FROM t")
    a.close()
    r.note("on disk", on_disk(r, r.path()))


@C.script
def page_size_with_another_connection_reading(r):
    a = r.connect()
    b = r.connect()
    b.execute("SELECT count(*) FROM sqlite_master")
    a.execute("PRAGMA page_size = 2048")
    b.execute("SELECT count(*) FROM sqlite_master")
    a.execute("CREATE TABLE t(x)")
    b.execute("SELECT count(*) FROM t")
    a.execute("INSERT INTO t VALUES (1)")
    a.commit()
    b.execute("SELECT x FROM t")
    b.execute("PRAGMA page_size")
    a.close()
    b.close()
    r.note("on disk", on_disk(r, r.path()))


# ---- 3. read-only connections never write ------------------------------------------------------


@C.script
def read_only_connection_refuses_every_write(r):
    path = _rows(r)
    ro = r.connect("file:%s?mode=ro" % path, uri=True)
    ro.executescript("INSERT INTO t(s) VALUES ('script')")
    ro.executemany("INSERT INTO t(s) VALUES (?)", [("many",)])
    ro.get("in_transaction")
    ro.rollback()
    ro.executescript("PRAGMA user_version = 7")
    ro.executescript("SELECT 1; CREATE TABLE u(x);")
    ro.execute("SELECT count(*), (SELECT user_version FROM pragma_user_version) FROM t")
    ro.close()
    r.note("rows", sqlite3.connect(path).execute("SELECT s FROM t ORDER BY id").fetchall())


@C.script
def immutable_uri_refuses_writes(r):
    path = _rows(r)
    im = r.connect("file:%s?immutable=1" % path, uri=True)
    im.execute("SELECT s FROM t ORDER BY id")
    im.execute("INSERT INTO t(s) VALUES ('x')")
    im.get("in_transaction")
    im.rollback()
    im.executescript("DELETE FROM t")
    im.executemany("INSERT INTO t(s) VALUES (?)", [("y",)])
    im.rollback()
    im.execute("CREATE TABLE u(x)")
    im.execute("SELECT count(*) FROM t")
    im.close()
    for flag in ("true", "on", "yes", "2"):
        c = r.connect("file:%s?immutable=%s" % (path, flag), uri=True)
        c.execute("DELETE FROM t")
        c.close()
    c = r.connect("file:%s?immutable=0" % path, uri=True)  # off: an ordinary connection
    c.execute("DELETE FROM t WHERE id = 4")
    c.commit()
    c.close()
    r.note("rows", sqlite3.connect(path).execute("SELECT s FROM t ORDER BY id").fetchall())


# ---- 4. journal_mode ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["delete", "truncate", "persist", "memory", "off", "wal"])
def test_journal_mode_of_a_new_database(tmp_path, mode):
    def script(r):
        a = r.connect()
        a.execute("PRAGMA journal_mode = %s" % mode.upper())
        a.execute("CREATE TABLE t(x)")
        a.execute("INSERT INTO t VALUES (1)")
        a.commit()
        a.execute("SELECT x FROM t")
        a.close()
        # Only WAL is kept in the file: every other mode leaves it in rollback mode.
        r.note("on disk", on_disk(r, r.path()))

    assert_same(script, tmp_path)


@pytest.mark.parametrize("mode", ["delete", "truncate", "memory", "off"])
def test_journal_mode_out_of_wal(tmp_path, mode):
    """A WAL file set to a rollback mode: sqlite3 switches it at once; the server answers the
    same and gives the file back in that mode (it used to fail with 'database is locked')."""

    def script(r):
        path = r.path()
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t(x)")
        db.close()
        a = r.connect()
        a.execute("PRAGMA journal_mode = %s" % mode)
        a.execute("INSERT INTO t VALUES (1)")
        a.commit()
        a.execute("SELECT x FROM t")
        a.close()
        r.note("on disk", on_disk(r, path))

    assert_same(script, tmp_path)


@C.script
def journal_mode_in_a_script(r):
    path = r.path()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t(x)")
    db.close()
    a = r.connect()
    a.executescript("PRAGMA journal_mode = DELETE; INSERT INTO t VALUES (1);")
    a.execute("SELECT x FROM t")
    a.close()
    r.note("on disk", on_disk(r, path))


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)


# ---- what cannot work fails, naming the setting -----------------------------------------------


def _error(fn):
    try:
        fn()
    except sqlite3.Error as e:
        return e
    return None


def test_page_size_in_wal_fails_naming_it(tmp_path):
    """A new database whose first statement was BEGIN is in WAL before its page_size comes:
    sqlite3 would still apply it; the server says it cannot (it silently did not)."""
    db = sqlite_rpc.connect(str(tmp_path / "a.db"), isolation_level=None)
    db.execute("BEGIN")
    e = _error(lambda: db.execute("PRAGMA page_size = 8192"))
    assert isinstance(e, sqlite3.OperationalError) and "page_size = 8192" in str(e), e
    db.execute("CREATE TABLE t(x)")
    db.execute("COMMIT")
    assert db.execute("PRAGMA page_size").fetchone() == (4096,)
    db.execute("PRAGMA page_size = 4096")  # the size it has: no error
    db.close()


def test_page_size_at_vacuum_fails_naming_it(tmp_path):
    """sqlite3 applies a new page_size at the next VACUUM of a rollback-mode file; in WAL SQLite
    cannot: the VACUUM fails naming it (it used to leave the size as it was, silently)."""
    path = str(tmp_path / "a.db")
    db = sqlite_rpc.connect(path)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.execute("PRAGMA page_size = 8192")  # recorded for the VACUUM, as in sqlite3
    e = _error(lambda: db.execute("VACUUM"))
    assert isinstance(e, sqlite3.OperationalError) and "page_size = 8192" in str(e) and "VACUUM" in str(e), e
    db.execute("VACUUM")  # used up: the next VACUUM runs
    db.close()


def test_locking_mode_exclusive_fails_naming_it(tmp_path):
    """An exclusive lock on the shared writer made every other connection's reads and writes
    fail with 'database is locked'; the server refuses it instead."""
    path = str(tmp_path / "a.db")
    a = sqlite_rpc.connect(path)
    b = sqlite_rpc.connect(path)
    a.execute("CREATE TABLE t(x)")
    a.commit()
    e = _error(lambda: a.execute("PRAGMA locking_mode = EXCLUSIVE"))
    assert isinstance(e, sqlite3.OperationalError) and "locking_mode = EXCLUSIVE" in str(e), e
    e = _error(lambda: a.executescript("PRAGMA locking_mode = exclusive;"))
    assert isinstance(e, sqlite3.OperationalError) and "locking_mode" in str(e), e
    assert a.execute("PRAGMA locking_mode = NORMAL").fetchone() == ("normal",)
    a.execute("INSERT INTO t VALUES (1)")
    a.commit()
    assert b.execute("SELECT x FROM t").fetchall() == [(1,)]
    a.close()
    b.close()
