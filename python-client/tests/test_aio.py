"""sqlite_rpc.aio: aiosqlite's API on the shared server, checked against aiosqlite itself."""
from __future__ import annotations

import asyncio
import sqlite3

import aiosqlite
import pytest

import sqlite_rpc
from sqlite_rpc import aio
from _harness import exc_info, typed


def run(coro):
    return asyncio.run(coro)


def test_connect_execute_commit_and_iterate(tmp_path):
    async def main():
        async with aio.connect(str(tmp_path / "a.sqlite")) as db:
            assert isinstance(db, aio.Connection)
            await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            cur = await db.execute("INSERT INTO t(v) VALUES (?)", ("a",))
            assert (cur.rowcount, cur.lastrowid) == (1, 1)
            assert db.in_transaction
            await db.executemany("INSERT INTO t(v) VALUES (?)", [("b",), ("c",)])
            await db.commit()
            assert not db.in_transaction
            async with db.execute("SELECT id, v FROM t ORDER BY id") as cursor:
                assert cursor.description[1][0] == "v"
                rows = [row async for row in cursor]
            assert rows == [(1, "a"), (2, "b"), (3, "c")]
            cur = await db.execute("SELECT v FROM t ORDER BY id")
            assert await cur.fetchone() == ("a",)
            assert await cur.fetchmany(1) == [("b",)]
            assert await cur.fetchall() == [("c",)]
            assert await cur.fetchone() is None
            assert db.total_changes == 3

    run(main())


def test_await_connect_and_close(tmp_path):
    async def main():
        db = await aio.connect(str(tmp_path / "a.sqlite"))
        assert await db.execute_fetchall("SELECT 1, 'x', 2.5, x'00', NULL") == [(1, "x", 2.5, b"\x00", None)]
        await db.close()
        await db.close()  # idempotent
        with pytest.raises(ValueError, match="Connection closed"):
            await db.execute("SELECT 1")

    run(main())


def test_errors_are_sqlite3_classes(tmp_path):
    async def main():
        async with aio.connect(":memory:") as db:
            await db.execute("CREATE TABLE t(x UNIQUE)")
            await db.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: t.x") as e:
                await db.execute("INSERT INTO t VALUES (1)")
            assert e.value.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE"
            with pytest.raises(sqlite3.OperationalError, match="syntax error"):
                await db.execute("SELEC 1")
            with pytest.raises(sqlite3.ProgrammingError, match="Incorrect number of bindings"):
                await db.execute("SELECT ?", (1, 2))
            with pytest.raises(OverflowError):
                await db.execute("SELECT ?", (2**63,))
            assert await db.execute_fetchall("SELECT count(*) FROM t") == [(1,)]
        with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
            await aio.connect(str(tmp_path / "no" / "such" / "dir.sqlite"))

    run(main())


def test_many_concurrent_coroutines_on_one_connection(tmp_path):
    async def main():
        async with aio.connect(str(tmp_path / "c.sqlite"), isolation_level=None) as db:
            await db.execute("CREATE TABLE t(k INTEGER, v INTEGER)")

            async def worker(k):
                for i in range(10):
                    await db.execute("INSERT INTO t VALUES (?, ?)", (k, i))
                rows = await db.execute_fetchall("SELECT count(*), sum(v) FROM t WHERE k = ?", (k,))
                return rows[0]

            results = await asyncio.gather(*(worker(k) for k in range(50)))
            assert results == [(10, 45)] * 50
            assert await db.execute_fetchall("SELECT count(*) FROM t") == [(500,)]

    run(main())


def test_large_result_paged_through_async_iteration(tmp_path):
    async def main():
        async with aio.connect(str(tmp_path / "big.sqlite")) as db:
            await db.execute("CREATE TABLE t(i INTEGER)")
            await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(12000)])
            await db.commit()
            a = await db.execute("SELECT i FROM t ORDER BY i")
            b = await db.execute("SELECT i FROM t ORDER BY i DESC")
            got_a, got_b = [], []
            async for row in a:
                got_a.append(row[0])
                got_b.append((await b.fetchone())[0])
            assert got_a == list(range(12000)) and got_b == list(range(11999, -1, -1))

    run(main())


def test_row_factory_cursor_context_and_helpers(tmp_path):
    async def main():
        async with aio.connect(":memory:") as db:
            db.row_factory = aiosqlite.Row  # that is sqlite3.Row
            await db.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, Name TEXT); INSERT INTO t(Name) VALUES ('a');")
            async with db.cursor() as cur:
                await cur.execute("SELECT id, Name FROM t")
                row = await cur.fetchone()
            assert row["name"] == "a" and row["ID"] == 1 and row.keys() == ["id", "Name"]
            assert await db.execute_insert("INSERT INTO t(Name) VALUES ('b')") == (2,)
            lines = [line async for line in db.iterdump()]
            assert lines[0] == "BEGIN TRANSACTION;" and lines[-1] == "COMMIT;"
            with pytest.raises(sqlite3.NotSupportedError):
                await db.set_trace_callback(print)
            assert await db.create_function("f", 1, lambda x: x) is None  # registered; using it fails
            with pytest.raises(sqlite3.NotSupportedError, match=r"f\(\)"):
                await db.execute("SELECT f(1)")

    run(main())


