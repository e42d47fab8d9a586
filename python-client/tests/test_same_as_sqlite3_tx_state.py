"""Differential: in_transaction follows the session's real state after failures (issue 11, A).

"When in doubt, the client asks the server or rolls back": after a script that fails half
way, a COMMIT that fails inside `with conn:`, or a disk that fills up, sqlite_rpc's
in_transaction, its rollback() and commit() and what other connections see must be
sqlite3's. Each script below failed before the fix (the client said False while the server
kept the script's transaction open, or True while the server had none).
"""
from __future__ import annotations

import pytest

from _harness import Corpus, assert_same, table

C = Corpus()



def _other_writes(r, label, rowid):
    """A second connection tries to write at once: 'database is locked' while a transaction is open.
    (Explicit rowids: a rowid reused after a rollback is another, known difference of lastrowid.)"""
    other = r.connect(timeout=0.2, isolation_level=None)  # no deferred BEGIN (DIFFERENCES.md 7)
    other.execute("INSERT INTO t(id, v) VALUES (%d, '%s')" % (rowid, label))
    other.close()


# ---- A1: executescript failing after its own BEGIN ----------------------------------------

@C.script
def failed_script_leaves_its_transaction_open_and_rollback_ends_it(r):
    db = table(r)
    db.executescript("BEGIN; INSERT INTO t(v) VALUES ('a'); INSERT INTO nope VALUES (1); COMMIT;")
    _other_writes(r, "blocked", 100)  # sqlite3: locked, the script's transaction is open
    db.rollback()
    db.execute("SELECT v FROM t ORDER BY id")
    _other_writes(r, "free", 101)
    db.execute("SELECT v FROM t ORDER BY id")


@C.script
def failed_script_then_commit_commits_the_half_that_ran(r):
    db = table(r)
    db.executescript("BEGIN; INSERT INTO t(v) VALUES ('a'); SELECT nope; COMMIT;")
    db.commit()  # sqlite3 commits the INSERT that ran
    reader = r.connect()
    reader.execute("SELECT v FROM t ORDER BY id")
    db.execute("INSERT INTO t(v) VALUES ('b')")
    db.rollback()
    reader.execute("SELECT v FROM t ORDER BY id")


@C.script
def failed_script_inside_with_is_rolled_back(r):
    db = table(r)
    db.block(lambda: db.raw.executescript("BEGIN; INSERT INTO t(v) VALUES ('a'); INSERT INTO t(id) VALUES ('x'); COMMIT;"))
    db.execute("SELECT v FROM t ORDER BY id")
    _other_writes(r, "other", 100)
    db.execute("SELECT v FROM t ORDER BY id")


@C.script
def failed_script_on_a_private_database(r):
    db = r.connect(":memory:")
    db.execute("CREATE TABLE t(v)")
    db.executescript("BEGIN; INSERT INTO t VALUES (1); INSERT INTO nope VALUES (1);")
    db.execute("SELECT count(*) FROM t")
    db.rollback()
    db.execute("SELECT count(*) FROM t")


@C.script
def failed_script_in_autocommit_mode(r):
    db = table(r, isolation_level=None)
    db.executescript("BEGIN IMMEDIATE; INSERT INTO t(v) VALUES ('a'); SELECT nope;")
    db.execute("COMMIT")
    db.executescript("INSERT INTO t(v) VALUES ('b'); SELECT nope;")  # no BEGIN: nothing left open
    db.execute("SELECT v FROM t ORDER BY id")


# ---- A3: a COMMIT that fails inside `with conn:` ------------------------------------------

def _deferred_fk(r, **kw):
    db = r.connect(**kw)
    db.execute("PRAGMA foreign_keys = ON")
    db.executescript("""
        CREATE TABLE p(id INTEGER PRIMARY KEY);
        CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);
    """)
    return db


@C.script
def failed_commit_in_with_is_rolled_back(r):
    db = _deferred_fk(r)
    db.block(lambda: db.raw.execute("INSERT INTO c VALUES (10, 99)"))  # COMMIT: FOREIGN KEY constraint failed
    db.execute("SELECT count(*) FROM c")
    other = r.connect(timeout=0.2)
    other.execute("INSERT INTO p VALUES (1)")
    other.commit()
    db.block(lambda: db.raw.execute("INSERT INTO c VALUES (2, 1)"))
    db.execute("SELECT * FROM c")


@C.script
def failed_commit_in_with_after_a_script_began_the_transaction(r):
    db = _deferred_fk(r)
    # The script's BEGIN gives a plain transaction whose COMMIT fails and leaves it open.
    db.block(lambda: db.raw.executescript("BEGIN; INSERT INTO c VALUES (10, 99);"))
    db.execute("SELECT count(*) FROM c")
    other = r.connect(timeout=0.2)
    other.execute("INSERT INTO p VALUES (1)")
    other.commit()
    db.execute("SELECT count(*) FROM p")


# ---- A4: database or disk is full ------------------------------------------------------

def _limited(r, extra_pages, **kw):
    db = r.connect(**kw)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    db.execute("INSERT INTO t(v) VALUES (randomblob(1000))")
    db.commit()
    pages = db.raw.execute("PRAGMA page_count").fetchone()[0]
    db.execute("PRAGMA max_page_count = %d" % (pages + extra_pages))
    return db


@C.script
def full_in_a_script_that_sqlite_keeps_open(r):
    db = _limited(r, 3)
    # SQLITE_FULL in an UPDATE undoes the statement and keeps the transaction.
    db.executescript("BEGIN; INSERT INTO t(v) VALUES (x'01'); UPDATE t SET v = randomblob(100000);")
    db.execute("SELECT count(*) FROM t")
    db.rollback()
    db.execute("SELECT count(*) FROM t")
    db.execute("INSERT INTO t(v) VALUES (x'02')")
    db.commit()
    db.execute("SELECT count(*) FROM t")


@C.script
def full_in_a_script_that_sqlite_rolls_back(r):
    db = _limited(r, 3)
    # SQLITE_FULL in an INSERT rolls the whole transaction back.
    db.executescript("BEGIN; INSERT INTO t(v) VALUES (x'01'); INSERT INTO t(v) VALUES (zeroblob(100000)); COMMIT;")
    db.commit()
    db.execute("SELECT count(*) FROM t")


@C.script
def full_after_a_script_left_a_transaction_open(r):
    db = _limited(r, 3)
    db.executescript("BEGIN; INSERT INTO t(v) VALUES (x'01');")
    db.execute("INSERT INTO t(v) VALUES (zeroblob(100000))")  # rolls it back
    db.commit()
    db.execute("UPDATE t SET v = randomblob(100000)")  # keeps a new implicit one
    db.commit()
    db.execute("SELECT count(*) FROM t")


@C.script
def full_in_a_script_then_commit_in_with(r):
    db = _limited(r, 3)
    db.block(lambda: db.raw.executescript("BEGIN; INSERT INTO t(v) VALUES (x'01'); UPDATE t SET v = randomblob(100000);"))
    db.execute("SELECT count(*) FROM t")


@pytest.mark.parametrize("script", C.params())
def test_same_as_sqlite3(script, tmp_path):
    assert_same(script, tmp_path)
