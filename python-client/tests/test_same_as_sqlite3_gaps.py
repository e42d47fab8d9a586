"""Differential: smaller gaps between sqlite_rpc and sqlite3 (issue 11, D).

executemany with RETURNING; subclasses of sqlite3.Row and sqlite3.Row(cursor, row) in a
row factory; cursor(factory=sqlite3.Cursor or a subclass); set_trace_callback(None) and
set_authorizer(None); PRAGMA busy_timeout; a NUL in the database path; a mappingproxy as
parameters; the module's OptimizedUnicode and enable_shared_cache; executemany of a
generator streamed in chunks (never read in full first, never over the frame limit).
"""
from __future__ import annotations

import os
import sqlite3
import types
import warnings

import pytest

import sqlite_rpc

from _harness import Corpus, assert_same, table
from _reliability import process_server_args

C = Corpus()


def _table(r, **kw):
    return table(r, "t(id INTEGER PRIMARY KEY, a)", **kw)


# ---- executemany with RETURNING --------------------------------------------------------------

@C.script
def executemany_with_returning(r):
    db = _table(r)
    cur = db.cursor()
    cur.executemany("INSERT INTO t(a) VALUES (?) RETURNING id, a", [(1,), (2,), (3,)])
    cur.fetchall()  # sqlite3 3.11 runs every set; the rows are not returned
    cur.executemany("UPDATE t SET a = a + 10 WHERE id = ? RETURNING a", [(1,), (5,), (2,)])
    cur.fetchall()
    cur.executemany("DELETE FROM t WHERE id = ? RETURNING a", iter([(1,), (2,)]))
    cur.fetchone()
    db.commit()
    cur.executemany("INSERT INTO t(a) VALUES (?) RETURNING id", [])  # still the implicit BEGIN
    db.commit()
    cur.executemany("INSERT INTO t(id, a) VALUES (?, ?) RETURNING id", [(20, 1), (20, 2), (21, 3)])  # fails at the 2nd
    db.execute("SELECT * FROM t ORDER BY id")
    db.rollback()
    cur.executemany("INSERT INTO t(a) VALUES (?) RETURNING id", [(1,), (object(),)])  # a binding error at the 2nd
    cur.executemany("REPLACE INTO t(id, a) VALUES (?, ?) RETURNING *", ((i, i * i) for i in range(3)))
    db.execute("SELECT * FROM t ORDER BY id")
    db.commit()


@C.script
def executemany_with_returning_in_autocommit(r):
    db = _table(r, isolation_level=None)
    cur = db.cursor()
    cur.executemany("INSERT INTO t(a) VALUES (?) RETURNING id", [(1,), (2,)])
    db.execute("SELECT * FROM t ORDER BY id")


# ---- sqlite3.Row subclasses, sqlite3.Row(cursor, row) -----------------------------------------

class NamedRow(sqlite3.Row):
    def total(self):
        return sum(v for v in self if isinstance(v, int))

    @property
    def first(self):
        return self[0]


@C.script
def subclass_of_sqlite3_row_as_row_factory(r):
    db = r.connect()
    db.set("row_factory", NamedRow)
    db.execute('SELECT 1 AS a, 2 AS "B", \'x\' AS "", 3 AS a')
    db.call("a row", lambda c: (lambda row: [type(row).__name__, isinstance(row, sqlite3.Row), row.total(), row.first, row["b"],
                                             row["A"], row.keys(), tuple(row), len(row), row[1:], row == row, row != row])(
        c.execute('SELECT 1 AS a, 2 AS "B", \'x\' AS "", 3 AS a').fetchone()))
    db.call("hash and equality across queries", lambda c: (lambda x, y: [x == y, hash(x) == hash(y)])(
        c.execute("SELECT 1 AS a").fetchone(), c.execute("SELECT 1 AS a").fetchone()))
    db.call("missing key", lambda c: c.execute("SELECT 1 AS a").fetchone()["nope"])
    cur = db.cursor()
    cur.set("row_factory", NamedRow)
    cur.execute("SELECT 5 AS z")
    cur.fetchall()


