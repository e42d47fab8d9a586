#!/usr/bin/env python3
"""One system under test, in its own Python process, driven by bench/peers.py.

    python bench/peers/worker.py SYSTEM

Commands arrive as JSON lines on stdin: {"op": NAME, "args": {...}}; every reply is one line
"@@" + JSON on stdout ({"ok": result} or {"error": traceback}). The sqlite-rpc systems start
their server lazily, as a product user does (SQLITE_RPC_ARGS comes from the environment the
driver gives this process), so each worker has its own server and keeps it warm between rounds.

System ids (see SYSTEMS in bench/peers.py for the one-line descriptions):
  echo, framed, framed-hop                 bench/framed.py to the echo floor / to the binary
  stdlib-perop[-wal][-normal]              sqlite3, a connection per operation (CrewAI's pattern)
  stdlib-tuned[-normal]                    sqlite3, one connection per thread, WAL
  apsw                                     apsw, one connection per thread, WAL
  aiosqlite                                aiosqlite, one connection per task
  rpc-connect, rpc-perop, rpc-normal,      sqlite_rpc.connect(): one per thread / one per operation
  rpc-crewai, rpc-seed, rpc-batch, rpc-aio the CrewAI drop-ins, Database, Database.execute_batch, aio
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
import threading
import time
import traceback
from collections import Counter
from contextlib import closing
from datetime import datetime, timezone

PEERS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PEERS)
sys.path.insert(0, os.path.dirname(PEERS))  # bench/: framed.py

import common as C  # noqa: E402

SYSTEM = sys.argv[1] if len(sys.argv) > 1 else "stdlib-tuned"
now = time.perf_counter

# ---------------------------------------------------------------------------------------------
# system families


def is_rpc(s: str = SYSTEM) -> bool:
    return s.startswith("rpc-")


def sync_pragma(s: str = SYSTEM) -> str:
    return "PRAGMA synchronous=NORMAL" if s.endswith("-normal") else "PRAGMA synchronous=FULL"


def open_kept(s: str, path: str):
    """The connection kept open for a whole workload: stdlib tuned (its synchronous setting
    applied) or sqlite_rpc (its pipelined open collected before any timing starts)."""
    if s == "rpc-connect":
        import sqlite_rpc

        c = sqlite_rpc.connect(path, timeout=5.0, check_same_thread=False)
        c.execute("SELECT 1").fetchone()
    else:
        c = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        c.execute(sync_pragma())
    return c


def server_pid() -> int | None:
    if is_rpc():
        from sqlite_rpc import process

        srv = process.current()
        return getattr(srv, "pid", None) if srv is not None else None
    if SYSTEM in ("echo", "framed", "framed-hop") and STATE.get("pipe") is not None:
        return STATE["pipe"].pid
    return None


STATE: dict = {}


def framed_pipe(path: str | None):
    """echo / framed / framed-hop: one child, initialized, with session 1 open on `path`."""
    from framed import FramedPipe, MuxClient

    pipe = STATE.get("pipe")
    if pipe is None:
        argv = [C.NODE, C.ECHO] if SYSTEM == "echo" else [C.BINARY] + os.environ.get("SQLITE_RPC_ARGS", "").split()
        pipe = FramedPipe(argv, env=C.child_env(), stderr_path=os.path.join(C.TMP, "%s.%d.stderr.log" % (SYSTEM, os.getpid())))
        pipe.call("initialize", {"protocol_version": 1, "client": {"name": "bench/peers"}})
        STATE["pipe"] = pipe
        STATE["session"] = 0
    if SYSTEM == "framed-hop" and STATE.get("mux") is None:
        STATE["mux"] = MuxClient(pipe)
    STATE["session"] += 1
    sid = STATE["session"]
    if SYSTEM != "echo" and path is not None:
        # once a reader thread owns the pipe, every call goes through it
        call = STATE["mux"].call if STATE.get("mux") is not None else pipe.call
        call("open", {"session": sid, "path": path, "timeout": 5.0})
    return pipe, sid


# ---------------------------------------------------------------------------------------------
# point SELECT (workload 1): an op per system, bound to a handle made in the calling thread


def point_op(path: str):
    """(op(key), close()) for this system; persistent handles are made here, in this thread."""
    sql = C.POINT_SQL
    s = SYSTEM
    if s == "stdlib-perop":
        def op(k):
            c = sqlite3.connect(path)
            try:
                return c.execute(sql, (k,)).fetchone()
            finally:
                c.close()
        return op, lambda: None
    if s == "stdlib-tuned":
        c = sqlite3.connect(path, check_same_thread=False)
        c.execute(sync_pragma())
        return (lambda k: c.execute(sql, (k,)).fetchone()), c.close
    if s == "apsw":
        import apsw

        c = apsw.Connection(path)
        c.setbusytimeout(5000)
        c.execute(sync_pragma())
        return (lambda k: c.execute(sql, (k,)).fetchone()), c.close
    if s == "rpc-connect":
        import sqlite_rpc

        c = sqlite_rpc.connect(path, check_same_thread=False)
        c.execute("SELECT 1").fetchone()
        return (lambda k: c.execute(sql, (k,)).fetchone()), c.close
    if s == "rpc-perop":
        import sqlite_rpc

        def op(k):
            c = sqlite_rpc.connect(path)
            try:
                return c.execute(sql, (k,)).fetchone()
            finally:
                c.close()
        return op, lambda: None
    if s == "rpc-seed":
        db = STATE.get("db")
        if db is None:
            import sqlite_rpc

            db = STATE["db"] = sqlite_rpc.Database(path)
        return (lambda k: db.execute_query(sql, (k,))), lambda: None
    if s in ("echo", "framed"):
        pipe, sid = framed_pipe(path)
        call = pipe.call if STATE.get("mux") is None else STATE["mux"].call
        return (lambda k: call("execute", {"session": sid, "sql": sql, "params": [k]})), lambda: None
    if s == "framed-hop":
        pipe, sid = framed_pipe(path)
        call = STATE["mux"].call
        return (lambda k: call("execute", {"session": sid, "sql": sql, "params": [k]})), lambda: None
    raise ValueError("no point op for %s" % s)


async def point_aop(path: str):
    sql = C.POINT_SQL
    if SYSTEM == "rpc-aio":
        from sqlite_rpc import aio

        db = await aio.connect(path)
    elif SYSTEM == "aiosqlite":
        import aiosqlite

        db = await aiosqlite.connect(path)
        await db.execute(sync_pragma())
    else:
        raise ValueError("no async point op for %s" % SYSTEM)

    async def aop(k):
        async with db.execute(sql, (k,)) as cur:
            return await cur.fetchone()

    await aop(1)
    return aop, db.close


def run_seq_block(op, keys) -> dict:
    lat = []
    t0 = now()
    for k in keys:
        t = now()
        op(k)
        lat.append(now() - t)
    el = now() - t0
    return {"n": len(keys), "elapsed": el, "lat_us": [round(x * 1e6, 1) for x in lat]}


# ---------------------------------------------------------------------------------------------
# generic drivers: N threads for a fixed time, N asyncio tasks for a fixed time


def run_threads(make_op, n: int, duration: float, op_arg, start_at: float | None = None,
                pace_hz: float | None = None, warm: bool = True, sample=None) -> dict:
    """n threads, each with its own op (made in the thread, before the clock starts), calling
    op(arg) until the deadline. op_arg(thread, i) gives the argument. With pace_hz, each thread
    issues at most pace_hz ops per second on a fixed schedule, latency counted from the
    scheduled start (so a stall is charged to every op it delays)."""
    barrier = threading.Barrier(n + 1)
    lats = [[] for _ in range(n)]
    kinds = [[] for _ in range(n)]
    errors = [Counter() for _ in range(n)]
    clock = {}
    go = threading.Event()
    setup_err = []

    def body(t: int) -> None:
        try:
            op, close = make_op(t)
            if warm:
                op(op_arg(t, -1))
        except BaseException:  # noqa: BLE001
            setup_err.append(traceback.format_exc())
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        go.wait()
        start, deadline = clock["start"], clock["deadline"]
        lat, kind, err = lats[t], kinds[t], errors[t]
        i = 0
        if pace_hz:
            period = 1.0 / pace_hz
            nxt = start + random.Random(t).random() * period
        while True:
            if pace_hz:
                sleep = nxt - now()
                if sleep > 0:
                    time.sleep(sleep)
                t0 = nxt
                nxt += period
            else:
                t0 = now()
            if t0 >= deadline:
                break
            arg = op_arg(t, i)
            try:
                op(arg)
            except Exception as e:  # noqa: BLE001
                err[str(e)[:80]] += 1
            else:
                lat.append(now() - t0)
                kind.append(arg[0] if isinstance(arg, tuple) else 0)
            i += 1
        try:
            close()
        except Exception:  # noqa: BLE001
            pass

    threads = [threading.Thread(target=body, args=(t,), daemon=True) for t in range(n)]
    for th in threads:
        th.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        for th in threads:
            th.join()
        raise RuntimeError("thread setup failed:\n" + "\n".join(setup_err))
    if start_at is not None:
        while now() < start_at:
            time.sleep(0.0005)
    t_start = now()
    clock["start"], clock["deadline"] = t_start, t_start + duration
    go.set()
    sampler = sample(t_start, duration) if sample else None
    for th in threads:
        th.join()
    el = now() - t_start
    if sampler is not None:
        sampler.join()
    lat_all = [x for l in lats for x in l]
    kind_all = [x for k in kinds for x in k]
    err = Counter()
    for e in errors:
        err.update(e)
    return {"n": len(lat_all), "elapsed": el, "lat": lat_all, "kinds": kind_all, "errors": dict(err),
            "per_thread": [len(l) for l in lats]}


def run_tasks(make_aop, n: int, duration: float, op_arg, pace_hz: float | None = None, sample=None,
              warm: bool = True) -> dict:
    """n asyncio tasks on one loop, each with its own async op; as run_threads."""

    async def main():
        ops = [await make_aop(t) for t in range(n)]
        for t, (aop, _c) in enumerate(ops):
            if warm:
                await aop(op_arg(t, -1))
        lats = [[] for _ in range(n)]
        kinds = [[] for _ in range(n)]
        errors = Counter()
        t_start = now()
        deadline = t_start + duration
        sampler = sample(t_start, duration) if sample else None

        async def task(t):
            aop = ops[t][0]
            lat, kind = lats[t], kinds[t]
            i = 0
            if pace_hz:
                period = 1.0 / pace_hz
                nxt = t_start + random.Random(t).random() * period
            while True:
                if pace_hz:
                    d = nxt - now()
                    if d > 0:
                        await asyncio.sleep(d)
                    t0 = nxt
                    nxt += period
                else:
                    t0 = now()
                if t0 >= deadline:
                    break
                arg = op_arg(t, i)
                try:
                    await aop(arg)
                except Exception as e:  # noqa: BLE001
                    errors[str(e)[:80]] += 1
                else:
                    lat.append(now() - t0)
                    kind.append(arg[0] if isinstance(arg, tuple) else 0)
                i += 1

        await asyncio.gather(*(task(t) for t in range(n)))
        el = now() - t_start
        if sampler is not None:
            sampler.join()
        for _aop, close in ops:
            try:
                await close()
            except Exception:  # noqa: BLE001
                pass
        return {"n": sum(len(l) for l in lats), "elapsed": el, "lat": [x for l in lats for x in l],
                "kinds": [x for k in kinds for x in k], "errors": dict(errors), "per_thread": [len(l) for l in lats]}

    return asyncio.run(main())


def finish(res: dict, keep_lat: bool = True) -> dict:
    lat = res.pop("lat")
    kinds = res.pop("kinds", None)
    res["ops_s"] = res["n"] / res["elapsed"] if res["elapsed"] > 0 else 0.0
    res.update(C.lat_summary([x * 1e6 for x in lat]))
    if kinds is not None and any(kinds):
        for kname, kv in (("read", 0), ("write", 1)):
            sub = [x * 1e6 for x, k in zip(lat, kinds) if k == kv]
            s = C.lat_summary(sub)
            res[kname] = {"n": s["n"], "p50_us": s["p50_us"], "p99_us": s["p99_us"]}
    if keep_lat:
        res["lat_us"] = [round(x * 1e6, 1) for x in lat]
    return res


# ---------------------------------------------------------------------------------------------
# workload 1


def op_point_seq(path: str, keys: list) -> dict:
    key = ("point-seq", path)
    if key not in STATE:
        if SYSTEM in ("rpc-aio", "aiosqlite"):
            STATE[key] = ("async", None)
        else:
            op, _close = point_op(path)
            op(keys[0])
            STATE[key] = ("sync", op)
    mode, op = STATE[key]
    if mode == "sync":
        return run_seq_block(op, keys)

    async def main():
        aop, close = await point_aop(path)
        lat = []
        t0 = now()
        for k in keys:
            t = now()
            await aop(k)
            lat.append(now() - t)
        el = now() - t0
        await close()
        return {"n": len(keys), "elapsed": el, "lat_us": [round(x * 1e6, 1) for x in lat]}

    return asyncio.run(main())


def op_fine(path: str, rounds: int, block: int) -> dict:
    """Issue 3's two latency targets, measured in ONE process with fine interleaving: blocks of
    `block` sequential point SELECTs rotate between (a) bench/framed.py to the echo floor,
    (b) sqlite_rpc.connect() (the product client: the calling thread reads the pipe itself),
    (c) bench/framed.py to a server (no threads), (d) the same through framed.MuxClient (a
    reader thread hands each reply over: one thread hop per call). Each has its own child
    process; the order is reversed every block (ABCD DCBA ...). Per round: each one's p50."""
    from framed import FramedPipe, MuxClient

    import sqlite_rpc

    def pipe(argv, name):
        p = FramedPipe(argv, env=C.child_env(), stderr_path=os.path.join(C.TMP, "fine-%s.stderr.log" % name))
        p.call("initialize", {"protocol_version": 1, "client": {"name": "bench/peers fine"}})
        return p

    sql = C.POINT_SQL
    echo = pipe([C.NODE, C.ECHO], "echo")
    direct = pipe([C.BINARY], "direct")
    direct.call("open", {"session": 1, "path": path, "timeout": 5.0})
    hop_pipe = pipe([C.BINARY], "hop")
    hop_pipe.call("open", {"session": 1, "path": path, "timeout": 5.0})
    mux = MuxClient(hop_pipe)
    conn = sqlite_rpc.connect(path)
    ops = {
        "echo": lambda k: echo.call("execute", {"session": 1, "sql": sql, "params": [k]}),
        "connect": lambda k: conn.execute(sql, (k,)).fetchone(),
        "direct": lambda k: direct.call("execute", {"session": 1, "sql": sql, "params": [k]}),
        "hop": lambda k: mux.call("execute", {"session": 1, "sql": sql, "params": [k]}),
    }
    names = list(ops)
    keys = C.point_keys(block * 4, seed=11)
    for n in names:  # warm-up (JIT, statement caches, the server's inline read path)
        for k in keys[:block]:
            ops[n](k)
    out = {n: [] for n in names}
    blocks_per_round = 4
    for r in range(rounds):
        lat = {n: [] for n in names}
        for b in range(blocks_per_round):
            order = names if (r * blocks_per_round + b) % 2 == 0 else names[::-1]
            for n in order:
                op = ops[n]
                ks = keys[(b % 4) * block:(b % 4 + 1) * block]
                for k in ks:
                    t = now()
                    op(k)
                    lat[n].append(now() - t)
        for n in names:
            s = sorted(lat[n])
            out[n].append({"p50_us": s[len(s) // 2] * 1e6, "mean_us": sum(s) / len(s) * 1e6, "n": len(s)})
    conn.close()
    for p in (echo, direct, hop_pipe):
        p.close()
    return out


def op_point_conc(path: str, n: int, duration: float, mode: str) -> dict:
    """mode threads: n threads; tasks: n asyncio tasks; pipelined: n requests kept in flight on
    one pipe (echo / framed only)."""
    keys = C.point_keys(200_000, seed=n)
    nk = len(keys)
    arg = lambda t, i: keys[(t * 7919 + i) % nk]  # noqa: E731
    if mode == "threads":
        if SYSTEM in ("echo", "framed"):
            # threads share the pipe through the multiplexer (the same as framed-hop)
            from framed import MuxClient

            pipe, sid = framed_pipe(path)
            if STATE.get("mux") is None:
                STATE["mux"] = MuxClient(pipe)
        return finish(run_threads(lambda t: point_op(path), n, duration, arg), keep_lat=False)
    if mode == "tasks":
        return finish(run_tasks(lambda t: point_aop(path), n, duration, arg), keep_lat=False)
    if mode == "pipelined":
        return pipelined(path, n, duration, keys)
    raise ValueError(mode)


def pipelined(path: str, window: int, duration: float, keys: list) -> dict:
    from framed import _packb, frame

    pipe, sid = framed_pipe(path)
    sent = {}
    lat = []
    nk = len(keys)
    i = 0

    def req():
        nonlocal i
        id_ = pipe.next_id
        pipe.next_id += 1
        k = keys[i % nk]
        i += 1
        return id_, frame(_packb({"jsonrpc": "2.0", "id": id_, "method": "execute",
                                  "params": {"session": sid, "sql": C.POINT_SQL, "params": [k]}}))

    t_start = now()
    deadline = t_start + duration
    out = []
    for _ in range(window):
        id_, f = req()
        sent[id_] = now()
        out.append(f)
    pipe.write(b"".join(out))
    while sent:
        msgs = pipe.read_frames()
        t = now()
        out = []
        for m in msgs:
            t0 = sent.pop(m.get("id"), None)
            if t0 is None:
                continue
            if "error" in m:
                raise RuntimeError(m["error"])
            lat.append(t - t0)
            if t < deadline:
                id_, f = req()
                sent[id_] = t
                out.append(f)
        if out:
            pipe.write(b"".join(out))
    el = now() - t_start
    return finish({"n": len(lat), "elapsed": el, "lat": lat, "errors": {}}, keep_lat=False)


# ---------------------------------------------------------------------------------------------
# workload 2: CrewAI's storage patterns


class CrewAIStandIn:
    """What crewAI 1.15.x's KickoffTaskOutputsSQLiteStorage.add/load and SQLiteFlowPersistence.
    save_state/load_state do, statement for statement, with `mod` as the module's sqlite3 global
    (sqlite3 itself, or sqlite_rpc: what sqlite_rpc.crewai.install() swaps in). Left out:
    crewai_core.lock_store's file lock around kickoff writes (CrewAI's cost, not the database's).
    `pragma` (the -normal variants only): run right after connect, for synchronous=NORMAL."""

    def __init__(self, mod, kickoff: str, flow: str, pragma: str | None = None) -> None:
        self.mod, self.kickoff, self.flow, self.pragma = mod, kickoff, flow, pragma

    def kickoff_write(self, i: int) -> None:
        row = C.kickoff_row(i)
        with closing(self.mod.connect(self.kickoff, timeout=30)) as conn, conn:
            if self.pragma:
                conn.execute(self.pragma)
            conn.execute("BEGIN TRANSACTION")
            cursor = conn.cursor()
            cursor.execute(C.KICKOFF_INSERT, row)
            conn.commit()

    def kickoff_read(self, i: int) -> list:
        with closing(self.mod.connect(self.kickoff, timeout=30)) as conn, conn:
            cursor = conn.cursor()
            cursor.execute(C.KICKOFF_SELECT)
            rows = cursor.fetchall()
            return [{"task_id": r[0], "task_key": r[1], "expected_output": r[2],
                     "output": json.loads(r[3]) if r[3] is not None else None, "task_index": r[4],
                     "inputs": json.loads(r[5]) if r[5] is not None else None, "was_replayed": r[6],
                     "timestamp": r[7]} for r in rows]

    def flow_write(self, i: int) -> None:
        state = C.flow_state(i)
        with self.mod.connect(self.flow) as conn:  # CrewAI: not closed; dropped at return
            if self.pragma:
                conn.execute(self.pragma)
            conn.execute(C.FLOW_INSERT, (C.FLOW_IDS[i % C.FLOWS], C.flow_method(i),
                                         datetime.now(timezone.utc).isoformat(), json.dumps(state)))

    def flow_read(self, i: int):
        with self.mod.connect(self.flow) as conn:
            row = conn.execute(C.FLOW_SELECT, (C.FLOW_IDS[i % C.FLOWS],)).fetchone()
        if row:
            result = json.loads(row[0])
            return result if isinstance(result, dict) else None
        return None


class CrewAIPersistent:
    """The same statements and transactions on one connection per file kept open (stdlib
    tuned: WAL, the same synchronous setting; or apsw)."""

    def __init__(self, kickoff: str, flow: str, use_apsw: bool) -> None:
        self.apsw = use_apsw
        if use_apsw:
            import apsw

            self.k, self.f = apsw.Connection(kickoff), apsw.Connection(flow)
            for c in (self.k, self.f):
                c.setbusytimeout(30000)
                c.execute(sync_pragma())
        else:
            self.k = sqlite3.connect(kickoff, timeout=30, check_same_thread=False)
            self.f = sqlite3.connect(flow, check_same_thread=False)
            for c in (self.k, self.f):
                c.execute(sync_pragma())

    def kickoff_write(self, i: int) -> None:
        row = C.kickoff_row(i)
        if self.apsw:
            with self.k:
                self.k.execute(C.KICKOFF_INSERT, row)
            return
        self.k.execute("BEGIN TRANSACTION")
        self.k.execute(C.KICKOFF_INSERT, row)
        self.k.commit()

    def kickoff_read(self, i: int) -> list:
        rows = list(self.k.execute(C.KICKOFF_SELECT)) if self.apsw else self.k.execute(C.KICKOFF_SELECT).fetchall()
        return [{"task_id": r[0], "task_key": r[1], "expected_output": r[2],
                 "output": json.loads(r[3]) if r[3] is not None else None, "task_index": r[4],
                 "inputs": json.loads(r[5]) if r[5] is not None else None, "was_replayed": r[6],
                 "timestamp": r[7]} for r in rows]

    def flow_write(self, i: int) -> None:
        params = (C.FLOW_IDS[i % C.FLOWS], C.flow_method(i), datetime.now(timezone.utc).isoformat(),
                  json.dumps(C.flow_state(i)))
        if self.apsw:
            with self.f:
                self.f.execute(C.FLOW_INSERT, params)
            return
        self.f.execute(C.FLOW_INSERT, params)
        self.f.commit()

    def flow_read(self, i: int):
        row = self.f.execute(C.FLOW_SELECT, (C.FLOW_IDS[i % C.FLOWS],)).fetchone()
        if row:
            result = json.loads(row[0])
            return result if isinstance(result, dict) else None
        return None


class CrewAIDropIn:
    """sqlite_rpc.crewai's drop-in classes themselves."""

    def __init__(self, kickoff: str, flow: str) -> None:
        from sqlite_rpc import crewai

        self.ks = crewai.KickoffTaskOutputsSQLiteStorage(kickoff)
        self.fp = crewai.SQLiteFlowPersistence(flow)

    def kickoff_write(self, i: int) -> None:
        self.ks.add(C.TASKS[i % C.KICKOFF_TASKS], C.kickoff_output(i), i % C.KICKOFF_TASKS, False, C.KICKOFF_INPUTS)

    def kickoff_read(self, i: int) -> list:
        return self.ks.load()

    def flow_write(self, i: int) -> None:
        self.fp.save_state(C.FLOW_IDS[i % C.FLOWS], C.flow_method(i), C.flow_state(i))

    def flow_read(self, i: int):
        return self.fp.load_state(C.FLOW_IDS[i % C.FLOWS])


def crewai_impl(kickoff: str, flow: str):
    key = ("crewai", kickoff, flow)
    impl = STATE.get(key)
    if impl is not None:
        return impl
    s = SYSTEM
    if s.startswith("stdlib-perop"):
        impl = CrewAIStandIn(sqlite3, kickoff, flow, "PRAGMA synchronous=NORMAL" if s.endswith("-normal") else None)
    elif s in ("rpc-perop", "rpc-normal"):
        import sqlite_rpc

        impl = CrewAIStandIn(sqlite_rpc, kickoff, flow)
    elif s.startswith("stdlib-tuned"):
        impl = CrewAIPersistent(kickoff, flow, use_apsw=False)
    elif s == "apsw":
        impl = CrewAIPersistent(kickoff, flow, use_apsw=True)
    elif s == "rpc-crewai":
        impl = CrewAIDropIn(kickoff, flow)
    else:
        raise ValueError("no CrewAI pattern for %s" % s)
    impl.kickoff_read(0)  # warm: a server started, files open, as after the first operation
    impl.flow_read(0)
    STATE[key] = impl
    return impl


def op_crewai(kickoff: str, flow: str, pattern: str, n: int = 0, offset: int = 0,
              start_at: float | None = None, duration: float | None = None) -> dict:
    """pattern: kickoff_write | kickoff_read | flow_write | flow_read. Either n operations, or
    (multi-process) as many as fit in `duration` from the shared monotonic instant start_at."""
    impl = crewai_impl(kickoff, flow)
    fn = getattr(impl, pattern)
    if start_at is None:
        lat = []
        i = offset
        t0 = now()
        for _ in range(n):
            t = now()
            fn(i)
            lat.append(now() - t)
            i += 1
        el = now() - t0
        return {"n": n, "elapsed": el, "lat_us": [round(x * 1e6, 1) for x in lat], "errors": {}}
    el, done, errors = C.run_back_to_back(fn, start_at, duration, offset)
    return {"n": len(done), "elapsed": el, "lat_us": [us for _r, us in done], "errors": errors}


# ---------------------------------------------------------------------------------------------
# workload 3: durable single-row inserts


def insert_op(path: str, t: int):
    sql, payload = C.INSERT_SQL, C.PAYLOAD
    s = SYSTEM
    if s == "stdlib-perop":
        def op(n):
            c = sqlite3.connect(path)  # timeout 5.0 (the default), rollback journal, FULL
            try:
                c.execute(sql, (t, n, payload))
                c.commit()
            finally:
                c.close()
        return op, lambda: None
    if s in ("stdlib-tuned", "rpc-connect"):
        c = open_kept(s, path)

        def op(n):
            c.execute(sql, (t, n, payload))
            c.commit()
        return op, c.close
    if s == "apsw":
        import apsw

        c = apsw.Connection(path)
        c.setbusytimeout(5000)
        c.execute(sync_pragma())
        return (lambda n: c.execute(sql, (t, n, payload))), c.close  # autocommit: one transaction
    if s == "rpc-seed":
        db = STATE.get(("db", path))
        if db is None:
            import sqlite_rpc

            db = STATE[("db", path)] = sqlite_rpc.Database(path, timeout=5.0)
        db.execute_query("SELECT 1")
        return (lambda n: db.execute_update(sql, (t, n, payload))), lambda: None
    raise ValueError("no insert op for %s" % s)


async def insert_aop(path: str, t: int):
    from sqlite_rpc import aio

    db = await aio.connect(path, timeout=5.0)

    async def aop(n):
        await db.execute(C.INSERT_SQL, (t, n, C.PAYLOAD))
        await db.commit()

    return aop, db.close


def op_inserts(path: str, threads: int, duration: float, start_at: float | None = None) -> dict:
    """start_at (threads only): the shared monotonic instant to start at (another process
    measures beside this one)."""
    arg = lambda t, i: i  # noqa: E731
    if SYSTEM == "rpc-aio":
        res = run_tasks(lambda t: insert_aop(path, t), threads, duration, arg, warm=False)
    else:
        res = run_threads(lambda t: insert_op(path, t), threads, duration, arg, warm=False, start_at=start_at)
    return finish(res, keep_lat=False)


# ---------------------------------------------------------------------------------------------
# workload 4: bulk insert


def op_bulk(path: str, rows: int) -> dict:
    """Insert `rows` rows into a fresh file's table in one transaction; the clock covers the
    call(s) that insert and commit. The connection is opened (and the file created) before."""
    data = C.bulk_rows(rows)
    s = SYSTEM
    if s == "stdlib-perop":
        # CrewAI-style: connect, executemany, commit, close: all on the clock
        t0 = now()
        c = sqlite3.connect(path)
        c.executemany(C.BULK_SQL, data)
        c.commit()
        c.close()
        el = now() - t0
    elif s == "stdlib-tuned":
        c = sqlite3.connect(path)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute(sync_pragma())
        t0 = now()
        c.executemany(C.BULK_SQL, data)
        c.commit()
        el = now() - t0
        c.close()
    elif s == "apsw":
        import apsw

        c = apsw.Connection(path)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute(sync_pragma())
        t0 = now()
        with c:
            c.executemany(C.BULK_SQL, data)
        el = now() - t0
        c.close()
    elif s == "rpc-connect":
        import sqlite_rpc

        c = sqlite_rpc.connect(path)
        c.execute("SELECT 1").fetchone()
        t0 = now()
        c.executemany(C.BULK_SQL, data)
        c.commit()
        el = now() - t0
        c.close()
    elif s in ("rpc-seed", "rpc-batch"):
        import sqlite_rpc

        db = sqlite_rpc.Database(path)
        db.execute_query("SELECT 1")
        t0 = now()
        if s == "rpc-seed":
            db.execute_many(C.BULK_SQL, data)
        else:
            sql = C.BULK_SQL
            db.execute_batch([(sql, r) for r in data])
        el = now() - t0
        db.close()
    elif s == "rpc-aio":
        from sqlite_rpc import aio

        async def main():
            db = await aio.connect(path)
            t0 = now()
            await db.executemany(C.BULK_SQL, data)
            await db.commit()
            el = now() - t0
            await db.close()
            return el

        el = asyncio.run(main())
    else:
        raise ValueError("no bulk op for %s" % s)
    return {"n": rows, "elapsed": el, "lat_us": [round(el * 1e6, 1)], "errors": {}}


# ---------------------------------------------------------------------------------------------
# workload 5: analytic query


def analytic_op(path: str):
    sql = C.ANALYTIC_SQL
    s = SYSTEM
    if s == "stdlib-perop":
        def op(_):
            c = sqlite3.connect(path)
            try:
                return c.execute(sql).fetchall()
            finally:
                c.close()
        return op, lambda: None
    if s == "stdlib-tuned":
        c = sqlite3.connect(path, check_same_thread=False)
        return (lambda _: c.execute(sql).fetchall()), c.close
    if s == "apsw":
        import apsw

        c = apsw.Connection(path)
        return (lambda _: c.execute(sql).fetchall()), c.close
    if s == "rpc-connect":
        import sqlite_rpc

        c = sqlite_rpc.connect(path, check_same_thread=False)
        return (lambda _: c.execute(sql).fetchall()), c.close
    if s == "rpc-seed":
        db = STATE.get(("db", path))
        if db is None:
            import sqlite_rpc

            db = STATE[("db", path)] = sqlite_rpc.Database(path)
        return (lambda _: db.execute_query(sql)), lambda: None
    raise ValueError("no analytic op for %s" % s)


def op_analytic(path: str, concurrency: int, reps: int) -> dict:
    """`concurrency` callers each run the query `reps` times; ops/s = queries per second."""
    lat = []
    rows = []
    if SYSTEM == "rpc-aio":
        from sqlite_rpc import aio

        async def main():
            dbs = [await aio.connect(path) for _ in range(concurrency)]

            async def one(db):
                for _ in range(reps):
                    t = now()
                    async with db.execute(C.ANALYTIC_SQL) as cur:
                        r = await cur.fetchall()
                    lat.append(now() - t)
                    rows.append(len(r))

            t0 = now()
            await asyncio.gather(*(one(db) for db in dbs))
            el = now() - t0
            for db in dbs:
                await db.close()
            return el

        el = asyncio.run(main())
    else:
        ops = [None] * concurrency
        ready = threading.Barrier(concurrency + 1)

        def body(t):
            op, close = analytic_op(path)
            ready.wait()
            for _ in range(reps):
                t1 = now()
                r = op(None)
                lat.append(now() - t1)
                rows.append(len(r))
            close()

        ths = [threading.Thread(target=body, args=(t,)) for t in range(concurrency)]
        for th in ths:
            th.start()
        ready.wait()
        t0 = now()
        for th in ths:
            th.join()
        el = now() - t0
        del ops
    return {"n": len(lat), "elapsed": el, "lat_us": [round(x * 1e6, 1) for x in lat], "errors": {},
            "result_rows": sorted(set(rows))}


# ---------------------------------------------------------------------------------------------
# workload 7: sustained mixed load


def mixed_op(path: str, t: int):
    s = SYSTEM
    rsql, wsql, body = C.MIXED_READ, C.MIXED_WRITE, C.MIXED_BODY
    if s == "stdlib-perop":
        def op(a):
            c = sqlite3.connect(path)
            try:
                if a[0]:
                    c.execute(wsql, (a[1], body))
                    c.commit()
                else:
                    c.execute(rsql, (a[1],)).fetchone()
            finally:
                c.close()
        return op, lambda: None
    if s in ("stdlib-tuned", "rpc-connect"):
        c = open_kept(s, path)

        def op(a):
            if a[0]:
                c.execute(wsql, (a[1], body))
                c.commit()
            else:
                c.execute(rsql, (a[1],)).fetchone()
        return op, c.close
    if s == "apsw":
        import apsw

        c = apsw.Connection(path)
        c.setbusytimeout(5000)
        c.execute(sync_pragma())

        def op(a):
            if a[0]:
                c.execute(wsql, (a[1], body))
            else:
                c.execute(rsql, (a[1],)).fetchone()
        return op, c.close
    if s == "rpc-seed":
        db = STATE.get(("db", path))
        if db is None:
            import sqlite_rpc

            db = STATE[("db", path)] = sqlite_rpc.Database(path, timeout=5.0)

        def op(a):
            if a[0]:
                db.execute_update(wsql, (a[1], body))  # autocommit: group-committed, durable on return
            else:
                db.execute_query(rsql, (a[1],))
        return op, lambda: None
    raise ValueError("no mixed op for %s" % s)


async def mixed_aop(path: str, t: int):
    from sqlite_rpc import aio

    db = await aio.connect(path, timeout=5.0)

    async def aop(a):
        if a[0]:
            await db.execute(C.MIXED_WRITE, (a[1], C.MIXED_BODY))
            await db.commit()
        else:
            async with db.execute(C.MIXED_READ, (a[1],)) as cur:
                await cur.fetchone()

    return aop, db.close


def op_mixed(path: str, clients: int, duration: float, write_pct: int, pace_hz: float | None = None,
             sample_every: float = 1.0, start_at: float | None = None, keep_lat: bool = False, seed: int = 0) -> dict:
    """start_at: the shared monotonic instant to start at (several processes together);
    keep_lat: return every latency (the driver pools them over processes); seed: this
    process's clients' random streams (distinct per process)."""
    rnds = [random.Random(1000 + seed * 1000 + t) for t in range(clients)]

    def arg(t, i):
        r = rnds[t]
        if i < 0:
            return (0, 1)
        return (1, i) if r.randrange(100) < write_pct else (0, r.randint(1, C.MIXED_ROWS))

    samples = []

    def sample(t_start, dur):
        pid = server_pid() or os.getpid()

        def loop():
            t_end = t_start + dur
            while True:
                t = now()
                samples.append((round(t - t_start, 2), C.rss_kb(pid), C.fd_count(pid), C.thread_count(pid)))
                if t >= t_end:
                    return
                time.sleep(min(sample_every, max(0.0, t_end - t) + 0.01))

        th = threading.Thread(target=loop, daemon=True)
        th.start()
        return th

    pid = server_pid() or os.getpid()
    before = (C.rss_kb(pid), C.fd_count(pid))
    if SYSTEM == "rpc-aio":
        res = run_tasks(lambda t: mixed_aop(path, t), clients, duration, arg, pace_hz=pace_hz, sample=sample)
    else:
        res = run_threads(lambda t: mixed_op(path, t), clients, duration, arg, pace_hz=pace_hz, sample=sample,
                          start_at=start_at)
    if pace_hz:
        # every op scheduled inside the window ran (or failed): the rate is over the window
        res["elapsed_wall"] = res["elapsed"]
        res["elapsed"] = duration
        res["offered_ops_s"] = pace_hz * clients
    res = finish(res, keep_lat=keep_lat)
    time.sleep(0.2)
    pid = server_pid() or os.getpid()
    res.update({"samples": samples, "measured_pid": "server" if server_pid() else "worker",
                "idle_before": before, "idle_after": (C.rss_kb(pid), C.fd_count(pid))})
    return res


# ---------------------------------------------------------------------------------------------
# misc


def op_info() -> dict:
    out = {"system": SYSTEM, "pid": os.getpid(), "server_pid": server_pid()}
    if is_rpc():
        import sqlite_rpc
        from sqlite_rpc import process

        srv = process.get_server()
        # a private server (a child on a pipe) knows its binary and flags; the shared one is a socket
        out.update(server_pid=srv.pid, backend=sqlite_rpc.backend(), server_info=srv.info,
                   server_args=getattr(srv, "args", None), binary=getattr(srv, "binary", None),
                   shared=bool(getattr(srv, "shared", False)), socket=getattr(srv, "path", None))
    return out


def op_probe() -> dict:
    pid = server_pid()
    return {"server_pid": pid, "rss_kb": C.rss_kb(pid) if pid else None, "fds": C.fd_count(pid) if pid else None,
            "worker_rss_kb": C.rss_kb(os.getpid()), "worker_fds": C.fd_count(os.getpid())}


def op_close_all() -> dict:
    """Drop cached handles (between workloads)."""
    for k in list(STATE):
        if k in ("pipe", "mux", "session"):
            continue
        v = STATE.pop(k)
        db = v if hasattr(v, "close") else None
        if db is not None:
            try:
                db.close()
            except Exception:  # noqa: BLE001
                pass
    return {}


def op_issue12(name: str, **args):
    import issue12  # issue 12's figures: every side in this one process

    return getattr(issue12, "op_" + name)(**args)


def op_issue13(name: str, **args):
    import issue13  # issue 13's multi-process figures: this process is one of several

    return getattr(issue13, "op_" + name)(**args)


OPS = {"crewai12": lambda **a: op_issue12("crewai12", **a), "path12": lambda **a: op_issue12("path12", **a),
       "issue13": op_issue13,
       "point_seq": op_point_seq, "fine": op_fine, "point_conc": op_point_conc, "crewai": op_crewai, "inserts": op_inserts,
       "bulk": op_bulk, "analytic": op_analytic, "mixed": op_mixed, "info": op_info, "probe": op_probe,
       "close_all": op_close_all}


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            res = {"ok": OPS[cmd["op"]](**cmd.get("args", {}))}
        except BaseException:  # noqa: BLE001
            res = {"error": traceback.format_exc()}
        out.write("@@" + json.dumps(res) + "\n")
        out.flush()
    pipe = STATE.get("pipe")
    if pipe is not None:
        pipe.close()
    if "issue12" in sys.modules:
        sys.modules["issue12"].close_all()
    if "issue13" in sys.modules:
        sys.modules["issue13"].close_all()


if __name__ == "__main__":
    main()
