"""The protocol's error taxonomy (protocol/errors.json), mapped onto sqlite3's exceptions.

The JSON file is the single definition shared with the server; _taxonomy is its generated
copy (scripts/gen-protocol.mjs), so that an installed package needs nothing else.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Dict, Optional

from ._taxonomy import KIND_CONFLICT, KINDS, REASON_INTEGER_OVERFLOW, SQLITE_CODES
from ._taxonomy import PROTOCOL_VERSION as PROTOCOL_VERSION  # re-exported: sqlite_rpc.protocol.PROTOCOL_VERSION
from .binding import INT_OVERFLOW

# The DB-API classes are the stdlib's own, so `except sqlite3.Error` keeps working.
_DBAPI = {
    "Warning": sqlite3.Warning,
    "Error": sqlite3.Error,
    "InterfaceError": sqlite3.InterfaceError,
    "DatabaseError": sqlite3.DatabaseError,
    "DataError": sqlite3.DataError,
    "OperationalError": sqlite3.OperationalError,
    "IntegrityError": sqlite3.IntegrityError,
    "InternalError": sqlite3.InternalError,
    "ProgrammingError": sqlite3.ProgrammingError,
    "NotSupportedError": sqlite3.NotSupportedError,
    "MemoryError": MemoryError,
}


class ServerError(sqlite3.OperationalError):
    """The server process failed (crashed, could not start, or broke the protocol)."""


class StartRefused(ServerError):
    """The server may not be used, for a reason that falling back to the stdlib must not hide:
    an unsafe runtime folder, a shared server that refused this user, a start that waited in
    vain for another process's."""


class ConflictError(sqlite3.OperationalError):
    """An optimistic-locking guard failed: the statement changed another number of rows than
    expected (``expected_rows``, ``changes``) and was undone. Retry with fresh data."""

    expected_rows: Optional[int] = None
    changes: Optional[int] = None


def client_error(kind: str, message: str) -> Dict[str, Any]:
    """The error object of a kind only the client raises (errors.json's side "client"), with
    that kind's own code and class, shaped as a server's so exception_from_error takes both."""
    k = KINDS[kind]
    assert k.side == "client", kind
    return {"code": k.code, "message": message, "data": {"kind": kind, "dbapi": k.dbapi}}


def exception_from_error(error: Dict[str, Any]) -> BaseException:
    """Build the exception sqlite3 would raise from a JSON-RPC error object."""
    data = error.get("data") or {}
    message = error.get("message", "unknown error")
    cls = _DBAPI.get(data.get("dbapi") or "", None)
    if cls is None:
        kind = KINDS.get(data.get("kind") or "")
        cls = _DBAPI.get((kind.dbapi if kind is not None else None) or "DatabaseError", sqlite3.DatabaseError)
    if data.get("reason") == REASON_INTEGER_OVERFLOW:
        return OverflowError(INT_OVERFLOW)
    if data.get("kind") == KIND_CONFLICT:
        cls = ConflictError
    exc = cls(message)
    if isinstance(exc, ConflictError):
        exc.expected_rows = data.get("expected_rows")
        exc.changes = data.get("changes")
    if data.get("problems") is not None:
        exc.problems = list(data["problems"])  # type: ignore[attr-defined]  # IntegrityCheckFailed
    name: Optional[str] = data.get("sqlite_code")
    if name is not None and isinstance(exc, sqlite3.Error):
        exc.sqlite_errorname = name
        exc.sqlite_errorcode = data.get("sqlite_errno", SQLITE_CODES.get(name))  # type: ignore[assignment]
    exc.rpc_kind = data.get("kind")  # type: ignore[attr-defined]
    exc.rpc_code = error.get("code")  # type: ignore[attr-defined]
    # Why (errors.json's reasons of the kind) and what about: act on these, never on the message.
    exc.rpc_reason = data.get("reason")  # type: ignore[attr-defined]
    exc.rpc_name = data.get("name")  # type: ignore[attr-defined]
    exc.rpc_in_transaction = data.get("in_transaction")  # type: ignore[attr-defined]
    exc.rpc_begin_failed = data.get("begin_failed")  # type: ignore[attr-defined]  # the mode of the BEGIN sent with it, which failed
    exc.rpc_unsent = bool(data.get("unsent"))  # type: ignore[attr-defined]  # ServerGone before it was sent
    # Rows a failed request changed before it failed (an executemany or script stopped part
    # way), so that total_changes keeps counting as sqlite3's does.
    exc.rpc_changes = data.get("total_changes", data.get("changes"))  # type: ignore[attr-defined]
    exc.rpc_lastrowid = data.get("lastrowid")  # type: ignore[attr-defined]
    return exc
