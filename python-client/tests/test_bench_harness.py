"""The benchmark harness (bench/) imports the client's internals it measures against: a
change of the client's layout must not leave `npm run bench` broken."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_harness_starts_and_its_schemas_are_the_adapters():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "peers.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--only" in out.stdout
    code = ("import sys; sys.path[:0] = [%r, %r]; import common, issue12, issue13, worker; "
            "from sqlite_rpc.adapters.crewai import flow, kickoff; "
            "assert common.FLOW_SCHEMA is flow._FLOW_SCHEMA and common.KICKOFF_CREATE is kickoff._KICKOFF_CREATE; "
            "print('ok')") % (os.path.join(ROOT, "bench", "peers"), os.path.join(ROOT, "bench"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
