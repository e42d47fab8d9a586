"""CrewAI on sqlite-rpc: one call moves CrewAI's SQLite storage onto the server.

    import sqlite_rpc.crewai
    sqlite_rpc.crewai.install()      # before or after `import crewai`

install() replaces the `sqlite3` global (and the `aiosqlite` global) of each CrewAI module
that uses them with `sqlite_rpc` (and `sqlite_rpc.aio`). It never touches
sys.modules['sqlite3']: ChromaDB and the rest of the process keep the real module. CrewAI
modules imported later are patched as they are imported (a sys.meta_path hook watching
only those module names). uninstall() puts everything back. Both are idempotent.

The drop-in classes have CrewAI's signatures, file names and schemas, and are backed by
sqlite_rpc; the files stay ordinary SQLite files that CrewAI's CLI can open:

    KickoffTaskOutputsSQLiteStorage(db_path=None)
    SQLiteFlowPersistence(db_path=None, /, **kwargs)   a FlowPersistence when CrewAI is importable
    SqliteProvider()                                  a subclass of CrewAI's SqliteProvider when importable
    LTMSQLiteStorage(db_path=None, verbose=True)       CrewAI <= 1.9.x long-term memory

Where they differ from CrewAI, it is on purpose: every connection they open is closed
(no Windows file locks), writes wait for each other instead of failing with "database is
locked", checkpoints use jsonb() through the server's SQLite whatever the Python's own
SQLite version, and flow state that JSON cannot encode raises FlowStateNotSerializableError
(a TypeError) naming the field, instead of json's bare TypeError.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import logging
import os
import re
import sqlite3
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
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import sqlite_rpc as _rpc
import sqlite_rpc.aio as _aio
from sqlite_rpc._taxonomy import REASON_NO_SUCH_FUNCTION

log = logging.getLogger("sqlite_rpc.crewai")

__all__ = [
    "install", "uninstall", "is_installed", "TARGETS", "FLOW_FACTORY_MODULE", "db_storage_path",
    "KickoffTaskOutputsSQLiteStorage", "SQLiteFlowPersistence", "SqliteProvider", "LTMSQLiteStorage",
    "DatabaseOperationError", "FlowStateNotSerializableError", "PendingFeedbackContext",
]

# -- what install() patches ----------------------------------------------------------------

#: CrewAI's modules that use sqlite3 (and aiosqlite), per version: 1.15.x, and the long-term
#: memory storage that exists up to 1.9.x.
TARGETS: Tuple[str, ...] = (
    "crewai.memory.storage.kickoff_task_outputs_storage",
    "crewai.flow.persistence.sqlite",
    "crewai.state.provider.sqlite_provider",
    "crewai_cli.task_outputs",
    "crewai_cli.checkpoint_cli",
    "crewai.memory.storage.ltm_sqlite_storage",
)

#: Where CrewAI (1.14.7+) lets an application choose the default flow persistence.
FLOW_FACTORY_MODULE = "crewai.flow.persistence.factory"


class _KeepOpen(types.ModuleType):
    """sqlite_rpc (or sqlite_rpc.aio) as CrewAI's modules see it: connect() keeps the file open.

    CrewAI owns its storage files and opens a connection per operation; plain connect()
    would fold the WAL into the file at every last close. The server still never serves a
    file that was deleted, replaced or changed on disk, and lets go of it once idle."""

    def __init__(self, name: str, target: types.ModuleType) -> None:
        super().__init__(name)
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("keep_open", True)
        kwargs.setdefault("shared", _state.shared)
        return self._target.connect(*args, **kwargs)


#: What a patched CrewAI module's `sqlite3` and `aiosqlite` globals are.
SQLITE3 = _KeepOpen("sqlite_rpc.crewai.SQLITE3", _rpc)
AIOSQLITE = _KeepOpen("sqlite_rpc.crewai.AIOSQLITE", _aio)


def _replacements() -> Dict[str, types.ModuleType]:
    # global name in a CrewAI module -> what takes its place
    return {"sqlite3": SQLITE3, "aiosqlite": AIOSQLITE}


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.installed = False
        self.targets: Dict[str, None] = {}  # ordered set
        self.register_flow_factory = True
        self.shared: Optional[bool] = None  # install(shared=...): which server CrewAI's storage uses
        # module name -> (module object, {global name: original value})
        self.originals: Dict[str, Tuple[types.ModuleType, Dict[str, Any]]] = {}
        self.finder: Optional[_ImportHook] = None
        self.factory_module: Optional[types.ModuleType] = None


_state = _State()


def _patch_module(mod: types.ModuleType) -> List[str]:
    """Point the module's sqlite3/aiosqlite globals at sqlite_rpc; the names now patched."""
    d = mod.__dict__
    name = mod.__name__
    done: List[str] = []
    for gname, repl in _replacements().items():
        cur = d.get(gname)
        if cur is repl:
            done.append(gname)
            continue
        if not isinstance(cur, types.ModuleType):
            continue  # this version of the module does not use it
        entry = _state.originals.get(name)
        if entry is None or entry[0] is not mod:
            entry = (mod, {})
            _state.originals[name] = entry
        entry[1][gname] = cur
        d[gname] = repl
        done.append(gname)
    return done


