"""Issue 7, item 8, through the Python client: the server writes 1 MiB to stderr and a
console.log (test hook debug.stray_output) while threads are busy querying. The client
drains stderr on its own thread, so nothing stalls, and stdout stays pure protocol: every
query returns its own right answer. The server's lines reach Python's logging.
"""
from __future__ import annotations

import logging
import threading

import pytest

import sqlite_rpc
from sqlite_rpc import process

from _reliability import process_server_args, wait_until


@pytest.mark.private_server  # only a private server's stderr reaches this process's logging
def test_stderr_flood_during_queries_from_threads(tmp_path, caplog):
    path = str(tmp_path / "stray.sqlite")
    with process_server_args("--enable-test-hooks"), caplog.at_level(logging.INFO, logger="sqlite_rpc.server"):
        setup = sqlite_rpc.connect(path)
        setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        setup.executemany("INSERT INTO t(v) VALUES (?)", (("v%d" % i,) for i in range(6000)))
        setup.commit()
        stop = threading.Event()
        done = []
        failures = []

        def reader(n: int) -> None:
            c = sqlite_rpc.connect(path)
            i = 0
            try:
                while not stop.is_set() or i < 20:
                    i += 1
                    k = (n * 1000 + i) % 6000 + 1
                    assert c.execute("SELECT v FROM t WHERE id = ?", (k,)).fetchone() == ("v%d" % (k - 1),)
                    if i % 10 == 0:  # and results of two pages
                        assert len(c.execute("SELECT id, v FROM t").fetchall()) == 6000
                done.append(i)
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))
            finally:
                c.close()

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        srv = process.get_server()
        for _ in range(3):
            assert srv.call("debug.stray_output", {"stderr_bytes": 1 << 20}) == {}
        stop.set()
        for th in threads:
            th.join(120)
        assert not any(th.is_alive() for th in threads), "a client thread stalled"
        assert not failures, failures
        assert len(done) == 4
        assert setup.execute("SELECT count(*) FROM t").fetchone() == (6000,)
        assert srv.pid == process.get_server().pid  # the same server throughout

        # The drain thread forwards all of it to logging (it reads the pipe a byte at a
        # time, about a second per MiB here: a hang guard only).
        def forwarded(prefix: str) -> int:
            return sum(r.getMessage().startswith(prefix) for r in caplog.records if r.name == "sqlite_rpc.server")

        wait_until(lambda: forwarded("xxxxxxxx") == 3, "3 floods forwarded to logging", timeout=120)
        assert forwarded('console {"message": "stray console.log output') == 3
