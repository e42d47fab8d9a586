"""Issue 13's figures (group `multi` of bench/peers.py): many Python processes of one user on
ONE shared server (SQLITE_RPC_SHARED=1) against a server per process (SQLITE_RPC_SHARED=0)
and against the stdlib, each as a ratio inside the same run.

Two halves live here:
- worker ops (bench/peers/worker.py op "issue13", run inside a worker process):
  `op_crewai_mp` loops CrewAI's storage operations on the tests' stand-in (the crewai group's
  code, issue12.py) and `op_point_reader` paces point reads on a kept connection;
- the driver's /proc tools: `Census` finds the server processes (shared: a `--listen`
  command line naming the bench's socket folder; private: a child of a worker) and samples
  their RSS and descriptors while a figure runs; `fsync_delay_us` tells whether this run is
  under the fsync strace, and `stop_shared` makes sure no shared server outlives the bench.
"""
from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
from collections import Counter

import common as C
import issue12 as I12

now = time.perf_counter
STATE: dict = {}

MODES = ("shared", "private")
MP_KINDS = ("flow.save_state", "flow.load_state", "kickoff.add")


def mode_env(mode: str) -> dict:
    """The client's switch (issue 13): one shared server per user, or a server per process."""
    return {"SQLITE_RPC_SHARED": "1" if mode == "shared" else "0"}


# ---------------------------------------------------------------------------------------------
# files (driver)


def crewai_files(d: str) -> dict:
    """The kickoff and flow files of one side, as the crewai group makes them: CrewAI's own
    init through the stdlib copy of the stand-in (PRAGMA journal_mode=WAL for both), then a
    history: 20 task outputs of 4 KB, 100 flows x 3 states of 20 KB."""
    std = _standin("stdlib")
    os.makedirs(d, exist_ok=True)
    f = {"kickoff": os.path.join(d, "latest_kickoff_task_outputs.db"), "flow": os.path.join(d, "flow_states.db")}
    I12.flow_history(std, f["flow"])
    ks = std["kickoff"].KickoffTaskOutputsSQLiteStorage(f["kickoff"])
    for j in range(I12.KICKOFF_TASKS):
        ks.add(I12.TASKS[j], I12.task_output(j), j, False, I12.INPUTS)
    return f


def journal_modes(files: dict) -> dict:
    return {k: I12._journal(p) for k, p in files.items()}


