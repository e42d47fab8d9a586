"""The multiplexed connection to one server (ServerProcess): requests multiplexed by id over
one byte stream, pending requests, the leader and follower readers, corking, the asyncio
reader, what a lost server means.

There is no dedicated reader thread on the synchronous path: the thread that waits for a
reply reads the stream itself while it holds the read lock ("leader") and hands other
threads their replies; threads that find the lock taken wait on a condition ("followers").
A single-threaded program therefore never pays a thread hop. Asyncio callers get their
futures completed by a reader thread that runs only while async requests are outstanding.
"""
from __future__ import annotations

import collections
import errno
import itertools
import os
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from .._taxonomy import KIND_SERVER_GONE, PROTOCOL_VERSION
from ..protocol import ServerError, client_error, exception_from_error
from .framing import MAX_HEADER, FramingError, content_length, decode_body, encode_frame
from .logs import log, log_record

if TYPE_CHECKING:
    from .home import Home

PIPE_BYTES = 1 << 20  # what one read takes from the stream (a pipe is grown to it: transport.pipe)

# What an OSError from reading or writing the pipe must carry to mean that the pipe (the
# server, or our end of it) is gone. Anything else raised while we block on the pipe was
# raised by a signal handler (KeyboardInterrupt, a TimeoutError from an alarm handler...):
# it belongs to the caller, and the server, its pipe and every session stay as they are.
_PIPE_GONE = frozenset((errno.EPIPE, errno.EBADF, errno.EIO, errno.EINVAL, errno.ENXIO, errno.ECONNRESET))


