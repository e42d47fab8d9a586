"""CrewAI's helpers (or faithful copies when CrewAI is not importable), its errors and JSON
encoding, the settings install() gives the storages, and the classes built on first use."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import logging
import os
import sys
import threading
import types
import uuid
import warnings
from contextlib import closing
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import sqlite_rpc as _rpc

log = logging.getLogger("sqlite_rpc.crewai")


# -- CrewAI's helpers, or faithful copies when CrewAI is not importable ---------------------

def _optional(module: str, attr: str) -> Any:
    """module.attr when that module can be imported, else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # crewai.utilities.paths is deprecated in 1.15
            mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, attr, None)


def _user_data_dir(appname: str, appauthor: str) -> str:
    """appdirs.user_data_dir(appname, appauthor), as CrewAI calls it."""
    appdirs_fn = _optional("appdirs", "user_data_dir")
    if appdirs_fn is not None:
        folder: str = appdirs_fn(appname, appauthor)
        return folder
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, appauthor, appname)
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~/Library/Application Support/"), appname)
    base = os.getenv("XDG_DATA_HOME", os.path.expanduser("~/.local/share"))
    return os.path.join(base, appname)  # an absolute appname wins: used as is


def db_storage_path() -> str:
    """CrewAI's storage directory (created if missing): crewai's own function when importable,
    else the same rule: user_data_dir($CREWAI_STORAGE_DIR or the working directory's name)."""
    for module in ("crewai_core.paths", "crewai.utilities.paths"):
        fn = _optional(module, "db_storage_path")
        if fn is not None:
            return str(fn())
    name = os.environ.get("CREWAI_STORAGE_DIR") or Path.cwd().name
    data_dir = Path(_user_data_dir(name, "CrewAI"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return str(data_dir)


class _LocalDatabaseOperationError(Exception):
    """crewai.utilities.errors.DatabaseOperationError, for when CrewAI is not importable."""

    def __init__(self, message: str, original_error: Optional[Exception] = None) -> None:
        super().__init__(message)
        self.original_error = original_error


_LocalDatabaseOperationError.__name__ = _LocalDatabaseOperationError.__qualname__ = "DatabaseOperationError"
_LocalDatabaseOperationError.__module__ = "sqlite_rpc.crewai"

_ERROR_TEMPLATES = {
    "INIT_ERROR": "Database initialization error: {}",
    "SAVE_ERROR": "Error saving task outputs: {}",
    "UPDATE_ERROR": "Error updating task outputs: {}",
    "LOAD_ERROR": "Error loading task outputs: {}",
    "DELETE_ERROR": "Error deleting task outputs: {}",
}


def _database_operation_error(kind: str, error: Exception) -> Exception:
    """The error CrewAI's kickoff storage raises, with CrewAI's own message."""
    templates = _optional("crewai.utilities.errors", "DatabaseError")
    template = getattr(templates, kind, None) or _ERROR_TEMPLATES[kind]
    msg = template.format(str(error))
    log.error(msg)
    err: Exception = _built("DatabaseOperationError")(msg, error)
    return err


class _CrewJSONEncoder(json.JSONEncoder):
    """crewai.utilities.crew_json_encoder.CrewJSONEncoder, for when CrewAI is not importable."""

    def default(self, obj: Any) -> Any:
        if hasattr(obj, "model_dump") and callable(obj.model_dump):
            try:
                data = obj.model_dump()
                for k, v in list(data.items()):
                    if hasattr(v, "model_dump"):
                        data[k] = str(v)
                return data
            except RecursionError:
                return str(obj)
        if isinstance(obj, (uuid.UUID, Decimal, Enum)):
            return str(obj)
        if isinstance(obj, (datetime, date)):
            return obj.isoformat()
        return super().default(obj)


def _json_encoder() -> Any:
    return _optional("crewai.utilities.crew_json_encoder", "CrewJSONEncoder") or _CrewJSONEncoder


class PendingFeedbackContext:
    """What SQLiteFlowPersistence.load_pending_feedback returns when CrewAI is not importable
    (with CrewAI, it returns crewai.flow.async_feedback.types.PendingFeedbackContext): the
    stored context, readable by attribute or with to_dict()."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.__dict__["_data"] = dict(data)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PendingFeedbackContext":
        return cls(data)

    def to_dict(self) -> Dict[str, Any]:
        return dict(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PendingFeedbackContext) and other._data == self._data

    def __repr__(self) -> str:
        return "PendingFeedbackContext(%r)" % (self._data,)


def _printer_print(content: str) -> None:
    printer = _optional("crewai.utilities", "Printer")
    if printer is not None:
        try:
            printer().print(content=content, color="red")
            return
        except Exception:  # noqa: BLE001 - printing an error must not raise one
            pass
    print("\033[91m %s\033[00m" % content)


# -- errors --------------------------------------------------------------------------------

class FlowStateNotSerializableError(TypeError):
    """Flow state that JSON cannot encode. A TypeError, as json.dumps raises, so existing
    handlers still catch it; the message names the field and its type."""

    def __init__(self, path: str, value: Any, what: str = "flow state") -> None:
        self.path = path
        self.value_type = type(value)
        tname = type(value).__name__
        article = "an" if tname[:1].lower() in "aeio" else "a"
        hint = "convert it to a JSON type (str, int, float, bool, None, list, dict) before saving"
        if isinstance(value, (datetime, date)):
            hint = "convert it to str (e.g. .isoformat()) before saving"
        elif isinstance(value, uuid.UUID):
            hint = "convert it to str before saving"
        elif isinstance(value, (set, frozenset)):
            hint = "convert it to a list before saving"
        elif isinstance(value, (bytes, bytearray)):
            hint = "decode it to str (or base64) before saving"
        if what == "flow state":
            hint += ", or use a pydantic state model whose field_serializer does it"
        super().__init__("%s is not JSON-serializable: %s is %s %s; %s" % (what, path, article, tname, hint))


def _first_unencodable(obj: Any, path: str) -> Optional[Tuple[str, Any]]:
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not (k is None or isinstance(k, (str, int, float, bool))):
                return ("%s key %r" % (path, k), k)
            found = _first_unencodable(v, "%s[%r]" % (path, k))
            if found is not None:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = _first_unencodable(v, "%s[%d]" % (path, i))
            if found is not None:
                return found
        return None
    return (path, obj)


def _dumps_explained(obj: Any, root: str, what: str) -> str:
    try:
        return json.dumps(obj)
    except TypeError:
        found = _first_unencodable(obj, root)
        if found is None:
            raise
        raise FlowStateNotSerializableError(found[0], found[1], what) from None


def _is_pydantic_model(obj: Any) -> bool:
    base = _optional("pydantic", "BaseModel")
    return base is not None and isinstance(obj, base)


def _state_dict(state_data: Any) -> Dict[str, Any]:
    if _is_pydantic_model(state_data):
        dumped: Dict[str, Any] = state_data.model_dump()
        return dumped
    if isinstance(state_data, dict):
        return state_data
    raise ValueError(f"state_data must be either a Pydantic BaseModel or dict, got {type(state_data)}")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


# -- the settings install() gives the storages ------------------------------------------------

class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.installed = False
        self.targets: Dict[str, None] = {}  # ordered set
        self.register_flow_factory = True
        self.shared: Optional[bool] = None  # install(shared=...): which server CrewAI's storage uses
        self.replicate: Optional[str] = None  # install(replicate=...): Litestream replication of CrewAI's files
        # module name -> (module object, {global name: original value})
        self.originals: Dict[str, Tuple[types.ModuleType, Dict[str, Any]]] = {}
        self.finder: Optional[Any] = None  # hook._ImportHook
        self.factory_module: Optional[types.ModuleType] = None


_state = _State()



def _connect(path: str, timeout: float = 30.0) -> Any:
    """A connection that the caller closes: `with closing(_connect(p)) as conn, conn:`."""
    return _rpc.connect(path, timeout=timeout, keep_open=True, shared=_state.shared,
                        **({"replicate": _state.replicate} if _state.replicate else {}))


# -- classes that depend on whether CrewAI is importable: built on first use ----------------

_built_classes: Dict[str, Any] = {}
_build_lock = threading.RLock()


def _builders() -> Dict[str, Callable[[], Any]]:
    from .flow import _build_flow_persistence
    from .provider import _build_sqlite_provider

    return {
        "SQLiteFlowPersistence": _build_flow_persistence,
        "SqliteProvider": _build_sqlite_provider,
        "DatabaseOperationError": lambda: _optional("crewai.utilities.errors", "DatabaseOperationError")
        or _LocalDatabaseOperationError,
    }


BUILT = ("SQLiteFlowPersistence", "SqliteProvider", "DatabaseOperationError")


def _built(name: str) -> Any:
    with _build_lock:
        cls = _built_classes.get(name)
        if cls is None:
            cls = _built_classes[name] = _builders()[name]()
        return cls


def _forget_built_classes() -> None:
    """Rebuild the CrewAI-dependent classes on next use (tests switch CrewAI in and out)."""
    with _build_lock:
        _built_classes.clear()
