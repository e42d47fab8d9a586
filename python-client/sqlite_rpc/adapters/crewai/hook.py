"""install(): CrewAI's modules that use sqlite3 (and aiosqlite) get sqlite_rpc instead."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sqlite3
import sys
import types
import warnings
from typing import Any, Dict, Iterable, List, Optional, Tuple

import sqlite_rpc as _rpc
import sqlite_rpc.aio as _aio
from .compat import _built, _forget_built_classes, _state, log

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
        if _state.replicate:
            kwargs.setdefault("replicate", _state.replicate)
        return self._target.connect(*args, **kwargs)


#: What a patched CrewAI module's `sqlite3` and `aiosqlite` globals are.
SQLITE3 = _KeepOpen("sqlite_rpc.crewai.SQLITE3", _rpc)
AIOSQLITE = _KeepOpen("sqlite_rpc.crewai.AIOSQLITE", _aio)


def _replacements() -> Dict[str, types.ModuleType]:
    # global name in a CrewAI module -> what takes its place
    return {"sqlite3": SQLITE3, "aiosqlite": AIOSQLITE}


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
            spec = getattr(module, "__spec__", None)
            if spec is not None:
                spec.loader = self._loader
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
            shared: Optional[bool] = None, replicate: Optional[str] = None) -> Dict[str, Any]:
    """Put CrewAI's SQLite storage on sqlite-rpc. Idempotent; call before or after importing CrewAI.

    extra_modules: more module names to treat like CrewAI's (their `sqlite3` / `aiosqlite`
    globals are replaced the same way). flow_persistence_factory: also register
    SQLiteFlowPersistence (this module's) through CrewAI's set_flow_persistence_factory, unless
    the application registered its own. shared: which server CrewAI's storage (the patched
    modules and the drop-in classes) uses, as sqlite_rpc.connect's: None follows
    $SQLITE_RPC_SHARED, else the server all processes of the user share (several `crewai run`
    on the same files meet in one writer). replicate: a Litestream replica location
    (file:///folder, s3://bucket/prefix?endpoint=...): every CrewAI storage file is
    replicated there continuously, as with sqlite_rpc.connect(replicate=...).

    Returns a report: {"backend", "patched": {module: [globals]}, "pending": [modules not
    imported yet, patched when they are], "absent": [modules not installed],
    "flow_persistence_factory": what happened, "warnings": [...]}.
    """
    with _state.lock:
        for name in list(TARGETS) + list(extra_modules):
            _state.targets[name] = None
        _state.register_flow_factory = flow_persistence_factory
        _state.shared = shared
        _state.replicate = replicate
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
    from ... import fallback

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
        _state.replicate = None
        _state.targets.clear()
        return {"restored": restored, "flow_persistence_factory": factory}


def is_installed() -> bool:
    return _state.installed
