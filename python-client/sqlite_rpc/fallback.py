"""Deciding between the server and the stdlib, once per process, with one warning."""
from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Optional

from .protocol import StartRefused
from .transport import home as _home
from .transport import lookup as _lookup
from .transport.client import ServerProcess

log = logging.getLogger("sqlite_rpc")
_lock = threading.Lock()
_reason: Optional[str] = None
_warned = False


def disabled_reason() -> Optional[str]:
    """Why the stdlib is used instead of the server, or None when the server is usable."""
    if os.environ.get(_lookup.ENV_DISABLE, "").strip() not in ("", "0", "false", "no"):
        return "%s is set" % _lookup.ENV_DISABLE
    if _reason is not None:
        return _reason
    if _home.running():
        return None  # running: no need to look for the binary again on every connect()
    if _lookup.find_binary() is None:
        return _lookup.missing_binary_reason()
    return None


def server_or_none(shared: Optional[bool] = None) -> Optional[ServerProcess]:
    """The server of that kind (transport.home.use_shared), or None (after warning once) when the
    stdlib must be used. A server that may not be used (an unsafe runtime folder, a shared
    server that refused us) raises instead: the stdlib would hide a problem to fix."""
    global _reason
    home = _home.home(shared)
    why = disabled_reason()
    if why is None:
        try:
            return home.get()
        except StartRefused:
            raise
        except Exception as e:  # cannot start: remember, fall back for good
            with _lock:
                _reason = "the sqlite-rpc server could not start: %s" % e
            why = _reason
    warn_once(why)
    return None


def warn_once(why: str) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    msg = "sqlite_rpc: using the stdlib sqlite3 module instead of the sqlite-rpc server: %s" % why
    log.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
