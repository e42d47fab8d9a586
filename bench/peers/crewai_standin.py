"""crewAI 1.15.x's SQLite storage, statement for statement (long-term memory from 1.9.3, the
last version that has it), with this module's `sqlite3` global as the only seam.

bench/peers/issue12.py loads this file twice: one copy keeps the stdlib, the other is handed
to sqlite_rpc.crewai.install(extra_modules=[...]), which swaps its `sqlite3` global exactly as
it does for CrewAI's own modules. So both sides run the same code; only the module differs.
Read from crewAIInc/crewAI (kickoff_task_outputs_storage.py, flow/persistence/sqlite.py,
ltm_sqlite_storage.py) and /work/shared/reference/CREWAI.md (checkpoints). Left out: CrewAI's
file lock around kickoff writes (crewai_core.lock_store: CrewAI's cost, not the database's).
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timezone

# The checkpoint table stores JSONB through jsonb(?) and reads json(data): SQLite 3.45+. The
# harness turns this off for the stdlib copy (Python's SQLite here is 3.40), which then runs
# the same statements on the JSON text.
JSONB = True


class KickoffTaskOutputsSQLiteStorage:
    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            cursor = conn.cursor()
            cursor.execute("""
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
            """)
            columns = {row[1] for row in cursor.execute("PRAGMA table_info(latest_kickoff_task_outputs)")}
            if "task_key" not in columns:
                cursor.execute("ALTER TABLE latest_kickoff_task_outputs ADD COLUMN task_key TEXT")
            conn.commit()

    def add(self, task, output: dict, task_index: int, was_replayed: bool = False, inputs: dict | None = None) -> None:
        inputs = inputs or {}
        with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
            conn.execute("BEGIN TRANSACTION")
            cursor = conn.cursor()
            cursor.execute("""
            INSERT OR REPLACE INTO latest_kickoff_task_outputs
            (task_id, task_key, expected_output, output, task_index, inputs, was_replayed)
            VALUES (?, ?, ?, ?, ?, ?, ?)
        """, (str(task.id), task.key, task.expected_output, json.dumps(output), task_index, json.dumps(inputs),
              was_replayed))
            conn.commit()

    def load(self) -> list:
        with closing(sqlite3.connect(self.db_path, timeout=30)) as conn, conn:
            cursor = conn.cursor()
            cursor.execute("""
            SELECT task_id, task_key, expected_output, output, task_index, inputs, was_replayed, timestamp
            FROM latest_kickoff_task_outputs
            ORDER BY task_index
            """)
            rows = cursor.fetchall()
            return [{"task_id": r[0], "task_key": r[1], "expected_output": r[2],
                     "output": json.loads(r[3]) if r[3] is not None else None, "task_index": r[4],
                     "inputs": json.loads(r[5]) if r[5] is not None else None, "was_replayed": r[6],
                     "timestamp": r[7]} for r in rows]


class SQLiteFlowPersistence:
    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        with sqlite3.connect(self.db_path) as conn:  # CrewAI never closes these: dropped at return
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("""
            CREATE TABLE IF NOT EXISTS flow_states (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                flow_uuid TEXT NOT NULL,
                method_name TEXT NOT NULL,
                timestamp DATETIME NOT NULL,
                state_json TEXT NOT NULL
            )
            """)
            conn.execute("CREATE INDEX IF NOT EXISTS idx_flow_states_uuid ON flow_states(flow_uuid)")
            conn.execute("""
            CREATE TABLE IF NOT EXISTS pending_feedback (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                flow_uuid TEXT NOT NULL UNIQUE,
                context_json TEXT NOT NULL,
                state_json TEXT NOT NULL,
                created_at DATETIME NOT NULL
            )
            """)
            conn.execute("CREATE INDEX IF NOT EXISTS idx_pending_feedback_uuid ON pending_feedback(flow_uuid)")

    def save_state(self, flow_uuid: str, method_name: str, state_data: dict) -> None:
        with sqlite3.connect(self.db_path) as conn:
            conn.execute("""
            INSERT INTO flow_states (
                flow_uuid,
                method_name,
                timestamp,
                state_json
            ) VALUES (?, ?, ?, ?)
            """, (flow_uuid, method_name, datetime.now(timezone.utc).isoformat(), json.dumps(state_data)))

    def load_state(self, flow_uuid: str) -> dict | None:
        with sqlite3.connect(self.db_path) as conn:
            cursor = conn.execute("""
            SELECT state_json
            FROM flow_states
            WHERE flow_uuid = ?
            ORDER BY id DESC
            LIMIT 1
            """, (flow_uuid,))
            row = cursor.fetchone()
        if row:
            result = json.loads(row[0])
            return result if isinstance(result, dict) else None
        return None


_CHECKPOINTS_CREATE = """
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    parent_id TEXT,
    branch TEXT NOT NULL DEFAULT 'main',
    data JSONB NOT NULL
)
"""


class SqliteProvider:
    def checkpoint(self, data: str, location: str, checkpoint_id: str, ts: str, *, parent_id=None,
                   branch: str = "main") -> str:
        # the id comes from the harness (CrewAI: timestamp + uuid4), so both sides write the same rows
        value = "jsonb(?)" if JSONB else "?"
        with closing(sqlite3.connect(location)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_CHECKPOINTS_CREATE)
            conn.execute("INSERT INTO checkpoints (id, created_at, parent_id, branch, data) VALUES (?, ?, ?, ?, %s)"
                         % value, (checkpoint_id, ts, parent_id, branch, data))
            conn.commit()
        return f"{location}#{checkpoint_id}"

    def from_checkpoint(self, location: str) -> str:
        db_path, checkpoint_id = location.rsplit("#", 1)
        with closing(sqlite3.connect(db_path)) as conn:
            row = conn.execute("SELECT %s FROM checkpoints WHERE id = ?" % ("json(data)" if JSONB else "data"),
                               (checkpoint_id,)).fetchone()
        if row is None:
            raise ValueError(f"Checkpoint not found: {checkpoint_id}")
        return row[0]


class LTMSQLiteStorage:
    """crewai.memory.storage.ltm_sqlite_storage (1.9.3): no PRAGMA, so a rollback-journal file."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        with sqlite3.connect(self.db_path) as conn:
            cursor = conn.cursor()
            cursor.execute("""
                CREATE TABLE IF NOT EXISTS long_term_memories (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    task_description TEXT,
                    metadata TEXT,
                    datetime TEXT,
                    score REAL
                )
            """)
            conn.commit()

    def save(self, task_description: str, metadata: dict, datetime: str, score: float) -> None:
        with sqlite3.connect(self.db_path) as conn:
            cursor = conn.cursor()
            cursor.execute("""
                INSERT INTO long_term_memories (task_description, metadata, datetime, score)
                VALUES (?, ?, ?, ?)
            """, (task_description, json.dumps(metadata), datetime, score))
            conn.commit()

    def load(self, task_description: str, latest_n: int) -> list | None:
        with sqlite3.connect(self.db_path) as conn:
            cursor = conn.cursor()
            cursor.execute(f"""
                SELECT metadata, datetime, score
                FROM long_term_memories
                WHERE task_description = ?
                ORDER BY datetime DESC, score ASC
                LIMIT {latest_n}
            """, (task_description,))
            rows = cursor.fetchall()
            if rows:
                return [{"metadata": json.loads(r[0]), "datetime": r[1], "score": r[2]} for r in rows]
        return None
