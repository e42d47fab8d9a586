"""An aiosqlite-compatible async API on the same multiplexed server connection.

    async with sqlite_rpc.aio.connect("app.db") as db:
        await db.execute("INSERT INTO t VALUES (?)", (1,))
        await db.commit()
        async with db.execute("SELECT * FROM t") as cursor:
            async for row in cursor:
                ...

No thread per connection: requests go out on the shared pipe and their futures are
completed on the event loop. The sqlite3 semantics (implicit BEGIN, rowcount, lastrowid,
Row, exceptions) are the synchronous API's, reused request by request. Without the server,
the same objects run the stdlib sqlite3 on one worker thread per connection (as aiosqlite).
"""
from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Dict, Generator, Generic, Iterable, List, Optional, Tuple, TypeVar, Union

from .. import _core, fallback
from .._core import Params
from ..connection import Connection as SyncConnection
from ..cursor import Cursor as SyncCursor
from ..protocol import ServerError
from ..row import Row
from ..transport.client import ServerProcess

__all__ = ["connect", "Connection", "Cursor", "Row", "Error"]
Error = sqlite3.Error


T = TypeVar("T")
# The connection and cursors an aio Connection wraps: sqlite_rpc's, or the stdlib's in fallback mode.
AnyConnection = Union[SyncConnection, sqlite3.Connection]
AnyCursor = Union[SyncCursor, sqlite3.Cursor]


async def _close_cursor(cur: Optional["Cursor"]) -> None:
    if cur is not None:
        await cur.close()


async def _nothing(_obj: Any) -> None:
    pass


class _Awaitable(Generic[T]):
    """What aiosqlite's connect()/execute() return: awaitable, and an async context manager."""

    def __init__(self, coro: Coroutine[Any, Any, T], on_exit: Callable[[Any], Awaitable[None]]) -> None:
        self._coro = coro
        self._on_exit = on_exit
        self._obj: Optional[T] = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()

    async def __aenter__(self) -> T:
        self._obj = obj = await self._coro
        return obj

    async def __aexit__(self, *exc: Any) -> None:
        await self._on_exit(self._obj)


