"""PEP 249 objects that behave like the stdlib sqlite3's: Connection, Cursor, Row.

Exceptions are sqlite3's own classes. Transactions follow sqlite3's legacy mode (Python
3.11): an implicit BEGIN before INSERT/UPDATE/DELETE/REPLACE when none is open, sent in
the same round trip as the statement; commit()/rollback() without a transaction cost
nothing; the context manager commits or rolls back and does not close.
"""
from __future__ import annotations

import operator
import os
import re
import sqlite3
import threading
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qs, unquote, urlparse

import msgpack

from . import binding, process
from .process import ServerProcess

Params = Union[Sequence[Any], Dict[str, Any], None]

_DML = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I | re.S)
_closed_db = "Cannot operate on a closed database."
# Open file connections per (server, absolute path) in this process: the last close of a file waits.
_open_files: Dict[Tuple[int, str], int] = {}
_open_files_lock = threading.Lock()
_closed_cursor = "Cannot operate on a closed cursor."
# close_cursor requests of cursors collected while a request was being written (Cursor.__del__).
_unsent_releases: List[Tuple[Any, int]] = []


def _send_unsent_releases() -> None:
    while _unsent_releases:
        try:
            srv, cid = _unsent_releases.pop()
        except IndexError:
            return
        if srv.dead is None and srv is process.current():
            try:
                srv.send("close_cursor", {"cursor": cid})
            except Exception:
                pass


Op = Generator[Tuple[str, Dict[str, Any]], Any, Any]
_EXPLAIN = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*EXPLAIN\b", re.I | re.S)


_COMMIT_SQL = re.compile(r"\s*(?:COMMIT|END)\b", re.IGNORECASE)


def _run(conn: "Connection", op: Op) -> Any:
    """Drive an operation with blocking round trips; its result is the generator's return value."""
    lock = conn._lock
    if lock is not None:  # a connection shared by threads: one operation at a time
        with lock:
            return _drive(conn, op)
    return _drive(conn, op)


def _drive(conn: "Connection", op: Op) -> Any:
    try:
        req = next(op)
        while True:
            try:
                res = conn._rpc(*req)
            except Exception as e:
                req = op.throw(e)
            else:
                req = op.send(res)
    except StopIteration as stop:
        return stop.value


def _before_binding(conn: "Connection", sql: str, begin: Optional[str]) -> Op:
    """What sqlite3 does before it binds parameters, replayed when binding fails in the client:
    it compiles the statement (so an SQL error wins over a binding error) and runs the
    implicit BEGIN (so a failed INSERT still leaves its transaction open)."""
    if not binding.blank(sql):
        check = sql if _EXPLAIN.match(sql) else "EXPLAIN " + sql  # compiles, runs nothing
        p: Dict[str, Any] = {"session": conn._session, "sql": check}
        count, names, named = binding.scan(sql)
        if count:  # the server insists on a value for every parameter: NULLs do
            p["params"] = {n[1:]: None for n in names} if named and None not in names else [None] * count  # type: ignore[index]
        try:
            yield ("execute", p)
        except sqlite3.Error as e:
            if getattr(e, "rpc_kind", None) != "BindingError":  # the NULLs themselves: not the point
                raise
    if begin is not None:
        conn._in_tx = (yield ("begin", {"session": conn._session, "mode": begin}))["in_transaction"]


def _first_unencodable(rows: List[Any]) -> int:
    for i, r in enumerate(rows):
        try:
            msgpack.packb(r, use_bin_type=True)
        except UnicodeEncodeError:
            return i
    return len(rows)


def _type_name(v: Any) -> str:
    return "None" if v is None else type(v).__name__


_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


class Row:
    """sqlite3.Row's semantics: index or (case-insensitive) name, keys(), equality, hashing."""

    __slots__ = ("_description", "_values", "_index")

    def __init__(self, cursor: Any, values: Tuple[Any, ...]) -> None:
        desc = cursor.description if cursor is not None else None
        self._description = desc
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


