"""Differential: connect()'s parameters, :memory:, URIs, read-only databases, module globals."""
from __future__ import annotations

import os
import pathlib
import sqlite3

import pytest

import sqlite_rpc
from _harness import Corpus, assert_same

C = Corpus()
MEM = ":memory:"


@C.script
def memory_databases_are_private_to_their_connection(r):
    a = r.connect(MEM)
    b = r.connect(MEM)
    a.execute("CREATE TABLE t(x)")
    a.execute("INSERT INTO t VALUES (1)")
    b.execute("SELECT * FROM t")
    b.execute("CREATE TABLE t(y)")
    b.execute("INSERT INTO t VALUES (2)")
    a.execute("SELECT * FROM t")
    b.execute("SELECT * FROM t")
    a.close()
    c = r.connect(MEM)
    c.execute("SELECT name FROM sqlite_master")
    d = r.connect("")
    d.execute("CREATE TABLE t(z)")
    e = r.connect("")
    e.execute("SELECT name FROM sqlite_master")


@C.script
def file_databases_are_shared_by_connections(r):
    a = r.connect()
    a.execute("CREATE TABLE t(x)")
    a.execute("INSERT INTO t VALUES (1)")
    a.commit()
    b = r.connect(r.path())
    b.execute("SELECT * FROM t")
    c = r.connect(pathlib.Path(r.path()))
    c.execute("SELECT * FROM t")
    d = r.connect(r.path().encode())
    d.execute("SELECT * FROM t")


@C.script
def bad_database_arguments(r):
    r.connect_fails(r.path("missing-dir/sub/db"))
    os.makedirs(r.path("a-directory"))
    r.connect_fails(r.path("a-directory"))
    r.connect_fails(None)
    r.connect_fails(42)
    r.connect_fails(r.path(), timeout="x")
    r.connect_fails(r.path(), detect_types="x")
    # cached_statements sizes sqlite3's per-connection cache; the server's caches are its
    # own (--cache-size), but a value sqlite3 refuses is refused the same way.
    r.connect_fails(r.path(), cached_statements="x")
    r.connect_fails(r.path(), cached_statements=1.5)
    r.connect_fails(r.path(), cached_statements=2**70)
    r.connect_fails(r.path(), cached_statements=-2**40)
    r.connect(r.path(), cached_statements=0).execute("SELECT 1")
    r.connect(r.path(), cached_statements=-1).execute("SELECT 1")


@C.script
def uri_read_only_mode(r):
    w = r.connect()
    w.execute("CREATE TABLE t(x)")
    w.execute("INSERT INTO t VALUES (1)")
    w.commit()
    ro = r.connect("file:%s?mode=ro" % r.path(), uri=True)
    ro.execute("SELECT * FROM t")
    ro.execute("INSERT INTO t VALUES (2)")
    ro.get("in_transaction")
    ro.rollback()
    ro.execute("CREATE TABLE u(y)")
    ro.execute("SELECT * FROM t")
    w.execute("INSERT INTO t VALUES (3)")
    w.commit()
    ro.execute("SELECT * FROM t ORDER BY x")


@C.script
def uri_modes_and_errors(r):
    rw = r.connect("file:%s?mode=rwc" % r.path("created"), uri=True)
    rw.execute("CREATE TABLE t(x)")
    rw.commit()
    r.connect_fails("file:%s?mode=rw" % r.path("absent"), uri=True)
    r.connect_fails("file:%s?mode=ro" % r.path("absent2"), uri=True)
    r.connect_fails("file:%s?mode=bogus" % r.path("x"), uri=True)
    mem = r.connect("file::memory:", uri=True)
    mem.execute("CREATE TABLE m(x)")
    mem2 = r.connect("file::memory:", uri=True)
    mem2.execute("SELECT name FROM sqlite_master")
    named = r.connect("file:%s" % r.path("plainuri"), uri=True)
    named.execute("CREATE TABLE p(x)")
    named.commit()
    again = r.connect(r.path("plainuri"))
    again.execute("SELECT name FROM sqlite_master")


@C.script
def relative_paths_follow_the_current_directory(r):
    old = os.getcwd()
    try:
        os.chdir(r.folder)
        a = r.connect("relative.sqlite")
        a.execute("CREATE TABLE t(x)")
        a.commit()
        os.makedirs("sub", exist_ok=True)
        os.chdir("sub")
        b = r.connect("relative.sqlite")
        b.execute("SELECT name FROM sqlite_master")
        c = r.connect("other.sqlite")
        c.execute("CREATE TABLE u(x)")
        c.commit()
        # -wal/-shm files aside (DIFFERENCES.md "WAL"), the same files in the same places.
        r.note("files", sorted(f for f in os.listdir(".") if not f.endswith(("-wal", "-shm"))))
    finally:
        os.chdir(old)


