"""The user's shared server: one per machine, user, server binary and set of server flags,
used by every process of that user over a unix socket.

Where it is: the runtime folder is $XDG_RUNTIME_DIR/sqlite-rpc when XDG_RUNTIME_DIR is
usable (an absolute path to a folder of ours that nobody else may write), else
<tempfile.gettempdir()>/sqlite-rpc-<uid> (or /tmp/sqlite-rpc-<uid> when that path is too
long for a socket address). The folder is created 0700; one that is not ours, not a plain
folder, or open to group or others is refused, never used. Inside it, per server identity
(a hash of the binary's real path, size and mtime, and the server flags, so that a rebuilt
binary or other flags get a server of their own): s-<hash>.sock (the server's socket, 0600),
s-<hash>.lock (serialises starts), s-<hash>.log (the server's stderr; s-<hash>.log.1 the
previous one, once it outgrew LOG_KEEP).

How it is reached: connect; failing that, take the lock, connect again (another process may
have started it meanwhile), else start `binary --listen SOCKET [flags]` in a session of its
own, wait until it accepts, let go of the lock. So racing processes end with one server. It
exits by itself a few seconds (--idle-exit-ms) after its last connection closed.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
from typing import Iterator, List, NamedTuple, Optional

from .client import ServerProcess
from .lookup import _child_env
from .._taxonomy import KIND_SERVER_GONE
from ..protocol import ServerError, StartRefused

EXIT_TAKEN = 75  # the server's exit status when a live server already listens at the path
SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL
LOCK_WAIT_S = 30.0  # for another process's start to finish (one takes well under a second)
START_WAIT_S = 30.0  # for a started server to accept
CONNECT_WAIT_S = 5.0
TRIES = 3  # a server that goes away as we connect (its idle exit) is found or started again
LOG_KEEP = 1 << 20
SOCKET_BYTES = 1 << 20  # as the pipes' F_SETPIPE_SZ: a 200 KB reply in one read, not four


class Paths(NamedTuple):
    folder: str
    socket: str
    lock: str
    log: str


# ---- discovery ------------------------------------------------------------------------------

def _xdg_usable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (os.path.isabs(path) and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & 0o022 and os.access(path, os.W_OK | os.X_OK))


def runtime_folders() -> List[str]:
    """The runtime folders to use, best first (the first whose socket path fits is used)."""
    name = "sqlite-rpc-%d" % os.getuid()
    out: List[str] = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _xdg_usable(xdg):
        out.append(os.path.join(xdg, "sqlite-rpc"))
    for base in (tempfile.gettempdir(), "/tmp"):
        folder = os.path.join(base, name)
        if folder not in out:
            out.append(folder)
    return out


def ensure_folder(folder: str) -> None:
    """Create the runtime folder 0700, or check that the one there is safe to use."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(folder, 0o700)  # whatever the umask took away
    st = os.lstat(folder)
    uid = os.getuid()
    problem = None
    if not stat.S_ISDIR(st.st_mode):
        problem = "it is not a directory" + (" (a symbolic link)" if stat.S_ISLNK(st.st_mode) else "")
    elif st.st_uid != uid:
        problem = "it is owned by uid %d" % st.st_uid
    elif st.st_mode & 0o077:
        problem = "its mode is %04o" % stat.S_IMODE(st.st_mode)
    if problem is not None:
        raise StartRefused(
            "the sqlite-rpc runtime folder %s is not safe to use: %s; it must be a directory owned by uid %d "
            "with mode 0700, so that no other user can reach the shared server (fix it with `chmod 700 %s`, or "
            "remove it; or use a private server with SQLITE_RPC_SHARED=0)" % (folder, problem, uid, folder))


def identity(binary: str, args: List[str]) -> str:
    """What tells shared servers apart: the binary (a rebuilt one has another size or mtime)
    and the flags it runs with."""
    real = os.path.realpath(binary)
    st = os.stat(real)
    key = json.dumps([real, st.st_size, st.st_mtime_ns, list(args)])
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def locate(binary: str, args: List[str]) -> Paths:
    """The shared server's paths for this binary and these flags (the folder is made safe)."""
    name = "s-" + identity(binary, args)
    too_long = []
    for folder in runtime_folders():
        sock = os.path.join(folder, name + ".sock")
        if len(os.fsencode(sock)) > SUN_PATH_MAX:
            too_long.append(sock)
            continue
        ensure_folder(folder)
        base = os.path.join(folder, name)
        return Paths(folder, sock, base + ".lock", base + ".log")
    raise StartRefused(
        "no runtime folder gives the shared sqlite-rpc server a socket path within the %d bytes a unix socket "
        "address holds (%s): set XDG_RUNTIME_DIR or TMPDIR to a shorter folder, or use a private server with "
        "SQLITE_RPC_SHARED=0" % (SUN_PATH_MAX, ", ".join(too_long)))


# ---- connect or start -----------------------------------------------------------------------

def connect_or_start(binary: str, args: List[str]) -> "SocketServer":
    """A connection to the shared server for this binary and these flags, started if none runs."""
    paths = locate(binary, args)
    last: Optional[BaseException] = None
    for _ in range(TRIES):
        sock = _connect(paths.socket)
        if sock is None:
            with _start_lock(paths.lock):
                sock = _connect(paths.socket) or _spawn(binary, args, paths)
        try:
            return SocketServer(sock, paths.socket)
        except StartRefused:
            raise
        except ServerError as e:
            last = e
    assert last is not None
    raise last


