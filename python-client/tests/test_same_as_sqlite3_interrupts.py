"""Differential: an exception raised by a signal handler while a statement runs (issue 11, A2 and B).

Ctrl-C (KeyboardInterrupt) or an alarm handler (TimeoutError) can interrupt sqlite_rpc
while it waits for the server's reply. The request still runs on the server; the client
must afterwards take in its outcome, so that in_transaction, rollback() and commit() do
what they do with sqlite3 (where the statement finishes and the exception is raised just
after it). A TimeoutError, an OSError, must not be taken for a dead server: the server,
its pid and every connection's transaction stay as they were.

Each script runs on both modules and its log is compared. The statements are made slow
(a recursive CTE of a few million rows, about 0.5 s) and a SIGALRM handler raises after
0.1 s, while sqlite_rpc waits on the pipe (checked: the request is left unsettled).
"""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from typing import Any, Callable, List

import pytest

import sqlite_rpc
from sqlite_rpc import process

from _harness import exc_info, typed

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")

N = 3_000_000
SLOW = "WITH RECURSIVE c(x) AS (VALUES (1) UNION ALL SELECT x + 1 FROM c WHERE x < %d) SELECT count(*) FROM c" % N
# A result whose first page comes at once and whose second page takes the whole scan.
SLOW_PAGES = ("WITH RECURSIVE c(x) AS (VALUES (1) UNION ALL SELECT x + 1 FROM c WHERE x < %d) "
              "SELECT x FROM c WHERE x <= 5000 OR x %% 1000000 = 0" % N)


class Interrupted(Exception):
    """What an alarm handler of the user's might raise."""


class Log:
    def __init__(self, module: Any) -> None:
        self.module = module
        self.entries: List[Any] = []
        self.landed: List[bool] = []  # sqlite_rpc only: the interruption hit the wait for a reply

    def do(self, label: str, fn: Callable[[], Any]) -> Any:
        try:
            v = fn()
        except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt is an observation here
            self.entries.append([label, exc_info(e)])
            return None
        self.entries.append([label, ["ok", typed(v)]])
        return v

    def state(self, label: str, conn: Any) -> None:
        self.do(label + ": in_transaction", lambda: conn.in_transaction)

    def interrupted(self, label: str, conn: Any, fn: Callable[[], Any], exc: Any = KeyboardInterrupt) -> None:
        """fn() with a SIGALRM handler raising exc after 0.1 s."""

        def handler(signum: int, frame: Any) -> None:
            raise exc("interrupted by a signal handler")

        settled: List[bool] = []
        if self.module is sqlite_rpc and hasattr(type(conn), "_settle"):
            # Evidence that the interruption hit the wait: a request left unsettled (collected
            # by the next use of the connection, perhaps already by `with`'s rollback).
            real = conn._settle

            def spy() -> None:
                settled.append(conn._unsettled is not None)
                real()

            conn._settle = spy
        old = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        try:
            self.do(label, fn)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        if self.module is sqlite_rpc:
            self.landed.append(getattr(conn, "_unsettled", None) is not None or any(settled))


def _run(script: Callable[[Log, str], None], module: Any, folder: str) -> Log:
    os.makedirs(folder, exist_ok=True)
    log = Log(module)
    script(log, folder)
    return log


def _same(script: Callable[[Log, str], None], tmp_path: Any) -> Log:
    std = _run(script, sqlite3, str(tmp_path / "sqlite3"))
    pid = process.get_server().pid
    gen = process.generation()
    rpc = _run(script, sqlite_rpc, str(tmp_path / "sqlite_rpc"))
    assert std.entries == rpc.entries, "\n".join("%r\n  sqlite3:    %r\n  sqlite_rpc: %r" % (a[0], a[1], b[1]) for a, b in zip(std.entries, rpc.entries) if a != b)
    assert rpc.landed and all(rpc.landed), "an interruption did not land while sqlite_rpc waited for a reply: %r" % rpc.landed
    # Nothing else changed: the same server, never restarted.
    assert process.get_server().pid == pid and process.generation() == gen
    return rpc


def _table(m: Any, folder: str, name: str = "db") -> Any:
    conn = m.connect(os.path.join(folder, name + ".sqlite"))
    conn.execute("CREATE TABLE t(n INTEGER)")
    conn.commit()
    return conn


def _count(m: Any, folder: str, name: str = "db") -> Any:
    other = m.connect(os.path.join(folder, name + ".sqlite"))
    try:
        return other.execute("SELECT count(*) FROM t").fetchall()
    finally:
        other.close()


# ---- A2: Ctrl-C during a statement ------------------------------------------------------

def interrupted_insert_then_rollback(log: Log, folder: str) -> None:
    m = log.module
    conn = _table(m, folder)
    log.interrupted("INSERT (slow) in an implicit transaction", conn, lambda: conn.execute("INSERT INTO t " + SLOW) and None)
    log.state("after the interruption", conn)
    log.do("rollback", conn.rollback)
    log.state("after rollback", conn)
    log.do("commit", conn.commit)
    log.do("rows seen by this connection", lambda: conn.execute("SELECT count(*) FROM t").fetchall())
    log.do("rows seen by another connection", lambda: _count(m, folder))
    log.do("a later write and commit", lambda: (conn.execute("INSERT INTO t VALUES (7)"), conn.commit()) and None)
    log.do("rows after it", lambda: _count(m, folder))
    conn.close()


