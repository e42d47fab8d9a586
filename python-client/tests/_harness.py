"""Differential harness: run one script through the stdlib sqlite3 and through sqlite_rpc,
record every observable after every call, and compare the two records.

A script is a function of a Run. It opens connections with run.connect() and calls the
sqlite3 API on the recording wrappers (RConn, RCur); each call is recorded with its
outcome (the typed return value, or the exception's sqlite3 class, message, sqlite_errorname
and sqlite_errorcode) and the state after it (cursor rowcount / lastrowid / description,
connection in_transaction / total_changes). An exception never stops a script: it is an
observation like any other.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from typing import Any, Callable, Dict, List, Optional

import pytest

import sqlite_rpc


def typed(v: Any) -> Any:
    """A value with its exact type: 1 vs 1.0 vs True, -0.0 vs 0.0, b'' vs '' all differ."""
    t = type(v)
    if t in (list, tuple):
        return [t.__name__, [typed(x) for x in v]]
    if isinstance(v, (sqlite3.Row, sqlite_rpc.Row)):
        return ["Row", list(v.keys()), [typed(x) for x in v]]
    if isinstance(v, (sqlite3.Cursor, sqlite_rpc.Cursor)):
        return ["Cursor"]
    if isinstance(v, (sqlite3.Connection, sqlite_rpc.Connection)):
        return ["Connection"]
    if isinstance(v, dict):
        return ["dict", sorted((k, typed(x)) for k, x in v.items())]
    return [t.__name__, repr(v)]


_THREAD_ID = re.compile(r"thread id \d+")


def sqlite3_class(e: BaseException) -> str:
    """The nearest class of sqlite3 (or a builtin) in the exception's MRO: our subclasses
    of sqlite3's classes count as the class they extend."""
    for c in type(e).__mro__:
        if c.__module__ in ("sqlite3", "builtins"):
            return "%s.%s" % (c.__module__, c.__qualname__)
    return "%s.%s" % (type(e).__module__, type(e).__qualname__)


def exc_info(e: BaseException) -> List[Any]:
    msg = _THREAD_ID.sub("thread id N", str(e))
    return ["raised", sqlite3_class(e), msg, getattr(e, "sqlite_errorname", None), getattr(e, "sqlite_errorcode", None)]


def _attempt(fn: Callable[[], Any]) -> List[Any]:
    try:
        return ["ok", typed(fn())]
    except Exception as e:  # noqa: BLE001 - every exception is an observation
        return exc_info(e)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _short(v: Any, n: int = 80) -> str:
    s = "<class %s>" % v.__name__ if isinstance(v, type) else _ADDRESS.sub("", repr(v))
    return s if len(s) <= n else s[: n - 3] + "..."


class Run:
    """One execution of a script against one module."""

    def __init__(self, module: Any, folder: str) -> None:
        self.module = module
        self.folder = folder
        self.log: List[Any] = []
        self.conns: List[Any] = []
        os.makedirs(folder, exist_ok=True)

    @property
    def is_rpc(self) -> bool:
        return self.module is sqlite_rpc

    def path(self, name: str = "db") -> str:
        return os.path.join(self.folder, name + ".sqlite")

    def connect(self, database: Optional[str] = None, **kw: Any) -> "RConn":
        database = self.path() if database is None else database
        conn = self.module.connect(database, **kw)
        if self.is_rpc:
            # The comparison is meaningless if sqlite_rpc quietly fell back to the stdlib.
            assert isinstance(conn, sqlite_rpc.Connection), "sqlite_rpc.connect fell back to the stdlib: %r" % (conn,)
        self.conns.append(conn)
        self.record("connect(%s)" % ", ".join("%s=%r" % kv for kv in kw.items()), ["ok", ["Connection"]], conn=conn)
        return RConn(self, conn)

    def connect_fails(self, database: Any, **kw: Any) -> None:
        label = os.path.basename(database) if isinstance(database, str) else repr(database)
        self.record("connect(%s, %r)" % (label, kw), _attempt(lambda: self.module.connect(database, **kw)))

    def record(self, label: str, outcome: List[Any], conn: Any = None, cur: Any = None) -> None:
        entry: List[Any] = [label, outcome]
        if cur is not None:
            entry.append(["cursor", _attempt(lambda: cur.rowcount), _attempt(lambda: cur.lastrowid), _attempt(lambda: cur.description)])
        if conn is not None:
            entry.append(["conn", _attempt(lambda: conn.in_transaction), _attempt(lambda: conn.total_changes)])
        self.log.append(entry)

    def note(self, label: str, value: Any) -> None:
        """Record a value computed by the script (e.g. a check across connections)."""
        self.log.append([label, ["ok", typed(value)]])

    def attempt(self, label: str, fn: Callable[[], Any]) -> None:
        self.record(label, _attempt(fn))

    def close_all(self) -> None:
        for c in self.conns:
            try:
                c.close()
            except Exception:
                pass


