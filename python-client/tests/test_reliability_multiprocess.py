"""Issue 7, item 6: four processes, each with its own server, write one file at once.

Each process runs two threads mixing CrewAI's connect/insert/commit/close, autocommit
writes through the Database API, three-row transactions and executemany, with the default
timeouts (5 s for connect(), as sqlite3). No 'database is locked' (nor any other error) may
reach Python, and every row a process was told is written must be in the file, counted
per process by the stdlib. `npm run reliability` runs the same for a fixed duration.
"""
from __future__ import annotations

from _reliability import concurrent_writers


def test_four_processes_with_their_own_servers_write_one_file(tmp_path):
    r = concurrent_writers(str(tmp_path), processes=4, threads=2, ops=80)
    assert r["locked"] == 0 and r["errors"] == 0
    assert all(n > 0 for n in r["per_process"]), r
