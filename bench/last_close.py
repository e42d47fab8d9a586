"""What the checkpoint at a file's last close costs (issue 11, item 3) on connect-per-operation
work, CrewAI's pattern: each operation is connect, one statement (+ commit), close.

Three sides in one run, rounds interleaved, medians per operation:
  stdlib     sqlite3 (rollback journal, as CrewAI's files are)
  plain      sqlite_rpc.connect(): the last close folds the WAL into the file and waits
  keep_open  sqlite_rpc.connect(keep_open=True): no fold at close (the CrewAI integration)

    .venv/bin/python bench/last_close.py            # ROUNDS=7 N=300 by default
"""
import os
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python-client"))
import sqlite_rpc  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "7"))
N = int(os.environ.get("N", "300"))
VALUE = "x" * 2000  # a small CrewAI output
tmp = tempfile.mkdtemp()

SIDES = {
    "stdlib": lambda p: sqlite3.connect(p, timeout=30),
    "plain": lambda p: sqlite_rpc.connect(p, timeout=30),
    "keep_open": lambda p: sqlite_rpc.connect(p, timeout=30, keep_open=True),
}


def setup(name: str) -> str:
    p = os.path.join(tmp, name + ".db")
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    c.executemany("INSERT INTO t (v) VALUES (?)", [(VALUE,)] * 100)
    c.commit()
    c.close()
    return p


def write_op(connect, p):
    c = connect(p)
    c.execute("INSERT INTO t (v) VALUES (?)", (VALUE,))
    c.commit()
    c.close()


def read_op(connect, p):
    c = connect(p)
    c.execute("SELECT v FROM t WHERE id = ?", (50,)).fetchall()
    c.close()


assert sqlite_rpc.backend() == "sqlite-rpc", "the server binary is needed (npm run build)"
paths = {name: setup(name) for name in SIDES}
res = {(name, op): [] for name in SIDES for op in ("write", "read")}
for rnd in range(ROUNDS):
    order = list(SIDES) if rnd % 2 == 0 else list(reversed(SIDES))
    for name in order:
        for op, fn in (("write", write_op), ("read", read_op)):
            t0 = time.perf_counter()
            for _ in range(N):
                fn(SIDES[name], paths[name])
            res[(name, op)].append((time.perf_counter() - t0) / N * 1e6)

print("connect + statement + close, median us per operation over %d rounds of %d" % (ROUNDS, N))
for op in ("write", "read"):
    base = statistics.median(res[("stdlib", op)])
    for name in SIDES:
        m = statistics.median(res[(name, op)])
        print("  %-5s %-10s %8.0f us   %.2fx the stdlib's speed" % (op, name, m, base / m))
