"""Which of test.test_sqlite3's tests are "public API" tests, compared by compare.py.

Every test is compared unless a rule below leaves it out; each rule says why. Two kinds:

* The test's subject, or a tool it cannot do without, is an API that sqlite_rpc documents
  as not supported (DIFFERENCES.md, item 12: the ones that run Python inside SQLite or need
  its in-process handle). While it is unsupported, they can only report NotSupportedError.
* The test checks a CPython implementation detail rather than the documented sqlite3 API
  (the C types' uninitialised state, the undocumented Connection.__call__ that compiles a
  Statement object).

Tests that sweep over many methods (use after close, use from another thread) are kept
even though the sweep includes unsupported methods: their subject is public, and what
sqlite_rpc raises there is a real question (see allowlist.py). So are the tests, inside a
group left out, whose subject is registering a user-defined function or collation
(COMPARED): sqlite_rpc registers them, with sqlite3's checks; only running one is not
supported.
"""
from __future__ import annotations

from typing import List, Optional

UNSUPPORTED = "needs an API sqlite_rpc does not support (DIFFERENCES.md item 12)"
INTERNAL = "tests a CPython implementation detail"

# Each rule: (UNSUPPORTED, the API names it needs) or (INTERNAL, what it tests).
# compare.py probes the UNSUPPORTED names on sqlite_rpc and says when one stops raising
# NotSupportedError: then its rules here should go, and its tests be compared.

# Prefixes of test ids (after "test.test_sqlite3."): whole modules and classes.
GROUPS = {
    "test_backup.": (UNSUPPORTED, ("backup",)),
    "test_dbapi.BlobTests.": (UNSUPPORTED, ("blobopen",)),
    "test_dbapi.SerializeTests.": (UNSUPPORTED, ("serialize", "deserialize")),
    "test_userfunctions.": (UNSUPPORTED, ("create_function", "create_aggregate", "create_window_function", "set_authorizer")),
    "test_hooks.": (UNSUPPORTED, ("create_collation", "set_progress_handler", "set_trace_callback")),
    # These observe the BEGIN that sqlite3 sends through set_trace_callback.
    "test_transactions.IsolationLevelFromInit.": (UNSUPPORTED, ("set_trace_callback",)),
    "test_transactions.IsolationLevelPostInit.": (UNSUPPORTED, ("set_trace_callback",)),
}

TESTS = {
    # Unsupported API as the subject or as a tool (cx_limit is setlimit).
    "test_dbapi.ConnectionTests.test_connection_limits": (UNSUPPORTED, ("setlimit", "getlimit")),
    "test_dbapi.ConnectionTests.test_connection_bad_limit_category": (UNSUPPORTED, ("setlimit", "getlimit")),
    "test_dbapi.ConnectionTests.test_interrupt": (UNSUPPORTED, ("interrupt",)),
    "test_dbapi.CursorTests.test_execute_too_many_params": (UNSUPPORTED, ("setlimit",)),
    "test_dbapi.ExtensionTests.test_cursor_executescript_too_large_script": (UNSUPPORTED, ("setlimit",)),
    "test_regression.RegressionTests.test_large_sql": (UNSUPPORTED, ("setlimit",)),
    "test_regression.RegressionTests.test_bpo37347": (UNSUPPORTED, ("set_trace_callback", "set_authorizer", "set_progress_handler")),
    "test_regression.RegressionTests.test_collation": (UNSUPPORTED, ("create_collation",)),
    "test_regression.RegressionTests.test_executescript_step_through_select": (UNSUPPORTED, ("create_function",)),
    "test_regression.RegressionTests.test_table_lock_cursor_non_readonly_select": (UNSUPPORTED, ("create_function",)),
    # CPython internals.
    "test_dbapi.ModuleTests.test_disallow_instantiation": (INTERNAL, "the internal Statement type, reached through Connection.__call__"),
    "test_dbapi.ClosedConTests.test_closed_call": (INTERNAL, "Connection.__call__ (undocumented: compiles a Statement)"),
    "test_regression.RegressionTests.test_connection_call": (INTERNAL, "Connection.__call__ (undocumented: compiles a Statement)"),
    "test_regression.RegressionTests.test_surrogates": (INTERNAL, "starts with Connection.__call__ (undocumented: compiles a Statement)"),
}

# Tests inside a group above that are compared all the same: their subject is registering
# (or deregistering) a function or collation, with sqlite3's argument checks, which
# sqlite_rpc does; they never run one.
COMPARED = {
    "test_hooks.CollationTests.test_create_collation_not_string",
    "test_hooks.CollationTests.test_create_collation_not_callable",
    "test_hooks.CollationTests.test_create_collation_not_ascii",
    "test_hooks.CollationTests.test_deregister_collation",
    "test_userfunctions.FunctionTests.test_func_error_on_create",
    "test_userfunctions.FunctionTests.test_func_deterministic_keyword_only",
    "test_userfunctions.AggregateTests.test_aggr_error_on_create",
    "test_userfunctions.WindowFunctionTests.test_win_error_on_create",
    "test_userfunctions.WindowFunctionTests.test_win_clear_function",
}

PREFIX = "test.test_sqlite3."


def why_excluded(test_id: str) -> Optional[tuple]:
    """(kind, detail) when the test is left out of the comparison, else None. detail is
    a tuple of API names for UNSUPPORTED, a description for INTERNAL."""
    short = test_id[len(PREFIX):] if test_id.startswith(PREFIX) else test_id
    if short in COMPARED:
        return None
    if short in TESTS:
        return TESTS[short]
    for prefix, why in GROUPS.items():
        if short.startswith(prefix):
            return why
    return None


def excluded(test_id: str) -> Optional[str]:
    """The kind of reason (UNSUPPORTED or INTERNAL) a test is left out for, else None."""
    why = why_excluded(test_id)
    return why[0] if why else None


def describe(why: tuple) -> str:
    kind, detail = why
    return "%s: %s" % (kind, ", ".join(detail) if isinstance(detail, tuple) else detail)


def unsupported_apis() -> List[str]:
    """Every API name the UNSUPPORTED rules name."""
    names = set()
    for kind, detail in list(GROUPS.values()) + list(TESTS.values()):
        if kind == UNSUPPORTED:
            names.update(detail)
    return sorted(names)