def _stdlib_connection_classes(mod: types.ModuleType) -> List[str]:
    """Classes of the module built on the stdlib's sqlite3.Connection: connect(factory=...)
    with one of them stays on the stdlib (a class cannot change its base after the fact)."""
    out = []
    for k, v in list(mod.__dict__.items()):
        if isinstance(v, type) and issubclass(v, sqlite3.Connection) and getattr(v, "__module__", None) == mod.__name__:
            out.append(k)
    return out


def _factory_notes(mod: types.ModuleType) -> List[str]:
    return ["%s.%s subclasses the stdlib's sqlite3.Connection: sqlite3.connect(..., factory=%s) there still "
            "returns a stdlib connection, so those calls stay off sqlite-rpc" % (mod.__name__, cls, cls)
            for cls in _stdlib_connection_classes(mod)]


def _restore_module(name: str) -> List[str]:
    entry = _state.originals.pop(name, None)
    if entry is None:
        return []
    mod, saved = entry
    repl = _replacements()
    restored = []
    for gname, orig in saved.items():
        if mod.__dict__.get(gname) is repl[gname]:
            mod.__dict__[gname] = orig
            restored.append(gname)
    return restored


def _findable(name: str) -> bool:
    """Whether `name` could be imported, found without executing any package's code."""
    if name in sys.modules:
        return True
    parts = name.split(".")
    path: Any = None
    for i in range(len(parts)):
        sub = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        m = sys.modules.get(sub)
        if m is not None:
            path = getattr(m, "__path__", None)
        else:
            try:
                spec = importlib.machinery.PathFinder.find_spec(sub, path)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                return False
            path = spec.submodule_search_locations
        if not last and path is None:
            return False
    return True


# -- the import hook -----------------------------------------------------------------------

class _PatchingLoader(importlib.abc.Loader):
    """Wraps a target module's real loader: runs the module, then patches its globals."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: types.ModuleType) -> None:
        # The module keeps its real loader (tools that inspect __loader__ see the usual one).
        try:
            module.__loader__ = self._loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader
        except (AttributeError, TypeError):
            pass
        self._loader.exec_module(module)
        _after_import(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _ImportHook(importlib.abc.MetaPathFinder):
    """A sys.meta_path finder that answers only for CrewAI's target modules."""

    _sqlite_rpc_crewai_hook = True

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _state.targets and fullname != FLOW_FACTORY_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or getattr(finder, "_sqlite_rpc_crewai_hook", False):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module") and not isinstance(loader, _PatchingLoader):
            spec.loader = _PatchingLoader(loader, fullname)
        return spec


def _after_import(module: types.ModuleType) -> None:
    with _state.lock:
        if not _state.installed:
            return
        name = module.__name__
        if name in _state.targets:
            patched = _patch_module(module)
            log.debug("sqlite_rpc.crewai: patched %s on import: %s", name, patched)
            for note in _factory_notes(module):
                log.warning("sqlite_rpc.crewai: %s", note)
        if name == FLOW_FACTORY_MODULE and _state.register_flow_factory:
            _register_flow_factory(module)


# -- flow persistence factory registration -------------------------------------------------