class RCur:
    def __init__(self, run: Run, conn: "RConn", cur: Any) -> None:
        self.run, self.rconn, self.raw = run, conn, cur

    def _do(self, label: str, fn: Callable[[], Any]) -> Any:
        out: Dict[str, Any] = {}

        def wrapped() -> Any:
            out["v"] = fn()
            return out["v"]

        self.run.record(label, _attempt(wrapped), conn=self.rconn.raw, cur=self.raw)
        return out.get("v")

    def execute(self, sql: str, params: Any = None) -> "RCur":
        args = (sql,) if params is None else (sql, params)
        self._do("cur.execute(%s, %s)" % (_short(sql), _short(params)), lambda: self.raw.execute(*args))
        return self

    def executemany(self, sql: str, seq: Any) -> "RCur":
        self._do("cur.executemany(%s)" % _short(sql), lambda: self.raw.executemany(sql, seq))
        return self

    def executescript(self, sql: str) -> "RCur":
        self._do("cur.executescript(%s)" % _short(sql), lambda: self.raw.executescript(sql))
        return self

    def fetchone(self) -> Any:
        return self._do("fetchone", self.raw.fetchone)

    def fetchmany(self, *size: int) -> Any:
        return self._do("fetchmany%r" % (size,), lambda: self.raw.fetchmany(*size))

    def fetchall(self) -> Any:
        return self._do("fetchall", self.raw.fetchall)

    def iterate(self) -> Any:
        return self._do("list(cursor)", lambda: list(self.raw))

    def next(self) -> Any:
        return self._do("next(cursor)", lambda: next(self.raw))

    def close(self) -> None:
        self._do("cur.close", self.raw.close)

    def set(self, attr: str, value: Any) -> None:
        self._do("cur.%s = %s" % (attr, _short(value)), lambda: setattr(self.raw, attr, value))

    def get(self, attr: str) -> Any:
        return self._do("cur.%s" % attr, lambda: getattr(self.raw, attr))


class RConn:
    def __init__(self, run: Run, conn: Any) -> None:
        self.run, self.raw = run, conn

    def _do(self, label: str, fn: Callable[[], Any], cur: Any = None) -> Any:
        out: Dict[str, Any] = {}

        def wrapped() -> Any:
            out["v"] = fn()
            return out["v"]

        self.run.record(label, _attempt(wrapped), conn=self.raw, cur=cur)
        return out.get("v")

    def cursor(self) -> RCur:
        return RCur(self.run, self, self._do("cursor()", self.raw.cursor))

    def execute(self, sql: str, params: Any = None, fetch: bool = True) -> Optional[RCur]:
        """conn.execute, then (by default) fetchall on the returned cursor."""
        args = (sql,) if params is None else (sql, params)
        cur = self._do("execute(%s, %s)" % (_short(sql), _short(params)), lambda: self.raw.execute(*args))
        if cur is None:
            return None
        rc = RCur(self.run, self, cur)
        self.run.record("  state", ["ok", None], cur=cur)
        if fetch:
            rc.fetchall()
        return rc

    def executemany(self, sql: str, seq: Any) -> Optional[RCur]:
        cur = self._do("executemany(%s)" % _short(sql), lambda: self.raw.executemany(sql, seq))
        if cur is None:
            return None
        self.run.record("  state", ["ok", None], cur=cur)
        return RCur(self.run, self, cur)

    def executescript(self, sql: str) -> Optional[RCur]:
        cur = self._do("executescript(%s)" % _short(sql), lambda: self.raw.executescript(sql))
        if cur is None:
            return None
        self.run.record("  state", ["ok", None], cur=cur)
        return RCur(self.run, self, cur)

    def commit(self) -> None:
        self._do("commit()", self.raw.commit)

    def rollback(self) -> None:
        self._do("rollback()", self.raw.rollback)

    def close(self) -> None:
        self._do("close()", self.raw.close)

    def set(self, attr: str, value: Any) -> None:
        self._do("conn.%s = %s" % (attr, _short(value)), lambda: setattr(self.raw, attr, value))

    def get(self, attr: str) -> Any:
        return self._do("conn.%s" % attr, lambda: getattr(self.raw, attr))

    def call(self, label: str, fn: Callable[[Any], Any]) -> Any:
        """Any other use of the raw connection, recorded."""
        return self._do(label, lambda: fn(self.raw))

    def block(self, body: Callable[[], None], fail: bool = False) -> None:
        """`with conn: body()`, optionally raising inside; records what escaped."""

        def run() -> None:
            with self.raw:
                body()
                if fail:
                    raise KeyError("raised inside the with block")

        self._do("with conn (fail=%s)" % fail, run)

    def in_thread(self, label: str, fn: Callable[[Any], Any]) -> None:
        """Run fn(raw connection) on another thread; records its outcome."""
        box: List[Any] = []
        t = threading.Thread(target=lambda: box.append(_attempt(lambda: fn(self.raw))))
        t.start()
        t.join()
        self.run.record("in thread: " + label, box[0], conn=self.raw)


