"""sqlite3's parameter binding rules, applied in the client (CPython 3.11's Modules/_sqlite).

The server only ever sees values it can bind (int64, float, str, bytes, None), as a list
for positional statements or a map for named ones. Everything sqlite3 checks itself (the
number of bindings, names missing from a dict, adapters and __conform__, unsupported
types, int64 overflow) is checked here, in sqlite3's order and with its messages, because
only the client knows the Python objects. That needs the statement's parameters, which
`scan()` finds the way SQLite's tokenizer numbers them (sqlite3_bind_parameter_count and
sqlite3_bind_parameter_name).
"""
from __future__ import annotations

import re
import sqlite3
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

# sqlite3's words for an int outside SQLite's 64-bit INTEGER (also for the server's integer_overflow).
INT_OVERFLOW = "Python int too large to convert to SQLite INTEGER"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# One token per match: literals, quoted identifiers and comments are skipped whole, so a
# `?` or `:name` inside them is not a parameter; identifiers are matched whole because `$`
# may appear inside them (`a$b` is one identifier, not `a` and a parameter `$b`).
_TOKENS_PATTERN = (
    r"""
      '[^']*(?:''[^']*)*'?
    | "[^"]*(?:""[^"]*)*"?
    | `[^`]*(?:``[^`]*)*`?
    | \[[^\]]*\]?
    | --[^\n]*
    | /\*.*?(?:\*/|\Z)
    | \?(?P<num>[0-9]*)
    | (?P<named>[:@][0-9A-Za-z_$\u0080-\U0010ffff]+
              | \$(?:[0-9A-Za-z_\u0080-\U0010ffff]|::)+(?:\([^)]*\))?)
    | [A-Za-z_\u0080-\U0010ffff][0-9A-Za-z_$\u0080-\U0010ffff]*
    | [^'"`\[\-/?:@$A-Za-z_\u0080-\U0010ffff]+
    | .
    """
)
_tokens: "Optional[re.Pattern[str]]" = None


def _token_re() -> "re.Pattern[str]":
    # Compiled on first use: with its Unicode ranges it costs ~25 ms, paid at import before.
    global _tokens
    if _tokens is None:
        _tokens = re.compile(_TOKENS_PATTERN, re.S | re.X)
    return _tokens

Scan = Tuple[int, Tuple[Optional[str], ...], bool]
_scans: Dict[str, Scan] = {}


def scan(sql: str) -> Scan:
    """(parameter count, name of each index or None for `?`, any named), as SQLite numbers them:
    `?` takes the largest index so far + 1, `?NNN` is index NNN, a name seen before keeps
    its index and a new one takes the next."""
    hit = _scans.get(sql)
    if hit is not None:
        return hit
    count = 0
    names: Dict[int, Optional[str]] = {}
    seen: Dict[str, int] = {}
    named = False
    if "?" in sql or ":" in sql or "@" in sql or "$" in sql:
        for m in _token_re().finditer(sql):
            num, name = m.group("num"), m.group("named")
            if num is not None:
                if num:
                    idx = int(num)
                    names.setdefault(idx, "?" + num)
                    count = max(count, idx)
                else:
                    count += 1
                    names.setdefault(count, None)
            elif name is not None:
                named = True
                idx = seen.get(name, 0)
                if not idx:
                    count += 1
                    idx = seen[name] = count
                    names[idx] = name
    result = (count, tuple(names.get(i) for i in range(1, count + 1)), named)
    if len(_scans) > 512:
        _scans.clear()
    _scans[sql] = result
    return result


# sqlite3 adapts every value except exact int/float/str/bytearray, and those too once an
# adapter is registered for one of them ("BaseTypeAdapted"). The registry is sqlite3's own,
# which anyone may change at any time, so it is looked at on every call (six dict lookups).
_PROTO = sqlite3.PrepareProtocol
_BASE_KEYS = tuple((t, _PROTO) for t in (int, float, str, bytearray))
_OTHER_KEYS = tuple((t, _PROTO) for t in (type(None), bytes))
_ALL_FAST = frozenset((int, float, str, bytearray, type(None), bytes))
_fast_memo: Dict[Tuple[bool, ...], FrozenSet[Any]] = {}
# Registry keys that change no fast type (the stdlib's own date and datetime adapters).
_HARMLESS_KEYS = frozenset(k for k in sqlite3.adapters if k not in _BASE_KEYS + _OTHER_KEYS)


def _fast_types() -> FrozenSet[Any]:
    """The types that bind as they are, without a look at the adapter registry."""
    reg = sqlite3.adapters
    if reg.keys() <= _HARMLESS_KEYS:
        return _ALL_FAST  # the common case: only the stdlib's date/datetime adapters
    state = tuple(k in reg for k in _BASE_KEYS + _OTHER_KEYS)
    fast = _fast_memo.get(state)
    if fast is None:
        if any(state[:4]):
            fast = frozenset()
        else:
            fast = frozenset(k[0] for k, hit in zip(_BASE_KEYS + _OTHER_KEYS, state) if not hit)
        _fast_memo[state] = fast
    return fast


