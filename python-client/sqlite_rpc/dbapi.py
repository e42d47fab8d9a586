"""PEP 249 objects that behave like the stdlib sqlite3's: Connection, Cursor, Row.

Exceptions are sqlite3's own classes. Transactions follow sqlite3's legacy mode (Python
3.11): an implicit BEGIN before INSERT/UPDATE/DELETE/REPLACE when none is open, sent in
the same round trip as the statement; commit()/rollback() without a transaction cost
nothing; the context manager commits or rolls back and does not close.
"""
from __future__ import annotations

import collections
import collections.abc
import itertools
import operator
import os
import re
import sqlite3
import threading
from stat import S_ISDIR
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import parse_qs, unquote_to_bytes, urlparse

import msgpack

from . import _core, binding, process
from ._core import (  # noqa: F401 - also names that code and tests reach as dbapi's
    _DML, Op, Params, _description, _strip_colname, _type_name, _written_files)
from ._core import deferred as _deferred
from ._core import run_deferred as _run_deferred
from ._core import send_from_del as _send_from_del
from .process import ServerProcess
from ._taxonomy import REASON_NO_SUCH_COLLATION, REASON_NO_SUCH_FUNCTION


_closed_db = "Cannot operate on a closed database."
# Open file connections per (server, absolute path) in this process: the last close of a file waits.
_open_files: Dict[Tuple[int, str], int] = {}
_open_files_lock = threading.Lock()
_closed_cursor = "Cannot operate on a closed cursor."
_base_connection = "Base Connection.__init__ not called."
_base_cursor = "Base Cursor.__init__ not called."
_recursive = "Recursive use of cursors not allowed."


def _forget_key(key: Tuple[int, str]) -> bool:
    """One connection fewer to key's file (under _open_files_lock); True if it was the last."""
    n = _open_files.get(key, 1) - 1
    if n > 0:
        _open_files[key] = n
        return False
    _open_files.pop(key, None)
    return True


def _forget_key_locked(key: Tuple[int, str]) -> None:
    with _open_files_lock:
        _forget_key(key)


# -- the blocking driver: runs the core's operations (sqlite_rpc._core) with blocking round trips --


def _run(conn: "Connection", op: Op) -> Any:
    """Drive an operation with blocking round trips; its result is the generator's return value."""
    lock = conn._lock
    if lock is not None:  # a connection shared by threads: one operation at a time
        with lock:
            return _drive(conn, op)
    return _drive(conn, op)


def _drive(conn: "Connection", op: Op) -> Any:
    if conn._unsettled is not None:
        conn._settle()  # the op reads the connection's state (in_transaction) before it sends anything
    step = _core.Steps(op)
    req = step.first()
    while req is not None:
        try:
            if req[0] is _core.AHEAD:
                res = conn._send_ahead(req[1], req[2])
            elif req[0] is _core.COLLECT:
                res = conn._collect(req[1])
            else:
                res = conn._rpc(*req)
        except Exception as e:
            req = step.throw(e)
        else:
            req = step.send(res)
    return step.result


_DEFAULT = object()



_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


class Row:
    """sqlite3.Row's semantics: index or (case-insensitive) name, keys(), equality, hashing."""

    __slots__ = ("_description", "_values", "_index")

    def __init__(self, cursor: Any, values: Tuple[Any, ...]) -> None:
        # sqlite3's checks of the types themselves (a __class__ that claims one does not pass).
        if not issubclass(type(cursor), (Cursor, sqlite3.Cursor)):
            raise TypeError("Row() argument 1 must be sqlite3.Cursor, not %s" % _type_name(cursor))  # sqlite3's words
        if not issubclass(type(values), tuple):
            raise TypeError("Row() argument 2 must be tuple, not %s" % _type_name(values))
        self._description = cursor.description
        self._values = tuple(values)
        self._index: Optional[Dict[str, int]] = None

    def _lookup(self, key: str) -> int:
        idx = self._index
        if idx is None:
            idx = {}
            for i, d in enumerate(self._description or ()):
                idx.setdefault(d[0].translate(_ASCII_LOWER), i)
            self._index = idx
        try:
            return idx[key.translate(_ASCII_LOWER)]  # sqlite3 folds ASCII letters only
        except KeyError:
            raise IndexError("No item with that key") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._lookup(key)]
        if isinstance(key, (int, slice)):
            return self._values[key]
        raise IndexError("Index must be int or string")

    def keys(self) -> List[str]:
        return [d[0] for d in (self._description or ())]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._description == other._description and self._values == other._values

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self) -> int:
        return hash(tuple(d[0] for d in (self._description or ()))) ^ hash(self._values)

    def __repr__(self) -> str:
        return "<sqlite_rpc.Row %r>" % (self._values,)


collections.abc.Sequence.register(Row)  # as sqlite3 registers sqlite3.Row


