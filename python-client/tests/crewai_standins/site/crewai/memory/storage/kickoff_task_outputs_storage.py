"""Stand-in for crewai.memory.storage.kickoff_task_outputs_storage (1.15.x), tests only.

Uses sqlite3 the way CREWAI.md describes: connect(path, timeout=30) per operation inside
contextlib.closing and the connection's own context manager, PRAGMA journal_mode=WAL on
init, the task_key migration through PRAGMA table_info + ALTER TABLE, an explicit
BEGIN TRANSACTION then commit(), INSERT OR REPLACE, sqlite3.Error turned into
DatabaseOperationError.
"""
from contextlib import closing
import json
import logging
from pathlib import Path
import sqlite3
from typing import Any, Dict, List, Optional

from crewai.utilities.crew_json_encoder import CrewJSONEncoder
from crewai.utilities.errors import DatabaseError, DatabaseOperationError
from crewai.utilities.paths import db_storage_path

logger = logging.getLogger(__name__)


class KickoffTaskOutputsSQLiteStorage:
    def __init__(self, db_path: Optional[str] = None) -> None:
        if db_path is None:
            db_path = str(Path(db_storage_path()) / "latest_kickoff_task_outputs.db")
        self.db_path = db_path
        self._initialize_db()

    def _initialize_db(self) -> None:
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
                conn.execute("PRAGMA journal_mode=WAL")
                cursor = conn.cursor()
                cursor.execute(
                    """
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
                )
                columns = {row[1] for row in cursor.execute("PRAGMA table_info(latest_kickoff_task_outputs)")}
                if "task_key" not in columns:
                    cursor.execute("ALTER TABLE latest_kickoff_task_outputs ADD COLUMN task_key TEXT")
                conn.commit()
        except sqlite3.Error as e:
            msg = DatabaseError.format_error(DatabaseError.INIT_ERROR, e)
            logger.error(msg)
            raise DatabaseOperationError(msg, e) from e

    def add(self, task: Any, output: Dict[str, Any], task_index: int, was_replayed: bool = False,
            inputs: Optional[Dict[str, Any]] = None) -> None:
        inputs = inputs or {}
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                cursor = conn.cursor()
                cursor.execute(
                    """
                    INSERT OR REPLACE INTO latest_kickoff_task_outputs
                    (task_id, task_key, expected_output, output, task_index, inputs, was_replayed)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                    (
                        str(task.id),
                        task.key,
                        task.expected_output,
                        json.dumps(output, cls=CrewJSONEncoder),
                        task_index,
                        json.dumps(inputs, cls=CrewJSONEncoder),
                        was_replayed,
                    ),
                )
                conn.commit()
        except sqlite3.Error as e:
            msg = DatabaseError.format_error(DatabaseError.SAVE_ERROR, e)
            logger.error(msg)
            raise DatabaseOperationError(msg, e) from e

    def update(self, task_index: int, **kwargs: Any) -> None:
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                cursor = conn.cursor()
                fields = []
                values = []
                for key, value in kwargs.items():
                    fields.append(f"{key} = ?")
                    values.append(json.dumps(value, cls=CrewJSONEncoder) if isinstance(value, (dict, list)) else value)
                query = f"UPDATE latest_kickoff_task_outputs SET {', '.join(fields)} WHERE task_index = ?"
                values.append(task_index)
                cursor.execute(query, tuple(values))
                conn.commit()
                if cursor.rowcount == 0:
                    logger.warning(f"No row found with task_index {task_index}. No update performed.")
        except sqlite3.Error as e:
            msg = DatabaseError.format_error(DatabaseError.UPDATE_ERROR, e)
            logger.error(msg)
            raise DatabaseOperationError(msg, e) from e

    def load(self) -> List[Dict[str, Any]]:
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
                cursor = conn.cursor()
                cursor.execute(
                    """
                    SELECT task_id, task_key, expected_output, output, task_index, inputs, was_replayed, timestamp
                    FROM latest_kickoff_task_outputs
                    ORDER BY task_index
                    """
                )
                return [
                    {
                        "task_id": row[0],
                        "task_key": row[1],
                        "expected_output": row[2],
                        "output": json.loads(row[3]) if row[3] is not None else None,
                        "task_index": row[4],
                        "inputs": json.loads(row[5]) if row[5] is not None else None,
                        "was_replayed": row[6],
                        "timestamp": row[7],
                    }
                    for row in cursor.fetchall()
                ]
        except sqlite3.Error as e:
            msg = DatabaseError.format_error(DatabaseError.LOAD_ERROR, e)
            logger.error(msg)
            raise DatabaseOperationError(msg, e) from e

    def delete_all(self) -> None:
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                cursor = conn.cursor()
                cursor.execute("DELETE FROM latest_kickoff_task_outputs")
                conn.commit()
        except sqlite3.Error as e:
            msg = DatabaseError.format_error(DatabaseError.DELETE_ERROR, e)
            logger.error(msg)
            raise DatabaseOperationError(msg, e) from e
