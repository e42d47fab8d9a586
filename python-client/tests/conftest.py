"""Shared set-up: the tests run against the checkout's server binary, never a fallback.

The binary is dist/sqlite-rpc at the repository root (built by `node scripts/build.mjs`).
If it is missing the whole run stops with that message: sqlite_rpc would otherwise fall
back to the stdlib and the differential tests would compare sqlite3 with itself.
"""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BINARY = os.path.join(ROOT, "dist", "sqlite-rpc")

# The environment must not steer the client elsewhere: pin the checkout's binary and clear
# the switches that would disable the server or change its flags.
os.environ["SQLITE_RPC_BINARY"] = BINARY
for _name in ("SQLITE_RPC_DISABLE", "SQLITE_RPC_ARGS"):
    os.environ.pop(_name, None)

sys.path.insert(0, HERE)  # _harness and friends


def pytest_configure(config: pytest.Config) -> None:
    if not (os.path.isfile(BINARY) and os.access(BINARY, os.X_OK)):
        pytest.exit(
            "sqlite-rpc server binary missing: %s (build it with `node scripts/build.mjs` or `npm run build`)" % BINARY,
            returncode=4,
        )


@pytest.fixture(scope="session", autouse=True)
def _server_in_use() -> None:
    import sqlite_rpc

    assert sqlite_rpc.backend() == "sqlite-rpc", "the tests must run against the server, not the stdlib fallback"


@pytest.fixture
def rpc():
    import sqlite_rpc

    return sqlite_rpc


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "test.sqlite")


def subprocess_env(**extra: str) -> dict:
    """The environment for a child Python running sqlite_rpc (binary pinned, no disable)."""
    env = dict(os.environ)
    env.update(extra)
    return env
