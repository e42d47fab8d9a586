"""CPython's own sqlite3 tests (test.test_sqlite3) against sqlite_rpc, compared with the stdlib.

tests/cpython/compare.py runs the suite's public-API tests twice, in child processes: once
with `sqlite3` bound to sqlite_rpc, once with the stdlib (the baseline). Every test whose
outcome differs must be one of the documented differences in tests/cpython/allowlist.py
(mirrored in DIFFERENCES.md); a new one fails here.

An allow-listed test that no longer differs is reported (a warning, and printed), not
failed, unless SQLITE_RPC_CPYTHON_STRICT=1: the causes are being fixed while other work goes
on, and one fix often clears tests of another group; failing someone's unrelated change for
that would teach people to ignore this test. The stale entries are named in the warning
and in `npm run test:cpython`'s output, so the list is trimmed when the fix lands.

Takes 2-3 s, plus 30 s for each test that hangs (--test-timeout in compare.py).
"""
from __future__ import annotations

import os
import re
import sys
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "cpython"))

import allowlist  # noqa: E402
import compare  # noqa: E402

DIFFERENCES_MD = os.path.join(HERE, "..", "DIFFERENCES.md")


@pytest.fixture(scope="module")
def report() -> dict:
    return compare.compare()


def test_stdlib_baseline_passes(report):
    """The baseline must be clean, or the comparison says nothing about sqlite_rpc."""
    bad = {o: n for o, n in report["outcomes"]["sqlite3"].items() if o not in ("pass", "skip")}
    assert not bad, "the stdlib side did not pass its own suite: %s" % bad
    assert report["public_tests"] > 200, report["public_tests"]


def test_every_difference_is_documented(report):
    new = [d for d in report["differences"] if not d["allowlisted"]]
    lines = ["%s: sqlite3 %s, sqlite_rpc %s: %s" % (d["id"], d["sqlite3"], d["sqlite_rpc"], d["sqlite_rpc_detail"])
             for d in new]
    assert not new, ("%d test(s) of CPython's suite differ and are not in tests/cpython/allowlist.py "
                     "(fix them, or document them there and in DIFFERENCES.md):\n  " % len(new)) + "\n  ".join(lines)


def test_allowlist_has_no_stale_entries(report):
    stale = report["stale_allowlist"]
    if not stale:
        return
    msg = ("%d allow-listed test(s) now behave as with sqlite3; remove them from tests/cpython/allowlist.py "
           "and DIFFERENCES.md: %s" % (len(stale), ", ".join(stale)))
    if os.environ.get("SQLITE_RPC_CPYTHON_STRICT", "") not in ("", "0"):
        pytest.fail(msg)
    warnings.warn(msg)
    print(msg)


def test_differences_md_mirrors_the_allowlist():
    with open(DIFFERENCES_MD, encoding="utf-8") as f:
        text = f.read()
    assert allowlist.DIFFERENCES_HEADING in text, "DIFFERENCES.md lacks the section %r" % allowlist.DIFFERENCES_HEADING
    section = text.split(allowlist.DIFFERENCES_HEADING, 1)[1].split("\n## ", 1)[0]
    in_md = set(re.findall(r"`(test_\w+\.\w+\.test_\w+)`", section))
    in_list = set(allowlist.by_test())
    assert in_md == in_list, "only in DIFFERENCES.md: %s; only in allowlist.py: %s" % (
        sorted(in_md - in_list), sorted(in_list - in_md))
    causes = set(re.findall(r"^- \*\*([\w-]+)\*\*", section, re.M))
    assert causes == {c for c, _r, _t in allowlist.GROUPS}
