"""A private server: this process's child, spoken to over its stdin and stdout."""
from __future__ import annotations

import subprocess
import threading
from typing import Any, List, Optional

from .client import PIPE_BYTES, ServerProcess
from .logs import forward_stderr
from .lookup import _child_env



def _widen_pipe(fd: int) -> None:
    """Grow a pipe to PIPE_BYTES (Linux's default limit for an unprivileged user, see
    /proc/sys/fs/pipe-max-size): a 64 KiB pipe cuts a 200 KB reply into four writes and four
    reads, each a context switch between the two processes."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ImportError):
        pass  # not Linux, or over a lowered limit: the default size only costs speed


class PipeServer(ServerProcess):
    """A private server: this process's child, spoken to over its stdin and stdout. Its
    stderr (JSON log lines) is forwarded to logging, slow queries included."""

    def __init__(self, binary: str, args: Optional[List[str]] = None) -> None:
        self.binary = binary
        self.args = list(args or [])
        self.proc = subprocess.Popen(
            [binary, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=_child_env(),
            close_fds=True,
        )
        self.pid = self.proc.pid
        wfd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        rfd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        for fd in (wfd, rfd):
            _widen_pipe(fd)
        self._attach(rfd, wfd)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="sqlite-rpc-stderr", daemon=True)
        self._stderr_thread.start()
        try:
            self._initialize()
        except BaseException:
            self._discard()  # a server that cannot start leaves nothing behind (process, pipes)
            raise

    # ---- stderr ---------------------------------------------------------------------------

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        forward_stderr(self.proc.stderr)

    # ---- the transport's ends -------------------------------------------------------------

    def _exit_status(self) -> Any:
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        return code

    def _gone_reason(self, detail: str) -> str:
        return "the sqlite-rpc server exited unexpectedly (status %s%s)" % (self._exit_status(), ": " + detail if detail else "")

    def _discard(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except Exception:
            pass
        self._stderr_thread.join(timeout=5)  # it ends at EOF, now that the process is gone
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()  # type: ignore[union-attr]
            except Exception:
                pass

    def _forget_after_fork(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()  # type: ignore[union-attr]
            except Exception:
                pass

    def close(self, timeout: float = 10.0) -> None:
        """shutdown + exit, then wait; every accepted request is answered first."""
        if self.dead is None:
            try:
                self.call("shutdown", {})
                self.notify("exit")
            except Exception:  # the server may already be gone; closing stdin is enough
                pass
        self.dead = self.dead or "the sqlite-rpc server was shut down"
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr_thread.join(timeout=5)  # drained to EOF: the last log lines are forwarded
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