def _flow_persistence_factory() -> Any:
    """What CrewAI's default_flow_persistence() calls once install() registered it."""
    return _built("SQLiteFlowPersistence")()


def _register_flow_factory(mod: types.ModuleType) -> str:
    setter = getattr(mod, "set_flow_persistence_factory", None)
    if setter is None:
        return "absent"
    current = getattr(mod, "_factory", None)
    if current is not None and current is not _flow_persistence_factory:
        return "kept the application's own factory"
    setter(_flow_persistence_factory)
    _state.factory_module = mod
    return "registered"


def _unregister_flow_factory() -> str:
    mod = _state.factory_module
    _state.factory_module = None
    if mod is None:
        return "not registered"
    if getattr(mod, "_factory", _flow_persistence_factory) is _flow_persistence_factory:
        mod.set_flow_persistence_factory(None)
        return "unregistered"
    return "left the application's factory in place"


# -- install / uninstall -------------------------------------------------------------------

def install(*, extra_modules: Iterable[str] = (), flow_persistence_factory: bool = True,
            shared: Optional[bool] = None) -> Dict[str, Any]:
    """Put CrewAI's SQLite storage on sqlite-rpc. Idempotent; call before or after importing CrewAI.

    extra_modules: more module names to treat like CrewAI's (their `sqlite3` / `aiosqlite`
    globals are replaced the same way). flow_persistence_factory: also register
    SQLiteFlowPersistence (this module's) through CrewAI's set_flow_persistence_factory, unless
    the application registered its own. shared: which server CrewAI's storage (the patched
    modules and the drop-in classes) uses, as sqlite_rpc.connect's: None follows
    $SQLITE_RPC_SHARED, else the server all processes of the user share (several `crewai run`
    on the same files meet in one writer).

    Returns a report: {"backend", "patched": {module: [globals]}, "pending": [modules not
    imported yet, patched when they are], "absent": [modules not installed],
    "flow_persistence_factory": what happened, "warnings": [...]}.
    """
    with _state.lock:
        for name in list(TARGETS) + list(extra_modules):
            _state.targets[name] = None
        _state.register_flow_factory = flow_persistence_factory
        _state.shared = shared
        _state.installed = True
        if _state.finder is None:
            _state.finder = _ImportHook()
        if not any(f is _state.finder for f in sys.meta_path):
            sys.meta_path.insert(0, _state.finder)

        patched: Dict[str, List[str]] = {}
        pending: List[str] = []
        absent: List[str] = []
        notes: List[str] = []
        for name in _state.targets:
            mod = sys.modules.get(name)
            if mod is not None:
                patched[name] = _patch_module(mod)
                notes.extend(_factory_notes(mod))
            elif _findable(name):
                pending.append(name)
            else:
                absent.append(name)

        factory = "disabled"
        if flow_persistence_factory:
            fmod = sys.modules.get(FLOW_FACTORY_MODULE)
            if fmod is not None:
                factory = _register_flow_factory(fmod)
            elif _findable(FLOW_FACTORY_MODULE):
                factory = "pending"
            else:
                factory = "absent"
        elif _state.factory_module is not None:
            _unregister_flow_factory()

        backend = _rpc.backend()
        if backend != "sqlite-rpc":
            notes.append("the sqlite-rpc server is not available (%s): CrewAI's storage runs on the stdlib's sqlite3"
                         % _rpc_fallback_reason())
        return {
            "backend": backend,
            "patched": patched,
            "pending": pending,
            "absent": absent,
            "flow_persistence_factory": factory,
            "warnings": notes,
        }


def _rpc_fallback_reason() -> str:
    from . import fallback

    return fallback.disabled_reason() or "it could not start"


def uninstall() -> Dict[str, Any]:
    """Undo install(): the original globals come back, the import hook goes. Idempotent."""
    with _state.lock:
        restored: Dict[str, List[str]] = {}
        for name in list(_state.originals):
            globals_back = _restore_module(name)
            if globals_back:
                restored[name] = globals_back
        factory = _unregister_flow_factory()
        if _state.finder is not None:
            sys.meta_path[:] = [f for f in sys.meta_path if f is not _state.finder]
        _state.installed = False
        _state.shared = None
        _state.targets.clear()
        return {"restored": restored, "flow_persistence_factory": factory}


