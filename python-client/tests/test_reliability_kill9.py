"""Issue 7, item 1: kill -9 of the server during a stream of acknowledged writes.

Every acknowledged write must be in the file afterwards (checked by the stdlib's sqlite3,
which recovers the WAL), torn or half-applied groups must not exist, and PRAGMA
integrity_check must say ok. At synchronous=NORMAL too: WAL at NORMAL survives a crash of
the process (only power loss can drop its last commits), and kill -9 is a process crash.

Short form here (a few trials); `npm run reliability` runs 50 + 50 (bench/reliability.py).
"""
from __future__ import annotations

import os
import sqlite3
import threading

import pytest

import sqlite_rpc
from sqlite_rpc import process

from _reliability import check_file, kill9_trial, kill_process_server, process_server_args, wait_until

TRIALS = int(os.environ.get("RELIABILITY_KILL_TRIALS", "3"))


@pytest.mark.parametrize("seed", range(TRIALS))
@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_pipelined_writes_of_every_kind_survive_kill9(tmp_path, synchronous, seed):
    # Raw protocol, 4 sessions, exec/batch/executemany/transactions/updates pipelined: the
    # kill lands with a group commit in progress and replies not yet sent.
    # Each trial checks every acknowledged write itself. On a loaded machine the kill can
    # land between two bursts, with nothing in flight: such a trial proves less, so it is
    # repeated (with another seed) until one kill interrupts writes.
    for attempt in range(5):
        r = kill9_trial(str(tmp_path), synchronous, 1000 + seed + 100 * attempt)
        if r["in_flight_at_kill"] > 0:
            break
    assert r["in_flight_at_kill"] > 0, r  # the kill did interrupt writes
    assert r["acked_rows"] > 0, r


@pytest.mark.private_server  # it kills the server
@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_commits_acknowledged_to_python_threads_survive_kill9(tmp_path, synchronous):
    # What a Python program sees: 6 threads in CrewAI's connect/insert/commit/close pattern;
    # the server is killed under them, they carry on with a new one, and every commit()
    # that returned is in the file.
    path = str(tmp_path / "threads.sqlite")
    with process_server_args("--synchronous", synchronous):
        setup = sqlite_rpc.connect(path)
        setup.execute("CREATE TABLE w(k TEXT PRIMARY KEY, v BLOB)")
        setup.commit()
        setup.close()
        acked = []
        errors = []
        stop = threading.Event()

        def writer(t: int) -> None:
            i = 0
            while not stop.is_set():
                key = "t%d-%d" % (t, i)
                i += 1
                c = sqlite_rpc.connect(path, timeout=30)
                try:
                    c.execute("INSERT INTO w VALUES (?, ?)", (key, os.urandom(300)))
                    c.commit()
                    acked.append(key)
                except sqlite3.OperationalError as e:
                    errors.append(str(e))
                finally:
                    c.close()

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        try:
            wait_until(lambda: len(acked) >= 150, "150 acknowledged commits")
            killed = kill_process_server()
            n_at_kill = len(acked)
            wait_until(lambda: len(acked) >= n_at_kill + 100, "100 more commits on a new server")
        finally:
            stop.set()
            for th in threads:
                th.join(60)
        assert process.get_server().pid != killed
    # Only the requests in flight at the kill may fail (at most one per thread), and they say why.
    assert len(errors) <= len(threads), errors
    for e in errors:
        assert "sqlite-rpc server exited unexpectedly" in e, e
    verdict, con = check_file(path)
    try:
        assert verdict == "ok"
        present = {k for (k,) in con.execute("SELECT k FROM w")}
    finally:
        con.close()
    missing = [k for k in acked if k not in present]
    assert not missing, "acknowledged commits lost: %r" % missing[:10]
