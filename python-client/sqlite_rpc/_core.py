"""The request logic of a connection, without I/O: one copy for both drivers.

Each operation (execute, executemany, executescript, fetching the next page, commit and
rollback) is a generator of requests ("method", params[, on_settle]) that receives each
reply, or has the request's exception thrown into it. The blocking driver (dbapi) sends
them with blocking round trips, the async driver (aio) with awaited ones.

The recovery policy lives here as well, for both drivers: prepare() before every request
(reattach to a new server when the old one died, carry a held BEGIN, note a write) and
failed() after a request's error (which requests are repeated on a new server, which
transactions are reported lost, which requests may or may not have taken effect).

An op may also yield (AHEAD, method, params): send without waiting, get back a handle; then
(COLLECT, handle): its reply.
"""
from __future__ import annotations

import collections
import itertools
import operator
import re
import sqlite3
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import msgpack

from . import binding
from .conversion import _strip_colname
from .transport.client import ServerProcess
from ._taxonomy import KIND_SERVER_GONE, REASON_NOT_DML

if TYPE_CHECKING:
    from .connection import Connection
    from .cursor import Cursor

Params = Union[Sequence[Any], Mapping[str, Any], None]
Op = Generator[Any, Any, Any]

_DML = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I | re.S)
# The files some connection of this process may have written since the last close of the file
# that waited: only such a last close has anything to fold in, so only it waits.
_written_files: Set[Tuple[int, str]] = set()
# Requests that never write the database (an execute is checked by its SQL).
_NEVER_WRITE = frozenset(("fetch", "close_cursor", "ping", "begin", "commit", "rollback"))


# What __del__ (Cursor's close_cursor, Connection's close) may not do where it runs: the
# cycle collector calls it anywhere, also on a thread that holds the server's write lock
# (inside ServerProcess._write) or _open_files_lock, neither of them reentrant, so waiting
# for either there would deadlock. Such work is queued here and done, in order, before the
# next request of this process (deque: appending needs no lock).
deferred: "collections.deque[Callable[[], None]]" = collections.deque()


def run_deferred() -> None:
    while deferred:
        try:
            job = deferred.popleft()
        except IndexError:
            return
        try:
            job()
        except Exception:
            pass


def send_from_del(srv: ServerProcess, method: str, params: Dict[str, Any]) -> None:
    """srv.notify(method, params) for __del__ (no reply: nobody would read it): at once unless
    a request is being written (perhaps by this very thread), else before the next request."""
    if srv._wlock.acquire(False):
        srv._wlock.release()
        try:
            srv.notify(method, params)  # (a collection inside it defers its own sends)
        except Exception:
            pass
        return

    def job() -> None:
        if srv.dead is None and srv.home is not None and srv is srv.home.server:
            srv.notify(method, params)

    deferred.append(job)


_BUSY_TIMEOUT = re.compile(r"\s*PRAGMA\s+(?:main\s*\.\s*)?busy_timeout\s*(?:=\s*([-+]?\d+)|\(\s*([-+]?\d+)\s*\))?\s*;?\s*\Z", re.I)
_EXPLAIN = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*EXPLAIN\b", re.I | re.S)


_COMMIT_SQL = re.compile(r"\s*(?:COMMIT|END)\b", re.IGNORECASE)
# A BEGIN that takes no lock (DEFERRED), so nothing can make it fail but an open
# transaction, which the client knows of: it is held back and rides with the next request.
_PLAIN_BEGIN = re.compile(r"\s*BEGIN(?:\s+DEFERRED)?(?:\s+TRANSACTION)?\s*;?\s*\Z", re.IGNORECASE)
_HELD_BEGIN_RESULT = {"in_transaction": True, "columns": None, "rows": (), "cursor": None, "changes": 0, "lastrowid": None}

AHEAD = object()
COLLECT = object()


def op_end(conn: "Connection", method: str) -> Op:
    """commit() or rollback(): nothing to do without a transaction, nor after a held BEGIN."""
    conn._check()
    if drop_held_begin(conn):
        return
    if conn._in_tx:
        conn._in_tx = (yield (method, {"session": conn._session}))["in_transaction"]


