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
    ("gc-deadlock",
     "hang: `Connection.__del__`, run by the garbage collector while the same thread is inside "
     "`ServerProcess._write` holding the non-reentrant `_wlock`, calls `send()` -> `_write()` "
     "and waits for that lock forever (`Cursor.__del__` avoids this; `Connection.__del__` does "
     "not). It depends on when a collection happens, so some runs do not meet it",
     ["test_regression.RegressionTests.test_statement_finalization_on_close_db"]),

    ("non-utf8-file-names",
     "file names that are not UTF-8 are refused or changed: a bytes path raises "
     "`UnicodeDecodeError` (sqlite3 takes any bytes path), and a `file:` URI whose %-escapes "
     "decode to non-UTF-8 bytes opens another file, with U+FFFD in its name",
     ["test_dbapi.OpenTests.test_open_with_undecodable_path",
      "test_dbapi.OpenTests.test_open_undecodable_uri"]),

    ("stale-description",
     "`cursor.description` of a cached statement keeps the old column list after `ALTER TABLE "
     "ADD COLUMN` (the rows do have the new column): running `select * from test` again gives "
     "1 column in description and 2 in each row",
     ["test_dbapi.CursorTests.test_column_count"]),

    ("unsupported-before-checks",
     "the unsupported methods (`create_function`, `set_trace_callback`, `set_authorizer`, "
     "`create_collation`, `setlimit`, `getlimit`, `blobopen`, `create_window_function`...) "
     "raise `NotSupportedError` before the closed-connection and same-thread checks, where "
     "sqlite3 raises `ProgrammingError`",
     ["test_dbapi.ConnectionTests.test_use_after_close",
      "test_dbapi.ThreadTests.test_check_connection_thread"]),

    ("deprecated-module-attributes",
     "the module lacks sqlite3's deprecated `OptimizedUnicode` and `enable_shared_cache` "
     "(`AttributeError`; sqlite3 has them, with a `DeprecationWarning`)",
     ["test_factory.TextFactoryTests.test_optimized_unicode",
      "test_dbapi.ModuleTests.test_shared_cache_deprecated"]),

    ("factory-positional-args",
     "`connect()` passes its arguments to `factory` positionally, so a factory that sets "
     "`kwargs['isolation_level']` gets it twice (`TypeError`); sqlite3 passes them by keyword "
     "(gh-95132)",
     ["test_factory.ConnectionFactoryTests.test_connection_factory_relayed_call"]),

    ("cursor-factory-checks",
     "`cursor(None)` is taken as the default factory (sqlite3: `TypeError`); a factory's "
     "result is checked with `isinstance`, so an object whose `__class__` claims `Cursor` "
     "passes; `Row(non_cursor, ())` raises `AttributeError`, not `TypeError`",
     ["test_factory.CursorFactoryTests.test_invalid_factory",
      "test_factory.RowFactoryTests.test_fake_cursor_class"]),

    ("row-not-sequence",
     "`sqlite_rpc.Row` is not registered as a `collections.abc.Sequence` (`sqlite3.Row` is)",
     ["test_factory.RowFactoryTests.test_sqlite_row_as_sequence"]),

    ("base-init-not-called",
     "a `Connection`/`Cursor` subclass whose `__init__` skips the base `__init__` fails with "
     "`AttributeError` (`_closed`, `_connection`), not `ProgrammingError: Base "
     "Connection.__init__ not called`; a connection whose second `__init__` failed keeps "
     "working on its old database",
     ["test_regression.RegressionTests.test_connection_constructor_call_check",
      "test_regression.RegressionTests.test_cursor_constructor_call_check",
      "test_dbapi.ConnectionTests.test_connection_bad_reinit"]),

    ("recursive-cursor-use",
     "no `ProgrammingError: Recursive use of cursors not allowed`: the generator feeding "
     "`executemany` may execute on the same cursor, and a converter may close, re-`__init__` "
     "or fetch from the cursor whose row it converts; sqlite3 guards the cursor meanwhile",
     ["test_regression.RegressionTests.test_recursive_cursor_use",
      "test_regression.RecursiveUseOfCursors.test_recursive_cursor_close",
      "test_regression.RecursiveUseOfCursors.test_recursive_cursor_init",
      "test_regression.RecursiveUseOfCursors.test_recursive_cursor_iter"]),

    ("invalid-utf8-text",
     "TEXT that is not UTF-8 arrives with U+FFFD instead of raising `OperationalError: Could "
     "not decode to UTF-8 column ...` (DIFFERENCES.md item 10)",
     ["test_regression.RegressionTests.test_error_msg_decode_error"]),

    ("zero-size-blob-converter",
     "a converter is called for a zero-length BLOB (its result is returned); sqlite3 returns "
     "`None` without calling it",
     ["test_types.DeclTypesTests.test_convert_zero_sized_blob"]),

    ("isolation-level-str-subclass",
     "the `isolation_level` setter validates with the value's own `upper()`, so a str "
     "subclass overriding `upper()` is refused (`ValueError`); sqlite3 checks the string itself",
     ["test_regression.RegressionTests.test_set_isolation_level"]),
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