def _connect(path: str) -> Optional[socket.socket]:
    """A connected socket, or None when no server listens there (no socket file, a stale one)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_WAIT_S)
        sock.connect(path)
        sock.settimeout(None)  # blocking: the multiplexer reads and writes the descriptor itself
    except (FileNotFoundError, ConnectionRefusedError, BlockingIOError, socket.timeout):
        sock.close()
        return None
    except PermissionError as e:
        sock.close()
        raise StartRefused("cannot connect to the shared sqlite-rpc server at %s: %s" % (path, e.strerror)) from None
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def _start_lock(path: str) -> Iterator[None]:
    """The lock file's exclusive flock, waited for up to LOCK_WAIT_S."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StartRefused(
                        "waited %.0f s in vain for %s: another process holds it while it starts the shared sqlite-rpc "
                        "server and has not finished (is it stopped or hung?)" % (LOCK_WAIT_S, path)) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # also for copies of fd a fork made meanwhile
    finally:
        os.close(fd)


def _spawn(binary: str, args: List[str], paths: Paths) -> socket.socket:
    """Start the server (under the lock) and return a socket connected to it once it accepts."""
    _rotate(paths.log)
    fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        since = os.fstat(fd).st_size
        # A session of its own: the terminal's signals (Ctrl-C) and the end of the process
        # that started it are not its business; its clients are. It runs in / as it outlives
        # its starter, whose folder may go (Node's workers fail to start without a cwd).
        proc = subprocess.Popen([binary, "--listen", paths.socket, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=fd, close_fds=True, start_new_session=True,
                                env=_child_env(), cwd="/")
    finally:
        os.close(fd)
    deadline = time.monotonic() + START_WAIT_S
    pause = 0.002
    while True:
        sock = _connect(paths.socket)
        if sock is not None:
            break
        code = proc.poll()
        if code is not None and code != EXIT_TAKEN:  # EXIT_TAKEN: another one listens: connect to it
            raise ServerError("the shared sqlite-rpc server (%s --listen %s) exited at start with status %s%s"
                              % (binary, paths.socket, code, _log_tail(paths.log, since)))
        if time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise ServerError("the shared sqlite-rpc server (%s --listen %s) did not accept connections within %.0f s%s"
                              % (binary, paths.socket, START_WAIT_S, _log_tail(paths.log, since)))
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    if proc.returncode is None:
        # It is our child until we exit: reap it when it exits (idle), or it stays a zombie.
        threading.Thread(target=proc.wait, name="sqlite-rpc-reaper", daemon=True).start()
    return sock


def _rotate(log: str) -> None:
    try:
        if os.lstat(log).st_size > LOG_KEEP:
            os.replace(log, log + ".1")
    except OSError:
        pass


def _log_tail(log: str, since: int, limit: int = 2000) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(since, os.fstat(f.fileno()).st_size - limit))
            tail = f.read(limit).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return "; its log %s ends:\n%s" % (log, tail) if tail else " (its log %s is empty)" % log


# ---- the connection -------------------------------------------------------------------------

class SocketServer(ServerProcess):
    """This process's connection to the shared server. Its sessions are its own: the server
    closes them (rolling back their transactions, releasing the writer) when the connection
    ends, however it ends. The server's log goes to the runtime folder, not to this
    process's logging, except its records of our slow queries, which it sends here as
    `log` notifications."""

    shared = True

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BYTES)
            except OSError:
                pass  # over the system's limit: the default size only costs speed
        self._attach(sock.fileno(), sock.fileno())
        try:
            self._initialize()
        except sqlite3.OperationalError as e:
            if getattr(e, "rpc_kind", None) != KIND_SERVER_GONE:
                self._discard()
                raise
            self._salvage_refusal()
            self._discard()
            if self.refusal is not None:
                raise StartRefused(self._refused()) from None
            raise ServerError(str(e)) from None  # gone as we came (its idle exit): connect_or_start tries again
        except BaseException:
            self._discard()
            raise
        self.pid = (self.info.get("server") or {}).get("pid")

    def _refused(self) -> str:
        err = self.refusal or {}
        kind = (err.get("data") or {}).get("kind")
        return "the shared sqlite-rpc server at %s refused this process: %s%s" % (
            self.path, err.get("message", "no reason given"), " (%s)" % kind if kind else "")

    def _salvage_refusal(self) -> None:
        """After a failed initialize: the server may have said why before it hung up, and
        the reply still waits in the socket when writing initialize failed first."""
        if self.refusal is not None:
            return
        try:
            self.sock.settimeout(1.0)
            while self.refusal is None:
                n = self.sock.recv_into(self._rbuf)
                if not n:
                    break
                self._inbuf += self._rview[:n]
                self._pump()
        except OSError:
            pass

    def _gone_reason(self, detail: str) -> str:
        if self.refusal is not None:
            return self._refused()
        return "the sqlite-rpc server exited unexpectedly (the shared server, pid %s, at %s: %s)" % (
            self.pid, self.path, detail or "it closed the connection")

    def _discard(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _forget_after_fork(self) -> None:
        # Only this process's copy of the descriptor: the parent's connection stays as it is
        # (shutdown() would end it for both).
        self._discard()

    def close(self, timeout: float = 10.0) -> None:
        """Disconnect, once the requests in flight are answered. The server closes this
        connection's sessions and stays for its other clients; it exits by itself once idle."""
        if self.dead is None:
            for slot in [s for s in list(self._pending.values()) if s.future is None]:
                try:
                    self.wait(slot)
                except Exception:
                    pass
        self.dead = self.dead or "this process disconnected from the shared sqlite-rpc server"
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread still blocked reading it
        except OSError:
            pass
        self._discard()
