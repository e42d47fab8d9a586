"""Issue 7, item 9 (Python side): frame fuzzing of the real binary with hypothesis.

Batches of generated and mutated frames (valid requests of every method with random
params, notifications, arbitrary values, bodies and headers mutated, random bytes) go to
long-lived servers through a raw pipe. What the server must answer is predicted from the
bytes by an independent port of the protocol's framing, MessagePack and dispatch rules
(_reliability.predict): exactly those replies, each well formed and none an InternalError,
or the documented close (status 3, protocol_error logged) when a frame cannot be framed or
decoded; never a crash, never a hang. A database the servers hold open throughout stays
byte-for-byte unchanged; scratch databases the fuzzed requests wrote pass integrity_check.

RELIABILITY_FUZZ_FRAMES sets the count (default 2000); `npm run reliability` runs 100k.
The TypeScript side (fast-check) is test/70.reliability.fuzz.test.ts.
"""
from __future__ import annotations

import os

from _reliability import python_fuzz

FRAMES = int(os.environ.get("RELIABILITY_FUZZ_FRAMES", "2000"))


def test_generated_and_mutated_frames(tmp_path):
    r = python_fuzz(str(tmp_path), FRAMES)
    assert r["frames_read_by_server"] >= FRAMES
    # The mix did what it is for: answers of every sort, connections ended both ways.
    assert r["outcomes"].get("alive", 0) > 0 and r["outcomes"].get("fatal", 0) > 0, r
    assert r["exit_codes"].get("3", 0) == r["outcomes"]["fatal"], r
    assert r["reply_kinds"].get("result", 0) > 0 and r["reply_kinds"].get("InvalidParams", 0) > 0, r
