"""PEP 249 objects that behave like the stdlib sqlite3's: Connection, Cursor, Row.

Exceptions are sqlite3's own classes. Transactions follow sqlite3's legacy mode (Python
3.11): an implicit BEGIN before INSERT/UPDATE/DELETE/REPLACE when none is open, sent in
the same round trip as the statement; commit()/rollback() without a transaction cost
nothing; the context manager commits or rolls back and does not close.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qs, unquote, urlparse

from . import process
from .process import ServerProcess

Params = Union[Sequence[Any], Dict[str, Any], None]

_DML = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I | re.S)
_BASIC = (int, float, str, bytes, type(None))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_closed_db = "Cannot operate on a closed database."
_closed_cursor = "Cannot operate on a closed cursor."


def _adapt_value(v: Any, i: Any) -> Any:
    t = type(v)
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return v
        raise OverflowError("Python int too large to convert to SQLite INTEGER")
    if t in _BASIC:
        return v
    if t is bool:
        return int(v)
    # sqlite3's own adapter registry (register_adapter) and __conform__, shared with stdlib.
    try:
        adapted = sqlite3.adapt(v, sqlite3.PrepareProtocol, v)  # type: ignore[call-arg]
    except Exception as e:  # an adapter that raises: sqlite3 reports it as such
        raise sqlite3.ProgrammingError("Error binding parameter %s: %s" % (i, e)) from e
    if adapted is not v:
        return _adapt_value(adapted, i) if type(adapted) not in _BASIC else adapted
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, int):
        return _adapt_value(int(v), i)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    raise sqlite3.ProgrammingError("Error binding parameter %s: type '%s' is not supported" % (i, t.__name__))


def _adapt_params(params: Params) -> Any:
    if params is None:
        return None
    if isinstance(params, dict):
        return {k: _adapt_value(v, ":" + str(k)) for k, v in params.items()}
    if isinstance(params, (str, bytes)) or not hasattr(params, "__len__") or not hasattr(params, "__getitem__"):
        raise sqlite3.ProgrammingError("parameters are of unsupported type")
    out = []
    for i, v in enumerate(params, 1):
        t = type(v)
        if t is str or t is float or v is None or (t is int and _INT64_MIN <= v <= _INT64_MAX):
            out.append(v)
        else:
            out.append(_adapt_value(v, i))
    return out


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
                idx.setdefault(d[0].lower(), i)
            self._index = idx
        try:
            return idx[key.lower()]
        except KeyError:
            raise IndexError("No item with that key") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._lookup(key)]
        return self._values[key]

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
        self._row_factory_used: Any = None

    @property
    def connection(self) -> "Connection":
        return self._connection

    # -- execution ---------------------------------------------------------------------------

    def _check(self) -> "Connection":
        conn = self._connection
        conn._check()
        if self._closed:
            raise sqlite3.ProgrammingError(_closed_cursor)
        return conn

    def _reset(self) -> None:
        if self._cursor_id is not None:
            self._connection._discard_cursor(self._cursor_id)
            self._cursor_id = None
        self._rows = ()
        self._pos = 0
        self.description = None
        self._converters = None

    # Each statement method is a request builder and a reply handler around one round trip;
    # aio.py reuses both halves with an awaitable round trip in between.

    def _prepare_execute(self, sql: str, parameters: Params) -> Tuple[Dict[str, Any], bool]:
        conn = self._check()
        if not isinstance(sql, str):
            raise TypeError("execute() argument 1 must be str, not %s" % type(sql).__name__)
        self._reset()
        p: Dict[str, Any] = {"session": conn._session, "sql": sql}
        if parameters:
            p["params"] = _adapt_params(parameters)
        begin = conn._begin_mode_for(sql)
        if begin is not None:
            p["begin"] = begin
        if conn._detect_decltypes:
            p["decltypes"] = True
        return p, _DML.match(sql) is not None

    def execute(self, sql: str, parameters: Params = ()) -> "Cursor":
        p, dml = self._prepare_execute(sql, parameters)
        self._take_result(self._connection, self._connection._rpc("execute", p), dml)
        return self

    def _take_result(self, conn: "Connection", res: Dict[str, Any], dml: bool) -> None:
        conn._in_tx = res["in_transaction"]
        cols = res["columns"]
        changes = res["changes"]
        if res["lastrowid"] is not None:
            conn._last_rowid = res["lastrowid"]
        self.lastrowid = conn._last_rowid
        # sqlite3: rowcount is the number of changed rows for DML, -1 for anything else.
        self.rowcount = changes if dml else -1
        conn._total_changes += changes
        if cols is None:
            self.description = None
        else:
            self.description = tuple((c, None, None, None, None, None, None) for c in cols)
            if conn._detect_types:
                self._converters = conn._converters_for(cols, res.get("decltypes"))
                if conn._detect_colnames:
                    self.description = tuple((_strip_colname(c), None, None, None, None, None, None) for c in cols)
        self._rows = res["rows"]
        self._pos = 0
        self._cursor_id = res["cursor"]

    def _prepare_executemany(self, sql: str, seq_of_parameters: Any) -> Optional[Dict[str, Any]]:
        conn = self._check()
        if not isinstance(sql, str):
            raise TypeError("executemany() argument 1 must be str, not %s" % type(sql).__name__)
        self._reset()
        seq = [_adapt_params(p) for p in seq_of_parameters]
        if not seq:
            self.rowcount = 0
            return None
        p: Dict[str, Any] = {"session": conn._session, "sql": sql, "seq_of_params": seq}
        begin = conn._begin_mode_for(sql)
        if begin is not None:
            p["begin"] = begin
        return p

    def _take_many(self, res: Dict[str, Any]) -> None:
        conn = self._connection
        conn._in_tx = res["in_transaction"]
        self.rowcount = res["changes"]
        conn._total_changes += res["changes"]
        if res["lastrowid"] is not None:
            conn._last_rowid = res["lastrowid"]  # the connection's, not this cursor's (sqlite3 3.11)

    def executemany(self, sql: str, seq_of_parameters: Any) -> "Cursor":
        p = self._prepare_executemany(sql, seq_of_parameters)
        if p is not None:
            self._take_many(self._connection._rpc("executemany", p))
        return self

    def _prepare_script(self, sql_script: str) -> Dict[str, Any]:
        conn = self._check()
        if not isinstance(sql_script, str):
            raise ValueError("script argument must be unicode.")
        self._reset()
        return {"session": conn._session, "sql": sql_script}

    def _take_script(self, res: Dict[str, Any]) -> None:
        conn = self._connection
        conn._in_tx = res["in_transaction"]
        conn._total_changes += res["changes"]
        self.rowcount = -1

    def executescript(self, sql_script: str) -> "Cursor":
        p = self._prepare_script(sql_script)
        if self._connection._in_tx:
            self._connection.commit()  # sqlite3 commits a pending transaction before a script
        self._take_script(self._connection._rpc("script", p))
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
        return self._take_page(self._connection._rpc("fetch", {"cursor": cid}))

    def _buffered(self) -> bool:
        """A row is ready without a round trip."""
        return self._pos < len(self._rows)

    def _make(self, raw: Tuple[Any, ...]) -> Any:
        conv = self._converters
        if conv is not None:
            raw = tuple(v if f is None or v is None else f(_as_bytes(v)) for f, v in zip(conv, raw))
        tf = self._connection.text_factory
        if tf is not str:
            raw = tuple(_apply_text_factory(tf, v) if type(v) is str else v for v in raw)
        rf = self.row_factory if self.row_factory is not None else self._connection.row_factory
        if rf is None:
            return raw
        rf = _normalise_row_factory(rf)
        return rf(self, raw)

    def fetchone(self) -> Any:
        self._check()
        while self._pos >= len(self._rows):
            if not self._more():
                return None
        raw = self._rows[self._pos]
        self._pos += 1
        return self._make(raw)

    def fetchmany(self, size: Optional[int] = None) -> List[Any]:
        self._check()
        n = self.arraysize if size is None else size
        out = []
        while len(out) < n:
            row = self.fetchone()
            if row is None:
                break
            out.append(row)
        return out

    def fetchall(self) -> List[Any]:
        self._check()
        out: List[Any] = []
        make = self._make
        while True:
            rows, pos = self._rows, self._pos
            if pos < len(rows):
                out.extend(make(r) for r in rows[pos:])
                self._pos = len(rows)
            if not self._more():
                return out

    def __iter__(self) -> "Cursor":
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        if not self._closed and self._cursor_id is not None and not self._connection._closed:
            self._connection._discard_cursor(self._cursor_id)
        self._cursor_id = None
        self._rows = ()
        self._closed = True

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass


def _strip_colname(name: str) -> str:
    i = name.find(" [")
    return name[:i] if i >= 0 else name


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return str(v).encode("ascii")


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
        _server: Optional[ServerProcess] = None,
    ) -> None:
        path, readonly = _resolve_database(database, uri)
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
        self._srv = _server or process.get_server()
        self._gen = process.generation()
        self._session = self._srv.new_session_id()
        # open is pipelined: its reply is collected by the first request that needs it.
        self._open_params = {"session": self._session, "path": path, "readonly": readonly, "timeout": float(timeout)}
        self._open_slot: Any = self._srv.send("open", self._open_params)

    # -- plumbing ----------------------------------------------------------------------------

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
            # The server says whether the session is still in a transaction after the error.
            in_tx = getattr(e, "rpc_in_transaction", None)
            if in_tx is not None:
                self._in_tx = in_tx
            if getattr(e, "rpc_kind", None) != "ServerGone":
                raise
            was_in_tx, self._in_tx = self._in_tx, False
            if was_in_tx or method != "execute" or params.get("begin") is not None or not _is_read(params.get("sql", "")):
                raise
            # A read that was in flight when the server died is safe to repeat, once.
            srv = self._reattach()
            slot, self._open_slot = self._open_slot, None
            srv.wait(slot)
            return srv.call(method, dict(params, session=self._session))

    def _reattach(self) -> ServerProcess:
        """The server died (or this process forked): attach to a new server with a new session."""
        lost = self._in_tx
        self._in_tx = False
        self._srv = process.get_server()
        self._gen = process.generation()
        self._session = self._srv.new_session_id()
        self._open_params["session"] = self._session
        self._open_slot = self._srv.send("open", self._open_params)
        if lost:
            raise sqlite3.OperationalError("the sqlite-rpc server restarted; the open transaction was lost and nothing of it was committed")
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
                m = re.search(r"\[([^\]]+)\]", name)
                if m:
                    f = sqlite3.converters.get(m.group(1).upper())  # type: ignore[attr-defined]
            if f is None and self._detect_decltypes and decltypes and decltypes[i]:
                key = decltypes[i].split("(")[0].strip().split(" ")[0].upper()  # type: ignore[union-attr]
                f = sqlite3.converters.get(key)  # type: ignore[attr-defined]
            found = found or f is not None
            convs.append(f)
        return convs if found else None

    # -- public API --------------------------------------------------------------------------

    @property
    def isolation_level(self) -> Optional[str]:
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Optional[str]) -> None:
        if value is not None:
            if not isinstance(value, str):
                raise TypeError("isolation_level must be str or None, not %s" % type(value).__name__)
            if value.upper() not in ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
                raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'")
        elif getattr(self, "_in_tx", False) and not self._closed:
            self.commit()  # sqlite3: switching to autocommit commits the pending transaction
        self._isolation_level = value

    @property
    def in_transaction(self) -> bool:
        self._check()
        return self._in_tx

    @property
    def total_changes(self) -> int:
        self._check()
        return self._total_changes

    def cursor(self, factory: Any = None) -> Cursor:
        self._check()
        cur = (factory or Cursor)(self)
        if not isinstance(cur, Cursor):
            raise TypeError("factory must return a cursor, not %s" % type(cur).__name__)
        if self.row_factory is not None:
            cur.row_factory = None  # consulted at fetch time, as sqlite3 does at creation
        return cur

    def execute(self, sql: str, parameters: Params = ()) -> Cursor:
        return self.cursor().execute(sql, parameters)

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
        srv = self._srv
        if srv.dead is None and self._gen == process.generation():
            try:
                if self._open_slot is not None:
                    self._open_slot = None
                # close rolls back server-side; its reply is not awaited (no round trip).
                srv.send("close", {"session": self._session})
            except Exception:
                pass

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


def _is_read(sql: str) -> bool:
    return bool(re.match(r"^\s*(SELECT|WITH|VALUES|EXPLAIN)\b", sql, re.I)) and not _DML.match(sql)


def _resolve_database(database: Any, uri: bool) -> Tuple[str, bool]:
    if isinstance(database, bytes):
        database = database.decode("utf-8")
    if hasattr(database, "__fspath__"):
        database = database.__fspath__()
        if isinstance(database, bytes):
            database = database.decode("utf-8")
    if not isinstance(database, str):
        raise TypeError("expected str, bytes or os.PathLike object, not %s" % type(database).__name__)
    readonly = False
    if uri and database.startswith("file:"):
        u = urlparse(database)
        q = parse_qs(u.query)
        mode = (q.get("mode") or [""])[0]
        path = unquote(u.path) if u.path else ""
        if mode == "memory" or path == ":memory:":
            return ":memory:", False
        if mode == "ro":
            readonly = True
        elif mode in ("rw", "rwc", ""):
            pass
        else:
            raise sqlite3.OperationalError("no such access mode: %s" % mode)
        return path, readonly
    if database not in (":memory:", ""):
        import os

        parent = os.path.dirname(os.path.abspath(database))
        if not os.path.isdir(parent) or os.path.isdir(database):
            # sqlite3.connect fails at once here; the pipelined open would fail later.
            raise sqlite3.OperationalError("unable to open database file")
    return database, readonly