def _normalise_row_factory(f: Any) -> Any:
    # Code written for the stdlib sets sqlite3.Row; it cannot wrap our cursor, ours can.
    return Row if f is sqlite3.Row else f


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
        if not issubclass(type(connection), Connection):
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
        return self._connection

    # -- execution ---------------------------------------------------------------------------

    def _check(self) -> "Connection":
        # sqlite3's order: the cursor's state is reported before the connection's.
        if not self._initialized:
            raise sqlite3.ProgrammingError(_base_cursor)
        if self._closed:
            raise sqlite3.ProgrammingError(_closed_cursor)
        if self._locked:
            raise sqlite3.ProgrammingError(_recursive)
        conn = self._connection
        conn._check()
        return conn

    def _reset(self) -> None:
        self._settle_changes()
        if _deferred:
            _run_deferred()
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
        _run(self._connection, _core.op_execute(self, sql, parameters, expect_rows))
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
        _run(self._connection, _core.op_executemany(self, sql, seq_of_parameters))
        return self

    def executescript(self, sql_script: str) -> "Cursor":
        if not self._initialized:
            self._check()
        _run(self._connection, _core.op_script(self, sql_script))
        return self

    # -- fetching ----------------------------------------------------------------------------

    def _more(self) -> bool:
        """Fetch the next page; False when the result is exhausted."""
        return _run(self._connection, _core.op_more(self))

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
        out = []
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
        if _deferred and not from_del:
            _run_deferred()
        cid, self._cursor_id = self._cursor_id, None
        srv = self._result_srv
        # Only on the server that holds it: cursor ids are counted per server, and the next
        # server (after a restart; the parent's after a fork) may have given that id to another.
        if cid is None or srv is None or srv.dead is not None or srv is not srv.home.server:
            return
        conn = self._connection
        if conn._closed or self._result_session != conn._session:
            return  # closing the session (or a second __init__ of the connection) closed its cursors
        if from_del:
            _send_from_del(srv, "close_cursor", {"cursor": cid})
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



def _convert(f: Any, v: Any) -> Any:
    b = _as_bytes(v)
    # sqlite3 calls the converter with sqlite3_column_blob's bytes, which is NULL for an
    # empty value (BLOB or TEXT): then the column is None and the converter is not called.
    return f(b) if b else None


def _as_bytes(v: Any) -> bytes:
    """What sqlite3_column_blob gives a converter: SQLite's text for numbers."""
    t = type(v)
    if t is bytes:
        return v
    if t is str:
        return v.encode("utf-8")
    if t is float:
        return _real_text(v).encode("ascii")
    return str(v).encode("ascii")


def _real_text(v: float) -> str:
    # SQLite's "%!.15g": 15 significant digits, and always a '.0' in the mantissa.
    if v != v or v in (float("inf"), float("-inf")):
        return "Inf" if v > 0 else "-Inf" if v < 0 else ""
    if v == 0:
        return "0.0"
    s = "%.15g" % v
    mantissa, e, exp = s.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exp


def _apply_text_factory(tf: Any, v: str) -> Any:
    if tf is bytes:
        return v.encode("utf-8")
    return tf(v.encode("utf-8"))