@C.script
def sqlite3_row_called_inside_a_row_factory(r):
    db = r.connect()
    db.set("row_factory", lambda cursor, row: sqlite3.Row(cursor, row))
    db.call("sqlite3.Row(cursor, row)", lambda c: (lambda row: [type(row).__name__, row.keys(), row["b"], tuple(row)])(
        c.execute("SELECT 1 AS a, 2 AS b").fetchone()))
    db.set("row_factory", lambda cursor, row: NamedRow(cursor, row).total())
    db.execute("SELECT 1 AS a, 2 AS b UNION ALL SELECT 3, 4")
    db.set("row_factory", lambda cursor, row: (cursor.description[0][0], cursor.rowcount, cursor.arraysize, cursor.lastrowid, row))
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (7)")
    db.execute("SELECT x AS col FROM t")
    db.set("row_factory", lambda cursor, row: cursor.connection.total_changes)
    db.execute("SELECT 1")
    db.set("row_factory", lambda cursor, row: [tuple(sqlite3.Row(cursor, row)), cursor.description])
    db.execute("SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3")


def test_the_module_row_with_our_cursor(tmp_path):
    # sqlite_rpc.Row(cursor, row) is to sqlite_rpc what sqlite3.Row(cursor, row) is to sqlite3.
    for module in (sqlite3, sqlite_rpc):
        db = module.connect(":memory:")
        db.row_factory = lambda cursor, row: module.Row(cursor, row)
        row = db.execute("SELECT 1 AS a, 2 AS b").fetchone()
        assert (row["B"], row.keys(), tuple(row)) == (2, ["a", "b"], (1, 2))
        db.close()


# ---- cursor factories --------------------------------------------------------------------------

class FormatCursor(sqlite3.Cursor):
    """Django's SQLiteCursorWrapper in small: "%s" placeholders, then sqlite3's execute."""

    def execute(self, query, params=None):
        if params is None:
            return super().execute(query)
        return super().execute(query.replace("%s", "?"), params)

    def executemany(self, query, params):
        return super().executemany(query.replace("%s", "?"), params)

    def first(self):
        return self.fetchone()[0]


@C.script
def cursor_factory_sqlite3_cursor_and_subclasses(r):
    db = r.connect()
    db.call("cursor(factory=sqlite3.Cursor)", lambda c: (lambda cur: [isinstance(cur, sqlite3.Cursor), cur.connection is c, cur.arraysize,
                                                                       cur.rowcount, cur.lastrowid, cur.description, cur.row_factory,
                                                                       cur.execute("SELECT 7 AS x").fetchall(), cur.rowcount,
                                                                       cur.description])(c.cursor(factory=sqlite3.Cursor)))
    db.call("a subclass", lambda c: (lambda cur: [type(cur).__name__, isinstance(cur, FormatCursor), isinstance(cur, sqlite3.Cursor)])(
        c.cursor(factory=FormatCursor)))
    db.call("its execute, via super()", lambda c: c.cursor(factory=FormatCursor).execute("SELECT %s + %s", (40, 2)).first())
    db.call("executemany and attributes", lambda c: (lambda cur: [cur.execute("CREATE TABLE t(a)") is cur,
                                                                   cur.executemany("INSERT INTO t VALUES (%s)", [(1,), (2,)]) is cur,
                                                                   cur.rowcount, cur.lastrowid, c.in_transaction,
                                                                   list(cur.execute("SELECT a FROM t"))])(c.cursor(factory=FormatCursor)))
    db.call("arraysize and row_factory are settable", lambda c: (lambda cur: (setattr(cur, "arraysize", 2), setattr(cur, "row_factory", NamedRow),
                                                                                cur.execute("SELECT a FROM t ORDER BY a").fetchmany(), cur.arraysize)[2:])(
        c.cursor(factory=FormatCursor)))
    db.call("close, then use", lambda c: (lambda cur: (cur.close(), cur.execute("SELECT 1")))(c.cursor(factory=sqlite3.Cursor)))
    db.call("a factory that is no cursor", lambda c: c.cursor(factory=lambda conn: object()))


def test_subclass_of_our_cursor_as_factory(tmp_path):
    class Mine(sqlite_rpc.Cursor):
        def first(self):
            return self.fetchone()[0]

    db = sqlite_rpc.connect(":memory:")
    cur = db.cursor(factory=Mine)
    assert type(cur) is Mine and not isinstance(cur, sqlite3.Cursor)
    assert cur.execute("SELECT 6 * 7").first() == 42
    db.row_factory = NamedRow
    assert db.cursor(factory=Mine).execute("SELECT 1 AS a, 2 AS b").fetchone().total() == 3