# ---- running and comparing ---------------------------------------------------------------

def run_script(script: Callable[[Run], None], module: Any, folder: str) -> Run:
    # Adapters and converters live in sqlite3's module-wide registries (shared by both modules
    # by design): each run starts from, and leaves, the registries as they were.
    adapters, converters = dict(sqlite3.adapters), dict(sqlite3.converters)
    run = Run(module, folder)
    try:
        script(run)
    finally:
        run.close_all()
        sqlite3.adapters.clear()
        sqlite3.adapters.update(adapters)
        sqlite3.converters.clear()
        sqlite3.converters.update(converters)
    return run


def describe_difference(a: List[Any], b: List[Any]) -> str:
    lines = []
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "<missing>"
        y = b[i] if i < len(b) else "<missing>"
        if x != y:
            if isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and x[0] == y[0]:
                parts = ["    %r\n      sqlite3:    %r\n      sqlite_rpc: %r" % (j, p, q) for j, (p, q) in enumerate(zip(x, y)) if p != q]
                lines.append("step %d %s:\n%s" % (i, x[0], "\n".join(parts)))
            else:
                lines.append("step %d:\n  sqlite3:    %r\n  sqlite_rpc: %r" % (i, x, y))
    return "\n".join(lines[:8]) + ("\n... %d more differing steps" % (len(lines) - 8) if len(lines) > 8 else "")


def assert_same(script: Callable[[Run], None], tmp_path: Any) -> List[Any]:
    """Runs the script through both modules; the records must be identical."""
    std = run_script(script, sqlite3, os.path.join(str(tmp_path), "sqlite3"))
    rpc = run_script(script, sqlite_rpc, os.path.join(str(tmp_path), "sqlite_rpc"))
    assert std.log, "the script recorded nothing"
    if std.log != rpc.log:
        pytest.fail("sqlite_rpc differs from sqlite3:\n" + describe_difference(std.log, rpc.log), pytrace=False)
    return std.log


class Corpus:
    """A named list of scripts; `xfail` marks a documented difference (see DIFFERENCES.md)."""

    def __init__(self) -> None:
        self.items: List[Any] = []

    def script(self, fn: Optional[Callable[[Run], None]] = None, *, xfail: Optional[str] = None) -> Any:
        def add(f: Callable[[Run], None]) -> Callable[[Run], None]:
            marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
            self.items.append(pytest.param(f, id=f.__name__, marks=marks))
            return f

        return add(fn) if fn is not None else add

    def params(self) -> List[Any]:
        return self.items


def table(r: Run, schema: str = "t(id INTEGER PRIMARY KEY, v TEXT)", **kw: Any) -> "RConn":
    """A connection (connect(**kw)) whose table `schema` is created and committed."""
    db = r.connect(**kw)
    db.execute("CREATE TABLE %s" % schema)
    db.commit()
    return db


def in_forked_child(fn: Callable[[Dict[str, Any]], None]) -> Dict[str, Any]:
    """Runs fn(report) in a forked child and returns what it put in the report (with
    "error" if it raised). The child leaves with os._exit: no atexit, no pytest teardown."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        report: Dict[str, Any] = {}
        try:
            fn(report)
        except BaseException as e:  # noqa: BLE001
            report["error"] = repr(e)
        os.write(w, json.dumps(report).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        report = json.loads(f.read())
    os.waitpid(pid, 0)
    return report