def insert_file(path: str, journal: str) -> None:
    """workload 3's table (16 writers insert into it) and the point table (read while they do)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=%s" % journal)
    db.execute(C.INSERT_CREATE)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, "name-%d" % i, i * 1.5) for i in range(1, C.POINT_ROWS + 1)))
    db.commit()
    db.close()


# ---------------------------------------------------------------------------------------------
# worker ops


def _standin(side: str) -> dict:
    if side not in STATE.setdefault("standin", {}):
        STATE["standin"][side] = I12._load_standin(side)
    return STATE["standin"][side]


def _mp_objects(side: str, files: dict) -> tuple:
    """This process's CrewAI storage objects: the stdlib copy of the stand-in, or the copy whose
    sqlite3 global install() swapped (the switch SQLITE_RPC_SHARED comes from the environment)."""
    key = ("mp", side, files["kickoff"], files["flow"])
    if key in STATE:
        return STATE[key]
    mods = _standin("stdlib" if side == "stdlib" else "rpc")
    if side != "stdlib":
        from sqlite_rpc import crewai as sc

        names = [m.__name__ for m in mods.values()]
        report = sc.install(extra_modules=names, flow_persistence_factory=False)
        if any("sqlite3" not in report["patched"].get(n, []) for n in names) or mods["kickoff"].sqlite3 is not sc.SQLITE3:
            raise RuntimeError("install() did not patch the stand-ins: %r" % (report,))
        if report["backend"] != "sqlite-rpc":
            raise RuntimeError("install(): sqlite_rpc runs on its stdlib fallback: %r" % (report,))
    ks = mods["kickoff"].KickoffTaskOutputsSQLiteStorage(files["kickoff"])  # CrewAI's init, as a process starting
    fp = mods["flow"].SQLiteFlowPersistence(files["flow"])
    STATE[key] = (ks, fp)
    return STATE[key]


def _mp_call(ks, fp, i: int) -> int:
    """Call i of the cycle save_state, load_state (of the flow just saved), add(); its kind."""
    kind, j = i % 3, i // 3
    flow = I12.FLOW_IDS[j % I12.FLOWS]
    if kind == 0:
        fp.save_state(flow, "step_%d" % (j % 7), I12.flow_state(j))
    elif kind == 1:
        if fp.load_state(flow) is None:
            raise RuntimeError("load_state: no state")
    else:
        t = j % I12.KICKOFF_TASKS
        ks.add(I12.TASKS[t], I12.task_output(j), t, False, I12.INPUTS)
    return kind


def op_crewai_mp(side: str, files: dict, offset: int, start_at: float | None = None, duration: float = 0.0,
                 cycles: int = 0) -> dict:
    """CrewAI's storage operations in a loop (flow save_state, load_state, kickoff add), a
    connection per operation as CrewAI makes them: `cycles` cycles (warm-up), or from the
    shared monotonic instant start_at for `duration` seconds. Per kind: latencies; errors by
    message."""
    ks, fp = _mp_objects(side, files)
    i = offset * 3
    if start_at is None:
        for _ in range(cycles * 3):
            _mp_call(ks, fp, i)
            i += 1
        return {"n": cycles * 3, "pid": os.getpid()}
    t0 = os.times()
    el, done, errors = C.run_back_to_back(lambda j: _mp_call(ks, fp, j), start_at, duration, i)
    t1 = os.times()
    lat = {k: [] for k in MP_KINDS}
    for kind, us in done:
        lat[MP_KINDS[kind]].append(us)
    # CPU of this process (its Python and its kernel time; a private server child is not in it)
    cpu_s = (t1.user - t0.user) + (t1.system - t0.system)
    return {"n": len(done), "elapsed": el, "lat_us_by": lat, "errors": errors, "pid": os.getpid(), "cpu_s": cpu_s}


def _reader_conn(side: str, path: str):
    key = ("reader", side, path)
    if key not in STATE:
        if side == "stdlib":
            c = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
            c.execute("PRAGMA synchronous=FULL")
        else:
            import sqlite_rpc

            c = sqlite_rpc.connect(path, timeout=5.0, check_same_thread=False)
        for k in C.point_keys(50, seed=5):  # warm: the open, the statement cache, the page cache
            c.execute(C.POINT_SQL, (k,)).fetchone()
        STATE[key] = c
    return STATE[key]


def op_point_reader(side: str, path: str, start_at: float | None = None, duration: float = 0.0, hz: float = 200.0,
                    seed: int = 0) -> dict:
    """One thread, point SELECTs on a connection kept open (stdlib: its own WAL connection;
    else sqlite_rpc.connect()), paced to `hz` reads per second from start_at for `duration` s.
    Each read's latency is its own call (start to row), not counted from the schedule."""
    c = _reader_conn(side, path)
    if start_at is None:
        return {"n": 0}
    keys = C.point_keys(int(duration * hz) + 10, seed=100 + seed)
    lat = []
    errors: Counter = Counter()
    while now() < start_at:
        time.sleep(0.0005)
    period = 1.0 / hz
    nxt = start_at
    deadline = start_at + duration
    i = 0
    while True:
        d = nxt - now()
        if d > 0:
            time.sleep(d)
        if nxt >= deadline:
            break
        nxt += period
        t = now()
        try:
            row = c.execute(C.POINT_SQL, (keys[i % len(keys)],)).fetchone()
            if row is None:
                raise RuntimeError("point read: no row")
        except Exception as e:  # noqa: BLE001
            errors["%s: %s" % (type(e).__name__, str(e)[:80])] += 1
        else:
            lat.append(round((now() - t) * 1e6, 1))
        i += 1
    return {"n": len(lat), "elapsed": duration, "lat_us": lat, "errors": dict(errors), "pid": os.getpid()}


def close_all() -> None:
    for k in list(STATE):
        if isinstance(k, tuple) and k[0] == "reader":
            try:
                STATE.pop(k).close()
            except Exception:  # noqa: BLE001
                pass


# ---------------------------------------------------------------------------------------------
# driver: the server processes, from /proc


