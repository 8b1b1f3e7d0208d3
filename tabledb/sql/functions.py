"""Built-in SQL functions: scalar functions and aggregates, with SQLite 3.40 semantics.

``SCALAR_FUNCTIONS`` maps a lower-case name to ``(function, min_args, max_args)``
(``max_args`` None = variadic). The function takes already evaluated positional
arguments (runtime values, see ``tabledb.sql.values``) and returns one.
``coalesce``, ``ifnull`` and ``iif`` are eager here; the expression compiler
evaluates them lazily itself.

``AGGREGATES`` maps a name to ``factory(distinct: bool)``, which returns a fresh
accumulator with ``step(*args)`` (once per row) and ``final()`` (the result;
it may be called more than once and does not change the state). ``count(*)``
is ``step()`` with no argument. With ``distinct`` the first argument is
deduplicated (under SQL equality: 1 and 1.0 are the same value) before the step.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from tabledb.errors import OperationalError
from tabledb.sql import values as V
from tabledb.sql.values import INT64_MAX, INT64_MIN

__all__ = ["SCALAR_FUNCTIONS", "AGGREGATES", "AGGREGATE_NAMES"]

_to_text = V.to_text
_real_value = V._real_value
_int_value = V._int_value
_sort_key = V.sort_key
_LENGTH_LIMIT = 1_000_000_000       # SQLite's default SQLITE_LIMIT_LENGTH (substr's default length)
_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}
_ASCII_UPPER = {c: c - 32 for c in range(97, 123)}


def _int32(v: int) -> int:
    """sqlite3_value_int: the low 32 bits of the int64, signed."""
    return ((v + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _is_blob(v: Any) -> bool:
    return type(v) is bytes or isinstance(v, (bytes, bytearray, memoryview))


def _c_text(text: str) -> str:
    nul = text.find("\x00")
    return text if nul < 0 else text[:nul]


# --- scalar functions -----------------------------------------------------------

_NO_LENGTH = object()     # substr() called with two arguments


def f_abs(x):
    if x is None:
        return None
    t = type(x)
    if t is int:
        if x == INT64_MIN:
            raise OperationalError("integer overflow")
        return -x if x < 0 else x
    if t is bool:
        return int(x)
    if t is float:
        return -x if x < 0.0 else x
    r = _real_value(x)
    return -r if r < 0.0 else r


def f_coalesce(*args):
    for a in args:
        if a is not None:
            return a
    return None


def f_ifnull(a, b):
    return b if a is None else a


def f_nullif(a, b):
    return None if V.op_eq(a, b) == 1 else a


def f_iif(cond, a, b):
    return a if V.truth(cond) else b


def f_length(x):
    if x is None:
        return None
    if type(x) is str:
        nul = x.find("\x00")
        return len(x) if nul < 0 else nul
    if _is_blob(x):
        return len(x)
    return len(_to_text(x))


def f_lower(x):
    if x is None:
        return None
    return _to_text(x).translate(_ASCII_LOWER)


def f_upper(x):
    if x is None:
        return None
    return _to_text(x).translate(_ASCII_UPPER)


def f_substr(x, start, length=_NO_LENGTH):
    """SQLite's substr(X, Y[, Z]): 1-based; a negative Y counts from the end; Y = 0 is
    before the first character; a negative Z takes the characters before Y. Bytes of a blob."""
    if x is None or start is None or length is None:
        return None
    p1 = _int32(_int_value(start))
    if length is _NO_LENGTH:
        p2 = _LENGTH_LIMIT
        negative = False
    else:
        p2 = _int32(_int_value(length))
        negative = p2 < 0
        if negative:
            p2 = -p2
    blob = _is_blob(x)
    if blob:
        z = bytes(x)
        if not z:
            return None                 # SQLite reads an empty blob as a NULL pointer
    else:
        z = _c_text(_to_text(x))
    n = len(z)
    if p1 < 0:
        p1 += n
        if p1 < 0:
            p2 += p1
            if p2 < 0:
                p2 = 0
            p1 = 0
    elif p1 > 0:
        p1 -= 1
    elif p2 > 0:
        p2 -= 1
    if negative:
        p1 -= p2
        if p1 < 0:
            p2 += p1
            p1 = 0
    return z[p1:p1 + p2]


def f_replace(x, pattern, replacement):
    if x is None or pattern is None:
        return None
    pattern = _to_text(pattern)
    if pattern == "":
        return _to_text(x) if _is_blob(x) else x
    if replacement is None:
        return None
    return _to_text(x).replace(pattern, _to_text(replacement))


def _trimmer(method: str) -> Callable:
    def trim(x, chars=" "):
        if x is None or chars is None:
            return None
        chars = _c_text(_to_text(chars))
        return getattr(_to_text(x), method)(chars) if chars else _to_text(x)
    trim.__name__ = "f_" + method
    return trim


f_trim = _trimmer("strip")
f_ltrim = _trimmer("lstrip")
f_rtrim = _trimmer("rstrip")


def f_round(x, digits=0):
    """SQLite's round(X[, Y]): always REAL; halves round away from zero; Y is clamped to 0..30.

    Exactly as SQLite 3.40 computes it: printf("%.*f") (x87 long double
    arithmetic, including its 3e-16 relative nudge) and sqlite3AtoF back.
    """
    if digits is None or x is None:
        return None
    n = _int32(_int_value(digits))
    n = 30 if n > 30 else (0 if n < 0 else n)
    r = _real_value(x)
    if r < -4503599627370496.0 or r > 4503599627370496.0:
        return r
    if n == 0:
        return float(int(r + (-0.5 if r < 0 else 0.5)))
    return _round_digits(r, n)


def _round_digits(r: float, n: int) -> float:
    """round(r, n) for 1 <= n <= 30 and |r| <= 2**52: SQLite prints printf("%.*f", n, r)
    (at most 16 significant digits, zeros after) and parses it back with sqlite3AtoF."""
    a = -r if r < 0.0 else r
    if a:
        rounder = V._AR_ROUND[n % 10]
        idx = n
        while idx >= 10:
            rounder *= 1.0e-10
            idx -= 10
        ex = math.frexp(a)[1] - 1 if a >= 2.2250738585072014e-308 else -1023
        if n + int(ex / 3) < 15:
            rounder = rounder + a * 3e-16        # SQLite: in long double; covered by the slack below
        ma, ea = V._ld(a)
        mr, er = V._ld(rounder)
        k = -min(ea, er, 0)
        total = (ma << (ea + k)) + (mr << (er + k))
        # SQLite's digits are those of a value within ~2**-60 (relative) of `total`,
        # and its rounder may differ from ours by an ulp: if both ends of that interval
        # give the same first 16 significant digits at n decimals, so does SQLite.
        slack = (total >> 57) + (4 << (er + k))
        scale = 10 ** n
        lo = _first_digits(((total - slack) * scale) >> k, 16)
        hi = _first_digits(((total + slack) * scale) >> k, 16)
        if lo == hi:
            digits = str(lo).rjust(n + 1, "0")
            text = ("-" if r < 0.0 else "") + digits[:-n] + "." + digits[-n:]
            return V._atof(text)[1]
    return V._atof(V._sqlite_printf_real(r, "f", n, altform2=False))[1]


def _first_digits(v: int, count: int) -> int:
    """v with every decimal digit after the first ``count`` set to 0."""
    extra = len(str(v)) - count
    if extra <= 0:
        return v
    cut = 10 ** extra
    return v // cut * cut


def f_typeof(x):
    return V.typeof(x)


def f_instr(haystack, needle):
    if haystack is None or needle is None:
        return None
    if _is_blob(haystack) and _is_blob(needle):
        return bytes(haystack).find(bytes(needle)) + 1
    return _to_text(haystack).find(_to_text(needle)) + 1


def f_hex(x):
    if x is None:
        return ""
    if _is_blob(x):
        return bytes(x).hex().upper()
    return _to_text(x).encode("utf-8", "surrogatepass").hex().upper()


def f_unhex(x, ignore=None):
    """unhex(X[, Y]) (SQLite 3.41): the blob of hex text X, skipping characters of Y
    between hex pairs; NULL if X is not valid hex."""
    if x is None:
        return None
    text = _to_text(x)
    if ignore is not None:
        skip = set(_to_text(ignore))
        out = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c in skip:
                i += 1
                continue
            pair = text[i:i + 2]
            if len(pair) < 2 or not all(ch in "0123456789abcdefABCDEF" for ch in pair):
                return None
            out.append(pair)
            i += 2
        text = "".join(out)
    if len(text) % 2 or not all(ch in "0123456789abcdefABCDEF" for ch in text):
        return None
    return bytes.fromhex(text)


def f_quote(x):
    return V.quote(x)


def f_char(*codes):
    out = []
    for c in codes:
        v = _int_value(c)
        if v < 0 or v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
            v = 0xFFFD          # SQLite maps out-of-range to U+FFFD; surrogates too here (valid text)
        out.append(chr(v))
    return "".join(out)


def f_unicode(x):
    if x is None:
        return None
    text = _to_text(x)
    if not text or text[0] == "\x00":
        return None
    return ord(text[0])


def f_min(*args):
    """Multi-argument min(): NULL if any argument is NULL; among equals the last wins (as SQLite)."""
    best = args[0]
    if best is None:
        return None
    for v in args[1:]:
        if v is None:
            return None
        if V.compare(best, v) >= 0:
            best = v
    return best


def f_max(*args):
    """Multi-argument max(): NULL if any argument is NULL; among equals the first wins."""
    best = args[0]
    if best is None:
        return None
    for v in args[1:]:
        if v is None:
            return None
        if V.compare(best, v) < 0:
            best = v
    return best


def f_sign(x):
    """sign(X): -1, 0 or 1 for a number or numeric text; NULL otherwise."""
    t = type(x)
    if t is int or t is bool or t is float:
        r = float(x)
    elif t is str or isinstance(x, (str, V._Date)):
        n = V._text_numeric(_to_text(x))
        if n is None:
            return None
        r = float(n)
    elif isinstance(x, (int, float)):
        r = float(x)
    else:
        return None
    return -1 if r < 0.0 else (1 if r > 0.0 else 0)


def f_concat(*args):
    """concat(X, ...) (SQLite 3.44): the texts of the non-NULL arguments."""
    return "".join([_to_text(a) for a in args if a is not None])


def f_concat_ws(sep, *args):
    """concat_ws(SEP, X, ...) (SQLite 3.44): non-NULL arguments joined by SEP; NULL if SEP is NULL."""
    if sep is None:
        return None
    return _to_text(sep).join([_to_text(a) for a in args if a is not None])


def f_like(pattern, value, escape=None):
    """like(X, Y[, Z]) is Y LIKE X [ESCAPE Z] (note the argument order, as SQLite)."""
    return V.like(value, pattern, escape)


def f_glob(pattern, value):
    """glob(X, Y) is Y GLOB X."""
    return V.glob(value, pattern)


def f_zeroblob(n):
    if n is None:
        return None
    return bytes(max(0, _int_value(n)))


def f_octet_length(x):
    if x is None:
        return None
    if _is_blob(x):
        return len(x)
    return len(_to_text(x).encode("utf-8", "surrogatepass"))


SCALAR_FUNCTIONS: dict[str, tuple[Callable, int, int | None]] = {
    "abs": (f_abs, 1, 1),
    "coalesce": (f_coalesce, 2, None),
    "ifnull": (f_ifnull, 2, 2),
    "nullif": (f_nullif, 2, 2),
    "iif": (f_iif, 3, 3),
    "length": (f_length, 1, 1),
    "octet_length": (f_octet_length, 1, 1),
    "lower": (f_lower, 1, 1),
    "upper": (f_upper, 1, 1),
    "substr": (f_substr, 2, 3),
    "substring": (f_substr, 2, 3),
    "replace": (f_replace, 3, 3),
    "trim": (f_trim, 1, 2),
    "ltrim": (f_ltrim, 1, 2),
    "rtrim": (f_rtrim, 1, 2),
    "round": (f_round, 1, 2),
    "typeof": (f_typeof, 1, 1),
    "instr": (f_instr, 2, 2),
    "hex": (f_hex, 1, 1),
    "unhex": (f_unhex, 1, 2),
    "quote": (f_quote, 1, 1),
    "char": (f_char, 0, None),
    "unicode": (f_unicode, 1, 1),
    "min": (f_min, 2, None),
    "max": (f_max, 2, None),
    "sign": (f_sign, 1, 1),
    "concat": (f_concat, 1, None),
    "concat_ws": (f_concat_ws, 2, None),
    "like": (f_like, 2, 3),
    "glob": (f_glob, 2, 2),
    "zeroblob": (f_zeroblob, 1, 1),
}


# --- aggregates ---------------------------------------------------------------------

_NO_ARG = object()


class _Count:
    """count(*) (step() with no argument) and count(x) (non-NULL values)."""

    __slots__ = ("n",)

    def __init__(self):
        self.n = 0

    def step(self, value=_NO_ARG, *_):
        if value is not None:
            self.n += 1

    def final(self):
        return self.n


class _Sum:
    """sum(x), total(x) and avg(x) share SQLite's SumCtx: an int64 sum while every input
    is an integer, and a double sum of everything."""

    __slots__ = ("cnt", "isum", "rsum", "approx", "overflow")

    def __init__(self):
        self.cnt = 0
        self.isum = 0
        self.rsum = 0.0
        self.approx = False
        self.overflow = False

    def step(self, value, *_):
        t = type(value)
        if t is int:
            self.cnt += 1
            self.rsum += value
            if not self.approx:
                s = self.isum + value
                if INT64_MIN <= s <= INT64_MAX:
                    self.isum = s
                else:
                    self.approx = self.overflow = True
        elif t is float:
            self.cnt += 1
            self.rsum += value
            self.approx = True
        elif value is not None:
            self._step_other(value)

    def _step_other(self, value):
        if isinstance(value, (bool, int)):
            return self.step(int(value))
        if isinstance(value, float):
            return self.step(float(value))
        if isinstance(value, (str, V._Date)):        # sqlite3_value_numeric_type
            n = V._text_numeric(_to_text(value))
            if n is not None:
                return self.step(n)
        self.cnt += 1
        self.rsum += _real_value(value)
        self.approx = True

    def final(self):
        if self.cnt == 0:
            return None
        if self.overflow:
            raise OperationalError("integer overflow")
        return self.rsum if self.approx else self.isum


class _Total(_Sum):
    __slots__ = ()

    def final(self):
        return self.rsum


class _Avg(_Sum):
    __slots__ = ()

    def final(self):
        return self.rsum / self.cnt if self.cnt else None


class _Min:
    """min(x): the smallest non-NULL value (sort_key order); the first among equals."""

    __slots__ = ("best", "key")

    def __init__(self):
        self.best = None
        self.key = None

    def step(self, value, *_):
        if value is None:
            return
        best = self.best
        if best is None:
            self.best = value
        elif type(value) is type(best):
            if value < best:
                self.best = value
        elif _sort_key(value) < _sort_key(best):
            self.best = value

    def final(self):
        return self.best


class _Max(_Min):
    """max(x): the largest non-NULL value; the first among equals."""

    __slots__ = ()

    def step(self, value, *_):
        if value is None:
            return
        best = self.best
        if best is None:
            self.best = value
        elif type(value) is type(best):
            if value > best:
                self.best = value
        elif _sort_key(value) > _sort_key(best):
            self.best = value


class _GroupConcat:
    """group_concat(x[, sep]) / string_agg(x, sep): texts of the non-NULL values joined by
    sep (default ','; the separator given with each row after the first is the one used
    before it, and a NULL separator adds nothing). NULL if there is no value."""

    __slots__ = ("parts",)

    def __init__(self):
        self.parts = None

    def step(self, value, sep=",", *_):
        if value is None:
            return
        parts = self.parts
        text = value if type(value) is str else _to_text(value)
        if parts is None:
            self.parts = [text]
            return
        if sep is not None:
            parts.append(sep if type(sep) is str else _to_text(sep))
        parts.append(text)

    def final(self):
        return None if self.parts is None else "".join(self.parts)


class _Distinct:
    """Wraps an accumulator: steps only on the first occurrence of each first-argument value."""

    __slots__ = ("inner", "seen")

    def __init__(self, inner):
        self.inner = inner
        self.seen = set()

    def step(self, value=_NO_ARG, *rest):
        if value is _NO_ARG:
            return self.inner.step()
        if value is not None:
            key = _sort_key(value)
            if key in self.seen:
                return
            self.seen.add(key)
        self.inner.step(value, *rest)

    def final(self):
        return self.inner.final()


def _factory(cls) -> Callable[[bool], Any]:
    def make(distinct: bool = False):
        return _Distinct(cls()) if distinct else cls()
    make.__name__ = f"make_{cls.__name__.strip('_').lower()}"
    return make


AGGREGATES: dict[str, Callable[[bool], Any]] = {
    "count": _factory(_Count),
    "sum": _factory(_Sum),
    "total": _factory(_Total),
    "avg": _factory(_Avg),
    "min": _factory(_Min),
    "max": _factory(_Max),
    "group_concat": _factory(_GroupConcat),
    "string_agg": _factory(_GroupConcat),
}
AGGREGATE_NAMES = frozenset(AGGREGATES)
