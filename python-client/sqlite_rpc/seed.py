"""The seed API: Database(path).execute_query / execute_update / execute_batch.

Each thread gets its own session (a connection in autocommit mode), so threads never share
a transaction; outside transaction() every call is its own atomic unit and the server
group-commits concurrent ones. Works the same on the stdlib fallback.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ._core import op_batch
from .connection import Connection
from .drivers.sync import run
from .transport import home as _home
from .transport import lookup as _lookup

Params = Union[Sequence[Any], Dict[str, Any], None]
# A thread's connection: sqlite_rpc's, or the stdlib's in fallback mode.
AnyConnection = Union[Connection, sqlite3.Connection]


class Database:
    def __init__(self, db_path: str, pool_size: Optional[int] = None, timeout: float = 30.0,
                 shared: Optional[bool] = None, replicate: Optional[str] = None) -> None:
        """pool_size: reader threads of the server; honoured when this process has no server
        of that kind yet (it is a server-wide setting, and for the shared server part of its
        identity: a shared server with that pool size is found or started), otherwise the
        running server's pool is used. shared: which server, replicate: Litestream replication
        of the file, as sqlite_rpc.connect's."""
        if pool_size is not None and _home.current(shared) is None:
            import os

            args = os.environ.get(_lookup.ENV_ARGS, "")
            if "--pool-size" not in args:
                os.environ[_lookup.ENV_ARGS] = (args + " --pool-size %d" % int(pool_size)).strip()
        self.db_path = db_path
        self.pool_size = pool_size
        self.timeout = timeout
        self.shared = shared
        self.replicate = replicate
        self._local = threading.local()
        self._all: List[AnyConnection] = []
        self._all_lock = threading.Lock()
        self._closed = False

    def _conn(self) -> AnyConnection:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        c: Optional[AnyConnection] = getattr(self._local, "conn", None)
        if c is None:
            from . import connect

            c = connect(self.db_path, timeout=self.timeout, isolation_level=None, check_same_thread=False, shared=self.shared,
                        **({"replicate": self.replicate} if self.replicate else {}))
            if type(c) is sqlite3.Connection:
                # Stdlib fallback: WAL so readers and the writer do not block each other.
                c.execute("PRAGMA journal_mode=WAL")
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    @staticmethod
    def _dicts(cur: Any) -> List[Dict[str, Any]]:
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def execute_query(self, query: str, params: Params = None) -> List[Dict[str, Any]]:
        """Rows of a SELECT as dicts keyed by column name."""
        return self._dicts(self._conn().execute(query, params or ()))

    def execute_update(self, query: str, params: Params = None, expect_rows: Optional[int] = None) -> int:
        """Run one INSERT/UPDATE/DELETE; returns the number of affected rows (durable on return).
        With expect_rows, a statement that changes another number of rows is undone and
        raises sqlite_rpc.ConflictError (optimistic locking; see sqlite_rpc.optimistic)."""
        if expect_rows is None:
            n: int = self._conn().execute(query, params or ()).rowcount
            return n
        from .optimistic import execute_expecting

        n = execute_expecting(self._conn(), query, params or (), rows=expect_rows).rowcount
        return n

    def execute_many(self, query: str, seq_of_params: Iterable[Union[Sequence[Any], Dict[str, Any]]]) -> int:
        """One statement over many parameter sets, all in one transaction; total affected rows."""
        conn = self._conn()
        if getattr(self._local, "in_tx", False):
            n: int = conn.executemany(query, seq_of_params).rowcount
            return n
        total: int = self._atomic(lambda c: c.executemany(query, seq_of_params).rowcount)
        return total

    def execute_batch(self, statements: Iterable[Tuple[str, Params]]) -> List[int]:
        """Several statements, all or nothing (inside transaction() too); affected rows of each."""
        items = [(q, p or ()) for q, p in statements]
        conn = self._conn()
        if isinstance(conn, Connection):
            # One round trip: the server runs the batch inside a single savepoint, within the
            # thread's transaction() when there is one.
            from .binding import bind

            statements_ = []
            for q, p in items:
                w = bind(q, p)
                statements_.append([q, [] if w is None else w])
            changes: List[int] = run(conn, op_batch(conn, statements_))
            return changes
        if getattr(self._local, "in_tx", False):
            conn.execute("SAVEPOINT sqlite_rpc_batch")
            try:
                out = [conn.execute(q, p).rowcount for q, p in items]
            except BaseException:
                conn.execute("ROLLBACK TO sqlite_rpc_batch")
                conn.execute("RELEASE sqlite_rpc_batch")
                raise
            conn.execute("RELEASE sqlite_rpc_batch")
            return out
        changes_: List[int] = self._atomic(lambda c: [c.execute(q, p).rowcount for q, p in items])
        return changes_

    def _atomic(self, fn: Callable[[AnyConnection], Any]) -> Any:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    @contextmanager
    def transaction(self) -> Iterator["Database"]:
        """`with db.transaction():` everything inside commits together or not at all."""
        conn = self._conn()
        if getattr(self._local, "in_tx", False):
            raise sqlite3.OperationalError("cannot start a transaction within a transaction")
        conn.execute("BEGIN IMMEDIATE")
        self._local.in_tx = True
        try:
            yield self
        except BaseException:
            self._local.in_tx = False
            if conn.in_transaction:
                # Not after a server crash: the transaction is gone already, and a failing
                # ROLLBACK would replace the error that says so.
                conn.execute("ROLLBACK")
            raise
        self._local.in_tx = False
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection (idempotent)."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:
                pass

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
