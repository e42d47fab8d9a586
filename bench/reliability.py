#!/usr/bin/env python3
"""The long forms of the reliability suite (issue 7, items 1-11), from one command.

    npm run reliability                          # everything at the counts issue 7 asks for
    npm run reliability -- --trials 5 --duration 10 --cycles 100 --restarts 50 --fuzz-frames 5000
    npm run reliability -- --only kill9,fuzz-ts  # some parts

Parts (--only takes a comma-separated list of these names):
  kill9         item 1: --trials kill -9 trials at synchronous FULL and as many at NORMAL
  powercut      --powercut-trials kill -9 trials per synchronous mode on a server under the
                power-cut shim (test/tools/powercut), checked on the durable image (every
                other one on a slow disk: each sync waits 2 ms first), and
                --powercut-trials/5 with Python threads, with reads racing the commits and
                with the file let go and opened again (every other one with sessions'
                PRAGMA synchronous = OFF mixed in);
                the stdlib's sqlite3 as the control
  multiprocess  item 6: 4 processes with their own servers write one file for --duration s
  leaks         item 7: --cycles connect/close cycles (and --cycles/5 with the server
                reopening files), --restarts server restarts
  memory        item 10: a slow client reads 5 x 200 MB page by page
  fuzz-py       item 9: --fuzz-frames frames, hypothesis, through a raw pipe
  fuzz-ts       item 9: --fuzz-frames frames, fast-check (vitest, test/70.reliability.fuzz)
  short         items 2-5, 8, 10, 11: their test files once (they have no long form)
  replication   issue 15: --replication-trials lost-machine trials per target (file://, and
                s3rver on 127.0.0.1): writers, kill -9 of the server and Litestream together,
                restore elsewhere; every row acknowledged more than one sync interval
                (--replication-sync-ms) before the kill must be back; the window of loss
                (RPO) measured. Then a --replication-outage-s s3rver outage under writes, and
                Litestream killed under writes (restarted, no new generation).
                Machinery: python-client/tests/_replication.py

The machinery is python-client/tests/_reliability.py, shared with the short forms that
`npm test` runs. Every figure goes to stdout and to bench/results/reliability.json
(--out). The exit status is 0 only if every part passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "python-client", "tests")
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(ROOT, "python-client"))
# The checkout's binary, never the stdlib fallback, and no inherited server flags.
os.environ["SQLITE_RPC_BINARY"] = os.path.join(ROOT, "dist", "sqlite-rpc")
os.environ.pop("SQLITE_RPC_DISABLE", None)
os.environ.pop("SQLITE_RPC_ARGS", None)

import _reliability as R  # noqa: E402

# The client warns on every server death; here they are deliberate (kill -9 trials, restarts).
import logging  # noqa: E402

logging.getLogger("sqlite_rpc").setLevel(logging.ERROR)

PARTS = ["kill9", "powercut", "multiprocess", "leaks", "memory", "fuzz-py", "fuzz-ts", "short", "replication"]
SHORT_FILES = ["test_reliability_crash_tx.py", "test_reliability_vanish.py", "test_reliability_workers.py",
               "test_reliability_disk_full.py", "test_reliability_stray_output.py", "test_reliability_memory.py",
               "test_reliability_params.py"]


def log(msg: str) -> None:
    print("[%s] %s" % (datetime.now().strftime("%H:%M:%S"), msg), flush=True)


def part_kill9(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for mode in ("full", "normal"):
        trials = []
        for i in range(a.trials):
            r = R.kill9_trial(tmp, mode, a.seed + i, max_acked_ops=1200)
            trials.append(r)
            if (i + 1) % 10 == 0:
                log("  kill9 %s: %d/%d trials passed" % (mode, i + 1, a.trials))
        out[mode] = {
            "trials": len(trials), "passed": len(trials), "lost_acknowledged_writes": 0, "integrity_ok": len(trials),
            "acknowledged_operations": sum(t["acked_ops"] for t in trials),
            "acknowledged_rows": sum(t["acked_rows"] for t in trials),
            "requests_in_flight_at_kill": sum(t["in_flight_at_kill"] for t in trials),
            "unacknowledged_operations_found_committed": sum(t["unacked_ops_present"] for t in trials),
            "updates_acknowledged": sum(t["updates_acked"] for t in trials),
            "updates_applied": sum(t["updates_applied"] for t in trials),
        }
    return out


def part_powercut(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    # FULL: every trial asserts that no acknowledged write is missing from the durable image
    # (lost acknowledged rows must be 0). NORMAL promises only a crash of the process: lost
    # rows are counted (each trial asserts they are a suffix of the commit order, whole
    # groups, integrity ok), and some must show, or the harness could not see a missing fsync.
    out: Dict[str, Any] = {}
    n_threads = max(1, a.powercut_trials // 5)
    for mode in ("full", "normal"):
        trials = []
        for i in range(a.powercut_trials):
            # Every other trial on a slow disk (each sync waits 2 ms first): more in flight at the kill.
            trials.append(R.powercut_server_trial(tmp, mode, a.seed + i, max_acked_ops=1200, sync_delay_us=2000 if i % 2 else 0))
            if (i + 1) % 10 == 0:
                log("  powercut %s: %d/%d trials passed" % (mode, i + 1, a.powercut_trials))
        threads = [R.powercut_threads_trial(tmp, mode, a.seed + i, sync_delay_us=2000 if i % 2 else 0) for i in range(n_threads)]
        reads = [R.powercut_reads_trial(tmp, a.seed + i) for i in range(n_threads)] if mode == "full" else []
        # Every other churn trial has sessions' PRAGMA synchronous = OFF mixed in (power cut 1, fixed in c96450b).
        churn = [R.powercut_churn_trial(tmp, a.seed + i, pragmas=i % 2 == 1) for i in range(n_threads)] if mode == "full" else []
        out[mode] = {
            "trials": len(trials), "acknowledged_operations": sum(t["acked_ops"] for t in trials),
            "acknowledged_rows": sum(t["acked_rows"] for t in trials),
            "lost_acknowledged_rows": sum(t["lost_rows"] for t in trials),
            "trials_with_loss": sum(1 for t in trials if t["lost_rows"]),
            "trials_whose_schema_was_not_durable": sum(1 for t in trials if t["schema_lost"]),
            "requests_in_flight_at_kill": sum(t["in_flight_at_kill"] for t in trials),
            "unacknowledged_operations_found_committed": sum(t["unacked_ops_present"] for t in trials),
            "wal_syncs_seen": sum(t["wal_syncs"] for t in trials),
            "python_threads": {"trials": len(threads), "acknowledged_commits": sum(t["acked_commits"] for t in threads),
                               "acknowledged_rows": sum(t["acked_rows"] for t in threads),
                               "lost_acknowledged_rows": sum(t["lost_rows"] for t in threads)},
            "stdlib_control": R.stdlib_powercut(tmp, mode, a.seed),
        }
        if reads:
            out[mode]["reads_racing_commits"] = {
                "trials": len(reads), "acknowledged_inserts": sum(t["acked"] for t in reads), "reads": sum(t["reads"] for t in reads),
                "rows_returned": sum(t["rows_seen"] for t in reads), "returned_before_acknowledged": sum(t["seen_not_acked"] for t in reads),
                "returned_but_not_durable": 0}
        if churn:
            out[mode]["file_let_go_and_reopened"] = {
                "trials": len(churn), "with_sessions_pragma_synchronous_off": sum(1 for t in churn if t["pragmas"]),
                "acknowledged_writes": sum(t["acked_groups"] for t in churn),
                "wal_files_made": sum(t["wal_files"] for t in churn), "lost_acknowledged_writes": 0}
        log("  powercut %s: %d acknowledged rows, %d lost" % (mode, out[mode]["acknowledged_rows"], out[mode]["lost_acknowledged_rows"]))
    assert out["full"]["lost_acknowledged_rows"] == 0 and out["full"]["python_threads"]["lost_acknowledged_rows"] == 0, out
    assert out["full"]["stdlib_control"]["lost"] == 0, out["full"]["stdlib_control"]
    assert out["normal"]["stdlib_control"]["lost"] > 0, "the shim saw no loss from sqlite3 at NORMAL: %r" % out["normal"]["stdlib_control"]
    assert out["normal"]["lost_acknowledged_rows"] > 0, "no loss at --synchronous normal: the harness cannot see a missing fsync"
    return out


def part_multiprocess(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    return R.concurrent_writers(tmp, processes=4, threads=2, duration=a.duration)


def part_leaks(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for sub in ("c1", "c2", "c3"):
        os.makedirs(os.path.join(tmp, sub))
    r = R.connect_cycles(os.path.join(tmp, "c1"), a.cycles)
    R.assert_no_leaks(r["before"], r["after"], server_same=True)
    out["connect_close"] = r
    log("  %d connect/close cycles: no leak" % a.cycles)
    with R.process_server_args("--db-idle-close-ms", "50"):
        r = R.connect_cycles(os.path.join(tmp, "c2"), max(10, a.cycles // 5), files=25, warmup=25, churn=True)
    R.assert_no_leaks(r["before"], r["after"], server_same=True)
    out["connect_close_reopening_files"] = r
    log("  %d cycles with the server reopening files: no leak" % max(10, a.cycles // 5))
    r = R.server_restarts(os.path.join(tmp, "c3"), a.restarts)
    R.assert_no_leaks(r["before"], r["after"], server_same=False)
    out["server_restarts"] = r
    log("  %d server restarts: no leak" % a.restarts)
    import sqlite_rpc

    sqlite_rpc.shutdown()
    return out


def part_memory(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    import test_reliability_memory as M

    r = M.slow_client_passes(tmp, rows=200, passes=5)
    assert r["first_peak_kb"] < r["base_kb"] + 128 * 1024, r
    assert r["later_max_kb"] < r["first_peak_kb"] + 32 * 1024, r
    return r


def part_fuzz_py(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    return R.python_fuzz(tmp, a.fuzz_frames, seed=a.seed)


def part_fuzz_ts(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    report = os.path.join(tmp, "fuzz-ts.json")
    failure = os.path.join(tmp, "fuzz-ts-failure.txt")
    env = dict(os.environ, FUZZ_FRAMES=str(a.fuzz_frames), FUZZ_SEED=str(a.seed), FUZZ_REPORT=report, FUZZ_FAILURE=failure)
    # On the Node the binary embeds, as npm run test:ts does (better-sqlite3's addon is built for it).
    cmd = ["bash", "scripts/node.sh", "node_modules/vitest/vitest.mjs", "run", "test/70.reliability.fuzz.test.ts"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        detail = open(failure).read() if os.path.exists(failure) else res.stdout[-6000:] + res.stderr[-3000:]
        raise AssertionError("vitest failed (%d):\n%s" % (res.returncode, detail[:8000]))
    with open(report) as f:
        return json.load(f)


def part_replication(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    import _replication as RP

    out: Dict[str, Any] = {"sync_ms": a.replication_sync_ms}
    s3 = RP.S3rver(os.path.join(tmp, "s3")).start()
    try:
        for target in ("file", "s3"):
            trials = []
            for i in range(a.replication_trials):
                folder = os.path.join(tmp, "%s-%d" % (target, i))
                url = s3.url("lost-%d" % i) if target == "s3" else "file://%s/replica" % folder
                # slack 0: the contract itself, one sync interval
                trials.append(RP.lost_machine_trial(folder, url, sync_ms=a.replication_sync_ms, duration=5.0, slack=0.0))
                if (i + 1) % 5 == 0:
                    log("  replication %s: %d/%d trials" % (target, i + 1, a.replication_trials))
            rpos = sorted(t["rpo_s"] for t in trials)
            out[target] = {
                "trials": len(trials),
                "acknowledged_rows": sum(t["acked"] for t in trials),
                "restored_rows": sum(t["restored"] for t in trials),
                "rows_lost_younger_than_interval": sum(t["missing"] for t in trials),
                "rows_lost_older_than_interval": sum(t["missing_older_than_cutoff"] for t in trials),
                "integrity_ok": sum(1 for t in trials if t["integrity"] == "ok"),
                "generations": sorted({t["generations"] for t in trials}),
                "rpo_s": {"min": rpos[0], "median": rpos[len(rpos) // 2], "max": rpos[-1]},
            }
            log("  replication %s: RPO median %.3f s, max %.3f s; rows older than the interval lost: %d"
                % (target, out[target]["rpo_s"]["median"], out[target]["rpo_s"]["max"], out[target]["rows_lost_older_than_interval"]))
        out["s3_outage"] = RP.outage_trial(os.path.join(tmp, "outage"), s3, a.replication_outage_s)
        log("  replication outage: %r" % out["s3_outage"])
    finally:
        s3.stop()
    out["litestream_killed"] = RP.litestream_kill_trial(os.path.join(tmp, "killed"), "file://%s/killed-replica" % tmp)
    for target in ("file", "s3"):
        assert out[target]["rows_lost_older_than_interval"] == 0, out[target]
        assert out[target]["integrity_ok"] == out[target]["trials"], out[target]
    o = out["s3_outage"]
    assert o["write_errors"] == [] and o["all"] and o["integrity"] == "ok", o
    k = out["litestream_killed"]
    assert k["all"] and k["generations"] == 1 and k["after"]["restarts"] == 1, k
    return out


def part_short(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[os.path.join(TESTS, f) for f in SHORT_FILES]]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-2000:]
    if res.returncode != 0:
        raise AssertionError("pytest failed:\n%s" % res.stdout[-6000:])
    return {"files": SHORT_FILES, "summary": summary}


RUNNERS: Dict[str, Callable[[argparse.Namespace, str], Dict[str, Any]]] = {
    "kill9": part_kill9, "powercut": part_powercut, "multiprocess": part_multiprocess, "leaks": part_leaks, "memory": part_memory,
    "fuzz-py": part_fuzz_py, "fuzz-ts": part_fuzz_ts, "short": part_short, "replication": part_replication,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50, help="kill -9 trials per synchronous mode (default 50)")
    ap.add_argument("--powercut-trials", type=int, default=30, help="power-cut trials per synchronous mode (default 30)")
    ap.add_argument("--duration", type=float, default=60, help="seconds the 4 writer processes run (default 60)")
    ap.add_argument("--cycles", type=int, default=1000, help="connect/close cycles (default 1000)")
    ap.add_argument("--restarts", type=int, default=1000, help="server restarts (default 1000)")
    ap.add_argument("--fuzz-frames", type=int, default=100_000, help="frames per fuzzing side (default 100000)")
    ap.add_argument("--replication-trials", type=int, default=20, help="lost-machine trials per replication target (default 20)")
    ap.add_argument("--replication-sync-ms", type=int, default=1000, help="--replicate-sync-ms of those trials (default 1000)")
    ap.add_argument("--replication-outage-s", type=float, default=30, help="how long s3rver is down (default 30)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="seed of the kill trials and the fuzzers")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "reliability.json"), help="where the figures go")
    a = ap.parse_args()
    parts = [p.strip() for p in a.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in RUNNERS]
    if unknown:
        ap.error("unknown part(s): %s" % ", ".join(unknown))
    if not os.access(R.BINARY, os.X_OK):
        ap.error("no server binary at %s (npm run build)" % R.BINARY)

    record: Dict[str, Any] = {
        "command": "npm run reliability -- " + " ".join(sys.argv[1:]) if sys.argv[1:] else "npm run reliability",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "args": vars(a), "parts": {},
    }
    failed: List[str] = []
    t_all = time.monotonic()
    for name in parts:
        log("%s ..." % name)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="sqlite-rpc-reliability-") as tmp:
            try:
                figures = RUNNERS[name](a, tmp)
                status = "passed"
            except BaseException as e:  # noqa: BLE001 - a failed part is reported, the others still run
                if isinstance(e, KeyboardInterrupt):
                    raise
                figures = {"error": "%s: %s" % (type(e).__name__, e), "traceback": traceback.format_exc()[-4000:]}
                status = "FAILED"
                failed.append(name)
        seconds = round(time.monotonic() - t0, 1)
        record["parts"][name] = {"status": status, "seconds": seconds, "figures": figures}
        log("%s %s in %.0f s" % (name, status, seconds))
        if status != "passed":
            print(figures["error"][:4000], flush=True)
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(record, f, indent=1, default=str)
    record["seconds"] = round(time.monotonic() - t_all, 1)
    record["outcome"] = "FAILED: " + ", ".join(failed) if failed else "all passed"
    with open(a.out, "w") as f:
        json.dump(record, f, indent=1, default=str)
    log("done in %.0f s: %s (figures in %s)" % (record["seconds"], record["outcome"], os.path.relpath(a.out, ROOT)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
