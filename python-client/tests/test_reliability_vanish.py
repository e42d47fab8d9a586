"""Issue 7, item 3: a client that vanishes mid-transaction never keeps the write lock.

Two clients are two processes, each with its own server, on one file: A takes the write
lock (a transaction with a row in it) and then vanishes; B is already waiting to write and
must proceed, and A's row must not be in the file. Ways to vanish: the Python process is
killed (its server sees end of input and must exit, releasing the lock), the pipe to the
server is closed, or the client stays alive but silent (frozen, stopped): then the
server's --idle-tx-timeout rolls the transaction back.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

import sqlite_rpc

from _reliability import Pipe, check_file, child_env, gone, wait_until


@pytest.fixture
def shared(tmp_path):
    path = str(tmp_path / "vanish.sqlite")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(who TEXT)")
    con.commit()
    con.close()
    return path


def _rows(path):
    verdict, con = check_file(path)
    try:
        assert verdict == "ok"
        return sorted(w for (w,) in con.execute("SELECT who FROM t"))
    finally:
        con.close()


class _Waiter:
    """B: this process (with its own server) starts a write that must wait for A's lock."""

    def __init__(self, path: str, who: str = "B", timeout: float = 60.0) -> None:
        self.outcome = None
        self.conn = sqlite_rpc.connect(path, timeout=timeout, check_same_thread=False)
        self.thread = threading.Thread(target=self._run, args=(who,))

    def _run(self, who: str) -> None:
        try:
            self.conn.execute("INSERT INTO t VALUES (?)", (who,))
            self.conn.commit()
            self.outcome = "committed"
        except sqlite3.Error as e:
            self.outcome = "%s: %s" % (type(e).__name__, e)

    def start(self) -> "_Waiter":
        self.thread.start()
        return self

    def join(self) -> str:
        self.thread.join(120)
        self.conn.close()
        return self.outcome


def _assert_locked(path: str) -> None:
    """Precondition: A really holds the write lock (a short timeout fails as sqlite3 does)."""
    c = sqlite_rpc.connect(path, timeout=0.2)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            c.execute("INSERT INTO t VALUES ('probe')")
    finally:
        c.close()


_HOLDER = r"""
import sys, time, sqlite_rpc
from sqlite_rpc import process
c = sqlite_rpc.connect(sys.argv[1])
c.execute("INSERT INTO t VALUES ('A, uncommitted')")
print(process.get_server().pid, flush=True)
line = sys.stdin.readline()          # stays in the transaction until told to go on
try:
    c.execute("INSERT INTO t VALUES ('A, second')")
    print("no error", flush=True)
except Exception as e:
    print("%s: %s" % (type(e).__name__, e), flush=True)
print("in_transaction:", c.in_transaction, flush=True)
c.execute("INSERT INTO t VALUES ('A, after')")
c.commit()
print("done", flush=True)
"""


def _holder(path: str, **env: str) -> "tuple[subprocess.Popen, int]":
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=child_env(**env))
    server_pid = int(child.stdout.readline())
    return child, server_pid


@pytest.mark.private_server  # A's own server must exit (test_shared_server.py has the shared case)
def test_killed_python_client_releases_the_writer(shared):
    a, a_server = _holder(shared)
    try:
        _assert_locked(shared)
        b = _Waiter(shared).start()
        a.kill()  # SIGKILL: no atexit, no shutdown; the server only sees its stdin close
        a.wait()
        assert gone(a_server), "A's server did not exit after its client died"
        assert b.join() == "committed"
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert _rows(shared) == ["B"]


def test_closed_pipe_releases_the_writer(shared, tmp_path):
    with Pipe([], stderr_path=str(tmp_path / "a.stderr")) as a:
        a.init()
        a.call("open", {"session": 1, "path": shared})
        a.call("begin", {"session": 1, "mode": "immediate"})
        a.call("execute", {"session": 1, "sql": "INSERT INTO t VALUES ('A, uncommitted')"})
        _assert_locked(shared)
        b = _Waiter(shared).start()
        a.close_stdin()
        # End of input is shutdown + exit: status 0, the transaction rolled back.
        assert a.wait() == 0
        assert b.join() == "committed"
    assert _rows(shared) == ["B"]


def test_silent_client_is_rolled_back_at_the_idle_limit(shared, tmp_path):
    # A keeps its pipe open but sends nothing more: only the idle limit can free the writer.
    with Pipe(["--idle-tx-timeout", "1000"], stderr_path=str(tmp_path / "a.stderr")) as a:
        a.init()
        a.call("open", {"session": 1, "path": shared})
        a.call("begin", {"session": 1, "mode": "immediate"})
        a.call("execute", {"session": 1, "sql": "INSERT INTO t VALUES ('A, uncommitted')"})
        _assert_locked(shared)
        b = _Waiter(shared).start()
        assert b.join() == "committed"
        # A hears about it on its next request, once, and carries on.
        reply = a.reply(a.send("execute", {"session": 1, "sql": "INSERT INTO t VALUES ('A, second')"}))
        assert reply["error"]["data"]["kind"] == "TransactionAborted", reply
        a.call("execute", {"session": 1, "sql": "INSERT INTO t VALUES ('A, after')"})
        assert any(e.get("event") == "transaction_aborted" for e in a.log_events())
        assert a.shutdown() == 0
    assert _rows(shared) == ["A, after", "B"]


def test_stopped_python_client_is_rolled_back_at_the_idle_limit(shared):
    a, a_server = _holder(shared, SQLITE_RPC_ARGS="--idle-tx-timeout 1000")
    try:
        _assert_locked(shared)
        os.kill(a.pid, signal.SIGSTOP)  # frozen: its server lives on, stdin open, nothing sent
        b = _Waiter(shared).start()
        assert b.join() == "committed"
        os.kill(a.pid, signal.SIGCONT)
        out, _ = a.communicate("go\n", timeout=60)
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
            a.kill()
            a.wait()
    lines = out.splitlines()
    assert lines[0].startswith("OperationalError") and "idle" in lines[0], out
    assert lines[1:] == ["in_transaction: False", "done"], out
    assert gone(a_server)
    assert _rows(shared) == ["A, after", "B"]
