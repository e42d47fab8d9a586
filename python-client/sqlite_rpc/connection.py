"""sqlite3.Connection's behaviour over a server session.

Transactions follow sqlite3's legacy mode (Python 3.11): an implicit BEGIN before
INSERT/UPDATE/DELETE/REPLACE when none is open, sent in the same round trip as the
statement; commit()/rollback() without a transaction cost nothing; the context manager
commits or rolls back and does not close."""
from __future__ import annotations

import operator
import re
import sqlite3
import threading
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Tuple

from . import _core
from ._core import _DML, Params, _written_files
from .cursor import Cursor
from .drivers import sync as _sync
from .drivers.sync import run
from .row import _ASCII_LOWER, _stand_in_connection
from .transport import home as _home_mod
from .transport.client import ServerProcess
from .uri import _file_name, _file_name_context, _isolation_level_value, _resolve_database
from ._taxonomy import REASON_NO_SUCH_COLLATION, REASON_NO_SUCH_FUNCTION

_closed_db = "Cannot operate on a closed database."
# Open file connections per (server, absolute path) in this process: the last close of a file waits.
_open_files: Dict[Tuple[int, str], int] = {}
_open_files_lock = threading.Lock()
_base_connection = "Base Connection.__init__ not called."


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


_DEFAULT = object()


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
        replicate: Optional[str] = None,
        _server: Optional[ServerProcess] = None,
    ) -> None:
        # sqlite3's argument conversions, with its messages. A second __init__ that fails
        # here leaves the connection as it was.
        if not isinstance(timeout, (int, float)):
            if not hasattr(type(timeout), "__float__") and not hasattr(type(timeout), "__index__"):
                raise TypeError("must be real number, not %s" % type(timeout).__name__)
            timeout = float(timeout)
        detect_types = operator.index(detect_types)
        # Checked as sqlite3 converts it (a C int), though the server's statement caches are
        # sized by its own --cache-size: sqlite3's per-connection cache has no equivalent.
        if not -2**31 <= operator.index(cached_statements) < 2**31:
            raise OverflowError("Python int too large to convert to C int")
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
        self._srv = _server or _home_mod.get_server(shared)
        self._home: _home_mod.Home = self._srv.home  # type: ignore[assignment]  # private or shared: where a new server comes from
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
        if replicate is not None:
            # The server runs Litestream for this file from now on (it checks the URL).
            self._open_params["replicate"] = str(replicate)
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

    # The blocking driver's request path (drivers.sync), as methods.
    _rpc = _sync.rpc
    _settle = _sync.settle
    _resync = _sync.resync

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
                        f = sqlite3.converters.get(name[start:j].upper())
                        break
            if f is None and self._detect_decltypes and decltypes and decltypes[i]:
                # sqlite3: the declared type up to the first '(' or blank ("INTEGER NOT NULL").
                key = re.split(r"[( ]", decltypes[i], 1)[0]  # type: ignore[arg-type]
                f = sqlite3.converters.get(key.upper())
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
        cur: Cursor = factory(self)  # (None: "'NoneType' object is not callable", as sqlite3)
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
        run(self, _core.op_end(self, "commit"))

    def rollback(self) -> None:
        self._check()
        run(self, _core.op_end(self, "rollback"))

    def close(self) -> None:
        self._check_thread()
        if not self._initialized:
            raise sqlite3.ProgrammingError(_base_connection)
        if self._closed:
            return
        self._closed = True
        self._close_session()

    def _close_session(self) -> None:
        if _core.deferred:
            _core.run_deferred()
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

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
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
        # holds _open_files_lock: it waits for neither (see _core.deferred).
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
                    _core.deferred.append(lambda: _forget_key_locked(key))
            srv = self._srv
            if srv.dead is None and self._gen == self._home.generation:
                opened = self._open_slot
                if opened is not None and srv.uncork(opened, wait=False):
                    return  # never sent: the server never heard of this session
                _core.send_from_del(srv, "close", {"session": self._session})
        except Exception:
            pass

    def iterdump(self) -> Iterator[str]:
        self._check_open()  # at the call, as sqlite3 (the dump itself is lazy)
        from sqlite3.dump import _iterdump  # type: ignore[attr-defined]  # the stdlib's own dump, over our cursor API

        lines: Iterator[str] = _iterdump(self)
        return lines

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
        err.sqlite_errorname = getattr(e, "sqlite_errorname", None)  # type: ignore[assignment]
        err.sqlite_errorcode = getattr(e, "sqlite_errorcode", None)  # type: ignore[assignment]
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



def _udf_name(what: str, name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError("%s must be str, not %s" % (what, type(name).__name__))
    if "\x00" in name:
        raise ValueError("embedded null character")


def _c_int(v: Any) -> int:
    n = operator.index(v)
    if not -(2**31) <= n < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    return n


_callable = callable


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

Connection.__module__ = _StdCursor.__module__ = "sqlite_rpc.dbapi"  # their public module, which re-exports them
