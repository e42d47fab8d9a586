"""The drop-in classes of sqlite_rpc.crewai against what CREWAI.md says CrewAI's classes do.

Where a stand-in of CrewAI's class exists, the drop-in (on the server) and the stand-in
(on the stdlib) run the same scenario and must give equal results. The rest checks the
stated behaviour directly: signatures, file names, errors, and what the drop-ins do better.
"""
from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import json
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime

import pytest
from pydantic import BaseModel

import sqlite_rpc
import sqlite_rpc.crewai as adapter
from crewai_standins import (  # noqa: F401
    FakeTask, fake_crewai, flow_scenario, kickoff_scenario, ltm_scenario, no_crewai, open_sessions,
    provider_scenario, server_databases, stdlib_rows, storage_dir,
)


class FlowState(BaseModel):
    id: str
    n: int
    tags: list = []


class TimedState(BaseModel):
    id: str
    at: datetime


def _through_server(path) -> bool:
    return os.path.realpath(str(path)) in server_databases()


# -- signatures ------------------------------------------------------------------------------

def test_signatures_are_crewais(no_crewai):
    sig = lambda f: str(inspect.signature(f))  # noqa: E731
    K, L, P = adapter.KickoffTaskOutputsSQLiteStorage, adapter.LTMSQLiteStorage, adapter.SqliteProvider
    assert sig(K.__init__) == "(self, db_path: 'Optional[str]' = None) -> 'None'"
    assert sig(K.add).startswith("(self, task: 'Any', output: 'Dict[str, Any]', task_index: 'int', was_replayed: 'bool' = False, inputs:")
    assert sig(K.update) == "(self, task_index: 'int', **kwargs: 'Any') -> 'None'"
    assert list(inspect.signature(adapter.SQLiteFlowPersistence.__init__).parameters) == ["self", "db_path", "kwargs"]
    assert inspect.signature(adapter.SQLiteFlowPersistence.__init__).parameters["db_path"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert list(inspect.signature(P.checkpoint).parameters) == ["self", "data", "location", "parent_id", "branch"]
    assert inspect.signature(P.checkpoint).parameters["parent_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.iscoroutinefunction(P.acheckpoint) and inspect.iscoroutinefunction(P.afrom_checkpoint)
    assert list(inspect.signature(P.prune).parameters) == ["self", "location", "max_keep", "branch"]
    assert list(inspect.signature(L.__init__).parameters) == ["self", "db_path", "verbose"]
    assert list(inspect.signature(L.save).parameters) == ["self", "task_description", "metadata", "datetime", "score"]
    assert all(inspect.iscoroutinefunction(getattr(L, m)) for m in ("asave", "aload", "areset"))


# -- kickoff task outputs --------------------------------------------------------------------

def test_kickoff_dropin_gives_crewais_results(fake_crewai, tmp_path):
    stock = importlib.import_module("crewai.memory.storage.kickoff_task_outputs_storage")
    expected = kickoff_scenario(stock.KickoffTaskOutputsSQLiteStorage, str(tmp_path / "stock.db"))
    got = kickoff_scenario(adapter.KickoffTaskOutputsSQLiteStorage, str(tmp_path / "ours.db"))
    assert got == expected
    assert _through_server(tmp_path / "ours.db") and not _through_server(tmp_path / "stock.db")


def test_kickoff_failures_are_database_operation_errors(no_crewai, tmp_path, caplog):
    E = adapter.DatabaseOperationError
    assert E.__name__ == "DatabaseOperationError" and issubclass(E, Exception)
    with caplog.at_level(logging.ERROR, logger="sqlite_rpc.crewai"):
        with pytest.raises(E) as info:
            adapter.KickoffTaskOutputsSQLiteStorage(str(tmp_path / "no" / "such" / "dir.db"))
    assert str(info.value) == "Database initialization error: unable to open database file"
    assert isinstance(info.value.original_error, sqlite3.OperationalError)
    assert "Database initialization error" in caplog.text

    s = adapter.KickoffTaskOutputsSQLiteStorage(str(tmp_path / "k.db"))
    s.add(FakeTask(1), {"raw": "x"}, 0)
    with pytest.raises(E, match="^Error updating task outputs: no such column: x = 1; DROP TABLE"):
        s.update(0, **{"x = 1; DROP TABLE latest_kickoff_task_outputs; --": 1})
    with pytest.raises(E, match="^Error updating task outputs: no such column: nope"):
        s.update(0, nope=1)
    assert [r["output"] for r in s.load()] == [{"raw": "x"}]

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 300)
    with pytest.raises(E, match="^Database initialization error: file is not a database"):
        adapter.KickoffTaskOutputsSQLiteStorage(str(garbage))
    s.db_path = str(garbage)
    with pytest.raises(E, match="^Error saving task outputs: file is not a database"):
        s.add(FakeTask(2), {}, 1)
    with pytest.raises(E, match="^Error loading task outputs: file is not a database"):
        s.load()
    with pytest.raises(E, match="^Error deleting task outputs: file is not a database"):
        s.delete_all()


def test_kickoff_migrates_a_file_without_task_key(no_crewai, tmp_path):
    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.execute("""CREATE TABLE latest_kickoff_task_outputs (task_id TEXT PRIMARY KEY, expected_output TEXT,
                   output JSON, task_index INTEGER, inputs JSON, was_replayed BOOLEAN,
                   timestamp DATETIME DEFAULT CURRENT_TIMESTAMP)""")
    old.execute("INSERT INTO latest_kickoff_task_outputs (task_id, expected_output, output, task_index, inputs, was_replayed) "
                "VALUES ('t0', 'e', '{\"raw\": 1}', 0, '{}', 0)")
    old.commit()
    old.close()
    s = adapter.KickoffTaskOutputsSQLiteStorage(path)
    adapter.KickoffTaskOutputsSQLiteStorage(path)  # twice: the column is added once
    s.add(FakeTask(1), {"raw": 2}, 1)
    rows = s.load()
    assert [(r["task_id"], r["task_key"], r["output"]) for r in rows] == [("t0", None, {"raw": 1}), (str(FakeTask(1).id), "key-1", {"raw": 2})]
    assert [c[1] for c in stdlib_rows(path, "PRAGMA table_info(latest_kickoff_task_outputs)")][-1] == "task_key"


# -- flow persistence ------------------------------------------------------------------------

def test_flow_dropin_gives_crewais_results(fake_crewai, tmp_path):
    stock = importlib.import_module("crewai.flow.persistence.sqlite")
    from crewai.flow.async_feedback.types import PendingFeedbackContext

    expected = flow_scenario(stock.SQLiteFlowPersistence, str(tmp_path / "stock.db"), PendingFeedbackContext, FlowState)
    got = flow_scenario(adapter.SQLiteFlowPersistence, str(tmp_path / "ours.db"), PendingFeedbackContext, FlowState)
    assert got == expected
    assert got["pending"][2] == "PendingFeedbackContext"


def test_flow_dropin_is_a_crewai_flow_persistence_when_crewai_is_importable(fake_crewai, tmp_path):
    from crewai.flow.persistence.base import FlowPersistence

    cls = adapter.SQLiteFlowPersistence
    assert issubclass(cls, FlowPersistence) and issubclass(cls, BaseModel)
    p = cls(str(tmp_path / "a.db"))
    assert p.db_path == str(tmp_path / "a.db") and p.persistence_type == "SQLiteFlowPersistence"
    assert cls(db_path=str(tmp_path / "b.db")).model_dump() == {"persistence_type": "SQLiteFlowPersistence",
                                                                "db_path": str(tmp_path / "b.db")}
    assert stdlib_rows(str(tmp_path / "b.db"), "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name") == [
        ("flow_states",), ("pending_feedback",), ("sqlite_sequence",)]


def test_flow_dropin_without_crewai_is_a_plain_class(no_crewai, tmp_path):
    cls = adapter.SQLiteFlowPersistence
    assert cls.__mro__[1:] == (adapter._FlowPersistenceMethods, object)
    expected_ctx = {"flow_id": "flow-1", "flow_class": "app.ReviewFlow", "method_name": "review",
                    "method_output": "draft", "message": "Looks right?"}
    out = flow_scenario(cls, str(tmp_path / "f.db"), lambda **kw: adapter.PendingFeedbackContext(kw), FlowState)
    assert out["pending"] == [{"id": "flow-1", "n": 4, "tags": []}, expected_ctx, "PendingFeedbackContext"]
    assert out["latest_after_pending"] == {"id": "flow-1", "n": 4, "tags": []}
    p = cls(db_path=str(tmp_path / "g.db"))
    p.save_pending_feedback("x", {"method_name": "ask", "flow_id": "x"}, {"id": "x"})  # a plain mapping works too
    state, ctx = p.load_pending_feedback("x")
    assert state == {"id": "x"} and ctx.method_name == "ask" and p.load_state("x") == {"id": "x"}
    with pytest.raises(TypeError):
        cls(str(tmp_path / "h.db"), bogus=1)


def test_non_json_flow_state_is_a_clear_type_error(no_crewai, tmp_path):
    p = adapter.SQLiteFlowPersistence(str(tmp_path / "f.db"))
    E = adapter.FlowStateNotSerializableError
    assert issubclass(E, TypeError)
    with pytest.raises(E) as info:
        p.save_state("f", "m", {"id": "f", "when": datetime(2024, 1, 1)})
    assert str(info.value) == ("flow state is not JSON-serializable: state['when'] is a datetime; convert it to str "
                               "(e.g. .isoformat()) before saving, or use a pydantic state model whose field_serializer does it")
    assert info.value.path == "state['when']" and info.value.value_type is datetime
    with pytest.raises(TypeError, match=r"state\['items'\]\[1\]\['ref'\] is a UUID; convert it to str"):
        p.save_state("f", "m", {"id": "f", "items": [{"ref": "a"}, {"ref": uuid.uuid4()}]})
    with pytest.raises(TypeError, match=r"state\['seen'\] is a set; convert it to a list"):
        p.save_state("f", "m", {"id": "f", "seen": {1, 2}})
    with pytest.raises(TypeError, match=r"state\['at'\] is a datetime"):
        p.save_state("f", "m", TimedState(id="f", at=datetime(2024, 1, 1)))
    with pytest.raises(TypeError, match=r"state key \(1, 2\) is a tuple"):
        p.save_state("f", "m", {(1, 2): "tuple key"})
    with pytest.raises(TypeError, match=r"state\['blob'\] is a bytes"):
        p.save_pending_feedback("f", {"method_name": "m"}, {"blob": b"\x00"})
    with pytest.raises(TypeError, match=r"feedback context is not JSON-serializable: context\['when'\] is a datetime"):
        p.save_pending_feedback("f", {"method_name": "m", "when": datetime(2024, 1, 1)}, {"id": "f"})
    with pytest.raises(ValueError, match="state_data must be either a Pydantic BaseModel or dict"):
        p.save_state("f", "m", "a string")
    # nothing half-written
    assert stdlib_rows(p.db_path, "SELECT (SELECT count(*) FROM flow_states), (SELECT count(*) FROM pending_feedback)") == [(0, 0)]
    # json's own TypeError for comparison: what CrewAI users get today
    with pytest.raises(TypeError, match="Object of type datetime is not JSON serializable"):
        json.dumps({"when": datetime(2024, 1, 1)})


# -- checkpoints -----------------------------------------------------------------------------

def test_provider_dropin_is_crewais_sqlite_provider_and_gives_its_results(fake_crewai, tmp_path):
    stock = importlib.import_module("crewai.state.provider.sqlite_provider")
    from crewai.state.checkpoint_config import CheckpointConfig

    assert issubclass(adapter.SqliteProvider, stock.SqliteProvider)
    provider = adapter.SqliteProvider()
    assert provider.provider_type == "sqlite"
    config = CheckpointConfig(provider=provider)
    assert config.provider is provider
    assert type(CheckpointConfig.model_validate({"provider": {"provider_type": "sqlite"}}).provider) is stock.SqliteProvider

    got = asyncio.run(provider_scenario(provider, str(tmp_path / "ours" / "checkpoints.db")))
    adapter.install()  # CrewAI's own provider only works through the server here (jsonb)
    expected = asyncio.run(provider_scenario(stock.SqliteProvider(), str(tmp_path / "stock" / "checkpoints.db")))
    for out in (got, expected):
        out.pop("raw_b")
    assert got == expected


def test_provider_dropin_without_crewai(no_crewai, tmp_path):
    provider = adapter.SqliteProvider()
    assert provider.provider_type == "sqlite" and type(provider).__mro__[1] is adapter._ProviderMethods
    location = str(tmp_path / "deep" / "dir" / "checkpoints.db")  # parents are created
    out = asyncio.run(provider_scenario(provider, location))
    assert out["raw_b"] == '{"n":2}' and out["read"][1] == {"n": 2}
    assert out["missing"] == "Checkpoint not found: nope"
    assert out["pruned_main"] == 2 and isinstance(out["pruned_main"], int) and out["left"] == [2, 3]
    assert all(kind == "blob" for *_, kind in out["lineage"])  # stored as JSONB
    with open(location, "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"
    assert provider.extract_id("a#b#c") == "c"


# -- long-term memory ------------------------------------------------------------------------

def test_ltm_dropin_gives_crewais_results(fake_crewai, tmp_path, capsys):
    stock = importlib.import_module("crewai.memory.storage.ltm_sqlite_storage")
    expected = asyncio.run(ltm_scenario(stock.LTMSQLiteStorage(str(tmp_path / "stock.db"))))
    got = asyncio.run(ltm_scenario(adapter.LTMSQLiteStorage(str(tmp_path / "ours.db"))))
    assert got == expected
    assert [m["datetime"] for m in got["all"]] == ["2024-01-03T09:00:00", "2024-01-02T10:00:00",
                                                   "2024-01-02T10:00:00", "2024-01-01T10:00:00"]
    assert "MEMORY ERROR" not in capsys.readouterr().out


def test_ltm_never_raises_and_prints_only_when_verbose(no_crewai, tmp_path, capsys):
    garbage = tmp_path / "sub" / "ltm.db"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a database at all" * 300)
    loud = adapter.LTMSQLiteStorage(str(garbage))
    loud.save("t", {}, "2024", 1.0)
    assert loud.load("t", 3) is None
    loud.reset()
    asyncio.run(loud.asave("t", {}, "2024", 1.0))
    assert asyncio.run(loud.aload("t", 3)) is None
    asyncio.run(loud.areset())
    printed = capsys.readouterr().out
    for what in ("during database initialization", "while saving to LTM", "while querying LTM",
                 "while deleting all rows in LTM"):
        assert "MEMORY ERROR: An error occurred %s: file is not a database" % what in printed
    assert printed.count("MEMORY ERROR") == 7
    quiet = adapter.LTMSQLiteStorage(str(garbage), verbose=False)
    quiet.save("t", {}, "2024", 1.0)
    assert quiet.load("t", 1) is None
    assert capsys.readouterr().out == ""


# -- default paths ---------------------------------------------------------------------------

def test_default_files_live_in_db_storage_path(no_crewai, storage_dir):
    assert adapter.db_storage_path() == str(storage_dir) and storage_dir.is_dir()  # absolute: used as is
    assert adapter.KickoffTaskOutputsSQLiteStorage().db_path == str(storage_dir / "latest_kickoff_task_outputs.db")
    assert adapter.SQLiteFlowPersistence().db_path == str(storage_dir / "flow_states.db")
    assert adapter.LTMSQLiteStorage().db_path == str(storage_dir / "long_term_memory_storage.db")
    for name in ("latest_kickoff_task_outputs.db", "flow_states.db", "long_term_memory_storage.db"):
        assert (storage_dir / name).read_bytes()[:16] == b"SQLite format 3\x00"


def test_db_storage_path_follows_appdirs_rule(no_crewai, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CREWAI_STORAGE_DIR", "my_project")
    assert adapter.db_storage_path() == str(tmp_path / "xdg" / "my_project")
    monkeypatch.delenv("CREWAI_STORAGE_DIR")
    (tmp_path / "workdir_name").mkdir()
    monkeypatch.chdir(tmp_path / "workdir_name")
    assert adapter.db_storage_path() == str(tmp_path / "xdg" / "workdir_name")
    assert (tmp_path / "xdg" / "workdir_name").is_dir()


def test_db_storage_path_is_crewais_when_importable(fake_crewai, tmp_path, monkeypatch):
    paths = importlib.import_module("crewai.utilities.paths")
    monkeypatch.setattr(paths, "db_storage_path", lambda: str(tmp_path / "from-crewai"))
    (tmp_path / "from-crewai").mkdir()
    assert adapter.KickoffTaskOutputsSQLiteStorage().db_path == str(tmp_path / "from-crewai" / "latest_kickoff_task_outputs.db")


# -- CrewAI's own classes, when importable ---------------------------------------------------

def test_errors_and_contexts_are_crewais_when_importable(fake_crewai, tmp_path):
    from crewai.flow.async_feedback.types import PendingFeedbackContext
    from crewai.utilities.errors import DatabaseOperationError

    assert adapter.DatabaseOperationError is DatabaseOperationError
    with pytest.raises(DatabaseOperationError):
        adapter.KickoffTaskOutputsSQLiteStorage(str(tmp_path / "missing" / "k.db"))
    p = adapter.SQLiteFlowPersistence(str(tmp_path / "f.db"))
    p.save_pending_feedback("f", PendingFeedbackContext(flow_id="f", flow_class="C", method_name="m"), {"id": "f"})
    _, ctx = p.load_pending_feedback("f")
    assert type(ctx) is PendingFeedbackContext and ctx.method_name == "m"


def test_the_classes_follow_crewai_in_and_out(fake_crewai):
    from crewai.flow.persistence.base import FlowPersistence

    assert issubclass(adapter.SQLiteFlowPersistence, FlowPersistence)
    adapter._forget_built_classes()
    sys.path.remove(fake_crewai)
    for name in [n for n in sys.modules if n.split(".")[0] in ("crewai", "crewai_cli")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    assert not issubclass(adapter.SQLiteFlowPersistence, BaseModel)
    assert adapter.DatabaseOperationError is adapter._LocalDatabaseOperationError
    sys.path.insert(0, fake_crewai)  # for the fixture's teardown


# -- connections never leak ------------------------------------------------------------------

def test_no_sessions_are_left_open(no_crewai, tmp_path):
    kick = adapter.KickoffTaskOutputsSQLiteStorage(str(tmp_path / "k.db"))
    flow = adapter.SQLiteFlowPersistence(str(tmp_path / "f.db"))
    ltm = adapter.LTMSQLiteStorage(str(tmp_path / "l.db"))
    provider = adapter.SqliteProvider()
    cp = str(tmp_path / "c.db")

    async def run_async():
        for i in range(5):
            loc = await provider.acheckpoint("{}", cp)
            await provider.afrom_checkpoint(loc)
            await ltm.asave("t", {}, "2024", i)
            await ltm.aload("t", 2)
        with pytest.raises(ValueError):
            await provider.afrom_checkpoint(cp + "#missing")

    for i in range(20):
        kick.add(FakeTask(i), {"i": i}, i)
        kick.update(i, output={"i": -i})
        kick.load()
        flow.save_state("f", "m", {"i": i})
        flow.load_state("f")
        flow.save_pending_feedback("f", {"method_name": "m"}, {"i": i})
        flow.load_pending_feedback("f")
        loc = provider.checkpoint(json.dumps({"i": i}), cp)
        provider.from_checkpoint(loc)
        ltm.save("t", {"i": i}, "2024", i)
        ltm.load("t", 3)
        with pytest.raises(ValueError):
            provider.from_checkpoint(cp + "#missing")
        with pytest.raises(adapter.DatabaseOperationError):
            kick.update(i, **{"bad column": 1})
        with pytest.raises(TypeError):
            flow.save_state("f", "m", {"bad": {1, 2}})
    provider.prune(cp, 3)
    asyncio.run(run_async())
    paths = [str(tmp_path / n) for n in ("k.db", "f.db", "l.db", "c.db")]
    assert all(_through_server(p) for p in paths)
    assert open_sessions(*paths) == 0
    assert sqlite_rpc.stats()["cursors"] == 0


def test_a_kept_error_does_not_keep_a_connection_open(fake_crewai, tmp_path):
    """CrewAI's `with sqlite3.connect(...) as conn:` never closes: while an error raised inside
    is alive (logged, stored, re-raised), its traceback pins the connection, and on Windows the
    file with it. The drop-ins close before the error leaves them."""
    stock = importlib.import_module("crewai.flow.persistence.sqlite")
    adapter.install()  # the stock class on sqlite_rpc, so the server can count its sessions
    kept = []
    gc.disable()
    try:
        for cls, name in ((stock.SQLiteFlowPersistence, "stock.db"), (adapter.SQLiteFlowPersistence, "ours.db")):
            p = cls(str(tmp_path / name))
            other = sqlite3.connect(p.db_path, isolation_level=None)
            other.execute("DROP TABLE flow_states")
            other.close()
            for _ in range(3):
                try:
                    p.save_state("f", "m", {"id": "f"})
                except sqlite3.OperationalError as e:
                    kept.append(e)
        assert len(kept) == 6 and all("no such table: flow_states" in str(e) for e in kept)
        assert open_sessions(str(tmp_path / "stock.db")) == 3
        assert open_sessions(str(tmp_path / "ours.db")) == 0
    finally:
        del kept
        gc.enable()
        gc.collect()
    assert open_sessions(str(tmp_path / "stock.db")) == 0


# -- without the server ----------------------------------------------------------------------

def test_dropins_on_the_stdlib_fallback_store_checkpoints_as_json_text(tmp_path):
    """SQLITE_RPC_DISABLE=1: the drop-ins run on the stdlib (SQLite 3.40 here, no jsonb());
    checkpoints are kept as JSON text that json(data) reads back on every SQLite version."""
    script = r"""
import asyncio, json, sys, warnings
warnings.simplefilter("ignore")
import sqlite_rpc, sqlite_rpc.crewai as a
assert sqlite_rpc.backend() == "sqlite3"
d = sys.argv[1]
p = a.SqliteProvider()
loc = p.checkpoint(json.dumps({"n": 1, "x": [1, 2]}), d + "/c.db")
aloc = asyncio.run(p.acheckpoint(json.dumps({"n": 2}), d + "/c.db"))
k = a.KickoffTaskOutputsSQLiteStorage(d + "/k.db")
class T: id = "t"; key = "k"; expected_output = "e"
k.add(T(), {"raw": 1}, 0)
r = a.install()
print(json.dumps([p.from_checkpoint(loc), asyncio.run(p.afrom_checkpoint(aloc)), k.load()[0]["output"], p.prune(d + "/c.db", 1),
                  r["backend"], r["warnings"]]))
"""
    env = dict(os.environ, SQLITE_RPC_DISABLE="1")
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == ['{"n":1,"x":[1,2]}', '{"n":2}', {"raw": 1}, 1, "sqlite3", [
        "the sqlite-rpc server is not available (SQLITE_RPC_DISABLE is set): CrewAI's storage runs on the stdlib's sqlite3"]]
    assert stdlib_rows(str(tmp_path / "c.db"), "SELECT typeof(data), json(data) FROM checkpoints") == [("text", '{"n":2}')]
