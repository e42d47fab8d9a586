"""CPython's own sqlite3 tests, run against sqlite_rpc and against the stdlib, compared.

    npm run test:cpython            (= .venv/bin/python python-client/tests/cpython/compare.py)

Each side runs `test.test_sqlite3` (the interpreter's copy) in its own child process
(runner.py) with a fresh temporary working directory, the suite writing TESTFN there. The
child reports every test as it starts and ends; a test that makes no progress for
--test-timeout seconds is recorded as "hang", one that kills the child as "crash", and the
child is started again for the tests still to run. So a hang costs one test, not the run.

The comparison covers the suite's public-API tests (selection.py says what is left out
and why; the rest run on neither side). Prints a summary grouped by the documented causes
of allowlist.py, writes --json (bench/results/cpython-suite.json) with every differing
test, both outcomes and the first line of the sqlite_rpc failure (and the stack of a hang),
and exits 0: differences are a report, tests/test_cpython_suite.py judges them. It also
says which allow-listed tests no longer differ, and which APIs left out as unsupported
sqlite_rpc now answers without NotSupportedError (their tests could be compared).

Counting: a test is one unittest test id; its outcome is pass, fail (an assertion, in the
test or one of its subtests), error (any other exception), skip, hang or crash; error
beats fail. Two sides differ on a test when these outcomes differ.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
RUNNER = os.path.join(HERE, "runner.py")
BINARY = os.path.join(ROOT, "dist", "sqlite-rpc")
DEFAULT_JSON = os.path.join(ROOT, "bench", "results", "cpython-suite.json")

sys.path.insert(0, HERE)
import allowlist  # noqa: E402
import selection  # noqa: E402

PREFIX = "test.test_sqlite3."


def short(test_id: str) -> str:
    return test_id[len(PREFIX):] if test_id.startswith(PREFIX) else test_id


def child_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SQLITE_RPC_DISABLE", "SQLITE_RPC_ARGS")}
    env["SQLITE_RPC_BINARY"] = BINARY  # the checkout's server, as the pytest suite pins it
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONWARNINGS", None)
    return env


def _dump_stacks(proc: subprocess.Popen, stderr_path: str) -> List[str]:
    """Ask the hung child for its stacks (faulthandler on SIGUSR1): the test thread's frames,
    innermost first, as "file.py:line function"."""
    try:
        size = os.path.getsize(stderr_path)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        with open(stderr_path, "rb") as f:
            f.seek(size)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    frames: List[str] = []
    block = text.split("Current thread", 1)[1].splitlines()[1:] if "Current thread" in text else []
    for line in block:
        line = line.strip()
        if not line:
            break
        m = re.match(r'File "(.*)", line (\d+) in (.*)', line)
        frames.append("%s:%s %s" % (os.path.basename(m.group(1)), m.group(2), m.group(3)) if m else line)
    return frames


def _kill(proc: subprocess.Popen) -> None:
    """The child was started in a session of its own: end its group (it and its server)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


EXIT_ID = "(the child process, after its last test)"


