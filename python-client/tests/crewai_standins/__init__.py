"""Stand-ins for CrewAI, for the sqlite_rpc.crewai tests (CrewAI cannot be installed here).

site/ holds packages named `crewai` and `crewai_cli` whose modules use sqlite3 (and
aiosqlite) exactly as /work/shared/reference/CREWAI.md describes CrewAI 1.15.x (and the
LTM storage of 1.9.x): same module names, classes, signatures, SQL, schemas and file
names, and the base classes the drop-ins subclass (a pydantic FlowPersistence, BaseProvider,
the flow persistence factory, DatabaseOperationError, CheckpointConfig). The fixtures put
site/ on sys.path only for the tests that ask for it.

The scenario functions below drive a storage class through CREWAI.md's API and return
what a caller observes, normalised where values are random or clock-dependent, so that a
run through the stdlib and a run through sqlite_rpc can be compared with ==.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import sqlite3
import sys
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import pytest

SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
_OURS = ("crewai", "crewai_cli")


def purge_crewai_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _OURS:
            del sys.modules[name]


def _reset_adapter() -> None:
    import sqlite_rpc.crewai as adapter

    adapter.uninstall()
    adapter._forget_built_classes()


@pytest.fixture
def no_crewai():
    """CrewAI not importable: the drop-ins are plain classes."""
    _reset_adapter()
    purge_crewai_modules()
    while SITE in sys.path:
        sys.path.remove(SITE)
    importlib.invalidate_caches()
    yield
    _reset_adapter()


@pytest.fixture
def fake_crewai():
    """The stand-in CrewAI importable (not imported yet); everything undone afterwards."""
    _reset_adapter()
    purge_crewai_modules()
    sys.path.insert(0, SITE)
    importlib.invalidate_caches()
    yield SITE
    _reset_adapter()
    while SITE in sys.path:
        sys.path.remove(SITE)
    purge_crewai_modules()
    importlib.invalidate_caches()


@pytest.fixture
def storage_dir(tmp_path, monkeypatch):
    """CREWAI_STORAGE_DIR -> an absolute directory of this test (used as is)."""
    d = tmp_path / "crewai-storage"
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(d))
    return d


class FakeTask:
    """What the kickoff storage reads from a crewai Task: id, key, expected_output."""

    def __init__(self, n: int) -> None:
        self.id = uuid.uuid5(uuid.NAMESPACE_URL, "task-%d" % n)
        self.key = "key-%d" % n
        self.expected_output = "expected %d" % n


_SQLITE_TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def server_databases() -> Dict[str, Dict[str, Any]]:
    import sqlite_rpc

    return {d["path"]: d for d in sqlite_rpc.stats()["databases"]}


def open_sessions(*paths: str) -> int:
    dbs = server_databases()
    return sum(dbs.get(os.path.realpath(p), {}).get("sessions", 0) for p in paths)


def stdlib_rows(path: str, sql: str) -> List[tuple]:
    """Read a file with the stdlib's own sqlite3 (as CrewAI's CLI does)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- scenarios ----------------------------------------------------------------------------

def kickoff_scenario(cls: Any, path: str) -> Dict[str, Any]:
    s = cls(path)
    tasks = [FakeTask(i) for i in range(3)]
    for i, t in enumerate(tasks):
        s.add(t, {"raw": "output %d" % i, "n": i, "when": datetime(2024, 5, 1, 12, 0, i)}, i,
              inputs={"topic": "sqlite", "run": uuid.UUID(int=i)})
    s.add(tasks[1], {"raw": "replayed"}, 1, was_replayed=True)  # INSERT OR REPLACE: same task id
    s.update(2, output={"raw": "updated", "list": [1, 2]}, was_replayed=True, expected_output="changed")
    s.update(99, expected_output="no such row")
    loaded = s.load()
    for row in loaded:
        assert _SQLITE_TS.match(row["timestamp"]), row["timestamp"]
        row["timestamp"] = "<CURRENT_TIMESTAMP>"
    out: Dict[str, Any] = {"loaded": loaded}
    s.delete_all()
    out["after_delete"] = s.load()
    out["columns"] = stdlib_rows(path, "SELECT name, type FROM pragma_table_info('latest_kickoff_task_outputs')")
    return out


