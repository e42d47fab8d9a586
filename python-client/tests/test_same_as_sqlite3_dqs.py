"""Differential: double-quoted string literals (SQLite's "DQS" misfeature) work as in sqlite3.

A double-quoted token that names no column is taken for a string literal, in queries and in
schema (CHECK, DEFAULT, views, triggers). better-sqlite3 turns that off (SQLITE_DQS=0); the
server's addon is built without that define (scripts/sqlite-addon.mjs), so SQL and database
files written for the stdlib, or by other tools, behave the same through sqlite_rpc.
"""
from __future__ import annotations

import sqlite3

import pytest

import sqlite_rpc
from _harness import Corpus, assert_same

C = Corpus()
MEM = ":memory:"

# Written by the stdlib straight into the file (not through the module under test), as another
# tool would have written it.
SCHEMA = """
CREATE TABLE items(
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT "misc" CHECK (kind <> "forbidden"),
    name TEXT
);
CREATE TABLE audit(item INTEGER, what TEXT);
CREATE VIEW fruits AS SELECT id, name, "fruit" AS label FROM items WHERE kind = "fruit";
CREATE TRIGGER items_added AFTER INSERT ON items WHEN new.kind = "fruit"
BEGIN
    INSERT INTO audit VALUES (new.id, "added " || new.name);
END;
CREATE TRIGGER items_renamed AFTER UPDATE OF name ON items
BEGIN
    INSERT INTO audit VALUES (new.id, "renamed to " || new.name);
END;
CREATE INDEX items_fruit ON items(name) WHERE kind = "fruit";
"""


def _stdlib_writes_schema(path: str) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO items(kind, name) VALUES (\"fruit\", \"apple\")")
    db.commit()
    db.close()


@C.script
def where_clause_and_select_list(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE t(x TEXT, y TEXT)")
    db.execute("INSERT INTO t VALUES ('abc', 'x'), ('def', 'abc'), ('x', 'y')")
    db.execute("SELECT * FROM t WHERE x = \"abc\"")
    db.execute("SELECT * FROM t WHERE x = \"x\" ORDER BY rowid")  # a column name wins: x = x
    db.execute("SELECT * FROM t WHERE y = \"x\" ORDER BY rowid")  # ... and y = x
    db.execute("SELECT * FROM t WHERE x IN (\"abc\", \"def\") ORDER BY rowid")
    db.execute("SELECT * FROM t WHERE x LIKE \"d%\"")
    db.execute("SELECT \"nosuchcolumn_as_string\"")
    db.execute("SELECT \"nosuchcolumn_as_string\", typeof(\"nosuchcolumn_as_string\")")
    db.execute("SELECT \"x\", \"nosuchcolumn_as_string\" FROM t ORDER BY rowid")
    db.execute("SELECT \"a\" || 'b' || \"c\", length(\"four\"), upper(\"up\")")
    db.execute("SELECT \"\", \"it''s\", \"say \"\"hi\"\"\"")


@C.script
def insert_update_delete(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE t(x TEXT, n INTEGER)")
    db.execute("INSERT INTO t VALUES (\"text\", 1)")
    db.execute("INSERT INTO t(x, n) VALUES (\"other\", 2), (\"third\", 3)")
    db.execute("UPDATE t SET x = \"changed\" WHERE x = \"other\"")
    db.execute("DELETE FROM t WHERE x = \"third\"")
    db.execute("SELECT x, n FROM t ORDER BY n")
    db.execute("INSERT INTO t VALUES (?, 4)", ("bound",))
    db.execute("SELECT n FROM t WHERE x = \"bound\"")
    db.commit()


@C.script
def check_constraint_and_default(r):
    db = r.connect()
    db.execute("CREATE TABLE c(status TEXT DEFAULT \"open\" CHECK (status IN (\"open\", \"closed\")), n)")
    db.execute("INSERT INTO c(n) VALUES (1)")
    db.execute("INSERT INTO c VALUES ('closed', 2)")
    db.execute("INSERT INTO c VALUES ('pending', 3)")
    db.execute("UPDATE c SET status = \"nope\" WHERE n = 1")
    db.execute("SELECT status, n FROM c ORDER BY n")
    db.commit()
    db.execute("SELECT sql FROM sqlite_master WHERE name = 'c'")


@C.script
def view_and_trigger_written_by_the_stdlib(r):
    path = r.path("stdlib")
    _stdlib_writes_schema(path)
    db = r.connect(path)
    db.execute("SELECT * FROM fruits")
    db.execute("SELECT * FROM audit")
    db.execute("INSERT INTO items(kind, name) VALUES ('fruit', 'pear')")
    db.execute("INSERT INTO items(kind, name) VALUES ('veg', 'leek')")
    db.execute("INSERT INTO items(name) VALUES ('thing')")
    db.execute("INSERT INTO items(kind, name) VALUES ('forbidden', 'x')")
    db.execute("UPDATE items SET name = 'green ' || name WHERE id = 3")
    db.commit()
    db.execute("SELECT * FROM fruits ORDER BY id")
    db.execute("SELECT * FROM audit ORDER BY rowid")
    db.execute("SELECT id, kind, name FROM items ORDER BY id")
    db.execute("SELECT name FROM items INDEXED BY items_fruit WHERE kind = \"fruit\" ORDER BY name")
    db.execute("PRAGMA integrity_check")
    db.execute("SELECT type, name FROM sqlite_master ORDER BY name")
    db.execute("ALTER TABLE items RENAME TO goods")
    db.commit()
    db.execute("SELECT * FROM fruits ORDER BY id")
    db.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY name")
    db.execute("ALTER TABLE goods RENAME COLUMN name TO title")
    db.commit()
    # Not the text of an earlier query: the column names of a statement prepared before a
    # RENAME COLUMN are another matter (the server reports the old names for it).
    db.execute("SELECT id, title, label FROM fruits ORDER BY id")
    db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
    db.close()


@C.script
def schema_written_through_the_module_read_by_the_stdlib(r):
    path = r.path("written")
    db = r.connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO items(kind, name) VALUES (\"fruit\", \"fig\")")
    db.commit()
    db.close()
    other = sqlite3.connect(path)
    try:
        r.note("stdlib reads the view", other.execute("SELECT * FROM fruits").fetchall())
        r.note("stdlib reads the audit", other.execute("SELECT * FROM audit").fetchall())
    finally:
        other.close()


@C.script
def ambiguous_and_failing_cases(r):
    db = r.connect(MEM)
    db.execute("CREATE TABLE t(\"quoted col\" TEXT, x)")
    db.execute("INSERT INTO t VALUES ('v', 1)")
    db.execute("SELECT \"quoted col\", \"quoted\" FROM t")
    db.execute("SELECT t.\"nosuch\" FROM t")  # qualified: always an identifier
    db.execute("SELECT \"x\" FROM t GROUP BY \"x\"")
    db.execute("SELECT x FROM t ORDER BY \"nosuch\"")
    db.execute("CREATE TABLE \"a table\"(\"a column\")")
    db.execute("INSERT INTO \"a table\" VALUES (\"lit\")")
    db.execute("SELECT \"a column\" FROM \"a table\"")
    db.execute("SELECT * FROM \"nosuchtable\"")


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)


def test_server_sqlite_is_built_without_dqs_0():
    # The define itself: compile_options lists DQS only when it is set; DQS=0 must not be.
    options = [r[0] for r in sqlite_rpc.connect(MEM).execute("PRAGMA compile_options")]
    assert "DQS=0" not in options, options
    assert sqlite_rpc.connect(MEM).execute('SELECT "text"').fetchone() == ("text",)
