"""python -m sqlite_rpc.demo: the binary serving a database to this Python process.

Creates demo.db (in a temporary folder unless a path is given), writes from 8 threads at
once through the drop-in sqlite3 API, reads back, and prints what the server did.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

import sqlite_rpc
from sqlite_rpc import Database


def main() -> int:
    folder = tempfile.mkdtemp(prefix="sqlite-rpc-demo-")
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(folder, "demo.db")
    print("backend:", sqlite_rpc.backend())
    with sqlite_rpc.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, thread INTEGER, n INTEGER, note TEXT)")
    print("server:", sqlite_rpc.server_info()["server"], "SQLite", sqlite_rpc.sqlite_version)

    def writer(t: int) -> None:
        # CrewAI's pattern: connect, execute, commit, close for every operation.
        for n in range(100):
            with sqlite_rpc.connect(path) as c:
                c.execute("INSERT INTO events(thread, n, note) VALUES (?, ?, ?)", (t, n, "hello from thread %d" % t))
            c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dt = time.perf_counter() - t0
    db = Database(path)
    total = db.execute_query("SELECT count(*) AS n FROM events")[0]["n"]
    per_thread = db.execute_query("SELECT thread, count(*) AS n FROM events GROUP BY thread ORDER BY thread")
    print("8 threads x 100 durable inserts (connect/commit/close each): %d rows in %.2f s, %.0f inserts/s, no 'database is locked'" % (total, dt, 800 / dt))
    print("rows per thread:", {r["thread"]: r["n"] for r in per_thread})
    st = sqlite_rpc.stats()["databases"][0]
    print("commits: %d COMMITs for %d writes, %d fsyncs (largest fsync group %d); statement cache hits %d" % (
        st["group_commits"], st["group_units"], st.get("flushes", 0), st.get("flush_max_acks", 0),
        st["statement_cache"]["writer"]["hits"]))
    db.close()
    print("database file:", path)
    return 0 if total == 800 else 1


if __name__ == "__main__":
    sys.exit(main())