class Connection:
    """sqlite3.Connection's behaviour over a server session."""

    # sqlite3's exception classes are reachable from the connection, as PEP 249 suggests.
    Warning = sqlite3.Warning
    Error = sqlite3.Error
    InterfaceError = sqlite3.InterfaceError
    DatabaseError = sqlite3.DatabaseError
    DataError = sqlite3.DataError
    OperationalError = sqlite3.OperationalError
    IntegrityError = sqlite3.IntegrityError
    InternalError = sqlite3.InternalError
    ProgrammingError = sqlite3.ProgrammingError
    NotSupportedError = sqlite3.NotSupportedError

    # Until __init__ has run (a subclass whose __init__ skips it), or after a second
    # __init__ failed to open its database, every use raises "Base Connection.__init__ not
    # called.", as in sqlite3. These defaults let the checks run on such an object.
    _initialized = False
    _closed = False
    _check_same_thread = False
    _lock: Any = None
    _unsettled: Any = None
    _file_key: Optional[Tuple[int, str]] = None

    def __init__(
        self,
        database: Any,
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: Optional[str] = "",
        check_same_thread: bool = True,
        factory: Any = None,
        cached_statements: int = 128,
        uri: bool = False,
        *,
        slow_query_ms: Optional[int] = None,
        keep_open: bool = False,
        shared: Optional[bool] = None,
        _server: Optional[ServerProcess] = None,
    ) -> None:
        # sqlite3's argument conversions, with its messages. A second __init__ that fails
        # here leaves the connection as it was.
        if not isinstance(timeout, (int, float)):
            if not hasattr(type(timeout), "__float__") and not hasattr(type(timeout), "__index__"):
                raise TypeError("must be real number, not %s" % type(timeout).__name__)
            timeout = float(timeout)
        detect_types = operator.index(detect_types)
        level = _isolation_level_value(isolation_level)
        database = _file_name(database)
        if self._initialized:
            # A second __init__ (sqlite3: the old database is closed, its transaction rolled
            # back; if the new one cannot be opened, the connection is left uninitialised).
            self._initialized = False
            if not self._closed:
                self._closed = True
                self._close_session()
        path, readonly, create = _resolve_database(database, uri)
        self._thread = threading.get_ident()
        self._check_same_thread = check_same_thread
        self._lock = threading.RLock() if not check_same_thread else None
        self._closed = False
        self._in_tx = False
        # A plain BEGIN not sent yet: in_transaction is already true; the next request carries it.
        self._held_begin = False
        # A request whose wait for the reply an exception from a signal handler cut short
        # (srv, slot, method, on_settle): the next use of the connection collects the reply.
        self._unsettled: Optional[Tuple[ServerProcess, Any, str, Optional[Callable[[Any], None]]]] = None
        self._last_rowid = 0
        self._total_changes = 0
        self._isolation_level: Optional[str] = level
        self.row_factory: Any = None
        self.text_factory: Any = str
        self._detect_types = detect_types
        self._detect_decltypes = bool(detect_types & sqlite3.PARSE_DECLTYPES)
        self._detect_colnames = bool(detect_types & sqlite3.PARSE_COLNAMES)
        self._database = path
        self._private = path in (":memory:", "")
        self._broken: Optional[str] = None
        self._srv = _server or process.get_server(shared)
        self._home: process.Home = self._srv.home  # type: ignore[assignment]  # private or shared: where a new server comes from
        self._gen = self._home.generation
        self._session = self._srv.new_session_id()
        # open is pipelined: its reply is collected by the first request that needs it.
        self._open_params = {"session": self._session, "path": path, "readonly": readonly, "timeout": float(timeout)}
        self._open_params.update(_file_name_context(uri))
        self._busy_ms = int(timeout * 1000)  # what PRAGMA busy_timeout reports (sqlite3 sets the connection's so)
        if not create:
            self._open_params["create"] = False
        if slow_query_ms is not None:
            # The server's threshold for this database file (every session of it), not just this connection.
            self._open_params["slow_query_ms"] = operator.index(slow_query_ms)
        if keep_open:
            self._open_params["keep_open"] = True
        self._reopen = False
        # Corked: it leaves with the first statement, in one write; a connection closed unused never sends it.
        self._open_slot: Any = self._srv.send("open", self._open_params, cork=True)
        self._file_key: Optional[Tuple[int, str]] = None
        if not self._private and not keep_open:
            # The last close of a file in this process waits for the server to fold the WAL in.
            self._file_key = (id(self._srv), path)  # (_resolve_database made it absolute)
            with _open_files_lock:
                _open_files[self._file_key] = _open_files.get(self._file_key, 0) + 1
        self._initialized = True

    # -- plumbing ----------------------------------------------------------------------------

    def _frame_limit(self) -> int:
        caps = (getattr(self._srv, "info", None) or {}).get("capabilities", {})
        return int(caps.get("max_frame_bytes") or (64 << 20))

    def _check_open(self) -> None:
        """sqlite3's pysqlite_check_connection."""
        if not self._initialized:
            raise sqlite3.ProgrammingError(_base_connection)
        if self._closed:
            raise sqlite3.ProgrammingError(_closed_db)

    def _check_thread(self) -> None:
        """sqlite3's pysqlite_check_thread."""
        if self._check_same_thread and threading.get_ident() != self._thread:
            raise sqlite3.ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                "The object was created in thread id %d and this is thread id %d." % (self._thread, threading.get_ident())
            )

    def _check(self) -> None:
        # sqlite3's order: the thread, then the connection.
        if self._check_same_thread and threading.get_ident() != self._thread:
            self._check_thread()
        if not self._initialized or self._closed:
            self._check_open()

    def _rpc(self, method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]] = None) -> Any:
        lock = self._lock
        if lock is not None:
            with lock:
                return self._rpc_unlocked(method, params, on_settle)
        return self._rpc_unlocked(method, params, on_settle)

    def _exchange(self, srv: ServerProcess, method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]]) -> Any:
        """Send one request (behind the pipelined open, if any) and wait for its reply.

        An exception raised meanwhile by a signal handler (Ctrl-C's KeyboardInterrupt, an
        alarm handler's TimeoutError) reaches the caller, but the request is on its way and
        the server applies it: it is noted as unsettled, and the connection's next use
        collects its reply first (_settle), so that the client's view of the session, above
        all in_transaction, stays the server's."""
        return self._finish(srv, self._start(srv, method, params, on_settle), method, on_settle)

    def _start(self, srv: ServerProcess, method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]]) -> Any:
        """_exchange's send: the request's slot."""
        if _deferred:
            _run_deferred()
        _core.reopen_if_due(self, srv)
        try:
            return srv.send(method, params)
        except BaseException as e:
            late = process.interrupted_slot(e)
            if late is not None:
                self._unsettled = (srv, late, method, on_settle)
            raise

    def _finish(self, srv: ServerProcess, slot: Any, method: str, on_settle: Optional[Callable[[Any], None]]) -> Any:
        """_exchange's wait: the reply to slot's request (behind the pipelined open, if any)."""
        waiting = None
        try:
            opened = self._open_slot
            if opened is not None:
                # Pipelined behind the open: one round trip for connect + first statement.
                waiting = opened
                _core.opened(self, srv, opened)  # raises the open error (e.g. unable to open database file)
            waiting = slot
            return srv.wait(slot)
        except BaseException as e:
            if not _core.is_reply_error(waiting, e):
                self._unsettled = (srv, slot, method, on_settle)
            raise

    def _settle(self) -> None:
        """Collect the reply of the request an interruption left unsettled, and take in what
        it says (in_transaction, changes, rowid; a page for its cursor). Its error, if it
        failed, is not raised: the caller of that request got the interruption instead."""
        pending = self._unsettled
        if pending is None:
            return
        srv, slot, method, on_settle = pending
        if _core.late_reply_lost(self, srv, slot):
            self._unsettled = None
            return
        try:
            res = srv.wait(slot)
        except BaseException as e:
            if not _core.is_reply_error(slot, e):
                raise  # interrupted again: still unsettled
            self._unsettled = None
            _core.note_error(self, e)
            return
        self._unsettled = None
        _core.take_late_reply(self, res, on_settle)

    def _resync(self) -> None:
        """_settle, under the connection's lock when it has one."""
        lock = self._lock
        if lock is not None:
            with lock:
                self._settle()
        else:
            self._settle()

    # The request path: the core's prepare() before a request, its failed() after an error
    # (the recovery policy, shared with aio's driver), and this driver's sending and waiting.

    def _rpc_unlocked(self, method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]] = None) -> Any:
        return self._collect(self._send_ahead(method, params, on_settle))

    def _send_ahead(self, method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]] = None) -> Any:
        """Send a request; _collect waits for its reply (an op may send several first)."""
        srv, params, before = _core.prepare(self, method, params)
        if before is not None:
            self._rpc_unlocked(*before)
        return (srv, self._start(srv, method, params, on_settle), method, params, on_settle)

    def _collect(self, handle: Any) -> Any:
        srv, slot, method, params, on_settle = handle
        try:
            return self._finish(srv, slot, method, on_settle)
        except process.ServerError:
            raise
        except sqlite3.Error as e:
            srv, again = _core.failed(self, e, method, params)
        return self._exchange(srv, method, again, on_settle)

    def _discard_cursor(self, cursor_id: int) -> None:
        try:
            self._srv.send("close_cursor", {"cursor": cursor_id})  # reply not awaited
        except Exception:
            pass

    def _begin_mode_for(self, sql: str) -> Optional[str]:
        level = self._isolation_level
        if level is None or self._in_tx or not _DML.match(sql):
            return None
        return level.lower() if level else "deferred"

    def _converters_for(self, cols: Sequence[str], decltypes: Optional[Sequence[Optional[str]]]) -> Optional[List[Any]]:
        convs: List[Any] = []
        found = False
        for i, name in enumerate(cols):
            f = None
            if self._detect_colnames:
                # sqlite3: the text between the last '[' before the first following ']' and it.
                start = -1
                for j, ch in enumerate(name):
                    if ch == "[":
                        start = j + 1
                    elif ch == "]" and start >= 0:
                        f = sqlite3.converters.get(name[start:j].upper())  # type: ignore[attr-defined]
                        break
            if f is None and self._detect_decltypes and decltypes and decltypes[i]:
                # sqlite3: the declared type up to the first '(' or blank ("INTEGER NOT NULL").
                key = re.split(r"[( ]", decltypes[i], 1)[0]  # type: ignore[arg-type]
                f = sqlite3.converters.get(key.upper())  # type: ignore[attr-defined]
            found = found or f is not None
            convs.append(f)
        return convs if found else None

    # -- public API --------------------------------------------------------------------------

    @property
    def isolation_level(self) -> Optional[str]:
        self._check_open()
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Optional[str]) -> None:
        if value is None:
            # sqlite3: autocommit from now on, and a pending transaction is committed (which
            # checks the connection; the level is None even if that fails).
            self._isolation_level = None
            self.commit()
            return
        self._isolation_level = _isolation_level_value(value)  # sqlite3 stores (and returns) the canonical spelling

    # These getters check that the connection is open, not the thread (as sqlite3's).
    @property
    def in_transaction(self) -> bool:
        self._check_open()
        if self._unsettled is not None:
            self._resync()  # in doubt: the server's answer
        return self._in_tx

    @property
    def total_changes(self) -> int:
        self._check_open()
        if self._unsettled is not None:
            self._resync()
        return self._total_changes

    def cursor(self, factory: Any = _DEFAULT) -> Cursor:
        self._check()
        if factory is _DEFAULT:
            factory = Cursor
        elif isinstance(factory, type) and issubclass(factory, sqlite3.Cursor) and not issubclass(factory, Cursor):
            factory = _cursor_class_for(factory)  # sqlite3.Cursor or a subclass (Django's backend)
        cur = factory(self)  # (None: "'NoneType' object is not callable", as sqlite3)
        if not issubclass(type(cur), Cursor):  # the type, not a __class__ that claims one (PyObject_TypeCheck)
            raise TypeError("factory must return a cursor, not %s" % type(cur).__name__)
        if self.row_factory is not None:
            cur.row_factory = self.row_factory  # sqlite3 copies it when the cursor is made
        return cur

    def execute(self, sql: str, parameters: Params = (), *, expect_rows: Optional[int] = None) -> Cursor:
        return self.cursor().execute(sql, parameters, expect_rows=expect_rows)

    def executemany(self, sql: str, parameters: Any) -> Cursor:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str) -> Cursor:
        return self.cursor().executescript(sql_script)

    def commit(self) -> None:
        self._check()
        _run(self, _core.op_end(self, "commit"))

    def rollback(self) -> None:
        self._check()
        _run(self, _core.op_end(self, "rollback"))

    def close(self) -> None:
        self._check_thread()
        if not self._initialized:
            raise sqlite3.ProgrammingError(_base_connection)
        if self._closed:
            return
        self._closed = True
        self._close_session()

    def _close_session(self) -> None:
        if _deferred:
            _run_deferred()
        srv = self._srv
        live = srv.dead is None and self._gen == self._home.generation
        key, self._file_key = self._file_key, None
        opened, self._open_slot = self._open_slot, None
        try:
            # close rolls back server-side. Its reply is awaited only at the last close of a file
            # in this process, and only if the process may have written it since the last such
            # wait: the server then folds the WAL into the file, and a copy of the .db alone
            # made after close() returns holds every committed row, as with sqlite3.
            # Counting and sending go together, so the server sees this process's closes of a
            # file in the order they were counted: the last one counted is the last it gets.
            # A close not waited for is a notification: no reply to write and read.
            with _open_files_lock:
                last = key is not None and _forget_key(key)
                if last:
                    last = key in _written_files
                    _written_files.discard(key)
                slot = None
                if not live or (opened is not None and srv.uncork(opened)):
                    pass  # nothing to close: the server never heard of this session
                elif last:
                    slot = srv.send("close", {"session": self._session})
                else:
                    srv.notify("close", {"session": self._session})
            if slot is not None:
                if opened is not None:
                    try:
                        srv.wait(opened)
                    except sqlite3.Error:
                        pass
                srv.wait(slot)
        except Exception:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None and exc is None and tb is None:
            try:
                self.commit()
            except BaseException:
                # sqlite3 (3.11's pysqlite_connection_exit_impl): a failed commit is rolled back,
                # to unlock the database, and its error raised (a failing rollback's instead,
                # chained to it).
                self.rollback()
                raise
        else:
            try:
                self.rollback()
            except sqlite3.Error:
                pass
        return False

    def __del__(self) -> None:
        # Run by the cycle collector anywhere, perhaps while this thread writes a request or
        # holds _open_files_lock: it waits for neither (see _deferred).
        try:
            if not self._initialized or self._closed:
                return
            self._closed = True
            key, self._file_key = self._file_key, None
            if key is not None:
                if _open_files_lock.acquire(False):
                    try:
                        _forget_key(key)
                    finally:
                        _open_files_lock.release()
                else:
                    _deferred.append(lambda: _forget_key_locked(key))
            srv = self._srv
            if srv.dead is None and self._gen == self._home.generation:
                opened = self._open_slot
                if opened is not None and srv.uncork(opened, wait=False):
                    return  # never sent: the server never heard of this session
                _send_from_del(srv, "close", {"session": self._session})
        except Exception:
            pass

    def iterdump(self) -> Iterator[str]:
        self._check_open()  # at the call, as sqlite3 (the dump itself is lazy)
        from sqlite3.dump import _iterdump  # the stdlib's own dump, over our cursor API

        return _iterdump(self)

    def interrupt(self) -> None:
        self._check_open()  # sqlite3 checks the connection (from any thread) first
        raise sqlite3.NotSupportedError("interrupt() is not supported by sqlite-rpc")

    # -- user-defined functions and collations -----------------------------------------------
    #
    # sqlite3 runs them inside SQLite, in this process; here SQLite runs in the server. So that
    # code registering them when it connects (SQLAlchemy's regexp, peewee's and Django's
    # backends) works, registering is accepted (with sqlite3's argument checks) and
    # remembered; a statement that uses one fails when it runs, with NotSupportedError naming
    # it (in place of the server's "no such function" / "no such collation sequence").

    def _register_udf(self, table: str, name: str, remove: bool) -> None:
        key = name.translate(_ASCII_LOWER)
        names = self.__dict__.setdefault(table, {})
        if remove:
            names.pop(key, None)
        else:
            names[key] = name

    def _register_function(self, argname: str, name: str, narg: Any, remove: bool, bad_narg: Exception) -> None:
        """create_function / create_aggregate / create_window_function: sqlite3's checks, in its order."""
        self._check()
        _udf_name(argname, name)
        narg = _c_int(narg)
        if narg < -1 or narg > 127:
            raise bad_narg
        self._register_udf("_udf_functions", name, remove)

    def create_function(self, name: str, narg: int, func: Any, *, deterministic: bool = False) -> None:
        self._register_function("create_function() argument 'name'", name, narg, func is None, sqlite3.OperationalError("Error creating function"))

    def create_aggregate(self, name: str, n_arg: int, aggregate_class: Any) -> None:
        self._register_function("create_aggregate() argument 'name'", name, n_arg, aggregate_class is None, sqlite3.OperationalError("Error creating aggregate"))

    def create_window_function(self, name: str, num_params: int, aggregate_class: Any, /) -> None:
        self._register_function("create_window_function() argument 1", name, num_params, aggregate_class is None, sqlite3.ProgrammingError("bad parameter or other API misuse"))

    def create_collation(self, name: str, callable: Any, /) -> None:  # noqa: A002 - sqlite3's name
        self._check()
        _udf_name("create_collation() argument 1", name)
        if callable is not None and not _callable(callable):
            raise TypeError("parameter must be callable")
        self._register_udf("_udf_collations", name, callable is None)

    # Callbacks sqlite3 calls from inside SQLite: clearing one (None) is accepted, as it
    # changes nothing here; setting one is not supported.

    def set_trace_callback(self, trace_callback: Any) -> None:
        self._check()
        if trace_callback is not None:
            self._unsupported("set_trace_callback")()

    def set_authorizer(self, authorizer_callback: Any) -> None:
        self._check()
        if authorizer_callback is not None:
            self._unsupported("set_authorizer")()

    def set_progress_handler(self, progress_handler: Any, n: int) -> None:
        self._check()
        if progress_handler is not None:
            self._unsupported("set_progress_handler")()

    def _udf_error(self, e: BaseException) -> Optional[BaseException]:
        """NotSupportedError for the server's no_such_function / no_such_collation (data.reason) when
        the function or collation it names was registered here."""
        if not isinstance(e, sqlite3.OperationalError):
            return None
        reason, missing = getattr(e, "rpc_reason", None), getattr(e, "rpc_name", None)
        if reason not in (REASON_NO_SUCH_FUNCTION, REASON_NO_SUCH_COLLATION) or not isinstance(missing, str):
            return None
        table, what = ("_udf_collations", "collation") if reason == REASON_NO_SUCH_COLLATION else ("_udf_functions", "function")
        name = self.__dict__.get(table, {}).get(missing.translate(_ASCII_LOWER))
        if name is None:
            return None
        err = sqlite3.NotSupportedError(
            "user-defined %s %s%s is not supported by sqlite-rpc: it was registered with create_%s(), and "
            "registered Python code runs in this process while the database runs in the sqlite-rpc server (%s)"
            % (what, name, "()" if what == "function" else "", "collation" if what == "collation" else "function", e))
        err.sqlite_errorname = getattr(e, "sqlite_errorname", None)  # type: ignore[attr-defined]
        err.sqlite_errorcode = getattr(e, "sqlite_errorcode", None)  # type: ignore[attr-defined]
        return err

    def _unsupported(self, name: str) -> Callable[..., Any]:
        def f(*a: Any, **k: Any) -> Any:
            self._check()  # sqlite3 checks the thread and the connection first
            raise sqlite3.NotSupportedError("%s() is not supported by sqlite-rpc: the database runs in another process" % name)

        return f

    def __getattr__(self, name: str) -> Any:
        if name in ("enable_load_extension", "load_extension", "backup",
                    "blobopen", "serialize", "deserialize", "setlimit", "getlimit"):
            return self._unsupported(name)
        raise AttributeError("'%s' object has no attribute '%s'" % (type(self).__name__, name))



