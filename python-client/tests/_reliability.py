"""Machinery of the reliability suite (issue 7), shared by the short forms in
tests/test_reliability_*.py (run by `npm test`) and the long forms in bench/reliability.py.

Everything here drives the real binary (dist/sqlite-rpc, or $SQLITE_RPC_BINARY) on real
files and checks the files with the stdlib's own sqlite3. No mocks. Time is used only as
a hang guard, never asserted on: the machine is shared and noisy.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BINARY = os.environ.get("SQLITE_RPC_BINARY") or os.path.join(ROOT, "dist", "sqlite-rpc")

# The error kinds the protocol defines (code -> kind), to check every error reply against.
with open(os.path.join(ROOT, "protocol", "errors.json"), encoding="utf-8") as _f:
    _TAXONOMY = json.load(_f)
KIND_CODES: Dict[str, int] = {k["name"]: k["code"] for k in _TAXONOMY["kinds"]}


def child_env(**extra: str) -> Dict[str, str]:
    """The environment of a server or client child: no NODE_* (they change a SEA binary's
    behaviour), the checkout's binary pinned, no switch that disables the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
    env["SQLITE_RPC_BINARY"] = BINARY
    env.pop("SQLITE_RPC_DISABLE", None)
    env.pop("SQLITE_RPC_ARGS", None)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python-client"), HERE, env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


# ---- /proc -------------------------------------------------------------------------------

def proc_status(pid: int) -> Dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of a live process."""
    out: Dict[str, int] = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def fd_count(pid: Any = "self") -> int:
    return len(os.listdir("/proc/%s/fd" % pid))


def children_of(pid: Any = "self") -> List[int]:
    """Every child process (zombies included: they are still children until reaped)."""
    pids: List[int] = []
    base = "/proc/%s/task" % pid
    for tid in os.listdir(base):
        try:
            with open(os.path.join(base, tid, "children")) as f:
                pids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            pass
    return sorted(set(pids))


def zombies_among(pids: Sequence[int]) -> List[int]:
    out = []
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    out.append(p)
        except FileNotFoundError:
            pass
    return out


def gone(pid: int, wait: float = 15.0) -> bool:
    """True once `pid` no longer runs (a zombie counts as gone). Polls: a hang guard only."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# ---- files -------------------------------------------------------------------------------

def check_file(path: str) -> Tuple[str, sqlite3.Connection]:
    """Open a database with the stdlib (which recovers a WAL left by a killed writer) and
    return its integrity_check verdict and the open connection."""
    con = sqlite3.connect(path, timeout=30)
    verdict = "\n".join(r[0] for r in con.execute("PRAGMA integrity_check"))
    return verdict, con


