"""Stand-in for crewai_cli.checkpoint_cli's SQLite helpers (list / info / prune), tests only.

Detects the file by its `SQLite format 3` header, opens it with closing(sqlite3.connect()),
reads json(data) (SQLite 3.45+ for JSONB blobs).
"""
from contextlib import closing
import json
import os
import sqlite3
from typing import Any, Dict, List, Optional

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SELECT_ALL = "SELECT id, created_at, json(data) FROM checkpoints ORDER BY rowid DESC"
_SELECT_ONE = "SELECT id, created_at, json(data) FROM checkpoints WHERE id = ?"
_DELETE_KEEP_N = "DELETE FROM checkpoints WHERE rowid NOT IN (SELECT rowid FROM checkpoints ORDER BY rowid DESC LIMIT ?)"


def _is_sqlite(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(16) == _SQLITE_MAGIC


def list_sqlite(db_path: str) -> List[Dict[str, Any]]:
    out = []
    with closing(sqlite3.connect(db_path)) as conn:
        for checkpoint_id, created_at, raw in conn.execute(_SELECT_ALL):
            out.append({"name": checkpoint_id, "ts": created_at, "data": json.loads(raw)})
    return out


def info_sqlite(db_path: str, checkpoint_id: str) -> Optional[Dict[str, Any]]:
    with closing(sqlite3.connect(db_path)) as conn:
        row = conn.execute(_SELECT_ONE, (checkpoint_id,)).fetchone()
    if not row:
        return None
    return {"name": row[0], "ts": row[1], "data": json.loads(row[2])}


def prune_sqlite(db_path: str, keep: int) -> int:
    with closing(sqlite3.connect(db_path)) as conn:
        cur = conn.execute(_DELETE_KEEP_N, (keep,))
        conn.commit()
        return cur.rowcount
