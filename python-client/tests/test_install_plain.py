"""`pip install ./python-client`, the ordinary way (a build in isolation, not editable, no
server binary inside), gives a package that imports, says one version, is typed for its
users, serves through a binary it is pointed at, and without one falls back to the stdlib
with one warning that says what to do on that platform."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.path.join(ROOT, "dist", "sqlite-rpc")
with open(os.path.join(ROOT, "package.json"), encoding="utf-8") as _f:
    VERSION = json.load(_f)["version"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtual environment with `pip install ./python-client` done in it, from a copy
    of python-client/ as a fresh clone has it (no build output, no egg-info, no bin/)."""
    top = tmp_path_factory.mktemp("plain")
    shutil.copytree(os.path.join(ROOT, "python-client"), str(top / "python-client"),
                    ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__", "bin"))
    env_dir = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    pip = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "./python-client"], cwd=str(top),
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PIP_RETRIES="0", PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert pip.returncode == 0, pip.stderr[-3000:]
    return env_dir


def _run(venv, script, env=None, cwd=None):
    # Only what the script is given: no PYTHONPATH to this checkout, no SQLITE_RPC_* of the runner.
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    out = subprocess.run([str(venv / "bin" / "python"), "-c", textwrap.dedent(script)], env=dict(base, **(env or {})),
                         cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def test_it_installs_as_a_package_with_one_version(venv):
    out = _run(venv, """
        import importlib.metadata as md, json, os, sqlite_rpc
        files = sorted(str(f) for f in md.files("sqlite-rpc") if str(f).startswith("sqlite_rpc/"))
        print(json.dumps({"version": sqlite_rpc.__version__, "dist": md.version("sqlite-rpc"), "file": sqlite_rpc.__file__, "files": files}))
    """, cwd="/")
    got = json.loads(out)
    assert got["version"] == got["dist"] == VERSION, "package.json says %s" % VERSION
    assert got["file"].startswith(str(venv)), "imported from the checkout, not the install: %s" % got["file"]
    for name in ("sqlite_rpc/py.typed", "sqlite_rpc/_taxonomy.py", "sqlite_rpc/_version.py",
                 "sqlite_rpc/drivers/sync.py", "sqlite_rpc/transport/client.py", "sqlite_rpc/adapters/crewai/hook.py"):
        assert name in got["files"], "%s is not installed" % name
    assert not any(f.startswith("sqlite_rpc/bin/") for f in got["files"]), "the plain package carries no binary"


@pytest.mark.skipif(not os.path.exists(BINARY), reason="dist/sqlite-rpc is not built")
def test_it_serves_through_the_binary_it_is_given(venv, tmp_path):
    server_version = subprocess.run([BINARY, "--version"], capture_output=True, text=True, timeout=60).stdout.split()[1]
    assert server_version == VERSION, "the server and the package must say one version"
    out = _run(venv, """
        import sqlite3, sqlite_rpc
        c = sqlite_rpc.connect("p.db")
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        c.execute("INSERT INTO t VALUES (1, 'a')"); c.commit()
        try:
            c.execute("INSERT INTO t VALUES (1, 'b')")
        except sqlite3.IntegrityError as e:
            err = "%s %s" % (type(e).__name__, e.sqlite_errorname)
        print(sqlite_rpc.backend(), c.execute("SELECT v FROM t").fetchall(), err, sqlite_rpc.server_info()["server"]["version"])
    """, env={"SQLITE_RPC_BINARY": BINARY, "SQLITE_RPC_SHARED": "0"}, cwd=str(tmp_path))
    assert out.split("\n")[0] == "sqlite-rpc [('a',)] IntegrityError SQLITE_CONSTRAINT_PRIMARYKEY %s" % VERSION


FALLBACK = """
    import sqlite_rpc, warnings
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            c = sqlite_rpc.connect(":memory:")
            assert c.execute("SELECT 1 + 1").fetchone() == (2,)
            c.close()
    mine = [w for w in seen if "sqlite_rpc" in str(w.message)]
    assert len(mine) == 1 and issubclass(mine[0].category, RuntimeWarning), [str(w.message) for w in seen]
    print(sqlite_rpc.backend()); print(mine[0].message)
"""


def test_without_a_binary_it_uses_the_stdlib_and_warns_once(venv, tmp_path):
    backend, message = _run(venv, FALLBACK, cwd=str(tmp_path)).splitlines()
    assert backend == "sqlite3"
    assert "the sqlite-rpc binary was not found" in message and "SQLITE_RPC_BINARY" in message


def test_on_a_platform_without_a_built_server_the_warning_says_so(venv, tmp_path):
    # macOS and Windows do not run here: their platform module's answers stand in for them.
    stand_in = "import platform\nplatform.system = lambda: 'Darwin'\nplatform.machine = lambda: 'arm64'\n"
    backend, message = _run(venv, stand_in + textwrap.dedent(FALLBACK), cwd=str(tmp_path)).splitlines()
    assert backend == "sqlite3"
    assert "no sqlite-rpc server is built for Darwin arm64" in message and "Platforms" in message


def test_its_users_get_its_types(venv, tmp_path):
    # mypy --strict on a user's code against the installed package: with no py.typed (or an
    # API typed Any) the good file fails to check, or the bad one passes.
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent("""
        import sqlite_rpc
        import sqlite_rpc.crewai
        from sqlite_rpc import Database

        def count(path: str) -> int:
            with sqlite_rpc.connect(path) as conn:
                row = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return int(row[0])

        def names(db: Database) -> list[str]:
            return [str(r["name"]) for r in db.execute_query("SELECT name FROM sqlite_master")]

        def crew() -> object:
            sqlite_rpc.crewai.install()
            return sqlite_rpc.crewai.KickoffTaskOutputsSQLiteStorage("k.db").load()
    """))
    bad = tmp_path / "bad.py"
    bad.write_text("import sqlite_rpc\nimport sqlite_rpc.crewai\nconn: int = sqlite_rpc.connect(':memory:')\n"
                   "sqlite_rpc.connect(':memory:').execute(42)\nreport: int = sqlite_rpc.crewai.install()\n")
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull,
            "--python-executable", str(venv / "bin" / "python")]
    ok = subprocess.run(mypy + [str(good)], cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:]
    no = subprocess.run(mypy + [str(bad)], cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert no.returncode == 1, no.stdout[-3000:]
    assert "bad.py:3: error: Incompatible types in assignment" in no.stdout, no.stdout
    assert "bad.py:4: error: Argument 1 to \"execute\"" in no.stdout, no.stdout
    assert "bad.py:5: error: Incompatible types in assignment" in no.stdout, no.stdout
