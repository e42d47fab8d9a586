"""sqlite_rpc: the stdlib sqlite3 API (PEP 249), served by the sqlite-rpc server.

    import sqlite_rpc as sqlite3        # drop-in
    conn = sqlite3.connect("app.db")

By default every process of the user shares one server (found, or started by the first
process that needs it, over a unix socket); connect(shared=False) or SQLITE_RPC_SHARED=0
gives a process a private server of its own instead. Either is used by every connection
and thread of the process. Without the binary (or with SQLITE_RPC_DISABLE=1) every entry
point returns the stdlib's own objects, after one warning; backend() says which is in use.
"""
from __future__ import annotations

import inspect as _inspect
import sqlite3 as _stdlib
import sys as _sys
from typing import Any, Union

from . import dbapi, fallback as _fallback, process, protocol  # noqa: F401 - reachable as before: sqlite_rpc.process...
from .admin import backup, check, metrics, restore, server_info, shutdown, stats
from .connection import Connection
from .cursor import Cursor
from .protocol import ConflictError
from .row import Row
from .seed import Database
from .transport import home as _home

from ._version import __version__

# PEP 249 module globals, as sqlite3 has them. threadsafety 3 (connections and cursors may
# be shared by threads, with check_same_thread=False) holds: each connection serialises its
# requests and fetches with its own lock. version is the DB-API module version sqlite3
# reports ("2.6.0"), not this package's (__version__).
apilevel = "2.0"
paramstyle = "qmark"
threadsafety = 3
version = _stdlib.version
version_info = _stdlib.version_info

# The stdlib's exception classes, so `except sqlite3.Error` catches ours.
Warning = _stdlib.Warning
Error = _stdlib.Error
InterfaceError = _stdlib.InterfaceError
DatabaseError = _stdlib.DatabaseError
DataError = _stdlib.DataError
OperationalError = _stdlib.OperationalError
IntegrityError = _stdlib.IntegrityError
InternalError = _stdlib.InternalError
ProgrammingError = _stdlib.ProgrammingError
NotSupportedError = _stdlib.NotSupportedError

PARSE_DECLTYPES = _stdlib.PARSE_DECLTYPES
PARSE_COLNAMES = _stdlib.PARSE_COLNAMES
PrepareProtocol = _stdlib.PrepareProtocol
Binary = memoryview
Date = _stdlib.Date
Time = _stdlib.Time
Timestamp = _stdlib.Timestamp  # type: ignore[attr-defined]  # (missing from typeshed's sqlite3)
DateFromTicks = _stdlib.DateFromTicks
TimeFromTicks = _stdlib.TimeFromTicks
TimestampFromTicks = _stdlib.TimestampFromTicks

# Adapters and converters live in the stdlib's registries, shared with code using sqlite3.
register_adapter = _stdlib.register_adapter
register_converter = _stdlib.register_converter
adapters = _stdlib.adapters
converters = _stdlib.converters
complete_statement = _stdlib.complete_statement
adapt = _stdlib.adapt
enable_callback_tracebacks = _stdlib.enable_callback_tracebacks
if hasattr(_stdlib, "enable_shared_cache"):  # Python < 3.12 (deprecated there); it concerns the stdlib's connections only
    enable_shared_cache = _stdlib.enable_shared_cache
Blob = _stdlib.Blob

# sqlite3's SQLITE_* constants (result codes for sqlite_errorcode, authorizer action codes).
globals().update({_k: getattr(_stdlib, _k) for _k in dir(_stdlib) if _k.startswith("SQLITE_")})