def _cantopen() -> sqlite3.OperationalError:
    e = sqlite3.OperationalError("unable to open database file")
    e.sqlite_errorname, e.sqlite_errorcode = "SQLITE_CANTOPEN", sqlite3.SQLITE_CANTOPEN  # type: ignore[attr-defined]
    return e


def _file_name_context(uri: bool) -> Dict[str, Any]:
    """open's `cwd` and `uri`: the server resolves a relative file name in ATTACH and VACUUM
    INTO against this process's current folder (as sqlite3 does), and reads a `file:` name
    there as a URI only for a connection opened with uri=True."""
    out: Dict[str, Any] = {"uri": True} if uri else {}
    try:
        out["cwd"] = os.getcwd()
    except OSError:  # the current folder was removed: the server's own is used
        pass
    return out


def _uri_boolean(v: str) -> bool:
    """sqlite3_uri_boolean(): yes/true/on and any non-zero number are true; anything else false."""
    v = v.strip().lower()
    if v in ("yes", "true", "on"):
        return True
    try:
        return int(v) != 0
    except ValueError:
        return False


def _file_name(database: Any) -> str:
    """The database argument as a str, as sqlite3 takes it (PyUnicode_FSConverter: str, bytes
    or os.PathLike; bytes that are not UTF-8 come back with surrogate escapes)."""
    if hasattr(type(database), "__fspath__") and not isinstance(database, (str, bytes)):
        database = os.fspath(database)
    if isinstance(database, bytes):
        database = os.fsdecode(database)
    if not isinstance(database, str):
        raise TypeError("expected str, bytes or os.PathLike object, not %s" % type(database).__name__)
    os.fsencode(database)  # a lone surrogate that is no escaped byte: UnicodeEncodeError, as sqlite3
    if "\x00" in database:
        raise ValueError("embedded null byte")  # sqlite3's (PyUnicode_FSConverter)
    return database


