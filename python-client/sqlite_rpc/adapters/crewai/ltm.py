"""LTMSQLiteStorage: CrewAI's long-term memory storage (CrewAI <= 1.9.x) on sqlite-rpc."""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

import sqlite_rpc.aio as _aio
from .compat import _connect, _printer_print, _state, db_storage_path

# -- long-term memory (CrewAI <= 1.9.x) ----------------------------------------------------

_LTM_CREATE = """
CREATE TABLE IF NOT EXISTS long_term_memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_description TEXT,
    metadata TEXT,
    datetime TEXT,
    score REAL
)
"""
_LTM_INSERT = "INSERT INTO long_term_memories (task_description, metadata, datetime, score) VALUES (?, ?, ?, ?)"
_LTM_SELECT = ("SELECT metadata, datetime, score FROM long_term_memories WHERE task_description = ? "
               "ORDER BY datetime DESC, score ASC LIMIT ?")


def _ltm_rows(rows: List[Any]) -> Optional[List[Dict[str, Any]]]:
    if not rows:
        return None
    return [{"metadata": json.loads(r[0]), "datetime": r[1], "score": r[2]} for r in rows]


class LTMSQLiteStorage:
    """crewai.memory.storage.ltm_sqlite_storage.LTMSQLiteStorage (CrewAI <= 1.9.x) on sqlite-rpc:
    long_term_memory_storage.db, same table; never raises, prints errors when verbose."""

    def __init__(self, db_path: Optional[str] = None, verbose: bool = True) -> None:
        if db_path is None:
            db_path = str(Path(db_storage_path()) / "long_term_memory_storage.db")
        self.db_path = db_path
        self._verbose = verbose
        Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self._initialize_db()

    def _error(self, what: str, e: Exception) -> None:
        if self._verbose:
            _printer_print(f"MEMORY ERROR: An error occurred {what}: {e}")

    def _initialize_db(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute(_LTM_CREATE)
                conn.commit()
        except sqlite3.Error as e:
            self._error("during database initialization", e)

    def save(self, task_description: str, metadata: Dict[str, Any], datetime: str, score: float) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute(_LTM_INSERT, (task_description, json.dumps(metadata), datetime, score))
                conn.commit()
        except sqlite3.Error as e:
            self._error("while saving to LTM", e)

    def load(self, task_description: str, latest_n: int) -> Optional[List[Dict[str, Any]]]:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                rows = conn.execute(_LTM_SELECT, (task_description, latest_n)).fetchall()
            return _ltm_rows(rows)
        except sqlite3.Error as e:
            self._error("while querying LTM", e)
        return None

    def reset(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("DELETE FROM long_term_memories")
                conn.commit()
        except sqlite3.Error as e:
            self._error("while deleting all rows in LTM", e)

    async def asave(self, task_description: str, metadata: Dict[str, Any], datetime: str, score: float) -> None:
        try:
            async with _aio.connect(self.db_path, timeout=30.0, keep_open=True, shared=_state.shared, replicate=_state.replicate) as conn:
                await conn.execute(_LTM_INSERT, (task_description, json.dumps(metadata), datetime, score))
                await conn.commit()
        except sqlite3.Error as e:
            self._error("while saving to LTM", e)

    async def aload(self, task_description: str, latest_n: int) -> Optional[List[Dict[str, Any]]]:
        try:
            async with _aio.connect(self.db_path, timeout=30.0, keep_open=True, shared=_state.shared, replicate=_state.replicate) as conn:
                async with conn.execute(_LTM_SELECT, (task_description, latest_n)) as cursor:
                    rows = await cursor.fetchall()
            return _ltm_rows(rows)
        except sqlite3.Error as e:
            self._error("while querying LTM", e)
        return None

    async def areset(self) -> None:
        try:
            async with _aio.connect(self.db_path, timeout=30.0, keep_open=True, shared=_state.shared, replicate=_state.replicate) as conn:
                await conn.execute("DELETE FROM long_term_memories")
                await conn.commit()
        except sqlite3.Error as e:
            self._error("while deleting all rows in LTM", e)