def run_side(impl: str, test_timeout: float, side_timeout: float, leave_out=(), order=(), log=None) -> Dict[str, dict]:
    """{test id: {"outcome", "detail", "seconds"}} for one implementation (without leave_out).

    order is the suite's run order: a hang or crash between tests (a class fixture) is
    charged to the next test to run."""
    results: Dict[str, dict] = {}
    tmp = tempfile.mkdtemp(prefix="cpython-suite-%s-" % impl)
    deadline = time.monotonic() + side_timeout
    try:
        for attempt in range(1, 200):
            work = os.path.join(tmp, "run%d" % attempt)
            os.mkdir(work)
            events = os.path.join(tmp, "events%d.jsonl" % attempt)
            skip = os.path.join(tmp, "skip%d.txt" % attempt)
            with open(skip, "w", encoding="utf-8") as f:
                f.write("".join(i + "\n" for i in list(leave_out) + list(results)))
            open(events, "w").close()
            stderr_path = os.path.join(tmp, "stderr%d.txt" % attempt)
            with open(stderr_path, "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, RUNNER, "--impl", impl, "--events", events, "--skip-ids", skip],
                    cwd=work, env=child_env(), stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            current: Optional[str] = None
            current_since = time.monotonic()
            done = False
            pos = 0
            buf = ""
            why = None
            stack: List[str] = []
            events_seen = 0
            while True:
                with open(events, encoding="utf-8") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                buf += chunk
                while "\n" in buf:
                    line, buf = buf.split("\n", 1)
                    ev = json.loads(line)
                    events_seen += 1
                    if "start" in ev:
                        current, current_since = ev["start"], time.monotonic()
                    elif "done" in ev:
                        done = True
                    else:
                        results[ev["id"]] = {"outcome": ev["outcome"], "detail": ev.get("detail"),
                                             "seconds": ev.get("seconds")}
                        if ev["id"] == current:
                            current = None
                        current_since = time.monotonic()
                rc = proc.poll()
                if rc is not None and not chunk:
                    break
                now = time.monotonic()
                if rc is None and now - current_since > test_timeout:
                    why = "hang"
                    stack = _dump_stacks(proc, stderr_path)
                    _kill(proc)
                    break
                if rc is None and now > deadline:
                    why = "side-timeout"
                    _kill(proc)
                    break
                time.sleep(0.05)
            with open(stderr_path, "rb") as f:
                tail = [ln for ln in f.read().decode("utf-8", "replace").strip().splitlines()
                        if not ln.startswith("test_sqlite3: testing with version")][-1:] or [""]
            if done:
                if why == "hang":  # every test ran, then the interpreter did not exit
                    results[EXIT_ID] = {"outcome": "hang", "detail": "did not exit within %.0f s after its last test%s" % (
                        test_timeout, "; stuck in " + " <- ".join(stack[:4]) if stack else ""), "seconds": None, "stack": stack}
                return results
            if events_seen == 0 and not results:
                raise RuntimeError("%s runner did not start (exit %s): %s" % (impl, proc.returncode, tail[0]))
            if why == "side-timeout":
                if current is not None:
                    results[current] = {"outcome": "hang", "detail": "still running when the %.0f s limit for the side ran out" % side_timeout, "seconds": None}
                if log:
                    log("  %s: stopped after %.0f s (--side-timeout); the tests not run are reported missing" % (impl, side_timeout))
                return results
            where = ""
            if current is None:
                # Between tests (setUpClass, setUpModule): charged to the next one to run.
                skipped = set(leave_out) | set(results)
                current = next((i for i in order if i not in skipped), None)
                if current is None:
                    raise RuntimeError("%s runner stopped outside a test (exit %s, %s): %s" % (impl, proc.returncode, why or "crash", tail[0]))
                where = " (before the test started: a class or module fixture)"
            if why == "hang":
                results[current] = {"outcome": "hang", "detail": "no progress for %.0f s%s%s" % (
                    test_timeout, where, "; stuck in " + " <- ".join(stack[:4]) if stack else ""), "seconds": None, "stack": stack}
            else:
                results[current] = {"outcome": "crash", "detail": "the child exited with %s%s: %s" % (
                    proc.returncode, where, tail[0]), "seconds": None}
            if log:
                log("  %s: %s in %s; restarting for the remaining tests" % (impl, results[current]["outcome"], short(current)))
        raise RuntimeError("%s: too many restarts" % impl)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def list_tests() -> List[str]:
    """The suite's test ids in run order (loaded with the stdlib sqlite3: no server needed)."""
    with tempfile.TemporaryDirectory(prefix="cpython-suite-list-") as tmp:
        events = os.path.join(tmp, "list.jsonl")
        subprocess.run([sys.executable, RUNNER, "--impl", "sqlite3", "--events", events, "--list"],
                       cwd=tmp, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, check=True)
        with open(events, encoding="utf-8") as f:
            return [json.loads(line)["listed"] for line in f if line.strip()]


def probe_unsupported() -> Dict[str, str]:
    """What sqlite_rpc answers now for each API that selection.py leaves tests out for."""
    with tempfile.TemporaryDirectory(prefix="cpython-suite-probe-") as tmp:
        events = os.path.join(tmp, "probe.jsonl")
        subprocess.run([sys.executable, RUNNER, "--impl", "sqlite_rpc", "--events", events,
                        "--probe", ",".join(selection.unsupported_apis())],
                       cwd=tmp, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, check=True, start_new_session=True)
        with open(events, encoding="utf-8") as f:
            return json.loads(f.read())["probe"]


def compare(test_timeout: float = 30.0, side_timeout: float = 900.0, include_all: bool = False, log=None) -> dict:
    """Run both sides and compare them; the report compare.py prints and writes."""
    t0 = time.monotonic()
    listed = list_tests()
    excluded = {} if include_all else {i: selection.why_excluded(i) for i in listed}
    excluded = {i: why for i, why in excluded.items() if why}
    timing = {}
    sides = {}
    for impl in ("sqlite3", "sqlite_rpc"):
        t = time.monotonic()
        sides[impl] = run_side(impl, test_timeout, side_timeout, sorted(excluded), listed, log)
        timing[impl] = round(time.monotonic() - t, 1)
    base, rpc = sides["sqlite3"], sides["sqlite_rpc"]
    # Ids either side reported beyond the listed ones: setUpClass errors, failed imports.
    ids = [i for i in listed if i not in excluded] + sorted((set(base) | set(rpc)) - set(listed))
    missing = {"outcome": "missing", "detail": "never reported (its run was cut short)", "seconds": None}
    allowed = allowlist.by_test()
    diffs = []
    for i in ids:
        b, r = base.get(i, missing), rpc.get(i, missing)
        if b["outcome"] != r["outcome"]:
            d = {"id": short(i), "sqlite3": b["outcome"], "sqlite_rpc": r["outcome"],
                 "sqlite_rpc_detail": r["detail"]}
            if b["outcome"] != "pass":
                d["sqlite3_detail"] = b["detail"]
            if r.get("stack"):
                d["sqlite_rpc_stack"] = r["stack"]
            cause = allowed.get(short(i))
            d["allowlisted"] = cause is not None
            if cause is not None:
                d["cause"], d["reason"] = cause
            diffs.append(d)
    differing = {d["id"] for d in diffs}
    stale = sorted(t for t in allowed if t not in differing)
    outcomes: Dict[str, Dict[str, int]] = {impl: {} for impl in sides}
    for impl, res in sides.items():
        for i in ids:
            o = res.get(i, missing)["outcome"]
            outcomes[impl][o] = outcomes[impl].get(o, 0) + 1
    by_reason: Dict[str, int] = {}
    for kind, _detail in excluded.values():
        by_reason[kind] = by_reason.get(kind, 0) + 1
    # APIs that selection.py still treats as unsupported but sqlite_rpc now answers.
    probed = probe_unsupported()
    now_answered = {}
    for api, answer in sorted(probed.items()):
        if answer != "unsupported":
            n = sum(1 for kind, detail in excluded.values() if kind == selection.UNSUPPORTED and api in detail)
            now_answered[api] = {"answer": answer, "tests_left_out": n}
    return {
        "suite": "test.test_sqlite3",
        "python": sys.version.split()[0],
        "sqlite_rpc_engine": rpc_engine_version(),
        "total_tests": len(listed),
        "public_tests": len(ids),
        "excluded_tests": len(excluded),
        "excluded_by_reason": by_reason,
        "differing": len(diffs),
        "new_differences": sorted(d["id"] for d in diffs if not d["allowlisted"]),
        "stale_allowlist": stale,
        "outcomes": outcomes,
        "seconds": dict(timing, total=round(time.monotonic() - t0, 1)),
        "slowest_sqlite_rpc": sorted(
            ({"id": short(i), "seconds": rpc[i]["seconds"]} for i in ids if rpc.get(i, {}).get("seconds")),
            key=lambda d: -d["seconds"])[:5],
        "differences": diffs,
        "no_longer_unsupported": now_answered,
        "excluded": {short(i): selection.describe(why) for i, why in excluded.items()},
    }


def rpc_engine_version() -> Optional[str]:
    try:
        out = subprocess.run([BINARY, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def summary(rep: dict) -> str:
    lines = [
        "CPython %s test.test_sqlite3: %d tests; %d public-API tests compared, %d left out (%s; see selection.py)" % (
            rep["python"], rep["total_tests"], rep["public_tests"], rep["excluded_tests"],
            ", ".join("%d: %s" % (n, why) for why, n in sorted(rep["excluded_by_reason"].items(), key=lambda kv: -kv[1]))),
        "outcomes     sqlite3: %s" % ", ".join("%s %d" % kv for kv in sorted(rep["outcomes"]["sqlite3"].items())),
        "          sqlite_rpc: %s" % ", ".join("%s %d" % kv for kv in sorted(rep["outcomes"]["sqlite_rpc"].items())),
        "",
        "%d of %d public tests differ (sqlite3 -> sqlite_rpc):" % (rep["differing"], rep["public_tests"]),
    ]
    groups: Dict[str, List[dict]] = {}
    for d in rep["differences"]:
        groups.setdefault(d.get("cause", "NOT IN THE ALLOW-LIST (new)"), []).append(d)
    for cause, ds in sorted(groups.items(), key=lambda kv: (kv[0] != "NOT IN THE ALLOW-LIST (new)", kv[0])):
        lines.append("  [%s] %s" % (cause, ds[0].get("reason", "")))
        for d in ds:
            lines.append("    %-68s %s -> %s  %s" % (d["id"], d["sqlite3"], d["sqlite_rpc"], (d["sqlite_rpc_detail"] or "")[:150]))
    if rep["no_longer_unsupported"]:
        lines.append("")
        lines.append("sqlite_rpc no longer raises NotSupportedError for these APIs, whose tests selection.py still leaves out")
        lines.append("(delete their rules there to compare those tests too):")
        for api, info in rep["no_longer_unsupported"].items():
            lines.append("    %-24s %s; %d tests left out by rules naming it" % (api, info["answer"], info["tests_left_out"]))
    if rep["stale_allowlist"]:
        lines.append("")
        lines.append("allow-listed but now the same on both sides (remove from allowlist.py and DIFFERENCES.md):")
        lines.extend("    " + t for t in rep["stale_allowlist"])
    lines.append("")
    lines.append("%d differences, %d not in the allow-list; time: sqlite3 %s s, sqlite_rpc %s s, total %s s" % (
        rep["differing"], len(rep["new_differences"]), rep["seconds"]["sqlite3"], rep["seconds"]["sqlite_rpc"], rep["seconds"]["total"]))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=DEFAULT_JSON, help="where to write the report (default %(default)s; '' for none)")
    ap.add_argument("--test-timeout", type=float, default=30.0, help="seconds without progress before a test counts as a hang")
    ap.add_argument("--side-timeout", type=float, default=900.0, help="seconds for each side's whole run")
    ap.add_argument("--all", action="store_true", help="compare every test, including the ones selection.py leaves out")
    args = ap.parse_args(argv)
    if not (os.path.isfile(BINARY) and os.access(BINARY, os.X_OK)):
        print("sqlite-rpc server binary missing: %s (npm run build)" % BINARY, file=sys.stderr)
        return 4
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rep = compare(args.test_timeout, args.side_timeout, args.all, log)
    print(summary(rep))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rep, f, indent=1)
            f.write("\n")
        print("report: %s" % os.path.relpath(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
