"""The golden vectors of protocol/vectors/, replayed from Python (test/40.protocol.vectors
is the TypeScript twin): the server's replies byte for byte, and sqlite_rpc's own codec
(transport.py, protocol.py) encoding the requests and decoding the replies exactly."""
from __future__ import annotations

import glob
import json
import os
import select
import sqlite3
import subprocess

import pytest

from sqlite_rpc import protocol, transport

from conftest import BINARY, ROOT

VECTOR_DIR = os.path.join(ROOT, "protocol", "vectors")
FILES = sorted(f for f in glob.glob(os.path.join(VECTOR_DIR, "*.json")) if not f.endswith("cases.json"))


def from_typed(v):
    """{"$int"}, {"$float"}, {"$bytes"} -> Python values; arrays -> tuples (as decode_body gives)."""
    if isinstance(v, list):
        return tuple(from_typed(x) for x in v)
    if isinstance(v, dict):
        if set(v) == {"$int"}:
            return int(v["$int"])
        if set(v) == {"$float"}:
            return float(v["$float"])
        if set(v) == {"$bytes"}:
            return bytes.fromhex(v["$bytes"])
        return {k: from_typed(x) for k, x in v.items()}
    if isinstance(v, float) and v.is_integer():
        raise AssertionError("a bare float in a vector: %r" % v)
    return v


def exact(v):
    """A comparable rendering that tells 1 from 1.0 from True and b'' from ''."""
    if isinstance(v, (list, tuple)):
        return ("seq", [exact(x) for x in v])
    if isinstance(v, dict):
        return ("map", [(k, exact(x)) for k, x in v.items()])
    return (type(v).__name__, repr(v))


def same_shape(a, b):
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same_shape(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b) and all(same_shape(a[k], b[k]) for k in a)
    return type(a) is type(b)


class RawServer:
    def __init__(self, flags):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
        self.proc = subprocess.Popen([BINARY, *flags], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, bufsize=0)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def next_frame(self, timeout: float = 30.0) -> bytes:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                n = int(self.buf[:end].split(b":")[1])
                if len(self.buf) >= end + 4 + n:
                    frame, self.buf = self.buf[: end + 4 + n], self.buf[end + 4 + n:]
                    return frame
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            assert ready, "no reply from the server"
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, "the server closed stdout before replying"
            self.buf += chunk


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_every_conversation_in_cases_json_has_a_vector_file():
    cases = _load(os.path.join(VECTOR_DIR, "cases.json"))["conversations"]
    assert sorted(os.path.basename(f)[:-5] for f in FILES) == sorted(c["name"] for c in cases)
    assert FILES


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f)[:-5] for f in FILES])
def test_server_replies_match_the_vectors(path):
    v = _load(path)
    srv = RawServer(v["server_flags"])
    try:
        for step in v["steps"]:
            srv.send(bytes.fromhex(step["request_hex"]))
            if step["reply_hex"] is None:
                continue
            got = srv.next_frame()
            want = bytes.fromhex(step["reply_hex"])
            if step["compare"] == "shape":
                g = transport.decode_body(got[got.index(b"\r\n\r\n") + 4:])
                w = transport.decode_body(want[want.index(b"\r\n\r\n") + 4:])
                assert same_shape(g, w), (g, w)
            else:
                assert got.hex() == want.hex(), step.get("note") or step["request"]
        srv.proc.stdin.close()
        assert srv.proc.wait(timeout=30) == v["exit_code"]
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        srv.proc.stdout.close()


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f)[:-5] for f in FILES])
def test_python_codec_encodes_requests_and_decodes_replies_exactly(path):
    v = _load(path)
    for step in v["steps"]:
        # Requests: the client's encoder produces the very bytes of the vector.
        assert transport.encode_frame(from_typed(step["request"])).hex() == step["request_hex"], step["request"]
        if step["reply_hex"] is None:
            continue
        frames = transport.FrameBuffer()
        raw = bytes.fromhex(step["reply_hex"])
        bodies = []
        for i in range(0, len(raw), 7):  # any split of the stream works
            bodies += frames.feed(raw[i:i + 7])
        assert len(bodies) == 1
        decoded = transport.decode_body(bodies[0])
        assert exact(decoded) == exact(from_typed(step["reply"]))
        if "error" in decoded:
            data = decoded["error"].get("data") or {}
            exc = protocol.exception_from_error(decoded["error"])
            assert isinstance(exc, (sqlite3.Error, OverflowError, MemoryError))
            # The one TooLarge the client turns into OverflowError is the one whose reason says so.
            assert isinstance(exc, OverflowError) == (data.get("reason") == "integer_overflow")
            if data.get("dbapi") and data["kind"] != "TooLarge":
                assert type(exc) is getattr(sqlite3, data["dbapi"])
                assert str(exc) == decoded["error"]["message"]
            if data.get("sqlite_code"):
                assert exc.sqlite_errorname == data["sqlite_code"]
                assert exc.sqlite_errorcode == data["sqlite_errno"] == protocol.SQLITE_CODES[data["sqlite_code"]]


def test_vectors_cover_every_value_type():
    values = _load(os.path.join(VECTOR_DIR, "values.json"))
    text = json.dumps(values)
    for marker in ('"$int"', '"$float"', '"$bytes"', "null"):
        assert marker in text
