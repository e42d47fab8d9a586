"""KickoffTaskOutputsSQLiteStorage: CrewAI's kickoff task outputs on sqlite-rpc."""
from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Dict, List, Optional

from .compat import _connect, _database_operation_error, _json_encoder, db_storage_path, log

# -- kickoff task outputs ------------------------------------------------------------------

_KICKOFF_CREATE = """
CREATE TABLE IF NOT EXISTS latest_kickoff_task_outputs (
    task_id TEXT PRIMARY KEY,
    task_key TEXT,
    expected_output TEXT,
    output JSON,
    task_index INTEGER,
    inputs JSON,
    was_replayed BOOLEAN,
    timestamp DATETIME DEFAULT CURRENT_TIMESTAMP
)
"""
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KickoffTaskOutputsSQLiteStorage:
    """crewai.memory.storage.kickoff_task_outputs_storage.KickoffTaskOutputsSQLiteStorage on
    sqlite-rpc: latest_kickoff_task_outputs.db, same table, same results, failures raised as
    CrewAI's DatabaseOperationError."""

    def __init__(self, db_path: Optional[str] = None) -> None:
        if db_path is None:
            db_path = str(Path(db_storage_path()) / "latest_kickoff_task_outputs.db")
        self.db_path = db_path
        self._initialize_db()

    def _initialize_db(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("PRAGMA journal_mode=WAL")
                # The column check and the ALTER in one write transaction: two processes
                # initialising an old file at once cannot both add task_key.
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.cursor()
                cursor.execute(_KICKOFF_CREATE)
                columns = {row[1] for row in cursor.execute("PRAGMA table_info(latest_kickoff_task_outputs)")}
                if "task_key" not in columns:
                    cursor.execute("ALTER TABLE latest_kickoff_task_outputs ADD COLUMN task_key TEXT")
                conn.commit()
        except sqlite3.Error as e:
            raise _database_operation_error("INIT_ERROR", e) from e

    def add(self, task: Any, output: Dict[str, Any], task_index: int, was_replayed: bool = False,
            inputs: Optional[Dict[str, Any]] = None) -> None:
        inputs = inputs or {}
        enc = _json_encoder()
        row = (str(task.id), getattr(task, "key", None), task.expected_output, json.dumps(output, cls=enc),
               task_index, json.dumps(inputs, cls=enc), was_replayed)
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                conn.execute(
                    "INSERT OR REPLACE INTO latest_kickoff_task_outputs "
                    "(task_id, task_key, expected_output, output, task_index, inputs, was_replayed) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                conn.commit()
        except sqlite3.Error as e:
            raise _database_operation_error("SAVE_ERROR", e) from e

    def update(self, task_index: int, **kwargs: Any) -> None:
        enc = _json_encoder()
        fields = []
        values: List[Any] = []
        for key, value in kwargs.items():
            if not _COLUMN.match(key):  # CrewAI pastes the names into the SQL; we refuse odd ones
                raise _database_operation_error("UPDATE_ERROR", sqlite3.OperationalError("no such column: %s" % key))
            fields.append(f"{key} = ?")
            values.append(json.dumps(value, cls=enc) if isinstance(value, (dict, list)) else value)
        values.append(task_index)
        query = f"UPDATE latest_kickoff_task_outputs SET {', '.join(fields)} WHERE task_index = ?"  # noqa: S608
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                cursor = conn.execute(query, tuple(values))
                conn.commit()
                if cursor.rowcount == 0:
                    log.warning("No row found with task_index %s. No update performed.", task_index)
        except sqlite3.Error as e:
            raise _database_operation_error("UPDATE_ERROR", e) from e

    def load(self) -> List[Dict[str, Any]]:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                rows = conn.execute(
                    "SELECT task_id, task_key, expected_output, output, task_index, inputs, was_replayed, timestamp "
                    "FROM latest_kickoff_task_outputs ORDER BY task_index").fetchall()
        except sqlite3.Error as e:
            raise _database_operation_error("LOAD_ERROR", e) from e
        return [
            {
                "task_id": r[0],
                "task_key": r[1],
                "expected_output": r[2],
                "output": json.loads(r[3]) if r[3] is not None else None,
                "task_index": r[4],
                "inputs": json.loads(r[5]) if r[5] is not None else None,
                "was_replayed": r[6],
                "timestamp": r[7],
            }
            for r in rows
        ]

    def delete_all(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                conn.execute("DELETE FROM latest_kickoff_task_outputs")
                conn.commit()
        except sqlite3.Error as e:
            raise _database_operation_error("DELETE_ERROR", e) from e