def logical_dump(path: str) -> List[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


# ---- a raw framed pipe to a server -------------------------------------------------------

class RpcFailure(Exception):
    def __init__(self, error: Dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error
        self.code = error.get("code")
        self.kind = (error.get("data") or {}).get("kind")


class ServerClosed(Exception):
    pass


_HEADER = re.compile(rb"Content-Length: ([0-9]+)\r\n\r\n")


class Pipe:
    """The real server behind a raw pipe: bytes in, and a strict parser of what comes out.

    The server writes exactly `Content-Length: N\\r\\n\\r\\n` + N bytes; anything else on
    stdout is kept in `garbage` (which a test expects to stay empty). Every reply is also
    kept in `messages`, in arrival order. stderr goes to a file: never a full pipe.
    """

    def __init__(self, args: Sequence[str] = (), cwd: Optional[str] = None, stderr_path: Optional[str] = None,
                 binary: Optional[str] = None) -> None:
        self.stderr_path = stderr_path
        err = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen([binary or BINARY, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, bufsize=0, cwd=cwd, env=child_env(), close_fds=True)
        finally:
            if stderr_path:
                err.close()  # type: ignore[union-attr]
        self.pid = self.proc.pid
        self.wfd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        self.rfd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self.buf = bytearray()
        self.garbage = bytearray()
        self.undecodable: List[bytes] = []
        self.messages: List[Any] = []
        self.replies: Dict[Any, Any] = {}
        self.eof = False
        self.returncode: Optional[int] = None
        self.maxrss_kb: Optional[int] = None
        self.next_id = 1
        self.bytes_in = 0

    # -- writing --
    def write(self, data: bytes) -> bool:
        """False when the server no longer reads (EPIPE): the rest was not delivered."""
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.wfd, view)
                view = view[n:]
            return True
        except (BrokenPipeError, OSError):
            return False

    @staticmethod
    def frame(msg: Any) -> bytes:
        body = msgpack.packb(msg, use_bin_type=True)
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    def request_bytes(self, method: str, params: Optional[Dict[str, Any]] = None, id_: Any = None) -> Tuple[Any, bytes]:
        if id_ is None:
            id_ = self.next_id
            self.next_id += 1
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        return id_, self.frame(msg)

    def send(self, method: str, params: Optional[Dict[str, Any]] = None, id_: Any = None) -> Any:
        id_, data = self.request_bytes(method, params, id_)
        self.write(data)
        return id_

    def notify(self, method: str, params: Optional[Dict[str, Any]] = None) -> None:
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.write(self.frame(msg))

    def close_stdin(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    # -- reading --
    def pump(self, timeout: float) -> int:
        """Read what arrives within `timeout` (returns at the first data); parse whole frames.
        Returns the number of new messages."""
        if self.eof:
            return 0
        r, _, _ = select.select([self.rfd], [], [], max(0.0, timeout))
        if not r:
            return 0
        data = os.read(self.rfd, 1 << 20)
        if not data:
            self.eof = True
            return 0
        self.bytes_in += len(data)
        self.buf += data
        return self._parse()

    def _parse(self) -> int:
        n = 0
        buf = self.buf
        while buf:
            m = _HEADER.match(buf)
            if m is None:
                # An incomplete header is fine; anything else is not a frame.
                head = bytes(buf[:40])
                if re.fullmatch(rb"Content-Length: [0-9]*\r?\n?\r?", head) or b"Content-Length: ".startswith(head):
                    break
                self.garbage += buf
                del buf[:]
                break
            length = int(m.group(1))
            start = m.end()
            if len(buf) < start + length:
                break
            body = bytes(buf[start:start + length])
            del buf[:start + length]
            try:
                msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
            except Exception:  # noqa: BLE001 - an undecodable reply is an observation
                self.undecodable.append(body)
                continue
            self.messages.append(msg)
            if isinstance(msg, dict) and "id" in msg and msg["id"] is not None:
                self.replies[msg["id"]] = msg
            n += 1
        return n

    def reply(self, id_: Any, timeout: float = 60.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while id_ not in self.replies:
            if self.eof:
                raise ServerClosed("the server closed stdout before replying to %r (status %s)" % (id_, self.poll()))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply to %r within %.0f s" % (id_, timeout))
            self.pump(min(left, 1.0))
        return self.replies[id_]

    def call(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: float = 60.0) -> Any:
        msg = self.reply(self.send(method, params), timeout)
        if "error" in msg:
            raise RpcFailure(msg["error"])
        return msg.get("result")

    def init(self, **extra: Any) -> Dict[str, Any]:
        return self.call("initialize", dict({"protocol_version": 1}, **extra))

    def drain_until_eof(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.pump(min(1.0, deadline - time.monotonic()))

    # -- the process --
    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self._wait4(os.WNOHANG)
        return self.returncode

    def _wait4(self, flags: int) -> None:
        try:
            pid, status, usage = os.wait4(self.pid, flags)
        except ChildProcessError:
            return
        if pid == 0:
            return
        self.returncode = os.waitstatus_to_exitcode(status)
        self.maxrss_kb = usage.ru_maxrss
        self.proc.returncode = self.returncode  # Popen must not wait for it again

    def wait(self, timeout: float = 30.0) -> int:
        """Exit status (negative: killed by that signal). Fails rather than hangs."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("server %d did not exit within %.0f s" % (self.pid, timeout))
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def kill9(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wait()

    def shutdown(self, timeout: float = 30.0) -> int:
        self.call("shutdown", timeout=timeout)
        self.notify("exit")
        self.close_stdin()
        return self.wait(timeout)

    def stderr_text(self) -> str:
        if not self.stderr_path:
            return ""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_events(self) -> List[Dict[str, Any]]:
        out = []
        for line in self.stderr_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def close(self) -> None:
        """Leave nothing behind: kill if still running, reap, close the pipes."""
        if self.poll() is None:
            self.close_stdin()
            try:
                self.wait(5)
            except TimeoutError:
                self.kill9()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def __enter__(self) -> "Pipe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def well_formed_reply(msg: Any) -> Optional[str]:
    """None if msg is a well-formed JSON-RPC 2.0 reply of this protocol; else what is wrong."""
    if not isinstance(msg, dict):
        return "not a map: %r" % (msg,)
    if msg.get("jsonrpc") != "2.0":
        return "jsonrpc is %r" % (msg.get("jsonrpc"),)
    if "id" not in msg:
        return "no id"
    if not (msg["id"] is None or isinstance(msg["id"], (int, str))) or isinstance(msg["id"], bool):
        return "bad id %r" % (msg["id"],)
    if ("result" in msg) == ("error" in msg):
        return "needs exactly one of result and error: %r" % sorted(msg)
    if set(msg) - {"jsonrpc", "id", "result", "error"}:
        return "extra members %r" % sorted(set(msg) - {"jsonrpc", "id", "result", "error"})
    if "error" in msg:
        e = msg["error"]
        if not isinstance(e, dict) or not isinstance(e.get("code"), int) or not isinstance(e.get("message"), str):
            return "malformed error object %r" % (e,)
        kind = (e.get("data") or {}).get("kind")
        if kind not in KIND_CODES:
            return "unknown error kind %r" % (kind,)
        if KIND_CODES[kind] != e["code"]:
            return "code %r does not match kind %s (%r)" % (e["code"], kind, KIND_CODES[kind])
        if kind == "InternalError":
            return "an InternalError reply: %r" % (e,)
    return None


# ---- item 1: kill -9 during a stream of acknowledged writes ------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS w(k TEXT PRIMARY KEY, grp TEXT NOT NULL, n INTEGER NOT NULL, payload BLOB, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS c(s INTEGER PRIMARY KEY, v INTEGER NOT NULL);
"""


def _row(rng: random.Random, key: str, grp: str, n: int) -> List[Any]:
    size = rng.choice([0, 16, 200, 1500, 4000, 20000])
    payload = rng.randbytes(size)
    return [key, grp, n, payload, hashlib.sha1(payload).hexdigest()]


class _Op:
    __slots__ = ("session", "kind", "keys", "ids", "ok", "failed", "grp")

    def __init__(self, session: int, kind: str, grp: str, keys: List[str]) -> None:
        self.session, self.kind, self.grp, self.keys = session, kind, grp, keys
        self.ids: List[Any] = []
        self.ok = 0
        self.failed: List[Any] = []


def kill9_trial(folder: str, synchronous: str, seed: int, *, sessions: int = 4, in_flight: int = 24,
                max_acked_ops: int = 400) -> Dict[str, Any]:
    """One trial: pipelined writes of every kind from several sessions; SIGKILL once a random
    number of them is acknowledged, with more in flight; then the stdlib checks the file.

    Returns the trial's figures; raises AssertionError on any lost or torn write."""
    rng = random.Random(seed)
    path = os.path.join(folder, "kill9-%s-%d.sqlite" % (synchronous, seed))
    remove_db(path)
    target = rng.randint(5, max_acked_ops)
    pipe = Pipe(["--synchronous", synchronous], cwd=folder, stderr_path=path + ".stderr")
    ops: Dict[Any, _Op] = {}  # request id -> op
    all_ops: List[_Op] = []
    acked_ops = 0
    sent_updates = [0] * (sessions + 1)
    acked_updates = [0] * (sessions + 1)
    errors: List[Any] = []
    try:
        pipe.init()
        for s in range(1, sessions + 1):
            pipe.call("open", {"session": s, "path": path, "timeout": 60.0})
        pipe.call("script", {"session": 1, "sql": SCHEMA + "".join("INSERT OR IGNORE INTO c VALUES (%d, 0);" % s for s in range(1, sessions + 1))})
        # Per session, requests are applied in order, so a session may have several ops queued.
        counter = 0
        outstanding = 0

        def issue() -> int:
            nonlocal counter
            s = rng.randint(1, sessions)
            counter += 1
            kind = rng.choice(["exec", "exec", "exec", "batch", "many", "tx", "update"])
            grp = "s%d-%d" % (s, counter)
            if kind == "exec":
                op = _Op(s, kind, grp, [grp])
                reqs = [("execute", {"session": s, "sql": "INSERT INTO w VALUES (?, ?, ?, ?, ?)", "params": _row(rng, grp, grp, 1)})]
            elif kind == "batch":
                keys = ["%s.%d" % (grp, i) for i in range(3)]
                op = _Op(s, kind, grp, keys)
                reqs = [("batch", {"session": s, "statements": [["INSERT INTO w VALUES (?, ?, ?, ?, ?)", _row(rng, k, grp, 3)] for k in keys]})]
            elif kind == "many":
                keys = ["%s.%d" % (grp, i) for i in range(4)]
                op = _Op(s, kind, grp, keys)
                reqs = [("executemany", {"session": s, "sql": "INSERT INTO w VALUES (?, ?, ?, ?, ?)", "seq_of_params": [_row(rng, k, grp, 4) for k in keys]})]
            elif kind == "tx":
                keys = ["%s.%d" % (grp, i) for i in range(3)]
                op = _Op(s, kind, grp, keys)
                reqs = [("begin", {"session": s, "mode": "immediate"})]
                reqs += [("execute", {"session": s, "sql": "INSERT INTO w VALUES (?, ?, ?, ?, ?)", "params": _row(rng, k, grp, 3)}) for k in keys]
                reqs.append(("commit", {"session": s}))
            else:
                op = _Op(s, kind, grp, [])
                sent_updates[s] += 1
                reqs = [("execute", {"session": s, "sql": "UPDATE c SET v = v + 1 WHERE s = ?", "params": [s]})]
            data = []
            for method, params in reqs:
                rid, b = pipe.request_bytes(method, params)
                op.ids.append(rid)
                ops[rid] = op
                data.append(b)
            all_ops.append(op)
            pipe.write(b"".join(data))
            return len(reqs)

        while acked_ops < target:
            while outstanding < in_flight:
                outstanding += issue()
            before = len(pipe.messages)
            pipe.pump(30.0)
            if pipe.eof:
                raise AssertionError("the server closed its output before the kill (status %s): %s" % (pipe.poll(), pipe.stderr_text()[-2000:]))
            if len(pipe.messages) == before and not pipe.buf:
                raise AssertionError("no reply within 30 s with %d requests outstanding" % outstanding)
            for msg in pipe.messages[before:]:
                op = ops.pop(msg.get("id"), None)
                if op is None:
                    errors.append(("unexpected message", msg))
                    continue
                outstanding -= 1
                if "error" in msg:
                    op.failed.append(msg["error"])
                    errors.append((op.kind, msg["error"]))
                    continue
                op.ok += 1
                if op.ok == len(op.ids):
                    acked_ops += 1
                    if op.kind == "update":
                        acked_updates[op.session] += 1
        in_flight_at_kill = outstanding
        os.kill(pipe.pid, signal.SIGKILL)
        status = pipe.wait()
    finally:
        pipe.close()
    assert status == -signal.SIGKILL, "the server was not killed by SIGKILL (status %s)" % status
    assert not pipe.garbage, "bytes on stdout that are not frames: %r" % bytes(pipe.garbage[:200])
    assert not errors, "error replies before the kill: %r" % errors[:5]

    # The file as the stdlib sees it after the crash (it recovers the WAL on open).
    verdict, con = check_file(path)
    try:
        assert verdict == "ok", "integrity_check after kill -9: %s" % verdict
        present = {}
        torn = []
        for k, grp, n, payload, digest in con.execute("SELECT k, grp, n, payload, digest FROM w"):
            present[k] = (grp, n)
            if hashlib.sha1(payload).hexdigest() != digest:
                torn.append(k)
        groups: Dict[str, List[int]] = {}  # grp -> [rows present, rows it has]
        for grp, n in present.values():
            groups.setdefault(grp, [0, n])[0] += 1
        counters = dict(con.execute("SELECT s, v FROM c"))
    finally:
        con.close()
    assert not torn, "rows whose payload does not match its digest: %r" % torn[:5]
    partial = {g: c for g, c in groups.items() if c[0] != c[1]}
    assert not partial, "groups (transactions, batches, executemany) only partly present: %r" % partial
    lost: List[str] = []
    acked_rows = 0
    unacked_present = 0
    sent_keys = set()
    for op in all_ops:
        sent_keys.update(op.keys)
        if op.ok == len(op.ids):
            acked_rows += len(op.keys)
            lost.extend(k for k in op.keys if k not in present)
        elif op.keys and op.keys[0] in present:
            unacked_present += 1
    assert not lost, "acknowledged writes missing after kill -9 (%s): %r" % (synchronous, lost[:10])
    assert set(present) <= sent_keys, "rows nobody wrote: %r" % sorted(set(present) - sent_keys)[:5]
    for s in range(1, sessions + 1):
        assert acked_updates[s] <= counters[s] <= sent_updates[s], \
            "session %d counter %d outside [acked %d, sent %d]" % (s, counters[s], acked_updates[s], sent_updates[s])

    # And a new server carries on with the same file.
    with Pipe([], cwd=folder, stderr_path=path + ".stderr2") as again:
        again.init()
        again.call("open", {"session": 1, "path": path})
        n_before = again.call("execute", {"session": 1, "sql": "SELECT count(*) FROM w"})["rows"][0][0]
        again.call("execute", {"session": 1, "sql": "INSERT INTO w VALUES ('after', 'after', 1, x'', ?)", "params": [hashlib.sha1(b"").hexdigest()]})
        n_after = again.call("execute", {"session": 1, "sql": "SELECT count(*) FROM w"})["rows"][0][0]
        assert (n_before, n_after) == (len(present), len(present) + 1)
        assert again.shutdown() == 0
    for suffix in ("", "-wal", "-shm", ".stderr", ".stderr2"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
    return {"synchronous": synchronous, "seed": seed, "acked_ops": acked_ops, "acked_rows": acked_rows,
            "rows_present": len(present), "in_flight_at_kill": in_flight_at_kill,
            "unacked_ops_present": unacked_present, "updates_acked": sum(acked_updates), "updates_applied": sum(counters.values())}


# ---- the process-wide server of sqlite_rpc ------------------------------------------------

class process_server_args:
    """Run the block with this process's sqlite_rpc server started with extra flags
    ($SQLITE_RPC_ARGS); the server is stopped before and after, so nothing else sees them."""

    def __init__(self, *args: str) -> None:
        self.args = " ".join(args)
        self.old: Optional[str] = None

    def __enter__(self) -> "process_server_args":
        import sqlite_rpc

        sqlite_rpc.shutdown()
        self.old = os.environ.get("SQLITE_RPC_ARGS")
        os.environ["SQLITE_RPC_ARGS"] = self.args
        return self

    def __exit__(self, *exc: Any) -> None:
        import sqlite_rpc

        sqlite_rpc.shutdown()
        if self.old is None:
            os.environ.pop("SQLITE_RPC_ARGS", None)
        else:
            os.environ["SQLITE_RPC_ARGS"] = self.old


def kill_process_server() -> int:
    """SIGKILL this process's sqlite_rpc server and reap it; the client has not noticed yet."""
    from sqlite_rpc import process

    srv = process.get_server()
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait()
    return srv.pid


def db_stats(path: str) -> Dict[str, Any]:
    """The server's stats for one database file (through this process's server)."""
    from sqlite_rpc import process

    real = os.path.realpath(path)
    for d in process.get_server().call("stats", {})["databases"]:
        if d["path"] == real:
            return d
    raise AssertionError("database %s is not open in the server" % real)


def wait_until(cond: Any, what: str, timeout: float = 30.0) -> None:
    """Poll until cond() is true; a hang guard, not a timing claim."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.01)


# ---- item 6: several processes, each with its own server, writing one file ---------------

_WRITER_CHILD = r"""
import json, os, sqlite3, sys, threading, time
import sqlite_rpc
path, me, ops, duration, nthreads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print("ready", flush=True)
sys.stdin.readline()  # every process starts writing at once
acked = {}
errors = []
end = time.monotonic() + duration

def worker(t):
    db = sqlite_rpc.Database(path)          # autocommit, group-committed
    conn = sqlite_rpc.connect(path)         # sqlite3's default transactions, timeout 5 s as sqlite3
    rows = 0
    i = 0
    while (i < ops) if duration <= 0 else (time.monotonic() < end):
        key = "p%d-t%d-%d" % (me, t, i)
        try:
            kind = i % 4
            if kind == 0:                   # CrewAI's pattern: a connection per operation
                c = sqlite_rpc.connect(path)
                try:
                    c.execute("INSERT INTO w VALUES (?, ?, ?)", (key, me, kind))
                    c.commit()
                finally:
                    c.close()
                rows += 1
            elif kind == 1:
                db.execute_update("INSERT INTO w VALUES (?, ?, ?)", (key, me, kind))
                rows += 1
            elif kind == 2:                 # a transaction of three rows
                with conn:
                    for j in range(3):
                        conn.execute("INSERT INTO w VALUES (?, ?, ?)", ("%s.%d" % (key, j), me, kind))
                rows += 3
            else:
                conn.executemany("INSERT INTO w VALUES (?, ?, ?)", [("%s.%d" % (key, j), me, kind) for j in range(5)])
                conn.commit()
                rows += 5
        except Exception as e:
            errors.append("%s: %s" % (type(e).__name__, e))
            try:
                conn.rollback()
            except Exception:
                pass
        i += 1
    acked[t] = rows
    db.close()
    conn.close()

threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
for th in threads: th.start()
for th in threads: th.join()
print(json.dumps({"rows": sum(acked.values()), "errors": errors}), flush=True)
"""


def concurrent_writers(folder: str, *, processes: int = 4, threads: int = 2, ops: int = 40, duration: float = 0.0,
                       server_args: str = "") -> Dict[str, Any]:
    """`processes` Python processes, each with its own server, write one file at once (each
    thread `ops` operations, or for `duration` seconds). Returns the figures; raises
    AssertionError on any error surfaced to Python or any acknowledged row missing."""
    path = os.path.join(folder, "multiprocess.sqlite")
    remove_db(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE w(k TEXT PRIMARY KEY, proc INTEGER, kind INTEGER)")
    con.commit()
    con.close()
    env = child_env(SQLITE_RPC_ARGS=server_args)
    kids = [subprocess.Popen([sys.executable, "-c", _WRITER_CHILD, path, str(p), str(ops), str(duration), str(threads)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for p in range(processes)]
    reports = []
    t0 = time.monotonic()
    try:
        for k in kids:
            assert k.stdout.readline().strip() == "ready", k.stderr.read()  # type: ignore[union-attr]
        for k in kids:
            k.stdin.write("go\n")  # type: ignore[union-attr]
            k.stdin.flush()  # type: ignore[union-attr]
        for k in kids:
            out, err = k.communicate(timeout=max(600.0, duration * 3))
            assert k.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for k in kids:
            if k.poll() is None:
                k.kill()
                k.wait()
    elapsed = time.monotonic() - t0
    errors = [e for r in reports for e in r["errors"]]
    verdict, con = check_file(path)
    try:
        per_proc = dict(con.execute("SELECT proc, count(*) FROM w GROUP BY proc"))
    finally:
        con.close()
    locked = sum("database is locked" in e for e in errors)
    assert verdict == "ok", verdict
    assert not errors, "errors surfaced to Python (%d 'database is locked'): %r" % (locked, errors[:5])
    for p, r in enumerate(reports):
        assert per_proc.get(p, 0) == r["rows"], "process %d: %d rows acknowledged, %d in the file" % (p, r["rows"], per_proc.get(p, 0))
    remove_db(path)
    return {"processes": processes, "threads": threads, "rows": sum(r["rows"] for r in reports),
            "per_process": [r["rows"] for r in reports], "locked": locked, "errors": len(errors), "seconds": round(elapsed, 1)}


# ---- item 7: no leaks across connect/close cycles and server restarts --------------------

def resources() -> Dict[str, Any]:
    """What this process and its sqlite_rpc server hold right now."""
    import threading

    from sqlite_rpc import process

    srv = process.get_server()
    st = proc_status(srv.pid)
    stats = srv.call("stats", {})
    kids = children_of()
    return {"py_fds": fd_count(), "py_threads": threading.active_count(), "py_children": kids,
            "py_zombies": zombies_among(kids), "py_rss_kb": proc_status(os.getpid())["VmRSS"],
            "srv_pid": srv.pid, "srv_fds": fd_count(srv.pid), "srv_threads": st["Threads"], "srv_rss_kb": st["VmRSS"],
            "sessions": stats["sessions"], "cursors": stats["cursors"], "databases": len(stats["databases"])}


def _settled(databases_closed: bool) -> Dict[str, Any]:
    """resources() once closes (not awaited by the client), and idle databases if asked, are done."""
    from sqlite_rpc import process

    def quiet() -> bool:
        st = process.get_server().call("stats", {})
        return st["sessions"] == 0 and st["cursors"] == 0 and (not st["databases"] or not databases_closed)

    wait_until(quiet, "sessions, cursors and databases to close", timeout=60)
    # A closed database's reader workers are terminated asynchronously (threads and
    # descriptors go a little later): wait until the counts hold still.
    srv = process.get_server().pid
    last, same, deadline = None, 0, time.monotonic() + 30
    while same < 10 and time.monotonic() < deadline:
        now = (fd_count(srv), proc_status(srv)["Threads"])
        same = same + 1 if now == last else 0
        last = now
        time.sleep(0.05)
    return resources()


def connect_cycles(folder: str, cycles: int, files: int = 4, warmup: int = 60, churn: bool = False) -> Dict[str, Any]:
    """connect/use/close cycles in this process over `files` databases: sessions, cursors
    and transactions come and go. With churn (the caller runs the server with
    --db-idle-close-ms 50 and uses many files), the server also keeps closing and reopening
    the databases: reader workers and file handles come and go too. Compares what is held
    before and after (with every database closed both times when churning)."""
    import sqlite_rpc

    paths = [os.path.join(folder, "cycle-%d.sqlite" % i) for i in range(files)]
    for p in paths:
        c = sqlite_rpc.connect(p)
        c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
        c.commit()
        c.close()

    def cycle(i: int) -> None:
        c = sqlite_rpc.connect(paths[i % files])
        c.execute("INSERT INTO t(v) VALUES (?)", (os.urandom(200),))
        c.commit()
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] >= 1
        if i % 5 == 0:
            # A result bigger than a page, left half read: the server holds a cursor until close.
            cur = c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) SELECT i FROM n")
            cur.fetchmany(3)
        if i % 7 == 0:
            c.execute("INSERT INTO t(v) VALUES (x'00')")  # a transaction left open: close rolls it back
        c.close()

    for i in range(warmup):
        cycle(i)
    before = _settled(churn)
    for i in range(cycles):
        cycle(i)
    after = _settled(churn)
    return {"cycles": cycles, "before": before, "after": after}


def server_restarts(folder: str, restarts: int, warmup: int = 5) -> Dict[str, Any]:
    """Restart this process's server `restarts` times (every third by kill -9, the rest by
    sqlite_rpc.shutdown()), using it after each start. Compares what the Python process
    holds, and the RSS of a fresh server, before and after."""
    import sqlite_rpc
    from sqlite_rpc import process

    path = os.path.join(folder, "restarts.sqlite")
    conn = sqlite_rpc.connect(path)  # one connection lives through every restart
    conn.execute("CREATE TABLE IF NOT EXISTS t(i INTEGER)")
    conn.commit()
    pids = set()

    def restart(i: int) -> None:
        if i % 3 == 2:
            kill_process_server()
        else:
            sqlite_rpc.shutdown()
        c = sqlite_rpc.connect(path)
        c.execute("INSERT INTO t VALUES (?)", (i,))
        c.commit()
        c.close()
        assert conn.execute("SELECT count(*) FROM t WHERE i = ?", (i,)).fetchone() == (1,)
        pids.add(process.get_server().pid)

    for i in range(warmup):
        restart(i)
    before = resources()
    for i in range(restarts):
        restart(warmup + i)
    after = resources()
    conn.close()
    return {"restarts": restarts, "distinct_servers": len(pids), "before": before, "after": after}


def assert_no_leaks(before: Dict[str, Any], after: Dict[str, Any], *, server_same: bool) -> None:
    """Descriptors, threads and children exactly as before; memory within a generous bound
    (RSS is noisy: allocator and V8 heap growth are not leaks, 64 MB more would be)."""
    assert after["py_fds"] == before["py_fds"], (before, after)
    assert after["py_threads"] == before["py_threads"], (before, after)
    assert len(after["py_children"]) == len(before["py_children"]) == 1, (before, after)
    assert not after["py_zombies"], after
    assert after["py_rss_kb"] < before["py_rss_kb"] + 64 * 1024, (before, after)
    if server_same:
        assert after["srv_pid"] == before["srv_pid"]
        assert after["srv_fds"] <= before["srv_fds"], (before, after)
        assert after["srv_threads"] <= before["srv_threads"] + 1, (before, after)
        assert after["srv_rss_kb"] < before["srv_rss_kb"] + 64 * 1024, (before, after)
    else:
        assert after["srv_fds"] == before["srv_fds"], (before, after)
        assert after["srv_threads"] <= before["srv_threads"] + 1, (before, after)
        assert after["srv_rss_kb"] < before["srv_rss_kb"] + 32 * 1024, (before, after)