def _normalise_row_factory(f: Any) -> Any:
    # Code written for the stdlib sets sqlite3.Row; it cannot wrap our cursor, ours can.
    return Row if f is sqlite3.Row else f


class Cursor:
    """sqlite3.Cursor's behaviour over a server session."""

    def __init__(self, connection: "Connection") -> None:
        if not isinstance(connection, Connection):
            raise TypeError("argument 1 must be sqlite_rpc.Connection")
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

    @property
    def connection(self) -> "Connection":
        return self._connection

    # -- execution ---------------------------------------------------------------------------

    def _check(self) -> "Connection":
        # sqlite3's order: a closed cursor is reported before the connection's state.
        if self._closed:
            raise sqlite3.ProgrammingError(_closed_cursor)
        conn = self._connection
        conn._check()
        return conn

    def _reset(self) -> None:
        self._settle_changes()
        if self._cursor_id is not None or _unsent_releases:
            self._release_server_cursor()
        self._rows = ()
        self._pos = 0
        self.description = None
        self.rowcount = -1  # what an execute that fails leaves behind
        self._converters = None
        self._rowcount_when_done = None

    # Each statement method is a generator of requests ("method", params) that receives each
    # reply (or has the request's exception thrown into it): the synchronous API drives it
    # with blocking round trips (_run), aio.py with awaited ones. One copy of the semantics.

    def _op_execute(self, sql: str, parameters: Params, expect_rows: Optional[int] = None) -> "Op":
        conn = self._check()
        if not isinstance(sql, str):
            raise TypeError("execute() argument 1 must be str, not %s" % _type_name(sql))
        self._reset()
        begin = conn._begin_mode_for(sql)
        error: Optional[BaseException] = None
        try:
            wire = binding.bind(sql, parameters)
        except Exception as e:
            error = e
        if error is not None:
            yield from _before_binding(conn, sql, begin)
            raise error
        p: Dict[str, Any] = {"session": conn._session, "sql": sql}
        if wire is not None:
            p["params"] = wire
        if begin is not None:
            p["begin"] = begin
        if conn._detect_decltypes:
            p["decltypes"] = True
        if expect_rows is not None:
            p["expect_rows"] = operator.index(expect_rows)
        try:
            res = yield ("execute", p)
        except UnicodeEncodeError:
            # A lone surrogate: in the SQL text sqlite3 fails at once; in a parameter, at bind time.
            sql.encode("utf-8")
            yield from _before_binding(conn, sql, begin)
            raise
        self._take_result(conn, res, sql)

    def execute(self, sql: str, parameters: Params = (), *, expect_rows: Optional[int] = None) -> "Cursor":
        """sqlite3's execute. expect_rows (an extension, see sqlite_rpc.optimistic): the
        statement must change exactly that many rows, or it is undone and ConflictError raised."""
        _run(self._connection, self._op_execute(sql, parameters, expect_rows))
        return self

    def _take_result(self, conn: "Connection", res: Dict[str, Any], sql: str) -> None:
        conn._in_tx = res["in_transaction"]
        cols = res["columns"]
        changes = res["changes"]
        if res["lastrowid"] is not None:
            conn._last_rowid = res["lastrowid"]
        conn._total_changes += res.get("total_changes", changes)
        if cols is None and not changes and binding.blank(sql):
            return  # sqlite3 runs nothing for empty SQL and leaves the cursor as it was
        # sqlite3's cursor.lastrowid is the connection's last inserted rowid after any execute.
        self.lastrowid = conn._last_rowid
        dml = _DML.match(sql) is not None
        if cols is None:
            # rowcount: rows changed by INSERT/UPDATE/DELETE/REPLACE, -1 for anything else.
            self.rowcount = changes if dml else -1
            self.description = None
        else:
            if dml:
                # DML with RETURNING: sqlite3 counts the changes (rowcount, total_changes) when
                # the statement finishes: its rows consumed, or the cursor reset or closed.
                self.rowcount = 0
                self._rowcount_when_done = changes
                conn._total_changes -= res.get("total_changes", changes)
            self.description = tuple((c, None, None, None, None, None, None) for c in cols)
            if conn._detect_types:
                self._converters = conn._converters_for(cols, res.get("decltypes"))
                if conn._detect_colnames:
                    self.description = tuple((_strip_colname(c), None, None, None, None, None, None) for c in cols)
        self._rows = res["rows"]
        self._pos = 0
        self._cursor_id = res["cursor"]
        self._result_srv = conn._srv
        if self._cursor_id is None:
            self._exhausted_check()

    def _exhausted_check(self) -> None:
        if self._rowcount_when_done is not None and self._pos >= len(self._rows) and self._cursor_id is None:
            self.rowcount = self._rowcount_when_done
            self._settle_changes()

    def _settle_changes(self) -> None:
        if self._rowcount_when_done is not None:
            self._connection._total_changes += self._rowcount_when_done
            self._rowcount_when_done = None

    def _op_executemany(self, sql: str, seq_of_parameters: Any) -> "Op":
        conn = self._check()
        if not isinstance(sql, str):
            raise TypeError("executemany() argument 1 must be str, not %s" % _type_name(sql))
        it = iter(seq_of_parameters)
        self._reset()
        begin = conn._begin_mode_for(sql)
        # sqlite3 binds and runs the parameter sets one by one: the sets before a bad one are
        # applied, then the error is raised. The good prefix is sent, then the error raised.
        rows: Any = binding.bind_many_fast(sql, seq_of_parameters)  # None: not the plain case
        error: Optional[BaseException] = None
        if rows is None:
            rows = []
            try:
                for params in it:
                    w = binding.bind(sql, params)
                    rows.append([] if w is None else w)
            except Exception as e:
                error = e
        p: Dict[str, Any] = {"session": conn._session, "sql": sql, "seq_of_params": rows}
        if begin is not None:
            p["begin"] = begin
        try:
            res = yield ("executemany", p)
        except UnicodeEncodeError as e:
            sql.encode("utf-8")
            p["seq_of_params"] = rows[: _first_unencodable(rows)]
            res = yield ("executemany", p)
            error = e
        self._take_many(res)
        if not _DML.match(sql):
            self.rowcount = -1  # sqlite3 counts rows for INSERT/UPDATE/DELETE/REPLACE only
        if error is not None:
            self.rowcount = -1
            raise error

    def _take_many(self, res: Dict[str, Any]) -> None:
        conn = self._connection
        conn._in_tx = res["in_transaction"]
        self.rowcount = res["changes"]
        conn._total_changes += res.get("total_changes", res["changes"])
        if res["lastrowid"] is not None:
            conn._last_rowid = res["lastrowid"]  # the connection's; this cursor's stays (sqlite3 3.11)

    def executemany(self, sql: str, seq_of_parameters: Any) -> "Cursor":
        _run(self._connection, self._op_executemany(sql, seq_of_parameters))
        return self

    def _op_script(self, sql_script: str) -> "Op":
        conn = self._check()
        if not isinstance(sql_script, str):
            raise TypeError("executescript() argument must be str, not %s" % _type_name(sql_script))
        if "\x00" in sql_script:
            raise ValueError("embedded null character")
        # sqlite3 leaves the cursor as it was (rowcount, description, lastrowid, pending rows).
        if conn._in_tx:
            # sqlite3 commits a pending transaction before running a script.
            conn._in_tx = (yield ("commit", {"session": conn._session}))["in_transaction"]
        res = yield ("script", {"session": conn._session, "sql": sql_script})
        conn._in_tx = res["in_transaction"]
        conn._total_changes += res.get("total_changes", res["changes"])
        if res.get("lastrowid") is not None:
            conn._last_rowid = res["lastrowid"]

    def executescript(self, sql_script: str) -> "Cursor":
        _run(self._connection, self._op_script(sql_script))
        return self

    # -- fetching ----------------------------------------------------------------------------

    def _take_page(self, res: Dict[str, Any]) -> bool:
        self._rows = res["rows"]
        self._pos = 0
        self._cursor_id = res["cursor"]
        return bool(self._rows) or self._cursor_id is not None

    def _more(self) -> bool:
        """Fetch the next page; False when the result is exhausted."""
        cid = self._cursor_id
        if cid is None:
            return False
        self._check_result_alive()
        try:
            res = self._connection._rpc("fetch", {"cursor": cid})
        except sqlite3.OperationalError:
            if self._result_srv is not None and self._result_srv.dead is not None:
                self._cursor_id = None  # reported once; the cursor is then exhausted
            raise
        except sqlite3.Error:
            self._cursor_id = None  # a fetch that fails closes the server's cursor: nothing to release
            raise
        return self._take_page(res)

    def _check_result_alive(self) -> None:
        # The rest of the result lived in a server that has since died (or in the parent
        # of a fork): another server would not know the cursor id, or worse, reuse it.
        srv = self._result_srv
        if srv is not None and (srv.dead is not None or srv is not process.current()):
            self._cursor_id = None
            raise sqlite3.OperationalError("%s; the rest of this result was lost with it" % (srv.dead or "the sqlite-rpc server restarted"))

    def _buffered(self) -> bool:
        """A row is ready without a round trip."""
        return self._pos < len(self._rows)

    def _make(self, raw: Tuple[Any, ...]) -> Any:
        conv = self._converters
        tf = self._connection.text_factory
        if conv is not None:
            # A converter gets the value's bytes; text_factory applies to the other columns.
            raw = tuple(v if v is None else f(_as_bytes(v)) if f is not None else
                        _apply_text_factory(tf, v) if tf is not str and type(v) is str else v
                        for f, v in zip(conv, raw))
        elif tf is not str:
            raw = tuple(_apply_text_factory(tf, v) if type(v) is str else v for v in raw)
        rf = self.row_factory  # copied from the connection when the cursor was made, as sqlite3
        if rf is None:
            return raw
        return _normalise_row_factory(rf)(self, raw)

    def fetchone(self) -> Any:
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
        raw = self._rows[self._pos]
        self._pos += 1
        if self._rowcount_when_done is not None:
            self._exhausted_check()
        return self._make(raw)

    def fetchmany(self, size: Optional[int] = None) -> List[Any]:
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
        lock = self._connection._lock
        if lock is not None:
            with lock:
                return self._fetchall()
        return self._fetchall()

    def _fetchall(self) -> List[Any]:
        self._check()
        out: List[Any] = []
        make = self._make
        while True:
            rows, pos = self._rows, self._pos
            if pos < len(rows):
                out.extend(make(r) for r in rows[pos:])
                self._pos = len(rows)
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
        self._connection._check()  # sqlite3 checks the connection (thread, open), not the cursor
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
        if _unsent_releases and not from_del:
            _send_unsent_releases()
        cid, self._cursor_id = self._cursor_id, None
        srv = self._result_srv
        # Only on the server that holds it: cursor ids are counted per server, and the next
        # server (after a restart; the parent's after a fork) may have given that id to another.
        if cid is None or srv is None or srv.dead is not None or srv is not process.current():
            return
        if self._connection._closed:
            return  # closing the session closed its cursors
        if from_del and not srv._wlock.acquire(False):
            # Collected while a request is being written, perhaps by this very thread (the
            # cycle collector runs anywhere): writing now could deadlock. The next statement sends it.
            _unsent_releases.append((srv, cid))
            return
        if from_del:
            srv._wlock.release()
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


