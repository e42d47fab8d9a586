"""One server for all processes of a user (issue 13): discovery, start races, lifetime,
faults and security of the shared server, through real processes and the real binary.

Every test has a runtime folder of its own (XDG_RUNTIME_DIR) and asks for shared mode
explicitly, so this file tests the shared server in a SQLITE_RPC_SHARED=0 run too. Time only
bounds waits (hang guards); nothing asserts how long anything took.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import pytest

import sqlite_rpc
from sqlite_rpc import process, shared

from _harness import in_forked_child
from conftest import RUNTIME_ROOT, ROOT, _alive, listen_servers, subprocess_env, wait_no_listen_servers

IDLE_ARGS = "--idle-exit-ms 1000"  # so that the servers of a test are gone soon after it


# ---- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def runtime():
    """A runtime folder (XDG_RUNTIME_DIR) of this test's own; no server may outlive the test."""
    folder = tempfile.mkdtemp(dir=RUNTIME_ROOT, prefix="t")
    yield folder
    left = wait_no_listen_servers(folder, 60.0)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "shared servers of this test still running 60 s after it (killed now): %s" % left


@pytest.fixture
def here(runtime, monkeypatch):
    """This process's shared server, in the test's runtime folder, with a short idle exit."""
    sqlite_rpc.shutdown(shared=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    monkeypatch.setenv("SQLITE_RPC_ARGS", IDLE_ARGS)
    yield runtime
    sqlite_rpc.shutdown(shared=True)


def _gone(pid: int, bound: float = 30.0) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _cmdline(pid: int) -> List[str]:
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [os.fsdecode(a) for a in f.read().split(b"\0")[:-1]]


def _parent(pid: int) -> int:
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _environ(pid: int) -> Dict[str, str]:
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(os.fsdecode(e).partition("=")[::2] for e in f.read().split(b"\0") if e)


def _log_events(sock: str) -> List[str]:
    """The events the servers of this socket wrote to its log (s-<hash>.log)."""
    with open(sock[: -len(".sock")] + ".log") as f:
        return [json.loads(line).get("event") for line in f if line.startswith("{")]


def _rows(path: str, sql: str = "SELECT v FROM t ORDER BY v") -> List[Any]:
    with sqlite3.connect(path) as c:  # the stdlib's own view of the file
        return [r[0] for r in c.execute(sql)]


# A child Python that runs commands from its stdin (one JSON object a line) and answers each
# with one JSON line, so a test can drive several processes step by step.
CHILD = r"""
import json, os, sys, time
import sqlite_rpc
conns = {}

def reply(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd.pop("op")
    try:
        if op == "ping":
            reply(ok=True, me=os.getpid())
        elif op == "connect":
            conns[cmd["name"]] = sqlite_rpc.connect(cmd["path"], timeout=cmd.get("timeout", 5.0))
            reply(ok=True)
        elif op == "exec":
            rows = conns[cmd["name"]].execute(cmd["sql"], cmd.get("params", [])).fetchall()
            reply(ok=True, rows=rows)
        elif op == "commit":
            conns[cmd["name"]].commit()
            reply(ok=True)
        elif op == "server":
            info = sqlite_rpc.server_info()["server"]
            reply(ok=True, pid=info.get("pid"), shared=info.get("shared"),
                  connections=sqlite_rpc.stats().get("connections"), me=os.getpid())
        elif op == "exit":
            reply(ok=True)
            sys.stdout.flush()
            if cmd.get("abrupt"):
                os._exit(0)  # no atexit: the server sees the connection end by itself
            break
        else:
            reply(ok=False, error="unknown op %s" % op)
    except Exception as e:
        reply(ok=False, type=type(e).__name__, error=str(e))
"""


class Child:
    """A Python process on the shared server of a runtime folder, driven command by command."""

    def __init__(self, runtime: str, args: str = IDLE_ARGS, cwd: Optional[str] = None, **env: str) -> None:
        e = subprocess_env(XDG_RUNTIME_DIR=runtime, SQLITE_RPC_SHARED="1", SQLITE_RPC_ARGS=args, **env)
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, env=e, cwd=cwd)
        self.pid = self.p.pid

    def send(self, op: str, **kw: Any) -> None:
        self.p.stdin.write(json.dumps(dict(kw, op=op)) + "\n")  # type: ignore[union-attr]
        self.p.stdin.flush()  # type: ignore[union-attr]

    def reply(self, bound: float = 60.0) -> Dict[str, Any]:
        ready, _, _ = select.select([self.p.stdout], [], [], bound)
        line = self.p.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line:
            self.err.seek(0)
            raise AssertionError("child %d gave no answer; its stderr:\n%s" % (self.pid, self.err.read().decode(errors="replace")))
        return json.loads(line)

    def do(self, op: str, **kw: Any) -> Dict[str, Any]:
        self.send(op, **kw)
        return self.reply()

    def ok(self, op: str, **kw: Any) -> Dict[str, Any]:
        r = self.do(op, **kw)
        assert r["ok"], r
        return r

    def end(self, abrupt: bool = False) -> int:
        if self.p.poll() is None:
            try:
                self.ok("exit", abrupt=abrupt)
            except (BrokenPipeError, AssertionError):
                pass
        code = self.p.wait(timeout=60)
        self.err.close()
        return code

    def kill(self) -> None:
        self.p.kill()
        self.p.wait(timeout=60)
        self.err.close()