# ---- callbacks cleared, PRAGMA busy_timeout, NUL in a path, mappingproxy ------------------------

@C.script
def clearing_callbacks_is_accepted(r):
    db = r.connect()
    db.call("set_trace_callback(None)", lambda c: c.set_trace_callback(None))
    db.call("set_authorizer(None)", lambda c: c.set_authorizer(None))
    db.call("set_progress_handler(None, 10)", lambda c: c.set_progress_handler(None, 10))
    db.call("keywords", lambda c: (c.set_trace_callback(trace_callback=None), c.set_authorizer(authorizer_callback=None),
                                   c.set_progress_handler(progress_handler=None, n=1)))
    db.execute("SELECT 1")
    db.close()
    db.call("set_trace_callback(None) closed", lambda c: c.set_trace_callback(None))
    db.call("set_authorizer(None) closed", lambda c: c.set_authorizer(None))


@C.script
def pragma_busy_timeout_is_the_connections(r):
    for database in (None, ":memory:"):
        db = r.connect(database, timeout=2.5)
        db.execute("PRAGMA busy_timeout")
        db.execute("PRAGMA main.busy_timeout")
        db.execute("pragma BUSY_TIMEOUT = 1234")
        db.execute("PRAGMA busy_timeout;")
        db.execute("PRAGMA busy_timeout(77)")
        db.execute("PRAGMA busy_timeout")
        other = r.connect(database, timeout=0.5)
        other.execute("PRAGMA busy_timeout")  # not the other connection's
        db.execute("PRAGMA busy_timeout = -5")
        db.execute("PRAGMA busy_timeout")
        r.connect(database, timeout=0).execute("PRAGMA busy_timeout")
        r.connect(database, timeout=1.0005).execute("PRAGMA busy_timeout")


@C.script
def nul_in_the_database_path(r):
    for name in ("a\0b", b"a\0b", ":memory:\0", "file:x\0y"):
        r.connect_fails(name)
    r.connect_fails("file:x\0y", uri=True)
    r.connect_fails(os.path.join(r.folder, "z\0.sqlite"))


@C.script
def mappings_that_are_not_dicts(r):
    import collections

    class Abc(collections.abc.Mapping):
        def __getitem__(self, k):
            return {"a": 5}[k]

        def __len__(self):
            return 1

        def __iter__(self):
            return iter(["a"])

    db = r.connect()
    for params in (types.MappingProxyType({"a": 1}), types.MappingProxyType({}), Abc(), collections.UserDict(a=3), range(1), "x", bytearray(b"q")):
        db.execute("SELECT :a", params)
        db.execute("SELECT ?", params)
    db.execute("CREATE TABLE t(a)")
    db.executemany("INSERT INTO t VALUES (:a)", [types.MappingProxyType({"a": 1})])
    db.execute("SELECT count(*) FROM t")


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)


def test_module_attributes_as_sqlite3_has_them():
    # Everything public that this interpreter's sqlite3 has, sqlite_rpc has, except modules
    # (those sqlite3 happens to import, collections, datetime and time, and its submodules).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        missing = [n for n in dir(sqlite3) if not n.startswith("_") and not isinstance(getattr(sqlite3, n), types.ModuleType)
                   and not hasattr(sqlite_rpc, n)]
        assert missing == []
        for name in ("OptimizedUnicode", "enable_shared_cache"):
            assert hasattr(sqlite_rpc, name) == hasattr(sqlite3, name)
        has_optimized_unicode = hasattr(sqlite3, "OptimizedUnicode")
    if has_optimized_unicode:
        with pytest.warns(DeprecationWarning, match="OptimizedUnicode is deprecated") as w:
            assert sqlite_rpc.OptimizedUnicode is sqlite3.OptimizedUnicode is str
        assert w[0].filename == __file__  # attributed to the caller, as sqlite3's
    if hasattr(sqlite3, "enable_shared_cache"):
        with pytest.warns(DeprecationWarning, match="enable_shared_cache is deprecated"):
            assert sqlite_rpc.enable_shared_cache(False) is None
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        sqlite_rpc.NoSuchThing  # noqa: B018


