"""Issue 12's figures, measured inside ONE worker process (bench/peers/worker.py ops "crewai12"
and "path12", driven by bench/peers.py's `crewai` and `path` workloads).

Every side of a figure lives in this process (the stdlib in-process; sqlite_rpc with its
server child; bench/framed.py with the echo child), and within each round the sides run in
blocks ordered A B .. B A (ABBA; the order flips every round), so drift hits all alike.
Each call returns, per side, one result per round: {"n", "elapsed", "lat_us"}.
"""
from __future__ import annotations

import importlib.util
import os
import random
import sqlite3
import sys
import time
import uuid

import common as C

now = time.perf_counter
STATE: dict = {}


def abba(sides: dict, rounds: int, n: int) -> dict:
    """sides: name -> fn(i) or (fn(i), after_block()). Each round runs every side for n calls,
    as two half-blocks in the order A B C C B A (reversed on odd rounds); after_block runs
    outside the clock (e.g. commit). Each side sees the same sequence of i."""
    names = list(sides)
    res = {s: [] for s in names}
    nxt = {s: 0 for s in names}
    halves = (n // 2, n - n // 2) if n > 1 else (1, 0)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        acc = {s: {"n": 0, "elapsed": 0.0, "lat_us": [], "errors": {}} for s in names}
        for h, seq in enumerate((order, order[::-1])):
            for s in seq:
                fn, after = sides[s] if isinstance(sides[s], tuple) else (sides[s], None)
                lat = acc[s]["lat_us"]
                for _ in range(halves[h]):
                    i = nxt[s]
                    nxt[s] += 1
                    t = now()
                    fn(i)
                    lat.append((now() - t) * 1e6)
                acc[s]["n"] += halves[h]
                if after is not None:
                    after()
        for s in names:
            acc[s]["elapsed"] = sum(acc[s]["lat_us"]) / 1e6
            acc[s]["lat_us"] = [round(x, 1) for x in acc[s]["lat_us"]]
            res[s].append(acc[s])
    return res


# ---------------------------------------------------------------------------------------------
# crewai: CrewAI 1.15.x's storage operations, stdlib vs sqlite_rpc.crewai.install()

# The tests' stand-in of crewAI's packages (python-client/tests/crewai_standins/site): its
# storage modules are loaded twice below, one copy on the stdlib, one patched by install().
STANDIN_SITE = os.path.join(C.ROOT, "python-client", "tests", "crewai_standins", "site")
STANDIN_MODULES = {
    "kickoff": "crewai/memory/storage/kickoff_task_outputs_storage.py",
    "flow": "crewai/flow/persistence/sqlite.py",
    "ckpt": "crewai/state/provider/sqlite_provider.py",
    "ltm": "crewai/memory/storage/ltm_sqlite_storage.py",
}
KICKOFF_TASKS = 20  # a crew of 20 tasks: load() reads 20 rows
FLOWS = 100
_LOREM = ("Agents coordinate through tasks; each task's output feeds the next one. The researcher "
          "collected sources, the analyst weighed them, and the writer drafted a summary. ")


def _text(nbytes: int) -> str:
    return (_LOREM * (nbytes // len(_LOREM) + 1))[:nbytes]


class Task:
    def __init__(self, j: int) -> None:
        self.id = uuid.UUID(int=random.Random(j).getrandbits(128))
        self.key = "task-key-%d" % j
        self.expected_output = "A short report on the topic, in three bullet points, with sources."


TASKS = [Task(j) for j in range(KICKOFF_TASKS)]
FLOW_IDS = [str(uuid.UUID(int=random.Random(1000 + j).getrandbits(128))) for j in range(FLOWS)]
INPUTS = {"topic": "AI agents", "year": 2026}
_RAW = _text(3600)
_MSGS = [_text(900) for _ in range(20)]


def task_output(i: int) -> dict:
    """A TaskOutput's model_dump: about 4 KB of JSON."""
    return {"description": "Research the topic and report (%d)" % i, "name": "research",
            "expected_output": TASKS[i % KICKOFF_TASKS].expected_output, "summary": "Research the topic...",
            "raw": _RAW, "pydantic": None, "json_dict": None, "agent": "Senior Researcher", "output_format": "raw"}


def flow_state(i: int) -> dict:
    """A flow's pydantic state, dumped: about 20 KB of JSON."""
    return {"id": FLOW_IDS[i % FLOWS], "counter": i, "topic": "AI agents", "done": False,
            "messages": _MSGS, "scores": [0.5, 0.75, 0.9]}


def checkpoint_json() -> str:
    """The whole crew's state as CrewAI serialises it: about 300 KB of JSON."""
    import json

    agents = [{"role": "agent %d" % a, "goal": _text(400), "backstory": _text(1200), "tools": ["search", "read"]}
              for a in range(4)]
    tasks = [{"description": _text(800), "expected_output": _text(200), "output": task_output(t)}
             for t in range(KICKOFF_TASKS)]
    state = {"crew": {"agents": agents, "tasks": tasks}, "inputs": INPUTS, "messages": []}
    while len(json.dumps(state)) < 300_000:
        state["messages"].append({"role": "assistant", "content": _text(2000)})
    return json.dumps(state)


def _load_standin(side: str) -> dict:
    """A copy of each stand-in storage module, named bench_crewai_<side>_<key>."""
    if STANDIN_SITE not in sys.path:
        sys.path.insert(0, STANDIN_SITE)  # their imports of crewai.* (base classes, helpers)
    mods = {}
    for key, rel in STANDIN_MODULES.items():
        name = "bench_crewai_%s_%s" % (side, key)
        spec = importlib.util.spec_from_file_location(name, os.path.join(STANDIN_SITE, rel))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        mods[key] = mod
    return mods


def _journal(path: str) -> str:
    c = sqlite3.connect(path)
    try:
        return c.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        c.close()


def flow_history(std: dict, path: str) -> None:
    """A flow file as CrewAI's init (the stdlib copy `std` of the stand-in) leaves it, then
    FLOWS x 3 saved states of about 20 KB."""
    import json

    std["flow"].SQLiteFlowPersistence(path)
    c = sqlite3.connect(path)
    c.executemany("INSERT INTO flow_states (flow_uuid, method_name, timestamp, state_json) VALUES (?, ?, ?, ?)",
                  [(FLOW_IDS[n % FLOWS], "step_%d" % (n % 7), "2026-01-01T00:00:%02d+00:00" % (n % 60),
                    json.dumps(flow_state(n))) for n in range(FLOWS * 3)])
    c.commit()
    c.close()


def crewai_setup(d: str) -> dict:
    """Both sides' files, identical content, and their storage objects. The stdlib copy of the
    stand-in keeps sqlite3; install() patches the other copy's global, as it patches CrewAI."""
    import json

    std = _load_standin("stdlib")
    # Python's SQLite 3.40 has no jsonb()/json(): the same statements on the JSON text.
    std["ckpt"]._INSERT = std["ckpt"]._INSERT.replace("jsonb(?)", "?")
    std["ckpt"]._SELECT = std["ckpt"]._SELECT.replace("json(data)", "data")
    rpcm = _load_standin("rpc")
    from sqlite_rpc import crewai as sc

    names = [m.__name__ for m in rpcm.values()]
    report = sc.install(extra_modules=names, flow_persistence_factory=False)
    if any("sqlite3" not in report["patched"].get(n, []) for n in names) or rpcm["kickoff"].sqlite3 is not sc.SQLITE3:
        raise RuntimeError("install() did not patch the stand-ins: %r" % (report,))
    data = checkpoint_json()
    sides = {}
    for side, mod in (("stdlib", std), ("rpc", rpcm)):
        sd = os.path.join(d, side)
        os.makedirs(sd, exist_ok=True)
        f = {k: os.path.join(sd, n) for k, n in (("kickoff", "latest_kickoff_task_outputs.db"), ("flow", "flow_states.db"),
                                                  ("ckpt", "checkpoints.db"), ("ltm", "long_term_memory_storage.db"))}
        # history first, with the stdlib copy (CrewAI's own init sets the journal modes)
        flow_history(std, f["flow"])
        std["ltm"].LTMSQLiteStorage(f["ltm"])
        c = sqlite3.connect(f["ltm"])
        c.executemany("INSERT INTO long_term_memories (task_description, metadata, datetime, score) VALUES (?, ?, ?, ?)",
                      [("task %d" % (n % 50), json.dumps({"suggestions": [_text(120)] * 3, "quality": 7}),
                        "2026-01-01 00:%02d:%02d" % (n // 60 % 60, n % 60), 0.5 + n % 5 / 10) for n in range(1000)])
        c.commit()
        c.close()
        # then this side's objects (their init runs through this side's sqlite3)
        o = {"files": f, "ks": mod["kickoff"].KickoffTaskOutputsSQLiteStorage(f["kickoff"]),
             "fp": mod["flow"].SQLiteFlowPersistence(f["flow"]), "prov": mod["ckpt"].SqliteProvider(),
             "ltm": mod["ltm"].LTMSQLiteStorage(f["ltm"]), "data": data}
        for j in range(KICKOFF_TASKS):
            o["ks"].add(TASKS[j], task_output(j), j, False, INPUTS)
        # checkpoints to read back: written by this side (JSONB on the server's)
        o["saved"] = [o["prov"].checkpoint(data, f["ckpt"]) for _ in range(10)]
        sides[side] = o
    return sides


def _crewai_ops(o: dict) -> dict:
    ks, fp, prov, ltm, f, data = o["ks"], o["fp"], o["prov"], o["ltm"], o["files"], o["data"]

    def kickoff_load(i):
        if len(ks.load()) != KICKOFF_TASKS:
            raise RuntimeError("kickoff load(): wrong row count")

    def ckpt_read(i):
        if len(prov.from_checkpoint(o["saved"][i % 10])) < 250_000:
            raise RuntimeError("checkpoint read: short")

    return {
        "kickoff.add": lambda i: ks.add(TASKS[i % KICKOFF_TASKS], task_output(i), i % KICKOFF_TASKS, False, INPUTS),
        "kickoff.load": kickoff_load,
        "flow.save_state": lambda i: fp.save_state(FLOW_IDS[i % FLOWS], "step_%d" % (i % 7), flow_state(i)),
        "flow.load_state": lambda i: fp.load_state(FLOW_IDS[i % FLOWS]),
        "checkpoint.write": lambda i: prov.checkpoint(data, f["ckpt"]),
        "checkpoint.read": ckpt_read,
        "ltm.save": lambda i: ltm.save("task %d" % (i % 50), {"suggestions": ["use sources"], "quality": i % 10},
                                       "2026-01-02 00:00:00", 0.8),
        "ltm.load": lambda i: ltm.load("task %d" % (i % 50), 3),
    }


def op_crewai12(dir: str, what: str, rounds: int, n: int) -> dict:
    """One CrewAI operation, stdlib and sqlite_rpc (install()) alternating ABBA per round."""
    if "crewai" not in STATE:
        sides = crewai_setup(dir)
        STATE["crewai"] = {s: _crewai_ops(o) for s, o in sides.items()}
        STATE["crewai_files"] = {s: o["files"] for s, o in sides.items()}
    ops = STATE["crewai"]
    for s in ops:  # warm: the server's statement cache, the files' pages
        for i in range(3):
            ops[s][what](10_000_000 + i)
    res = abba({"stdlib-crewai": ops["stdlib"][what], "rpc-install": ops["rpc"][what]}, rounds, n)
    if what == "kickoff.add":  # what the stdlib side ran on
        res["setup"] = {"journal": {k: _journal(p) for k, p in STATE["crewai_files"]["stdlib"].items()},
                        "stdlib_synchronous": sqlite3.connect(STATE["crewai_files"]["stdlib"]["kickoff"]).execute(
                            "PRAGMA synchronous").fetchone()[0]}
    return res


# ---------------------------------------------------------------------------------------------
# path: the request path against the echo floor and the stdlib

VAL_SELECT = "SELECT v FROM vals WHERE id = ?"
VAL_UPDATE = "UPDATE vals SET v = ? WHERE id = ?"
ROWS_SELECT = "SELECT id, v FROM rows500 WHERE id BETWEEN ? AND ?"
ROWS500 = 1000
SIZES = {"200 KB": 200_000, "1 MB": 1_000_000, "10 MB": 10_000_000}


def build_values(path: str) -> None:
    """The point table, one row per (kind, size) value, and 1,000 rows of 500 bytes."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, "name-%d" % i, i * 1.5) for i in range(1, C.POINT_ROWS + 1)))
    db.execute("CREATE TABLE vals(id INTEGER PRIMARY KEY, v)")
    db.executemany("INSERT INTO vals VALUES (?, ?)", [(value_id(k, s), value_of(k, n)) for k in ("text", "blob")
                                                      for s, n in SIZES.items()])
    db.execute("CREATE TABLE rows500(id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO rows500 VALUES (?, ?)", [(i, _text(500)) for i in range(1, ROWS500 + 1)])
    db.commit()
    db.close()


def value_id(kind: str, size: str) -> int:
    return (1 if kind == "text" else 2) * 10 + list(SIZES).index(size)


def value_of(kind: str, n: int):
    return _text(n) if kind == "text" else bytes(random.Random(n).getrandbits(8) for _ in range(256)) * (n // 256)


def _echo():
    if "echo" not in STATE:
        from framed import FramedPipe

        p = FramedPipe([C.NODE, C.ECHO], env=C.child_env(), stderr_path=os.path.join(C.TMP, "path-echo.stderr.log"))
        p.call("initialize", {"protocol_version": 1, "client": {"name": "bench/peers path"}})
        STATE["echo"] = p
    return STATE["echo"]


def _kept(paths: dict) -> tuple:
    """connect() and the stdlib, each one connection kept open on its own copy of the file."""
    if "kept" not in STATE:
        import sqlite_rpc

        rc = sqlite_rpc.connect(paths["rpc"])
        rc.execute("SELECT 1").fetchone()
        sc = sqlite3.connect(paths["stdlib"])
        STATE["kept"] = (rc, sc)
    return STATE["kept"]


def op_path12(fig: str, paths: dict, rounds: int, n: int, kind: str = "", size: str = "") -> dict:
    import sqlite_rpc

    echo = _echo()
    call = echo.call
    if fig == "point":
        rc, sc = _kept(paths)
        keys = C.point_keys(200_000, seed=12)
        sql = C.POINT_SQL
        sides = {"echo": lambda i: call("execute", {"session": 1, "sql": sql, "params": [keys[i]]}),
                 "rpc-connect": lambda i: rc.execute(sql, (keys[i],)).fetchone(),
                 "stdlib-same": lambda i: sc.execute(sql, (keys[i],)).fetchone()}
    elif fig in ("read", "write"):
        # the echo carries the same bytes over the same framing: half out in the request, half
        # back in the reply (the server moves them one way)
        rc, sc = _kept(paths)
        vid = value_id(kind, size)
        full = value_of(kind, SIZES[size])
        half = full[: len(full) // 2]
        if fig == "read":
            sides = {"echo": lambda i: call("execute", {"session": 1, "sql": VAL_SELECT, "params": [half]}),
                     "rpc-connect": lambda i: rc.execute(VAL_SELECT, (vid,)).fetchone(),
                     "stdlib-same": lambda i: sc.execute(VAL_SELECT, (vid,)).fetchone()}
        else:
            # inside one transaction per block, committed off the clock: the request path, not fsync
            sides = {"echo": lambda i: call("execute", {"session": 1, "sql": VAL_UPDATE, "params": [half, vid]}),
                     "rpc-connect": (lambda i: rc.execute(VAL_UPDATE, (full, vid)), rc.commit),
                     "stdlib-same": (lambda i: sc.execute(VAL_UPDATE, (full, vid)), sc.commit)}
    elif fig == "rows":
        rc, sc = _kept(paths)
        rows = [[i, _text(500)] for i in range(50)]  # half of the 100 rows each way

        def lo(i):
            return 1 + (i * 97) % (ROWS500 - 100)

        sides = {"echo": lambda i: call("execute", {"session": 1, "sql": ROWS_SELECT, "params": rows}),
                 "rpc-connect": lambda i: rc.execute(ROWS_SELECT, (lo(i), lo(i) + 99)).fetchall(),
                 "stdlib-same": lambda i: sc.execute(ROWS_SELECT, (lo(i), lo(i) + 99)).fetchall()}
    elif fig == "connect_close":
        p = paths["small"]  # a file no kept connection holds
        sides = {"rpc-connect": lambda i: sqlite_rpc.connect(p).close(),
                 "rpc-keep-open": lambda i: sqlite_rpc.connect(p, keep_open=True).close(),
                 "stdlib-same": lambda i: sqlite3.connect(p).close()}
    elif fig == "complex":
        p, sql = paths["analytic"], C.ANALYTIC_SQL

        def per_op(connect):
            def op(i):
                c = connect(p)
                try:
                    return c.execute(sql).fetchall()
                finally:
                    c.close()
            return op

        sides = {"rpc-perop": per_op(sqlite_rpc.connect), "stdlib-perop": per_op(sqlite3.connect)}
    elif fig == "size":
        keys = C.point_keys(200_000, seed=13)

        def per_op(connect, p):
            def op(i):
                c = connect(p)
                try:
                    return c.execute(C.POINT_SQL, (keys[i],)).fetchone()
                finally:
                    c.close()
            return op

        sides = {"rpc-big": per_op(sqlite_rpc.connect, paths["big"]), "rpc-small": per_op(sqlite_rpc.connect, paths["small"]),
                 "stdlib-big": per_op(sqlite3.connect, paths["big"]), "stdlib-small": per_op(sqlite3.connect, paths["small"])}
    elif fig == "bulk":
        return bulk(paths["dir"], rounds, n)
    else:
        raise ValueError(fig)
    for s in sides:  # warm: statement caches, the server's inline read path, the page cache
        fn, after = sides[s] if isinstance(sides[s], tuple) else (sides[s], None)
        for i in range(3):
            fn(i)
        if after:
            after()
    return abba(sides, rounds, n)


def bulk(d: str, rounds: int, rows: int) -> dict:
    """executemany of `rows` rows into a fresh file's table, then commit (on the clock; the
    connection and the table made before): stdlib (its default rollback journal), connect()
    (the server's WAL), sqlite_rpc.Database.execute_many (one request set, autocommit)."""
    import sqlite_rpc

    data = C.bulk_rows(rows)
    seq = [0]

    def fresh(tag):
        seq[0] += 1
        p = os.path.join(d, "bulk-%s-%d.db" % (tag, seq[0]))
        c = sqlite3.connect(p)
        c.execute(C.BULK_CREATE)
        c.commit()
        c.close()
        return p

    def many(mod, tag):
        def run(i):
            c = mod.connect(fresh(tag))
            c.execute("SELECT 1").fetchone()  # sqlite_rpc's pipelined open, off the clock
            t = now()
            c.executemany(C.BULK_SQL, data)
            c.commit()
            el = now() - t
            c.close()
            return el
        return run

    stdlib, rpc = many(sqlite3, "stdlib"), many(sqlite_rpc, "rpc")

    def db(i):
        x = sqlite_rpc.Database(fresh("db"))
        x.execute_query("SELECT 1")
        t = now()
        x.execute_many(C.BULK_SQL, data)
        el = now() - t
        x.close()
        return el

    sides = {"stdlib-same": stdlib, "rpc-connect": rpc, "rpc-seed": db}
    res = {s: [] for s in sides}
    names = list(sides)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        el = {s: [] for s in names}
        for s in order + order[::-1]:
            el[s].append(sides[s](r))
        for s in names:
            res[s].append({"n": rows * len(el[s]), "elapsed": sum(el[s]), "lat_us": [round(x * 1e6, 1) for x in el[s]],
                           "errors": {}})
    for f in os.listdir(d):
        if f.startswith("bulk-"):
            os.unlink(os.path.join(d, f))
    return res


def close_all() -> None:
    for k in ("kept",):
        for c in STATE.pop(k, ()):
            c.close()
    if "echo" in STATE:
        STATE.pop("echo").close()
