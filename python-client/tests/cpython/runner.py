"""Child process: run CPython's test.test_sqlite3 against one implementation.

    python runner.py --impl sqlite_rpc|sqlite3 --events FILE [--skip-ids FILE] [--only PART]

(--events - writes to stdout: `runner.py --impl sqlite_rpc --events - --only test_dump` is
the quick way to rerun a few tests against sqlite_rpc while fixing them.)

With --impl sqlite_rpc, `sys.modules["sqlite3"]` (and `sqlite3.dbapi2`) is sqlite_rpc
before any test module is imported, so every `import sqlite3 as sqlite` in the suite binds
sqlite_rpc. The real sqlite3 package, its dbapi2 and dump submodules and `_sqlite3` are
imported first and stay loaded (sqlite_rpc itself uses them: its exception classes, the
adapter registries, iterdump); only the names the suite imports are redirected. `_sqlite3`
is left alone: the suite only checks that it exists. A subprocess the suite starts (one
test, left out by selection.py) gets the stdlib: the swap is in this process only.

One JSON object per line is appended to FILE and flushed as the run goes: {"start": id}
before a test, then {"id", "outcome", "detail"} after it, and {"done": true} at the end.
A test that started and never ended tells the parent which test hung or crashed the run.
Outcomes: pass, fail, error, skip, xfail (expected failure), xpass (unexpected success).
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import time
import traceback
import unittest

SUITE = "test.test_sqlite3"


def import_test_package() -> None:
    """test.test_sqlite3 from this interpreter, or from the base interpreter's stdlib."""
    try:
        import test.test_sqlite3  # noqa: F401
        return
    except ImportError:
        pass
    import sysconfig

    for key in ("stdlib", "platstdlib"):
        base = sysconfig.get_paths(vars={"installed_base": sys.base_prefix, "base": sys.base_prefix}).get(key)
        if base and os.path.isdir(os.path.join(base, "test", "test_sqlite3")):
            sys.modules.pop("test", None)
            sys.path.insert(0, base)
            break
    import test.test_sqlite3  # noqa: F401,F811  (raises if it is nowhere)


def install_sqlite_rpc() -> None:
    import sqlite3  # noqa: F401  the real package, kept loaded for sqlite_rpc's own use
    import sqlite3.dbapi2  # noqa: F401
    import sqlite3.dump  # noqa: F401  (sqlite_rpc's iterdump imports it lazily)

    import sqlite_rpc

    if sqlite_rpc.backend() != "sqlite-rpc":
        from sqlite_rpc import fallback

        sys.stderr.write("runner: sqlite_rpc would fall back to the stdlib (%s); refusing to compare sqlite3 with itself\n"
                         % fallback.disabled_reason())
        sys.exit(3)
    sqlite_rpc.server_info()  # start the server now, not inside the first test
    sys.modules["sqlite3"] = sqlite_rpc
    sys.modules["sqlite3.dbapi2"] = sqlite_rpc


def probe(names) -> dict:
    """{API name: "unsupported" (NotSupportedError) or "answers" (anything else)}, tried on a
    private in-memory connection of the implementation installed as sqlite3 (a function,
    aggregate or collation is also used in a statement)."""
    import sqlite3 as mod

    class Agg:
        def step(self, *a):
            pass

        def finalize(self):
            return 0

        def value(self):
            return 0

        def inverse(self, *a):
            pass

    out = {}
    for name in names:
        cx = mod.connect(":memory:")
        cx.execute("create table t(b)")
        cx.execute("insert into t values (x'00')")
        cx.commit()
        args = {
            "create_function": ("f", 0, lambda: 1), "create_aggregate": ("a", 0, Agg),
            "create_window_function": ("w", 0, Agg), "create_collation": ("c", lambda a, b: 0),
            "set_authorizer": (lambda *a: mod.SQLITE_OK,), "set_progress_handler": (lambda: 0, 1),
            "set_trace_callback": (lambda stmt: None,),
            "setlimit": (mod.SQLITE_LIMIT_LENGTH, -1), "getlimit": (mod.SQLITE_LIMIT_LENGTH,),
            "interrupt": (), "backup": (mod.connect(":memory:"),), "blobopen": ("t", "b", 1),
            "serialize": (), "deserialize": (b"",),
        }.get(name, ())
        use = {  # registering may be accepted while using it is not: use it too
            "create_function": "select f()", "create_aggregate": "select a() from t",
            "create_window_function": "select w() over () from t",
            "create_collation": "select b from t order by cast(b as text) collate c",
        }.get(name)
        try:
            getattr(cx, name)(*args)
            if use:
                cx.execute(use).fetchall()
            out[name] = "answers"
        except mod.NotSupportedError:
            out[name] = "unsupported"
        except Exception as e:  # supported, or at least not refused outright
            out[name] = "answers (%s)" % type(e).__name__
        finally:
            try:
                cx.close()
            except Exception:
                pass
    return out