def is_installed() -> bool:
    return _state.installed


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
        return appdirs_fn(appname, appauthor)
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
    return _built("DatabaseOperationError")(msg, error)


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
        return state_data.model_dump()
    if isinstance(state_data, dict):
        return state_data
    raise ValueError(f"state_data must be either a Pydantic BaseModel or dict, got {type(state_data)}")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _connect(path: str, timeout: float = 30.0) -> Any:
    """A connection that the caller closes: `with closing(_connect(p)) as conn, conn:`."""
    return _rpc.connect(path, timeout=timeout, keep_open=True, shared=_state.shared)


# -- kickoff task outputs ------------------------------------------------------------------

_KICKOFF_CREATE = """
CREATE TABLE IF NOT EXISTS latest_kickoff_task_outputs (
    task_id TEXT PRIMARY KEY,
    task_key TEXT,
    expected_output TEXT,
    output JSON,
    task_index INTEGER,
    inputs JSON,
    was_replayed BOOLEAN,
    timestamp DATETIME DEFAULT CURRENT_TIMESTAMP
)
"""
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KickoffTaskOutputsSQLiteStorage:
    """crewai.memory.storage.kickoff_task_outputs_storage.KickoffTaskOutputsSQLiteStorage on
    sqlite-rpc: latest_kickoff_task_outputs.db, same table, same results, failures raised as
    CrewAI's DatabaseOperationError."""

    def __init__(self, db_path: Optional[str] = None) -> None:
        if db_path is None:
            db_path = str(Path(db_storage_path()) / "latest_kickoff_task_outputs.db")
        self.db_path = db_path
        self._initialize_db()

    def _initialize_db(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("PRAGMA journal_mode=WAL")
                # The column check and the ALTER in one write transaction: two processes
                # initialising an old file at once cannot both add task_key.
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.cursor()
                cursor.execute(_KICKOFF_CREATE)
                columns = {row[1] for row in cursor.execute("PRAGMA table_info(latest_kickoff_task_outputs)")}
                if "task_key" not in columns:
                    cursor.execute("ALTER TABLE latest_kickoff_task_outputs ADD COLUMN task_key TEXT")
                conn.commit()
        except sqlite3.Error as e:
            raise _database_operation_error("INIT_ERROR", e) from e

    def add(self, task: Any, output: Dict[str, Any], task_index: int, was_replayed: bool = False,
            inputs: Optional[Dict[str, Any]] = None) -> None:
        inputs = inputs or {}
        enc = _json_encoder()
        row = (str(task.id), getattr(task, "key", None), task.expected_output, json.dumps(output, cls=enc),
               task_index, json.dumps(inputs, cls=enc), was_replayed)
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                conn.execute(
                    "INSERT OR REPLACE INTO latest_kickoff_task_outputs "
                    "(task_id, task_key, expected_output, output, task_index, inputs, was_replayed) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                conn.commit()
        except sqlite3.Error as e:
            raise _database_operation_error("SAVE_ERROR", e) from e

    def update(self, task_index: int, **kwargs: Any) -> None:
        enc = _json_encoder()
        fields = []
        values: List[Any] = []
        for key, value in kwargs.items():
            if not _COLUMN.match(key):  # CrewAI pastes the names into the SQL; we refuse odd ones
                raise _database_operation_error("UPDATE_ERROR", sqlite3.OperationalError("no such column: %s" % key))
            fields.append(f"{key} = ?")
            values.append(json.dumps(value, cls=enc) if isinstance(value, (dict, list)) else value)
        values.append(task_index)
        query = f"UPDATE latest_kickoff_task_outputs SET {', '.join(fields)} WHERE task_index = ?"  # noqa: S608
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                cursor = conn.execute(query, tuple(values))
                conn.commit()
                if cursor.rowcount == 0:
                    log.warning("No row found with task_index %s. No update performed.", task_index)
        except sqlite3.Error as e:
            raise _database_operation_error("UPDATE_ERROR", e) from e

    def load(self) -> List[Dict[str, Any]]:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                rows = conn.execute(
                    "SELECT task_id, task_key, expected_output, output, task_index, inputs, was_replayed, timestamp "
                    "FROM latest_kickoff_task_outputs ORDER BY task_index").fetchall()
        except sqlite3.Error as e:
            raise _database_operation_error("LOAD_ERROR", e) from e
        return [
            {
                "task_id": r[0],
                "task_key": r[1],
                "expected_output": r[2],
                "output": json.loads(r[3]) if r[3] is not None else None,
                "task_index": r[4],
                "inputs": json.loads(r[5]) if r[5] is not None else None,
                "was_replayed": r[6],
                "timestamp": r[7],
            }
            for r in rows
        ]

    def delete_all(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("BEGIN TRANSACTION")
                conn.execute("DELETE FROM latest_kickoff_task_outputs")
                conn.commit()
        except sqlite3.Error as e:
            raise _database_operation_error("DELETE_ERROR", e) from e


# -- flow persistence ----------------------------------------------------------------------

_FLOW_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS flow_states (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow_uuid TEXT NOT NULL,
        method_name TEXT NOT NULL,
        timestamp DATETIME NOT NULL,
        state_json TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idx_flow_states_uuid ON flow_states(flow_uuid)",
    """CREATE TABLE IF NOT EXISTS pending_feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow_uuid TEXT NOT NULL UNIQUE,
        context_json TEXT NOT NULL,
        state_json TEXT NOT NULL,
        created_at DATETIME NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idx_pending_feedback_uuid ON pending_feedback(flow_uuid)",
)
_INSERT_STATE = "INSERT INTO flow_states (flow_uuid, method_name, timestamp, state_json) VALUES (?, ?, ?, ?)"


def _default_flow_db() -> str:
    return str(Path(db_storage_path()) / "flow_states.db")


def _context_parts(context: Any) -> Tuple[str, Dict[str, Any]]:
    if hasattr(context, "to_dict"):
        data = context.to_dict()
        return getattr(context, "method_name", data.get("method_name")), data
    data = dict(context)
    return data["method_name"], data


class _FlowPersistenceMethods:
    """SQLiteFlowPersistence's behaviour; the class itself is built on CrewAI's base when it
    is importable (see _build_flow_persistence)."""

    db_path: str

    def init_db(self) -> None:
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for sql in _FLOW_SCHEMA:
                conn.execute(sql)

    def save_state(self, flow_uuid: str, method_name: str, state_data: Any) -> None:
        state_json = _dumps_explained(_state_dict(state_data), "state", "flow state")
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute(_INSERT_STATE, (flow_uuid, method_name, _now_iso(), state_json))

    def load_state(self, flow_uuid: str) -> Optional[Dict[str, Any]]:
        with closing(_connect(self.db_path)) as conn, conn:
            row = conn.execute(
                "SELECT state_json FROM flow_states WHERE flow_uuid = ? ORDER BY id DESC LIMIT 1", (flow_uuid,)
            ).fetchone()
        if row:
            result = json.loads(row[0])
            return result if isinstance(result, dict) else None
        return None

    def save_pending_feedback(self, flow_uuid: str, context: Any, state_data: Any) -> None:
        state_json = _dumps_explained(_state_dict(state_data), "state", "flow state")
        method_name, context_dict = _context_parts(context)
        context_json = _dumps_explained(context_dict, "context", "feedback context")
        # The state row and the pending marker commit together.
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute(_INSERT_STATE, (flow_uuid, method_name, _now_iso(), state_json))
            conn.execute(
                "INSERT OR REPLACE INTO pending_feedback (flow_uuid, context_json, state_json, created_at) "
                "VALUES (?, ?, ?, ?)", (flow_uuid, context_json, state_json, _now_iso()))

    def load_pending_feedback(self, flow_uuid: str) -> Optional[Tuple[Dict[str, Any], Any]]:
        with closing(_connect(self.db_path)) as conn, conn:
            row = conn.execute(
                "SELECT state_json, context_json FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,)
            ).fetchone()
        if not row:
            return None
        ctx_cls = _optional("crewai.flow.async_feedback.types", "PendingFeedbackContext") or PendingFeedbackContext
        return json.loads(row[0]), ctx_cls.from_dict(json.loads(row[1]))

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        with closing(_connect(self.db_path)) as conn, conn:
            conn.execute("DELETE FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,))


def _is_pydantic_class(cls: Any) -> bool:
    base = _optional("pydantic", "BaseModel")
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _build_flow_persistence() -> type:
    base = _optional("crewai.flow.persistence.base", "FlowPersistence")
    doc = ("crewai.flow.persistence.sqlite.SQLiteFlowPersistence on sqlite-rpc: flow_states.db, the same "
           "tables; connections closed; non-JSON state raises FlowStateNotSerializableError.")
    if base is not None and _is_pydantic_class(base):
        from pydantic import Field, model_validator

        class SQLiteFlowPersistence(_FlowPersistenceMethods, base):  # type: ignore[valid-type,misc]
            __doc__ = doc
            __qualname__ = "SQLiteFlowPersistence"  # pickles as sqlite_rpc.crewai.SQLiteFlowPersistence
            persistence_type: str = Field(default="SQLiteFlowPersistence")
            db_path: str = Field(default_factory=_default_flow_db)

            def __init__(self, db_path: Optional[str] = None, /, **kwargs: Any) -> None:
                if db_path is not None:
                    kwargs["db_path"] = db_path
                super().__init__(**kwargs)

            @model_validator(mode="after")
            def _sqlite_rpc_init_db(self) -> Any:
                if not self.db_path:
                    raise ValueError("Database path must be provided")
                self.init_db()
                return self

        return SQLiteFlowPersistence

    bases: Tuple[type, ...] = (_FlowPersistenceMethods,) if base is None else (_FlowPersistenceMethods, base)

    def __init__(self: Any, db_path: Optional[str] = None, /, **kwargs: Any) -> None:
        if db_path is None:
            db_path = kwargs.pop("db_path", None)
        if kwargs:
            raise TypeError("SQLiteFlowPersistence() got unexpected keyword arguments: %s" % ", ".join(sorted(kwargs)))
        self.db_path = db_path or _default_flow_db()
        self.init_db()

    return type("SQLiteFlowPersistence", bases, {
        "__doc__": doc, "__module__": __name__, "__init__": __init__, "persistence_type": "SQLiteFlowPersistence",
    })


# -- checkpoints ---------------------------------------------------------------------------

_CHECKPOINTS_CREATE = """
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    parent_id TEXT,
    branch TEXT NOT NULL DEFAULT 'main',
    data JSONB NOT NULL
)
"""
_CHECKPOINT_INSERT = "INSERT INTO checkpoints (id, created_at, parent_id, branch, data) VALUES (?, ?, ?, ?, jsonb(?))"
# Only where no SQLite with jsonb() is at hand (the stdlib fallback on SQLite < 3.45): the
# JSON is stored as text, which json(data) reads back the same on every version.
_CHECKPOINT_INSERT_TEXT = "INSERT INTO checkpoints (id, created_at, parent_id, branch, data) VALUES (?, ?, ?, ?, json(?))"
_CHECKPOINT_SELECT = "SELECT json(data) FROM checkpoints WHERE id = ?"
_CHECKPOINT_PRUNE = """
DELETE FROM checkpoints WHERE branch = ? AND rowid NOT IN (
    SELECT rowid FROM checkpoints WHERE branch = ? ORDER BY rowid DESC LIMIT ?
)
"""


def _make_checkpoint_id() -> Tuple[str, str]:
    ts = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{ts}_{uuid.uuid4().hex[:8]}", ts


def _no_jsonb(e: BaseException) -> bool:
    """Whether the SQLite that ran the statement lacks jsonb(). The server says so in
    data.reason; the stdlib fallback's errors carry no reason (nor, before Python 3.11, a
    code), so there its version decides: jsonb() arrived in SQLite 3.45, and before that no
    statement using it can succeed."""
    if not isinstance(e, sqlite3.OperationalError):
        return False
    if getattr(e, "rpc_kind", None) is not None:
        return getattr(e, "rpc_reason", None) == REASON_NO_SUCH_FUNCTION and str(getattr(e, "rpc_name", "")).lower() == "jsonb"
    return sqlite3.sqlite_version_info < (3, 45, 0)


class _ProviderMethods:
    """SqliteProvider's behaviour (sync over sqlite_rpc, async over sqlite_rpc.aio)."""

    def checkpoint(self, data: str, location: str, *, parent_id: Optional[str] = None, branch: str = "main") -> str:
        checkpoint_id, ts = _make_checkpoint_id()
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        row = (checkpoint_id, ts, parent_id, branch, data)
        with closing(_connect(location)) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_CHECKPOINTS_CREATE)
            try:
                conn.execute(_CHECKPOINT_INSERT, row)
            except sqlite3.OperationalError as e:
                if not _no_jsonb(e):
                    raise
                conn.execute(_CHECKPOINT_INSERT_TEXT, row)
            conn.commit()
        return f"{location}#{checkpoint_id}"

    async def acheckpoint(self, data: str, location: str, *, parent_id: Optional[str] = None,
                          branch: str = "main") -> str:
        checkpoint_id, ts = _make_checkpoint_id()
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        row = (checkpoint_id, ts, parent_id, branch, data)
        async with _aio.connect(location, timeout=30.0, keep_open=True, shared=_state.shared) as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(_CHECKPOINTS_CREATE)
            try:
                await db.execute(_CHECKPOINT_INSERT, row)
            except sqlite3.OperationalError as e:
                if not _no_jsonb(e):
                    raise
                await db.execute(_CHECKPOINT_INSERT_TEXT, row)
            await db.commit()
        return f"{location}#{checkpoint_id}"

    def prune(self, location: str, max_keep: int, *, branch: str = "main") -> int:
        with closing(_connect(location)) as conn, conn:
            cur = conn.execute(_CHECKPOINT_PRUNE, (branch, branch, max_keep))
            removed = cur.rowcount
            conn.commit()
        return max(removed, 0)

    def extract_id(self, location: str) -> str:
        return location.rsplit("#", 1)[1]

    def from_checkpoint(self, location: str) -> str:
        db_path, checkpoint_id = location.rsplit("#", 1)
        with closing(_connect(db_path)) as conn, conn:
            row = conn.execute(_CHECKPOINT_SELECT, (checkpoint_id,)).fetchone()
        if row is None:
            raise ValueError(f"Checkpoint not found: {checkpoint_id}")
        result: str = row[0]
        return result

    async def afrom_checkpoint(self, location: str) -> str:
        db_path, checkpoint_id = location.rsplit("#", 1)
        async with _aio.connect(db_path, timeout=30.0, keep_open=True, shared=_state.shared) as db:
            async with db.execute(_CHECKPOINT_SELECT, (checkpoint_id,)) as cursor:
                row = await cursor.fetchone()
        if row is None:
            raise ValueError(f"Checkpoint not found: {checkpoint_id}")
        result: str = row[0]
        return result


def _build_sqlite_provider() -> type:
    doc = ("crewai.state.provider.sqlite_provider.SqliteProvider on sqlite-rpc (a subclass of it when CrewAI "
           "is importable, so CheckpointConfig accepts it): jsonb checkpoints whatever Python's SQLite version, "
           "connections closed, prune() returns how many checkpoints it removed.")
    base = _optional("crewai.state.provider.sqlite_provider", "SqliteProvider")
    if base is not None:
        return type(base)("SqliteProvider", (_ProviderMethods, base), {"__doc__": doc, "__module__": __name__,
                                                                       "__qualname__": "SqliteProvider"})

    def __init__(self: Any, provider_type: str = "sqlite") -> None:
        if provider_type != "sqlite":
            raise ValueError("provider_type must be 'sqlite', got %r" % (provider_type,))

    return type("SqliteProvider", (_ProviderMethods,), {
        "__doc__": doc, "__module__": __name__, "__init__": __init__, "provider_type": "sqlite",
    })


# -- long-term memory (CrewAI <= 1.9.x) ----------------------------------------------------

_LTM_CREATE = """
CREATE TABLE IF NOT EXISTS long_term_memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_description TEXT,
    metadata TEXT,
    datetime TEXT,
    score REAL
)
"""
_LTM_INSERT = "INSERT INTO long_term_memories (task_description, metadata, datetime, score) VALUES (?, ?, ?, ?)"
_LTM_SELECT = ("SELECT metadata, datetime, score FROM long_term_memories WHERE task_description = ? "
               "ORDER BY datetime DESC, score ASC LIMIT ?")


def _ltm_rows(rows: List[Any]) -> Optional[List[Dict[str, Any]]]:
    if not rows:
        return None
    return [{"metadata": json.loads(r[0]), "datetime": r[1], "score": r[2]} for r in rows]


class LTMSQLiteStorage:
    """crewai.memory.storage.ltm_sqlite_storage.LTMSQLiteStorage (CrewAI <= 1.9.x) on sqlite-rpc:
    long_term_memory_storage.db, same table; never raises, prints errors when verbose."""

    def __init__(self, db_path: Optional[str] = None, verbose: bool = True) -> None:
        if db_path is None:
            db_path = str(Path(db_storage_path()) / "long_term_memory_storage.db")
        self.db_path = db_path
        self._verbose = verbose
        Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self._initialize_db()

    def _error(self, what: str, e: Exception) -> None:
        if self._verbose:
            _printer_print(f"MEMORY ERROR: An error occurred {what}: {e}")

    def _initialize_db(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute(_LTM_CREATE)
                conn.commit()
        except sqlite3.Error as e:
            self._error("during database initialization", e)

    def save(self, task_description: str, metadata: Dict[str, Any], datetime: str, score: float) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute(_LTM_INSERT, (task_description, json.dumps(metadata), datetime, score))
                conn.commit()
        except sqlite3.Error as e:
            self._error("while saving to LTM", e)

    def load(self, task_description: str, latest_n: int) -> Optional[List[Dict[str, Any]]]:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                rows = conn.execute(_LTM_SELECT, (task_description, latest_n)).fetchall()
            return _ltm_rows(rows)
        except sqlite3.Error as e:
            self._error("while querying LTM", e)
        return None

    def reset(self) -> None:
        try:
            with closing(_connect(self.db_path)) as conn, conn:
                conn.execute("DELETE FROM long_term_memories")
                conn.commit()
        except sqlite3.Error as e:
            self._error("while deleting all rows in LTM", e)

    async def asave(self, task_description: str, metadata: Dict[str, Any], datetime: str, score: float) -> None:
        try:
            async with _aio.connect(self.db_path, timeout=30.0, keep_open=True, shared=_state.shared) as conn:
                await conn.execute(_LTM_INSERT, (task_description, json.dumps(metadata), datetime, score))
                await conn.commit()
        except sqlite3.Error as e:
            self._error("while saving to LTM", e)

    async def aload(self, task_description: str, latest_n: int) -> Optional[List[Dict[str, Any]]]:
        try:
            async with _aio.connect(self.db_path, timeout=30.0, keep_open=True, shared=_state.shared) as conn:
                async with conn.execute(_LTM_SELECT, (task_description, latest_n)) as cursor:
                    rows = await cursor.fetchall()
            return _ltm_rows(rows)
        except sqlite3.Error as e:
            self._error("while querying LTM", e)
        return None

    async def areset(self) -> None:
        try:
            async with _aio.connect(self.db_path, timeout=30.0, keep_open=True, shared=_state.shared) as conn:
                await conn.execute("DELETE FROM long_term_memories")
                await conn.commit()
        except sqlite3.Error as e:
            self._error("while deleting all rows in LTM", e)


# -- classes that depend on whether CrewAI is importable: built on first use ----------------

_BUILDERS: Dict[str, Callable[[], Any]] = {
    "SQLiteFlowPersistence": _build_flow_persistence,
    "SqliteProvider": _build_sqlite_provider,
    "DatabaseOperationError": lambda: _optional("crewai.utilities.errors", "DatabaseOperationError")
    or _LocalDatabaseOperationError,
}
_built_classes: Dict[str, Any] = {}
_build_lock = threading.RLock()


def _built(name: str) -> Any:
    with _build_lock:
        cls = _built_classes.get(name)
        if cls is None:
            cls = _built_classes[name] = _BUILDERS[name]()
        return cls


def _forget_built_classes() -> None:
    """Rebuild the CrewAI-dependent classes on next use (tests switch CrewAI in and out)."""
    with _build_lock:
        _built_classes.clear()


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:
        return _built(name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_BUILDERS))