def _pipe_failed(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _PIPE_GONE


def interrupted_slot(e: BaseException) -> "Optional[_Slot]":
    """The request a send() interrupted part-way had written whole before it re-raised."""
    return getattr(e, "_sqlite_rpc_slot", None)


class _Slot:
    __slots__ = ("done", "result", "error", "future", "loop")

    def __init__(self) -> None:
        self.done = False
        self.result: Any = None
        self.error: Optional[Dict[str, Any]] = None
        self.future: Any = None
        self.loop: Any = None


def _held_lock() -> Any:
    lock = threading.Lock()
    lock.acquire()
    return lock


_ASYNC_READER = object()  # the async reader's key among the waiters

class ServerProcess:
    """The multiplexed connection to one server: framing, pending requests, the leader and
    follower readers, corking, the asyncio reader, what a lost server means. Subclasses only
    carry the bytes: PipeServer (a private child over stdio pipes) and shared.SocketServer
    (the user's shared server over a unix socket)."""

    shared = False
    pid: Optional[int] = None
    home: "Optional[Home]" = None  # the singleton that handed it out (set by Home.get)
    info: Any = None

    def _attach(self, rfd: int, wfd: int) -> None:
        """Multiplex over the byte stream read from rfd and written to wfd (the same socket,
        or two pipes)."""
        self._out = rfd
        self._in = wfd
        # Input is parsed so that an exception a signal handler raises at any point of it
        # (between two bytecodes of the main thread) loses and repeats nothing: bytes read are
        # appended to _inbuf at once; a frame leaves _inbuf in the same step as its decoded
        # message enters _msgs; a message leaves _msgs only once delivered (idempotently).
        # _dirty: an interrupted pass left frames to parse or messages to deliver.
        self._inbuf = bytearray()
        self._rbuf = bytearray(PIPE_BYTES)  # what one read takes from the stream (only the reading thread uses it)
        self._rview = memoryview(self._rbuf)
        self._msgs: "collections.deque[Any]" = collections.deque()
        self._dirty = False
        self._reading = False  # a thread is reading the stream (the "leader"), under _lock
        self._ids = itertools.count(1)
        self._session_ids = itertools.count(1)
        self._pending: Dict[int, _Slot] = {}
        self._wlock = threading.Lock()
        # Frames sent with cork=True (a connection's open): they leave with the next write,
        # or before anyone waits for a reply, in the order they were sent (under _wlock).
        self._corked: List[Tuple[int, _Slot, bytes]] = []
        # Threads waiting while another reads, each on its own lock (held until it is woken):
        # a reply wakes only the thread waiting for it, and a leader that is done wakes one
        # follower to read next. (One condition woken for every reply woke all 16 threads of
        # a 16-thread writer for each reply: each then fought for the GIL to go back to sleep.)
        self._lock = threading.Lock()
        self._waiters: Dict[object, Any] = {}
        self._async_pending = 0
        self._async_wake = threading.Event()
        self._async_thread: Optional[threading.Thread] = None
        self.dead: Optional[str] = None
        # An error reply with id null: the server's word on the whole connection (a
        # ParseError before it exits, PermissionDenied from a shared server), kept for the
        # message that reports the connection's end.
        self.refusal: Optional[Dict[str, Any]] = None

    def _initialize(self) -> None:
        self.info = self.call("initialize", {"protocol_version": PROTOCOL_VERSION, "client": {"name": "sqlite_rpc.py"}})

    # ---- what the transport says (subclasses) ---------------------------------------------

    def _gone_reason(self, detail: str) -> str:
        """The message every pending request fails with once the stream ended."""
        raise NotImplementedError

    def _discard(self) -> None:
        """Let go of a dead connection's resources (Home.get, before a replacement)."""
        raise NotImplementedError

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's stream without a byte sent on it."""
        raise NotImplementedError

    def close(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    # ---- requests -------------------------------------------------------------------------

    def new_session_id(self) -> int:
        return next(self._session_ids)

    def _register(self) -> "tuple[int, _Slot]":
        if self.dead is not None:
            raise ServerError(self.dead)
        rid = next(self._ids)
        slot = _Slot()
        self._pending[rid] = slot
        return rid, slot

    def _write(self, data: bytes) -> bool:
        """False when the server is gone: it never received these bytes (no reader: EPIPE).

        An exception raised by a signal handler while the write blocks (a full pipe) is held
        until the frame is written whole, then raised: half a frame would end the protocol."""
        with self._wlock:
            corked = self._corked
            if corked:
                data = b"".join([c[2] for c in corked] + [data])
                self._corked = []
            view = memoryview(data)
            held: Optional[BaseException] = None
            while view:
                try:
                    n = os.write(self._in, view)
                except BaseException as e:
                    if not _pipe_failed(e):
                        held = held or e  # nothing of this call was written: write the rest, then raise
                        continue
                    self._die(self._gone_reason(e.strerror))  # type: ignore[attr-defined]
                    for _rid, slot, _frame in corked:
                        if slot.error is not None:  # never delivered, so never applied (as in send())
                            slot.error = dict(slot.error, data=dict(slot.error["data"], unsent=True))
                    if held is not None:
                        raise held
                    return False
                view = view[n:]
            if held is not None:
                raise held
            return True

    _frame_limit: Optional[int] = None

    def _check_size(self, frame: bytes) -> None:
        # The server refuses a frame over its limit by closing the connection (it cannot
        # skip what it will not read), which would take every connection down with it.
        limit = self._frame_limit
        if limit is None:
            limit = (getattr(self, "info", None) or {}).get("capabilities", {}).get("max_frame_bytes")
            if limit is None:
                return  # before initialize's reply
            self._frame_limit = limit
        if len(frame) > limit:
            e = sqlite3.DataError("the request is %d bytes, over the server's limit of %d (--max-frame-bytes): it was not sent" % (len(frame), limit))
            e.rpc_too_large = True  # type: ignore[attr-defined]  # nothing was sent: a smaller request may be
            raise e

    def send(self, method: str, params: Dict[str, Any], cork: bool = False) -> _Slot:
        """Send a request without waiting; wait() on the slot later (pipelining). cork: hold
        the frame until the next write of any request (one write for both), or a wait()."""
        rid, slot = self._register()
        try:
            frame = encode_frame({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            self._check_size(frame)
        except BaseException:  # e.g. a lone surrogate in a string: nothing was sent
            self._pending.pop(rid, None)
            raise
        if cork:
            with self._wlock:
                self._corked.append((rid, slot, frame))
            return slot
        try:
            written = self._write(frame)
        except BaseException as e:
            # A signal handler's exception, raised once the frame was written whole: the
            # request is on its way, and the caller can still collect its reply.
            try:
                e._sqlite_rpc_slot = slot  # type: ignore[attr-defined]
            except Exception:
                pass
            raise
        if not written and slot.error is not None:
            # Never delivered, so never applied: the caller may safely send it elsewhere.
            slot.error = dict(slot.error, data=dict(slot.error["data"], unsent=True))
        return slot

    def uncork(self, slot: _Slot, wait: bool = True) -> bool:
        """Take back a corked request not written yet (it is then never sent); False if it was,
        or (wait=False, for __del__) if the write lock is taken."""
        if not self._wlock.acquire(wait):
            return False
        try:
            for i, (rid, s, _frame) in enumerate(self._corked):
                if s is slot:
                    del self._corked[i]
                    self._pending.pop(rid, None)
                    return True
        finally:
            self._wlock.release()
        return False

    def notify(self, method: str, params: Optional[Dict[str, Any]] = None) -> None:
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self._write(encode_frame(msg))

    def call(self, method: str, params: Dict[str, Any]) -> Any:
        return self.wait(self.send(method, params))

    def wait(self, slot: _Slot) -> Any:
        """The reply to slot's request. The waiting thread reads the pipe itself unless another
        one already does (then it waits for that one to hand over). An exception a signal
        handler raises meanwhile propagates; the request stays pending and wait() may be
        called again for it."""
        if self._corked and not slot.done:
            self._write(b"")  # a corked request may be the one waited for
        while not slot.done:
            if self.dead is not None:
                # Gone without answering it (after a fork, this process's copy never will).
                slot.error = client_error(KIND_SERVER_GONE, self.dead)
                slot.done = True
                break
            lead = False
            try:
                with self._lock:
                    if slot.done:
                        break
                    if not self._reading:
                        self._reading = lead = True  # one step: no handler runs in between
                    else:
                        wake = self._waiters[slot] = _held_lock()
                if lead:
                    while not slot.done:
                        self._read_some()
                else:
                    self._sleep(slot, wake)
            finally:
                if lead:
                    self._stop_reading()
        if slot.error is not None:
            raise exception_from_error(slot.error)
        return slot.result

    def _sleep(self, key: object, wake: Any) -> None:
        """Wait to be woken (a reply, or the turn to read), at most 1 s (then look again)."""
        try:
            wake.acquire(timeout=1.0)
        finally:
            with self._lock:
                self._waiters.pop(key, None)

    def _wake(self, key: object) -> None:
        with self._lock:
            wake = self._waiters.pop(key, None)
        if wake is not None:
            wake.release()

    def _stop_reading(self) -> None:
        """The reading thread is done: one follower is woken to read next (every follower's
        request is still unanswered: a reply wakes its own waiter and removes it)."""
        with self._lock:
            self._reading = False
            wake = None
            if self._waiters:
                # A sync waiter first: the async reader may find nothing left to read for and
                # go back to sleep without taking the turn.
                key = next((k for k in self._waiters if k is not _ASYNC_READER), _ASYNC_READER)
                wake = self._waiters.pop(key)
        if wake is not None:
            wake.release()

    def _read_some(self) -> None:
        if self.dead is not None:
            return
        if self._dirty:
            self._pump()  # what an interrupted pass left: it may hold the reply waited for
            return
        try:
            # Into a buffer kept for it: os.read(fd, 1 MiB) allocates 1 MiB per call, which
            # cost 20 us on a 50 KB reply here (readv: 6 us).
            n = os.readv(self._out, [self._rbuf])
        except OSError as e:
            if not _pipe_failed(e):
                raise  # a signal handler's (e.g. TimeoutError from an alarm): the caller's
            n = 0
            reason = str(e)
        else:
            reason = ""
        if not n:
            self._die(self._gone_reason(reason))
            return
        self._inbuf += self._rview[:n]
        self._dirty = True
        self._pump()

    def _pump(self) -> None:
        """Parse the complete frames in _inbuf and deliver their messages. Restartable."""
        buf = self._inbuf
        msgs = self._msgs
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER:
                    return self._die("the sqlite-rpc server broke the protocol: header block too long")
                break
            try:
                length = content_length(buf, end)
            except FramingError as e:
                return self._die("the sqlite-rpc server broke the protocol: %s" % e)
            start = end + 4
            if len(buf) < start + length:
                break
            try:
                with memoryview(buf) as view:
                    msg = decode_body(view[start:start + length])
            except ValueError as e:  # msgpack's errors (ExtraData, FormatError, ...) are ValueErrors
                return self._die("the sqlite-rpc server broke the protocol: undecodable reply (%s)" % e)
            del buf[:start + length]
            msgs.append(msg)  # with the line above, one step: no handler runs in between
        while msgs:
            self._deliver(msgs[0])
            msgs.popleft()  # a redelivery after an interruption here changes nothing
        self._dirty = False

    def _deliver(self, msg: Any) -> None:
        # Idempotent: the slot leaves _pending last.
        rid: Any = msg.get("id") if isinstance(msg, dict) else None
        slot = self._pending.get(rid)
        if slot is None:
            if rid is None and isinstance(msg, dict) and msg.get("method") == "log" and isinstance(msg.get("params"), dict):
                log_record(dict(msg["params"]))  # a shared server's record of one of our sessions
                return
            if rid is None and isinstance(msg, dict) and isinstance(msg.get("error"), dict):
                self.refusal = msg["error"]
                log.warning("the sqlite-rpc server: %s", msg["error"].get("message"))
            return
        if "error" in msg:
            slot.error = msg["error"]
        else:
            slot.result = msg.get("result")
        slot.done = True
        if slot.future is not None:
            slot.loop.call_soon_threadsafe(_settle_future, slot)
        self._pending.pop(rid, None)
        if slot.future is None and self._waiters:
            self._wake(slot)

    def _die(self, reason: str) -> None:
        if self.dead is not None:
            return
        self.dead = reason
        log.warning("%s", reason)
        err = client_error(KIND_SERVER_GONE, reason)
        for rid in list(self._pending):
            slot = self._pending.pop(rid, None)
            if slot is None:
                continue
            slot.error = err
            slot.done = True
            if slot.future is not None:
                slot.loop.call_soon_threadsafe(_settle_future, slot)
        with self._lock:
            wakes = list(self._waiters.values())
            self._waiters.clear()
        for wake in wakes:
            wake.release()
        self._async_wake.set()

    # ---- asyncio --------------------------------------------------------------------------

    def call_async(self, method: str, params: Dict[str, Any], loop: Any) -> Any:
        """A future for the reply, completed on `loop`."""
        rid, slot = self._register()
        try:
            frame = encode_frame({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            self._check_size(frame)
        except BaseException:  # nothing was sent
            self._pending.pop(rid, None)
            raise
        slot.loop = loop
        slot.future = loop.create_future()
        self._async_pending += 1
        slot.future.add_done_callback(self._async_done)
        if not self._write(frame) and slot.error is not None:
            # As in send(): never delivered, so never applied (the future is settled later, on the loop).
            slot.error = dict(slot.error, data=dict(slot.error["data"], unsent=True))
        if self._async_thread is None:
            self._async_thread = threading.Thread(target=self._async_reader, name="sqlite-rpc-async", daemon=True)
            self._async_thread.start()
        self._async_wake.set()
        return slot.future

    def _async_done(self, _fut: Any) -> None:
        self._async_pending -= 1

    def _async_reader(self) -> None:
        while self.dead is None:
            self._async_wake.wait()
            self._async_wake.clear()
            while self._async_pending > 0 and self.dead is None:
                # Read while async requests are outstanding and not yet answered; a thread
                # already reading delivers them too.
                if not any(s.future is not None for s in list(self._pending.values())):
                    break
                lead = False
                try:
                    with self._lock:
                        if self._reading:
                            wake = self._waiters[_ASYNC_READER] = _held_lock()
                        else:
                            self._reading = lead = True
                    if lead:
                        self._read_some()
                    else:
                        self._sleep(_ASYNC_READER, wake)
                finally:
                    if lead:
                        self._stop_reading()


def _settle_future(slot: _Slot) -> None:
    fut = slot.future
    if fut.done():
        return
    if slot.error is not None:
        fut.set_exception(exception_from_error(slot.error))
    else:
        fut.set_result(slot.result)
