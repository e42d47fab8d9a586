"""Where the server binary is, and how it is started: its environment and flags."""
from __future__ import annotations

import os
import platform
import shutil
from typing import Dict, List, Optional

ENV_BINARY = "SQLITE_RPC_BINARY"
ENV_DISABLE = "SQLITE_RPC_DISABLE"
ENV_ARGS = "SQLITE_RPC_ARGS"
ENV_SHARED = "SQLITE_RPC_SHARED"


# The (system, machine) pairs platform wheels with the server binary are built for
# (scripts/wheel.sh); elsewhere the package is pure Python and uses the stdlib.
SHIPPED_PLATFORMS = (("Linux", "x86_64"), ("Linux", "aarch64"))


def missing_binary_reason() -> str:
    """Why no binary was found, in words that say what to do on this platform."""
    here = (platform.system(), platform.machine())
    if here in SHIPPED_PLATFORMS:
        return "the sqlite-rpc binary was not found (set %s, install the platform wheel, or run npm run build)" % ENV_BINARY
    return ("no sqlite-rpc server is built for %s %s: wheels with the server exist for Linux x86_64 and aarch64 "
            "(README, Platforms, says how to build one; then set %s)" % (here[0] or "this system", here[1] or "", ENV_BINARY))


def find_binary() -> Optional[str]:
    """The server binary: $SQLITE_RPC_BINARY, the one inside this package, PATH, a dev checkout."""
    env = os.environ.get(ENV_BINARY)
    if env:
        return env if os.access(env, os.X_OK) else None
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package's folder
    candidates = [os.path.join(here, "bin", "sqlite-rpc")]
    on_path = shutil.which("sqlite-rpc")
    if on_path:
        candidates.append(on_path)
    candidates.append(os.path.normpath(os.path.join(here, "..", "..", "dist", "sqlite-rpc")))
    packaged = candidates[0]
    if os.path.isfile(packaged) and not os.access(packaged, os.X_OK):
        # Some installers drop the executable bit of package data; restore it if we may.
        try:
            os.chmod(packaged, 0o755)
        except OSError:
            pass
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _child_env() -> Dict[str, str]:
    # A SEA binary still honours NODE_OPTIONS and friends; NODE_EXTRA_CA_CERTS alone costs
    # 60-120 ms of start-up. None of them are meant for our child.
    return {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}


def server_args() -> List[str]:
    extra = os.environ.get(ENV_ARGS, "").split()
    return extra


def _private_args(args: List[str]) -> List[str]:
    """The flags for a private server: --idle-exit-ms is the shared server's (a private one
    lives as long as its process, and refuses the flag), so one SQLITE_RPC_ARGS fits both."""
    out: List[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--idle-exit-ms":
            skip = True
        elif not a.startswith("--idle-exit-ms="):
            out.append(a)
    return out
