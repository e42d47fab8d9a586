"""The blocking driver: runs the core's operations (sqlite_rpc._core) with blocking round
trips on the calling thread, and collects what an interrupted wait left behind."""
from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from .. import _core
from .._core import Op
from ..protocol import ServerError
from ..transport import client as _client
from ..transport.client import ServerProcess

if TYPE_CHECKING:
    from ..connection import Connection


def run(conn: "Connection", op: Op) -> Any:
    """Drive an operation with blocking round trips; its result is the generator's return value."""
    lock = conn._lock
    if lock is not None:  # a connection shared by threads: one operation at a time
        with lock:
            return _drive(conn, op)
    return _drive(conn, op)


def _drive(conn: "Connection", op: Op) -> Any:
    if conn._unsettled is not None:
        conn._settle()  # the op reads the connection's state (in_transaction) before it sends anything
    step = _core.Steps(op)
    req = step.first()
    while req is not None:
        try:
            if req[0] is _core.AHEAD:
                res = send_ahead(conn, req[1], req[2])
            elif req[0] is _core.COLLECT:
                res = collect(conn, req[1])
            else:
                res = rpc(conn, *req)
        except Exception as e:
            req = step.throw(e)
        else:
            req = step.send(res)
    return step.result


# The request path of a Connection, with blocking round trips: the core's prepare() before
# a request, its failed() after an error (the recovery policy, the async driver's too), and
# this driver's sending and waiting between them. Connection has them as methods (_rpc...).


def rpc(conn: "Connection", method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]] = None) -> Any:
    lock = conn._lock
    if lock is not None:
        with lock:
            return rpc_unlocked(conn, method, params, on_settle)
    return rpc_unlocked(conn, method, params, on_settle)


def exchange(conn: "Connection", srv: ServerProcess, method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]]) -> Any:
    """Send one request (behind the pipelined open, if any) and wait for its reply.

    An exception raised meanwhile by a signal handler (Ctrl-C's KeyboardInterrupt, an
    alarm handler's TimeoutError) reaches the caller, but the request is on its way and
    the server applies it: it is noted as unsettled, and the connection's next use
    collects its reply first (_settle), so that the client's view of the session, above
    all in_transaction, stays the server's."""
    return finish(conn, srv, start(conn, srv, method, params, on_settle), method, on_settle)


def start(conn: "Connection", srv: ServerProcess, method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]]) -> Any:
    """_exchange's send: the request's slot."""
    if _core.deferred:
        _core.run_deferred()
    _core.reopen_if_due(conn, srv)
    try:
        return srv.send(method, params)
    except BaseException as e:
        late = _client.interrupted_slot(e)
        if late is not None:
            conn._unsettled = (srv, late, method, on_settle)
        raise


def finish(conn: "Connection", srv: ServerProcess, slot: Any, method: str, on_settle: Optional[Callable[[Any], None]]) -> Any:
    """_exchange's wait: the reply to slot's request (behind the pipelined open, if any)."""
    waiting = None
    try:
        opened = conn._open_slot
        if opened is not None:
            # Pipelined behind the open: one round trip for connect + first statement.
            waiting = opened
            _core.opened(conn, srv, opened)  # raises the open error (e.g. unable to open database file)
        waiting = slot
        return srv.wait(slot)
    except BaseException as e:
        if not _core.is_reply_error(waiting, e):
            conn._unsettled = (srv, slot, method, on_settle)
        raise


def settle(conn: "Connection") -> None:
    """Collect the reply of the request an interruption left unsettled, and take in what
    it says (in_transaction, changes, rowid; a page for its cursor). Its error, if it
    failed, is not raised: the caller of that request got the interruption instead."""
    pending = conn._unsettled
    if pending is None:
        return
    srv, slot, method, on_settle = pending
    if _core.late_reply_lost(conn, srv, slot):
        conn._unsettled = None
        return
    try:
        res = srv.wait(slot)
    except BaseException as e:
        if not _core.is_reply_error(slot, e):
            raise  # interrupted again: still unsettled
        conn._unsettled = None
        _core.note_error(conn, e)
        return
    conn._unsettled = None
    _core.take_late_reply(conn, res, on_settle)


def resync(conn: "Connection") -> None:
    """_settle, under the connection's lock when it has one."""
    lock = conn._lock
    if lock is not None:
        with lock:
            conn._settle()
    else:
        conn._settle()


def rpc_unlocked(conn: "Connection", method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]] = None) -> Any:
    return collect(conn, send_ahead(conn, method, params, on_settle))


def send_ahead(conn: "Connection", method: str, params: Dict[str, Any], on_settle: Optional[Callable[[Any], None]] = None) -> Any:
    """Send a request; _collect waits for its reply (an op may send several first)."""
    srv, params, before = _core.prepare(conn, method, params)
    if before is not None:
        rpc_unlocked(conn, *before)
    return (srv, start(conn, srv, method, params, on_settle), method, params, on_settle)


def collect(conn: "Connection", handle: Any) -> Any:
    srv, slot, method, params, on_settle = handle
    try:
        return finish(conn, srv, slot, method, on_settle)
    except ServerError:
        raise
    except sqlite3.Error as e:
        srv, again = _core.failed(conn, e, method, params)
    return exchange(conn, srv, method, again, on_settle)
