#!/usr/bin/env python3
"""Issue 15: where replication's throughput cost is, and where it is not.

    .venv/bin/python bench/replication_cost.py [--seconds 4]

The load of bench/replication_load.py (16 threads inserting single 200-byte rows through one
private server, fresh files), measured in consecutive windows of one run so that each
window differs from the one before in one thing:

  off                 no replication (SQLite's own checkpoints every 1000 pages)
  off_reader_pinned   the same file with a stdlib connection holding a read transaction,
                      as Litestream holds one on a replicated file
  off_again           that reader gone
  off_no_autocheckpoint  no replication, SQLite's auto-checkpoint off on the writer (as for
                      a replicated file): the WAL grows, nothing else differs
  on_running          replication on, Litestream working
  on_stopped          Litestream stopped (SIGSTOP): no copying, no checkpoints, its read
                      lock still held (half as long: the WAL only grows meanwhile)
  on_running_again    Litestream resumed
  pregrown_*          the same three with the -wal file grown to about 118 MB first (no
                      window appends to it)

Each window: rows/s; the flusher's fdatasyncs, their mean time (fsync_ms), the share of the
window one was in flight (flusher_busy) and the rows each covered; the -wal file's size; and
CPU microseconds per row of the server, Litestream and this (client) process. Prints JSON
lines.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sqlite3
import struct
import sys
import tempfile
import threading
import time
from typing import Any, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python-client", "tests"))
sys.path.insert(0, os.path.join(ROOT, "python-client"))
os.environ["SQLITE_RPC_BINARY"] = os.path.join(ROOT, "dist", "sqlite-rpc")

import _replication as RP  # noqa: E402
import sqlite_rpc  # noqa: E402
from sqlite_rpc import process  # noqa: E402


def cpu_seconds() -> Dict[str, float]:
    """CPU seconds of every sqlite-rpc server and Litestream process now."""
    res: Dict[str, float] = {}
    for p in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(p).read().rsplit(")", 1)[1].split()
            exe = open(p[:-4] + "cmdline").read().split("\0")[0].rsplit("/", 1)[-1]
        except (OSError, IndexError):
            continue
        if exe in ("sqlite-rpc", "litestream"):
            res[exe] = res.get(exe, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return res


def run(replicate: bool, pregrow: bool, seconds: float, autocheckpoint: bool = True) -> Dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="sqlite-rpc-replcost-")
    db = os.path.join(folder, "load.db")
    url = "file://%s/replica" % folder
    kw = {"replicate": url} if replicate else {}
    out: Dict[str, Any] = {}
    with RP.private_server("--replicate-sync-ms 1000"):
        c = sqlite_rpc.connect(db, isolation_level=None, **kw)
        c.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, w INTEGER, pad BLOB)")
        srv = process.get_server()
        if replicate:
            RP.wait_until(lambda: RP.replica_stats(srv, db)["lag_ms"] == 0, "the first sync")
        if pregrow:
            c.execute("CREATE TABLE big(b)")
            c.executemany("INSERT INTO big VALUES (zeroblob(4000))", [()] * 30000)
            c.execute("DELETE FROM big")

            def frames() -> int:
                with open(db + "-shm", "rb") as f:
                    return int(struct.unpack("=I", f.read(20)[16:20])[0])
            RP.wait_until(lambda: frames() < 2000, "Litestream to restart the WAL")
            out["pregrown_wal_mb"] = round(os.path.getsize(db + "-wal") / 2**20, 1)
        stop = threading.Event()
        counts = [0] * 16

        def write(k: int) -> None:
            w = sqlite_rpc.connect(db, isolation_level=None, check_same_thread=False, **kw)
            if not autocheckpoint:
                w.execute("PRAGMA wal_autocheckpoint = 0")  # applied on the writer for this session's writes
            while not stop.is_set():
                w.execute("INSERT INTO r(w, pad) VALUES (?, randomblob(200))", (k,))
                counts[k] += 1
            w.close()

        def stats() -> Dict[str, Any]:
            return [d for d in srv.call("stats", {})["databases"] if d["path"] == os.path.realpath(db)][0]

        def window(name: str, seconds: float = seconds) -> None:
            s0 = stats()
            c0, t0, n0 = cpu_seconds(), os.times(), sum(counts)
            time.sleep(seconds)
            c1, t1, n, s1 = cpu_seconds(), os.times(), sum(counts) - n0, stats()
            f = s1["flushes"] - s0["flushes"]
            busy = s1["flush_seconds"] - s0["flush_seconds"]
            us = {k: round(1e6 * (c1.get(k, 0) - c0.get(k, 0)) / max(1, n), 1) for k in c1}
            us["client"] = round(1e6 * (t1.user - t0.user + t1.system - t0.system) / max(1, n), 1)
            out[("pregrown_" if pregrow else "") + name + ("" if autocheckpoint else "_no_autocheckpoint")] = {
                "rows_per_s": round(n / seconds), "fsyncs": f, "fsync_ms": round(1000 * busy / max(1, f), 3),
                "flusher_busy": round(busy / seconds, 2), "rows_per_fsync": round(n / max(1, f), 1),
                "group_commits": s1["group_commits"] - s0["group_commits"], "busy_retries": s1["busy_retries"] - s0["busy_retries"],
                # COMMITs the writer paced (the WAL past 20,000 frames): a window with any is not comparable
                "wal_paced": (s1["replication"] or {}).get("wal_paced", 0) - (s0["replication"] or {}).get("wal_paced", 0),
                "wal_mb": round(os.path.getsize(db + "-wal") / 2**20, 1), "cpu_us_per_row": us}

        threads = [threading.Thread(target=write, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        time.sleep(1)
        if replicate:
            window("on_running")
            pid = RP.replica_stats(srv, db)["pid"]
            os.kill(pid, signal.SIGSTOP)
            try:
                # Shorter: with Litestream stopped the WAL only grows, and past 20,000 frames
                # the writer paces itself (wal_paced says if a window reached that).
                window("on_stopped", seconds / 2)
            finally:
                os.kill(pid, signal.SIGCONT)
            window("on_running_again")
        else:
            window("off")
        if not replicate and autocheckpoint:
            pin = sqlite3.connect(db, isolation_level=None)
            pin.execute("BEGIN")
            pin.execute("SELECT count(*) FROM r").fetchone()
            window("off_reader_pinned")
            pin.execute("COMMIT")
            pin.close()
            window("off_again")
        stop.set()
        for t in threads:
            t.join()
        c.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4)
    a = ap.parse_args()
    for rep, pregrow, ckpt in [(False, False, True), (False, False, False), (True, False, True), (True, True, True)]:
        for name, r in run(rep, pregrow, a.seconds, ckpt).items():
            print(json.dumps({"window": name, **r}) if isinstance(r, dict) else json.dumps({name: r}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