# ---- one server for many processes --------------------------------------------------------------

def test_four_processes_share_one_server(runtime, tmp_path):
    path = str(tmp_path / "four.db")
    kids = [Child(runtime) for _ in range(4)]
    try:
        for i, k in enumerate(kids):
            k.ok("connect", name="c", path=path, timeout=30.0)
            k.ok("exec", name="c", sql="CREATE TABLE IF NOT EXISTS t(v TEXT)")
            for j in range(25):
                k.ok("exec", name="c", sql="INSERT INTO t VALUES (?)", params=["%d-%02d" % (i, j)])
            k.ok("commit", name="c")
        seen = [k.ok("server") for k in kids]  # all four connected now
        pids = {s["pid"] for s in seen}
        assert len(pids) == 1 and None not in pids, seen
        pid = pids.pop()
        assert all(s["shared"] is True for s in seen), seen
        assert all(s["connections"] >= 4 for s in seen), seen
        assert pid not in [k.pid for k in kids]
        assert listen_servers(runtime) == [pid]
        argv = _cmdline(pid)
        sock = argv[argv.index("--listen") + 1]
        assert os.path.dirname(sock) == os.path.join(runtime, "sqlite-rpc") and stat.S_ISSOCK(os.stat(sock).st_mode)
    finally:
        for k in kids:
            k.end()
    assert _rows(path) == sorted("%d-%02d" % (i, j) for i in range(4) for j in range(25))


def test_racing_starts_end_with_one_server(runtime, tmp_path):
    path = str(tmp_path / "race.db")
    kids = [Child(runtime) for _ in range(6)]
    try:
        for k in kids:
            k.ok("ping")  # imported and waiting: the connects below go out together
        for k in kids:
            k.send("connect", name="c", path=path, timeout=30.0)
        for k in kids:
            assert k.reply()["ok"]
        for i, k in enumerate(kids):
            k.ok("exec", name="c", sql="CREATE TABLE IF NOT EXISTS t(v TEXT)")
            k.ok("exec", name="c", sql="INSERT INTO t VALUES (?)", params=[str(i)])
            k.ok("commit", name="c")
        pids = {k.ok("server")["pid"] for k in kids}
        assert len(pids) == 1 and None not in pids, pids
        assert listen_servers(runtime) == sorted(pids)
        # One start, not six that found a server there (exit 75): the lock made the others wait.
        argv = _cmdline(pids.pop())
        events = _log_events(argv[argv.index("--listen") + 1])
        assert events.count("listening") == 1 and "already_listening" not in events, events
    finally:
        for k in kids:
            k.end()
    assert _rows(path) == [str(i) for i in range(6)]


def test_the_server_outlives_its_starter_and_exits_once_idle(runtime, tmp_path):
    path = str(tmp_path / "life.db")
    starter, other = Child(runtime), Child(runtime)
    try:
        starter.ok("connect", name="c", path=path)
        starter.ok("exec", name="c", sql="CREATE TABLE t(v TEXT)")
        pid = starter.ok("server")["pid"]
        assert _parent(pid) == starter.pid
        other.ok("connect", name="c", path=path)
        assert other.ok("server")["pid"] == pid
        assert starter.end() == 0  # its atexit lets go of the server, and does not stop it
        other.ok("exec", name="c", sql="INSERT INTO t VALUES ('after the starter left')")
        other.ok("commit", name="c")
        assert other.ok("server")["pid"] == pid
        assert listen_servers(runtime) == [pid]
    finally:
        starter.end()
        other.end()
    assert _gone(pid, 60.0), "the shared server did not exit once idle"
    assert _rows(path) == ["after the starter left"]