def interrupted_insert_in_with_block(log: Log, folder: str) -> None:
    m = log.module
    conn = _table(m, folder)

    def body() -> None:
        with conn:
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("INSERT INTO t " + SLOW)

    log.interrupted("with conn: INSERT; INSERT (slow)", conn, body)
    log.state("after the with block", conn)
    log.do("commit", conn.commit)
    log.do("rows seen by another connection", lambda: _count(m, folder))
    conn.close()


def interrupted_insert_then_commit(log: Log, folder: str) -> None:
    m = log.module
    conn = _table(m, folder)
    log.interrupted("INSERT (slow)", conn, lambda: conn.execute("INSERT INTO t " + SLOW) and None)
    log.do("total_changes", lambda: conn.total_changes)
    log.do("commit", conn.commit)
    log.state("after commit", conn)
    log.do("rows", lambda: _count(m, folder))
    conn.close()


# ---- B: a TimeoutError (an OSError) from an alarm handler --------------------------------

def timeout_during_a_read_keeps_every_transaction(log: Log, folder: str) -> None:
    m = log.module
    a = _table(m, folder, "a")
    b = _table(m, folder, "b")
    a.execute("INSERT INTO t VALUES (1)")
    b.execute("INSERT INTO t VALUES (2)")
    log.interrupted("SELECT (slow) in a transaction", a, lambda: a.execute(SLOW).fetchall(), TimeoutError)
    log.state("a", a)
    log.state("b", b)
    log.do("a sees its own row", lambda: a.execute("SELECT count(*) FROM t").fetchall())
    log.do("a still works", lambda: a.execute("SELECT 40 + 2").fetchall())
    log.do("b commits", b.commit)
    log.do("a commits", a.commit)
    log.do("rows of a", lambda: _count(m, folder, "a"))
    log.do("rows of b", lambda: _count(m, folder, "b"))
    a.close()
    b.close()


def timeout_during_a_write(log: Log, folder: str) -> None:
    m = log.module
    conn = _table(m, folder)
    log.interrupted("INSERT (slow)", conn, lambda: conn.execute("INSERT INTO t " + SLOW) and None, TimeoutError)
    log.state("after the TimeoutError", conn)
    log.do("rows seen by this connection", lambda: conn.execute("SELECT count(*) FROM t").fetchall())
    log.do("rollback", conn.rollback)
    log.do("rows", lambda: _count(m, folder))
    conn.close()


def other_exception_from_a_handler(log: Log, folder: str) -> None:
    m = log.module
    conn = _table(m, folder)
    conn.execute("INSERT INTO t VALUES (1)")
    log.interrupted("SELECT (slow)", conn, lambda: conn.execute(SLOW).fetchall(), Interrupted)
    log.do("a statement after it", lambda: conn.execute("SELECT count(*) FROM t").fetchall())
    log.state("then", conn)
    log.do("commit", conn.commit)
    log.do("rows", lambda: _count(m, folder))
    conn.close()


@pytest.mark.parametrize("script", [
    interrupted_insert_then_rollback,
    interrupted_insert_in_with_block,
    interrupted_insert_then_commit,
    timeout_during_a_read_keeps_every_transaction,
    timeout_during_a_write,
    other_exception_from_a_handler,
], ids=lambda f: f.__name__)
def test_same_as_sqlite3(script, tmp_path):
    _same(script, tmp_path)


def test_interrupted_iteration_loses_and_repeats_no_row(tmp_path):
    # The interrupted wait is for the second page of a result: the next fetch must hand over
    # that page (not skip it, not repeat the first).
    def script(log: Log, folder: str) -> None:
        conn = log.module.connect(os.path.join(folder, "db.sqlite"))
        cur = conn.execute(SLOW_PAGES)
        rows: List[Any] = []

        def loop() -> None:
            for row in cur:
                rows.append(row)

        log.interrupted("for row in cursor (slow second page)", conn, loop)
        log.do("rows after it", lambda: rows.extend(cur) or None)
        log.do("all rows, once each, in order", lambda: rows == [(x,) for x in range(1, 5001)] + [(x * 1000000,) for x in range(1, N // 1000000 + 1)])
        conn.close()

    _same(script, tmp_path)


def test_the_reply_of_an_interrupted_request_is_collected_once(tmp_path):
    # White box: after the interruption the request is unsettled; the next use collects its
    # reply (in_transaction from it), and nothing more is pending afterwards.
    conn = sqlite_rpc.connect(str(tmp_path / "db.sqlite"))
    conn.execute("CREATE TABLE t(n)")
    conn.commit()

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(KeyboardInterrupt):
            conn.execute("INSERT INTO t " + SLOW)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert conn._unsettled is not None  # raised while waiting, not after the statement
    assert conn.in_transaction is True  # waits for the INSERT's reply
    assert conn._unsettled is None
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()
