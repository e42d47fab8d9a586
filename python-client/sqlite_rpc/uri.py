"""Database names as sqlite3 takes them: file names, file: URIs and their query parameters
(mode, immutable, ...), and isolation levels."""
from __future__ import annotations

import os
import sqlite3
from stat import S_ISDIR
from typing import Any, Dict, Optional, Tuple, Union
from urllib.parse import parse_qs, unquote_to_bytes, urlparse

def _cantopen() -> sqlite3.OperationalError:
    e = sqlite3.OperationalError("unable to open database file")
    e.sqlite_errorname, e.sqlite_errorcode = "SQLITE_CANTOPEN", sqlite3.SQLITE_CANTOPEN
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
            e.sqlite_errorname, e.sqlite_errorcode = "SQLITE_ERROR", sqlite3.SQLITE_ERROR
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
        st_mode: Optional[int] = os.stat(database).st_mode
    except (OSError, ValueError):
        st_mode = None  # (what os.path.exists says False to)
    if st_mode is not None and S_ISDIR(st_mode):
        raise _cantopen()
    # What sqlite3.connect refuses is found here, and a missing file is created, as sqlite3
    # does; an existing file is never opened: closing any descriptor of a file drops every
    # POSIX lock this process holds on it (a stdlib connection's transaction, say).
    if st_mode is not None:
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