class Cursor:
    def __init__(self, conn: "Connection", cur: AnyCursor) -> None:
        self._conn = conn
        self._cur = cur

    # sqlite3 attributes pass through
    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> Optional[int]:
        return self._cur.lastrowid

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def arraysize(self) -> int:
        return self._cur.arraysize

    @arraysize.setter
    def arraysize(self, v: int) -> None:
        self._cur.arraysize = v

    @property
    def row_factory(self) -> Any:
        return self._cur.row_factory

    @row_factory.setter
    def row_factory(self, f: Any) -> None:
        self._cur.row_factory = f

    @property
    def connection(self) -> "Connection":
        return self._conn

    async def execute(self, sql: str, parameters: Params = ()) -> "Cursor":
        await self._conn._run_execute(self._cur, sql, parameters)
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Params]) -> "Cursor":
        await self._conn._run_many(self._cur, sql, seq_of_parameters)
        return self

    async def executescript(self, sql_script: str) -> "Cursor":
        await self._conn._run_script(self._cur, sql_script)
        return self

    async def fetchone(self) -> Any:
        return await self._conn._fetchone(self._cur)

    async def fetchmany(self, size: Optional[int] = None) -> List[Any]:
        n = self._cur.arraysize if size is None else size
        out: List[Any] = []
        while len(out) < n:
            row = await self.fetchone()
            if row is None:
                break
            out.append(row)
        return out

    async def fetchall(self) -> List[Any]:
        out: List[Any] = []
        while True:
            row = await self.fetchone()
            if row is None:
                return out
            out.append(row)

    async def close(self) -> None:
        await self._conn._call(self._cur.close)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            row = await self.fetchone()
            if row is None:
                return
            yield row

    async def __aenter__(self) -> "Cursor":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class Connection:
    """aiosqlite.Connection's API. Over the server, or over the stdlib on a worker thread."""

    def __init__(self, sync: AnyConnection, executor: Optional[ThreadPoolExecutor]) -> None:
        self._sync = sync  # a sqlite_rpc Connection, or a stdlib one in fallback mode
        self._executor = executor
        self._closed = False

    @property
    def _server_conn(self) -> SyncConnection:
        """The sqlite_rpc connection whose operations the core runs (not in fallback mode)."""
        sync = self._sync
        if not isinstance(sync, SyncConnection):
            raise sqlite3.InterfaceError("this connection uses the stdlib sqlite3 fallback")
        return sync

    # -- how a request runs ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Local work: inline over the server (it is cheap), on the thread in fallback mode."""
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # The request path is the blocking driver's: the core's prepare() before a request, its
    # failed() after an error (the recovery policy: what is repeated on a new server, what is
    # reported lost), with awaited sends and replies between them.

    async def _rpc(self, method: str, params: Dict[str, Any], _on_settle: Any = None) -> Any:
        return await self._collect(await self._send_ahead(method, params))

    async def _send_ahead(self, method: str, params: Dict[str, Any]) -> Any:
        """Send a request; its reply is _collect's (an op may send several before it reads them)."""
        srv, params, before = _core.prepare(self._server_conn, method, params)
        if before is not None:
            await self._rpc(*before)
        return await self._send(srv, method, params), method, params

    async def _send(self, srv: ServerProcess, method: str, params: Dict[str, Any]) -> Any:
        """A future for the reply to the request, sent behind the pipelined open (if any),
        whose error it raises."""
        if _core.deferred:
            _core.run_deferred()  # what a __del__ could not send
        conn = self._server_conn
        _core.reopen_if_due(conn, srv)
        loop = asyncio.get_running_loop()
        opening = _core.pending_open(conn)
        if opening is not None:
            if not opening.done:
                await srv.call_async("ping", {}, loop)  # replies come in order
            _core.opened(conn, srv, opening)  # done: raises the open error, if any
        return srv.call_async(method, params, loop)

    async def _collect(self, handle: Any) -> Any:
        reply, method, params = handle
        try:
            return await reply
        except ServerError:
            raise
        except sqlite3.Error as e:
            srv, again = _core.failed(self._server_conn, e, method, params)
        return await (await self._send(srv, method, again))

    async def _drive(self, op: _core.Op) -> Any:
        """Run one of the core's operations with awaited round trips."""
        step = _core.Steps(op)
        req = step.first()
        while req is not None:
            try:
                if req[0] is _core.AHEAD:
                    res = await self._send_ahead(req[1], req[2])
                elif req[0] is _core.COLLECT:
                    res = await self._collect(req[1])
                else:
                    res = await self._rpc(req[0], req[1])
            except Exception as e:
                req = step.throw(e)
            else:
                req = step.send(res)
        return step.result

    # Over the server, the core's operations on sqlite_rpc's cursor; in fallback mode, the
    # stdlib cursor's methods on the worker thread.

    async def _run_execute(self, cur: AnyCursor, sql: str, parameters: Params) -> None:
        self._check_open()
        if isinstance(cur, SyncCursor):
            await self._drive(_core.op_execute(cur, sql, parameters))
        else:
            await self._call(cur.execute, sql, parameters)

    async def _run_many(self, cur: AnyCursor, sql: str, seq: Iterable[Params]) -> None:
        self._check_open()
        if isinstance(cur, SyncCursor):
            await self._drive(_core.op_executemany(cur, sql, seq))
        else:
            await self._call(cur.executemany, sql, seq)

    async def _run_script(self, cur: AnyCursor, sql: str) -> None:
        self._check_open()
        if isinstance(cur, SyncCursor):
            await self._drive(_core.op_script(cur, sql))
        else:
            await self._call(cur.executescript, sql)

    async def _fetchone(self, cur: AnyCursor) -> Any:
        self._check_open()
        if not isinstance(cur, SyncCursor):
            return await self._call(cur.fetchone)
        if not await self._drive(_core.op_fill(cur)):
            return None
        return cur.fetchone()  # buffered: no round trip

    # -- aiosqlite API -----------------------------------------------------------------------

    # As in aiosqlite, these return an awaitable that is also an async context manager (which
    # closes the cursor on exit).

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("Connection closed")  # aiosqlite's error for a closed connection

    def execute(self, sql: str, parameters: Params = ()) -> "_Awaitable[Cursor]":
        async def run() -> Cursor:
            cur = await self._cursor()
            await cur.execute(sql, () if parameters is None else parameters)
            return cur

        return _Awaitable(run(), _close_cursor)

    def cursor(self) -> "_Awaitable[Cursor]":
        return _Awaitable(self._cursor(), _close_cursor)

    async def _cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self, await self._call(self._sync.cursor))

    def executemany(self, sql: str, seq: Iterable[Params]) -> "_Awaitable[Cursor]":
        async def run() -> Cursor:
            cur = await self._cursor()
            return await cur.executemany(sql, seq)

        return _Awaitable(run(), _close_cursor)

    def executescript(self, sql_script: str) -> "_Awaitable[Cursor]":
        async def run() -> Cursor:
            cur = await self._cursor()
            return await cur.executescript(sql_script)

        return _Awaitable(run(), _close_cursor)

    def execute_fetchall(self, sql: str, parameters: Params = ()) -> "_Awaitable[List[Any]]":
        async def run() -> List[Any]:
            cur = await self.execute(sql, parameters)
            return await cur.fetchall()

        return _Awaitable(run(), _nothing)

    def execute_insert(self, sql: str, parameters: Params = ()) -> "_Awaitable[Optional[Tuple[Optional[int]]]]":
        async def run() -> Optional[Tuple[Optional[int]]]:
            cur = await self.execute(sql, parameters)
            return (cur.lastrowid,)  # aiosqlite: the row of SELECT last_insert_rowid()

        return _Awaitable(run(), _nothing)

    async def iterdump(self) -> AsyncIterator[str]:
        """aiosqlite's async iterator over the dump (built on a worker thread)."""
        self._check_open()
        lines = await asyncio.get_running_loop().run_in_executor(self._executor, lambda: list(self._sync.iterdump()))
        for line in lines:
            yield line

    def __getattr__(self, name: str) -> Any:
        # create_function, set_authorizer, backup, interrupt...: sqlite3.NotSupportedError
        # (DIFFERENCES.md), raised when awaited, as aiosqlite's coroutines would fail.
        if name.startswith("_"):
            raise AttributeError(name)
        sync_attr = getattr(self._sync, name)

        async def unsupported(*a: Any, **k: Any) -> Any:
            return sync_attr(*a, **k)

        return unsupported

    async def commit(self) -> None:
        await self._end("commit")

    async def rollback(self) -> None:
        await self._end("rollback")

    async def _end(self, method: str) -> None:
        self._check_open()
        sync = self._sync
        if isinstance(sync, SyncConnection):
            await self._drive(_core.op_end(sync, method))
        else:
            await self._call(getattr(sync, method))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._call(self._sync.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    @property
    def in_transaction(self) -> bool:
        return self._sync.in_transaction

    @property
    def total_changes(self) -> int:
        return self._sync.total_changes

    @property
    def isolation_level(self) -> Optional[str]:
        return self._sync.isolation_level

    @isolation_level.setter
    def isolation_level(self, v: Optional[str]) -> None:
        self._sync.isolation_level = v

    @property
    def row_factory(self) -> Any:
        return self._sync.row_factory

    @row_factory.setter
    def row_factory(self, f: Any) -> None:
        self._sync.row_factory = f

    @property
    def text_factory(self) -> Any:
        return self._sync.text_factory

    @text_factory.setter
    def text_factory(self, f: Any) -> None:
        self._sync.text_factory = f

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def connect(database: Any, *, timeout: float = 5.0, isolation_level: Optional[str] = "", detect_types: int = 0,
            uri: bool = False, keep_open: bool = False, shared: Optional[bool] = None, replicate: Optional[str] = None,
            **kwargs: Any) -> "_Awaitable[Connection]":
    """aiosqlite.connect: `await connect(...)` or `async with connect(...) as db`.

    keep_open, shared, replicate: as sqlite_rpc.connect's (for callers that own their files; which server)."""

    async def open_() -> Connection:
        srv = fallback.server_or_none(shared)
        if srv is None:
            ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite_rpc-aio")
            loop = asyncio.get_running_loop()
            std = await loop.run_in_executor(
                ex, lambda: sqlite3.connect(database, timeout=timeout, isolation_level=isolation_level,  # type: ignore[arg-type]
                                            detect_types=detect_types, uri=uri, check_same_thread=False))
            return Connection(std, ex)
        sync = SyncConnection(database, timeout, detect_types, isolation_level, False, None, 128, uri, keep_open=keep_open, replicate=replicate, _server=srv)
        conn = Connection(sync, None)
        await conn._rpc("ping", {})  # collects the pipelined open: connect() fails here, as aiosqlite's does
        return conn

    return _Awaitable(open_(), lambda db: db.close())


for _cls in (_Awaitable, Cursor, Connection):
    _cls.__module__ = "sqlite_rpc.aio"  # their public module, which re-exports them