def _before_binding(conn: "Connection", sql: str, begin: Optional[str]) -> Op:
    """What sqlite3 does before it binds parameters, replayed when binding fails in the client:
    it compiles the statement (so an SQL error wins over a binding error) and runs the
    implicit BEGIN (so a failed INSERT still leaves its transaction open)."""
    if not binding.blank(sql):
        check = sql if _EXPLAIN.match(sql) else "EXPLAIN " + sql  # compiles, runs nothing
        p: Dict[str, Any] = {"session": conn._session, "sql": check}
        count, names, named = binding.scan(sql)
        if count:  # the server insists on a value for every parameter: NULLs do
            p["params"] = {n[1:]: None for n in names} if named and None not in names else [None] * count  # type: ignore[index]
        try:
            yield ("execute", p)
        except sqlite3.Error as e:
            if getattr(e, "rpc_kind", None) != "BindingError":  # the NULLs themselves: not the point
                raise
    if begin is not None:
        conn._in_tx = (yield ("begin", {"session": conn._session, "mode": begin}))["in_transaction"]


# executemany sends its parameter sets in chunks: the first of _MANY_FIRST_ROWS rows, the
# others sized to about _MANY_CHUNK_BYTES (at most a quarter of the frame limit) and
# _MANY_CHUNK_ROWS rows.
_MANY_FIRST_ROWS = 256
_MANY_CHUNK_ROWS = 50_000
_MANY_CHUNK_BYTES = 512 << 10
_many_batches = itertools.count(1)  # executemany's batch numbers (_many_ahead)
_END = object()


def _many_params(conn: "Connection", sql: str, part: List[Any]) -> Dict[str, Any]:
    """An executemany request for these parameter sets (with sqlite3's implicit BEGIN if due)."""
    p: Dict[str, Any] = {"session": conn._session, "sql": sql, "seq_of_params": part}
    begin = conn._begin_mode_for(sql)
    if begin is not None:
        p["begin"] = begin
    return p


def _first_unencodable(rows: List[Any]) -> int:
    for i, r in enumerate(rows):
        try:
            msgpack.packb(r, use_bin_type=True)
        except UnicodeEncodeError:
            return i
    return len(rows)


_descriptions: Dict[Any, Tuple[Tuple[Any, ...], ...]] = {}


def _description(cols: Any) -> Tuple[Tuple[Any, ...], ...]:
    """cursor.description for these column names (immutable, so shared by the results of a query)."""
    try:
        return _descriptions[cols]
    except (KeyError, TypeError):  # TypeError: a list (the JSON codec), not hashable
        d = tuple((c, None, None, None, None, None, None) for c in cols)
        if isinstance(cols, tuple):
            if len(_descriptions) >= 1024:
                _descriptions.clear()
            _descriptions[cols] = d
        return d


def is_reply_error(slot: Any, e: BaseException) -> bool:
    """e is the error the server replied to slot's request with (not a signal handler's)."""
    return slot is not None and slot.done and slot.error is not None and isinstance(e, (sqlite3.Error, MemoryError, OverflowError))


def _type_name(v: Any) -> str:
    return "None" if v is None else type(v).__name__


_READ_START = re.compile(r"^(?:\s+|--[^\n]*\n|/\*.*?\*/)*(SELECT|VALUES|EXPLAIN|WITH)\b", re.I | re.S)
_LITERALS = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?\*/", re.S)
_WRITE_WORD = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


def _is_read(sql: str) -> bool:
    """Certainly a read (so repeating it is harmless): SELECT, VALUES, EXPLAIN, or a WITH
    whose text, outside literals and comments, names no write."""
    m = _READ_START.match(sql)
    if m is None:
        return False
    return m.group(1).upper() != "WITH" or not _WRITE_WORD.search(_LITERALS.sub(" ", sql))


