"""The server process: found, spawned lazily, shared by every connection and thread of this
Python process, restarted after a crash, replaced after fork, stopped at exit.

Requests are multiplexed by id over one pipe. There is no dedicated reader thread on the
synchronous path: the thread that waits for a reply reads the pipe itself while it holds
the read lock ("leader") and hands other threads their replies; threads that find the lock
taken wait on a condition ("followers"). A single-threaded program therefore never pays a
thread hop. Asyncio callers get their futures completed by a reader thread that runs only
while async requests are outstanding.
"""
from __future__ import annotations

import atexit
import collections
import errno
import io
import itertools
import json
import logging
import os
import shutil
import subprocess
import sqlite3
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from .protocol import PROTOCOL_VERSION, ServerError, exception_from_error
from .transport import MAX_HEADER, FramingError, content_length, decode_body, encode_frame

log = logging.getLogger("sqlite_rpc")
server_log = logging.getLogger("sqlite_rpc.server")
# Slow statements get a logger of their own, so an application can route or silence them.
slow_log = logging.getLogger("sqlite_rpc.slow_query")

ENV_BINARY = "SQLITE_RPC_BINARY"
ENV_DISABLE = "SQLITE_RPC_DISABLE"
ENV_ARGS = "SQLITE_RPC_ARGS"


def find_binary() -> Optional[str]:
    """The server binary: $SQLITE_RPC_BINARY, the one inside this package, PATH, a dev checkout."""
    env = os.environ.get(ENV_BINARY)
    if env:
        return env if os.access(env, os.X_OK) else None
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "bin", "sqlite-rpc")]
    on_path = shutil.which("sqlite-rpc")
    if on_path:
        candidates.append(on_path)
    candidates.append(os.path.normpath(os.path.join(here, "..", "..", "dist", "sqlite-rpc")))
    packaged = candidates[0]
    if os.path.isfile(packaged) and not os.access(packaged, os.X_OK):
        # Some installers drop the executable bit of package data; restore it if we may.
        try:
            os.chmod(packaged, 0o755)
        except OSError:
            pass
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


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


PIPE_BYTES = 1 << 20


