"""The seed API, sqlite_rpc.Database: execute_query / execute_update / execute_batch /
execute_many / transaction / close."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from sqlite_rpc import Database


@pytest.fixture
def db(tmp_path):
    d = Database(str(tmp_path / "seed.sqlite"))
    d.execute_update("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, qty INTEGER DEFAULT 0, data BLOB)")
    yield d
    d.close()


def test_execute_query_returns_dicts_with_exact_types(db):
    db.execute_update("INSERT INTO items(name, qty, data) VALUES (?, ?, ?)", ("a", 3, b"\x00"))
    db.execute_update("INSERT INTO items(name, qty) VALUES (:n, :q)", {"n": "b", "q": 2.5})
    rows = db.execute_query("SELECT id, name, qty, data FROM items ORDER BY id")
    assert rows == [{"id": 1, "name": "a", "qty": 3, "data": b"\x00"}, {"id": 2, "name": "b", "qty": 2.5, "data": None}]
    assert [type(r["qty"]) for r in rows] == [int, float]
    assert db.execute_query("SELECT * FROM items WHERE id = ?", [99]) == []
    assert db.execute_query("SELECT name FROM items WHERE name = :n", {"n": "b"}) == [{"name": "b"}]
    assert db.execute_query("SELECT 1 AS one") == [{"one": 1}]


def test_execute_update_returns_affected_rows_and_is_durable(db, tmp_path):
    assert db.execute_update("INSERT INTO items(name) VALUES (?)", ("x",)) == 1
    assert db.execute_update("INSERT INTO items(name) VALUES ('y'), ('z')") == 2
    assert db.execute_update("UPDATE items SET qty = qty + 1") == 3
    assert db.execute_update("DELETE FROM items WHERE name = ?", ("nope",)) == 0
    # Committed on return: another process (here the stdlib) sees it at once.
    assert sqlite3.connect(str(tmp_path / "seed.sqlite")).execute("SELECT count(*) FROM items").fetchone() == (3,)


def test_errors_are_sqlite3_classes(db):
    db.execute_update("INSERT INTO items(name) VALUES ('a')")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: items.name") as e:
        db.execute_update("INSERT INTO items(name) VALUES ('a')")
    assert e.value.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE"
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        db.execute_query("SELECT * FROM nope")
    with pytest.raises(sqlite3.ProgrammingError, match="Incorrect number of bindings"):
        db.execute_query("SELECT ?", (1, 2))


def test_execute_many_returns_the_total(db):
    assert db.execute_many("INSERT INTO items(name, qty) VALUES (?, ?)", [("a", 1), ("b", 2), ("c", 3)]) == 3
    assert db.execute_many("UPDATE items SET qty = :q WHERE name = :n", ({"q": 9, "n": n} for n in "ab")) == 2
    assert db.execute_query("SELECT sum(qty) AS s FROM items") == [{"s": 21}]


def test_execute_many_is_all_or_nothing(db):
    with pytest.raises(sqlite3.IntegrityError):
        db.execute_many("INSERT INTO items(name) VALUES (?)", [("a",), ("b",), ("a",)])
    assert db.execute_query("SELECT count(*) AS n FROM items") == [{"n": 0}]


def test_execute_batch_applies_all(db):
    counts = db.execute_batch([
        ("INSERT INTO items(name) VALUES (?)", ("a",)),
        ("INSERT INTO items(name) VALUES (:n)", {"n": "b"}),
        ("UPDATE items SET qty = 5", None),
        ("DELETE FROM items WHERE name = 'a'", ()),
    ])
    assert counts == [1, 1, 2, 1]
    assert db.execute_query("SELECT name, qty FROM items") == [{"name": "b", "qty": 5}]


def test_execute_batch_is_all_or_nothing_when_a_later_statement_fails(db):
    db.execute_update("INSERT INTO items(name) VALUES ('kept')")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute_batch([
            ("INSERT INTO items(name) VALUES ('new1')", None),
            ("UPDATE items SET qty = 7", None),
            ("INSERT INTO items(name) VALUES ('kept')", None),
        ])
    assert db.execute_query("SELECT name, qty FROM items") == [{"name": "kept", "qty": 0}]
    with pytest.raises(sqlite3.ProgrammingError):
        db.execute_batch([("INSERT INTO items(name) VALUES ('new2')", None), ("INSERT INTO items(name) VALUES (?)", (object(),))])
    assert db.execute_query("SELECT count(*) AS n FROM items") == [{"n": 1}]


def test_transaction_commits_together(db, tmp_path):
    with db.transaction():
        db.execute_update("INSERT INTO items(name) VALUES ('a')")
        db.execute_many("INSERT INTO items(name) VALUES (?)", [("b",), ("c",)])
        db.execute_batch([("UPDATE items SET qty = 1", None)])
        # Not visible to others before the commit.
        other = sqlite3.connect(str(tmp_path / "seed.sqlite"))
        assert other.execute("SELECT count(*) FROM items").fetchone() == (0,)
        assert db.execute_query("SELECT count(*) AS n FROM items") == [{"n": 3}]
    assert other.execute("SELECT count(*), sum(qty) FROM items").fetchone() == (3, 3)


def test_transaction_rolls_back_on_exception(db):
    db.execute_update("INSERT INTO items(name) VALUES ('before')")
    with pytest.raises(KeyError):
        with db.transaction():
            db.execute_update("INSERT INTO items(name) VALUES ('inside')")
            raise KeyError("boom")
    assert db.execute_query("SELECT name FROM items") == [{"name": "before"}]
    with pytest.raises(sqlite3.IntegrityError):
        with db.transaction():
            db.execute_update("INSERT INTO items(name) VALUES ('inside')")
            db.execute_update("INSERT INTO items(name) VALUES ('before')")
    assert db.execute_query("SELECT name FROM items") == [{"name": "before"}]


def test_nested_transaction_is_refused(db):
    with db.transaction():
        with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
            with db.transaction():
                pass
        db.execute_update("INSERT INTO items(name) VALUES ('ok')")
    assert db.execute_query("SELECT count(*) AS n FROM items") == [{"n": 1}]


def test_close_is_idempotent_and_final(tmp_path):
    d = Database(str(tmp_path / "c.sqlite"))
    d.execute_update("CREATE TABLE t(x)")
    d.close()
    d.close()
    with pytest.raises(sqlite3.ProgrammingError, match="Cannot operate on a closed database."):
        d.execute_query("SELECT * FROM t")
    with Database(str(tmp_path / "c.sqlite")) as again:
        assert again.execute_query("SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_eight_threads(db):
    errors = []

    def work(k):
        try:
            for i in range(20):
                assert db.execute_update("INSERT INTO items(name, qty) VALUES (?, ?)", ("t%d-%d" % (k, i), k)) == 1
            with db.transaction():
                db.execute_update("UPDATE items SET qty = qty * 10 WHERE qty = ?", (k,))
            assert db.execute_query("SELECT count(*) AS n FROM items WHERE qty = ?", (k * 10,)) == [{"n": 20}]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.execute_query("SELECT count(*) AS n, sum(qty) AS s FROM items") == [{"n": 160, "s": 200 * sum(range(1, 9))}]


def test_execute_batch_inside_a_transaction_is_all_or_nothing_too(db):
    with db.transaction():
        db.execute_update("INSERT INTO items(name) VALUES ('a')")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute_batch([("INSERT INTO items(name) VALUES ('b')", None), ("INSERT INTO items(name) VALUES ('a')", None)])
        assert db.execute_batch([("INSERT INTO items(name) VALUES ('c')", None)]) == [1]
    assert db.execute_query("SELECT name FROM items ORDER BY name") == [{"name": "a"}, {"name": "c"}]