_LEVELS = {b"": "", b"DEFERRED": "DEFERRED", b"IMMEDIATE": "IMMEDIATE", b"EXCLUSIVE": "EXCLUSIVE"}
_CANONICAL_LEVELS = frozenset(_LEVELS.values())


def _isolation_level_value(value: Any) -> Optional[str]:
    """sqlite3's isolation_level converter: None, or the canonical spelling of a level named
    by the string itself (ASCII letters in any case; a str subclass's methods are not used)."""
    if value is None:
        return None
    if type(value) is str and value in _CANONICAL_LEVELS:
        return value  # already canonical (the default "", say)
    if not isinstance(value, str):
        raise TypeError("isolation_level must be str or None")
    raw = str.encode(value, "utf-8")  # a lone surrogate: UnicodeEncodeError, as sqlite3
    if b"\x00" in raw:
        raise ValueError("embedded null character")
    level = _LEVELS.get(raw.upper())  # bytes.upper: ASCII only, as sqlite3_stricmp
    if level is None:
        raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'")
    return level


def _not_utf8(name: Union[str, bytes]) -> sqlite3.NotSupportedError:
    return sqlite3.NotSupportedError(
        "cannot open database file %r: its name is not valid UTF-8, and the sqlite-rpc server "
        "takes file names as UTF-8 text (sqlite3 would open it)" % (name,))


