"""Issue 7, item 2: the server killed while Python transactions are open.

test_crash_restart.py covers one idle transaction and a few request shapes. This file adds
what it does not: a transaction large enough to have spilled uncommitted pages into the
WAL, several connections caught by one crash (the owner of the writer and the threads
queued behind it), `with conn:`, the seed API's transaction(), aio, and a crash during
COMMIT itself. The file is always checked by the stdlib's sqlite3, not by the server that
wrote it.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import sqlite_rpc
from sqlite_rpc import aio

from _reliability import check_file, child_env, db_stats, gone, kill_process_server, wait_until

# They kill the server under the client: this process's private one.
pytestmark = pytest.mark.private_server

LOST = "open transaction was lost and nothing of it was committed"


def _count(path: str, sql: str = "SELECT count(*) FROM t") -> int:
    verdict, con = check_file(path)
    try:
        assert verdict == "ok", verdict
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def table(tmp_path):
    path = str(tmp_path / "crash-tx.sqlite")
    db = sqlite_rpc.connect(path)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, pad BLOB)")
    db.executemany("INSERT INTO t(who) VALUES (?)", [("committed",)] * 100)
    db.commit()
    return path, db


def test_spilled_uncommitted_transaction_is_absent_after_kill(table):
    path, db = table
    # ~24 MB in one transaction: far over the writer's page cache, so SQLite spills
    # uncommitted pages into the WAL before COMMIT. Recovery must ignore those frames.
    db.executemany("INSERT INTO t(who, pad) VALUES ('uncommitted', ?)", ((os.urandom(4000),) for _ in range(6000)))
    assert db.in_transaction
    assert os.path.getsize(path + "-wal") > 8 << 20, "precondition: uncommitted pages reached the WAL"
    kill_process_server()
    assert _count(path) == 100
    assert _count(path, "SELECT count(*) FROM t WHERE who = 'uncommitted'") == 0
    with pytest.raises(sqlite3.OperationalError, match=LOST):
        db.execute("INSERT INTO t(who) VALUES ('next')")
    assert not db.in_transaction
    # The same connection carries on with the new server.
    db.execute("INSERT INTO t(who) VALUES ('after')")
    db.commit()
    assert _count(path) == 101


def test_owner_and_queued_writers_all_get_clear_errors_then_carry_on(table):
    path, owner = table
    owner.execute("INSERT INTO t(who) VALUES ('owner, uncommitted')")
    outcomes = {}

    def queued(name: str) -> None:
        c = sqlite_rpc.connect(path, timeout=60, check_same_thread=False)
        try:
            c.execute("INSERT INTO t(who) VALUES (?)", (name + ", uncommitted",))  # waits for the writer
            outcomes[name] = "no error"
        except sqlite3.OperationalError as e:
            outcomes[name] = str(e)
        try:
            c.execute("INSERT INTO t(who) VALUES (?)", (name,))
            c.commit()
        finally:
            c.close()

    threads = [threading.Thread(target=queued, args=(n,)) for n in ("b", "c")]
    for th in threads:
        th.start()
    # Precondition: both are really queued behind the owner's transaction.
    wait_until(lambda: db_stats(path)["writer_waiters"] == 2, "two writers queued behind the transaction")
    kill_process_server()
    for th in threads:
        th.join(60)
    for name in ("b", "c"):
        # Their BEGIN was in flight: the client cannot know whether it ran, and says so.
        assert "server exited unexpectedly" in outcomes[name] and "may or may not have taken effect" in outcomes[name], outcomes
    with pytest.raises(sqlite3.OperationalError, match=LOST):
        owner.commit()
    owner.execute("INSERT INTO t(who) VALUES ('owner')")
    owner.commit()
    _, con = check_file(path)
    try:
        assert con.execute("SELECT count(*) FROM t WHERE who LIKE '%uncommitted'").fetchone() == (0,)
        assert sorted(w for (w,) in con.execute("SELECT who FROM t WHERE who != 'committed'")) == ["b", "c", "owner"]
    finally:
        con.close()


def test_with_block_interrupted_by_a_crash(table):
    path, db = table
    with pytest.raises(sqlite3.OperationalError, match=LOST):
        with db:
            db.execute("INSERT INTO t(who) VALUES ('in with, uncommitted')")
            kill_process_server()
            db.execute("INSERT INTO t(who) VALUES ('in with, second')")
    assert not db.in_transaction
    with db:
        db.execute("INSERT INTO t(who) VALUES ('second with')")
    assert _count(path) == 101
    assert _count(path, "SELECT count(*) FROM t WHERE who LIKE 'in with%'") == 0


def test_seed_transaction_interrupted_by_a_crash_loses_nothing_committed(table):
    path, _ = table
    db = sqlite_rpc.Database(path)
    with pytest.raises(sqlite3.OperationalError):
        with db.transaction():
            db.execute_update("INSERT INTO t(who) VALUES ('seed, uncommitted')")
            kill_process_server()
            db.execute_update("INSERT INTO t(who) VALUES ('seed, second')")
    with db.transaction():
        db.execute_update("INSERT INTO t(who) VALUES ('seed, after')")
    assert _count(path, "SELECT count(*) FROM t WHERE who LIKE 'seed%'") == 1
    db.close()


def test_seed_transaction_interrupted_by_a_crash_says_the_transaction_was_lost(table):
    path, _ = table
    db = sqlite_rpc.Database(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match=LOST):
            with db.transaction():
                db.execute_update("INSERT INTO t(who) VALUES ('seed, uncommitted')")
                kill_process_server()
                db.execute_update("INSERT INTO t(who) VALUES ('seed, second')")
    finally:
        db.close()


def test_aio_transaction_interrupted_by_a_crash(table):
    path, _ = table

    async def run() -> None:
        async with aio.connect(path) as db:
            await db.execute("INSERT INTO t(who) VALUES ('aio, uncommitted')")
            assert db.in_transaction
            kill_process_server()
            with pytest.raises(sqlite3.OperationalError, match="server exited unexpectedly"):
                await db.execute("INSERT INTO t(who) VALUES ('aio, second')")
            assert not db.in_transaction
            await db.execute("INSERT INTO t(who) VALUES ('aio, after')")
            await db.commit()

    asyncio.run(run())
    assert _count(path, "SELECT count(*) FROM t WHERE who LIKE 'aio%'") == 1
    assert _count(path) == 101


def test_crash_during_commit_is_all_or_nothing(tmp_path):
    # The kill lands somewhere around a large COMMIT (before, during or after its fsync):
    # whatever the client was told, the transaction is in the file entirely or not at all.
    rng = random.Random(7)
    path = str(tmp_path / "commit.sqlite")
    setup = sqlite_rpc.connect(path)
    setup.execute("CREATE TABLE t(round INTEGER, pad BLOB)")
    setup.commit()
    setup.close()
    rows = 3000
    outcomes = []
    for rnd in range(4):
        db = sqlite_rpc.connect(path, check_same_thread=False)
        db.executemany("INSERT INTO t VALUES (?, ?)", ((rnd, os.urandom(2000)) for _ in range(rows)))
        box = []
        th = threading.Thread(target=lambda: box.append(_attempt(db.commit)))
        th.start()
        time.sleep(rng.uniform(0, 0.03))
        kill_process_server()
        th.join(60)
        outcome = box[0]
        n = _count(path, "SELECT count(*) FROM t WHERE round = %d" % rnd)
        if outcome == "ok":
            assert n == rows, (rnd, n)
        else:
            # What the message claims is test_commit_whose_reply_was_lost_...'s business.
            assert "server exited unexpectedly" in outcome, outcome
            assert n in (0, rows), "a commit half applied: %d of %d rows" % (n, rows)
        outcomes.append((outcome == "ok", n))
        db.close()
    assert len(outcomes) == 4


def _attempt(fn):
    try:
        fn()
        return "ok"
    except sqlite3.Error as e:
        return str(e)


# A child Python whose COMMIT reaches the server and is made durable, while the reply is
# held back: the child stops itself (SIGSTOP) right after sending it, and the server's
# output is backed up behind a large reply the stopped child does not read. The parent then
# kills the server and resumes the child, which must not claim that nothing was committed.
_COMMIT_REPLY_LOST = r"""
import os, signal, sqlite3, sys, threading, time
import sqlite_rpc
from sqlite_rpc import process
path = sys.argv[1]
c = sqlite_rpc.connect(path, check_same_thread=False)
c.execute("CREATE TABLE t(x)")
c.commit()
c.executemany("INSERT INTO t VALUES (?)", ((os.urandom(1000),) for _ in range(2000)))
other = sqlite_rpc.connect(path, check_same_thread=False)
other.execute("SELECT 1").fetchall()
srv = process.get_server()
print(srv.pid, flush=True)
# With --pool-size 0 reads run on the server's main thread: this one keeps it busy for a
# while, so the requests below are read together once it is done.
srv.send("execute", {"session": other._session, "sql": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
         "SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) FROM n"})
