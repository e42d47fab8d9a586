"""SqliteProvider: CrewAI's checkpoint storage on sqlite-rpc."""
from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Tuple

import sqlite_rpc.aio as _aio
from sqlite_rpc._taxonomy import REASON_NO_SUCH_FUNCTION
from .compat import _connect, _optional, _state

# -- checkpoints ---------------------------------------------------------------------------

_CHECKPOINTS_CREATE = """
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    parent_id TEXT,
    branch TEXT NOT NULL DEFAULT 'main',
    data JSONB NOT NULL
)
"""
_CHECKPOINT_INSERT = "INSERT INTO checkpoints (id, created_at, parent_id, branch, data) VALUES (?, ?, ?, ?, jsonb(?))"
# Only where no SQLite with jsonb() is at hand (the stdlib fallback on SQLite < 3.45): the
# JSON is stored as text, which json(data) reads back the same on every version.
_CHECKPOINT_INSERT_TEXT = "INSERT INTO checkpoints (id, created_at, parent_id, branch, data) VALUES (?, ?, ?, ?, json(?))"
_CHECKPOINT_SELECT = "SELECT json(data) FROM checkpoints WHERE id = ?"
_CHECKPOINT_PRUNE = """
DELETE FROM checkpoints WHERE branch = ? AND rowid NOT IN (
    SELECT rowid FROM checkpoints WHERE branch = ? ORDER BY rowid DESC LIMIT ?
)
"""


def _make_checkpoint_id() -> Tuple[str, str]:
    ts = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{ts}_{uuid.uuid4().hex[:8]}", ts


def _no_jsonb(e: BaseException) -> bool:
    """Whether the SQLite that ran the statement lacks jsonb(). The server says so in
    data.reason; the stdlib fallback's errors carry no reason (nor, before Python 3.11, a
    code), so there its version decides: jsonb() arrived in SQLite 3.45, and before that no
    statement using it can succeed."""
    if not isinstance(e, sqlite3.OperationalError):
        return False
    if getattr(e, "rpc_kind", None) is not None:
        return getattr(e, "rpc_reason", None) == REASON_NO_SUCH_FUNCTION and str(getattr(e, "rpc_name", "")).lower() == "jsonb"
    return sqlite3.sqlite_version_info < (3, 45, 0)


class _ProviderMethods:
    """SqliteProvider's behaviour (sync over sqlite_rpc, async over sqlite_rpc.aio)."""

    def checkpoint(self, data: str, location: str, *, parent_id: Optional[str] = None, branch: str = "main") -> str:
        checkpoint_id, ts = _make_checkpoint_id()
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        row = (checkpoint_id, ts, parent_id, branch, data)
        with closing(_connect(location)) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_CHECKPOINTS_CREATE)
            try:
                conn.execute(_CHECKPOINT_INSERT, row)
            except sqlite3.OperationalError as e:
                if not _no_jsonb(e):
                    raise
                conn.execute(_CHECKPOINT_INSERT_TEXT, row)
            conn.commit()
        return f"{location}#{checkpoint_id}"

    async def acheckpoint(self, data: str, location: str, *, parent_id: Optional[str] = None,
                          branch: str = "main") -> str:
        checkpoint_id, ts = _make_checkpoint_id()
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        row = (checkpoint_id, ts, parent_id, branch, data)
        async with _aio.connect(location, timeout=30.0, keep_open=True, shared=_state.shared, replicate=_state.replicate) as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(_CHECKPOINTS_CREATE)
            try:
                await db.execute(_CHECKPOINT_INSERT, row)
            except sqlite3.OperationalError as e:
                if not _no_jsonb(e):
                    raise
                await db.execute(_CHECKPOINT_INSERT_TEXT, row)
            await db.commit()
        return f"{location}#{checkpoint_id}"

    def prune(self, location: str, max_keep: int, *, branch: str = "main") -> int:
        with closing(_connect(location)) as conn, conn:
            cur = conn.execute(_CHECKPOINT_PRUNE, (branch, branch, max_keep))
            removed: int = cur.rowcount
            conn.commit()
        return max(removed, 0)

    def extract_id(self, location: str) -> str:
        return location.rsplit("#", 1)[1]

    def from_checkpoint(self, location: str) -> str:
        db_path, checkpoint_id = location.rsplit("#", 1)
        with closing(_connect(db_path)) as conn, conn:
            row = conn.execute(_CHECKPOINT_SELECT, (checkpoint_id,)).fetchone()
        if row is None:
            raise ValueError(f"Checkpoint not found: {checkpoint_id}")
        result: str = row[0]
        return result

    async def afrom_checkpoint(self, location: str) -> str:
        db_path, checkpoint_id = location.rsplit("#", 1)
        async with _aio.connect(db_path, timeout=30.0, keep_open=True, shared=_state.shared, replicate=_state.replicate) as db:
            async with db.execute(_CHECKPOINT_SELECT, (checkpoint_id,)) as cursor:
                row = await cursor.fetchone()
        if row is None:
            raise ValueError(f"Checkpoint not found: {checkpoint_id}")
        result: str = row[0]
        return result


def _build_sqlite_provider() -> type:
    doc = ("crewai.state.provider.sqlite_provider.SqliteProvider on sqlite-rpc (a subclass of it when CrewAI "
           "is importable, so CheckpointConfig accepts it): jsonb checkpoints whatever Python's SQLite version, "
           "connections closed, prune() returns how many checkpoints it removed.")
    base = _optional("crewai.state.provider.sqlite_provider", "SqliteProvider")
    if base is not None:
        cls: type = type(base)("SqliteProvider", (_ProviderMethods, base), {"__doc__": doc, "__module__": "sqlite_rpc.crewai",
                                                                            "__qualname__": "SqliteProvider"})
        return cls

    def __init__(self: Any, provider_type: str = "sqlite") -> None:
        if provider_type != "sqlite":
            raise ValueError("provider_type must be 'sqlite', got %r" % (provider_type,))

    return type("SqliteProvider", (_ProviderMethods,), {
        "__doc__": doc, "__module__": "sqlite_rpc.crewai", "__init__": __init__, "provider_type": "sqlite",
    })