def connect(*args: Any, **kwargs: Any) -> Union[Connection, _stdlib.Connection]:
    """sqlite3.connect(database, timeout=5.0, detect_types=0, isolation_level="",
    check_same_thread=True, factory=Connection, cached_statements=128, uri=False); returns a
    sqlite_rpc.Connection (or the stdlib's, as fallback: hence the type). As sqlite3's, it calls factory
    with its arguments as they were given, positional or keyword (gh-95132).

    slow_query_ms (keyword only, server only): log this database's statements slower than
    that to the "sqlite_rpc.slow_query" logger (the server's --slow-query-ms otherwise).

    keep_open (keyword only, server only): for callers that own their files. close() does
    not wait for the WAL to be folded into the file; the server does that once the file has
    been idle for a moment and lets go of it after --keep-open-ms (2 s). A file deleted,
    replaced or changed on disk is still never served stale.

    replicate (keyword only, server only): replicate the file continuously with Litestream
    to this location (file:///folder, s3://bucket/prefix?endpoint=...); the replica is
    URL/<file name>. The server keeps doing so until it stops (README, "Replication and
    moving machines").

    shared (keyword only): True for the server all processes of the user share, False for
    this process's private one; None (the default) follows $SQLITE_RPC_SHARED ("0" or "1"),
    else the shared one."""
    factory = args[_FACTORY_POS] if len(args) > _FACTORY_POS else kwargs.get("factory")
    ours = factory is None or factory is _stdlib.Connection or (isinstance(factory, type) and issubclass(factory, Connection))
    srv = _fallback.server_or_none(kwargs.get("shared")) if ours else None
    if srv is None:
        # A custom sqlite3.Connection subclass needs the real module; so does the fallback.
        std_kwargs = {k: v for k, v in kwargs.items() if k not in _EXTENSIONS}
        if kwargs.get("replicate"):
            # Losing replication silently would be worse than a warning: nothing else runs Litestream.
            import warnings

            warnings.warn("sqlite_rpc.connect(replicate=...): the file is NOT replicated, since the stdlib sqlite3 "
                          "serves it (no sqlite-rpc server, or a sqlite3.Connection factory); run Litestream yourself", RuntimeWarning, stacklevel=2)
        std: _stdlib.Connection = _stdlib.connect(*args, **std_kwargs)
        return std
    if isinstance(factory, type) and issubclass(factory, Connection):
        conn: Connection = factory(*args, **kwargs)
        return conn
    return Connection(*args, **kwargs, _server=srv)


_FACTORY_POS = 5
_EXTENSIONS = ("slow_query_ms", "keep_open", "shared", "replicate")
connect.__signature__ = _inspect.signature(  # type: ignore[attr-defined]
    lambda database, timeout=5.0, detect_types=0, isolation_level="", check_same_thread=True, factory=Connection,
    cached_statements=128, uri=False, *, slow_query_ms=None, keep_open=False, shared=None, replicate=None: None)


def backend() -> str:
    """'sqlite-rpc' when connect() uses the server, 'sqlite3' when it falls back to the stdlib."""
    return "sqlite3" if _fallback.disabled_reason() is not None else "sqlite-rpc"


def __getattr__(name: str) -> Any:
    if name == "OptimizedUnicode" and _sys.version_info < (3, 12):
        # As sqlite3's own module __getattr__ (Python 3.11), warning included.
        import warnings

        msg = ("""
            OptimizedUnicode is deprecated and will be removed in Python 3.12.
            Since Python 3.3 it has simply been an alias for 'str'.
        """)
        warnings.warn(msg, DeprecationWarning, stacklevel=2)
        return str
    # sqlite_version describes the engine actually in use, which needs the server running.
    if name in ("sqlite_version", "sqlite_version_info"):
        if backend() == "sqlite3":
            return getattr(_stdlib, name)
        v: str = _home.get_server().info["sqlite_version"]
        return v if name == "sqlite_version" else tuple(int(x) for x in v.split("."))
    raise AttributeError("module 'sqlite_rpc' has no attribute %r" % name)


__all__ = [
    "connect", "Connection", "Cursor", "Row", "Database", "backend", "server_info", "stats", "metrics", "shutdown",
    "backup", "restore", "check",
    "ConflictError",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError", "IntegrityError",
    "InternalError", "ProgrammingError", "NotSupportedError", "PARSE_DECLTYPES", "PARSE_COLNAMES",
    "register_adapter", "register_converter", "complete_statement", "apilevel", "paramstyle", "threadsafety",
    "version", "version_info", "Binary", "Date", "Time", "Timestamp", "DateFromTicks", "TimeFromTicks",
    "TimestampFromTicks", "PrepareProtocol", "Blob", "adapters", "converters", "adapt", "enable_callback_tracebacks",
]
