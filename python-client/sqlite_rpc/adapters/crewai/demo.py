"""python -m sqlite_rpc.adapters.crewai.demo [FOLDER]: CrewAI's storage on sqlite-rpc.

Four processes run "kickoffs" at once, as several `crewai run` on one machine do: each saves
its flow state after every step (SQLiteFlowPersistence, flow_states.db) and every task's
output (KickoffTaskOutputsSQLiteStorage, latest_kickoff_task_outputs.db), through the
drop-in classes sqlite_rpc.crewai.install() puts in CrewAI's place. The payloads have the
sizes CrewAI writes (a flow state of a few KB, a task output of about 2 KB). Then it reads
everything back and checks it: it exits 1 if a row is missing or a process failed. Needs
neither CrewAI nor Node: the server binary comes with the platform wheel.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

PROCESSES = 4
FLOWS_PER_PROCESS = 5
STEPS_PER_FLOW = 6


def _state(flow: str, step: int) -> Dict[str, Any]:
    return {"id": flow, "step": step, "topic": "sqlite under load",
            "notes": ["finding %d: %s" % (i, "x" * 120) for i in range(step * 4)],
            "draft": "lorem ipsum " * (200 + 40 * step)}


def _kickoff(folder: str, proc: int) -> Tuple[int, List[str]]:
    """One kickoff process: (the pid of the server it used, or 0 on the stdlib; its flow ids)."""
    import sqlite_rpc
    import sqlite_rpc.crewai as crewai_rpc

    crewai_rpc.install()
    flows = crewai_rpc.SQLiteFlowPersistence(os.path.join(folder, "flow_states.db"))
    outputs = crewai_rpc.KickoffTaskOutputsSQLiteStorage(os.path.join(folder, "latest_kickoff_task_outputs.db"))
    ids = []
    for f in range(FLOWS_PER_PROCESS):
        flow = str(uuid.uuid4())
        ids.append(flow)
        for step in range(STEPS_PER_FLOW):
            flows.save_state(flow, "step_%d" % step, _state(flow, step))
        task = SimpleNamespace(id=uuid.uuid4(), key="task-%d-%d" % (proc, f), expected_output="a report")
        outputs.add(task, {"raw": "result " * 300, "agent": "researcher"}, task_index=proc * 1000 + f, inputs={"topic": "sqlite"})
    server = int(sqlite_rpc.server_info()["server"]["pid"]) if sqlite_rpc.backend() == "sqlite-rpc" else 0
    return server, ids


def main(argv: List[str]) -> int:
    import sqlite_rpc
    import sqlite_rpc.crewai as crewai_rpc

    folder = argv[0] if argv else tempfile.mkdtemp(prefix="sqlite-rpc-crewai-demo-")
    os.makedirs(folder, exist_ok=True)
    report = crewai_rpc.install()
    print("backend:", report["backend"])
    t0 = time.perf_counter()
    # spawn: each kickoff is a fresh interpreter, as separate `crewai run` processes are.
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = pool.starmap(_kickoff, [(folder, p) for p in range(PROCESSES)])
    dt = time.perf_counter() - t0

    flows = crewai_rpc.SQLiteFlowPersistence(os.path.join(folder, "flow_states.db"))
    outputs = crewai_rpc.KickoffTaskOutputsSQLiteStorage(os.path.join(folder, "latest_kickoff_task_outputs.db"))
    problems = []
    for _server, ids in results:
        for flow in ids:
            state = flows.load_state(flow)
            if state != _state(flow, STEPS_PER_FLOW - 1):
                problems.append("flow %s: last state %s" % (flow, "missing" if state is None else "differs"))
    saved = len(outputs.load())
    if saved != PROCESSES * FLOWS_PER_PROCESS:
        problems.append("%d task outputs saved, %d expected" % (saved, PROCESSES * FLOWS_PER_PROCESS))
    writes = PROCESSES * FLOWS_PER_PROCESS * (STEPS_PER_FLOW + 1)
    print("%d kickoff processes, %d durable writes in %.2f s (%.0f/s), no 'database is locked'" % (PROCESSES, writes, dt, writes / dt))
    if sqlite_rpc.backend() == "sqlite-rpc":
        servers = sorted({s for s, _ids in results} | {int(sqlite_rpc.server_info()["server"]["pid"])})
        print("servers used by the %d processes and this one: %s" % (PROCESSES, " ".join(map(str, servers))))
    print("files:", ", ".join(sorted(n for n in os.listdir(folder) if n.endswith(".db"))), "in", folder)
    for p in problems:
        print("MISSING:", p)
    print("ok" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
