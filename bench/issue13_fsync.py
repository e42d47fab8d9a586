#!/usr/bin/env python3
"""Issue 13 part 2, fsync off the event loop (src/engine/flusher.ts): before and after, one run.

    .venv/bin/python bench/issue13_fsync.py --old /tmp/old/dist/sqlite-rpc              # fsync as is
    .venv/bin/python bench/issue13_fsync.py --old /tmp/old/dist/sqlite-rpc --fsync-delay-us 1000
    .venv/bin/python bench/issue13_fsync.py --count-syncs                               # where the fsyncs run

Three sides, each in a fresh Python process per round, in an order reversed every round
(A B C, C B A, ...), so that machine drift hits all alike; figures are medians over rounds,
ratios are taken inside each round:
- stdlib: 16 threads, one sqlite3 connection per thread kept open, WAL, synchronous FULL,
  timeout 5 s, each doing INSERT + commit() in a loop (bench/peers w3's stdlib-tuned);
- old, new: the same code through sqlite_rpc.connect() (one private server per process,
  SQLITE_RPC_BINARY = that binary, --synchronous full: the default), as w3's rpc-connect.
Meanwhile a 17th thread reads points (SELECT by key from a 10k-row table, on its own
connection kept open) paced at 500 reads/s: its p50 and p99.

--fsync-delay-us N makes every fsync/fdatasync N us slower under strace, on both sides: the
stdlib side's Python process runs under it, and for the sqlite-rpc sides the server binary
(SQLITE_RPC_BINARY = a wrapper script). The rpc sides' Python client does no fsync, and
tracing that 17-thread process costs it most of its throughput here (273 commits/s with no
delay injected, against 1,690 with the server alone traced), so it is not traced. --count-syncs runs
the new binary once under strace and counts the server's fsyncs by thread: its main thread
(SQLite's own: checkpoints, the WAL header after one) against the others (the flusher's
fdatasyncs on libuv's thread pool).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THREADS = 16
POINT_ROWS = 10_000
READ_HZ = 500
INSERT_CREATE = "CREATE TABLE w(id INTEGER PRIMARY KEY, thread INTEGER, n INTEGER, payload TEXT)"
INSERT_SQL = "INSERT INTO w(thread, n, payload) VALUES (?, ?, ?)"
PAYLOAD = "x" * 100
POINT_SQL = "SELECT id, name, value FROM t WHERE id = ?"
now = time.perf_counter


def make_file(path: str) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(INSERT_CREATE)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, "name-%d" % i, i * 1.5) for i in range(1, POINT_ROWS + 1)))
    db.commit()
    db.close()


def pct(xs: list, p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


# ---- one side, in a child process ---------------------------------------------------------------


def child(side: str, path: str, secs: float) -> dict:
    if side == "stdlib":
        def connect():
            c = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
            c.execute("PRAGMA synchronous=FULL")
            return c
    else:
        import sqlite_rpc

        def connect():
            c = sqlite_rpc.connect(path, timeout=5.0, check_same_thread=False)
            c.execute("SELECT 1").fetchone()
            return c
    conns = [connect() for _ in range(THREADS + 1)]
    start = threading.Barrier(THREADS + 2)
    ops = [0] * THREADS
    errors: dict = {}
    lat: list = []
    box: dict = {}

    def writer(t: int) -> None:
        c = conns[t]
        start.wait()
        end = box["end"]
        n = 0
        while now() < end:
            try:
                c.execute(INSERT_SQL, (t, n, PAYLOAD))
                c.commit()
                n += 1
            except Exception as e:  # noqa: BLE001
                errors[str(e)[:60]] = errors.get(str(e)[:60], 0) + 1
                try:
                    c.rollback()
                except Exception:  # noqa: BLE001
                    pass
        ops[t] = n

    def reader() -> None:
        c = conns[THREADS]
        rnd = random.Random(7)
        start.wait()
        end = box["end"]
        nxt = now()
        while True:
            t = now()
            if t >= end:
                break
            if t < nxt:
                time.sleep(nxt - t)
            t0 = now()
            c.execute(POINT_SQL, (rnd.randint(1, POINT_ROWS),)).fetchone()
            lat.append(now() - t0)
            nxt = max(nxt + 1.0 / READ_HZ, now())

    ths = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)] + [threading.Thread(target=reader)]
    for th in ths:
        th.start()
    box["end"] = now() + secs
    t0 = now()
    start.wait()
    for th in ths:
        th.join()
    elapsed = now() - t0
    out = {"side": side, "ops_s": sum(ops) / elapsed, "commits": sum(ops), "errors": errors,
           "read_n": len(lat), "read_p50_us": pct(lat, 0.5) * 1e6, "read_p99_us": pct(lat, 0.99) * 1e6}
    if side != "stdlib":
        import sqlite_rpc

        db = sqlite_rpc.stats()["databases"][0]
        out["server"] = {k: db.get(k) for k in ("group_commits", "group_units", "group_max_units", "flushes", "flush_acks",
                                                 "flush_max_acks", "checkpoints")}
        info = sqlite_rpc.server_info()
        out["server_pid"] = (info.get("server") or {}).get("pid") if isinstance(info, dict) else None
    for c in conns:
        c.close()
    return out


# ---- the driver ---------------------------------------------------------------------------------


def run_side(side: str, binary: str | None, secs: float, delay_us: int, tmp: str, trace: str | None = None) -> dict:
    path = os.path.join(tmp, "%s-%d.db" % (side, int(time.time() * 1e6)))
    make_file(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
    env["SQLITE_RPC_SHARED"] = "0"
    env.pop("SQLITE_RPC_ARGS", None)
    slow = ["strace", "-f", "-qq", "-o", "/dev/null", "--seccomp-bpf", "-e", "trace=fsync,fdatasync",
            "-e", "inject=fsync,fdatasync:delay_exit=%d" % delay_us]
    if trace is not None:
        slow = ["strace", "-f", "-qq", "-o", trace, "--seccomp-bpf", "-e", "trace=fsync,fdatasync"]
    wrapped = trace is not None or delay_us > 0
    if binary and wrapped:
        wrapper = os.path.join(tmp, "server-%s.sh" % side)
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (" ".join(slow), binary))
        os.chmod(wrapper, 0o755)
        binary = wrapper
    if binary:
        env["SQLITE_RPC_BINARY"] = binary
    cmd = [sys.executable, os.path.abspath(__file__), "--child", side, "--path", path, "--secs", str(secs)]
    if wrapped and side == "stdlib":
        cmd = slow + cmd
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit("side %s failed:\n%s" % (side, res.stderr[-3000:]))
    r = json.loads(res.stdout.strip().splitlines()[-1])
    db = sqlite3.connect(path)
    r["rows_in_file"] = db.execute("SELECT count(*) FROM w").fetchone()[0]
    db.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return r


def count_syncs(binary: str, secs: float, tmp: str) -> dict:
    trace = os.path.join(tmp, "syncs.strace")
    r = run_side("new", binary, secs, 0, tmp, trace=trace)
    pid = r.get("server_pid")
    main = other = 0
    with open(trace) as f:
        for line in f:
            if "fsync(" not in line and "fdatasync(" not in line:
                continue
            if "resumed>" in line:
                continue
            tid = int(line.split()[0])
            if tid == pid:
                main += 1
            else:
                other += 1
    return {"secs": secs, "commits": r["commits"], "ops_s": r["ops_s"], "server": r["server"], "server_pid": pid,
            "main_thread_syncs": main, "other_thread_syncs": other,
            "main_per_1000_commits": round(1000 * main / max(1, r["commits"]), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", help="the binary before (e.g. built from a git worktree of the parent commit)")
    ap.add_argument("--new", default=os.path.join(ROOT, "dist", "sqlite-rpc"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--fsync-delay-us", type=int, default=0)
    ap.add_argument("--count-syncs", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--path")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.secs)))
        return
    tmp = tempfile.mkdtemp(prefix="issue13-fsync-")
    if args.count_syncs:
        print(json.dumps(count_syncs(args.new, args.secs, tmp), indent=1))
        return
    sides = [("stdlib", None)] + ([("old", args.old)] if args.old else []) + [("new", args.new)]
    got: dict = {s: [] for s, _ in sides}
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side, binary in order:
            x = run_side(side, binary, args.secs, args.fsync_delay_us, tmp)
            got[side].append(x)
            print("round %d %-6s %7.0f commits/s, %d errors, read p50 %6.0f us p99 %7.0f us%s" % (
                r + 1, side, x["ops_s"], sum(x["errors"].values()), x["read_p50_us"], x["read_p99_us"],
                ("  server %s" % x["server"]) if "server" in x else ""), file=sys.stderr, flush=True)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    summary = {"threads": THREADS, "secs": args.secs, "rounds": args.rounds, "fsync_delay_us": args.fsync_delay_us, "sides": {}}
    for side, _ in sides:
        xs = got[side]
        summary["sides"][side] = {
            "commits_s": round(med([x["ops_s"] for x in xs])), "min": round(min(x["ops_s"] for x in xs)),
            "max": round(max(x["ops_s"] for x in xs)), "errors": sum(sum(x["errors"].values()) for x in xs),
            "read_p50_us": round(med([x["read_p50_us"] for x in xs])), "read_p99_us": round(med([x["read_p99_us"] for x in xs])),
            "lost": sum(1 for x in xs if x["rows_in_file"] < x["commits"]),
        }
        if side != "stdlib":
            # new: replies per fdatasync of the flusher; old: replies per COMMIT (each fsynced in it)
            summary["sides"][side]["commits_per_fsync"] = round(med([
                x["server"]["flush_acks"] / x["server"]["flushes"] if x["server"].get("flushes")
                else x["server"]["group_units"] / max(1, x["server"]["group_commits"]) for x in xs]), 1)
            summary["sides"][side]["ratio_to_stdlib"] = round(med([x["ops_s"] / s["ops_s"] for x, s in zip(xs, got["stdlib"])]), 2)
    if args.old:
        summary["new_over_old"] = round(med([n["ops_s"] / o["ops_s"] for n, o in zip(got["new"], got["old"])]), 2)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
