"""sqlite3.Row's behaviour (Row), and the genuine sqlite3.Cursor a row factory of the user's
gets in place of ours (_view_for)."""
from __future__ import annotations

import collections.abc
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

from ._core import _type_name

if TYPE_CHECKING:
    from .cursor import Cursor

_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


class Row:
    """sqlite3.Row's semantics: index or (case-insensitive) name, keys(), equality, hashing."""

    __slots__ = ("_description", "_values", "_index")

    def __init__(self, cursor: Any, values: Tuple[Any, ...]) -> None:
        # sqlite3's checks of the types themselves (a __class__ that claims one does not pass).
        if not issubclass(type(cursor), (_cursor.Cursor, sqlite3.Cursor)):
            raise TypeError("Row() argument 1 must be sqlite3.Cursor, not %s" % _type_name(cursor))  # sqlite3's words
        if not issubclass(type(values), tuple):
            raise TypeError("Row() argument 2 must be tuple, not %s" % _type_name(values))
        self._description = cursor.description
        self._values = tuple(values)
        self._index: Optional[Dict[str, int]] = None

    def _lookup(self, key: str) -> int:
        idx = self._index
        if idx is None:
            idx = {}
            for i, d in enumerate(self._description or ()):
                idx.setdefault(d[0].translate(_ASCII_LOWER), i)
            self._index = idx
        try:
            return idx[key.translate(_ASCII_LOWER)]  # sqlite3 folds ASCII letters only
        except KeyError:
            raise IndexError("No item with that key") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._lookup(key)]
        if isinstance(key, (int, slice)):
            return self._values[key]
        raise IndexError("Index must be int or string")

    def keys(self) -> List[str]:
        return [d[0] for d in (self._description or ())]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._description == other._description and self._values == other._values

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self) -> int:
        return hash(tuple(d[0] for d in (self._description or ()))) ^ hash(self._values)

    def __repr__(self) -> str:
        return "<sqlite_rpc.Row %r>" % (self._values,)


collections.abc.Sequence.register(Row)  # as sqlite3 registers sqlite3.Row


def _normalise_row_factory(f: Any) -> Any:
    # Code written for the stdlib sets sqlite3.Row; it cannot wrap our cursor, ours can.
    return Row if f is sqlite3.Row else f


_stand_in: Optional[sqlite3.Connection] = None
_stand_in_lock = threading.Lock()


def _stand_in_connection() -> sqlite3.Connection:
    """A private in-memory stdlib connection. It initialises the sqlite3.Cursor part of the
    classes below and names their columns for sqlite3.Row, which reads its cursor's C-level
    description; it never sees the user's data."""
    global _stand_in
    with _stand_in_lock:
        if _stand_in is None:
            _stand_in = sqlite3.connect(":memory:", check_same_thread=False)
        return _stand_in


class _CursorView(sqlite3.Cursor):
    """A genuine sqlite3.Cursor that a row factory of the user's gets in place of our cursor:
    its columns are named on the stand-in connection, so that sqlite3.Row(cursor, row) (and
    subclasses of sqlite3.Row) work; every attribute and method is the cursor's own."""

    __slots__ = ("_target",)

    def __init__(self, description: Any) -> None:
        sqlite3.Cursor.__init__(self, _stand_in_connection())
        self._target: Any = None
        names = ", ".join('NULL AS "%s"' % d[0].replace('"', '""') for d in description)
        sqlite3.Cursor.execute(self, "SELECT %s LIMIT 0" % names)

    description = property(lambda self: self._target.description)
    connection = property(lambda self: self._target.connection)
    rowcount = property(lambda self: self._target.rowcount)
    lastrowid = property(lambda self: self._target.lastrowid)
    arraysize = property(lambda self: self._target.arraysize, lambda self, v: setattr(self._target, "arraysize", v))
    row_factory = property(lambda self: self._target.row_factory, lambda self, v: setattr(self._target, "row_factory", v))

    def __iter__(self) -> Any:
        return self._target

    def __next__(self) -> Any:
        return next(self._target)


def _delegate(name: str) -> Callable[..., Any]:
    def f(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._target, name)(*args, **kwargs)

    f.__name__ = name
    return f


for _name in ("execute", "executemany", "executescript", "fetchone", "fetchmany", "fetchall", "close", "setinputsizes", "setoutputsize"):
    setattr(_CursorView, _name, _delegate(_name))

_views = threading.local()


def _view_for(cursor: Cursor) -> _CursorView:
    """A view whose columns have the names of cursor's description (one per thread and names)."""
    desc = cursor.description or ()
    cache = getattr(_views, "cache", None)
    if cache is None:
        cache = _views.cache = {}
    key = tuple(d[0] for d in desc)
    view = cache.get(key)
    if view is None:
        if len(cache) >= 256:
            cache.clear()
        view = cache[key] = _CursorView(desc)
    return view


Row.__module__ = _CursorView.__module__ = "sqlite_rpc.dbapi"  # their public module, which re-exports them


from . import cursor as _cursor  # noqa: E402 - it imports this module: Row's check looks it up when called
