"""Stand-in for crewai_cli.task_outputs.load_task_outputs (read-only, sqlite3.Row), tests only."""
import json
import logging
from pathlib import Path
import sqlite3
from typing import Any, Dict, List, Optional

logger = logging.getLogger(__name__)


def load_task_outputs(db_path: Optional[str] = None) -> List[Dict[str, Any]]:
    if db_path is None:
        from crewai.utilities.paths import db_storage_path

        db_path = str(Path(db_storage_path()) / "latest_kickoff_task_outputs.db")
    if not Path(db_path).exists():
        return []
    try:
        with sqlite3.connect(db_path) as conn:
            conn.row_factory = sqlite3.Row
            cursor = conn.cursor()
            cursor.execute(
                """
                SELECT task_id, expected_output, output, task_index, inputs, was_replayed, timestamp
                FROM latest_kickoff_task_outputs
                ORDER BY task_index
                """
            )
            rows = cursor.fetchall()
    except sqlite3.Error as e:
        logger.error("Failed to load task outputs: %s", e)
        return []
    return [
        {
            "task_id": row["task_id"],
            "expected_output": row["expected_output"],
            "output": json.loads(row["output"]),
            "task_index": row["task_index"],
            "inputs": json.loads(row["inputs"]),
            "was_replayed": row["was_replayed"],
            "timestamp": row["timestamp"],
        }
        for row in rows
    ]
