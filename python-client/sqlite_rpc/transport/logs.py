"""The server's log records to Python logging: a private server's stderr (JSON lines) and a
shared server's `log` notifications; slow queries to a logger of their own."""
from __future__ import annotations

import io
import json
import logging
from typing import IO, Any, Dict

log = logging.getLogger("sqlite_rpc")
server_log = logging.getLogger("sqlite_rpc.server")
# Slow statements get a logger of their own, so an application can route or silence them.
slow_log = logging.getLogger("sqlite_rpc.slow_query")


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


def log_record(rec: Dict[str, Any]) -> None:
    """A server log record (a JSON line of a private server's stderr, or a shared server's
    `log` notification) to Python logging: slow queries to the sqlite_rpc.slow_query logger."""
    level = _LEVELS.get(rec.pop("level", "info"), logging.INFO)
    event = rec.pop("event", "log")
    rec.pop("ts", None)
    if event == "slow_query":
        plan = "; ".join(p.strip() for p in rec.get("plan") or [])
        slow_log.warning("slow query (%s ms, %s, %s params) on %s: %s%s", rec.get("duration_ms"), rec.get("role"), rec.get("params"), rec.get("db"), rec.get("sql"), " [plan: %s]" % plan if plan else "", extra={"sqlite_rpc": rec})
        return
    server_log.log(level, "%s %s", event, json.dumps(rec, default=str) if rec else "", extra={"sqlite_rpc": rec})




def forward_stderr(pipe: IO[bytes]) -> None:
    """A private server's stderr to logging, line by line, until EOF. Always drained: a child
    whose stderr pipe fills up stalls."""
    # The pipe is unbuffered (bufsize=0, for stdout's sake): readline() on it would read
    # one byte per system call (about 1.2 s of a core per MiB of server logging).
    stream = io.BufferedReader(pipe, 65536)  # type: ignore[type-var]
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                log_record(json.loads(line))
            except (ValueError, AttributeError):
                server_log.info("%s", line[:2000])
    except (ValueError, OSError):
        pass  # the pipe was closed under us (the process is being reaped)
    finally:
        try:
            stream.detach()  # the raw pipe is closed by whoever reaps the process
        except ValueError:
            pass