def flow_scenario(cls: Any, path: str, context_cls: Any, state_model: Any) -> Dict[str, Any]:
    p = cls(path)
    p.save_state("flow-1", "start", {"id": "flow-1", "n": 1})
    p.save_state("flow-1", "step", state_model(id="flow-1", n=2, tags=["a", "b"]))
    p.save_state("flow-2", "start", {"id": "flow-2", "items": [1, 2.5, None, "x", True, {"k": "v"}]})
    out: Dict[str, Any] = {
        "latest": p.load_state("flow-1"),
        "other": p.load_state("flow-2"),
        "missing": p.load_state("flow-x"),
    }
    try:
        p.save_state("flow-3", "m", ["not", "a", "dict"])
    except ValueError as e:
        out["bad_type"] = ["ValueError", str(e)]
    ctx = context_cls(flow_id="flow-1", flow_class="app.ReviewFlow", method_name="review", method_output="draft",
                      message="Looks right?")
    p.save_pending_feedback("flow-1", ctx, {"id": "flow-1", "n": 3})
    p.save_pending_feedback("flow-1", ctx, state_model(id="flow-1", n=4, tags=[]))  # replaces the pending row
    state, context = p.load_pending_feedback("flow-1")
    out["pending"] = [state, context.to_dict(), type(context).__name__]
    out["latest_after_pending"] = p.load_state("flow-1")
    out["pending_missing"] = p.load_pending_feedback("flow-2")
    p.clear_pending_feedback("flow-1")
    out["after_clear"] = p.load_pending_feedback("flow-1")
    out["state_rows"] = stdlib_rows(path, "SELECT flow_uuid, method_name, state_json FROM flow_states ORDER BY id")
    out["pending_rows"] = stdlib_rows(path, "SELECT count(*) FROM pending_feedback")
    for (ts,) in stdlib_rows(path, "SELECT timestamp FROM flow_states"):
        assert datetime.fromisoformat(ts).utcoffset() is not None and datetime.fromisoformat(ts).utcoffset().total_seconds() == 0
    return out


async def ltm_scenario(storage: Any) -> Dict[str, Any]:
    storage.save("research", {"quality": 8, "suggestions": ["a"]}, "2024-01-01T10:00:00", 0.8)
    storage.save("research", {"quality": 9}, "2024-01-02T10:00:00", 0.9)
    storage.save("research", {"quality": 5}, "2024-01-02T10:00:00", 0.5)
    storage.save("writing", {"quality": 1}, "2024-01-03T10:00:00", 1)
    await storage.asave("research", {"quality": 7, "async": True}, "2024-01-03T09:00:00", 0.7)
    out = {
        "top2": storage.load("research", 2),
        "all": storage.load("research", 10),
        "async_top3": await storage.aload("research", 3),
        "missing": storage.load("nothing", 3),
        "async_missing": await storage.aload("nothing", 3),
    }
    storage.reset()
    out["after_reset"] = storage.load("research", 10)
    await storage.asave("x", {}, "2024-01-01", 1.0)
    await storage.areset()
    out["after_areset"] = await storage.aload("x", 1)
    return out


