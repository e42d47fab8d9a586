"""Differential: a plain BEGIN is held back by the client and rides with the next request
(issue 12, round trips); a deferred BEGIN that waited for the writer in vain stays open. Whatever follows it, results, in_transaction, total_changes, errors
and what other connections see must stay sqlite3's; and the BEGIN must cost no round trip.
"""
from __future__ import annotations

import os
import sqlite3

import pytest

import sqlite_rpc
from sqlite_rpc import process
from sqlite_rpc.transport import client as transport_client
from _harness import Corpus, assert_same, table

C = Corpus()



@C.script
def begin_then_insert_then_commit(r):
    db = table(r)
    db.execute("BEGIN TRANSACTION")
    db.execute("INSERT INTO t(v) VALUES ('a')")
    other = r.connect()
    other.execute("SELECT count(*) FROM t")  # not committed yet
    db.commit()
    other.execute("SELECT count(*) FROM t")


@C.script
def begin_spellings_then_select(r):
    db = table(r, isolation_level=None)
    for sql in ("BEGIN", "begin deferred", "  BEGIN DEFERRED TRANSACTION ;", "Begin Transaction"):
        db.execute(sql)
        db.execute("SELECT count(*) FROM t")
        db.execute("INSERT INTO t(v) VALUES (?)", (sql,))
        db.rollback()
    db.execute("SELECT count(*) FROM t")


@C.script
def begin_then_commit_or_rollback_with_nothing_between(r):
    db = table(r)
    db.execute("BEGIN")
    db.commit()
    db.execute("BEGIN")
    db.rollback()
    db.execute("BEGIN")
    db.execute("COMMIT")
    db.execute("BEGIN")
    db.execute("ROLLBACK")
    db.execute("SELECT count(*) FROM t")


@C.script
def begin_twice_fails_and_keeps_the_first(r):
    db = table(r)
    db.execute("BEGIN")
    db.execute("BEGIN")  # cannot start a transaction within a transaction
    db.execute("INSERT INTO t(v) VALUES ('a')")
    db.rollback()
    db.execute("SELECT count(*) FROM t")


@C.script
def begin_then_a_failing_statement_keeps_the_transaction(r):
    db = table(r)
    db.execute("BEGIN")
    db.execute("INSERT INTO nope VALUES (1)")  # no such table: the BEGIN took effect regardless
    db.execute("INSERT INTO t(v) VALUES ('b')")
    db.commit()
    db.execute("SELECT v FROM t")


@C.script
def begin_then_executemany_script_and_with(r):
    db = table(r)
    db.execute("BEGIN")
    db.executemany("INSERT INTO t(v) VALUES (?)", [("x",), ("y",)])
    db.rollback()
    db.execute("BEGIN")
    db.executescript("INSERT INTO t(v) VALUES ('s');")  # sqlite3 commits first, then runs it
    db.execute("BEGIN")
    db.block(lambda: db.raw.execute("INSERT INTO t(v) VALUES ('w')"))
    db.execute("SELECT v FROM t ORDER BY id")


@C.script
def begin_then_a_write_while_another_connection_writes(r):
    db = table(r, timeout=0.1)
    holder = r.connect()
    holder.execute("INSERT INTO t(v) VALUES ('held')")  # holds the write lock
    db.execute("BEGIN")
    db.execute("INSERT INTO t(v) VALUES ('a')")  # database is locked; the BEGIN stands
    db.execute("INSERT INTO t(v) VALUES ('b')")  # again
    holder.commit()
    db.execute("INSERT INTO t(v) VALUES ('c')")
    db.commit()
    db.execute("SELECT v FROM t ORDER BY id")


def _implicit_begin_while_another_connection_writes(r, level):
    db = table(r, timeout=0.1, isolation_level=level)
    holder = r.connect()
    holder.execute("INSERT INTO t(v) VALUES ('held')")
    db.execute("INSERT INTO t(v) VALUES ('a')")  # sqlite3's implicit BEGIN <level>, then the write
    db.execute("UPDATE t SET v = 'b'")
    holder.commit()
    db.execute("INSERT INTO t(v) VALUES ('c')")
    db.commit()
    db.execute("SELECT v FROM t ORDER BY id")


