#!/usr/bin/env python3
"""Issue 15, "Load": 16 writers at full speed, with Litestream replication off and on.

    .venv/bin/python bench/replication_load.py [--seconds 10] [--rounds 3] [--writers 16]

Each round runs the same work twice on fresh files, replication off then on (order
alternating between rounds), through one private server: 16 threads, each with its own
connection, inserting single rows (autocommit, a 200-byte blob) as fast as they can.
Reported: rows/s (median over rounds) and the cost of replication; the -wal file's
largest size seen (polled every 100 ms) and its size at the end; checkpoints (the
server's own when replication is off, Litestream's when it is on, and the seconds it spent
in them); the writer's group commits and fsyncs (ms_per_fsync: the run's time over its
fsyncs, the flusher being never idle at full load); COMMITs the writer paced; the replica's
lag at the end and whether a restore has every row. Figures go to stdout and to
bench/results/replication_load.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from typing import Any, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python-client", "tests"))
sys.path.insert(0, os.path.join(ROOT, "python-client"))
os.environ["SQLITE_RPC_BINARY"] = os.path.join(ROOT, "dist", "sqlite-rpc")

import _replication as RP  # noqa: E402
import sqlite_rpc  # noqa: E402
from sqlite_rpc import process  # noqa: E402


def run(folder: str, replicate: bool, seconds: float, writers: int) -> Dict[str, Any]:
    os.makedirs(folder)
    db = os.path.join(folder, "load.db")
    url = "file://%s/replica" % folder
    kw = {"replicate": url} if replicate else {}
    with RP.private_server("--replicate-sync-ms 1000"):
        setup = sqlite_rpc.connect(db, isolation_level=None, **kw)
        setup.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, w INTEGER, pad BLOB)")
        srv = process.get_server()
        if replicate:
            RP.wait_until(lambda: RP.replica_stats(srv, db)["lag_ms"] == 0, "the first sync")
        stop = threading.Event()
        counts = [0] * writers
        wal_max = [0]

        def write(k: int) -> None:
            c = sqlite_rpc.connect(db, isolation_level=None, check_same_thread=False, **kw)
            n = 0
            while not stop.is_set():
                c.execute("INSERT INTO r(w, pad) VALUES (?, randomblob(200))", (k,))
                n += 1
            counts[k] = n
            c.close()

        def watch() -> None:
            while not stop.is_set():
                try:
                    wal_max[0] = max(wal_max[0], os.path.getsize(db + "-wal"))
                except OSError:
                    pass
                time.sleep(0.1)

        threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)] + [threading.Thread(target=watch)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        st = [d for d in srv.call("stats", {})["databases"] if d["path"] == os.path.realpath(db)][0]
        out: Dict[str, Any] = {"rows": sum(counts), "rows_per_s": round(sum(counts) / elapsed), "wal_max_bytes": wal_max[0],
                               "server_checkpoints": st["checkpoints"],
                               # Where the time goes: the writer's group commits and the flusher's
                               # fsyncs (a slower fsync means fewer of them in the same time).
                               "group_commits": st["group_commits"], "fsyncs": st["flushes"],
                               "ms_per_fsync": round(1000 * elapsed / max(1, st["flushes"]), 3)}
        if replicate:
            t_end = time.monotonic()
            RP.wait_until(lambda: RP.replica_stats(srv, db)["lag_ms"] == 0, "the replica to catch up", timeout=300)
            rep = RP.replica_stats(srv, db)
            out.update({"catch_up_after_writes_s": round(time.monotonic() - t_end, 2), "litestream_checkpoints": rep["checkpoints"],
                        "litestream_checkpoint_seconds": rep["checkpoint_seconds"], "wal_paced": rep["wal_paced"],
                        "new_generations": rep["new_generations"], "errors": rep["errors"]})
        out["wal_end_bytes"] = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
        setup.close()
    if replicate:
        target = os.path.join(folder, "restored", "load.db")
        os.makedirs(os.path.dirname(target))
        r = RP.restore(url, target)
        ids, ok = RP.rows_of(target) if r.returncode == 0 else ([], r.stderr)
        out["restored_rows"] = len(ids)
        out["restore_complete"] = len(ids) == out["rows"] and ok == "ok"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "replication_load.json"))
    a = ap.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="sqlite-rpc-replload-") as tmp:
        for i in range(a.rounds):
            order = [False, True] if i % 2 == 0 else [True, False]
            rnd = {}
            for rep in order:
                rnd["on" if rep else "off"] = run(os.path.join(tmp, "%d-%s" % (i, rep)), rep, a.seconds, a.writers)
                print("round %d replication %s: %s" % (i, "on" if rep else "off", json.dumps(rnd["on" if rep else "off"])), flush=True)
            rounds.append(rnd)
    off = statistics.median(r["off"]["rows_per_s"] for r in rounds)
    on = statistics.median(r["on"]["rows_per_s"] for r in rounds)
    summary = {
        "writers": a.writers, "seconds": a.seconds, "rounds": a.rounds,
        "rows_per_s_off": off, "rows_per_s_on": on, "cost": "%.1f%%" % (100 * (1 - on / off)),
        "wal_max_bytes_off": max(r["off"]["wal_max_bytes"] for r in rounds),
        "wal_max_bytes_on": max(r["on"]["wal_max_bytes"] for r in rounds),
        "ms_per_fsync_off": statistics.median(r["off"]["ms_per_fsync"] for r in rounds),
        "ms_per_fsync_on": statistics.median(r["on"]["ms_per_fsync"] for r in rounds),
        "litestream_checkpoint_seconds_per_round": statistics.median(sum(r["on"]["litestream_checkpoint_seconds"].values()) for r in rounds),
        "restores_complete": all(r["on"]["restore_complete"] for r in rounds),
    }
    record = {"command": "bench/replication_load.py " + " ".join(sys.argv[1:]), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "cpus": os.cpu_count(), "summary": summary, "rounds": rounds}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