def _tp_name(t: type) -> str:
    """Py_TYPE(obj)->tp_name, which sqlite3's message shows ('decimal.Decimal', 'Foo')."""
    if not t.__flags__ & (1 << 9):  # a static C type: tp_name is "module.Name" unless builtin
        return t.__name__ if t.__module__ == "builtins" else "%s.%s" % (t.__module__, t.__name__)
    try:  # a heap type: Python classes have their bare name, C types from a spec a dotted one
        import ctypes

        raw = ctypes.c_char_p.from_address(id(t) + 3 * ctypes.sizeof(ctypes.c_void_p)).value
        if raw:
            return raw.decode("utf-8")
    except Exception:
        pass
    return t.__name__


def bind_value(v: Any, index: int) -> Any:
    """One parameter as sqlite3's bind_param sees it: adapted, then bound by type."""
    t = type(v)
    if t not in _fast_types():
        v = sqlite3.adapt(v, sqlite3.PrepareProtocol, v)  # errors propagate, as in sqlite3
        t = type(v)
    if v is None or t is str or t is bytes:
        return v
    if t is int or isinstance(v, int):
        if _INT64_MIN <= v <= _INT64_MAX:
            return int(v)  # bool and IntEnum bind as their integer value
        raise OverflowError(INT_OVERFLOW)
    if t is float or isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    try:
        mv = memoryview(v)  # anything with the buffer protocol binds as a BLOB
    except TypeError:
        pass
    else:
        if not mv.c_contiguous:
            raise BufferError("memoryview: underlying buffer is not C-contiguous")  # as sqlite3
        return mv.tobytes()
    raise sqlite3.ProgrammingError("Error binding parameter %d: type '%s' is not supported" % (index, _tp_name(t)))


def bind(sql: str, params: Any) -> Any:
    """The wire form of `params` for `sql` (None when the statement has no parameters and
    none were given), or the exception sqlite3 raises while binding them."""
    count, names, named = scan(sql)
    if type(params) is tuple or type(params) is list or (not isinstance(params, dict) and _is_sequence(params)):
        n = len(params)
        if n != count:
            raise sqlite3.ProgrammingError(
                "Incorrect number of bindings supplied. The current statement uses %d, and there are %d supplied." % (count, n))
        if not count:
            return None
        fast = _fast_types()
        values: List[Any] = []
        for i in range(count):
            v = params[i]
            t = type(v)
            if t in fast and t is not bytearray and (t is not int or _INT64_MIN <= v <= _INT64_MAX):
                values.append(v)
            else:
                values.append(bind_value(v, i + 1))
        if named and None not in names:
            # The server binds a map to named parameters; sqlite3 binds a list by index.
            return {names[i][1:]: values[i] for i in range(count)}  # type: ignore[index]
        return values
    if isinstance(params, dict):
        out: Dict[str, Any] = {}
        exact = type(params) is dict
        for i, name in enumerate(names, 1):
            if name is None:
                raise sqlite3.ProgrammingError(
                    "Binding %d has no name, but you supplied a dictionary (which has only names)." % i)
            key = name[1:]
            try:
                v = params[key]  # a dict subclass's __missing__ is honoured, as in sqlite3
            except LookupError:
                raise sqlite3.ProgrammingError("You did not supply a value for binding parameter %s." % name) from None
            if exact or key not in out:
                out[key] = bind_value(v, i)
        return out if count else None
    raise sqlite3.ProgrammingError("parameters are of unsupported type")


def _is_sequence(params: Any) -> bool:
    """PySequence_Check, which sqlite3 asks: a Python class with __getitem__ (a Mapping too),
    a C type only with the sequence protocol (so not a mappingproxy)."""
    try:
        import ctypes

        return bool(ctypes.pythonapi.PySequence_Check(ctypes.py_object(params)))
    except Exception:  # not CPython
        return hasattr(type(params), "__getitem__") and not isinstance(params, _MappingABC)


from collections.abc import Mapping as _MappingABC  # noqa: E402


def bind_many_fast(sql: str, seq: Any) -> Optional[Any]:
    """Perf fix (bench/peers, W4): executemany's parameter sets in one pass of C-level checks,
    instead of a bind() call per row (which was a quarter of executemany's time for 100k rows).
    Only the plain case: `seq` a list or tuple of tuples/lists, a positional statement, every
    value of a type that bind() passes through unchanged (int within int64, float, str, bytes,
    None; no adapter registered for them). Then the wire rows are the parameter sets themselves
    (msgpack writes tuples and lists alike), exactly what bind() would have produced row by row.
    Anything else returns None and the caller binds row by row, with sqlite3's errors."""
    if type(seq) is not list and type(seq) is not tuple:
        return None
    count, _names, named = scan(sql)
    if named or not count or not seq:
        return None
    if not set(map(type, seq)) <= _ROW_TYPES or set(map(len, seq)) != {count}:
        return None
    fast = _fast_types()
    for col in zip(*seq):
        types = set(map(type, col))
        if not types <= fast or bytearray in types:
            return None
        if int in types:
            ints = col if len(types) == 1 else [v for v in col if type(v) is int]
            if min(ints) < _INT64_MIN or max(ints) > _INT64_MAX:
                return None
    return seq


_ROW_TYPES = frozenset((tuple, list))


def blank(sql: str) -> bool:
    """Only whitespace, comments and semicolons: sqlite3 runs nothing."""
    return _BLANK.match(sql) is not None


_BLANK = re.compile(r"(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?(?:\*/|\Z)|;)*\Z", re.S)

