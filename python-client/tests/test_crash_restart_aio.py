"""The crash scenarios of test_crash_restart.py, run through the async API as well: both
drivers share one recovery policy (sqlite_rpc._core), so the outcome must be the same."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Tuple

import pytest

import sqlite_rpc
from sqlite_rpc import aio

from test_crash_restart import _kill_server

pytestmark = pytest.mark.private_server  # they kill this process's private server


def _outcome(fn: Callable[[], Any]) -> Tuple[str, Any]:
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001
        return (type(e).__name__, str(e))


class _Sync:
    """The scenario's steps on a blocking connection."""

    def __init__(self, path: str) -> None:
        self.db = sqlite_rpc.connect(path)

    def step(self, what: str, *args: Any) -> Tuple[str, Any]:
        if what == "fetchall":
            return _outcome(lambda: self.db.execute(*args).fetchall())
        if what == "fetchrest":
            return _outcome(lambda: self.cur.fetchall())
        if what == "open_cursor":
            self.cur = self.db.execute(*args)
            return _outcome(lambda: self.cur.fetchmany(10))
        return _outcome(lambda: getattr(self.db, what)(*args) and None)

    def state(self) -> bool:
        return self.db.in_transaction


class _Async:
    """The same steps on an aio connection, each run to completion on one event loop."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = self.loop.run_until_complete(aio.connect(path))

    def _run(self, coro_fn: Callable[[], Any]) -> Tuple[str, Any]:
        async def go() -> Any:
            return await coro_fn()

        return _outcome(lambda: self.loop.run_until_complete(go()))

    def step(self, what: str, *args: Any) -> Tuple[str, Any]:
        if what == "fetchall":
            async def q() -> List[Any]:
                cur = await self.db.execute(*args)
                return await cur.fetchall()

            return self._run(q)
        if what == "fetchrest":
            return self._run(lambda: self.cur.fetchall())
        if what == "open_cursor":
            async def o() -> List[Any]:
                self.cur = await self.db.execute(*args)
                return await self.cur.fetchmany(10)

            return self._run(o)

        async def call() -> None:
            await getattr(self.db, what)(*args)

        return self._run(call)

    def state(self) -> bool:
        return self.db.in_transaction

    def close(self) -> None:
        self.loop.run_until_complete(self.db.close())
        self.loop.close()


_COUNT = ("fetchall", "SELECT count(*) FROM t")
# (steps before the kill, steps after it): each scenario of the sync crash tests.
_SCENARIOS = {
    "idle read is retried": ([], [_COUNT]),
    "write goes to a new server": ([("execute", "INSERT INTO t(v) VALUES ('after')"), ("commit",)], [_COUNT]),
    "write after the crash goes to a new server": ([], [("execute", "INSERT INTO t(v) VALUES ('after')"), ("commit",), _COUNT]),
    "idle transaction is reported lost": ([("execute", "INSERT INTO t(v) VALUES ('uncommitted')")], [_COUNT, _COUNT, ("commit",)]),
    "commit of a lost transaction": ([("execute", "INSERT INTO t(v) VALUES ('uncommitted')")], [("commit",), _COUNT]),
    "rest of a result is lost": ([("open_cursor", "SELECT * FROM t")], [("fetchrest",), ("fetchrest",), _COUNT]),
}


def _play(make: Callable[[str], Any], path: str, before: List[Any], after: List[Any]) -> List[Any]:
    conn = make(path)
    out = [conn.step(*s) for s in before]
    _kill_server()
    out += [(conn.step(*s), conn.state()) for s in after]
    if isinstance(conn, _Async):
        conn.close()
    return out


@pytest.mark.parametrize("name", list(_SCENARIOS))
def test_async_api_recovers_from_a_crash_as_the_sync_api_does(tmp_path, name):
    before, after = _SCENARIOS[name]
    results = []
    for i, make in enumerate((_Sync, _Async)):
        path = str(tmp_path / ("crash%d.sqlite" % i))
        setup = sqlite_rpc.connect(path)
        setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        setup.executemany("INSERT INTO t(v) VALUES (?)", [("row %d" % i,) for i in range(10000)])
        setup.commit()
        setup.close()
        results.append(_play(make, path, before, after))
    sync, asynchronous = results
    assert asynchronous == sync
    assert any(r[0][0] != "ok" for r in sync[len(before):]) or name.endswith(("retried", "new server"))
