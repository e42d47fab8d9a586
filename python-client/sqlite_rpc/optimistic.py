"""Optimistic locking: updates that fail loudly instead of silently changing nothing.

The pattern: each row carries a version number. A writer reads the row and its version,
then updates it with ``WHERE id = ? AND version = ?`` and ``version = version + 1``. If
another writer got there first the update matches no row; plain sqlite3 reports that only
as ``rowcount == 0``, which is easy to miss. Here it raises ConflictError, and the caller
re-reads and retries::

    from sqlite_rpc.optimistic import update_versioned, retry_on_conflict

    @retry_on_conflict(attempts=5)
    def rename(conn, doc_id, title):
        version, = conn.execute("SELECT version FROM doc WHERE id = ?", (doc_id,)).fetchone()
        return update_versioned(conn, "doc", {"id": doc_id}, version, {"title": title})

On the server the guard is part of the statement (``expect_rows``): a statement that
changed another number of rows is undone by the server before the error is sent, inside a
transaction too. On a stdlib sqlite3 connection (the fallback) the same helpers emulate it
with a SAVEPOINT.
"""
from __future__ import annotations

import functools
import random
import re
import sqlite3
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, TypeVar, Union

from .connection import Connection
from .protocol import ConflictError

Params = Union[Sequence[Any], Mapping[str, Any]]
T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = ["ConflictError", "execute_expecting", "update_versioned", "retry_on_conflict"]


def _conflict(expected: int, changes: int) -> ConflictError:
    e = ConflictError("conflict: the statement changed %d row%s, %d expected; it was undone" % (changes, "" if changes == 1 else "s", expected))
    e.expected_rows = expected
    e.changes = changes
    return e


def execute_expecting(conn: Any, sql: str, params: Params = (), rows: int = 1) -> Any:
    """Run one INSERT/UPDATE/DELETE that must change exactly ``rows`` rows; otherwise undo
    it and raise ConflictError. Returns the cursor. Works on sqlite_rpc and sqlite3 connections."""
    if isinstance(conn, Connection):
        return conn.execute(sql, params, expect_rows=rows)
    # Stdlib: a savepoint makes the statement undoable. Outside a transaction it also
    # commits the statement on release, as autocommit would.
    conn.execute("SAVEPOINT sqlite_rpc_expect")
    try:
        cur = conn.execute(sql, params)
        if cur.rowcount != rows:
            raise _conflict(rows, cur.rowcount)
    except BaseException:
        try:
            conn.execute("ROLLBACK TO sqlite_rpc_expect")
            conn.execute("RELEASE sqlite_rpc_expect")
        except sqlite3.OperationalError:
            pass  # an ON CONFLICT ROLLBACK already ended the transaction, savepoint included
        raise
    conn.execute("RELEASE sqlite_rpc_expect")
    return cur


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError("not a plain SQL identifier: %r" % (name,))
    return '"%s"' % name


def update_versioned(conn: Any, table: str, key: Mapping[str, Any], expected_version: int,
                     values: Mapping[str, Any], version_column: str = "version") -> int:
    """``UPDATE table SET values..., version = version + 1 WHERE key... AND version = expected``;
    returns the new version, or raises ConflictError when the row was changed (or deleted)
    since ``expected_version`` was read. Names must be plain identifiers; values are bound."""
    if not values:
        raise ValueError("values must name at least one column to set")
    if not key:
        raise ValueError("key must name the row (e.g. {'id': 1})")
    sets = ", ".join("%s = ?" % _ident(c) for c in values)
    vc = _ident(version_column)
    where = " AND ".join("%s = ?" % _ident(c) for c in key)
    sql = "UPDATE %s SET %s, %s = %s + 1 WHERE %s AND %s = ?" % (_ident(table), sets, vc, vc, where, vc)
    execute_expecting(conn, sql, [*values.values(), *key.values(), expected_version], rows=1)
    return expected_version + 1


def retry_on_conflict(fn: Optional[Callable[..., T]] = None, *, attempts: int = 5, backoff: float = 0.005,
                      max_backoff: float = 0.2) -> Any:
    """Decorator: call again when ConflictError is raised, up to ``attempts`` times in all,
    sleeping ``backoff`` seconds (doubled each time, with jitter, at most ``max_backoff``)
    between tries. The function must re-read what it depends on each time. The last
    ConflictError propagates."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")

    def wrap(f: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> T:
            delay = backoff
            for attempt in range(1, attempts + 1):
                try:
                    return f(*args, **kwargs)
                except ConflictError:
                    if attempt == attempts:
                        raise
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, max_backoff)
            raise AssertionError("unreachable")

        return run

    return wrap(fn) if fn is not None else wrap
