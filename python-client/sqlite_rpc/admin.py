"""The server's operations from Python: what it runs (server_info, stats, metrics), online
backup, restore and integrity checks, and letting go of this process's servers (shutdown)."""
from __future__ import annotations

import os
import sqlite3
from typing import Any, Dict, List, Optional, Union

from . import fallback as _fallback
from .connection import Connection
from .transport import home as _home
from .transport.client import ServerProcess

StrPath = Union[str, "os.PathLike[str]"]
# A database: its file (a path), or a sqlite_rpc Connection (also a private :memory: one).
DatabaseRef = Union[StrPath, Connection]


def server_info(*, shared: Optional[bool] = None) -> Dict[str, Any]:
    """initialize's result from the running server (versions, capabilities; server.pid,
    server.shared). shared: which server, as connect()'s."""
    info: Dict[str, Any] = _home.get_server(shared).info
    return info


def stats(*, shared: Optional[bool] = None) -> Dict[str, Any]:
    """The server's counters (statement caches, group commits, readers, connections...)."""
    counters: Dict[str, Any] = _home.get_server(shared).call("stats", {})
    return counters


def metrics(format: str = "json", *, shared: Optional[bool] = None) -> Union[str, List[Dict[str, Any]]]:
    """The server's metrics: "json" gives prom-client's JSON (a list of metric dicts with
    name, help, type and values), "prometheus" the text exposition format as a str."""
    if format not in ("json", "prometheus"):
        raise ValueError("format must be 'json' or 'prometheus', not %r" % (format,))
    res = _server_for("metrics()", shared).call("metrics", {"format": format})
    out: Union[str, List[Dict[str, Any]]] = res["text"] if format == "prometheus" else res["metrics"]
    return out


def _server_for(what: str, shared: Optional[bool] = None, database: Optional[DatabaseRef] = None) -> ServerProcess:
    if _fallback.disabled_reason() is not None:
        raise sqlite3.NotSupportedError("%s needs the sqlite-rpc server; this process uses the stdlib sqlite3 fallback" % what)
    if isinstance(database, Connection):
        return database._home.get()  # its session lives on its own server
    return _home.get_server(shared)


def _db_ref(database: DatabaseRef) -> Dict[str, Any]:
    """A path (str or os.PathLike) or a sqlite_rpc Connection, as the protocol's session/path."""
    if isinstance(database, Connection):
        database._check()
        return {"session": database._session}
    return {"path": os.fsdecode(os.fspath(database))}


def backup(database: DatabaseRef, dest: StrPath, *, overwrite: bool = False, shared: Optional[bool] = None) -> Dict[str, Any]:
    """Online backup of a database (a path, or a Connection: also a private :memory: one) to
    the file dest, while other connections keep writing. The copy is one consistent
    snapshot, verified with integrity_check before it is put in place; returns a dict with
    dest, pages, bytes and duration_ms. Refuses an existing dest unless overwrite.
    shared: which server does it for a path, as connect()'s (a Connection's own does it
    for a Connection); the same for restore() and check()."""
    params = dict(_db_ref(database), dest=os.path.abspath(os.fsdecode(os.fspath(dest))), overwrite=bool(overwrite))
    res: Dict[str, Any] = _server_for("backup()", shared, database).call("backup", params)
    return res


def restore(source: StrPath, database: DatabaseRef, *, force: bool = False, shared: Optional[bool] = None) -> Dict[str, Any]:
    """Replace the content of database (a path or Connection) with the backup file source,
    after checking source with integrity_check. Connections to it stay open and see the
    restored data. Refused while a connection holds a transaction on it, unless force (its
    transaction is then rolled back and it gets an OperationalError on its next call)."""
    params = dict(_db_ref(database), source=os.path.abspath(os.fsdecode(os.fspath(source))), force=bool(force))
    res: Dict[str, Any] = _server_for("restore()", shared, database).call("restore", params)
    return res


def check(database: DatabaseRef, *, full: bool = False, shared: Optional[bool] = None) -> Dict[str, Any]:
    """quick_check (or integrity_check with full=True) of a database; returns a dict with ok
    (bool) and problems (what SQLite reported). A file no server has open is checked as it
    is, without being changed."""
    params = dict(_db_ref(database), mode="full" if full else "quick")
    if "path" in params:
        params["path"] = os.path.abspath(params["path"])
    res = dict(_server_for("check()", shared, database).call("check", params))
    res["problems"] = list(res["problems"])
    return res


def shutdown(*, shared: Optional[bool] = None) -> None:
    """Let go of this process's servers now (or of one kind, with shared=True/False): a
    private server stops; the shared one is only disconnected from, as other processes may
    use it (it exits by itself once idle). The next use starts or finds one again."""
    _home.shutdown(shared)