async def provider_scenario(provider: Any, location: str) -> Dict[str, Any]:
    doc = {"entities": [{"entity_type": "crew", "name": "c", "tasks": []}], "event_record": {"nodes": {}}, "n": 1}
    a = provider.checkpoint(json.dumps(doc, indent=2), location)
    b = provider.checkpoint(json.dumps({"n": 2}), location, parent_id=provider.extract_id(a))
    c = provider.checkpoint(json.dumps({"n": 3}), location, branch="experiment")
    d = await provider.acheckpoint(json.dumps({"n": 4, "s": "é\u2603"}), location, parent_id=provider.extract_id(b))
    ids = [provider.extract_id(x) for x in (a, b, c, d)]
    for loc, cid in zip((a, b, c, d), ids):
        assert loc == "%s#%s" % (location, cid)
        assert re.match(r"^\d{8}T\d{6}_[0-9a-f]{8}$", cid), cid
    out: Dict[str, Any] = {
        "read": [json.loads(provider.from_checkpoint(x)) for x in (a, b, c, d)],
        "aread": json.loads(await provider.afrom_checkpoint(d)),
        "raw_b": provider.from_checkpoint(b),
    }
    for fn in (provider.from_checkpoint,):
        try:
            fn(location + "#nope")
        except ValueError as e:
            out["missing"] = str(e)
    try:
        await provider.afrom_checkpoint(location + "#nope")
    except ValueError as e:
        out["amissing"] = str(e)
    rows = stdlib_rows(location, "SELECT id, parent_id, branch, typeof(data), created_at FROM checkpoints ORDER BY rowid")
    out["lineage"] = [(ids.index(r[0]), ids.index(r[1]) if r[1] else None, r[2], r[3]) for r in rows]
    assert all(r[4] == r[0].split("_")[0] for r in rows)
    out["pruned_main"] = provider.prune(location, 1)
    out["pruned_experiment"] = provider.prune(location, 5, branch="experiment")
    out["left"] = [ids.index(r[0]) for r in stdlib_rows(location, "SELECT id FROM checkpoints ORDER BY rowid")]
    return out


# -- many writers ---------------------------------------------------------------------------

def hammer(directory: str, tag: str, threads: int, ops: int) -> List[str]:
    """Write through every drop-in from `threads` threads, `ops` times each, on the shared
    files in `directory`; return the errors seen (none expected). Runs in worker processes."""
    from sqlite_rpc.crewai import KickoffTaskOutputsSQLiteStorage, LTMSQLiteStorage, SQLiteFlowPersistence, SqliteProvider

    errors: List[str] = []
    lock = threading.Lock()

    def one(t: int) -> None:
        try:
            kick = KickoffTaskOutputsSQLiteStorage(os.path.join(directory, "latest_kickoff_task_outputs.db"))
            flow = SQLiteFlowPersistence(os.path.join(directory, "flow_states.db"))
            ltm = LTMSQLiteStorage(os.path.join(directory, "long_term_memory_storage.db"))
            ltm._error = lambda what, e: errors.append("LTM %s: %r" % (what, e))  # it never raises
            provider = SqliteProvider()
            for i in range(ops):
                name = "%s-%d-%d" % (tag, t, i)
                task = FakeTask(0)
                task.id = name
                kick.add(task, {"raw": name}, i)
                flow.save_state("%s-%d" % (tag, t), "step", {"i": i, "name": name})
                provider.checkpoint(json.dumps({"name": name}), os.path.join(directory, "checkpoints.db"))
                ltm.save(name, {"i": i}, datetime.now(timezone.utc).isoformat(), 0.5)
        except Exception as e:  # noqa: BLE001 - every failure is the test's business
            with lock:
                errors.append(repr(e))

    ts = [threading.Thread(target=one, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return errors


def hammer_counts(directory: str) -> Dict[str, int]:
    q = {
        "latest_kickoff_task_outputs.db": "SELECT count(*) FROM latest_kickoff_task_outputs",
        "flow_states.db": "SELECT count(*) FROM flow_states",
        "checkpoints.db": "SELECT count(*) FROM checkpoints",
        "long_term_memory_storage.db": "SELECT count(*) FROM long_term_memories",
    }
    return {f: stdlib_rows(os.path.join(directory, f), sql)[0][0] for f, sql in q.items()}