def op_execute(cur: "Cursor", sql: str, parameters: Params, expect_rows: Optional[int] = None) -> "Op":
    conn = cur._check()
    if not isinstance(sql, str):
        raise TypeError("execute() argument 1 must be str, not %s" % _type_name(sql))
    cur._reset()
    begin = conn._begin_mode_for(sql)
    error: Optional[BaseException] = None
    cur._locked = True
    try:
        wire = binding.bind(sql, parameters)
    except Exception as e:
        error = e
    finally:
        cur._locked = False
    if error is not None:
        yield from _before_binding(conn, sql, begin)
        raise error
    if wire is None and conn._private and _BUSY_TIMEOUT.match(sql):
        yield from _busy_timeout_pragma(cur, conn, sql)
        return
    if wire is None and expect_rows is None and not conn._in_tx and _PLAIN_BEGIN.match(sql):
        conn._held_begin = True  # sent with the next request (_carry_begin)
        take_result(cur, conn, _HELD_BEGIN_RESULT, sql)
        return
    p: Dict[str, Any] = {"session": conn._session, "sql": sql}
    if wire is not None:
        p["params"] = wire
    if begin is not None:
        p["begin"] = begin
    if conn._detect_decltypes:
        p["decltypes"] = True
    if expect_rows is not None:
        p["expect_rows"] = operator.index(expect_rows)
    try:
        res = yield ("execute", p)
    except UnicodeEncodeError:
        # A lone surrogate: in the SQL text sqlite3 fails at once; in a parameter, at bind time.
        sql.encode("utf-8")
        yield from _before_binding(conn, sql, begin)
        raise
    take_result(cur, conn, res, sql)


def _busy_timeout_pragma(cur: "Cursor", conn: "Connection", sql: str) -> "Op":
    """PRAGMA busy_timeout [= N] of an in-memory database: the connection's own, as in
    sqlite3 (timeout * 1000 until set), though nothing else can lock it. A file's session
    has the server answer: there it is the session's timeout, which setting changes."""
    m = _BUSY_TIMEOUT.match(sql)
    value = m.group(1) or m.group(2) if m is not None else None
    if value is not None:
        ms = int(value)
        conn._busy_ms = ms if 0 < ms < 2**31 else 0  # SQLite: none at all for 0 or less
    res: Dict[str, Any] = {"columns": ["timeout"], "rows": ((conn._busy_ms,),), "cursor": None, "changes": 0, "lastrowid": None, "in_transaction": conn._in_tx}
    if conn._detect_decltypes:
        res["decltypes"] = [None]
    take_result(cur, conn, res, sql)
    return
    yield  # a generator, as the other ops


def take_result(cur: "Cursor", conn: "Connection", res: Dict[str, Any], sql: str) -> None:
    conn._in_tx = res["in_transaction"]
    cols = res["columns"]
    changes = res["changes"]
    if res["lastrowid"] is not None:
        conn._last_rowid = res["lastrowid"]
    conn._total_changes += res.get("total_changes", changes)
    if cols is None and not changes and binding.blank(sql):
        return  # sqlite3 runs nothing for empty SQL and leaves the cursor as it was
    # sqlite3's cursor.lastrowid is the connection's last inserted rowid after any execute.
    cur.lastrowid = conn._last_rowid
    dml = _DML.match(sql) is not None
    if cols is None:
        # rowcount: rows changed by INSERT/UPDATE/DELETE/REPLACE, -1 for anything else.
        cur.rowcount = changes if dml else -1
        cur.description = None
    else:
        if dml:
            # DML with RETURNING: sqlite3 counts the changes (rowcount, total_changes) when
            # the statement finishes: its rows consumed, or the cursor reset or closed.
            cur.rowcount = 0
            cur._rowcount_when_done = changes
            conn._total_changes -= res.get("total_changes", changes)
        cur.description = _description(cols)
        if conn._detect_types:
            cur._converters = conn._converters_for(cols, res.get("decltypes"))
            if conn._detect_colnames:
                cur.description = tuple((_strip_colname(c), None, None, None, None, None, None) for c in cols)
    cur._rows = res["rows"]
    cur._pos = 0
    cur._cursor_id = res["cursor"]
    cur._result_srv = conn._srv
    cur._result_session = conn._session
    if cur._cursor_id is None:
        cur._exhausted_check()


