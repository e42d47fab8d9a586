"""Minimal framed JSON-RPC client used IDENTICALLY against the echo floor and the real server.

LSP framing (``Content-Length: N\\r\\n\\r\\n`` + N bytes), msgpack bodies (C extension).
Writes with os.write on the child's stdin fd, reads with os.read into a bytearray and
parses the header by hand: the same shape as a product client's hot path, nothing more.
"""
from __future__ import annotations

import os
import select
import subprocess
import threading
import time

import msgpack

_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb
_HDR_END = b"\r\n\r\n"
_CL = b"content-length:"


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RpcFailed(Exception):
    def __init__(self, error):
        super().__init__(error.get("message") if isinstance(error, dict) else error)
        self.error = error


class FramedPipe:
    """A child process speaking framed msgpack JSON-RPC on stdin/stdout."""

    #: A reply not seen within this many seconds fails the bench instead of hanging it.
    timeout = 60.0

    def __init__(self, argv, env=None, stderr_path=None, cwd=None):
        self.t_spawn = time.perf_counter()
        err = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL
        # stderr goes to a file (or /dev/null): the child can never block on a full pipe.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                     env=env, cwd=cwd, bufsize=0)
        if stderr_path:
            err.close()
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.next_id = 1

    @property
    def pid(self) -> int:
        return self.proc.pid

    # ---- raw frames ---------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.wfd, view)
            view = view[n:]

    def send(self, method: str, params=None, id_=None) -> int:
        if id_ is None:
            id_ = self.next_id
            self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        self.write(frame(_packb(msg)))
        return id_

    def read_frames(self) -> list:
        """Block until at least one whole frame is buffered; return every whole frame decoded."""
        buf = self.buf
        out = []
        while True:
            pos = 0
            n = len(buf)
            while True:
                he = buf.find(_HDR_END, pos)
                if he < 0:
                    break
                length = -1
                for line in bytes(buf[pos:he]).split(b"\r\n"):
                    if line[:15].lower() == _CL:
                        length = int(line[15:])
                if length < 0:
                    raise RuntimeError("frame without Content-Length")
                start = he + 4
                if n - start < length:
                    break
                out.append(_unpackb(buf[start:start + length], raw=False, strict_map_key=False))
                pos = start + length
            if pos:
                del buf[:pos]
            if out:
                return out
            if not select.select([self.rfd], [], [], self.timeout)[0]:
                raise TimeoutError(f"no reply from the server within {self.timeout:.0f} s")
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise EOFError("server closed stdout (exit status %s)" % self.proc.poll())
            buf += chunk

    def call(self, method: str, params=None):
        id_ = self.send(method, params)
        while True:
            for m in self.read_frames():
                if m.get("id") == id_:
                    if "error" in m:
                        raise RpcFailed(m["error"])
                    return m["result"]

    def close(self, timeout: float = 10.0) -> int | None:
        try:
            self.proc.stdin.close()  # EOF = shutdown + exit 0
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class MuxClient:
    """Thread-safe multiplexing client on one pipe: a lock around writes, one reader thread
    dispatching replies by id to per-request slots (what the product's Python client does)."""

    def __init__(self, pipe: FramedPipe):
        self.pipe = pipe
        self.wlock = threading.Lock()
        self.idlock = threading.Lock()
        self.pending: dict = {}
        self.next_id = 1 << 20
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    def _read_loop(self):
        try:
            while True:
                for m in self.pipe.read_frames():
                    slot = self.pending.pop(m.get("id"), None)
                    if slot is not None:
                        slot[1] = m
                        slot[0].release()
        except (EOFError, OSError, TimeoutError):
            for slot in list(self.pending.values()):
                slot[1] = {"error": {"message": "connection lost"}}
                slot[0].release()

    def call(self, method: str, params=None):
        with self.idlock:
            id_ = self.next_id
            self.next_id += 1
        ev = threading.Lock()
        ev.acquire()
        slot = [ev, None]
        self.pending[id_] = slot
        data = frame(_packb({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}))
        with self.wlock:
            self.pipe.write(data)
        if not ev.acquire(timeout=self.pipe.timeout):
            self.pending.pop(id_, None)
            raise TimeoutError(f"no reply to {method} within {self.pipe.timeout:.0f} s")
        m = slot[1]
        if "error" in m:
            raise RpcFailed(m["error"])
        return m["result"]


class LeaderMuxClient:
    """The python-client's scheme (sqlite_rpc/process.py): no reader thread; a waiting thread
    that gets the read lock reads the pipe and delivers every reply (leader), the others wait
    on a condition (followers). Same wire traffic as MuxClient; diagnostic comparison."""

    def __init__(self, pipe: FramedPipe):
        self.pipe = pipe
        self.wlock = threading.Lock()
        self.rlock = threading.Lock()
        self.cond = threading.Condition(threading.Lock())
        self.followers = 0
        self.idlock = threading.Lock()
        self.pending: dict = {}
        self.next_id = 1 << 21

    def call(self, method: str, params=None):
        with self.idlock:
            id_ = self.next_id
            self.next_id += 1
        slot = [False, None]
        self.pending[id_] = slot
        data = frame(_packb({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}))
        with self.wlock:
            self.pipe.write(data)
        deadline = time.monotonic() + self.pipe.timeout
        while not slot[0]:
            if time.monotonic() > deadline:
                self.pending.pop(id_, None)
                raise TimeoutError(f"no reply to {method} within {self.pipe.timeout:.0f} s")
            if self.rlock.acquire(False):
                try:
                    while not slot[0]:
                        for m in self.pipe.read_frames():
                            s = self.pending.pop(m.get("id"), None)
                            if s is not None:
                                s[1] = m
                                s[0] = True
                        if self.followers:
                            with self.cond:
                                self.cond.notify_all()
                finally:
                    self.rlock.release()
                    if self.followers:
                        with self.cond:
                            self.cond.notify_all()
            else:
                with self.cond:
                    self.followers += 1
                    try:
                        while not slot[0] and self.rlock.locked():
                            self.cond.wait(1.0)
                    finally:
                        self.followers -= 1
        m = slot[1]
        if "error" in m:
            raise RpcFailed(m["error"])
        return m["result"]