@C.script
def implicit_deferred_begin_while_another_connection_writes(r):
    _implicit_begin_while_another_connection_writes(r, "DEFERRED")


@C.script
def implicit_immediate_begin_while_another_connection_writes(r):
    _implicit_begin_while_another_connection_writes(r, "IMMEDIATE")


@C.script
def begin_on_a_private_database(r):
    db = r.connect(":memory:")
    db.execute("CREATE TABLE t(v)")
    db.execute("BEGIN")
    db.execute("INSERT INTO t VALUES (1)")
    db.rollback()
    db.execute("SELECT count(*) FROM t")


@C.script
def begin_then_close_loses_nothing_committed(r):
    db = table(r)
    db.execute("INSERT INTO t(v) VALUES ('kept')")
    db.commit()
    db.execute("BEGIN")
    db.execute("INSERT INTO t(v) VALUES ('dropped')")
    db.close()
    again = r.connect()
    again.execute("SELECT v FROM t")


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)


def _requests(monkeypatch):
    sent = []
    original = transport_client.encode_frame

    def spy(message):
        sent.append(message.get("method"))
        return original(message)

    monkeypatch.setattr(transport_client, "encode_frame", spy)
    return sent


def test_a_plain_begin_costs_no_request_of_its_own(tmp_path, monkeypatch):
    path = os.path.join(tmp_path, "rt.db")
    db = sqlite_rpc.connect(path)
    db.execute("CREATE TABLE t(v)")
    db.commit()
    sent = _requests(monkeypatch)
    db.execute("BEGIN TRANSACTION")
    assert sent == [] and db.in_transaction
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    assert sent == ["execute", "commit"]
    del sent[:]
    db.execute("BEGIN")
    db.commit()
    assert sent == [] and not db.in_transaction
    db.execute("BEGIN IMMEDIATE")  # takes a lock, may fail: sent at once
    assert sent == ["execute"]
    db.rollback()
    db.close()


def test_a_begin_first_that_fails_runs_nothing(tmp_path):
    # The protocol's promise behind the held BEGIN: when the BEGIN sent with a statement
    # fails, the statement does not run, and the error says which of the two failed.
    db = sqlite_rpc.connect(os.path.join(tmp_path, "bf.db"))
    db.execute("CREATE TABLE t(v)")
    db.commit()
    db.execute("BEGIN IMMEDIATE")  # the session is in a transaction: a second BEGIN fails
    srv = process.get_server()
    with pytest.raises(sqlite3.OperationalError, match="within a transaction") as e:
        srv.call("execute", {"session": db._session, "sql": "INSERT INTO t VALUES (1)", "begin_first": "deferred"})
    assert e.value.rpc_begin_failed
    db.commit()
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.close()


def test_held_begin_through_the_async_api(tmp_path, monkeypatch):
    import asyncio

    import sqlite_rpc.aio

    path = os.path.join(tmp_path, "aio.db")

    async def main():
        async with sqlite_rpc.aio.connect(path) as db:
            await db.execute("CREATE TABLE t(v)")
            await db.commit()
            sent = _requests(monkeypatch)
            await db.execute("BEGIN")
            assert sent == [] and db.in_transaction
            await db.execute("INSERT INTO t VALUES (1)")
            await db.rollback()
            await db.execute("BEGIN TRANSACTION")
            await db.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])  # sends the BEGIN first
            await db.commit()
            assert sent == ["execute", "rollback", "begin", "executemany", "commit"]
            assert not db.in_transaction

    asyncio.run(main())
    check = sqlite3.connect(path)
    assert check.execute("SELECT v FROM t ORDER BY v").fetchall() == [(2,), (3,)]
    check.close()
