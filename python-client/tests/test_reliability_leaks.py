"""Issue 7, item 7: connect/close cycles and server restarts leak nothing.

Counted from /proc, before and after (each time once the server has finished closing what
the client closed without waiting): descriptors of this process and of the server,
threads (threading.active_count(); the server's /proc/<pid>/task), child processes and
zombies of this process, reader workers (server threads), and RSS within a generous bound.
Short forms; `npm run reliability` runs 1000 cycles and 1000 restarts.
"""
from __future__ import annotations

import os

import pytest

from _reliability import assert_no_leaks, connect_cycles, process_server_args, server_restarts
from conftest import settle_shared_servers

CYCLES = int(os.environ.get("RELIABILITY_CYCLES", "200"))
RESTARTS = int(os.environ.get("RELIABILITY_RESTARTS", "100"))


@pytest.fixture(autouse=True)
def _settled():
    settle_shared_servers()  # this process's children and threads are counted


def test_connect_close_cycles(tmp_path):
    # Sessions, a cursor left half read (every 5th), a transaction left open (every 7th).
    r = connect_cycles(str(tmp_path), CYCLES)
    assert_no_leaks(r["before"], r["after"], server_same=True)


def test_connect_close_cycles_while_the_server_reopens_the_files(tmp_path):
    # Every cycle finds its file closed by the server (idle 50 ms) and reopens it: a writer,
    # the main-thread reader and two reader workers started and stopped each time.
    with process_server_args("--db-idle-close-ms", "50"):
        r = connect_cycles(str(tmp_path), 30, files=15, warmup=15, churn=True)
    assert_no_leaks(r["before"], r["after"], server_same=True)


@pytest.mark.private_server  # it stops and kills the server
def test_server_restarts(tmp_path):
    # Two in three by sqlite_rpc.shutdown(), one in three by kill -9; a connection opened
    # before the first restart is used after each one.
    r = server_restarts(str(tmp_path), RESTARTS)
    assert r["distinct_servers"] == RESTARTS + 5
    assert_no_leaks(r["before"], r["after"], server_same=False)
