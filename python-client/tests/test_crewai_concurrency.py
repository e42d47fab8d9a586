"""Many writers on the same CrewAI files through the drop-ins: 8 threads in one process, and
4 processes at once (on the shared server, and each on a private server of its own). No error may surface ("database is locked"
least of all) and every row written must be there, read back with the stdlib."""
from __future__ import annotations

import multiprocessing
import os

import pytest

import sqlite_rpc
from crewai_standins import hammer, hammer_counts, no_crewai, open_sessions, stdlib_rows  # noqa: F401

FILES = ("latest_kickoff_task_outputs.db", "flow_states.db", "checkpoints.db", "long_term_memory_storage.db")


def test_eight_threads_write_the_same_files(no_crewai, tmp_path):
    threads, ops = 8, 10
    errors = hammer(str(tmp_path), "t", threads, ops)
    assert errors == []
    assert hammer_counts(str(tmp_path)) == {f: threads * ops for f in FILES}
    assert open_sessions(*(str(tmp_path / f) for f in FILES)) == 0
    db = {d["path"]: d for d in sqlite_rpc.stats()["databases"]}[os.path.realpath(tmp_path / "flow_states.db")]
    assert db["writer_owner"] is None and db["queued_writes"] == 0


@pytest.mark.parametrize("mode", ["shared", pytest.param("private", marks=pytest.mark.private_server)])
def test_four_processes_write_the_same_files(no_crewai, tmp_path, monkeypatch, mode):
    if mode == "shared":
        monkeypatch.setenv("SQLITE_RPC_SHARED", "1")  # the workers inherit it
    procs, threads, ops = 4, 2, 6
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        results = pool.starmap(hammer, [(str(tmp_path), "p%d" % i, threads, ops) for i in range(procs)])
    assert results == [[]] * procs
    assert hammer_counts(str(tmp_path)) == {f: procs * threads * ops for f in FILES}
    if mode == "private":
        assert not any(p.startswith(os.path.realpath(tmp_path)) for p in (d["path"] for d in sqlite_rpc.stats()["databases"])), \
            "the writes were meant to come from the worker processes' own servers"


def test_eight_threads_open_an_old_kickoff_file_at_once(no_crewai, tmp_path):
    """The task_key migration (PRAGMA table_info, then ALTER TABLE) runs in one write
    transaction: concurrent first opens of a pre-task_key file add the column once."""
    import sqlite3
    import threading

    from sqlite_rpc.crewai import KickoffTaskOutputsSQLiteStorage

    for round_ in range(3):
        path = str(tmp_path / ("old-%d.db" % round_))
        old = sqlite3.connect(path)
        old.execute("CREATE TABLE latest_kickoff_task_outputs (task_id TEXT PRIMARY KEY, expected_output TEXT, output JSON, "
                    "task_index INTEGER, inputs JSON, was_replayed BOOLEAN, timestamp DATETIME DEFAULT CURRENT_TIMESTAMP)")
        old.close()
        barrier = threading.Barrier(8)
        errors = []

        def first_open():
            barrier.wait()
            try:
                KickoffTaskOutputsSQLiteStorage(path)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=first_open) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        cols = [r[1] for r in stdlib_rows(path, "PRAGMA table_info(latest_kickoff_task_outputs)")]
        assert cols.count("task_key") == 1
