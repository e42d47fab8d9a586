"""Errors the client acts on are told apart by data.reason (and data.name), declared per kind
in protocol/errors.json, never by their message text: the server's wording may change (or
be sqlite3's own, passed through) without changing what the client does."""
from __future__ import annotations

import sqlite3

import pytest

import sqlite_rpc
from sqlite_rpc import _taxonomy, protocol


def test_the_server_sends_the_reasons_errors_json_declares():
    c = sqlite_rpc.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError, match=r"\Ano such function: NoSuch\Z") as e:
        c.execute("SELECT NoSuch(1)")
    assert (e.value.rpc_kind, e.value.rpc_reason, e.value.rpc_name) == ("SqliteError", _taxonomy.REASON_NO_SUCH_FUNCTION, "NoSuch")
    assert e.value.rpc_reason in _taxonomy.KINDS["SqliteError"].reasons
    with pytest.raises(sqlite3.OperationalError) as e:
        c.execute("SELECT 1 ORDER BY 1 COLLATE nocoll")
    assert (e.value.rpc_reason, e.value.rpc_name) == (_taxonomy.REASON_NO_SUCH_COLLATION, "nocoll")
    with pytest.raises(sqlite3.OperationalError) as e:
        c.execute("SELECT * FROM nope")
    assert e.value.rpc_reason is None  # a reason only where errors.json declares one


def test_a_reason_decides_whatever_the_message_says():
    # The message is deliberately not the server's: only the structured fields count.
    overflow = protocol.exception_from_error({"code": -32008, "message": "anything", "data": {"kind": "TooLarge", "dbapi": "DataError", "reason": "integer_overflow"}})
    assert type(overflow) is OverflowError
    other = protocol.exception_from_error({"code": -32008, "message": "integer 1 does not fit in a 64-bit SQLite INTEGER", "data": {"kind": "TooLarge", "dbapi": "DataError"}})
    assert type(other) is sqlite3.DataError

    c = sqlite_rpc.connect(":memory:")
    c.create_function("MyFn", 1, lambda x: x)
    gone = protocol.exception_from_error({"code": -32000, "message": "worded otherwise", "data": {
        "kind": "SqliteError", "dbapi": "OperationalError", "sqlite_code": "SQLITE_ERROR", "reason": "no_such_function", "name": "myfn"}})
    udf = c._udf_error(gone)
    assert isinstance(udf, sqlite3.NotSupportedError) and "user-defined function MyFn()" in str(udf)
    plain = protocol.exception_from_error({"code": -32000, "message": "no such function: myfn", "data": {
        "kind": "SqliteError", "dbapi": "OperationalError", "sqlite_code": "SQLITE_ERROR"}})
    assert c._udf_error(plain) is None


def test_overflow_and_udfs_end_to_end_as_in_sqlite3():
    c = sqlite_rpc.connect(":memory:")
    c.create_collation("MyColl", lambda a, b: 0)
    with pytest.raises(sqlite3.NotSupportedError, match="user-defined collation MyColl is not supported"):
        c.execute("SELECT 1 ORDER BY 1 COLLATE mycoll")
    cur = c.cursor()
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a)")
    cur.executemany("INSERT INTO t(a) VALUES (?) RETURNING id", [(1,), (2,)])  # the server says not_dml; the client runs them one by one
    assert c.execute("SELECT a FROM t ORDER BY id").fetchall() == [(1,), (2,)]
