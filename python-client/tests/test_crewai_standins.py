"""CrewAI's own code (the stand-ins) gives the same results on sqlite_rpc after install() as
on the stdlib before it, on real files that the stdlib can read back.

Each scenario runs twice against the same stand-in modules: first as they are (stdlib
sqlite3 / aiosqlite), then after install() (sqlite_rpc / sqlite_rpc.aio), each on its own
files. The observable results and the rows on disk must be equal; the server must have
seen the second run's files and not the first's.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sqlite3

import pytest
from pydantic import BaseModel

import sqlite_rpc
import sqlite_rpc.crewai as adapter
from crewai_standins import (  # noqa: F401
    FakeTask, fake_crewai, flow_scenario, kickoff_scenario, ltm_scenario, open_sessions, provider_scenario,
    server_databases, stdlib_rows, storage_dir,
)


class FlowState(BaseModel):
    id: str
    n: int
    tags: list = []


def _twice(tmp_path, fn):
    """fn(directory) on the stdlib, then on sqlite_rpc; both results, and the directories."""
    plain, patched = tmp_path / "stdlib", tmp_path / "rpc"
    plain.mkdir()
    patched.mkdir()
    before = fn(plain)
    adapter.install()
    try:
        after = fn(patched)
    finally:
        adapter.uninstall()
    dbs = server_databases()
    assert not any(p.startswith(os.path.realpath(plain)) for p in dbs), "the stdlib run went through the server"
    assert any(p.startswith(os.path.realpath(patched)) for p in dbs), "the installed run did not reach the server"
    return before, after


def test_kickoff_task_outputs_storage(fake_crewai, tmp_path):
    mod = importlib.import_module("crewai.memory.storage.kickoff_task_outputs_storage")
    before, after = _twice(tmp_path, lambda d: kickoff_scenario(mod.KickoffTaskOutputsSQLiteStorage, str(d / "k.db")))
    assert before == after
    assert [r["task_index"] for r in after["loaded"]] == [0, 1, 2]
    assert after["loaded"][1]["output"] == {"raw": "replayed"} and after["loaded"][1]["was_replayed"] == 1
    assert after["loaded"][2]["output"] == {"raw": "updated", "list": [1, 2]}
    assert after["after_delete"] == []
    assert open_sessions(str(tmp_path / "rpc" / "k.db")) == 0


def test_kickoff_errors_are_database_operation_errors_both_ways(fake_crewai, tmp_path, caplog):
    mod = importlib.import_module("crewai.memory.storage.kickoff_task_outputs_storage")
    from crewai.utilities.errors import DatabaseOperationError

    def attempt(d):
        with pytest.raises(DatabaseOperationError) as info:
            mod.KickoffTaskOutputsSQLiteStorage(str(d / "missing-dir" / "k.db"))
        ok = mod.KickoffTaskOutputsSQLiteStorage(str(d / "k.db"))
        with pytest.raises(DatabaseOperationError) as bad_col:
            ok.update(0, no_such_column=1)
        return [str(info.value), type(info.value.original_error).__name__,
                str(bad_col.value), type(bad_col.value.original_error).__name__]

    with caplog.at_level(logging.ERROR):
        before, after = _twice(tmp_path, attempt)
    assert before == after
    assert after == ["Database initialization error: unable to open database file", "OperationalError",
                     "Error updating task outputs: no such column: no_such_column", "OperationalError"]


def test_flow_persistence(fake_crewai, tmp_path):
    mod = importlib.import_module("crewai.flow.persistence.sqlite")
    from crewai.flow.async_feedback.types import PendingFeedbackContext

    before, after = _twice(tmp_path, lambda d: flow_scenario(mod.SQLiteFlowPersistence, str(d / "f.db"),
                                                             PendingFeedbackContext, FlowState))
    assert before == after
    assert after["latest"] == {"id": "flow-1", "n": 2, "tags": ["a", "b"]}
    assert after["pending"][0] == {"id": "flow-1", "n": 4, "tags": []} and after["after_clear"] is None
    assert len(after["state_rows"]) == 5 and after["pending_rows"] == [(0,)]
    # CrewAI's stock class leaves its connections to the garbage collector; on sqlite_rpc
    # the session still ends when the connection object goes.
    assert open_sessions(str(tmp_path / "rpc" / "f.db")) == 0


def test_cli_task_outputs_reader_with_sqlite3_row(fake_crewai, tmp_path):
    kick = importlib.import_module("crewai.memory.storage.kickoff_task_outputs_storage")
    cli = importlib.import_module("crewai_cli.task_outputs")

    def run(d):
        path = str(d / "latest_kickoff_task_outputs.db")
        s = kick.KickoffTaskOutputsSQLiteStorage(path)
        for i in range(3):
            s.add(FakeTask(i), {"raw": "r%d" % i}, i, inputs={"i": i})
        rows = cli.load_task_outputs(path)
        for r in rows:
            r["timestamp"] = bool(r["timestamp"])
        return rows + cli.load_task_outputs(str(d / "nope.db"))

    before, after = _twice(tmp_path, run)
    assert before == after and [r["output"]["raw"] for r in after] == ["r0", "r1", "r2"]


def test_ltm_storage_sync_and_async(fake_crewai, tmp_path, capsys):
    mod = importlib.import_module("crewai.memory.storage.ltm_sqlite_storage")
    before, after = _twice(tmp_path, lambda d: asyncio.run(ltm_scenario(mod.LTMSQLiteStorage(str(d / "ltm.db")))))
    assert before == after
    assert [m["score"] for m in after["top2"]] == [0.7, 0.5]  # datetime DESC, then score ASC
    assert after["missing"] is None and after["after_reset"] is None and after["after_areset"] is None
    assert "MEMORY ERROR" not in capsys.readouterr().out


def test_checkpoints_with_jsonb_fail_on_the_stdlib_and_work_after_install(fake_crewai, tmp_path):
    assert sqlite3.sqlite_version_info < (3, 45, 0), "this machine's stdlib SQLite has jsonb(); the premise changed"
    mod = importlib.import_module("crewai.state.provider.sqlite_provider")
    cli = importlib.import_module("crewai_cli.checkpoint_cli")
    provider = mod.SqliteProvider()
    location = str(tmp_path / "stdlib" / "checkpoints.db")
    with pytest.raises(sqlite3.OperationalError, match="no such function: jsonb"):
        provider.checkpoint('{"n": 1}', location)
    with pytest.raises(sqlite3.OperationalError, match="no such function: jsonb"):
        asyncio.run(provider.acheckpoint('{"n": 1}', location))

    adapter.install()
    location = str(tmp_path / "rpc" / "checkpoints.db")
    out = asyncio.run(provider_scenario(provider, location))
    assert out["read"][0]["entities"][0]["name"] == "c" and out["read"][3] == {"n": 4, "s": "é\u2603"}
    assert out["aread"] == out["read"][3]
    assert out["raw_b"] == '{"n":2}'  # json(jsonb): SQLite's canonical text
    assert out["missing"] == out["amissing"] == "Checkpoint not found: nope"
    assert out["lineage"] == [(0, None, "main", "blob"), (1, 0, "main", "blob"), (2, None, "experiment", "blob"),
                              (3, 1, "main", "blob")]
    assert out["pruned_main"] == 2 and out["pruned_experiment"] == 0 and out["left"] == [2, 3]

    # the CLI's helpers read the same file by its header, through json(data)
    assert cli._is_sqlite(location)
    with open(location, "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"
    assert [e["data"] for e in cli.list_sqlite(location)] == [{"n": 4, "s": "é\u2603"}, {"n": 3}]
    assert cli.prune_sqlite(location, 1) == 1
    adapter.uninstall()
    # without install, the stdlib (3.40) cannot render the JSONB blobs CrewAI itself would write
    with pytest.raises(sqlite3.Error):
        cli.list_sqlite(location)
    assert open_sessions(location) == 0


def test_patched_modules_use_sqlite_rpc_connections_and_leave_sqlite3_alone(fake_crewai, tmp_path):
    mod = importlib.import_module("crewai.memory.storage.kickoff_task_outputs_storage")
    adapter.install()
    conn = mod.sqlite3.connect(str(tmp_path / "t.db"), timeout=30)
    try:
        assert type(conn) is sqlite_rpc.Connection
        conn.row_factory = mod.sqlite3.Row
        assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1
        with pytest.raises(sqlite3.Error):  # CrewAI catches sqlite3.Error through the patched global
            conn.execute("SELECT * FROM nowhere")
        assert mod.sqlite3.Error is sqlite3.Error
    finally:
        conn.close()
    assert type(sqlite3.connect(":memory:")) is sqlite3.Connection
