"""Stand-in for crewai.memory.storage.ltm_sqlite_storage (CrewAI <= 1.9.3), tests only.

sqlite3 for the sync methods (with sqlite3.connect(path) as conn: cursor, execute, commit),
aiosqlite for the async ones (async with aiosqlite.connect(path), await execute / commit /
fetchall, except aiosqlite.Error). Never raises: errors are printed when verbose.
"""
import json
from pathlib import Path
import sqlite3
from typing import Any, Dict, List, Optional

import aiosqlite

from crewai.utilities import Printer
from crewai.utilities.paths import db_storage_path


class LTMSQLiteStorage:
    def __init__(self, db_path: Optional[str] = None, verbose: bool = True) -> None:
        if db_path is None:
            db_path = str(Path(db_storage_path()) / "long_term_memory_storage.db")
        self.db_path = db_path
        self._verbose = verbose
        self._printer = Printer()
        Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self._initialize_db()

    def _initialize_db(self) -> None:
        try:
            with sqlite3.connect(self.db_path) as conn:
                cursor = conn.cursor()
                cursor.execute(
                    """
                    CREATE TABLE IF NOT EXISTS long_term_memories (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        task_description TEXT,
                        metadata TEXT,
                        datetime TEXT,
                        score REAL
                    )
                    """
                )
                conn.commit()
        except sqlite3.Error as e:
            if self._verbose:
                self._printer.print(content=f"MEMORY ERROR: An error occurred during database initialization: {e}", color="red")

    def save(self, task_description: str, metadata: Dict[str, Any], datetime: str, score: float) -> None:
        try:
            with sqlite3.connect(self.db_path) as conn:
                cursor = conn.cursor()
                cursor.execute(
                    "INSERT INTO long_term_memories (task_description, metadata, datetime, score) VALUES (?, ?, ?, ?)",
                    (task_description, json.dumps(metadata), datetime, score),
                )
                conn.commit()
        except sqlite3.Error as e:
            if self._verbose:
                self._printer.print(content=f"MEMORY ERROR: An error occurred while saving to LTM: {e}", color="red")

    def load(self, task_description: str, latest_n: int) -> Optional[List[Dict[str, Any]]]:
        try:
            with sqlite3.connect(self.db_path) as conn:
                cursor = conn.cursor()
                cursor.execute(
                    f"""
                    SELECT metadata, datetime, score
                    FROM long_term_memories
                    WHERE task_description = ?
                    ORDER BY datetime DESC, score ASC
                    LIMIT {latest_n}
                    """,
                    (task_description,),
                )
                rows = cursor.fetchall()
                if rows:
                    return [{"metadata": json.loads(r[0]), "datetime": r[1], "score": r[2]} for r in rows]
        except sqlite3.Error as e:
            if self._verbose:
                self._printer.print(content=f"MEMORY ERROR: An error occurred while querying LTM: {e}", color="red")
        return None

    def reset(self) -> None:
        try:
            with sqlite3.connect(self.db_path) as conn:
                cursor = conn.cursor()
                cursor.execute("DELETE FROM long_term_memories")
                conn.commit()
        except sqlite3.Error as e:
            if self._verbose:
                self._printer.print(content=f"MEMORY ERROR: An error occurred while deleting all rows in LTM: {e}", color="red")

    async def asave(self, task_description: str, metadata: Dict[str, Any], datetime: str, score: float) -> None:
        try:
            async with aiosqlite.connect(self.db_path) as conn:
                await conn.execute(
                    "INSERT INTO long_term_memories (task_description, metadata, datetime, score) VALUES (?, ?, ?, ?)",
                    (task_description, json.dumps(metadata), datetime, score),
                )
                await conn.commit()
        except aiosqlite.Error as e:
            if self._verbose:
                self._printer.print(content=f"MEMORY ERROR: An error occurred while saving to LTM: {e}", color="red")

    async def aload(self, task_description: str, latest_n: int) -> Optional[List[Dict[str, Any]]]:
        try:
            async with aiosqlite.connect(self.db_path) as conn:
                cursor = await conn.execute(
                    f"""
                    SELECT metadata, datetime, score
                    FROM long_term_memories
                    WHERE task_description = ?
                    ORDER BY datetime DESC, score ASC
                    LIMIT {latest_n}
                    """,
                    (task_description,),
                )
                rows = await cursor.fetchall()
                if rows:
                    return [{"metadata": json.loads(r[0]), "datetime": r[1], "score": r[2]} for r in rows]
        except aiosqlite.Error as e:
            if self._verbose:
                self._printer.print(content=f"MEMORY ERROR: An error occurred while querying LTM: {e}", color="red")
        return None

    async def areset(self) -> None:
        try:
            async with aiosqlite.connect(self.db_path) as conn:
                await conn.execute("DELETE FROM long_term_memories")
                await conn.commit()
        except aiosqlite.Error as e:
            if self._verbose:
                self._printer.print(content=f"MEMORY ERROR: An error occurred while deleting all rows in LTM: {e}", color="red")
