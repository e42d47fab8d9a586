"""Issue 7, item 10: oversized frames are refused before buffering, and server memory stays
bounded while a client reads a large result slowly.

Peak memory of a server that has exited is its ru_maxrss, from wait4(); of a live one,
VmHWM in /proc/<pid>/status. Bounds are generous (RSS is noisy); what they catch is memory
in proportion to what was announced or requested (hundreds of MB here).
"""
from __future__ import annotations

import os
import time

import pytest

from _reliability import Pipe, proc_status

MB = 1 << 20


@pytest.fixture(scope="module")
def baseline_maxrss(tmp_path_factory) -> int:
    """Peak RSS (kB) of a server that starts, answers initialize and ends at end of input."""
    peaks = []
    for _ in range(2):
        with Pipe([]) as p:
            p.init()
            p.close_stdin()
            assert p.wait() == 0
            peaks.append(p.maxrss_kb)
    return max(peaks)


@pytest.mark.parametrize("announced, args, reason", [
    (64 * MB + 1, [], "exceeds the limit of 67108864"),
    (2 ** 40, [], "exceeds the limit"),
    (999999999999999, [], "exceeds the limit"),
    (10 ** 20, [], "invalid Content-Length"),
    (4096 + 1, ["--max-frame-bytes", "4096"], "exceeds the limit of 4096"),
])
def test_oversized_frame_is_refused_from_its_header(tmp_path, baseline_maxrss, announced, args, reason):
    err = str(tmp_path / "stderr")
    with Pipe(args, stderr_path=err) as p:
        p.init()
        # The header, a few body bytes, and stdin left open: the server must not wait for
        # (or make room for) the rest.
        assert p.write(b"Content-Length: %d\r\n\r\n\x82\xa7jsonrpc" % announced)
        assert p.wait(30) == 3
        assert p.maxrss_kb < baseline_maxrss + 16 * 1024, (p.maxrss_kb, baseline_maxrss)
        events = [e for e in p.log_events() if e.get("event") == "protocol_error"]
        assert events and reason in events[0]["message"], events
        p.drain_until_eof()
        assert not p.garbage


def test_body_under_the_limit_is_not_allocated_before_it_arrives(tmp_path, baseline_maxrss):
    # Announced 2 GiB under the largest limit allowed, 10 bytes sent, then end of input: nothing the
    # size of the announcement may have been touched.
    with Pipe(["--max-frame-bytes", str(2 ** 31 - 1)], stderr_path=str(tmp_path / "stderr")) as p:
        p.init()
        assert p.write(b"Content-Length: %d\r\n\r\n\x82\xa7jsonrpc" % (2 ** 31 - 2))
        time.sleep(0.2)
        assert p.poll() is None  # still waiting for the body, as it may
        p.close_stdin()
        assert p.wait(30) in (0, 3)
        assert p.maxrss_kb < baseline_maxrss + 16 * 1024, (p.maxrss_kb, baseline_maxrss)


def _slow_reply(p: Pipe, rid: int, samples: list) -> dict:
    """Read the reply to rid as a slow client would (a pause after every MiB), sampling the
    server's RSS at each pause."""
    since = 0
    while rid not in p.replies:
        if p.eof:
            raise AssertionError("server closed")
        chunk = os.read(p.rfd, MB)
        if not chunk:
            p.eof = True
            continue
        p.buf += chunk
        p._parse()
        since += len(chunk)
        if since >= MB:
            since = 0
            samples.append(proc_status(p.pid)["VmRSS"])
            time.sleep(0.005)
    return p.replies[rid]


def slow_client_passes(folder: str, rows: int = 200, passes: int = 2) -> dict:
    """`passes` times, `rows` rows of 1 MiB (generated) read a page per fetch by a slow
    client. Returns the server's RSS (kB) before, its peak in the first pass, and the
    highest sample in the later ones."""
    sql = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
           "SELECT i, zeroblob(1048576) FROM n" % rows)
    with Pipe([], stderr_path=os.path.join(folder, "slow.stderr")) as p:
        p.init()
        p.call("open", {"session": 1, "path": os.path.join(folder, "slow.sqlite")})
        for _ in range(3):  # reader workers booted, a 1 MiB row seen
            p.call("execute", {"session": 1, "sql": "SELECT zeroblob(1048576)"})
        base = proc_status(p.pid)["VmRSS"]
        first_peak, later = 0, []
        for n in range(passes):
            samples: list = []
            res = _slow_reply(p, p.send("execute", {"session": 1, "sql": sql}), samples)["result"]
            got, cursor, pages = len(res["rows"]), res["cursor"], 1
            while cursor is not None:
                page = _slow_reply(p, p.send("fetch", {"cursor": cursor}), samples)["result"]
                assert all(len(r[1]) == MB for r in page["rows"])
                got += len(page["rows"])
                cursor = page["cursor"]
                pages += 1
            assert got == rows
            assert pages >= rows // 2, "the result was not paged"
            if n == 0:
                first_peak = proc_status(p.pid)["VmHWM"]
            else:
                later.extend(samples)
        assert p.shutdown() == 0
    return {"rows": rows, "passes": passes, "base_kb": base, "first_peak_kb": first_peak, "later_max_kb": max(later or [0])}


def test_slow_client_reading_200_mb_results_page_by_page(tmp_path):
    r = slow_client_passes(str(tmp_path), rows=200, passes=2)
    # A buffered result would cost 200 MB or more; the server holds about a page (plus
    # garbage its GC has not collected yet), and no more in a second pass than in the first.
    assert r["first_peak_kb"] < r["base_kb"] + 128 * 1024, r
    assert r["later_max_kb"] < r["first_peak_kb"] + 32 * 1024, r


def test_pipelined_reads_that_the_client_does_not_read_yet_keep_memory_bounded(tmp_path):
    # Fixed: worker reads start only while fewer than 2 per worker are in flight and less
    # than 8 MiB of replies wait for the client (src/engine/database.ts, readSlot). Results
    # just under a page (--page-bytes 1 MiB), so that none is left open as a cursor: unread
    # cursors pin a reader connection each (16 per worker, then TooLarge).
    with Pipe(["--inline-read-us", "0"], stderr_path=str(tmp_path / "stderr")) as p:
        p.init()
        p.call("open", {"session": 1, "path": str(tmp_path / "m.sqlite")})
        for _ in range(3):
            p.call("execute", {"session": 1, "sql": "SELECT zeroblob(1048576)"})
        base = proc_status(p.pid)["VmRSS"]
        # 300 requests (about 30 KB of input) for 1 MB each, not read for a while.
        ids = []
        frames = []
        for i in range(300):
            rid, data = p.request_bytes("execute", {"session": 1, "sql": "SELECT zeroblob(1000000), ?", "params": [i]})
            ids.append(rid)
            frames.append(data)
        assert p.write(b"".join(frames))
        time.sleep(3)
        held = proc_status(p.pid)["VmRSS"] - base
        # Then read everything: all answered, right.
        for i, rid in enumerate(ids):
            assert len(p.reply(rid)["result"]["rows"][0][0]) == 1000000
        assert p.shutdown() == 0
        assert held < 100 * 1024, "server RSS grew by %d MB while 300 MB of replies waited for the client" % (held // 1024)