def test_a_stale_socket_is_replaced_on_next_use(runtime, tmp_path):
    path = str(tmp_path / "stale.db")
    first = Child(runtime, args="--idle-exit-ms 600000")  # it stays until killed
    first.ok("connect", name="c", path=path)
    first.ok("exec", name="c", sql="CREATE TABLE t(v TEXT)")
    first.ok("exec", name="c", sql="INSERT INTO t VALUES ('before')")
    first.ok("commit", name="c")
    old = first.ok("server")["pid"]
    argv = _cmdline(old)
    sock = argv[argv.index("--listen") + 1]
    first.end()
    os.kill(old, signal.SIGKILL)
    assert _gone(old)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # left behind: nobody listens on it
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(sock)
    second = Child(runtime, args="--idle-exit-ms 600000")
    try:
        second.ok("connect", name="c", path=path)
        assert second.ok("exec", name="c", sql="SELECT v FROM t")["rows"] == [["before"]]
        new = second.ok("server")["pid"]
        assert new != old and listen_servers(runtime) == [new]
        assert os.path.exists(sock)  # the new server's, in the stale one's place
    finally:
        second.end()
        for pid in listen_servers(runtime):
            os.kill(pid, signal.SIGKILL)


def test_the_binary_and_the_flags_pick_the_server(runtime, tmp_path):
    # Same binary through a symlink: the same server. Other flags: another server.
    link = str(tmp_path / "sqlite-rpc-link")
    os.symlink(os.environ["SQLITE_RPC_BINARY"], link)
    a, b = Child(runtime), Child(runtime, SQLITE_RPC_BINARY=link)
    c = Child(runtime, args=IDLE_ARGS + " --pool-size 1")
    try:
        pids = [k.ok("server")["pid"] for k in (a, b, c)]
        assert pids[0] == pids[1] and pids[2] != pids[0]
        assert listen_servers(runtime) == sorted({pids[0], pids[2]})
        assert "--pool-size" in _cmdline(pids[2]) and "--pool-size" not in _cmdline(pids[0])
    finally:
        for k in (a, b, c):
            k.end()


def test_the_server_is_started_as_a_daemon_would_be(runtime, tmp_path):
    # It outlives the process that started it: not in that process's folder (which may be
    # removed meanwhile: reader workers then failed to start, "uv_cwd"), not with NODE_* of
    # its environment (which a SEA binary would honour), not in its session.
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    starter = Child(runtime, cwd=str(doomed), NODE_OPTIONS="--invalid-flag", NODE_EXTRA_CA_CERTS="/nonexistent")
    try:
        starter.ok("connect", name="c", path=str(tmp_path / "later.db"))
        pid = starter.ok("server")["pid"]
        assert os.readlink("/proc/%d/cwd" % pid) == "/"
        assert os.getsid(pid) == pid and os.getsid(pid) != os.getsid(starter.pid)
        assert not any(k.startswith("NODE_") for k in _environ(pid))
        shutil.rmtree(doomed)
        starter.ok("exec", name="c", sql="CREATE TABLE t(v)")
        starter.ok("exec", name="c", sql="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
                                         "INSERT INTO t SELECT i FROM n")
        starter.ok("commit", name="c")
        assert starter.ok("exec", name="c", sql="SELECT count(*) FROM t")["rows"] == [[5000]]
    finally:
        starter.end()


# ---- faults ------------------------------------------------------------------------------------