def op_executemany(cur: "Cursor", sql: str, seq_of_parameters: Any) -> "Op":
    conn = cur._check()
    if not isinstance(sql, str):
        raise TypeError("executemany() argument 1 must be str, not %s" % _type_name(sql))
    cur._locked = True
    try:
        it = iter(seq_of_parameters)
    finally:
        cur._locked = False
    cur._reset()
    # sqlite3 binds and runs the parameter sets one by one: the sets before a bad one are
    # applied, then the error is raised. Here they are bound and sent in chunks (bounded
    # in rows and bytes, so that no request meets the frame limit and a generator is read
    # as it goes, not in full first): the good prefix is sent, then the error raised.
    fast: Any = binding.bind_many_fast(sql, seq_of_parameters)  # None: not the plain case
    budget = min(_MANY_CHUNK_BYTES, max(conn._frame_limit() // 4, 1))
    n = _MANY_FIRST_ROWS  # the first chunk is small: it measures the rows (and gets the BEGIN done early)
    pos = 0
    error: Optional[BaseException] = None
    total = 0
    returning = False  # DML with RETURNING: the server's executemany refuses it, rows go one by one
    first = True
    while True:
        if fast is not None:
            rows = fast[pos:pos + n]
            pos += len(rows)
            more = pos < len(fast)
        else:
            rows = []
            more = True
            cur._locked = True  # the generator and the adapters may not use this cursor
            try:
                while len(rows) < n:
                    params = next(it, _END)
                    if params is _END:
                        more = False
                        break
                    w = binding.bind(sql, params)
                    rows.append([] if w is None else w)
            except Exception as e:
                error, more = e, False
            finally:
                cur._locked = False
        if rows or first:
            try:
                if returning:
                    yield from _many_returning(cur, conn, sql, rows)
                else:
                    total += yield from _many_chunk(cur, conn, sql, rows)
            except sqlite3.ProgrammingError as e:
                if not (first and not returning and _DML.match(sql) and getattr(e, "rpc_reason", None) == REASON_NOT_DML):
                    cur.rowcount = -1
                    raise
                # INSERT/UPDATE/DELETE/REPLACE ... RETURNING: sqlite3 3.11 runs every set
                # (its rows are never returned, rowcount stays 0) where the server refuses.
                returning = True
                if not rows and conn._begin_mode_for(sql) is not None:
                    conn._in_tx = (yield ("begin", {"session": conn._session, "mode": conn._begin_mode_for(sql)}))["in_transaction"]
                yield from _many_returning(cur, conn, sql, rows)
            except BaseException:
                cur.rowcount = -1
                raise
            first = False
        if error is not None or not more:
            break
        sample = rows[:32]
        per_row = len(msgpack.packb(sample, use_bin_type=True)) / len(sample) if sample else 1
        n = max(1, min(_MANY_CHUNK_ROWS, int(budget / max(per_row, 1.0))))
        if fast is not None and not returning:
            try:
                total += yield from _many_ahead(cur, conn, sql, fast, pos, n)
            except BaseException:
                cur.rowcount = -1
                raise
            break
    cur.rowcount = 0 if returning else total
    if not _DML.match(sql):
        cur.rowcount = -1  # sqlite3 counts rows for INSERT/UPDATE/DELETE/REPLACE only
    if error is not None:
        cur.rowcount = -1
        raise error


def _many_chunk(cur: "Cursor", conn: "Connection", sql: str, rows: List[Any]) -> "Op":
    """One executemany request for rows (split in halves while over the frame limit);
    returns the rows changed. Its error is raised after the rows before the failing one."""
    todo = [rows]
    changed = 0
    while todo:
        part = todo.pop(0)
        p = _many_params(conn, sql, part)
        try:
            res = yield ("executemany", p)
        except sqlite3.DataError as e:
            if not getattr(e, "rpc_too_large", False) or len(part) < 2:
                raise
            half = len(part) // 2  # not sent: send it in two
            todo[0:0] = [part[:half], part[half:]]
            continue
        except UnicodeEncodeError:
            sql.encode("utf-8")
            p["seq_of_params"] = part[: _first_unencodable(part)]
            res = yield ("executemany", p)
            changed += _take_many(cur, res)
            raise
        changed += _take_many(cur, res)
    return changed


def _many_ahead(cur: "Cursor", conn: "Connection", sql: str, rows: List[Any], pos: int, n: int) -> "Op":
    """The parts of rows[pos:] of n sets each, every part sent before the previous one's
    reply is read, so that the server inserts one while this process encodes the next.
    They share a batch number: behind a part that fails, the server runs none of them
    (Skipped), as sqlite3 stops at the failing row. Returns the rows changed."""
    batch = next(_many_batches)
    changed = 0
    ahead = None  # the part sent last, its reply not read yet
    while True:
        sent = None
        if pos < len(rows):
            part = rows[pos:pos + n]
            pos += len(part)
            # (a part sent before the first one's reply repeats its begin: a no-op by then)
            p = _many_params(conn, sql, part)
            p["batch"] = batch
            try:
                sent = yield (AHEAD, "executemany", p)
            except (sqlite3.DataError, UnicodeEncodeError):
                # Not sent (over the frame limit, or a value that cannot be encoded): one
                # at a time, as without pipelining, which splits it or finds the value.
                if ahead is not None:
                    changed += _take_many(cur, (yield (COLLECT, ahead)))
                    ahead = None
                changed += yield from _many_chunk(cur, conn, sql, part)
                continue
        if ahead is not None:
            try:
                res = yield (COLLECT, ahead)
            except sqlite3.Error:
                if sent is not None:
                    try:
                        yield (COLLECT, sent)  # Skipped, behind the failure: read, not raised
                    except sqlite3.Error:
                        pass
                raise
            changed += _take_many(cur, res)
        if sent is None:
            return changed
        ahead = sent


def _many_returning(cur: "Cursor", conn: "Connection", sql: str, rows: List[Any]) -> "Op":
    """sqlite3's executemany of a DML statement with RETURNING: each set runs, the rows it
    returns are dropped; description names the returned columns."""
    for row in rows:
        p: Dict[str, Any] = {"session": conn._session, "sql": sql, "params": row}
        begin = conn._begin_mode_for(sql)
        if begin is not None:
            p["begin"] = begin
        res = yield ("execute", p)
        conn._in_tx = res["in_transaction"]
        conn._total_changes += res.get("total_changes", res["changes"])
        if res["lastrowid"] is not None:
            conn._last_rowid = res["lastrowid"]
        if res.get("cursor") is not None:
            conn._discard_cursor(res["cursor"])
        if cur.description is None and res["columns"] is not None:
            cur.description = tuple((c, None, None, None, None, None, None) for c in res["columns"])


def _take_many(cur: "Cursor", res: Dict[str, Any]) -> int:
    conn = cur._connection
    conn._in_tx = res["in_transaction"]
    conn._total_changes += res.get("total_changes", res["changes"])
    if res["lastrowid"] is not None:
        conn._last_rowid = res["lastrowid"]  # the connection's; this cursor's stays (sqlite3 3.11)
    changed: int = res["changes"]
    return changed


def op_batch(conn: "Connection", statements: List[Any]) -> Op:
    """Several statements ([sql, params] each) in one request, all or nothing: the server runs
    them inside one savepoint (within the open transaction, if any). Returns the rows each changed."""
    res = yield ("batch", {"session": conn._session, "statements": statements})
    conn._in_tx = res["in_transaction"]
    return [r["changes"] for r in res["results"]]


def op_script(cur: "Cursor", sql_script: str) -> "Op":
    conn = cur._check()
    if not isinstance(sql_script, str):
        raise TypeError("executescript() argument must be str, not %s" % _type_name(sql_script))
    if "\x00" in sql_script:
        raise ValueError("embedded null character")
    # sqlite3 leaves the cursor as it was (rowcount, description, lastrowid, pending rows).
    if conn._in_tx and not drop_held_begin(conn):
        # sqlite3 commits a pending transaction before running a script.
        conn._in_tx = (yield ("commit", {"session": conn._session}))["in_transaction"]
    res = yield ("script", {"session": conn._session, "sql": sql_script})
    conn._in_tx = res["in_transaction"]
    conn._total_changes += res.get("total_changes", res["changes"])
    if res.get("lastrowid") is not None:
        conn._last_rowid = res["lastrowid"]


def _take_page(cur: "Cursor", res: Dict[str, Any]) -> bool:
    cur._rows = res["rows"]
    cur._pos = 0
    cur._cursor_id = res["cursor"]
    return bool(cur._rows) or cur._cursor_id is not None


def op_more(cur: "Cursor") -> "Op":
    if cur._pos < len(cur._rows):
        return True  # an interrupted fetch of this cursor handed its page over (_settle)
    cid = cur._cursor_id
    if cid is None:
        return False
    check_result_alive(cur)
    try:
        res = yield ("fetch", {"cursor": cid}, lambda late: _late_page(cur, cid, late))
    except sqlite3.OperationalError:
        if cur._result_srv is not None and cur._result_srv.dead is not None:
            cur._cursor_id = None  # reported once; the cursor is then exhausted
        raise
    except sqlite3.Error:
        cur._cursor_id = None  # a fetch that fails closes the server's cursor: nothing to release
        raise
    return _take_page(cur, res)


def _late_page(cur: "Cursor", cid: int, res: Dict[str, Any]) -> None:
    """The page of a fetch whose wait was interrupted, collected on the connection's next use."""
    if not cur._closed and cur._cursor_id == cid:
        _take_page(cur, res)


def check_result_alive(cur: "Cursor") -> None:
    # The rest of the result lived in a server that has since died (or in the parent
    # of a fork): another server would not know the cursor id, or worse, reuse it.
    srv = cur._result_srv
    if srv is not None and (srv.dead is not None or srv.home is None or srv is not srv.home.server):
        cur._cursor_id = None
        raise sqlite3.OperationalError("%s; the rest of this result was lost with it" % (srv.dead or "the sqlite-rpc server restarted"))
    if cur._result_session != cur._connection._session:
        # The connection was opened again (a second __init__), which closed the session
        # that held the rest (sqlite3 keeps reading the old database).
        cur._cursor_id = None
        raise sqlite3.OperationalError("the connection was initialised again; the rest of this result was lost with its old session")


def note_error(conn: "Connection", e: BaseException) -> Optional[str]:
    """Take in what a server error says about this connection's state; returns its kind."""
    in_tx = getattr(e, "rpc_in_transaction", None)
    kind = getattr(e, "rpc_kind", None)
    if in_tx is not None:
        conn._in_tx = in_tx
    elif kind == "TransactionAborted":
        conn._in_tx = False  # the server rolled it back (idle limit, lost writer)
    if getattr(e, "rpc_begin_failed", None) == "deferred" and getattr(e, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
        # The server's BEGIN waits for the writer; sqlite3's deferred BEGIN (explicit, or
        # implicit before a write) succeeds and the write fails. As there: the transaction
        # stays open, its BEGIN held again.
        conn._held_begin = True
        conn._in_tx = True
    changed = getattr(e, "rpc_changes", None)
    if changed:
        conn._total_changes += changed  # rows changed before a multi-row operation failed
    rowid = getattr(e, "rpc_lastrowid", None)
    if rowid is not None:
        conn._last_rowid = rowid  # rows inserted before the failure moved it, as in sqlite3
    return kind


def prepare(conn: "Connection", method: str, params: Dict[str, Any]) -> Tuple[ServerProcess, Dict[str, Any], Optional[Tuple[str, Dict[str, Any]]]]:
    """Before a request: the state an interruption left, a server to reattach to, the
    note that the file may be written. Returns the server, the params to send, and a
    request to send and wait for first (a held BEGIN that cannot ride with this one)."""
    if conn._unsettled is not None:
        conn._settle()
    if conn._broken is not None:
        raise sqlite3.OperationalError(conn._broken)
    srv = conn._srv
    if srv.dead is not None or conn._gen != conn._home.generation:
        srv = reattach(conn)
        if "session" in params:
            params = dict(params, session=conn._session)
    before = None
    if conn._held_begin:
        params, before = _carry_begin(conn, method, params)
    _note_write(conn, method, params)
    return srv, params, before


def failed(conn: "Connection", e: sqlite3.Error, method: str, params: Dict[str, Any]) -> Tuple[ServerProcess, Dict[str, Any]]:
    """The request failed with e (called while e is handled): take in what e says, then
    raise what the caller should see; or, for a read the server died under (or a request
    it never received), attach to a new server and return it with the params to repeat the request with."""
    kind = note_error(conn, e)
    if kind != KIND_SERVER_GONE:
        udf = conn._udf_error(e) if ("_udf_functions" in conn.__dict__ or "_udf_collations" in conn.__dict__) else None
        if udf is not None:
            raise udf from None
        raise
    was_in_tx, conn._in_tx = conn._in_tx, False
    if was_in_tx:
        if not getattr(e, "rpc_unsent", False) and (method == "commit" or (method == "execute" and _COMMIT_SQL.match(params.get("sql", "")))):
            # The server may have made it durable just before it died: nobody knows.
            raise sqlite3.OperationalError("%s; the COMMIT was interrupted: the transaction may or may not have taken effect" % e) from None
        raise sqlite3.OperationalError("%s; the open transaction was lost and nothing of it was committed" % e) from None
    if conn._private:
        conn._broken = "%s; this connection's in-memory database was lost with it" % e
        raise sqlite3.OperationalError(conn._broken) from None
    if method == "fetch" or method == "close_cursor":
        raise sqlite3.OperationalError("%s; the rest of this result was lost with it" % e) from None
    unsent = getattr(e, "rpc_unsent", False)
    if not unsent and (method != "execute" or params.get("begin") is not None or not _is_read(params.get("sql", ""))):
        raise sqlite3.OperationalError("%s; the request was interrupted: it may or may not have taken effect" % e) from None
    # Safe to repeat, once, on a new server: a request the old one never received, or
    # a read that was in flight when it died.
    srv = reattach(conn)
    return srv, dict(params, session=conn._session)


def _note_write(conn: "Connection", method: str, params: Dict[str, Any]) -> None:
    """Before a request that may write the file: its last close in this process must wait."""
    key = conn._file_key
    if key is None or key in _written_files or method in _NEVER_WRITE:
        return
    if method == "execute" and _is_read(params.get("sql", "")):
        return
    _written_files.add(key)


def _carry_begin(conn: "Connection", method: str, params: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[Tuple[str, Dict[str, Any]]]]:
    """The held BEGIN goes with this request: inside an execute (begin_first, no extra
    round trip), else as a request of its own sent first (returned to be sent)."""
    conn._held_begin = False
    if method == "execute" and "begin" not in params:
        return dict(params, begin_first="deferred"), None
    return params, ("begin", {"session": conn._session, "mode": "deferred"})


def drop_held_begin(conn: "Connection") -> bool:
    """COMMIT or ROLLBACK right after a held BEGIN: the empty transaction never has to exist."""
    if not conn._held_begin:
        return False
    conn._held_begin = False
    conn._in_tx = False
    return True


def reattach(conn: "Connection") -> ServerProcess:
    """The server died (or this process forked): attach to a new server with a new session.
    A file database is simply reopened; what lived only in the old session cannot be."""
    why = conn._srv.dead or "the sqlite-rpc server restarted"
    if conn._private:
        # Reopening would hand back an empty database as if nothing had happened.
        conn._broken = "%s; this connection's in-memory database was lost with it" % why
        raise sqlite3.OperationalError(conn._broken)
    lost = conn._in_tx and not conn._held_begin  # a held BEGIN never reached the old server
    conn._in_tx = conn._held_begin
    conn._srv = conn._home.get()
    conn._gen = conn._home.generation
    conn._session = conn._srv.new_session_id()
    conn._open_params["session"] = conn._session
    conn._open_slot = conn._srv.send("open", conn._open_params)
    if lost:
        raise sqlite3.OperationalError("%s; the open transaction was lost and nothing of it was committed" % why)
    return conn._srv



# -- the pipelined open ---------------------------------------------------------------------


def reopen_if_due(conn: "Connection", srv: ServerProcess) -> None:
    """Before a request is sent: an open that failed (a lock held too long, a file that is no
    database) is tried again by every use, as each statement on such a sqlite3 connection does."""
    if conn._reopen:
        conn._reopen = False
        conn._open_slot = srv.send("open", conn._open_params)


def opened(conn: "Connection", srv: ServerProcess, slot: Any) -> None:
    """Wait for the open's reply (at once if it is in): raises its error, and a failed open
    is sent again before the next request (a server that died: reattach opens again)."""
    try:
        srv.wait(slot)
    except BaseException as e:
        if is_reply_error(slot, e) and getattr(e, "rpc_kind", None) != KIND_SERVER_GONE:
            conn._reopen = True
        raise
    finally:
        if slot.done and conn._open_slot is slot:
            conn._open_slot = None


# -- a reply collected late -----------------------------------------------------------------


def late_reply_lost(conn: "Connection", srv: ServerProcess, slot: Any) -> bool:
    """The request an interruption left unsettled went to a server since replaced or gone (or
    this process forked): the state went with it (reattach), there is no reply to collect."""
    return srv is not conn._srv or conn._gen != conn._home.generation or (srv.dead is not None and not slot.done)


def take_late_reply(conn: "Connection", res: Any, on_settle: Optional[Callable[[Any], None]]) -> None:
    """Take in what the reply of an unsettled request says (in_transaction, changes, rowid; a
    page for its cursor)."""
    if on_settle is not None:
        on_settle(res)
    elif isinstance(res, dict):
        if "in_transaction" in res:
            conn._in_tx = bool(res["in_transaction"])
        changed = res.get("total_changes", res.get("changes"))
        if changed:
            conn._total_changes += changed
        if res.get("lastrowid") is not None:
            conn._last_rowid = res["lastrowid"]
        if res.get("cursor") is not None and "columns" in res:
            conn._discard_cursor(res["cursor"])  # the rest of a result nobody will read


# -- what the drivers share ------------------------------------------------------------------


class Steps:
    """An operation run by a driver: first() is its first request; send() (a reply) and throw()
    (the request's error) give it what the driver got and return its next request; None once
    it has returned, with its return value in result."""

    __slots__ = ("_op", "result")

    def __init__(self, op: Op) -> None:
        self._op = op
        self.result: Any = None

    def first(self) -> Any:
        return self._step(self._op.send, None)

    def send(self, reply: Any) -> Any:
        return self._step(self._op.send, reply)

    def throw(self, e: BaseException) -> Any:
        return self._step(self._op.throw, e)

    def _step(self, resume: Callable[[Any], Any], value: Any) -> Any:
        try:
            return resume(value)
        except StopIteration as stop:
            self.result = stop.value
            return None


def op_fill(cur: "Cursor") -> Op:
    """Until a row of cur's result is buffered: True, or False once the result is exhausted."""
    while cur._pos >= len(cur._rows):
        cur._check()
        if not (yield from op_more(cur)):
            cur._exhausted_check()
            return False
    return True


def pending_open(conn: "Connection") -> Any:
    """The slot of the pipelined open whose reply is still to be looked at (opened()), or None."""
    return conn._open_slot