def first_line(err) -> str:
    exc_type, exc, _tb = err
    lines = traceback.format_exception_only(exc_type, exc)
    text = "".join(lines).strip().splitlines()
    return text[0][:500] if text else exc_type.__name__


class EventResult(unittest.TestResult):
    """Reduces each test to one outcome and writes it as soon as the test ends."""

    def __init__(self, out) -> None:
        super().__init__()
        self.out = out
        self.cur = None

    def emit(self, obj) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def startTest(self, test) -> None:
        super().startTest(test)
        self.cur = {"id": test.id(), "outcome": "pass", "detail": None, "t0": time.monotonic()}
        self.emit({"start": test.id()})

    def _set(self, outcome: str, detail) -> None:
        # error beats fail beats the rest; the first message of the winning kind is kept.
        rank = {"pass": 0, "skip": 1, "xfail": 1, "xpass": 1, "fail": 2, "error": 3}
        if rank[outcome] > rank[self.cur["outcome"]]:
            self.cur["outcome"], self.cur["detail"] = outcome, detail

    def _record(self, test, outcome: str, detail) -> None:
        if isinstance(test, unittest.case._SubTest):  # e.g. a skip inside a subTest
            test = test.test_case
        if not isinstance(test, unittest.TestCase) or self.cur is None or self.cur["id"] != test.id():
            # setUpClass/setUpModule (an _ErrorHolder) or a tearDown outside any test:
            # reported under its own id, e.g. "setUpClass (test.test_sqlite3.test_x.Cls)".
            self.emit({"id": test.id(), "outcome": outcome, "detail": detail})
            return
        self._set(outcome, detail)

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._record(test, "error", first_line(err))

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._record(test, "fail", first_line(err))

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._set(kind, "%s %s" % (subtest._subDescription(), first_line(err)))

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip", str(reason)[:500])

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._set("xfail", first_line(err))

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._set("xpass", None)

    def stopTest(self, test) -> None:
        super().stopTest(test)
        if self.cur is not None:
            self.cur["seconds"] = round(time.monotonic() - self.cur.pop("t0"), 3)
            self.emit(self.cur)
        self.cur = None


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=("sqlite3", "sqlite_rpc"), required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--skip-ids", help="file with test ids (one a line) not to run")
    ap.add_argument("--only", action="append", default=[],
                    help="run only the tests whose id contains this (repeatable), e.g. test_regression.RegressionTests")
    ap.add_argument("--list", action="store_true", help="write the test ids instead of running them")
    ap.add_argument("--probe", help="comma-separated Connection methods: write whether each raises NotSupportedError")
    args = ap.parse_args()
    # The parent sends SIGUSR1 before killing a hung run: every thread's stack goes to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    if args.impl == "sqlite_rpc":
        install_sqlite_rpc()
    if args.probe:
        with open(args.events, "a", encoding="utf-8") as out:
            out.write(json.dumps({"probe": probe(args.probe.split(","))}) + "\n")
        return 0
    import_test_package()

    skip = set()
    if args.skip_ids:
        with open(args.skip_ids, encoding="utf-8") as f:
            skip = {line.strip() for line in f if line.strip()}

    loader = unittest.TestLoader()
    suite = loader.loadTestsFromName(SUITE)
    tests = [t for t in iter_tests(suite) if t.id() not in skip]
    if args.only:
        tests = [t for t in tests if any(o in t.id() for o in args.only)]
    with (os.fdopen(os.dup(1), "w") if args.events == "-" else open(args.events, "a", encoding="utf-8")) as out:
        if args.list:
            for t in tests:
                out.write(json.dumps({"listed": t.id()}) + "\n")
            return 0
        result = EventResult(out)
        # One flat suite in the loader's order: class fixtures still run once per class.
        unittest.TestSuite(tests).run(result)
        result.emit({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
