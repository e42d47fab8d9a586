"""Shared set-up: the tests run against the checkout's server binary, never a fallback.

The binary is dist/sqlite-rpc at the repository root (built by `npm run build`).
If it is missing the whole run stops with that message: sqlite_rpc would otherwise fall
back to the stdlib and the differential tests would compare sqlite3 with itself.

Server mode: the default (the user's shared server), or SQLITE_RPC_SHARED=0 from the
environment for a whole run on private servers. Tests about the private server itself carry
the private_server marker. The shared servers of the run live in a runtime folder of its
own (XDG_RUNTIME_DIR), never the user's, and none may be left running at its end.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from typing import List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BINARY = os.path.join(ROOT, "dist", "sqlite-rpc")

# The environment must not steer the client elsewhere: pin the checkout's binary and clear
# the switches that would disable the server or change its flags.
os.environ["SQLITE_RPC_BINARY"] = BINARY
for _name in ("SQLITE_RPC_DISABLE", "SQLITE_RPC_ARGS"):
    os.environ.pop(_name, None)

# Before anything starts a server (children inherit it). Short, for the socket address limit.
RUNTIME_ROOT = tempfile.mkdtemp(prefix="sqlite-rpc-tests-")  # 0700
os.environ["XDG_RUNTIME_DIR"] = RUNTIME_ROOT

sys.path.insert(0, HERE)  # _harness and friends


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "private_server: about the private server itself (it kills it, reads its stderr, pid or "
        "descriptors, or passes per-process flags): runs with SQLITE_RPC_SHARED=0")
    if not (os.path.isfile(BINARY) and os.access(BINARY, os.X_OK)):
        pytest.exit(
            "sqlite-rpc server binary missing: %s (build it with `npm run build`)" % BINARY,
            returncode=4,
        )


@pytest.fixture(scope="session", autouse=True)
def _server_in_use():
    import sqlite_rpc

    assert sqlite_rpc.backend() == "sqlite-rpc", "the tests must run against the server, not the stdlib fallback"
    yield
    # This process lets go of its servers; every shared server the run started must then
    # exit by itself (idle exit, 5 s by default), or it was leaked.
    sqlite_rpc.shutdown()
    left = wait_no_listen_servers(RUNTIME_ROOT, 60.0)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(RUNTIME_ROOT, ignore_errors=True)
    assert not left, "shared servers still running 60 s after the last test (killed now): %s" % left


@pytest.fixture(autouse=True)
def _server_mode(request, monkeypatch):
    if request.node.get_closest_marker("private_server"):
        monkeypatch.setenv("SQLITE_RPC_SHARED", "0")


@pytest.fixture
def rpc():
    import sqlite_rpc

    return sqlite_rpc


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "test.sqlite")


def subprocess_env(**extra: str) -> dict:
    """The environment for a child Python running sqlite_rpc (binary pinned, no disable)."""
    env = dict(os.environ)
    env.update(extra)
    return env


# ---- shared servers, found by their command line ---------------------------------------------

def _alive(pid: int) -> bool:
    """Running. A zombie has exited, but only once its last thread has too: a killed
    process's main thread may show Z while the others still hold its descriptors."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                return True
        return len(os.listdir("/proc/%d/task" % pid)) > 1
    except (FileNotFoundError, ProcessLookupError):
        return False


def listen_servers(folder: str) -> List[int]:
    """Live processes running `sqlite-rpc --listen SOCKET` with SOCKET under folder."""
    folder = os.path.join(os.path.realpath(folder), "")
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        for i, a in enumerate(argv[:-1]):
            if a == b"--listen" and os.path.realpath(os.fsdecode(argv[i + 1])).startswith(folder) and _alive(int(name)):
                out.append(int(name))
                break
    return sorted(out)


def settle_shared_servers() -> None:
    """No shared server of the run left, nor a thread reaping one: what tests that count this
    process's children and threads need first (shared servers it started are its children
    until they exit on their idle timers, which would otherwise happen mid-count). The run's
    tests are sequential: no other process uses them now."""
    import threading

    import sqlite_rpc

    sqlite_rpc.shutdown(shared=True)
    for pid in listen_servers(RUNTIME_ROOT):
        try:
            os.kill(pid, signal.SIGTERM)  # a clean stop, as at its idle exit
        except ProcessLookupError:
            pass
    left = wait_no_listen_servers(RUNTIME_ROOT, 60.0)
    assert not left, "shared servers did not stop on SIGTERM: %s" % left
    for t in threading.enumerate():
        if t.name == "sqlite-rpc-reaper":
            t.join(30.0)


def wait_no_listen_servers(folder: str, bound: float) -> List[int]:
    """Wait (up to bound seconds: a hang guard, not a timing claim) until no shared server
    under folder runs; the ones still running then."""
    deadline = time.monotonic() + bound
    while True:
        left = listen_servers(folder)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
