"""Stand-in for crewai.flow.persistence.sqlite (1.15.x), tests only.

A pydantic model (SQLiteFlowPersistence(db_path=None, /, **kwargs)) that opens
`with sqlite3.connect(self.db_path, timeout=30) as conn:` per operation and never closes it,
runs PRAGMA journal_mode=WAL on init, stores json.dumps(state) with a UTC ISO timestamp.
"""
from datetime import datetime, timezone
import json
from pathlib import Path
import sqlite3
from typing import Any, Dict, Optional

from pydantic import BaseModel, Field, model_validator

from crewai.flow.persistence.base import FlowPersistence
from crewai.utilities.paths import db_storage_path


class SQLiteFlowPersistence(FlowPersistence):
    persistence_type: str = Field(default="SQLiteFlowPersistence")
    db_path: str = Field(default_factory=lambda: str(Path(db_storage_path()) / "flow_states.db"))

    def __init__(self, db_path: Optional[str] = None, /, **kwargs: Any) -> None:
        if db_path is not None:
            kwargs["db_path"] = db_path
        super().__init__(**kwargs)

    @model_validator(mode="after")
    def _setup(self) -> "SQLiteFlowPersistence":
        self.init_db()
        return self

    def init_db(self) -> None:
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS flow_states (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    flow_uuid TEXT NOT NULL,
                    method_name TEXT NOT NULL,
                    timestamp DATETIME NOT NULL,
                    state_json TEXT NOT NULL
                )
                """
            )
            conn.execute("CREATE INDEX IF NOT EXISTS idx_flow_states_uuid ON flow_states(flow_uuid)")
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS pending_feedback (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    flow_uuid TEXT NOT NULL UNIQUE,
                    context_json TEXT NOT NULL,
                    state_json TEXT NOT NULL,
                    created_at DATETIME NOT NULL
                )
                """
            )
            conn.execute("CREATE INDEX IF NOT EXISTS idx_pending_feedback_uuid ON pending_feedback(flow_uuid)")

    @staticmethod
    def _to_state_dict(state_data: Any) -> Dict[str, Any]:
        if isinstance(state_data, BaseModel):
            return state_data.model_dump()
        if isinstance(state_data, dict):
            return state_data
        raise ValueError(f"state_data must be either a Pydantic BaseModel or dict, got {type(state_data)}")

    def _save_state_sql(self, conn: sqlite3.Connection, flow_uuid: str, method_name: str, state_dict: Dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO flow_states (flow_uuid, method_name, timestamp, state_json) VALUES (?, ?, ?, ?)",
            (flow_uuid, method_name, datetime.now(timezone.utc).isoformat(), json.dumps(state_dict)),
        )

    def save_state(self, flow_uuid: str, method_name: str, state_data: Any) -> None:
        state_dict = self._to_state_dict(state_data)
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            self._save_state_sql(conn, flow_uuid, method_name, state_dict)

    def load_state(self, flow_uuid: str) -> Optional[Dict[str, Any]]:
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            cursor = conn.execute(
                "SELECT state_json FROM flow_states WHERE flow_uuid = ? ORDER BY id DESC LIMIT 1", (flow_uuid,)
            )
            row = cursor.fetchone()
        if row:
            result = json.loads(row[0])
            return result if isinstance(result, dict) else None
        return None

    def save_pending_feedback(self, flow_uuid: str, context: Any, state_data: Any) -> None:
        state_dict = self._to_state_dict(state_data)
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            self._save_state_sql(conn, flow_uuid, context.method_name, state_dict)
            conn.execute(
                "INSERT OR REPLACE INTO pending_feedback (flow_uuid, context_json, state_json, created_at) VALUES (?, ?, ?, ?)",
                (flow_uuid, json.dumps(context.to_dict()), json.dumps(state_dict), datetime.now(timezone.utc).isoformat()),
            )

    def load_pending_feedback(self, flow_uuid: str) -> Any:
        from crewai.flow.async_feedback.types import PendingFeedbackContext

        with sqlite3.connect(self.db_path, timeout=30) as conn:
            row = conn.execute("SELECT state_json, context_json FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,)).fetchone()
        if row:
            return json.loads(row[0]), PendingFeedbackContext.from_dict(json.loads(row[1]))
        return None

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            conn.execute("DELETE FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,))
