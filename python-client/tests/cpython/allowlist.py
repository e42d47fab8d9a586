"""The documented differences: CPython test.test_sqlite3 tests whose outcome with sqlite_rpc
differs from the stdlib's, grouped by cause, each cause with a one-line reason.

This is the one place the list is kept. python-client/DIFFERENCES.md mirrors it (section
"CPython's own test suite"; `python allowlist.py` prints that section), and
tests/test_cpython_suite.py checks that the two name the same tests, that every test that
differs is listed here, and reports entries that no longer differ. When a cause is fixed,
delete its group here and in DIFFERENCES.md.

Test ids are test.test_sqlite3's, without the "test.test_sqlite3." prefix. Recorded
against CPython 3.11.7's suite.
"""
from __future__ import annotations

import textwrap
from typing import Dict, List, Tuple

# (cause, reason, tests). The reason names the sqlite_rpc behaviour the tests hit.
GROUPS: List[Tuple[str, str, List[str]]] = [
    ("non-utf8-file-names",
     "a file name that is not valid UTF-8 (the suite's `TESTFN_UNDECODABLE` as a bytes path, or "
     "a `file:` URI whose %-escapes spell it) raises `NotSupportedError` naming the file, where "
     "sqlite3 opens it: the server takes file names as UTF-8 text (DIFFERENCES.md item 10)",
     ["test_dbapi.OpenTests.test_open_with_undecodable_path",
      "test_dbapi.OpenTests.test_open_undecodable_uri"]),

    ("invalid-utf8-text",
     "TEXT that is not UTF-8 arrives with U+FFFD instead of raising `OperationalError: Could "
     "not decode to UTF-8 column ...` (DIFFERENCES.md item 10)",
     ["test_regression.RegressionTests.test_error_msg_decode_error"]),
]


def by_test() -> Dict[str, Tuple[str, str]]:
    """{test id: (cause, reason)}."""
    out: Dict[str, Tuple[str, str]] = {}
    for cause, reason, tests in GROUPS:
        for t in tests:
            assert t not in out, "listed twice: %s" % t
            out[t] = (cause, reason)
    return out


DIFFERENCES_HEADING = "## CPython's own test suite"


def markdown() -> str:
    """The DIFFERENCES.md section that mirrors GROUPS."""
    lines = [
        DIFFERENCES_HEADING,
        "",
        "`npm run test:cpython` runs CPython's `test.test_sqlite3` (the public-API tests: those",
        "of unsupported APIs and of CPython internals are left out, see",
        "`tests/cpython/selection.py`) against sqlite_rpc and against the stdlib, and compares",
        "each test's outcome. These tests differ; `tests/test_cpython_suite.py` fails on any",
        "other, and the list is kept in `tests/cpython/allowlist.py`.",
        "",
    ]
    for cause, reason, tests in GROUPS:
        lines.extend(textwrap.wrap("- **%s**: %s." % (cause, reason), width=90, subsequent_indent="  ",
                                   break_long_words=False, break_on_hyphens=False))
        for t in tests:
            lines.append("  - `%s`" % t)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