def _resolve_database(database: str, uri: bool) -> Tuple[str, bool, bool]:
    """(path, readonly, create) for open. Failures sqlite3.connect reports at once are raised
    here: the open request itself is pipelined and would only fail at the first statement."""
    readonly, create = False, True
    if uri and database.startswith("file:"):
        u = urlparse(database)
        q = parse_qs(u.query)
        mode = (q.get("mode") or [""])[0]
        try:
            # SQLite takes the bytes the %-escapes spell; a name that is no UTF-8 cannot be
            # sent (decoding it with U+FFFD in place would open another file).
            path = unquote_to_bytes(u.path).decode("utf-8") if u.path else ""
        except UnicodeDecodeError:
            raise _not_utf8(unquote_to_bytes(u.path)) from None
        if mode == "memory" or path in (":memory:", ""):
            return ":memory:", False, True
        # immutable=1: SQLite takes the file for unchangeable and refuses every write
        # ("attempt to write a readonly database"), as a read-only session does.
        readonly = _uri_boolean((q.get("immutable") or ["0"])[0])
        if mode == "ro":
            readonly, create = True, False
        elif mode == "rw":
            create = False
        elif mode not in ("rwc", ""):
            e = sqlite3.OperationalError("no such access mode: %s" % mode)
            e.sqlite_errorname, e.sqlite_errorcode = "SQLITE_ERROR", sqlite3.SQLITE_ERROR  # type: ignore[attr-defined]
            raise e
        database = path
    if database in (":memory:", ""):
        return database, False, True
    try:
        database.encode("utf-8")
    except UnicodeEncodeError:
        raise _not_utf8(os.fsencode(database)) from None  # undecodable bytes, surrogate-escaped
    database = os.path.abspath(database)
    try:
        mode: Optional[int] = os.stat(database).st_mode
    except (OSError, ValueError):
        mode = None  # (what os.path.exists says False to)
    if mode is not None and S_ISDIR(mode):
        raise _cantopen()
    # What sqlite3.connect refuses is found here, and a missing file is created, as sqlite3
    # does; an existing file is never opened: closing any descriptor of a file drops every
    # POSIX lock this process holds on it (a stdlib connection's transaction, say).
    if mode is not None:
        if not os.access(database, os.R_OK):  # SQLite opens read-write, else read-only
            raise _cantopen()
    elif not create:
        raise _cantopen()
    else:
        try:
            os.close(os.open(database, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644))
        except FileExistsError:
            pass  # made meanwhile by someone else
        except OSError:
            raise _cantopen() from None
    # Absolute: the server's working directory is the one this process had when it started
    # the server, and a "file:" prefix without uri=True is part of the file name.
    return database, readonly, create


