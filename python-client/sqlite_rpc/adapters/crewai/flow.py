"""SQLiteFlowPersistence: CrewAI's flow persistence on sqlite-rpc."""
from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .compat import PendingFeedbackContext, _connect, _dumps_explained, _now_iso, _optional, _state_dict, db_storage_path

# -- flow persistence ----------------------------------------------------------------------

_FLOW_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS flow_states (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow_uuid TEXT NOT NULL,
        method_name TEXT NOT NULL,
        timestamp DATETIME NOT NULL,
        state_json TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idx_flow_states_uuid ON flow_states(flow_uuid)",
    """CREATE TABLE IF NOT EXISTS pending_feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow_uuid TEXT NOT NULL UNIQUE,
        context_json TEXT NOT NULL,
        state_json TEXT NOT NULL,
        created_at DATETIME NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idx_pending_feedback_uuid ON pending_feedback(flow_uuid)",
)
_INSERT_STATE = "INSERT INTO flow_states (flow_uuid, method_name, timestamp, state_json) VALUES (?, ?, ?, ?)"


def _default_flow_db() -> str:
    return str(Path(db_storage_path()) / "flow_states.db")


def _context_parts(context: Any) -> Tuple[str, Dict[str, Any]]:
    if hasattr(context, "to_dict"):
        data = context.to_dict()
        return getattr(context, "method_name", data.get("method_name")), data
    data = dict(context)
    return data["method_name"], data


class _FlowPersistenceMethods:
    """SQLiteFlowPersistence's behaviour; the class itself is built on CrewAI's base when it
    is importable (see _build_flow_persistence)."""

    db_path: str

    def init_db(self) -> None:
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for sql in _FLOW_SCHEMA:
                conn.execute(sql)

    def save_state(self, flow_uuid: str, method_name: str, state_data: Any) -> None:
        state_json = _dumps_explained(_state_dict(state_data), "state", "flow state")
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute(_INSERT_STATE, (flow_uuid, method_name, _now_iso(), state_json))

    def load_state(self, flow_uuid: str) -> Optional[Dict[str, Any]]:
        with closing(_connect(self.db_path)) as conn, conn:
            row = conn.execute(
                "SELECT state_json FROM flow_states WHERE flow_uuid = ? ORDER BY id DESC LIMIT 1", (flow_uuid,)
            ).fetchone()
        if row:
            result = json.loads(row[0])
            return result if isinstance(result, dict) else None
        return None

    def save_pending_feedback(self, flow_uuid: str, context: Any, state_data: Any) -> None:
        state_json = _dumps_explained(_state_dict(state_data), "state", "flow state")
        method_name, context_dict = _context_parts(context)
        context_json = _dumps_explained(context_dict, "context", "feedback context")
        # The state row and the pending marker commit together.
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute(_INSERT_STATE, (flow_uuid, method_name, _now_iso(), state_json))
            conn.execute(
                "INSERT OR REPLACE INTO pending_feedback (flow_uuid, context_json, state_json, created_at) "
                "VALUES (?, ?, ?, ?)", (flow_uuid, context_json, state_json, _now_iso()))

    def load_pending_feedback(self, flow_uuid: str) -> Optional[Tuple[Dict[str, Any], Any]]:
        with closing(_connect(self.db_path)) as conn, conn:
            row = conn.execute(
                "SELECT state_json, context_json FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,)
            ).fetchone()
        if not row:
            return None
        ctx_cls = _optional("crewai.flow.async_feedback.types", "PendingFeedbackContext") or PendingFeedbackContext
        return json.loads(row[0]), ctx_cls.from_dict(json.loads(row[1]))

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute("DELETE FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,))


def _is_pydantic_class(cls: Any) -> bool:
    base = _optional("pydantic", "BaseModel")
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _build_flow_persistence() -> type:
    base = _optional("crewai.flow.persistence.base", "FlowPersistence")
    doc = ("crewai.flow.persistence.sqlite.SQLiteFlowPersistence on sqlite-rpc: flow_states.db, the same "
           "tables; connections closed; non-JSON state raises FlowStateNotSerializableError.")
    if base is not None and _is_pydantic_class(base):
        from pydantic import Field, model_validator

        class SQLiteFlowPersistence(_FlowPersistenceMethods, base):  # type: ignore[valid-type,misc]
            __doc__ = doc
            __qualname__ = "SQLiteFlowPersistence"  # pickles as sqlite_rpc.crewai.SQLiteFlowPersistence
            persistence_type: str = Field(default="SQLiteFlowPersistence")
            db_path: str = Field(default_factory=_default_flow_db)

            def __init__(self, db_path: Optional[str] = None, /, **kwargs: Any) -> None:
                if db_path is not None:
                    kwargs["db_path"] = db_path
                super().__init__(**kwargs)

            @model_validator(mode="after")
            def _sqlite_rpc_init_db(self) -> Any:
                if not self.db_path:
                    raise ValueError("Database path must be provided")
                self.init_db()
                return self

        return SQLiteFlowPersistence

    bases: Tuple[type, ...] = (_FlowPersistenceMethods,) if base is None else (_FlowPersistenceMethods, base)

    def __init__(self: Any, db_path: Optional[str] = None, /, **kwargs: Any) -> None:
        if db_path is None:
            db_path = kwargs.pop("db_path", None)
        if kwargs:
            raise TypeError("SQLiteFlowPersistence() got unexpected keyword arguments: %s" % ", ".join(sorted(kwargs)))
        self.db_path = db_path or _default_flow_db()
        self.init_db()

    return type("SQLiteFlowPersistence", bases, {
        "__doc__": doc, "__module__": "sqlite_rpc.crewai", "__init__": __init__, "persistence_type": "SQLiteFlowPersistence",
    })
