"""sqlite3.Cursor's behaviour over a server session. Its operations are the core's
(sqlite_rpc._core), run by the blocking driver (drivers.sync)."""
from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import _core, connection as _connection
from ._core import Params, _type_name
from .conversion import _apply_text_factory, _convert
from .drivers.sync import run
from .row import Row, _view_for
from .transport.client import ServerProcess

if TYPE_CHECKING:
    from .connection import Connection

_closed_cursor = "Cannot operate on a closed cursor."
_base_cursor = "Base Cursor.__init__ not called."
_recursive = "Recursive use of cursors not allowed."


class Cursor:
    """sqlite3.Cursor's behaviour over a server session."""

    # Until __init__ has run (a subclass whose __init__ skips it), every use raises "Base
    # Cursor.__init__ not called.", as in sqlite3. These defaults let the checks run.
    _initialized = False
    _connection: Any = None
    _closed = False
    _cursor_id: Optional[int] = None
    # sqlite3's guard while the cursor runs code of the user's (the parameters' iterator and
    # adapters, converters, text_factory): using the cursor from there raises "Recursive use
    # of cursors not allowed.". Set only around that code, never across a round trip.
    _locked = False

    def __init__(self, connection: "Connection") -> None:
        if not issubclass(type(connection), _connection.Connection):
            raise TypeError("Cursor() argument 1 must be sqlite3.Connection, not %s" % _type_name(connection))  # sqlite3's words
        if self._locked:
            raise sqlite3.ProgrammingError(_recursive)
        if self._cursor_id is not None:
            self._release_server_cursor()  # a second __init__: the old result is not wanted
        self._connection = connection
        self.arraysize = 1
        self.lastrowid: Optional[int] = None
        self.rowcount = -1
        self.description: Optional[Tuple[Tuple[Any, ...], ...]] = None
        self.row_factory: Any = None
        self._rows: Tuple[Any, ...] = ()
        self._pos = 0
        self._cursor_id: Optional[int] = None
        self._closed = False
        self._converters: Optional[List[Any]] = None
        self._rowcount_when_done: Optional[int] = None
        self._result_srv: Optional[ServerProcess] = None
        self._result_session: Optional[int] = None
        connection._check_thread()
        self._initialized = True

    @property
    def connection(self) -> "Connection":
        conn: Connection = self._connection
        return conn

    # -- execution ---------------------------------------------------------------------------

    def _check(self) -> "Connection":
        # sqlite3's order: the cursor's state is reported before the connection's.
        if not self._initialized:
            raise sqlite3.ProgrammingError(_base_cursor)
        if self._closed:
            raise sqlite3.ProgrammingError(_closed_cursor)
        if self._locked:
            raise sqlite3.ProgrammingError(_recursive)
        conn: Connection = self._connection
        conn._check()
        return conn

    def _reset(self) -> None:
        self._settle_changes()
        if _core.deferred:
            _core.run_deferred()
        if self._cursor_id is not None:
            self._release_server_cursor()
        self._rows = ()
        self._pos = 0
        self.description = None
        self.rowcount = -1  # what an execute that fails leaves behind
        self._converters = None
        self._rowcount_when_done = None

    def execute(self, sql: str, parameters: Params = (), *, expect_rows: Optional[int] = None) -> "Cursor":
        """sqlite3's execute. expect_rows (an extension, see sqlite_rpc.optimistic): the
        statement must change exactly that many rows, or it is undone and ConflictError raised."""
        if not self._initialized:
            self._check()
        run(self._connection, _core.op_execute(self, sql, parameters, expect_rows))
        return self

    def _exhausted_check(self) -> None:
        if self._rowcount_when_done is not None and self._pos >= len(self._rows) and self._cursor_id is None:
            self.rowcount = self._rowcount_when_done
            self._settle_changes()

    def _settle_changes(self) -> None:
        if self._rowcount_when_done is not None:
            self._connection._total_changes += self._rowcount_when_done
            self._rowcount_when_done = None

    def executemany(self, sql: str, seq_of_parameters: Any) -> "Cursor":
        if not self._initialized:
            self._check()
        run(self._connection, _core.op_executemany(self, sql, seq_of_parameters))
        return self

    def executescript(self, sql_script: str) -> "Cursor":
        if not self._initialized:
            self._check()
        run(self._connection, _core.op_script(self, sql_script))
        return self

    # -- fetching ----------------------------------------------------------------------------

    def _more(self) -> bool:
        """Fetch the next page; False when the result is exhausted."""
        more: bool = run(self._connection, _core.op_more(self))
        return more

    def _buffered(self) -> bool:
        """A row is ready without a round trip."""
        return self._pos < len(self._rows)

    # A row is made in two steps, as sqlite3 3.11 does: its values are converted (if that
    # fails, the row is not consumed: the next fetch tries it again), then it is consumed and
    # the row factory called (if that fails, the row is gone).

    def _converted(self, raw: Tuple[Any, ...]) -> Tuple[Any, ...]:
        conv = self._converters
        tf = self._connection.text_factory
        if conv is not None or tf is not str:
            self._locked = True  # converters and text_factory may not use this cursor (sqlite3)
            try:
                if conv is not None:
                    # A converter gets the value's bytes; text_factory applies to the other columns.
                    raw = tuple(v if v is None else _convert(f, v) if f is not None else
                                _apply_text_factory(tf, v) if tf is not str and type(v) is str else v
                                for f, v in zip(conv, raw))
                else:
                    raw = tuple(_apply_text_factory(tf, v) if type(v) is str else v for v in raw)
            finally:
                self._locked = False
        return raw

    def _finish(self, raw: Tuple[Any, ...]) -> Any:
        rf = self.row_factory  # copied from the connection when the cursor was made, as sqlite3
        if rf is None:
            return raw
        if rf is Row or rf is sqlite3.Row:
            return Row(self, raw)
        if isinstance(rf, type) and issubclass(rf, Row):
            return rf(self, raw)
        # The user's factory, or a subclass of sqlite3.Row: it gets a genuine sqlite3.Cursor
        # that stands for this one (sqlite3.Row(cursor, row) insists on one).
        view = _view_for(self)
        prev, view._target = view._target, self
        try:
            return rf(view, raw)
        finally:
            view._target = prev

    def fetchone(self) -> Any:
        if not self._initialized:
            self._check()
        lock = self._connection._lock
        if lock is not None:
            with lock:
                return self._fetchone()
        return self._fetchone()

    def _fetchone(self) -> Any:
        self._check()
        while self._pos >= len(self._rows):
            if not self._more():
                return None
        raw = self._converted(self._rows[self._pos])
        self._pos += 1
        if self._rowcount_when_done is not None:
            self._exhausted_check()
        return self._finish(raw)

    def fetchmany(self, size: Optional[int] = None) -> List[Any]:
        if not self._initialized:
            self._check()
        lock = self._connection._lock
        if lock is not None:
            with lock:
                return self._fetchmany(size)
        return self._fetchmany(size)

    def _fetchmany(self, size: Optional[int] = None) -> List[Any]:
        self._check()
        n = self.arraysize if size is None else size
        if n <= 0:
            return self.fetchall()  # sqlite3 3.11 counts up to size, so 0 or less never stops it
        out: List[Any] = []
        while len(out) < n:
            row = self.fetchone()
            if row is None:
                break
            out.append(row)
        return out

    def fetchall(self) -> List[Any]:
        if not self._initialized:
            self._check()
        lock = self._connection._lock
        if lock is not None:
            with lock:
                return self._fetchall()
        return self._fetchall()

    def _fetchall(self) -> List[Any]:
        self._check()
        out: List[Any] = []
        while True:
            rows, pos = self._rows, self._pos
            if pos < len(rows):
                if self._converters is None and self.row_factory is None and self._connection.text_factory is str:
                    out.extend(rows[pos:])  # the rows as they are: no code of the user's runs
                    self._pos = len(rows)
                else:
                    # One row at a time, each consumed before the user's code sees it (a row
                    # factory may fetch from, or execute on, this very cursor, as in sqlite3).
                    converted, finish = self._converted, self._finish
                    while self._rows is rows and pos < len(rows):
                        raw = converted(rows[pos])
                        self._pos = pos + 1
                        out.append(finish(raw))
                        pos = self._pos
                    continue
            if not self._more():
                self._exhausted_check()
                return out

    def __iter__(self) -> "Cursor":
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        if self._locked:
            raise sqlite3.ProgrammingError(_recursive)
        if not self._initialized:
            raise sqlite3.ProgrammingError(_base_cursor)
        self._connection._check()  # then the connection (thread, open), not whether the cursor is closed
        if not self._closed:
            self._settle_changes()
            self._release_server_cursor()
        self._cursor_id = None
        self._rows = ()
        self._closed = True

    # -- the server-side rest of a result --------------------------------------------------------
    #
    # A result larger than a page leaves a cursor open on the server (it holds a reader
    # connection, or buffered rows) until it is read to the end. Like sqlite3 finalizing its
    # statement, the cursor releases it as soon as the rest is not wanted: re-executed,
    # closed, or collected (CPython frees a dropped `conn.execute(...)` cursor at once).

    def _release_server_cursor(self, from_del: bool = False) -> None:
        if _core.deferred and not from_del:
            _core.run_deferred()
        cid, self._cursor_id = self._cursor_id, None
        srv = self._result_srv
        # Only on the server that holds it: cursor ids are counted per server, and the next
        # server (after a restart; the parent's after a fork) may have given that id to another.
        if cid is None or srv is None or srv.dead is not None or srv.home is None or srv is not srv.home.server:
            return
        conn = self._connection
        if conn._closed or self._result_session != conn._session:
            return  # closing the session (or a second __init__ of the connection) closed its cursors
        if from_del:
            _core.send_from_del(srv, "close_cursor", {"cursor": cid})
            return
        try:
            srv.send("close_cursor", {"cursor": cid})  # reply not awaited
        except Exception:
            pass

    def __del__(self) -> None:
        try:
            if self._cursor_id is not None:
                self._release_server_cursor(from_del=True)
        except Exception:
            pass

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

Cursor.__module__ = "sqlite_rpc.dbapi"  # its public module, which re-exports it
