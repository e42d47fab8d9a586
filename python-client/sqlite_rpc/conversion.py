"""Values on their way to the user: converters (PARSE_DECLTYPES, PARSE_COLNAMES) and
text_factory, as sqlite3 applies them."""
from __future__ import annotations

import re
import sqlite3
from typing import Any, List, Optional, Sequence


def _strip_colname(name: str) -> str:
    # sqlite3 (PARSE_COLNAMES) cuts the name at the first '[' and drops one space before it.
    i = name.find("[")
    if i < 0:
        return name
    return name[: i - 1] if i > 0 and name[i - 1] == " " else name[:i]


def _convert(f: Any, v: Any) -> Any:
    b = _as_bytes(v)
    # sqlite3 calls the converter with sqlite3_column_blob's bytes, which is NULL for an
    # empty value (BLOB or TEXT): then the column is None and the converter is not called.
    return f(b) if b else None


def _as_bytes(v: Any) -> bytes:
    """What sqlite3_column_blob gives a converter: SQLite's text for numbers."""
    t = type(v)
    if t is bytes:
        b: bytes = v
        return b
    if t is str:
        s: str = v
        return s.encode("utf-8")
    if t is float:
        return _real_text(v).encode("ascii")
    return str(v).encode("ascii")


def _real_text(v: float) -> str:
    # SQLite's "%!.15g": 15 significant digits, and always a '.0' in the mantissa.
    if v != v or v in (float("inf"), float("-inf")):
        return "Inf" if v > 0 else "-Inf" if v < 0 else ""
    if v == 0:
        return "0.0"
    s = "%.15g" % v
    mantissa, e, exp = s.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exp


def _apply_text_factory(tf: Any, v: str) -> Any:
    if tf is bytes:
        return v.encode("utf-8")
    return tf(v.encode("utf-8"))
