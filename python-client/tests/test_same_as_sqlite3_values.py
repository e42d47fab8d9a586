"""Differential: values in and out (types exact), parameter binding and its errors."""
from __future__ import annotations

import datetime
import decimal
import enum

import pytest

from _harness import Corpus, assert_same

C = Corpus()
MEM = ":memory:"


def _select(r, sql, *param_sets):
    db = r.connect(MEM)
    for p in param_sets:
        db.execute(sql, p)
    return db


@C.script
def integers_exact_across_int64(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE t(x INTEGER)")
    vals = [0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53, 2**53 + 1, -(2**53) - 1, 2**62, 2**63 - 1, -(2**63)]
    db.executemany("INSERT INTO t VALUES (?)", [(v,) for v in vals])
    db.execute("SELECT x, typeof(x), x = ? FROM t ORDER BY rowid", (2**63 - 1,))
    db.execute("SELECT ?, ?, ?", (2**63 - 1, -(2**63), 2**53 + 1))
    db.execute("SELECT 9223372036854775807, -9223372036854775808, 9007199254740993")


@C.script
def integer_overflow_is_refused(r):
    db = r.connect(MEM)
    db.execute("SELECT ?", (2**63,))
    db.execute("SELECT ?", (-(2**63) - 1,))
    db.execute("SELECT ?", (2**64,))
    db.execute("SELECT :a", {"a": 10**30})
    db.execute("CREATE TABLE t(x)")
    db.executemany("INSERT INTO t VALUES (?)", [(1,), (2**63,)])
    db.execute("SELECT count(*) FROM t")
    db.execute("SELECT 9223372036854775807 + 1")
    db.execute("SELECT 9223372036854775808")


@C.script
def floats_keep_their_type_and_sign(r):
    db = r.connect(MEM)
    db.execute("SELECT ?, ?, ?, ?, ?, ?", (1.0, -0.0, 0.0, 1e308, 5e-324, -2.5))
    db.execute("SELECT ?, ?", (float("inf"), float("-inf")))
    db.execute("SELECT ?", (float("nan"),))
    db.execute("SELECT 1.0, 1, 1e0, -0.0, 1e999, -1e999, 0.1 + 0.2")
    db.execute("CREATE TABLE t(r REAL, i INTEGER, n NUMERIC, b BLOB, x)")
    db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", (1.0, 1.0, 1.0, 1.0, 1.0))
    db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", (2, 2.5, 2.5, 2, -0.0))
    db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", ("3", "3", "3.0", "3", "3"))
    db.execute("SELECT r, typeof(r), i, typeof(i), n, typeof(n), b, typeof(b), x, typeof(x) FROM t ORDER BY rowid")


@C.script
def bool_binds_as_integer(r):
    db = _select(r, "SELECT ?, ?, typeof(?)", (True, False, True))
    db.execute("SELECT :t", {"t": True})


@C.script
def text_round_trips_unicode(r):
    db = r.connect(MEM)
    vals = ["", "a", "é", "日本語", "😀 emoji", "nul\x00inside", "tab\tand\nnewline", "'quote\"", "\u2028\u2029", "a" * 100000]
    db.execute("CREATE TABLE t(s TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [(v,) for v in vals])
    db.execute("SELECT s, length(s), typeof(s) FROM t ORDER BY rowid")
    db.execute("SELECT 'caf' || 'é', upper('straße'), lower('ÉCOLE')")


@C.script
def lone_surrogate_cannot_be_bound(r):
    db = r.connect(MEM)
    db.execute("SELECT ?", ("\ud800",))


@C.script
def bytes_bytearray_memoryview_bind_as_blob(r):
    db = r.connect(MEM)
    db.execute("SELECT ?, ?, ?, typeof(?)", (b"\x00\x01\xff", bytearray(b"ab"), memoryview(b"cd"), memoryview(b"")))
    db.execute("SELECT x'00ff', x'', typeof(x'')")


@C.script
def empty_string_and_empty_blob_are_distinct(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE t(v)")
    db.executemany("INSERT INTO t VALUES (?)", [("",), (b"",), (None,)])
    db.execute("SELECT v, typeof(v), v IS NULL, length(v) FROM t ORDER BY rowid")
    db.execute("SELECT count(*) FROM t WHERE v = ''")
    db.execute("SELECT count(*) FROM t WHERE v = x''")


@C.script
def large_blobs_round_trip(r):
    db = r.connect()
    big = bytes(range(256)) * (4 * 4096 + 7)  # a little over 4 MiB
    db.execute("CREATE TABLE t(b BLOB)")
    db.execute("INSERT INTO t VALUES (?)", (big,))
    db.execute("INSERT INTO t VALUES (zeroblob(3000000))")
    db.commit()
    db.execute("SELECT length(b), b = ? FROM t ORDER BY rowid", (big,))
    cur = db.execute("SELECT b FROM t ORDER BY rowid", fetch=False)
    rows = cur.raw.fetchall()
    r.note("blobs equal", [rows[0][0] == big, rows[1][0] == bytes(3000000), type(rows[0][0]).__name__])


@C.script
def nulls_everywhere(r):
    db = r.connect(MEM)
    db.execute("SELECT NULL, ?, :n", {"n": None})
    db.execute("SELECT ?", (None,))
    db.execute("CREATE TABLE t(a, b)")
    db.execute("INSERT INTO t VALUES (NULL, ?)", (None,))
    db.execute("SELECT a, b, typeof(a), coalesce(a, b, 'x') FROM t")


@C.script
def named_parameters_colon_at_dollar(r):
    db = r.connect(MEM)
    db.execute("SELECT :a, @b, $c", {"a": 1, "b": "two", "c": 3.0})
    db.execute("SELECT :a, :a, :b", {"a": 1, "b": 2})
    db.execute("SELECT :a", {"a": 1, "unused": 2})
    db.execute("SELECT :a, :b", {"a": 1})
    db.execute("SELECT :a", {})
    db.execute("SELECT :a", (5,))
    db.execute("SELECT ?", {"a": 1})
    db.execute("SELECT :a", {"a": object()})


@C.script
def numbered_parameters(r):
    db = r.connect(MEM)
    db.execute("SELECT ?2, ?1", (1, 2))
    db.execute("SELECT ?1, ?1, ?3", (1, 2, 3))
    db.execute("SELECT ?1, ?3", (1, 2))
    db.execute("SELECT ?, ?5", (1, 2, 3, 4, 5))


@C.script
def wrong_number_of_bindings(r):
    db = r.connect(MEM)
    db.execute("SELECT ?", ())
    db.execute("SELECT ?", (1, 2))
    db.execute("SELECT ?, ?", (1,))
    db.execute("SELECT 1", (1,))
    db.execute("SELECT 1", ())
    db.execute("SELECT '?', ?", (1,))
    db.execute("SELECT ? -- ?\n", (1,))
    db.execute("CREATE TABLE t(a, b)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(1, 2), (3,)])
    db.execute("SELECT count(*) FROM t")


@C.script
def unsupported_parameter_types(r):
    db = r.connect(MEM)
    db.execute("SELECT ?", (object(),))
    db.execute("SELECT ?", ([1, 2],))
    db.execute("SELECT ?", ({"a": 1},))
    db.execute("SELECT ?, ?", (1, decimal.Decimal("1.5")))
    db.execute("SELECT ?", (1j,))
    db.execute("SELECT :x", {"x": {1, 2}})


@C.script
def unsupported_parameter_containers(r):
    db = r.connect(MEM)
    db.execute("SELECT ?", 5)
    db.execute("SELECT ?", (x for x in [1]))
    db.execute("SELECT ?", {1, 2})
    db.execute("SELECT ?", "a")
    db.execute("SELECT ?, ?", "ab")
    db.execute("SELECT ?", b"a")
    db.execute("SELECT ?", [7])
    db.execute("SELECT ?", range(3, 4))


@C.script
def int_and_str_subclasses_bind_as_their_base(r):
    class Color(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    db = r.connect(MEM)
    db.execute("SELECT ?, typeof(?), ?", (Color.RED, Color.RED, Name("n")))


@C.script
def default_date_adapters(r):
    db = r.connect(MEM)
    db.execute("SELECT ?, ?", (datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 12, 30, 1, 5)))


@C.script
def sql_errors(r):
    db = r.connect(MEM)
    db.execute("SELEC 1")
    db.execute("SELECT * FROM missing")
    db.execute("SELECT nope")
    db.execute("CREATE TABLE t(a)")
    db.execute("CREATE TABLE t(a)")
    db.execute("SELECT 1 FROM t WHERE")
    db.execute("SELECT abs('a', 'b')")
    db.execute("SELECT * FROM t t1 JOIN t t2 USING (zz)")
    db.execute("")
    db.execute("   -- only a comment")
    db.execute("SELECT 1; SELECT 2")
    db.execute("SELECT 1;   ")
    db.execute("DROP TABLE nope")


def _dml_that_fails_to_compile(db):
    db.execute("CREATE TABLE t(a)")
    db.execute("INSERT INTO t(b) VALUES (1)")
    db.execute("INSERT INTO t VALUES (1, 2)")
    db.execute("UPDATE nope SET a = 1")
    db.execute("DELETE FROM t WHERE nope = 1")
    db.executemany("INSERT INTO nope VALUES (?)", [(1,)])
    db.executemany("SELECT ?", [(1,)])
    db.execute("INSERT INTO t VALUES (?)", (object(),))
    db.rollback()
    db.execute("INSERT INTO nope VALUES (?)", (object(),))


@C.script
def dml_that_fails_to_compile_opens_no_transaction_in_memory(r):
    _dml_that_fails_to_compile(r.connect(MEM))


@C.script
def dml_that_fails_to_compile_opens_no_transaction_in_a_file(r):
    _dml_that_fails_to_compile(r.connect())


@C.script
def positional_and_named_parameters_mixed(r):
    db = r.connect(MEM)
    db.execute("SELECT ?, :a", (1, 2))
    db.execute("SELECT :a, ?, :a", (1, 2))
    db.execute("SELECT ?, :a", {"a": 1})


@C.script
def null_character_in_sql(r):
    db = r.connect(MEM)
    db.execute("SELECT 1\x00")
    db.execute("SELECT '\x00'")
    cur = db.cursor()
    cur.executescript("SELECT 1;\x00")


@C.script
def sql_argument_must_be_str(r):
    db = r.connect(MEM)
    db.execute(b"SELECT 1")
    db.execute(None)
    cur = db.cursor()
    cur.executemany(b"INSERT", [])
    cur.executescript(b"SELECT 1")


@C.script
def arithmetic_and_functions(r):
    db = r.connect(MEM)
    db.execute("SELECT 7 / 2, 7 / 2.0, 7 % 3, -7 / 2, 1 / 0, 1.0 / 0, abs(-9223372036854775807)")
    db.execute("SELECT abs(-9223372036854775808)")
    db.execute("SELECT round(2.5), round(-2.5), round(1.2345, 2), cast('12abc' AS INTEGER), cast(1e20 AS INTEGER)")
    db.execute("SELECT typeof(cast('1.0' AS NUMERIC)), cast('1.0' AS NUMERIC), cast('9223372036854775808' AS NUMERIC)")
    db.execute("SELECT hex('é'), quote(x'01'), quote(1.5), quote('it''s'), char(65, 66), unicode('é')")
    db.execute("SELECT json_object('a', 1, 'b', json_array(1, 2.5, 'x')), json_extract('{\"a\":[1,2]}', '$.a[1]')")
    db.execute("SELECT printf('%5.2f|%d|%s', 3.14159, 42, 'x'), instr('hello', 'l'), substr('hello', 2, 3)")
    db.execute("SELECT total(x), sum(x), avg(x), group_concat(x) FROM (SELECT 1 AS x UNION ALL SELECT 2)")
    db.execute("SELECT datetime(0, 'unixepoch'), date('2024-01-31', '+1 month')")


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)
