"""CrewAI on sqlite-rpc: one call moves CrewAI's SQLite storage onto the server.

    import sqlite_rpc.crewai
    sqlite_rpc.crewai.install()      # before or after `import crewai`

install() replaces the `sqlite3` global (and the `aiosqlite` global) of each CrewAI module
that uses them with `sqlite_rpc` (and `sqlite_rpc.aio`). It never touches
sys.modules['sqlite3']: ChromaDB and the rest of the process keep the real module. CrewAI
modules imported later are patched as they are imported (a sys.meta_path hook watching
only those module names). uninstall() puts everything back. Both are idempotent.

The drop-in classes have CrewAI's signatures, file names and schemas, and are backed by
sqlite_rpc; the files stay ordinary SQLite files that CrewAI's CLI can open:

    KickoffTaskOutputsSQLiteStorage(db_path=None)
    SQLiteFlowPersistence(db_path=None, /, **kwargs)   a FlowPersistence when CrewAI is importable
    SqliteProvider()                                  a subclass of CrewAI's SqliteProvider when importable
    LTMSQLiteStorage(db_path=None, verbose=True)       CrewAI <= 1.9.x long-term memory

Where they differ from CrewAI, it is on purpose: every connection they open is closed
(no Windows file locks), writes wait for each other instead of failing with "database is
locked", checkpoints use jsonb() through the server's SQLite whatever the Python's own
SQLite version, and flow state that JSON cannot encode raises FlowStateNotSerializableError
(a TypeError) naming the field, instead of json's bare TypeError.

The package: hook (install, uninstall and the import hook), compat (CrewAI's helpers and
errors, or faithful copies), one module per storage (kickoff, flow, provider, ltm).
"""
from __future__ import annotations

from typing import Any, List

# (also the private names that tools and tests reach here: _connect, _state, SQLITE3...)
from .compat import (BUILT, FlowStateNotSerializableError, PendingFeedbackContext, _built, _connect, _forget_built_classes,
                     _LocalDatabaseOperationError, _state, db_storage_path)
from .flow import _FlowPersistenceMethods
from .hook import AIOSQLITE, FLOW_FACTORY_MODULE, SQLITE3, TARGETS, install, is_installed, uninstall
from .kickoff import KickoffTaskOutputsSQLiteStorage
from .ltm import LTMSQLiteStorage
from .provider import _ProviderMethods

__all__ = [
    "install", "uninstall", "is_installed", "TARGETS", "FLOW_FACTORY_MODULE", "db_storage_path",
    "KickoffTaskOutputsSQLiteStorage", "SQLiteFlowPersistence", "SqliteProvider", "LTMSQLiteStorage",
    "DatabaseOperationError", "FlowStateNotSerializableError", "PendingFeedbackContext",
]

# Their home is sqlite_rpc.crewai (repr, pickling), whichever module defines them.
for _cls in (KickoffTaskOutputsSQLiteStorage, LTMSQLiteStorage, FlowStateNotSerializableError, PendingFeedbackContext):
    _cls.__module__ = "sqlite_rpc.crewai"


def __getattr__(name: str) -> Any:
    if name in BUILT:
        return _built(name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(BUILT))