time.sleep(0.05)
# Read in one chunk with the commit: a reply to fill the pipe (its write then pauses the
# server's input, but the commit is already read), and the commit's reply queues behind it.
srv.send("execute", {"session": other._session, "sql": "SELECT zeroblob(4000000)"})  # over the 1 MiB pipe
box = []
def commit():
    try:
        c.commit()
        box.append("ok")
    except sqlite3.Error as e:
        box.append(str(e))
t = threading.Thread(target=commit)
t.start()
while len(srv._pending) < 3:
    time.sleep(0.001)
time.sleep(0.05)  # the commit request is written; the server is still busy with the long read
os.kill(os.getpid(), signal.SIGSTOP)
t.join()
print(box[0], flush=True)
"""


class CommitMisreported(AssertionError):
    pass


def test_commit_whose_reply_was_lost_is_not_reported_as_not_committed(tmp_path):
    path = str(tmp_path / "reply-lost.sqlite")
    child = subprocess.Popen([sys.executable, "-c", _COMMIT_REPLY_LOST, path], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=child_env(SQLITE_RPC_ARGS="--pool-size 0"))
    try:
        server_pid = int(child.stdout.readline())
        wait_until(lambda: _state(child.pid) == "T", "the child to stop itself")
        # The COMMIT is durable: the stdlib sees the rows.
        wait_until(lambda: _rows_or_none(path) == 2000, "the commit to reach the file")
        os.kill(server_pid, signal.SIGKILL)
        assert gone(server_pid)
        os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait()
    message = out.strip()
    assert message != "ok", "precondition: the reply never reached the child"
    assert _rows_or_none(path) == 2000
    if "nothing of it was committed" in message or "may or may not have taken effect" not in message:
        raise CommitMisreported(message)


def _state(pid: int) -> str:
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _rows_or_none(path: str):
    try:
        con = sqlite3.connect(path, timeout=0.1)
        try:
            return con.execute("SELECT count(*) FROM t").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None