def test_kill9_of_the_shared_server_mid_use(here, tmp_path):
    path = str(tmp_path / "k9.db")
    acked = sqlite_rpc.connect(path, shared=True)
    acked.execute("CREATE TABLE t(v TEXT)")
    acked.executemany("INSERT INTO t VALUES (?)", [("a%02d" % i,) for i in range(20)])
    acked.commit()
    reader = sqlite_rpc.connect(path, shared=True)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (20,)
    tx = sqlite_rpc.connect(path, shared=True)
    tx.execute("INSERT INTO t VALUES ('in the lost transaction')")
    assert tx.in_transaction
    old = sqlite_rpc.server_info(shared=True)["server"]["pid"]
    os.kill(old, signal.SIGKILL)
    assert _gone(old)
    # A read is repeated on the server found or started anew...
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (20,)
    new = sqlite_rpc.server_info(shared=True)["server"]["pid"]
    assert new != old and listen_servers(here) == [new]
    # ...an open transaction is reported lost...
    with pytest.raises(sqlite3.OperationalError, match="server exited unexpectedly.*transaction was lost"):
        tx.commit()
    # ...and what was acknowledged is all there.
    acked.execute("INSERT INTO t VALUES ('after')")
    acked.commit()
    for c in (acked, reader, tx):
        c.close()
    assert _rows(path) == ["a%02d" % i for i in range(20)] + ["after"]


def test_a_client_killed_mid_transaction_releases_the_writer(runtime, tmp_path):
    path = str(tmp_path / "writer.db")
    # Without the release at the connection's end only the idle-transaction limit would free
    # the writer: set far beyond the other writer's 30 s timeout.
    args = IDLE_ARGS + " --idle-tx-timeout 600000"
    holder, other = Child(runtime, args=args), Child(runtime, args=args)
    try:
        holder.ok("connect", name="c", path=path)
        holder.ok("exec", name="c", sql="CREATE TABLE t(v TEXT)")
        holder.ok("commit", name="c")
        holder.ok("exec", name="c", sql="BEGIN IMMEDIATE")
        holder.ok("exec", name="c", sql="INSERT INTO t VALUES ('killed')")
        other.ok("connect", name="short", path=path, timeout=0.2)
        locked = other.do("exec", name="short", sql="INSERT INTO t VALUES ('too early')")
        assert not locked["ok"] and "locked" in locked["error"], locked  # the holder has the writer
        assert other.ok("server")["pid"] == holder.ok("server")["pid"]
        holder.kill()
        other.ok("connect", name="c", path=path, timeout=30.0)
        other.ok("exec", name="c", sql="INSERT INTO t VALUES ('after')")
        other.ok("commit", name="c")
    finally:
        if holder.p.poll() is None:
            holder.kill()
        other.end()
    assert _rows(path) == ["after"]


# ---- security ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spoil", ["mode 0755", "mode 0710", "another owner", "a symlink"])
def test_an_unsafe_runtime_folder_is_refused(here, tmp_path, spoil):
    folder = os.path.join(here, "sqlite-rpc")
    if spoil == "a symlink":
        real = str(tmp_path / "elsewhere")
        os.mkdir(real, 0o700)
        os.symlink(real, folder)
    else:
        os.mkdir(folder, 0o700)
        if spoil.startswith("mode"):
            os.chmod(folder, int(spoil.split()[1], 8))
        elif os.geteuid() == 0:
            os.chown(folder, 65534, 65534)
        else:
            pytest.skip("giving a folder to another owner needs root")
    with pytest.raises(sqlite3.OperationalError) as err:
        sqlite_rpc.connect(str(tmp_path / "x.db"), shared=True)
    msg = str(err.value)
    assert "runtime folder %s is not safe" % folder in msg and "0700" in msg, msg
    assert {"mode 0755": "mode is 0755", "mode 0710": "mode is 0710", "another owner": "owned by uid 65534",
            "a symlink": "symbolic link"}[spoil] in msg, msg
    assert listen_servers(here) == [] and not os.path.exists(tmp_path / "x.db")  # no stdlib fallback either
    if os.path.islink(folder):
        os.unlink(folder)
    else:
        shutil.rmtree(folder)