# ---- differential against aiosqlite -------------------------------------------------------

async def _script_basic(m, path):
    out = []

    async def note(label, coro):
        try:
            v = await coro
            out.append([label, "ok", "Cursor" if type(v).__name__ == "Cursor" else typed(v)])
        except Exception as e:  # noqa: BLE001
            out.append([label] + exc_info(e))

    async with m.connect(path) as db:
        await note("create", db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v, n INTEGER NOT NULL DEFAULT 0)"))
        cur = await db.execute("INSERT INTO t(v) VALUES (?)", (1.0,))
        out.append(["insert", cur.rowcount, cur.lastrowid, db.in_transaction, db.total_changes])
        await note("dup", db.execute("INSERT INTO t(id, v) VALUES (1, 'x')"))
        await note("notnull", db.execute("INSERT INTO t(v, n) VALUES ('x', NULL)"))
        await db.rollback()
        out.append(["after rollback", db.in_transaction])
        cur = await db.executemany("INSERT INTO t(v) VALUES (?)", [(b"\x00",), ("s",), (None,), (2**62,)])
        out.append(["many", cur.rowcount])
        await db.commit()
        async with db.execute("SELECT id, v, typeof(v) FROM t ORDER BY id") as c:
            out.append(["rows", typed([r async for r in c])])
            out.append(["desc", typed(c.description)])
        await note("fetchall", db.execute_fetchall("SELECT count(*) FROM t"))
        await note("bad sql", db.execute("SELEC"))
        await note("bad param", db.execute("SELECT ?", (object(),)))
        await note("named", db.execute_fetchall("SELECT :a, :b", {"a": 1, "b": "2"}))
        await note("script", db.executescript("UPDATE t SET n = 1; DELETE FROM t WHERE v IS NULL;"))
        out.append(["total", db.total_changes, db.in_transaction])
    return out


async def _script_row_factory(m, path):
    async with m.connect(path) as db:
        db.row_factory = sqlite3.Row
        await db.execute("CREATE TABLE t(A, b)")
        await db.execute("INSERT INTO t VALUES (1, 2)")
        row = (await db.execute_fetchall("SELECT A, b FROM t"))[0]
        return [row["a"], row["B"], row.keys(), tuple(row), db.in_transaction]


@pytest.mark.parametrize("script", [_script_basic, _script_row_factory])
def test_same_as_aiosqlite(script, tmp_path):
    want = run(script(aiosqlite, str(tmp_path / "aiosqlite.sqlite")))
    got = run(script(aio, str(tmp_path / "aio.sqlite")))
    assert got == want


def test_aio_uses_the_shared_server(tmp_path):
    async def main():
        async with aio.connect(":memory:") as db:
            await db.execute("SELECT 1")
            return db._sync._srv

    assert run(main()) is sqlite_rpc.process.get_server()


@pytest.mark.private_server  # it kills the server
def test_server_gone_is_handled_as_in_the_blocking_api(tmp_path):
    # One request path for both APIs (dbapi's _prepare/_failed): after the server is killed,
    # a read is repeated on a new server and an open transaction is reported lost, in aio too.
    from _reliability import kill_process_server

    path = str(tmp_path / "gone.sqlite")

    async def main():
        async with aio.connect(path) as db:
            await db.execute("CREATE TABLE t(v)")
            await db.execute("INSERT INTO t VALUES (1)")
            await db.commit()
            kill_process_server()
            async with db.execute("SELECT count(*) FROM t") as cur:  # on the new server
                assert await cur.fetchone() == (1,)
            await db.execute("INSERT INTO t VALUES (2)")  # a transaction is open...
            kill_process_server()
            with pytest.raises(sqlite3.OperationalError, match="the open transaction was lost"):
                await db.execute("INSERT INTO t VALUES (3)")
            assert not db.in_transaction
            async with db.execute("SELECT v FROM t") as cur:
                assert await cur.fetchall() == [(1,)]

    run(main())


def test_executemany_parts_sent_ahead_stop_at_the_failing_row(tmp_path):
    # The same op as the blocking API's (parts sent before the previous reply is read); a part
    # behind the failing one is skipped by the server, so the result is sqlite3's.
    rows = [(i if i != 20_000 else 7, "x" * 60) for i in range(40_000)]

    def stdlib():
        db = sqlite3.connect(str(tmp_path / "std.sqlite"))
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")
        with pytest.raises(sqlite3.IntegrityError):
            db.executemany("INSERT INTO t VALUES (?, ?)", rows)
        return db.in_transaction, db.execute("SELECT count(*), max(id) FROM t").fetchone()

    async def ours():
        async with aio.connect(str(tmp_path / "rpc.sqlite")) as db:
            await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")
            with pytest.raises(sqlite3.IntegrityError):
                await db.executemany("INSERT INTO t VALUES (?, ?)", rows)
            async with db.execute("SELECT count(*), max(id) FROM t") as cur:
                return db.in_transaction, await cur.fetchone()

    assert run(ours()) == stdlib() == (True, (20_000, 19_999))