def _read(path: str, mode: str = "r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of every thread of a process so far (/proc/PID/stat)."""
    stat = _read("/proc/%d/stat" % pid)
    if not stat:
        return None
    f = stat[stat.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def proc_info(pid: int) -> dict | None:
    raw = _read("/proc/%d/cmdline" % pid, "rb")
    if not raw:
        return None
    argv = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]
    stat = _read("/proc/%d/stat" % pid)
    status = _read("/proc/%d/status" % pid) or ""
    ppid = int(stat[stat.rindex(")") + 2:].split()[1]) if stat else 0
    tracer = re.search(r"^TracerPid:\s+(\d+)", status, re.M)
    return {"pid": pid, "ppid": ppid, "argv": argv, "traced": bool(tracer and int(tracer.group(1)))}


def is_server(argv: list, binary: str) -> bool:
    """The server binary (or its bundle under node), not a strace or shell around it."""
    a0 = os.path.basename(argv[0])
    if a0 in ("strace", "sh", "bash", "env", "timeout"):
        return False
    if argv[0] == binary or a0 == "sqlite-rpc":
        return True
    return a0.startswith("node") and any(x.endswith("sqlite-rpc.cjs") for x in argv[1:3])


def is_listener(argv: list, runtime_dir: str) -> bool:
    """A shared server of this bench: --listen on its command line, and the socket (in the
    bench's XDG_RUNTIME_DIR) too."""
    return any(a.startswith("--listen") for a in argv) and any(runtime_dir in a for a in argv)


def servers(binary: str, runtime_dir: str) -> list:
    """Every server process on the machine: kind "shared" (a listener in the bench's runtime
    dir), "other-listener" (a --listen server elsewhere: not the bench's), or "private"."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        info = proc_info(int(name))
        if info is None or not is_server(info["argv"], binary):
            continue
        if is_listener(info["argv"], runtime_dir):
            info["kind"] = "shared"
        elif any(a.startswith("--listen") for a in info["argv"]):
            info["kind"] = "other-listener"
        else:
            info["kind"] = "private"
        out.append(info)
    return out


class Census:
    """Samples, every `every` seconds while a figure runs, the servers that serve a set of
    worker processes: the bench's shared server(s) (when `shared`: the workers run in shared
    mode; another side's idle shared server is not theirs), and private servers that are
    children of those workers. Keeps every pid seen, each one's RSS and fds over time, and
    whether it ran under a tracer (the fsync strace)."""

    def __init__(self, binary: str, runtime_dir: str, worker_pids, every: float = 0.25, shared: bool = False) -> None:
        self.binary, self.runtime_dir, self.every, self.shared = binary, runtime_dir, every, shared
        self.workers = set(worker_pids)
        self.seen: dict = {}  # pid -> {"kind", "traced", "argv"}
        self.samples: list = []  # (t, {pid: (rss_kb, fds)})
        self.cpu: dict = {}  # pid -> [first, last] CPU seconds sampled
        self._stop = threading.Event()
        self._th = None
        self.t0 = now()

    def mine(self, info: dict) -> bool:
        if info["kind"] == "shared":
            return self.shared
        if info["ppid"] in self.workers:
            return True
        parent = proc_info(info["ppid"])  # a server under the fsync strace wrapper: the worker's grandchild
        return bool(parent and os.path.basename(parent["argv"][0]) == "strace" and parent["ppid"] in self.workers)

    def sample(self) -> None:
        snap = {}
        for info in servers(self.binary, self.runtime_dir):
            if not self.mine(info):
                continue
            pid = info["pid"]
            self.seen.setdefault(pid, {"kind": info["kind"], "traced": info["traced"], "argv": info["argv"]})
            snap[pid] = (C.rss_kb(pid), C.fd_count(pid))
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.cpu.setdefault(pid, [cpu, cpu])[1] = cpu
        self.samples.append((round(now() - self.t0, 2), snap))

    def __enter__(self) -> "Census":
        def loop():
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.every)

        self.t0 = now()
        self._th = threading.Thread(target=loop, daemon=True)
        self._th.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._th.join()
        self.sample()

    def count(self) -> dict:
        c = Counter(v["kind"] for v in self.seen.values())
        return {"shared": c.get("shared", 0), "private": c.get("private", 0)}

    def alive_max(self) -> dict:
        """The most server processes alive at once, by kind."""
        out = {"shared": 0, "private": 0}
        for _t, snap in self.samples:
            c = Counter(self.seen[pid]["kind"] for pid in snap)
            for k in out:
                out[k] = max(out[k], c.get(k, 0))
        return out

    def cpu_s(self) -> float:
        """CPU seconds the servers spent between their first and last sample (a server that
        exits inside the window loses its last quarter second: none does while a figure runs)."""
        return sum(last - first for first, last in self.cpu.values())

    def untraced(self) -> int:
        return sum(1 for v in self.seen.values() if not v["traced"])

    def rss_sum(self, snap: dict) -> int:
        return sum(v[0] or 0 for v in snap.values())

    def peak_rss_kb(self) -> int:
        return max((self.rss_sum(s) for _t, s in self.samples), default=0)

    def median_rss_kb(self) -> int:
        sums = sorted(self.rss_sum(s) for _t, s in self.samples if s)
        return sums[len(sums) // 2] if sums else 0

    def series(self) -> list:
        """(t, servers alive, sum of RSS in KB, sum of fds) per sample."""
        return [(t, len(s), self.rss_sum(s), sum(v[1] or 0 for v in s.values())) for t, s in self.samples]


def stop_shared(binary: str, runtime_dir: str, wait_s: float = 7.0) -> list:
    """End the bench's shared server(s) (listeners in its own runtime dir: never a user's),
    once their clients are gone: wait for them to leave by themselves (the server's idle exit
    is 5 s after its last connection by default), then SIGTERM, then SIGKILL, by pid.
    Returns [(pid, how it ended)]."""
    pids = [i["pid"] for i in servers(binary, runtime_dir) if i["kind"] == "shared"]
    return [(pid, _end(pid, wait_s, kill=True)) for pid in pids]


def _end(pid: int, wait_s: float, kill: bool) -> str:
    """Give pid wait_s to exit by itself, then SIGTERM (10 s), then, if kill, SIGKILL. How it ended."""
    if _wait_gone(pid, wait_s):
        return "exited by itself"
    steps = [(signal.SIGTERM, "SIGTERM", 10.0)] + ([(signal.SIGKILL, "SIGKILL", 5.0)] if kill else [])
    for sig, name, wait in steps:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        if _wait_gone(pid, wait):
            return name
    return "SIGKILL" if kill else "still running"


def ours(binary: str, runtime_dir: str) -> list:
    """Server processes this bench caused: a listener in its runtime dir, or any server whose
    environment carries that XDG_RUNTIME_DIR (every worker's, so every private server's)."""
    out = []
    for info in servers(binary, runtime_dir):
        env = _read("/proc/%d/environ" % info["pid"], "rb") or b""
        if info["kind"] == "shared" or ("XDG_RUNTIME_DIR=%s" % runtime_dir).encode() in env.split(b"\0"):
            out.append(info)
    return out


def end_servers(binary: str, runtime_dir: str) -> dict:
    """At the end of the bench: its shared server(s) stopped (see stop_shared), private ones
    given 5 s to follow their workers out, then SIGTERM. Returns what was found and done."""
    done = {"shared": stop_shared(binary, runtime_dir), "private": []}
    for info in ours(binary, runtime_dir):
        done["private"].append((info["pid"], _end(info["pid"], 5.0, kill=False)))
    done["left"] = [i["pid"] for i in ours(binary, runtime_dir)]
    return done


def _wait_gone(pid: int, secs: float) -> bool:
    end = now() + secs
    while now() < end:
        st = _read("/proc/%d/stat" % pid)
        if st is None or st[st.rindex(")") + 2] == "Z":  # gone, or a zombie its parent will reap
            return True
        time.sleep(0.05)
    return False


def provenance(root: str, binary: str) -> dict:
    """What was measured: the checkout's commit (and whether src/ differs from it) and when the
    binary was built."""
    import subprocess

    def git(*a):
        try:
            return subprocess.run(["git", "-C", root, *a], capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return ""

    st = os.stat(binary)
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_dirty": bool(git("status", "--porcelain", "--", "src")),
            "src_commit_time": git("log", "-1", "--format=%cI", "--", "src"),
            "binary_built": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(st.st_mtime))}


class Neighbours:
    """Every 5 s while a group runs: the 1-minute load average, and test runners of other
    people (pytest, vitest, npm test) on this shared machine, by name."""

    PATTERNS = ("pytest", "vitest", "npm test", "test-all", "npm run test")

    def __init__(self) -> None:
        self.load: list = []
        self.foreign: Counter = Counter()
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)
        self._th.start()

    def _loop(self) -> None:
        while True:
            self.load.append(float((_read("/proc/loadavg") or "0").split()[0]))
            seen = set()
            for name in os.listdir("/proc"):
                if name.isdigit():
                    cmd = (_read("/proc/%s/cmdline" % name, "rb") or b"").replace(b"\0", b" ").decode("utf-8", "replace")
                    for p in self.PATTERNS:
                        if p in cmd:
                            seen.add(p)
            self.foreign.update(seen)
            if self._stop.wait(5.0):
                return

    def stop(self) -> dict:
        self._stop.set()
        self._th.join()
        ld = sorted(self.load) or [0.0]
        return {"load_min": ld[0], "load_max": ld[-1], "load_median": ld[len(ld) // 2], "samples": len(self.load),
                "foreign": dict(self.foreign)}


def fsync_delay_us() -> int | None:
    """The fsync delay this process runs under: the strace that traces it injects
    delay_exit=N on fsync (the issue's command), else None."""
    info = proc_info(os.getpid())
    if not info or not info["traced"]:
        return None
    status = _read("/proc/%d/status" % os.getpid()) or ""
    tracer = int(re.search(r"^TracerPid:\s+(\d+)", status, re.M).group(1))
    t = proc_info(tracer)
    m = re.search(r"inject=[^ ]*fsync[^ ]*:delay_exit=(\d+)", " ".join(t["argv"])) if t else None
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------------------------------------
# statistics


def pooled_lat(results: list, key: str = "lat_us") -> list:
    out = []
    for r in results:
        if key == "lat_us_by":
            for v in r[key].values():
                out.extend(v)
        else:
            out.extend(r.get(key) or [])
    return out