PROBE = r"""
import json, sqlite3, sys
from sqlite_rpc import shared
try:
    shared.SocketServer(shared._connect(sys.argv[1]), sys.argv[1])
    print(json.dumps({"outcome": "served"}))
except Exception as e:
    print(json.dumps({"outcome": type(e).__name__, "operational": isinstance(e, sqlite3.OperationalError), "message": str(e)}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="runs a process as uid 65534: needs root and setpriv")
def test_another_uid_cannot_use_our_server(here, tmp_path):
    conn = sqlite_rpc.connect(str(tmp_path / "mine.db"), shared=True)
    conn.execute("SELECT 1")
    srv = process.current(True)
    sock = srv.path
    # Make the socket reachable for uid 65534 (the folders searchable, the socket writable),
    # so that only the server's own check of the peer's uid stands in the way.
    opened = []
    d = os.path.dirname(sock)
    while d != "/":
        mode = stat.S_IMODE(os.stat(d).st_mode)
        if not mode & 0o001:
            os.chmod(d, mode | 0o001)
            opened.append((d, mode))
        d = os.path.dirname(d)
    os.chmod(sock, 0o666)
    try:
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", PROBE, sock],
                             env=subprocess_env(PYTHONPATH=os.path.join(ROOT, "python-client"), PYTHONDONTWRITEBYTECODE="1"),
                             capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        os.chmod(sock, 0o600)
        for d, mode in opened:
            os.chmod(d, mode)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["outcome"] == "StartRefused" and got["operational"], got
    assert "PermissionDenied" in got["message"] and sock in got["message"] and "refused this process" in got["message"], got
    # Ours goes on.
    assert conn.execute("SELECT 2").fetchone() == (2,) and process.current(True) is srv
    conn.close()


# ---- modes ---------------------------------------------------------------------------------------

MODES = r"""
import asyncio, json, os, sys
import sqlite_rpc
from sqlite_rpc import aio, process
path = sys.argv[1]
out = {}

def where(conn):
    srv = conn._srv
    return {"pid": srv.pid, "shared": srv.shared, "transport": type(srv).__name__,
            "announced": srv.info["server"].get("shared", False)}

out["default"] = where(sqlite_rpc.connect(path))
out["private"] = where(sqlite_rpc.connect(path, shared=False))
out["shared"] = where(sqlite_rpc.connect(path, shared=True))
db = sqlite_rpc.Database(path, shared=False)
db.execute_update("CREATE TABLE IF NOT EXISTS t(v)")
out["database_private"] = where(db._conn())

async def main():
    async with aio.connect(path, shared=False) as a:
        p = where(a._sync)
    async with aio.connect(path, shared=True) as a:
        return p, where(a._sync)

out["aio_private"], out["aio_shared"] = asyncio.run(main())
import sqlite_rpc.crewai as crewai
crewai.install(shared=False)
out["crewai_private"] = where(crewai._connect(path))
crewai.install(shared=True)
out["crewai_shared"] = where(crewai._connect(path))
crewai.uninstall()
out["private_parent"] = int(open("/proc/%d/stat" % out["private"]["pid"]).read().rsplit(")", 1)[1].split()[1])
for kind in ("private", "shared"):
    out[kind + "_argv"] = open("/proc/%d/cmdline" % out[kind]["pid"]).read().split("\0")