def _strip_colname(name: str) -> str:
    # sqlite3 (PARSE_COLNAMES) cuts the name at the first '[' and drops one space before it.
    i = name.find("[")
    if i < 0:
        return name
    return name[: i - 1] if i > 0 and name[i - 1] == " " else name[:i]


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
        _server: Optional[ServerProcess] = None,
    ) -> None:
        # sqlite3's argument conversions, with its messages.
        if not isinstance(timeout, (int, float)):
            if not hasattr(type(timeout), "__float__") and not hasattr(type(timeout), "__index__"):
                raise TypeError("must be real number, not %s" % type(timeout).__name__)
            timeout = float(timeout)
        detect_types = operator.index(detect_types)
        path, readonly, create = _resolve_database(database, uri)
        self._thread = threading.get_ident()
        self._check_same_thread = check_same_thread
        self._lock = threading.RLock() if not check_same_thread else None
        self._closed = False
        self._in_tx = False
        self._last_rowid = 0
        self._total_changes = 0
        self._isolation_level: Optional[str] = None
        self.isolation_level = isolation_level
        self.row_factory: Any = None
        self.text_factory: Any = str
        self._detect_types = detect_types
        self._detect_decltypes = bool(detect_types & sqlite3.PARSE_DECLTYPES)
        self._detect_colnames = bool(detect_types & sqlite3.PARSE_COLNAMES)
        self._database = path
        self._private = path in (":memory:", "")
        self._broken: Optional[str] = None
        self._srv = _server or process.get_server()
        self._gen = process.generation()
        self._session = self._srv.new_session_id()
        # open is pipelined: its reply is collected by the first request that needs it.
        self._open_params = {"session": self._session, "path": path, "readonly": readonly, "timeout": float(timeout)}
        self._open_params.update(_file_name_context(uri))
        if not create:
            self._open_params["create"] = False
        if slow_query_ms is not None:
            # The server's threshold for this database file (every session of it), not just this connection.
            self._open_params["slow_query_ms"] = operator.index(slow_query_ms)
        if keep_open:
            self._open_params["keep_open"] = True
        self._open_slot: Any = self._srv.send("open", self._open_params)
        self._file_key: Optional[Tuple[int, str]] = None
        if not self._private and not keep_open:
            # The last close of a file in this process waits for the server to fold the WAL in.
            self._file_key = (id(self._srv), os.path.abspath(path))
            with _open_files_lock:
                _open_files[self._file_key] = _open_files.get(self._file_key, 0) + 1

    # -- plumbing ----------------------------------------------------------------------------

    def _note_error(self, e: BaseException) -> Optional[str]:
        """Take in what a server error says about this connection's state; returns its kind."""
        in_tx = getattr(e, "rpc_in_transaction", None)
        kind = getattr(e, "rpc_kind", None)
        if in_tx is not None:
            self._in_tx = in_tx
        elif kind == "TransactionAborted":
            self._in_tx = False  # the server rolled it back (idle limit, lost writer)
        changed = getattr(e, "rpc_changes", None)
        if changed:
            self._total_changes += changed  # rows changed before a multi-row operation failed
        rowid = getattr(e, "rpc_lastrowid", None)
        if rowid is not None:
            self._last_rowid = rowid  # rows inserted before the failure moved it, as in sqlite3
        return kind

    def _check_open(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError(_closed_db)

    def _check(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError(_closed_db)
        if self._check_same_thread and threading.get_ident() != self._thread:
            raise sqlite3.ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                "The object was created in thread id %d and this is thread id %d." % (self._thread, threading.get_ident())
            )

    def _rpc(self, method: str, params: Dict[str, Any]) -> Any:
        lock = self._lock
        if lock is not None:
            with lock:
                return self._rpc_unlocked(method, params)
        return self._rpc_unlocked(method, params)

    def _rpc_unlocked(self, method: str, params: Dict[str, Any]) -> Any:
        if self._broken is not None:
            raise sqlite3.OperationalError(self._broken)
        srv = self._srv
        if srv.dead is not None or self._gen != process.generation():
            srv = self._reattach()
            if "session" in params:
                params = dict(params, session=self._session)
        try:
            if self._open_slot is not None:
                # Pipelined behind the open: one round trip for connect + first statement.
                slot = srv.send(method, params)
                opened, self._open_slot = self._open_slot, None
                srv.wait(opened)  # raises the open error (e.g. unable to open database file)
                return srv.wait(slot)
            return srv.call(method, params)
        except process.ServerError:
            raise
        except sqlite3.Error as e:
            kind = self._note_error(e)
            if kind != "ServerGone":
                raise
            was_in_tx, self._in_tx = self._in_tx, False
            if was_in_tx:
                if not getattr(e, "rpc_unsent", False) and (method == "commit" or (method == "execute" and _COMMIT_SQL.match(params.get("sql", "")))):
                    # The server may have made it durable just before it died: nobody knows.
                    raise sqlite3.OperationalError("%s; the COMMIT was interrupted: the transaction may or may not have taken effect" % e) from None
                raise sqlite3.OperationalError("%s; the open transaction was lost and nothing of it was committed" % e) from None
            if self._private:
                self._broken = "%s; this connection's in-memory database was lost with it" % e
                raise sqlite3.OperationalError(self._broken) from None
            if method == "fetch" or method == "close_cursor":
                raise sqlite3.OperationalError("%s; the rest of this result was lost with it" % e) from None
            unsent = getattr(e, "rpc_unsent", False)
            if not unsent and (method != "execute" or params.get("begin") is not None or not _is_read(params.get("sql", ""))):
                raise sqlite3.OperationalError("%s; the request was interrupted: it may or may not have taken effect" % e) from None
            # Safe to repeat, once, on a new server: a request the old one never received, or
            # a read that was in flight when it died.
            srv = self._reattach()
            slot, self._open_slot = self._open_slot, None
            srv.wait(slot)
            return srv.call(method, dict(params, session=self._session))

    def _reattach(self) -> ServerProcess:
        """The server died (or this process forked): attach to a new server with a new session.
        A file database is simply reopened; what lived only in the old session cannot be."""
        why = self._srv.dead or "the sqlite-rpc server restarted"
        if self._private:
            # Reopening would hand back an empty database as if nothing had happened.
            self._broken = "%s; this connection's in-memory database was lost with it" % why
            raise sqlite3.OperationalError(self._broken)
        lost = self._in_tx
        self._in_tx = False
        self._srv = process.get_server()
        self._gen = process.generation()
        self._session = self._srv.new_session_id()
        self._open_params["session"] = self._session
        self._open_slot = self._srv.send("open", self._open_params)
        if lost:
            raise sqlite3.OperationalError("%s; the open transaction was lost and nothing of it was committed" % why)
        return self._srv

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
        if value is not None:
            if not isinstance(value, str):
                raise TypeError("isolation_level must be str or None")
            if value.upper() not in ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
                raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'")
            value = value.upper()  # sqlite3 stores (and returns) the canonical spelling
        elif hasattr(self, "_srv"):
            self.commit()  # sqlite3: switching to autocommit commits (and checks the connection)
        self._isolation_level = value

    # These getters check that the connection is open, not the thread (as sqlite3's).
    @property
    def in_transaction(self) -> bool:
        self._check_open()
        return self._in_tx

    @property
    def total_changes(self) -> int:
        self._check_open()
        return self._total_changes

    def cursor(self, factory: Any = None) -> Cursor:
        self._check()
        cur = (factory or Cursor)(self)
        if not isinstance(cur, Cursor):
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
        if self._in_tx:
            res = self._rpc("commit", {"session": self._session})
            self._in_tx = res["in_transaction"]

    def rollback(self) -> None:
        self._check()
        if self._in_tx:
            res = self._rpc("rollback", {"session": self._session})
            self._in_tx = res["in_transaction"]

    def close(self) -> None:
        if self._closed:
            return
        if self._check_same_thread and threading.get_ident() != self._thread:
            self._check()
        self._closed = True
        last = self._forget_file()
        srv = self._srv
        if srv.dead is None and self._gen == process.generation():
            try:
                opened, self._open_slot = self._open_slot, None
                # close rolls back server-side. Its reply is awaited only at the last close of a
                # file in this process: the server then folds the WAL into the file, and a copy of
                # the .db alone made after close() returns holds every committed row, as with sqlite3.
                if last:
                    slot = srv.send("close", {"session": self._session})
                    if opened is not None:
                        try:
                            srv.wait(opened)
                        except sqlite3.Error:
                            pass
                    srv.wait(slot)
                else:
                    srv.send("close", {"session": self._session})
            except Exception:
                pass

    def _forget_file(self) -> bool:
        """This connection no longer counts towards its file's open connections; True if it was the last."""
        key, self._file_key = self._file_key, None
        if key is None:
            return False
        with _open_files_lock:
            n = _open_files.get(key, 1) - 1
            if n > 0:
                _open_files[key] = n
                return False
            _open_files.pop(key, None)
            return True

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.commit()
        else:
            try:
                self.rollback()
            except sqlite3.Error:
                pass
        return False

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._closed = True
                self._forget_file()
                if self._srv.dead is None:
                    self._srv.send("close", {"session": self._session})
        except Exception:
            pass

    def iterdump(self) -> Iterator[str]:
        from sqlite3.dump import _iterdump  # the stdlib's own dump, over our cursor API

        return _iterdump(self)

    def interrupt(self) -> None:
        raise sqlite3.NotSupportedError("interrupt() is not supported by sqlite-rpc")

    def _unsupported(self, name: str) -> Callable[..., Any]:
        def f(*a: Any, **k: Any) -> Any:
            raise sqlite3.NotSupportedError("%s() is not supported by sqlite-rpc: the database runs in another process" % name)

        return f

    def __getattr__(self, name: str) -> Any:
        if name in ("create_function", "create_aggregate", "create_window_function", "create_collation", "set_authorizer",
                    "set_progress_handler", "set_trace_callback", "enable_load_extension", "load_extension", "backup",
                    "blobopen", "serialize", "deserialize", "setlimit", "getlimit"):
            return self._unsupported(name)
        raise AttributeError("'%s' object has no attribute '%s'" % (type(self).__name__, name))


_READ_START = re.compile(r"^(?:\s+|--[^\n]*\n|/\*.*?\*/)*(SELECT|VALUES|EXPLAIN|WITH)\b", re.I | re.S)
_LITERALS = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?\*/", re.S)
_WRITE_WORD = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


def _is_read(sql: str) -> bool:
    """Certainly a read (so repeating it is harmless): SELECT, VALUES, EXPLAIN, or a WITH
    whose text, outside literals and comments, names no write."""
    m = _READ_START.match(sql)
    if m is None:
        return False
    return m.group(1).upper() != "WITH" or not _WRITE_WORD.search(_LITERALS.sub(" ", sql))


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


def _resolve_database(database: Any, uri: bool) -> Tuple[str, bool, bool]:
    """(path, readonly, create) for open. Failures sqlite3.connect reports at once are raised
    here: the open request itself is pipelined and would only fail at the first statement."""
    import os

    if isinstance(database, bytes):
        database = database.decode("utf-8")
    if hasattr(database, "__fspath__"):
        database = database.__fspath__()
        if isinstance(database, bytes):
            database = database.decode("utf-8")
    if not isinstance(database, str):
        raise TypeError("expected str, bytes or os.PathLike object, not %s" % type(database).__name__)
    readonly, create = False, True
    if uri and database.startswith("file:"):
        u = urlparse(database)
        q = parse_qs(u.query)
        mode = (q.get("mode") or [""])[0]
        path = unquote(u.path) if u.path else ""
        if mode == "memory" or path in (":memory:", ""):
            return ":memory:", False, True
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
    database = os.path.abspath(database)
    if os.path.isdir(database):
        raise _cantopen()
    # Open the file as SQLite would (read-write, else read-only), creating it when allowed:
    # what this process cannot open is refused now, and the file exists once connect()
    # returns, as with sqlite3.
    flags = [os.O_RDONLY] if readonly else [os.O_RDWR | (os.O_CREAT if create else 0), os.O_RDONLY]
    for f in flags:
        try:
            os.close(os.open(database, f | getattr(os, "O_CLOEXEC", 0), 0o644))
            break
        except OSError:
            continue
    else:
        raise _cantopen()
    # Absolute: the server's working directory is the one this process had when it started
    # the server, and a "file:" prefix without uri=True is part of the file name.
    return database, readonly, create
