"""Stand-in for crewai.state.provider.sqlite_provider (1.15.x), tests only.

sqlite3 for sync, aiosqlite for async; a JSONB column written with jsonb(?) and read with
json(data), which needs SQLite 3.45+ (so it fails on the stdlib's 3.40 here).
"""
from datetime import datetime, timezone
from pathlib import Path
import sqlite3
from typing import Literal, Optional, Tuple
import uuid

import aiosqlite

from crewai.state.provider.core import BaseProvider

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    parent_id TEXT,
    branch TEXT NOT NULL DEFAULT 'main',
    data JSONB NOT NULL
)
"""
_INSERT = "INSERT INTO checkpoints (id, created_at, parent_id, branch, data) VALUES (?, ?, ?, ?, jsonb(?))"
_SELECT = "SELECT json(data) FROM checkpoints WHERE id = ?"
_PRUNE = """
DELETE FROM checkpoints WHERE branch = ? AND rowid NOT IN (
    SELECT rowid FROM checkpoints WHERE branch = ? ORDER BY rowid DESC LIMIT ?
)
"""


def _make_id() -> Tuple[str, str]:
    ts = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{ts}_{uuid.uuid4().hex[:8]}", ts


class SqliteProvider(BaseProvider):
    provider_type: Literal["sqlite"] = "sqlite"

    def checkpoint(self, data: str, location: str, *, parent_id: Optional[str] = None, branch: str = "main") -> str:
        checkpoint_id, ts = _make_id()
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(location) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_CREATE_TABLE)
            conn.execute(_INSERT, (checkpoint_id, ts, parent_id, branch, data))
            conn.commit()
        return f"{location}#{checkpoint_id}"

    async def acheckpoint(self, data: str, location: str, *, parent_id: Optional[str] = None, branch: str = "main") -> str:
        checkpoint_id, ts = _make_id()
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(location) as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(_CREATE_TABLE)
            await db.execute(_INSERT, (checkpoint_id, ts, parent_id, branch, data))
            await db.commit()
        return f"{location}#{checkpoint_id}"

    def prune(self, location: str, max_keep: int, *, branch: str = "main") -> int:
        with sqlite3.connect(location) as conn:
            cursor = conn.execute(_PRUNE, (branch, branch, max_keep))
            conn.commit()
            return cursor.rowcount

    def extract_id(self, location: str) -> str:
        return location.rsplit("#", 1)[1]

    def from_checkpoint(self, location: str) -> str:
        db_path, checkpoint_id = location.rsplit("#", 1)
        with sqlite3.connect(db_path) as conn:
            row = conn.execute(_SELECT, (checkpoint_id,)).fetchone()
            if row is None:
                raise ValueError(f"Checkpoint not found: {checkpoint_id}")
            return row[0]

    async def afrom_checkpoint(self, location: str) -> str:
        db_path, checkpoint_id = location.rsplit("#", 1)
        async with aiosqlite.connect(db_path) as db:
            cursor = await db.execute(_SELECT, (checkpoint_id,))
            row = await cursor.fetchone()
            if row is None:
                raise ValueError(f"Checkpoint not found: {checkpoint_id}")
            return row[0]