out["me"] = os.getpid()
print(json.dumps(out))
"""


@pytest.mark.parametrize("env", ["unset", "0", "1"])
def test_private_and_shared_servers_side_by_side(runtime, tmp_path, env):
    # One SQLITE_RPC_ARGS for both: a private server is started without the shared one's
    # --idle-exit-ms (it would refuse to start with it).
    e = subprocess_env(XDG_RUNTIME_DIR=runtime, SQLITE_RPC_ARGS=IDLE_ARGS)
    e.pop("SQLITE_RPC_SHARED", None)
    if env != "unset":
        e["SQLITE_RPC_SHARED"] = env
    out = subprocess.run([sys.executable, "-c", MODES, str(tmp_path / "modes.db")], env=e, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    private = {"pid": got["private"]["pid"], "shared": False, "transport": "PipeServer", "announced": False}
    assert got["private"] == private and got["private_parent"] == got["me"]
    assert got["shared"]["shared"] is True and got["shared"]["transport"] == "SocketServer" and got["shared"]["announced"] is True
    assert got["shared"]["pid"] != private["pid"]
    assert got["default"] == (private if env == "0" else got["shared"])
    assert got["database_private"] == got["aio_private"] == got["crewai_private"] == private
    assert got["aio_shared"] == got["crewai_shared"] == got["shared"]
    assert "--idle-exit-ms" in got["shared_argv"] and "--idle-exit-ms" not in got["private_argv"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_connects_anew_and_leaves_the_parents_connection_alone(here, tmp_path):
    path = str(tmp_path / "fork.db")
    parent = sqlite_rpc.connect(path, shared=True)
    parent.execute("CREATE TABLE t(v TEXT)")
    parent.execute("INSERT INTO t VALUES ('parent')")
    parent.commit()
    srv = process.current(True)

    def child(report):
        c = sqlite_rpc.connect(path, shared=True)
        for i in range(20):  # replies to the child must reach the child, and none the parent
            c.execute("INSERT INTO t VALUES (?)", ("child %02d" % i,))
        c.commit()
        mine = process.current(True)
        report["own connection"] = mine is not srv and mine.sock.fileno() != -1
        report["server"] = sqlite_rpc.server_info(shared=True)["server"]["pid"]
        report["inherited"] = parent.execute("SELECT count(*) FROM t").fetchone()[0]
        sqlite_rpc.shutdown(shared=True)

    report = in_forked_child(child)
    assert "error" not in report, report
    assert report["own connection"] is True
    assert report["server"] == srv.pid  # the same shared server, over a connection of its own
    assert report["inherited"] == 21
    # The parent's connection was neither used nor shut down by the child: still the same.
    assert parent.execute("SELECT count(*) FROM t").fetchone() == (21,)
    assert process.current(True) is srv and srv.dead is None
    parent.close()


# ---- where the socket goes -----------------------------------------------------------------------

def test_a_socket_path_too_long_falls_back_to_a_shorter_folder(runtime, tmp_path):
    deep = os.path.join(runtime, *["d" * 30] * 3)
    os.makedirs(deep, 0o700)
    short = tempfile.mkdtemp(dir=RUNTIME_ROOT, prefix="tmp")
    k = Child(deep, TMPDIR=short)
    try:
        pid = k.ok("server")["pid"]
        argv = _cmdline(pid)
        sock = argv[argv.index("--listen") + 1]
        assert sock.startswith(os.path.join(short, "sqlite-rpc-%d" % os.getuid(), "s-")), sock
        assert len(os.fsencode(os.path.join(deep, "sqlite-rpc", os.path.basename(sock)))) > shared.SUN_PATH_MAX
    finally:
        k.end()
    assert wait_no_listen_servers(short, 60.0) == []


# ---- nothing left behind -------------------------------------------------------------------------

FORKER = r"""
import os, sys, sqlite_rpc
c = sqlite_rpc.connect(sys.argv[1], shared=True)
c.execute("CREATE TABLE IF NOT EXISTS t(v)")
c.commit()
pid = os.fork()
if pid == 0:
    sqlite_rpc.connect(sys.argv[1], shared=True).execute("INSERT INTO t VALUES ('fork child')").connection.commit()
    os._exit(0)
os.waitpid(pid, 0)
c.execute("INSERT INTO t VALUES ('fork parent')")
c.commit()
"""


def test_no_orphan_server_after_a_mini_suite_of_processes(runtime, tmp_path):
    path = str(tmp_path / "mini.db")
    kids = [Child(runtime) for _ in range(3)]
    pids = set()
    for i, k in enumerate(kids):
        k.ok("connect", name="c", path=path, timeout=30.0)
        k.ok("exec", name="c", sql="CREATE TABLE IF NOT EXISTS t(v)")
        k.ok("exec", name="c", sql="INSERT INTO t VALUES (?)", params=["kid %d" % i])
        if i < 2:
            k.ok("commit", name="c")
        pids.add(k.ok("server")["pid"])
    kids[0].end()  # atexit
    kids[1].end(abrupt=True)  # os._exit: no atexit
    kids[2].kill()  # SIGKILL with a transaction open
    forker = subprocess.run([sys.executable, "-c", FORKER, path], capture_output=True, text=True, timeout=120,
                            env=subprocess_env(XDG_RUNTIME_DIR=runtime, SQLITE_RPC_SHARED="1", SQLITE_RPC_ARGS=IDLE_ARGS))
    assert forker.returncode == 0, forker.stderr
    assert len(pids) == 1
    assert wait_no_listen_servers(runtime, 60.0) == [], "a shared server outlived every client"
    assert _gone(pids.pop(), 10.0)
    assert sorted(_rows(path)) == ["fork child", "fork parent", "kid 0", "kid 1"]
