"""sqlite_rpc.crewai.install() / uninstall(): which globals move, when, and how they come back.

The CrewAI modules are the stand-ins in crewai_standins/site, importable under CrewAI's own
module names, so the default targets are exercised as they are (no override).
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os
import sqlite3
import sys
import textwrap

import aiosqlite
import pytest

import sqlite_rpc
import sqlite_rpc.aio
import sqlite_rpc.crewai as adapter
from crewai_standins import fake_crewai, no_crewai, open_sessions, server_databases, storage_dir  # noqa: F401

WITH_AIOSQLITE = {"crewai.state.provider.sqlite_provider", "crewai.memory.storage.ltm_sqlite_storage"}


def _hooks():
    return [f for f in sys.meta_path if getattr(f, "_sqlite_rpc_crewai_hook", False)]


def test_default_targets_are_crewais_module_names():
    assert adapter.TARGETS == (
        "crewai.memory.storage.kickoff_task_outputs_storage",
        "crewai.flow.persistence.sqlite",
        "crewai.state.provider.sqlite_provider",
        "crewai_cli.task_outputs",
        "crewai_cli.checkpoint_cli",
        "crewai.memory.storage.ltm_sqlite_storage",
    )
    assert adapter.FLOW_FACTORY_MODULE == "crewai.flow.persistence.factory"


def test_without_crewai_everything_is_reported_absent(no_crewai):
    report = adapter.install()
    assert report["patched"] == {} and report["pending"] == []
    assert report["absent"] == list(adapter.TARGETS)
    assert report["flow_persistence_factory"] == "absent"
    assert report["backend"] == "sqlite-rpc"
    assert adapter.is_installed() and len(_hooks()) == 1
    assert sys.modules["sqlite3"] is sqlite3 and sqlite3.connect is not sqlite_rpc.connect
    assert adapter.uninstall() == {"restored": {}, "flow_persistence_factory": "not registered"}
    assert _hooks() == [] and not adapter.is_installed()


def test_install_before_crewai_is_imported_patches_each_module_as_it_is_imported(fake_crewai, tmp_path):
    report = adapter.install()
    assert report["patched"] == {} and report["absent"] == []
    assert report["pending"] == list(adapter.TARGETS)
    assert report["flow_persistence_factory"] == "pending"

    for name in adapter.TARGETS:
        mod = importlib.import_module(name)
        assert mod.__dict__["sqlite3"] is sqlite_rpc.crewai.SQLITE3, name
        if name in WITH_AIOSQLITE:
            assert mod.__dict__["aiosqlite"] is sqlite_rpc.crewai.AIOSQLITE, name
        # the module keeps its real loader; the process keeps the real sqlite3
        assert type(mod.__loader__) is importlib.machinery.SourceFileLoader
        assert mod.__spec__.loader is mod.__loader__
    assert sys.modules["sqlite3"] is sqlite3 and sys.modules["aiosqlite"] is aiosqlite

    # and the storage really goes through the server now
    from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage

    path = str(tmp_path / "kick.db")
    KickoffTaskOutputsSQLiteStorage(path).load()
    assert os.path.realpath(path) in server_databases()
    conn = sys.modules["crewai.flow.persistence.sqlite"].sqlite3.connect(path, timeout=30)
    try:
        assert type(conn) is sqlite_rpc.Connection
        # CrewAI owns its files: its connections keep them open for reuse (no fold at close)
        assert conn._open_params.get("keep_open") is True
    finally:
        conn.close()
    assert open_sessions(path) == 0
    assert sqlite_rpc.connect(path)._open_params.get("keep_open") is None  # plain connect() is not


def test_install_after_crewai_is_imported_patches_the_loaded_modules(fake_crewai):
    mods = [importlib.import_module(n) for n in adapter.TARGETS]
    assert all(m.sqlite3 is sqlite3 for m in mods)
    report = adapter.install()
    assert report["patched"] == {
        n: (["sqlite3", "aiosqlite"] if n in WITH_AIOSQLITE else ["sqlite3"]) for n in adapter.TARGETS
    }
    assert report["pending"] == [] and report["absent"] == [] and report["warnings"] == []
    assert all(m.sqlite3 is sqlite_rpc.crewai.SQLITE3 for m in mods)
    assert sys.modules["sqlite3"] is sqlite3


def test_install_is_idempotent_and_uninstall_restores_the_originals(fake_crewai):
    kick = importlib.import_module("crewai.memory.storage.kickoff_task_outputs_storage")
    ltm = importlib.import_module("crewai.memory.storage.ltm_sqlite_storage")
    first = adapter.install()
    second = adapter.install()
    assert first == second
    assert len(_hooks()) == 1
    assert kick.sqlite3 is sqlite_rpc.crewai.SQLITE3 and ltm.aiosqlite is sqlite_rpc.crewai.AIOSQLITE

    undone = adapter.uninstall()
    assert undone["restored"] == {
        "crewai.memory.storage.kickoff_task_outputs_storage": ["sqlite3"],
        "crewai.memory.storage.ltm_sqlite_storage": ["sqlite3", "aiosqlite"],
    }
    assert kick.sqlite3 is sqlite3 and ltm.sqlite3 is sqlite3 and ltm.aiosqlite is aiosqlite
    assert _hooks() == []
    assert adapter.uninstall()["restored"] == {}

    # after uninstall, a module imported for the first time is left alone
    prov = importlib.import_module("crewai.state.provider.sqlite_provider")
    assert prov.sqlite3 is sqlite3 and prov.aiosqlite is aiosqlite


def test_reload_of_a_patched_module_stays_patched(fake_crewai):
    adapter.install()
    mod = importlib.import_module("crewai.flow.persistence.sqlite")
    assert mod.sqlite3 is sqlite_rpc.crewai.SQLITE3
    mod = importlib.reload(mod)
    assert mod.sqlite3 is sqlite_rpc.crewai.SQLITE3
    adapter.uninstall()
    assert mod.sqlite3 is sqlite3


def _write_module(directory, name, body):
    (directory / (name + ".py")).write_text(textwrap.dedent(body))


@pytest.fixture
def module_dir(tmp_path):
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("crewai_rpc_probe_")]:
        del sys.modules[name]


def test_extra_modules_are_patched_under_their_own_names(no_crewai, module_dir):
    _write_module(module_dir, "crewai_rpc_probe_early", """
        import sqlite3
        def kind(path):
            conn = sqlite3.connect(path)
            try:
                return type(conn).__module__ + "." + type(conn).__name__
            finally:
                conn.close()
        """)
    _write_module(module_dir, "crewai_rpc_probe_late", "import sqlite3\nimport aiosqlite\n")
    late = importlib.import_module("crewai_rpc_probe_late")

    report = adapter.install(extra_modules=["crewai_rpc_probe_early", "crewai_rpc_probe_late"])
    assert report["patched"] == {"crewai_rpc_probe_late": ["sqlite3", "aiosqlite"]}
    assert report["pending"] == ["crewai_rpc_probe_early"]
    assert report["absent"] == list(adapter.TARGETS)  # the defaults are still watched

    early = importlib.import_module("crewai_rpc_probe_early")
    assert early.kind(str(module_dir / "x.db")) == "sqlite_rpc.dbapi.Connection"
    adapter.uninstall()
    assert early.kind(str(module_dir / "y.db")) == "sqlite3.Connection"
    assert late.sqlite3 is sqlite3 and late.aiosqlite is aiosqlite


def test_a_connection_subclass_built_on_the_stdlib_is_reported(no_crewai, module_dir):
    _write_module(module_dir, "crewai_rpc_probe_factory", """
        import sqlite3
        class ClosingConnection(sqlite3.Connection):
            def __exit__(self, *exc):
                try:
                    return super().__exit__(*exc)
                finally:
                    self.close()
        """)
    importlib.import_module("crewai_rpc_probe_factory")
    report = adapter.install(extra_modules=["crewai_rpc_probe_factory"])
    assert report["patched"] == {"crewai_rpc_probe_factory": ["sqlite3"]}
    assert len(report["warnings"]) == 1
    assert "crewai_rpc_probe_factory.ClosingConnection" in report["warnings"][0]


def test_the_hook_answers_only_for_the_targets(fake_crewai):
    adapter.install()
    hook = _hooks()[0]
    assert hook.find_spec("json", None) is None
    assert hook.find_spec("crewai.utilities.errors", None) is None
    spec = hook.find_spec("crewai.flow.persistence.sqlite", [os.path.join(fake_crewai, "crewai", "flow", "persistence")])
    assert spec is not None and spec.name == "crewai.flow.persistence.sqlite"
    assert type(spec.loader).__name__ == "_PatchingLoader"


def test_flow_persistence_factory_is_registered_when_crewai_offers_it(fake_crewai, storage_dir):
    adapter.install()
    from crewai.flow.persistence import factory
    from crewai.flow.persistence.base import FlowPersistence
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence as Stock

    made = factory.default_flow_persistence()
    assert isinstance(made, adapter.SQLiteFlowPersistence) and isinstance(made, FlowPersistence)
    assert not isinstance(made, Stock)
    assert made.db_path == str(storage_dir / "flow_states.db")
    made.save_state("f", "m", {"id": "f"})
    assert Stock(made.db_path).load_state("f") == {"id": "f"}  # same file, same schema

    assert adapter.uninstall()["flow_persistence_factory"] == "unregistered"
    assert factory._factory is None
    assert type(factory.default_flow_persistence()) is Stock


def test_flow_persistence_factory_after_import_and_opt_out(fake_crewai, storage_dir):
    from crewai.flow.persistence import factory

    assert adapter.install(flow_persistence_factory=False)["flow_persistence_factory"] == "disabled"
    assert factory._factory is None
    assert adapter.install()["flow_persistence_factory"] == "registered"
    assert isinstance(factory.default_flow_persistence(), adapter.SQLiteFlowPersistence)
    assert adapter.install(flow_persistence_factory=False)["flow_persistence_factory"] == "disabled"
    assert factory._factory is None


def test_an_applications_own_factory_is_kept(fake_crewai, storage_dir):
    from crewai.flow.persistence import factory

    def mine():
        return "mine"

    factory.set_flow_persistence_factory(mine)
    report = adapter.install()
    assert report["flow_persistence_factory"] == "kept the application's own factory"
    assert factory.default_flow_persistence() == "mine"
    adapter.uninstall()
    assert factory._factory is mine
