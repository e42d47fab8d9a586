"""The servers of this Python process, one of each kind (a Home): found or started lazily,
shared by every connection and thread, replaced after a crash, forgotten after a fork, let
go of at exit.

A process may use two servers at once: a private one, its child over stdio pipes
(transport.pipe), and the user's shared one over a unix socket (transport.shared). Which
one a connection uses: connect(shared=...), else $SQLITE_RPC_SHARED, else the shared one.
"""
from __future__ import annotations

import atexit
import os
import threading
from typing import Callable, List, Optional

from ..protocol import ServerError
from .client import ServerProcess
from .lookup import ENV_BINARY, ENV_SHARED, _private_args, find_binary, server_args
from .pipe import PipeServer

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# Unix sockets, flock and peer credentials: the shared server is for POSIX systems.
_SHARED_POSSIBLE = os.name == "posix"


def use_shared(shared: Optional[bool] = None) -> bool:
    """Whether to use the user's shared server: `shared` if given, else $SQLITE_RPC_SHARED,
    else yes (where there are unix sockets)."""
    if shared is not None:
        return bool(shared)
    value = os.environ.get(ENV_SHARED, "").strip().lower()
    if value in _FALSE:
        return False
    if value in _TRUE:
        return True
    if not value:
        return _SHARED_POSSIBLE
    raise ValueError("%s must be 0 (a private server per process) or 1 (the shared server), not %r" % (ENV_SHARED, os.environ[ENV_SHARED]))


class Home:
    """Where this process keeps its server of one kind (private or shared): started or found
    on first use, replaced when it died, forgotten after fork, let go of at exit."""

    def __init__(self, shared: bool, start: Callable[[str, List[str]], ServerProcess]) -> None:
        self.shared = shared
        self._start = start
        self._lock = threading.Lock()
        self.server: Optional[ServerProcess] = None
        # Bumped whenever the server is replaced: a connection of an older one reattaches.
        self.generation = 0

    def get(self) -> ServerProcess:
        """The server in use, started (or, for the shared one, reached) on first use and
        replaced when it died."""
        srv = self.server
        if srv is not None and srv.dead is None:
            return srv
        with self._lock:
            srv = self.server
            if srv is not None and srv.dead is None:
                return srv
            if srv is not None:
                srv._discard()
            binary = find_binary()
            if binary is None:
                raise ServerError("sqlite-rpc binary not found (set %s, install the platform wheel, or run npm run build)" % ENV_BINARY)
            srv = self._start(binary, server_args())
            srv.home = self
            self.server = srv
            self.generation += 1
            return srv

    def shutdown(self) -> None:
        """Let go of the server: a private one stops; a shared one is only disconnected from
        (it exits by itself once no process uses it). The next use starts or finds one."""
        with self._lock:
            srv, self.server = self.server, None
        if srv is not None:
            srv.close()

    def after_fork_in_child(self) -> None:
        # The parent's server and stream are not ours: forget them (without a byte sent on
        # them) so that the child's first call starts or reaches its own.
        self._lock = threading.Lock()
        srv, self.server = self.server, None
        if srv is not None:
            srv.dead = "this process was forked and the sqlite-rpc server belongs to the parent"
            srv._forget_after_fork()
        self.generation += 1


def _start_shared(binary: str, args: List[str]) -> ServerProcess:
    from . import shared

    return shared.connect_or_start(binary, args)


PRIVATE = Home(False, lambda binary, args: PipeServer(binary, _private_args(args)))
SHARED = Home(True, _start_shared)


def home(shared: Optional[bool] = None) -> Home:
    return SHARED if use_shared(shared) else PRIVATE


def get_server(shared: Optional[bool] = None) -> ServerProcess:
    """The running server of that kind (see use_shared), started on first use and
    restarted when it died."""
    return home(shared).get()


def current(shared: Optional[bool] = None) -> Optional[ServerProcess]:
    """The server of that kind in use now, without starting one."""
    return home(shared).server


def running() -> bool:
    """Whether a server of either kind is in use by this process."""
    return any(h.server is not None and h.server.dead is None for h in (PRIVATE, SHARED))


def generation(shared: Optional[bool] = None) -> int:
    return home(shared).generation


def shutdown(shared: Optional[bool] = None) -> None:
    """Let go of both servers (or of one kind): see Home.shutdown."""
    for h in (PRIVATE, SHARED) if shared is None else (home(shared),):
        h.shutdown()


def _after_fork_in_child() -> None:
    for h in (PRIVATE, SHARED):
        h.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