# ---- executemany: streamed, not read in full first -----------------------------------------------

def _gen(n, observe=None):
    for i in range(n):
        if observe is not None and i == 100_000:
            observe()
        yield (i, "v%d" % i)


def executemany_reads_a_generator_as_it_goes(r):
    db = r.connect()
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    seen = []
    # Half way through the generator, sqlite3 has begun the transaction and inserted rows.
    db.executemany("INSERT INTO t VALUES (?, ?)", _gen(200_000, lambda: seen.append((db.raw.in_transaction, db.raw.total_changes > 0))))
    r.note("seen from inside the generator", seen)
    db.execute("SELECT count(*), min(id), max(id) FROM t")
    db.commit()

    def failing():
        yield from _gen(150_000)
        raise ValueError("the generator failed")

    db.executemany("INSERT INTO t VALUES (?, ?)", ((i + 10**6, v) for i, v in _gen(150_000)))
    db.executemany("INSERT INTO t VALUES (?, ?)", ((i + 2 * 10**6, v) for i, v in failing()))  # rows before it stay
    db.execute("SELECT count(*) FROM t")
    db.executemany("INSERT INTO t VALUES (?, ?)", ((i + 3 * 10**6 if i != 120_000 else 5, v) for i, v in _gen(150_000)))  # fails at row 120000
    db.execute("SELECT count(*), max(id) FROM t")
    db.rollback()
    db.execute("SELECT count(*) FROM t")


def executemany_of_more_than_the_frame_limit(r):
    # 70 rows of 1 MiB: 70 MiB in all, over the server's 64 MiB frame limit.
    db = r.connect()
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
    db.executemany("INSERT INTO t(b) VALUES (?)", ((bytes([i]) * (1 << 20),) for i in range(70)))
    db.execute("SELECT count(*), sum(length(b)), max(id) FROM t")
    db.commit()
    db.executemany("UPDATE t SET b = ? WHERE id = ?", [(bytes([i]) * (1 << 20), 71 - i) for i in range(1, 71)])
    db.execute("SELECT count(*) FROM t WHERE length(b) = 1048576 AND substr(b, 1, 1) = char(71 - id)")
    db.rollback()


def test_executemany_streams(tmp_path):
    assert_same(executemany_reads_a_generator_as_it_goes, tmp_path)


def test_executemany_over_the_frame_limit(tmp_path):
    assert_same(executemany_of_more_than_the_frame_limit, tmp_path)


def executemany_under_a_small_frame_limit(r):
    # With a 1 MiB frame limit: rows of 100 KB, thousands of small rows, one row over the
    # limit alone, an error at row N after several chunks.
    db = r.connect()
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b)")
    db.executemany("INSERT INTO t(b) VALUES (?)", ((os.urandom(100_000),) for _ in range(60)))
    db.executemany("INSERT INTO t(b) VALUES (?)", [("x" * (i % 500),) for i in range(50_000)])
    db.execute("SELECT count(*), max(id) FROM t")
    db.commit()
    rows = [(i + 10**6, b"y" * 50_000) for i in range(100)] + [(5, b"dup")] + [(i + 2 * 10**6, b"z") for i in range(10)]
    db.executemany("INSERT INTO t(id, b) VALUES (?, ?)", rows)
    db.execute("SELECT count(*), max(id) FROM t")
    db.rollback()
    db.execute("SELECT count(*), max(id) FROM t")


def test_executemany_under_a_small_frame_limit(tmp_path):
    with process_server_args("--max-frame-bytes", str(1 << 20)):
        assert sqlite_rpc.server_info()["capabilities"]["max_frame_bytes"] == 1 << 20
        assert_same(executemany_under_a_small_frame_limit, tmp_path)
        # One parameter set alone over the limit cannot be split: refused, not sent, as before.
        db = sqlite_rpc.connect(str(tmp_path / "alone.sqlite"))
        db.execute("CREATE TABLE t(b)")
        with pytest.raises(sqlite3.DataError, match="over the server's limit"):
            db.executemany("INSERT INTO t VALUES (?)", [(b"a",), (b"b" * (2 << 20),)])
        assert db.in_transaction and db.execute("SELECT count(*) FROM t").fetchone() == (1,)
        db.close()