# ---- sqlite3.Cursor / sqlite3.Row subclasses over our cursors ---------------------------------

def _udf_name(what: str, name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError("%s must be str, not %s" % (what, type(name).__name__))
    if "\x00" in name:
        raise ValueError("embedded null character")


def _c_int(v: Any) -> int:
    v = operator.index(v)
    if not -(2**31) <= v < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    return v


_callable = callable
_stand_in: Optional[sqlite3.Connection] = None
_stand_in_lock = threading.Lock()


def _stand_in_connection() -> sqlite3.Connection:
    """A private in-memory stdlib connection. It initialises the sqlite3.Cursor part of the
    classes below and names their columns for sqlite3.Row, which reads its cursor's C-level
    description; it never sees the user's data."""
    global _stand_in
    with _stand_in_lock:
        if _stand_in is None:
            _stand_in = sqlite3.connect(":memory:", check_same_thread=False)
        return _stand_in


class _StdCursor(Cursor, sqlite3.Cursor):  # type: ignore[misc]
    """Our cursor as a sqlite3.Cursor, for cursor(factory=sqlite3.Cursor or a subclass of it):
    Django's backend makes its cursors so. The sqlite3.Cursor part only satisfies isinstance
    and super(); it is initialised on the stand-in connection and never runs anything."""

    # Instance attributes of ours that sqlite3.Cursor has as (some read-only) C members.
    __slots__ = ("arraysize", "lastrowid", "rowcount", "description", "row_factory")

    def __init__(self, connection: "Connection", *args: Any, **kwargs: Any) -> None:
        sqlite3.Cursor.__init__(self, _stand_in_connection())
        Cursor.__init__(self, connection)


_cursor_classes: Dict[type, type] = {sqlite3.Cursor: _StdCursor}


def _cursor_class_for(factory: type) -> type:
    cls = _cursor_classes.get(factory)
    if cls is None:
        # The factory's own methods first; their super() reaches our Cursor's.
        cls = type(factory.__name__, (factory, _StdCursor), {"__slots__": (), "__module__": factory.__module__, "__qualname__": factory.__qualname__})
        _cursor_classes[factory] = cls
    return cls


class _CursorView(sqlite3.Cursor):  # type: ignore[misc]
    """A genuine sqlite3.Cursor that a row factory of the user's gets in place of our cursor:
    its columns are named on the stand-in connection, so that sqlite3.Row(cursor, row) (and
    subclasses of sqlite3.Row) work; every attribute and method is the cursor's own."""

    __slots__ = ("_target",)

    def __init__(self, description: Any) -> None:
        sqlite3.Cursor.__init__(self, _stand_in_connection())
        self._target: Any = None
        names = ", ".join('NULL AS "%s"' % d[0].replace('"', '""') for d in description)
        sqlite3.Cursor.execute(self, "SELECT %s LIMIT 0" % names)

    description = property(lambda self: self._target.description)  # type: ignore[assignment]
    connection = property(lambda self: self._target.connection)  # type: ignore[assignment]
    rowcount = property(lambda self: self._target.rowcount)  # type: ignore[assignment]
    lastrowid = property(lambda self: self._target.lastrowid)  # type: ignore[assignment]
    arraysize = property(lambda self: self._target.arraysize, lambda self, v: setattr(self._target, "arraysize", v))  # type: ignore[assignment]
    row_factory = property(lambda self: self._target.row_factory, lambda self, v: setattr(self._target, "row_factory", v))  # type: ignore[assignment]

    def __iter__(self) -> Any:
        return self._target

    def __next__(self) -> Any:
        return next(self._target)


def _delegate(name: str) -> Callable[..., Any]:
    def f(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._target, name)(*args, **kwargs)

    f.__name__ = name
    return f


for _name in ("execute", "executemany", "executescript", "fetchone", "fetchmany", "fetchall", "close", "setinputsizes", "setoutputsize"):
    setattr(_CursorView, _name, _delegate(_name))

_views = threading.local()


def _view_for(cursor: Cursor) -> _CursorView:
    """A view whose columns have the names of cursor's description (one per thread and names)."""
    desc = cursor.description or ()
    cache = getattr(_views, "cache", None)
    if cache is None:
        cache = _views.cache = {}
    key = tuple(d[0] for d in desc)
    view = cache.get(key)
    if view is None:
        if len(cache) >= 256:
            cache.clear()
        view = cache[key] = _CursorView(desc)
    return view
