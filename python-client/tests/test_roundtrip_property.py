"""Property: any value of any SQL type comes back identically (value and type) through
sqlite_rpc and through sqlite3, bound directly and stored under every column affinity."""
from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sqlite_rpc
from _harness import exc_info, typed

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**70), max_value=2**70),  # out of range too: OverflowError on both
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=("Cs",))),  # no lone surrogates: both refuse those
    st.binary(max_size=300),
)

AFFINITIES = ["INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC", ""]


@pytest.fixture(scope="module")
def pair():
    conns = {}
    for m in (sqlite3, sqlite_rpc):
        c = m.connect(":memory:", isolation_level=None)
        c.execute("CREATE TABLE t(%s)" % ", ".join("c%d %s" % (i, a) for i, a in enumerate(AFFINITIES)))
        conns[m] = c
    yield conns
    for c in conns.values():
        c.close()


def _observe(conn, row):
    out = []
    for sql, params in (
        ("SELECT ?, typeof(?)", (row[0], row[0])),
        ("SELECT %s" % ", ".join("?" for _ in row), row),
    ):
        try:
            out.append(typed(conn.execute(sql, params).fetchall()))
        except Exception as e:  # noqa: BLE001
            out.append(exc_info(e))
    try:
        conn.execute("DELETE FROM t")
        conn.execute("INSERT INTO t VALUES (%s)" % ", ".join("?" for _ in AFFINITIES), [row[0]] * len(AFFINITIES))
        out.append(typed(conn.execute("SELECT *, %s FROM t" % ", ".join("typeof(c%d)" % i for i in range(len(AFFINITIES)))).fetchall()))
    except Exception as e:  # noqa: BLE001
        out.append(exc_info(e))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.lists(values, min_size=1, max_size=6))
def test_values_round_trip_as_in_sqlite3(pair, row):
    assert _observe(pair[sqlite_rpc], row) == _observe(pair[sqlite3], row)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), values, min_size=1, max_size=5))
def test_named_parameters_bind_as_in_sqlite3(pair, params):
    names = sorted(params)
    sql = "SELECT " + ", ".join(":%s" % n for n in names)
    results = []
    for m in (sqlite3, sqlite_rpc):
        try:
            results.append(typed(pair[m].execute(sql, params).fetchall()))
        except Exception as e:  # noqa: BLE001
            results.append(exc_info(e))
    assert results[1] == results[0]
