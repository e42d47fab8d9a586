"""PEP 249 objects that behave like the stdlib sqlite3's (the module as it was before the
split): Connection (connection.py), Cursor (cursor.py), Row (row.py)."""
from ._core import Params
from ._core import deferred as _deferred  # noqa: F401
from .connection import Connection
from .cursor import Cursor
from .row import Row

__all__ = ["Connection", "Cursor", "Row", "Params"]