def _widen_pipe(fd: int) -> None:
    """Grow a pipe to PIPE_BYTES (Linux's default limit for an unprivileged user, see
    /proc/sys/fs/pipe-max-size): a 64 KiB pipe cuts a 200 KB reply into four writes and four
    reads, each a context switch between the two processes."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ImportError):
        pass  # not Linux, or over a lowered limit: the default size only costs speed


def _child_env() -> Dict[str, str]:
    # A SEA binary still honours NODE_OPTIONS and friends; NODE_EXTRA_CA_CERTS alone costs
    # 60-120 ms of start-up. None of them are meant for our child.
    return {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}


class ServerProcess:
    """One running server and the multiplexed connection to it."""

    def __init__(self, binary: str, args: Optional[List[str]] = None) -> None:
        self.binary = binary
        self.args = list(args or [])
        self.proc = subprocess.Popen(
            [binary, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=_child_env(),
            close_fds=True,
        )
        self.pid = self.proc.pid
        self._in = self.proc.stdin.fileno()  # type: ignore[union-attr]
        self._out = self.proc.stdout.fileno()  # type: ignore[union-attr]
        for fd in (self._in, self._out):
            _widen_pipe(fd)
        # Input is parsed so that an exception a signal handler raises at any point of it
        # (between two bytecodes of the main thread) loses and repeats nothing: bytes read are
        # appended to _inbuf at once; a frame leaves _inbuf in the same step as its decoded
        # message enters _msgs; a message leaves _msgs only once delivered (idempotently).
        # _dirty: an interrupted pass left frames to parse or messages to deliver.
        self._inbuf = bytearray()
        self._rbuf = bytearray(PIPE_BYTES)  # what one read takes from the pipe (only the reading thread uses it)
        self._rview = memoryview(self._rbuf)
        self._msgs: "collections.deque[Any]" = collections.deque()
        self._dirty = False
        self._reading = False  # a thread is reading the pipe (the "leader"), under _cond
        self._ids = itertools.count(1)
        self._session_ids = itertools.count(1)
        self._pending: Dict[int, _Slot] = {}
        self._wlock = threading.Lock()
        # Frames sent with cork=True (a connection's open): they leave with the next write,
        # or before anyone waits for a reply, in the order they were sent (under _wlock).
        self._corked: List[Tuple[int, _Slot, bytes]] = []
        self._cond = threading.Condition(threading.Lock())
        self._followers = 0
        self._async_pending = 0
        self._async_wake = threading.Event()
        self._async_thread: Optional[threading.Thread] = None
        self.dead: Optional[str] = None
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="sqlite-rpc-stderr", daemon=True)
        self._stderr_thread.start()
        try:
            self.info = self.call("initialize", {"protocol_version": PROTOCOL_VERSION, "client": {"name": "sqlite_rpc.py"}})
        except BaseException:
            _reap(self)  # a server that cannot start leaves nothing behind (process, pipes)
            raise

    # ---- stderr ---------------------------------------------------------------------------

    def _drain_stderr(self) -> None:
        # Always drained: a child whose stderr pipe fills up stalls.
        assert self.proc.stderr is not None
        # The pipe is unbuffered (bufsize=0, for stdout's sake): readline() on it would read
        # one byte per system call (about 1.2 s of a core per MiB of server logging).
        stream = io.BufferedReader(self.proc.stderr, 65536)  # type: ignore[arg-type]
        levels = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                try:
                    rec = json.loads(line)
                    level = levels.get(rec.pop("level", "info"), logging.INFO)
                    event = rec.pop("event", "log")
                    rec.pop("ts", None)
                    if event == "slow_query":
                        plan = "; ".join(p.strip() for p in rec.get("plan") or [])
                        slow_log.warning("slow query (%s ms, %s, %s params) on %s: %s%s", rec.get("duration_ms"), rec.get("role"), rec.get("params"), rec.get("db"), rec.get("sql"), " [plan: %s]" % plan if plan else "", extra={"sqlite_rpc": rec})
                        continue
                    server_log.log(level, "%s %s", event, json.dumps(rec, default=str) if rec else "", extra={"sqlite_rpc": rec})
                except (ValueError, AttributeError):
                    server_log.info("%s", line[:2000])
        except (ValueError, OSError):
            pass  # the pipe was closed under us (the process is being reaped)
        finally:
            try:
                stream.detach()  # the raw pipe is closed by whoever reaps the process
            except ValueError:
                pass

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
                    self._die("the sqlite-rpc server exited unexpectedly (status %s: %s)" % (self._exit_status(), e.strerror))  # type: ignore[attr-defined]
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

    def _exit_status(self) -> Any:
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        return code

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
                slot.error = {"code": -32007, "message": self.dead, "data": {"kind": "ServerGone", "dbapi": "OperationalError"}}
                slot.done = True
                break
            lead = False
            try:
                with self._cond:
                    if not self._reading:
                        self._reading = lead = True  # one step: no handler runs in between
                    else:
                        self._followers += 1
                        try:
                            while not slot.done and self._reading:
                                self._cond.wait(1.0)
                        finally:
                            self._followers -= 1
                if lead:
                    while not slot.done:
                        self._read_some()
            finally:
                if lead:
                    self._stop_reading()
        if slot.error is not None:
            raise exception_from_error(slot.error)
        return slot.result

    def _stop_reading(self) -> None:
        """The reading thread is done: another may read now (waiters are woken to see)."""
        with self._cond:
            self._reading = False
            if self._followers:
                self._cond.notify_all()

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
            code = self._exit_status()
            self._die("the sqlite-rpc server exited unexpectedly (status %s)%s" % (code, ": " + reason if reason else ""))
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
        rid = msg.get("id") if isinstance(msg, dict) else None
        slot = self._pending.get(rid)  # type: ignore[arg-type]
        if slot is None:
            return
        if "error" in msg:
            slot.error = msg["error"]
        else:
            slot.result = msg.get("result")
        slot.done = True
        if slot.future is not None:
            slot.loop.call_soon_threadsafe(_settle_future, slot)
        self._pending.pop(rid, None)
        if slot.future is None and self._followers:
            with self._cond:
                self._cond.notify_all()

    def _die(self, reason: str) -> None:
        if self.dead is not None:
            return
        self.dead = reason
        log.warning("%s", reason)
        err = {"code": -32007, "message": reason, "data": {"kind": "ServerGone", "dbapi": "OperationalError"}}
        for rid in list(self._pending):
            slot = self._pending.pop(rid, None)
            if slot is None:
                continue
            slot.error = err
            slot.done = True
            if slot.future is not None:
                slot.loop.call_soon_threadsafe(_settle_future, slot)
        with self._cond:
            self._cond.notify_all()
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
        self._write(frame)
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
                    with self._cond:
                        if self._reading:
                            self._cond.wait(1.0)
                        else:
                            self._reading = lead = True
                    if lead:
                        self._read_some()
                finally:
                    if lead:
                        self._stop_reading()

    # ---- shutdown -------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """shutdown + exit, then wait; every accepted request is answered first."""
        if self.dead is None:
            try:
                self.call("shutdown", {})
                self.notify("exit")
            except Exception:  # the server may already be gone; closing stdin is enough
                pass
        self.dead = self.dead or "the sqlite-rpc server was shut down"
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr_thread.join(timeout=5)  # drained to EOF: the last log lines are forwarded
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass


def _settle_future(slot: _Slot) -> None:
    fut = slot.future
    if fut.done():
        return
    if slot.error is not None:
        fut.set_exception(exception_from_error(slot.error))
    else:
        fut.set_result(slot.result)


# ---- the process-wide server ----------------------------------------------------------------

_lock = threading.Lock()
_server: Optional[ServerProcess] = None
_generation = 0
_start_failure: Optional[str] = None


def server_args() -> List[str]:
    extra = os.environ.get(ENV_ARGS, "").split()
    return extra


def get_server() -> ServerProcess:
    """The running server, started on first use and restarted when it died."""
    global _server, _generation
    srv = _server
    if srv is not None and srv.dead is None:
        return srv
    with _lock:
        srv = _server
        if srv is not None and srv.dead is None:
            return srv
        if srv is not None:
            _reap(srv)
        binary = find_binary()
        if binary is None:
            raise ServerError("sqlite-rpc binary not found (set %s, install the platform wheel, or run npm run build)" % ENV_BINARY)
        _server = ServerProcess(binary, server_args())
        _generation += 1
        return _server


def current() -> Optional[ServerProcess]:
    """The server in use now, without starting one."""
    return _server


def generation() -> int:
    return _generation


def _reap(srv: ServerProcess) -> None:
    try:
        srv.proc.kill()
    except OSError:
        pass
    try:
        srv.proc.wait(timeout=5)
    except Exception:
        pass
    srv._stderr_thread.join(timeout=5)  # it ends at EOF, now that the process is gone
    for f in (srv.proc.stdin, srv.proc.stdout, srv.proc.stderr):
        try:
            f.close()  # type: ignore[union-attr]
        except Exception:
            pass


def shutdown() -> None:
    """Stop the server (it is started again on next use)."""
    global _server
    with _lock:
        srv, _server = _server, None
    if srv is not None:
        srv.close()


def _after_fork_in_child() -> None:
    # The parent's server and pipes are not ours: forget them (without touching the
    # parent's process) so that the child's first call starts its own server.
    global _server, _lock, _generation
    _lock = threading.Lock()
    srv, _server = _server, None
    if srv is not None:
        srv.dead = "this process was forked and the sqlite-rpc server belongs to the parent"
        for f in (srv.proc.stdin, srv.proc.stdout, srv.proc.stderr):
            try:
                f.close()  # type: ignore[union-attr]
            except Exception:
                pass
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)

Callback = Callable[[], None]