@C.script
def connect_keyword_arguments(r):
    db = r.connect(timeout=0.5, detect_types=0, isolation_level="DEFERRED", check_same_thread=True, cached_statements=10)
    db.get("isolation_level")
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db2 = r.connect(isolation_level=None)
    db2.get("isolation_level")
    db2.execute("INSERT INTO t VALUES (2)")
    db2.get("in_transaction")


@C.script
def connection_exposes_exception_classes(r):
    db = r.connect(MEM)
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                 "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):
        db.call("conn." + name, lambda c, n=name: getattr(c, n) is getattr(sqlite3, n))


@C.script
def pragmas_on_a_private_database(r):
    db = r.connect(MEM)
    db.execute("PRAGMA user_version")
    db.execute("PRAGMA user_version = 7")
    db.execute("PRAGMA user_version")
    db.execute("PRAGMA foreign_keys")
    db.execute("PRAGMA nope")
    db.execute("PRAGMA table_info('nothing')")


@C.script
def foreign_keys_off_by_default_and_switchable(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE p(id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE c(pid REFERENCES p(id))")
    db.execute("INSERT INTO c VALUES (99)")
    db.commit()
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA foreign_keys")
    db.execute("INSERT INTO c VALUES (100)")
    db.execute("SELECT * FROM c")


# More in test_same_as_sqlite3_dqs.py.
@C.script
def double_quoted_string_literals(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE t(a)")
    db.execute("SELECT \"a\" FROM t")
    db.execute("SELECT \"not a column\"")
    db.execute("INSERT INTO t VALUES (\"text\")")
    db.execute("SELECT * FROM t")


@C.script
def complete_statement_and_module_helpers(r):
    m = r.module
    r.note("complete_statement", [m.complete_statement(s) for s in ("SELECT 1;", "SELECT 1", "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;", "")])
    r.note("Binary", m.Binary(b"ab") == memoryview(b"ab"))
    r.note("Date", [m.Date(2024, 1, 2), m.Time(1, 2, 3), m.Timestamp(2024, 1, 2, 3, 4, 5)])
    r.note("PARSE flags", [m.PARSE_DECLTYPES, m.PARSE_COLNAMES])
    r.note("codes", [m.SQLITE_OK, m.SQLITE_BUSY, m.SQLITE_CONSTRAINT_UNIQUE, m.SQLITE_DENY])


@C.script
def checks_and_their_order(r):
    # sqlite3 checks the thread before the connection, and the cursor before both.
    import threading

    m = r.module
    db = r.connect(MEM)
    cur = db.raw.cursor()

    def elsewhere(label, fn):
        out = []
        t = threading.Thread(target=lambda: out.append(_attempt_here(fn)))
        t.start()
        t.join()
        r.note(label, out[0])

    elsewhere("cursor() from another thread", db.raw.cursor)
    elsewhere("Cursor(db) from another thread", lambda: m.Cursor(db.raw))
    elsewhere("setlimit from another thread", lambda: db.raw.setlimit(m.SQLITE_LIMIT_LENGTH, 1))
    db.raw.close()
    elsewhere("close() of a closed connection from another thread", db.raw.close)
    elsewhere("commit() of a closed connection from another thread", db.raw.commit)
    r.attempt("closed: getlimit", lambda: db.raw.getlimit(m.SQLITE_LIMIT_LENGTH))
    r.attempt("closed: blobopen", lambda: db.raw.blobopen("t", "b", 1))
    r.attempt("closed: interrupt", db.raw.interrupt)
    r.attempt("closed: iterdump()", lambda: db.raw.iterdump() and None)
    r.attempt("closed: cursor's execute", lambda: cur.execute("SELECT 1"))
    r.attempt("closed: isolation_level = None", lambda: setattr(db.raw, "isolation_level", None))
    r.attempt("closed: isolation_level = 'immediate'", lambda: setattr(db.raw, "isolation_level", "immediate"))
    r.attempt("closed: close() again", db.raw.close)


def _attempt_here(fn):
    from _harness import _attempt

    return _attempt(fn)


@C.script
def isolation_level_strings(r):
    db = r.connect(MEM)

    class Odd(str):
        def upper(self):
            return "NOT A LEVEL"

    for value in ["deferred", "Immediate", "exclusive", "", Odd("deferred"), "\u0131mmediate", "EXCLUSIVE\x00",
                  "\udc80", "ß", b"DEFERRED", 1, None, "DEFERRED "]:
        r.attempt("isolation_level = %r" % (value,), lambda v=value: setattr(db.raw, "isolation_level", v))
        r.attempt("isolation_level", lambda: db.raw.isolation_level)
    for value in ["immediate", Odd("exclusive"), "nope", 2]:
        r.connect_fails(MEM, isolation_level=value)


@C.script
def cursor_and_row_argument_checks(r):
    m = r.module
    db = r.connect(MEM)

    class Fake(str):
        __class__ = m.Cursor

    for label, fn in [("cursor(None)", lambda: db.raw.cursor(None)), ("cursor(factory=None)", lambda: db.raw.cursor(factory=None)),
                      ("cursor(lambda: None)", lambda: db.raw.cursor(lambda: None)),
                      ("cursor(str subclass faking Cursor)", lambda: db.raw.cursor(Fake)),
                      ("Row(None, ())", lambda: m.Row(None, ())), ("Row(fake, ())", lambda: m.Row(Fake(), ())),
                      ("Row(cursor, [])", lambda: m.Row(db.raw.cursor(), [])),
                      ("Cursor(None)", lambda: m.Cursor(None))]:
        r.attempt(label, lambda fn=fn: type(fn()).__name__)
    import collections.abc

    db.set("row_factory", m.Row)
    r.note("Row is a Sequence", isinstance(db.raw.execute("SELECT 1").fetchone(), collections.abc.Sequence))


@C.script
def subclasses_that_skip_the_base_init(r):
    m = r.module

    class Conn(m.Connection):
        def __init__(self, *a, **k):
            pass

    class Cur(m.Cursor):
        def __init__(self, con):
            pass

    con = Conn(MEM)
    for label, fn in [("cursor", con.cursor), ("execute", lambda: con.execute("SELECT 1")), ("commit", con.commit),
                      ("close", con.close), ("in_transaction", lambda: con.in_transaction),
                      ("total_changes", lambda: con.total_changes), ("isolation_level", lambda: con.isolation_level)]:
        r.attempt("connection: " + label, fn)
    db = r.connect(MEM)
    cur = Cur(db.raw)
    for label, fn in [("execute", lambda: cur.execute("SELECT 1")), ("executemany", lambda: cur.executemany("SELECT ?", [(1,)])),
                      ("executescript", lambda: cur.executescript("SELECT 1")), ("fetchone", cur.fetchone),
                      ("fetchall", cur.fetchall), ("fetchmany", cur.fetchmany), ("close", cur.close),
                      ("connection", lambda: cur.connection), ("iter", lambda: next(iter(cur)))]:
        r.attempt("cursor: " + label, fn)


@C.script
def second_init(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (1)")
    cur = db.execute("SELECT x FROM t", fetch=False)
    r.attempt("__init__ with a bad isolation_level", lambda: db.raw.__init__(MEM, isolation_level="nope"))
    r.attempt("still the old database", lambda: db.raw.execute("SELECT count(*) FROM t").fetchall())
    r.attempt("__init__ with a bad database type", lambda: db.raw.__init__(1.5))
    r.attempt("still the old database, again", lambda: db.raw.execute("SELECT count(*) FROM t").fetchall())
    r.attempt("__init__ on a folder", lambda: db.raw.__init__(r.folder))
    r.attempt("then", lambda: db.raw.execute("SELECT 1").fetchall())
    r.attempt("close", db.raw.close)
    r.attempt("the old cursor's rows", cur.raw.fetchall)
    r.attempt("__init__ again", lambda: db.raw.__init__(MEM))
    r.attempt("a new database", lambda: db.raw.execute("SELECT name FROM sqlite_master").fetchall())


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)


@pytest.mark.parametrize("name", ["apilevel", "paramstyle", "threadsafety", "version", "version_info"])
def test_module_globals_same_as_sqlite3(name):
    assert getattr(sqlite_rpc, name) == getattr(sqlite3, name)


def test_exception_classes_are_sqlite3s():
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                 "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):
        assert getattr(sqlite_rpc, name) is getattr(sqlite3, name)


def test_every_public_sqlite3_name_exists():
    # Everything `import sqlite3` code may reach for is there (submodules aside, and
    # enable_shared_cache, deprecated and meaningless for a server).
    import types

    missing = [n for n in dir(sqlite3) if not n.startswith("_") and n != "enable_shared_cache"
               and not isinstance(getattr(sqlite3, n), types.ModuleType) and not hasattr(sqlite_rpc, n)]
    assert missing == []


def test_sqlite_version_names_the_server_engine():
    # DIFFERENCES.md "Engine version": the engine is the server's (3.51), not the system's.
    info = sqlite_rpc.server_info()
    assert sqlite_rpc.sqlite_version == info["sqlite_version"]
    assert sqlite_rpc.sqlite_version_info == tuple(int(x) for x in info["sqlite_version"].split("."))
    assert sqlite_rpc.sqlite_version_info >= (3, 51, 0)
    with sqlite_rpc.connect(":memory:") as db:
        assert db.execute("SELECT sqlite_version()").fetchone()[0] == sqlite_rpc.sqlite_version
