"""Runtime SQL values: column types, conversions, order, operators and pattern matching.

Values are plain Python objects::

    None               NULL
    bool               BOOLEAN     behaves as the INTEGER 1/0 in arithmetic and comparison
    int                INTEGER     -2**63 .. 2**63-1
    float              REAL        never NaN once stored (arithmetic turns NaN into NULL, as SQLite)
    str                TEXT        valid Unicode (no lone surrogates)
    bytes              BLOB
    datetime.date      DATE        behaves as its text 'YYYY-MM-DD'
    datetime.datetime  TIMESTAMP   naive = UTC; behaves as 'YYYY-MM-DD HH:MM:SS[.ffffff]'

Semantics follow SQLite 3.40 (Python's ``sqlite3`` module is the test oracle):
the sort order is NULL < numbers < text < blobs; arithmetic converts text
through SQLite's numeric prefix rules; ``to_text`` of a REAL is SQLite's
``%!.15g``. No affinity is applied here: ``1 = '1'`` is false. Converting a
literal to a column's type is the planner's job (``try_coerce``).

SQLite formats and parses REALs with its own printf/atof, which compute in x87
80-bit ``long double`` arithmetic; the result is not always the correctly
rounded one (``quote(1.0/3)`` is ``3.33333333333333314829e-01``, the exact value
ends in ...14830). The ``_ld_*`` helpers emulate that arithmetic exactly with
integers. Formatting takes a fast path through Python's correctly rounded
formatting whenever the value is provably far from a rounding boundary, and
falls back to the emulation otherwise (about 1% of random doubles).
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
import struct
from typing import Any

from tabledb.errors import DataError, ProgrammingError

__all__ = [
    "TYPE_NAMES", "INT64_MIN", "INT64_MAX",
    "column_type", "coerce_value", "try_coerce", "typeof", "to_text", "to_number", "truth",
    "sort_key", "compare", "op_eq", "op_ne", "op_lt", "op_le", "op_gt", "op_ge", "op_is", "op_is_not",
    "op_and", "op_or", "op_not", "op_add", "op_sub", "op_mul", "op_div", "op_mod", "op_neg",
    "op_bitand", "op_bitor", "op_shl", "op_shr", "op_bitnot", "op_concat", "cast", "like", "glob",
    "type_label", "quote",
]

TYPE_NAMES = ("INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "DATE", "TIMESTAMP")
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_U64 = 1 << 64
_INF = math.inf

_Date = _dt.date
_DateTime = _dt.datetime
_UTC = _dt.timezone.utc

# --- declared type names ---------------------------------------------------------

_DECLARED = {
    "INTEGER": "INTEGER", "INT": "INTEGER", "BIGINT": "INTEGER", "SMALLINT": "INTEGER",
    "TINYINT": "INTEGER", "MEDIUMINT": "INTEGER", "INT2": "INTEGER", "INT4": "INTEGER", "INT8": "INTEGER",
    "UNSIGNED BIG INT": "INTEGER",
    "REAL": "REAL", "FLOAT": "REAL", "DOUBLE": "REAL", "DOUBLE PRECISION": "REAL", "DECIMAL": "REAL",
    "NUMERIC": "REAL", "FLOAT4": "REAL", "FLOAT8": "REAL",
    "TEXT": "TEXT", "VARCHAR": "TEXT", "CHAR": "TEXT", "CHARACTER": "TEXT", "NVARCHAR": "TEXT",
    "NCHAR": "TEXT", "CLOB": "TEXT", "STRING": "TEXT", "CHARACTER VARYING": "TEXT",
    "VARYING CHARACTER": "TEXT", "NATIVE CHARACTER": "TEXT",
    "BLOB": "BLOB", "BYTES": "BLOB", "BYTEA": "BLOB", "BINARY": "BLOB", "VARBINARY": "BLOB",
    "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP", "DATETIME": "TIMESTAMP",
}
_TYPE_PARAMS = re.compile(r"\s*\([^)]*\)\s*$")


def _normalize_declared(declared: str) -> str:
    return " ".join(_TYPE_PARAMS.sub("", declared).split()).upper()


@functools.lru_cache(maxsize=256)
def column_type(declared: str) -> str:
    """The canonical type (one of TYPE_NAMES) of a declared SQL type name.

    Case-insensitive; parameters are ignored (``VARCHAR(20)`` -> TEXT,
    ``DECIMAL(10, 2)`` -> REAL). Unknown names raise ProgrammingError.
    """
    if not isinstance(declared, str):
        raise ProgrammingError(f"unknown column type {declared!r}")
    canonical = _DECLARED.get(_normalize_declared(declared))
    if canonical is None:
        raise ProgrammingError(f"unknown column type '{declared}'")
    return canonical


# --- x87 long double emulation ----------------------------------------------------
#
# A long double is a pair (m, e) meaning m * 2**e with 0 <= m < 2**64; results
# are rounded to 64 significant bits, ties to even, as the x87 FPU does. Only
# non-negative values occur (the callers strip the sign first).

_LD_ZERO = (0, 0)


def _ld_round(m: int, e: int, sticky: bool = False) -> tuple[int, int]:
    n = m.bit_length()
    if n <= 64:
        return m, e
    shift = n - 64
    q = m >> shift
    rest = m & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rest > half or (rest == half and (sticky or q & 1)):
        q += 1
        if q >> 64:
            q >>= 1
            shift += 1
    return q, e + shift


def _ld(x: float) -> tuple[int, int]:
    """The exact long double of a finite non-negative double."""
    if x == 0.0:
        return _LD_ZERO
    mant, exp = math.frexp(x)
    return int(mant * 9007199254740992.0), exp - 53


def _ld_add(a, b):
    (ma, ea), (mb, eb) = a, b
    if not ma:
        return b
    if not mb:
        return a
    if ea >= eb:
        return _ld_round((ma << (ea - eb)) + mb, eb)
    return _ld_round(ma + (mb << (eb - ea)), ea)


def _ld_sub(a, b):
    """a - b for a >= b."""
    (ma, ea), (mb, eb) = a, b
    if not mb:
        return a
    if ea >= eb:
        return _ld_round((ma << (ea - eb)) - mb, eb)
    return _ld_round(ma - (mb << (eb - ea)), ea)


def _ld_mul(a, b):
    return _ld_round(a[0] * b[0], a[1] + b[1])


def _ld_div(a, b):
    (ma, ea), (mb, eb) = a, b
    if not ma:
        return _LD_ZERO
    k = max(0, mb.bit_length() - ma.bit_length() + 66)
    q, r = divmod(ma << k, mb)
    return _ld_round(q, ea - k - eb, r != 0)


def _ld_cmp(a, b) -> int:
    (ma, ea), (mb, eb) = a, b
    if ea >= eb:
        x, y = ma << (ea - eb), mb
    else:
        x, y = ma, mb << (eb - ea)
    return (x > y) - (x < y)


def _ld_trunc(a) -> int:
    m, e = a
    return m << e if e >= 0 else m >> -e


def _ld_to_double(a) -> float:
    m, e = a
    try:
        return float(m << e) if e >= 0 else m / (1 << -e)
    except OverflowError:
        return _INF


_LD_ONE = _ld(1.0)
_LD_TEN = _ld(10.0)
_LD_1E8 = _ld(1e8)
_LD_1E10 = _ld(1e10)
_LD_1E100 = _ld(1e100)
_LD_1EM8 = _ld(1e-8)
_LD_TENTH = _ld(0.1)
_LD_3EM16 = _ld(3e-16)
_AR_ROUND = (5.0e-01, 5.0e-02, 5.0e-03, 5.0e-04, 5.0e-05, 5.0e-06, 5.0e-07, 5.0e-08, 5.0e-09, 5.0e-10)
_DOUBLE_BITS = struct.Struct("<d")
_QWORD = struct.Struct("<Q")


def _sqlite_printf_real(value: float, conv: str, precision: int, altform2: bool = True) -> str:
    """SQLite 3.40's printf of one double: ``%!.<precision>{f,e,g}`` (``altform2`` = the ``!`` flag)."""
    if value != value:
        return "NaN"
    prefix = ""
    if value < 0.0:
        value = -value
        prefix = "-"
    if value == _INF:
        return prefix + "Inf"
    if conv == "g" and precision > 0:
        precision -= 1
    idx = precision & 0xFFF
    rounder = _AR_ROUND[idx % 10]
    while idx >= 10:
        rounder *= 1.0e-10
        idx -= 10
    rv = _ld(value)
    if conv == "f":
        ex = ((_QWORD.unpack(_DOUBLE_BITS.pack(value))[0] >> 52) & 0x7FF) - 1023
        if precision + int(ex / 3) < 15:          # C division truncates toward zero
            rounder = _ld_to_double(_ld_add(_ld(rounder), _ld_mul(rv, _LD_3EM16)))
        rv = _ld_add(rv, _ld(rounder))
    exp = 0
    if rv[0]:
        scale = _LD_ONE
        while _ld_cmp(rv, _ld_mul(_LD_1E100, scale)) >= 0 and exp <= 350:
            scale = _ld_mul(scale, _LD_1E100)
            exp += 100
        while _ld_cmp(rv, _ld_mul(_LD_1E10, scale)) >= 0 and exp <= 350:
            scale = _ld_mul(scale, _LD_1E10)
            exp += 10
        while _ld_cmp(rv, _ld_mul(_LD_TEN, scale)) >= 0 and exp <= 350:
            scale = _ld_mul(scale, _LD_TEN)
            exp += 1
        rv = _ld_div(rv, scale)
        while _ld_cmp(rv, _LD_1EM8) < 0:
            rv = _ld_mul(rv, _LD_1E8)
            exp -= 8
        while _ld_cmp(rv, _LD_ONE) < 0:
            rv = _ld_mul(rv, _LD_TEN)
            exp -= 1
        if exp > 350:
            return prefix + "Inf"
    if conv != "f":
        rv = _ld_add(rv, _ld(rounder))
        if _ld_cmp(rv, _LD_TEN) >= 0:
            rv = _ld_mul(rv, _LD_TENTH)
            exp += 1
    if conv == "g":
        strip_zeros = True
        if exp < -4 or exp > precision:
            conv = "e"
        else:
            precision -= exp
            conv = "f"
    else:
        strip_zeros = altform2
    e2 = 0 if conv == "e" else exp
    significant = 26 if altform2 else 16
    show_point = precision > 0 or altform2
    out = [prefix]

    def digit() -> str:
        nonlocal rv, significant
        if significant <= 0:
            return "0"
        significant -= 1
        d = _ld_trunc(rv)
        rv = _ld_mul(_ld_sub(rv, (d, 0)), _LD_TEN)
        return chr(48 + d)

    if e2 < 0:
        out.append("0")
    else:
        for _ in range(e2 + 1):
            out.append(digit())
        e2 = -1
    if show_point:
        out.append(".")
    e2 += 1
    while e2 < 0:
        out.append("0")
        precision -= 1
        e2 += 1
    while precision > 0:
        out.append(digit())
        precision -= 1
    text = "".join(out)
    if strip_zeros and show_point:
        text = text.rstrip("0")
        if text.endswith("."):
            text = text + "0" if altform2 else text[:-1]
    if conv == "e":
        text += ("e-" if exp < 0 else "e+") + (f"{abs(exp):02d}")
    return text


def _real_to_text(x: float) -> str:
    """SQLite's text of a REAL: printf ``%!.15g`` (1.0 -> '1.0', 1e20 -> '1.0e+20', inf -> 'Inf')."""
    if x == 0.0:
        return "0.0"
    ax = -x if x < 0.0 else x
    if 1e-7 <= ax < 1e100:
        # SQLite rounds half up at 15 digits from a value computed within ~1e-17
        # (relative) of the exact one: if the exact digits 16..25 are far from
        # the half-way point, Python's correctly rounded %.15g gives the same digits.
        tail = int(("%.24e" % ax)[16:26])
        if not 4_950_000_000 <= tail <= 5_050_000_000:
            text = "%.15g" % x
            if "e" in text:
                mant, _, ex = text.partition("e")
                if "." not in mant:
                    return mant + ".0e" + ex
                return text
            if "." not in text:
                return text + ".0"
            return text
    return _sqlite_printf_real(x, "g", 15)


# --- SQLite's numeric parsing (sqlite3AtoF, sqlite3Atoi64) --------------------------

_SPACES = " \t\n\x0b\x0c\r"
_ATOF = re.compile(r"[ \t\n\x0b\x0c\r]*([+-]?)([0-9]*)(?:(\.)([0-9]*))?(?:([eE])([+-]?)([0-9]*))?[ \t\n\x0b\x0c\r]*")
_ATOI = re.compile(r"[ \t\n\x0b\x0c\r]*([+-]?)(0*)([0-9]*)")
_PURE_INT = re.compile(r"[ \t\n\x0b\x0c\r]*[+-]?[0-9]{1,18}[ \t\n\x0b\x0c\r]*")
_SIG_LIMIT = (INT64_MAX - 9) // 10        # significand digits stop once it reaches this
_POW10_CACHE: dict[int, tuple[int, int]] = {}


def _pow10_ld(e: int) -> tuple[int, int]:
    """sqlite3Pow10(e): 10**e by repeated squaring in long double (inexact above 10**27)."""
    r = _POW10_CACHE.get(e)
    if r is None:
        x, r, n = _LD_TEN, _LD_ONE, e
        while True:
            if n & 1:
                r = _ld_mul(r, x)
            n >>= 1
            if n == 0:
                break
            x = _ld_mul(x, x)
        _POW10_CACHE[e] = r
    return r


def _atof_value(negative: bool, s: int, e: int) -> float:
    """The double sqlite3AtoF computes from significand ``s`` and decimal exponent ``e``."""
    if s == 0:
        return -0.0 if negative else 0.0
    esign = 1
    if e < 0:
        esign, e = -1, -e
    if esign > 0:
        while e > 0 and s < INT64_MAX // 10:
            s *= 10
            e -= 1
    else:
        while e > 0 and s % 10 == 0:
            s //= 10
            e -= 1
    if e == 0:
        result = float(s)
    elif e > 307:
        if e < 342:
            scale = _pow10_ld(e - 308)
            if esign < 0:
                result = _ld_to_double(_ld_div((s, 0), scale)) / 1.0e308
            else:
                result = _ld_to_double(_ld_mul((s, 0), scale)) * 1.0e308
        else:
            result = 0.0 if esign < 0 else _INF
    else:
        scale = _pow10_ld(e)
        result = _ld_to_double(_ld_div((s, 0), scale) if esign < 0 else _ld_mul((s, 0), scale))
    return -result if negative else result


def _atof(text: str) -> tuple[int, float]:
    """sqlite3AtoF: (rc, value). rc 1 = pure integer, >= 2 = pure real, 0 = not a number,
    -1 = a real prefix followed by other text. The value is that of the longest numeric prefix."""
    m = _ATOF.match(text)
    sign, idigits, dot, fdigits, echar, esign, edigits = m.groups()
    fdigits = fdigits or ""
    if len(idigits) + len(fdigits) <= 18:
        s = int(idigits + fdigits) if (idigits or fdigits) else 0
        d = -len(fdigits)
    else:
        s = d = 0
        for i, ch in enumerate(idigits):
            s = s * 10 + ord(ch) - 48
            if s >= _SIG_LIMIT:
                d = len(idigits) - i - 1
                break
        for ch in fdigits:
            if s >= _SIG_LIMIT:
                break
            s = s * 10 + ord(ch) - 48
            d -= 1
    e = 0
    if edigits:
        if len(edigits) <= 5:
            e = int(edigits)
        else:
            for ch in edigits:
                e = e * 10 + ord(ch) - 48 if e < 10000 else 10000
        if esign == "-":
            e = -e
    value = _atof_value(sign == "-", s, e + d)
    ndigits = len(idigits) + len(fdigits)
    etype = 1 + (dot is not None) + (echar is not None)
    evalid = echar is None or bool(edigits)
    if m.end() == len(text) and ndigits and evalid:
        return etype, value
    if etype >= 2 and (etype == 3 or evalid) and ndigits:
        return -1, value
    return 0, value


def _atoi64(text: str) -> tuple[int, int]:
    """sqlite3Atoi64: (rc, value). rc 0 fits, 1 extra text, 2 too large, 3 exactly 2**63,
    -1 no digits. The value is clamped to the int64 range."""
    m = _ATOI.match(text)
    sign, zeros, digits = m.groups()
    negative = sign == "-"
    u = int(digits) if digits else 0
    if u > INT64_MAX:
        value = INT64_MIN if negative else INT64_MAX
    else:
        value = -u if negative else u
    end = m.end()
    if not digits and not zeros:
        rc = -1
    elif end < len(text) and text[end:].strip(_SPACES):
        rc = 1
    else:
        rc = 0
    n = len(digits)
    if n < 19:
        return rc, value
    c = 1 if n > 19 else (u > 9223372036854775808) - (u < 9223372036854775808)
    if c < 0:
        return rc, value
    value = INT64_MIN if negative else INT64_MAX
    if c > 0:
        return 2, value
    return (rc if negative else 3), value


def _double_to_int64(r: float) -> int:
    """SQLite's doubleToInt64: truncation, clamped to the int64 range."""
    if r <= -9.223372036854775808e18:
        return INT64_MIN
    if r >= 9.223372036854775808e18:
        return INT64_MAX
    if r != r:
        return INT64_MIN
    return int(r)


def _real_to_i64(r: float) -> int:
    """sqlite3RealToI64."""
    if r < -9223372036854774784.0:
        return INT64_MIN
    if r > 9223372036854774784.0:
        return INT64_MAX
    return int(r)


def _real_same_as_int(r: float, i: int) -> bool:
    """sqlite3RealSameAsInt."""
    return r == 0.0 or (-2251799813685248 <= i < 2251799813685248 and float(i) == r)


def _real_as_integer(r: float):
    """sqlite3VdbeIntegerAffinity: the int equal to ``r``, or None."""
    if r != r or r in (_INF, -_INF):
        return None
    i = _double_to_int64(r)
    if r == i and INT64_MIN < i < INT64_MAX:
        return i
    return None


def _text_numeric(text: str, try_for_int: bool = False):
    """SQLite's applyNumericAffinity on text: an int/float if the whole text (spaces
    aside) is a number, else None. ``try_for_int`` also turns an integral REAL into an int."""
    rc, r = _atof(text)
    if rc <= 0:
        return None
    if rc == 1:
        i = _real_to_i64(r)
        if _real_same_as_int(r, i):
            return i
        arc, i = _atoi64(text)
        if arc == 0:
            return i
    if try_for_int:
        i = _real_as_integer(r)
        if i is not None:
            return i
    return r


def _text_to_number(text: str):
    """SQLite's numeric value of text in arithmetic (computeNumericType)."""
    if _PURE_INT.fullmatch(text):
        return int(text)
    rc, r = _atof(text)
    if rc <= 0:
        if rc == 0:
            arc, i = _atoi64(text)
            if arc <= 1:
                return i
        return r
    if rc == 1:
        arc, i = _atoi64(text)
        if arc == 0:
            return i
    return r


def _as_text_for_number(value: Any) -> str:
    """The characters SQLite scans when it reads a non-numeric value as a number."""
    t = type(value)
    if t is str:
        return value
    if t is bytes or isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")     # 1 byte -> 1 char; only ASCII matters
    return to_text(value)


def _int_value(value: Any) -> int:
    """sqlite3VdbeIntValue: the int64 SQLite reads from any value (text: integer prefix)."""
    t = type(value)
    if t is int:
        return value
    if t is float:
        return _double_to_int64(value)
    if value is None:
        return 0
    if t is bool:
        return int(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _double_to_int64(float(value))
    return _atoi64(_as_text_for_number(value))[1]


def _real_value(value: Any) -> float:
    """sqlite3VdbeRealValue: the double SQLite reads from any value (text: numeric prefix)."""
    t = type(value)
    if t is float:
        return value
    if t is int or t is bool:
        return float(value)
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return _atof(_as_text_for_number(value))[1]


# --- text -------------------------------------------------------------------------


def _datetime_text(value: _DateTime) -> str:
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return value.isoformat(" ")


def to_text(value: Any) -> str | None:
    """SQLite's text of a value (CAST AS TEXT): None -> None, 1.0 -> '1.0', True -> '1',
    bytes -> UTF-8 decoded (bad bytes replaced), dates -> ISO text."""
    t = type(value)
    if t is str:
        return value
    if value is None:
        return None
    if t is int:
        return str(value)
    if t is float:
        return _real_to_text(value)
    if t is bool:
        return "1" if value else "0"
    if t is bytes:
        return value.decode("utf-8", "replace")
    if t is _DateTime:
        return _datetime_text(value)
    if t is _Date:
        return value.isoformat()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _real_to_text(float(value))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, _DateTime):
        return _datetime_text(value)
    if isinstance(value, _Date):
        return value.isoformat()
    raise DataError(f"not an SQL value: {type(value).__name__}")


def to_number(value: Any):
    """SQLite's numeric value for arithmetic: None -> None; int/float as is; bool -> int;
    text/blob -> the longest numeric prefix ('12abc' -> 12, '1.5x' -> 1.5, '1e3' -> 1000.0,
    'abc' -> 0); dates through their text ('2024-01-01' -> 2024)."""
    t = type(value)
    if t is int or t is float:
        return value
    if value is None:
        return None
    if t is str:
        return _text_to_number(value)
    if t is bool:
        return int(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return _text_to_number(_as_text_for_number(value))


def truth(value: Any) -> bool | None:
    """The truth of a value in a condition: None -> None, else to_number(value) != 0."""
    t = type(value)
    if t is bool:
        return value
    if t is int or t is float:
        return value != 0
    if value is None:
        return None
    return _real_value(value) != 0.0


def typeof(value: Any) -> str:
    """SQLite's typeof(): 'null', 'integer' (int, bool), 'real', 'text' (str, dates), 'blob'."""
    t = type(value)
    if t is int or t is bool:
        return "integer"
    if t is str:
        return "text"
    if t is float:
        return "real"
    if value is None:
        return "null"
    if t is bytes:
        return "blob"
    if isinstance(value, (_Date, str)):
        return "text"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "real"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "blob"
    raise DataError(f"not an SQL value: {type(value).__name__}")


def type_label(value: Any) -> str:
    """The SQL type name of a runtime value, for messages: NULL, INTEGER, REAL, TEXT, BLOB,
    BOOLEAN, DATE, TIMESTAMP (the Python type name for anything else)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, str):
        return "TEXT"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "BLOB"
    if isinstance(value, _DateTime):
        return "TIMESTAMP"
    if isinstance(value, _Date):
        return "DATE"
    return type(value).__name__


def quote(value: Any) -> str:
    """SQLite's quote(): the value as an SQL literal (NULL, 12, 1.5, 'it''s', X'0A')."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        text = _real_to_text(value)
        if _atof(text)[1] != value:
            text = _sqlite_printf_real(value, "e", 20)
        return text
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "X'" + bytes(value).hex().upper() + "'"
    text = to_text(value)
    nul = text.find("\x00")
    if nul >= 0:
        text = text[:nul]
    return "'" + text.replace("'", "''") + "'"


def _display(value: Any) -> str:
    """A short literal for error messages."""
    if isinstance(value, str) and len(value) > 40:
        text = quote(value[:40])[:-1] + "...'"
    elif isinstance(value, (bytes, bytearray, memoryview)) and len(value) > 20:
        text = quote(bytes(value[:20]))[:-1] + "...'"
    elif isinstance(value, (type(None), bool, int, float, str, bytes, bytearray, memoryview, _Date)):
        text = quote(value)
    else:
        text = repr(value)[:60]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --- order --------------------------------------------------------------------------

_NULL_KEY = (0, 0)


def sort_key(value: Any) -> tuple:
    """A key ordering values as SQLite's ORDER BY (BINARY collation): NULL < numbers
    (compared numerically, exactly) < text (dates as their ISO text) < blobs."""
    t = type(value)
    if t is int or t is float or t is bool:
        return (1, value)
    if t is str:
        return (2, value)
    if value is None:
        return _NULL_KEY
    if t is bytes:
        return (3, value)
    if t is _DateTime:
        return (2, _datetime_text(value))
    if t is _Date:
        return (2, value.isoformat())
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (3, bytes(value))
    if isinstance(value, _Date):
        return (2, to_text(value))
    raise DataError(f"not an SQL value: {type(value).__name__}")


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 as a sorts before, with or after b (non-NULL values, sort_key order)."""
    if type(a) is not type(b):
        a, b = sort_key(a), sort_key(b)
    return -1 if a < b else (1 if a > b else 0)


def op_eq(a, b):
    """a = b: 1, 0, or None if either is NULL. No affinity: 1 = '1' is 0."""
    if a is None or b is None:
        return None
    if type(a) is type(b):
        return 1 if a == b else 0
    return 1 if sort_key(a) == sort_key(b) else 0


def op_ne(a, b):
    if a is None or b is None:
        return None
    if type(a) is type(b):
        return 1 if a != b else 0
    return 1 if sort_key(a) != sort_key(b) else 0


def op_lt(a, b):
    if a is None or b is None:
        return None
    if type(a) is type(b):
        return 1 if a < b else 0
    return 1 if sort_key(a) < sort_key(b) else 0


def op_le(a, b):
    if a is None or b is None:
        return None
    if type(a) is type(b):
        return 1 if a <= b else 0
    return 1 if sort_key(a) <= sort_key(b) else 0


def op_gt(a, b):
    if a is None or b is None:
        return None
    if type(a) is type(b):
        return 1 if a > b else 0
    return 1 if sort_key(a) > sort_key(b) else 0


def op_ge(a, b):
    if a is None or b is None:
        return None
    if type(a) is type(b):
        return 1 if a >= b else 0
    return 1 if sort_key(a) >= sort_key(b) else 0


def op_is(a, b) -> int:
    """a IS b: NULL-safe equality, 1 or 0."""
    if a is None or b is None:
        return 1 if a is b else 0
    return op_eq(a, b)


def op_is_not(a, b) -> int:
    """a IS NOT b: 1 or 0."""
    return 1 - op_is(a, b)


# --- logic --------------------------------------------------------------------------


def op_and(a, b):
    """a AND b with three-valued logic: 0 if either is false, else None if either is NULL, else 1."""
    x = truth(a)
    y = truth(b)
    if x is False or y is False:
        return 0
    if x is None or y is None:
        return None
    return 1


def op_or(a, b):
    """a OR b: 1 if either is true, else None if either is NULL, else 0."""
    x = truth(a)
    y = truth(b)
    if x or y:
        return 1
    if x is None or y is None:
        return None
    return 0


def op_not(a):
    """NOT a: None for NULL, else 1/0."""
    x = truth(a)
    if x is None:
        return None
    return 0 if x else 1


# --- arithmetic ----------------------------------------------------------------------
#
# As SQLite: NULL in -> NULL out; operands go through to_number; int op int stays
# int unless it overflows int64, which redoes the operation in floating point;
# a NaN result is NULL; division or remainder by zero is NULL.


def _both_ints(a, b):
    x = to_number(a)
    y = to_number(b)
    if type(x) is int and type(y) is int:
        return x, y
    return None, None


def op_add(a, b):
    if type(a) is int and type(b) is int:
        r = a + b
        if INT64_MIN <= r <= INT64_MAX:
            return r
        return float(a) + float(b)
    if (type(a) is float or type(a) is int) and (type(b) is float or type(b) is int):
        r = a + b
        return None if r != r else r
    if a is None or b is None:
        return None
    x, y = _both_ints(a, b)
    if x is not None:
        r = x + y
        if INT64_MIN <= r <= INT64_MAX:
            return r
    r = _real_value(a) + _real_value(b)
    return None if r != r else r


def op_sub(a, b):
    if type(a) is int and type(b) is int:
        r = a - b
        if INT64_MIN <= r <= INT64_MAX:
            return r
        return float(a) - float(b)
    if (type(a) is float or type(a) is int) and (type(b) is float or type(b) is int):
        r = a - b
        return None if r != r else r
    if a is None or b is None:
        return None
    x, y = _both_ints(a, b)
    if x is not None:
        r = x - y
        if INT64_MIN <= r <= INT64_MAX:
            return r
    r = _real_value(a) - _real_value(b)
    return None if r != r else r


def op_mul(a, b):
    if type(a) is int and type(b) is int:
        r = a * b
        if INT64_MIN <= r <= INT64_MAX:
            return r
        return float(a) * float(b)
    if (type(a) is float or type(a) is int) and (type(b) is float or type(b) is int):
        r = a * b
        return None if r != r else r
    if a is None or b is None:
        return None
    x, y = _both_ints(a, b)
    if x is not None:
        r = x * y
        if INT64_MIN <= r <= INT64_MAX:
            return r
    r = _real_value(a) * _real_value(b)
    return None if r != r else r


def op_div(a, b):
    """a / b: integer division truncating toward zero for two ints (-7/2 = -3); NULL on zero."""
    if a is None or b is None:
        return None
    x, y = _both_ints(a, b)
    if x is not None:
        if y == 0:
            return None
        if y != -1 or x != INT64_MIN:
            q = abs(x) // abs(y)
            return -q if (x < 0) != (y < 0) else q
    divisor = _real_value(b)
    if divisor == 0.0:
        return None
    r = _real_value(a) / divisor
    return None if r != r else r


def op_mod(a, b):
    """a % b: the remainder takes the sign of the dividend (-7 % 3 = -1). With a REAL
    operand both sides are first truncated to int64 and the result is REAL (7.5 % 2 = 1.0)."""
    if a is None or b is None:
        return None
    x, y = _both_ints(a, b)
    if x is None:
        x, y = _int_value(a), _int_value(b)
        floating = True
    else:
        floating = False
    if y == 0:
        return None
    if y == -1:
        y = 1
    r = abs(x) % abs(y)
    if x < 0:
        r = -r
    return float(r) if floating else r


def op_neg(a):
    """-a, computed as SQLite does: 0 - a."""
    if type(a) is int and a != INT64_MIN:
        return -a
    if type(a) is float:
        return 0.0 - a                  # as 0 - a: -(0.0) is 0.0
    return op_sub(0, a)


def _wrap64(v: int) -> int:
    v &= _U64 - 1
    return v - _U64 if v > INT64_MAX else v


def op_bitand(a, b):
    if a is None or b is None:
        return None
    return _int_value(a) & _int_value(b)


def op_bitor(a, b):
    if a is None or b is None:
        return None
    return _int_value(a) | _int_value(b)


def _shift(x: int, n: int, left: bool) -> int:
    if n == 0:
        return x
    if n < 0:
        left = not left
        n = -n if n > -64 else 64
    if n >= 64:
        return 0 if (x >= 0 or left) else -1
    return _wrap64(x << n) if left else x >> n


def op_shl(a, b):
    """a << b on int64 (bits shifted out are lost; a negative b shifts right)."""
    if a is None or b is None:
        return None
    return _shift(_int_value(a), _int_value(b), True)


def op_shr(a, b):
    """a >> b, arithmetic (sign-extending)."""
    if a is None or b is None:
        return None
    return _shift(_int_value(a), _int_value(b), False)


def op_bitnot(a):
    if a is None:
        return None
    return ~_int_value(a)


def op_concat(a, b):
    """a || b: NULL if either is NULL, else the concatenation of their texts."""
    if a is None or b is None:
        return None
    ta = type(a)
    tb = type(b)
    if ta is str and tb is str:
        return a + b
    if ta is bytes or tb is bytes or isinstance(a, (bytearray, memoryview)) or isinstance(b, (bytearray, memoryview)):
        # SQLite joins the bytes, then reads them as UTF-8
        return (_utf8(a) + _utf8(b)).decode("utf-8", "replace")
    return (a if ta is str else to_text(a)) + (b if tb is str else to_text(b))


def _utf8(v) -> bytes:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return to_text(v).encode("utf-8", "surrogatepass")


# --- dates and times ------------------------------------------------------------------

_DATE_TEXT = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_TIMESTAMP_TEXT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2}))?)?", re.ASCII | re.IGNORECASE)


def _parse_date(text: str):
    m = _DATE_TEXT.fullmatch(text)
    if m is None:
        return None
    try:
        return _Date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _parse_timestamp(text: str):
    """'YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]][Z|+HH:MM]]' -> naive UTC datetime, or None."""
    m = _TIMESTAMP_TEXT.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = m.groups()
    try:
        value = _DateTime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                          int(second or 0), int((fraction or "").ljust(6, "0")))
        if sign:
            offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
            if offset >= _dt.timedelta(hours=24):
                return None
            value = value - offset if sign == "+" else value + offset
    except (ValueError, OverflowError):
        return None
    return value


def _naive_utc(value: _DateTime) -> _DateTime:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(_UTC).replace(tzinfo=None)
    return value.replace(tzinfo=None) if value.tzinfo is not None else value


# --- storage conversion (coerce_value / try_coerce) -----------------------------------

_FAIL = object()
_TRUE_TEXT = frozenset(("true", "1"))
_FALSE_TEXT = frozenset(("false", "0"))


def _valid_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _to_integer(value):
    t = type(value)
    if t is int:
        return value if INT64_MIN <= value <= INT64_MAX else _FAIL
    if t is bool:
        return int(value)
    if t is float:
        i = _real_as_integer(value)
        return _FAIL if i is None else i
    if t is str:
        n = _text_numeric(value, True)
        return n if type(n) is int else _FAIL
    if isinstance(value, int):             # subclasses (IntEnum, ...)
        return _to_integer(int(value))
    if isinstance(value, float):
        return _to_integer(float(value))
    if isinstance(value, str):
        return _to_integer(str(value))
    return _FAIL


def _int_to_real(value: int):
    if not INT64_MIN <= value <= INT64_MAX:
        return _FAIL
    f = float(value)
    return f if f == value else _FAIL


def _to_real(value):
    t = type(value)
    if t is float:
        return (value if value else 0.0) if value == value else _FAIL
    if t is int:
        return _int_to_real(value)
    if t is bool:
        return float(value)
    if t is str:
        n = _text_numeric(value, True)
        if n is None:
            return _FAIL
        return _int_to_real(n) if type(n) is int else (n if n else 0.0)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        return _int_to_real(int(value))
    if isinstance(value, float):
        return _to_real(float(value))
    if isinstance(value, str):
        return _to_real(str(value))
    return _FAIL


def _to_text(value):
    t = type(value)
    if t is str:
        return value if _valid_text(value) else _FAIL
    if t is int:
        return str(value) if INT64_MIN <= value <= INT64_MAX else _FAIL
    if t is float:
        return _real_to_text(value) if value == value else _FAIL
    if t is bool or t is _Date or t is _DateTime:
        return to_text(value)
    if isinstance(value, str):
        return _to_text(str(value))
    if isinstance(value, (bool, _Date)):
        return to_text(value)
    if isinstance(value, int):
        return _to_text(int(value))
    if isinstance(value, float):
        return _to_text(float(value))
    return _FAIL


def _to_blob(value):
    t = type(value)
    if t is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return _FAIL


def _to_boolean(value):
    t = type(value)
    if t is bool:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)):
        if value == 1:
            return True
        if value == 0:
            return False
        return _FAIL
    if isinstance(value, str):
        word = value.strip(_SPACES).lower()
        if word in _TRUE_TEXT:
            return True
        if word in _FALSE_TEXT:
            return False
    return _FAIL


def _to_date(value):
    t = type(value)
    if t is _Date:
        return value
    if isinstance(value, _DateTime):
        value = _naive_utc(value)
        if value.time() == _dt.time(0):
            return value.date()
        return _FAIL
    if isinstance(value, _Date):
        return _Date(value.year, value.month, value.day)
    if isinstance(value, str):
        d = _parse_date(value)
        return _FAIL if d is None else d
    return _FAIL


def _to_timestamp(value):
    t = type(value)
    if t is _DateTime:
        return _naive_utc(value)
    if isinstance(value, _DateTime):
        value = _naive_utc(value)
        return _DateTime(value.year, value.month, value.day, value.hour, value.minute,
                         value.second, value.microsecond)
    if isinstance(value, _Date):
        return _DateTime(value.year, value.month, value.day)
    if isinstance(value, str):
        ts = _parse_timestamp(value)
        return _FAIL if ts is None else ts
    return _FAIL


_COERCERS = {
    "INTEGER": _to_integer, "REAL": _to_real, "TEXT": _to_text, "BLOB": _to_blob,
    "BOOLEAN": _to_boolean, "DATE": _to_date, "TIMESTAMP": _to_timestamp,
}
# The Python type that needs no conversion, per column type (exact type match only).
_NATIVE = {"INTEGER": int, "REAL": float, "TEXT": str, "BLOB": bytes, "BOOLEAN": bool,
           "DATE": _Date, "TIMESTAMP": _DateTime}


def _coerce_error(value: Any, type_name: str, column: str) -> DataError:
    reason = ""
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        reason = ": out of the int64 range"
    elif isinstance(value, float) and value != value:
        reason = ": NaN is not a value"
    elif isinstance(value, str) and not _valid_text(value):
        reason = ": not valid Unicode (lone surrogate)"
    elif type_name == "REAL" and isinstance(value, int) and not isinstance(value, bool):
        reason = ": not exactly representable as a REAL"
    return DataError(f'cannot store {type_label(value)} value {_display(value)} '
                      f'in {type_name} column "{column}"{reason}')


def coerce_value(value: Any, type_name: str, column: str) -> Any:
    """``value`` converted for storage in a column of canonical type ``type_name``.

    Like a SQLite STRICT table: a value of the column's type is kept; others are
    converted only when the conversion loses nothing (12.0 -> 12 for INTEGER,
    ' 12 ' -> 12, 5 -> 5.0 for REAL, 12 -> '12' for TEXT, 'true' -> True for
    BOOLEAN, '2024-01-31' -> date for DATE, ISO text with 'Z'/offset -> naive UTC
    datetime for TIMESTAMP). None stays None (NOT NULL is checked elsewhere).
    Anything else raises DataError naming ``column`` (e.g. ``"t.a"``) and both types.
    """
    if value is None:
        return None
    if type(value) is _NATIVE.get(type_name):
        if type_name == "INTEGER":
            if INT64_MIN <= value <= INT64_MAX:
                return value
        elif type_name == "TEXT":
            if value.isascii() or _valid_text(value):
                return value
        elif type_name == "REAL":
            if value == value:
                return value if value else 0.0      # -0.0 is stored as 0.0, as SQLite
        elif type_name == "TIMESTAMP":
            if value.tzinfo is None:
                return value
        else:
            return value
    try:
        converter = _COERCERS[type_name]
    except (KeyError, TypeError):
        raise ProgrammingError(f"unknown column type {type_name!r}") from None
    result = converter(value)
    if result is _FAIL:
        raise _coerce_error(value, type_name, column)
    return result


def try_coerce(value: Any, type_name: str) -> tuple[bool, Any]:
    """(True, converted) if coerce_value would accept ``value`` for the type, else (False, None)."""
    if value is None:
        return True, None
    try:
        converter = _COERCERS[type_name]
    except (KeyError, TypeError):
        raise ProgrammingError(f"unknown column type {type_name!r}") from None
    result = converter(value)
    if result is _FAIL:
        return False, None
    return True, result


# --- CAST -----------------------------------------------------------------------------


def _cast_numeric(value):
    """CAST(value AS NUMERIC) (sqlite3VdbeMemNumerify)."""
    t = type(value)
    if t is int or t is float:
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    text = _as_text_for_number(value)
    rc, r = _atof(text)
    if rc in (0, 1):
        arc, i = _atoi64(text)
        if arc <= 1:
            return i
    if r == r and r not in (_INF, -_INF) and -9.223372036854775808e18 <= r < 9.223372036854775808e18:
        i = int(r)
    else:
        i = INT64_MIN                       # what (i64)r gives on x86-64
    if _real_same_as_int(r, i):
        return i
    return r


def _cast_error(value, target: str) -> DataError:
    return DataError(f"cannot cast {type_label(value)} value {_display(value)} to {target}")


@functools.lru_cache(maxsize=256)
def _cast_target(type_name: str) -> str:
    if isinstance(type_name, str) and _normalize_declared(type_name) in ("NUMERIC", "DECIMAL"):
        return "NUMERIC"
    return column_type(type_name)


def cast(value: Any, type_name: str) -> Any:
    """CAST(value AS type_name), as SQLite: AS INTEGER ('12abc' -> 12, 'abc' -> 0, 1.9 -> 1,
    huge REALs clamp to int64), AS REAL, AS TEXT, AS BLOB (text -> UTF-8 bytes), AS NUMERIC
    (int if exact else float). Our own types: AS BOOLEAN (text 'true'/'false', else truth()),
    AS DATE / AS TIMESTAMP (ISO text, date <-> datetime; DataError if not a date).
    ``type_name`` is any declared name (column_type) or NUMERIC/DECIMAL. NULL -> NULL."""
    if value is None:
        return None
    target = _cast_target(type_name)
    if target == "NUMERIC":
        return _cast_numeric(value)
    if target == "INTEGER":
        return _int_value(value)
    if target == "REAL":
        return _real_value(value)
    if target == "TEXT":
        return to_text(value)
    if target == "BLOB":
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        return to_text(value).encode("utf-8", "surrogatepass")
    if target == "BOOLEAN":
        if isinstance(value, str):
            word = value.strip(_SPACES).lower()
            if word in ("true", "false"):
                return word == "true"
        return bool(truth(value))
    if target == "DATE":
        if isinstance(value, _DateTime):
            return _naive_utc(value).date()
        if isinstance(value, _Date):
            return value
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            text = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
            ts = _parse_timestamp(text.strip(_SPACES))
            if ts is not None:
                return ts.date()
        raise _cast_error(value, "DATE")
    # TIMESTAMP
    if isinstance(value, _DateTime):
        return _naive_utc(value)
    if isinstance(value, _Date):
        return _DateTime(value.year, value.month, value.day)
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        text = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
        ts = _parse_timestamp(text.strip(_SPACES))
        if ts is not None:
            return ts
    raise _cast_error(value, "TIMESTAMP")


# --- LIKE and GLOB ------------------------------------------------------------------------

_NEVER = None   # a compiled pattern that matches nothing


@functools.lru_cache(maxsize=512)
def _like_matcher(pattern: str, escape: str | None):
    match_all = None if escape == "%" else "%"
    match_one = None if escape == "_" else "_"
    parts = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == escape:
            if i >= n:
                return _NEVER                 # an escape at the end matches nothing
            parts.append(re.escape(pattern[i]))
            i += 1
        elif c == match_all:
            if not parts or parts[-1] != ".*":
                parts.append(".*")
        elif c == match_one:
            parts.append(".")
        else:
            parts.append(re.escape(c))
    return re.compile("".join(parts), re.DOTALL | re.IGNORECASE | re.ASCII).fullmatch


def _c_string(text: str) -> str:
    """SQLite reads LIKE/GLOB operands as C strings: they end at the first NUL."""
    nul = text.find("\x00")
    return text if nul < 0 else text[:nul]


def like(value: Any, pattern: Any, escape: Any = None):
    """value LIKE pattern [ESCAPE escape]: 1, 0 or None (either operand NULL).

    ``%`` matches any run of characters, ``_`` one character; ASCII letters match
    case-insensitively (other characters exactly), as SQLite without ICU.
    ``escape`` None means no ESCAPE clause; otherwise it must be one character
    (ProgrammingError). Operands are converted with to_text.
    """
    if escape is not None:                      # checked first, even with a NULL operand (as SQLite)
        escape = _c_string(to_text(escape))
        if len(escape) != 1:
            raise ProgrammingError("ESCAPE expression must be a single character")
    if value is None or pattern is None:
        return None
    if type(pattern) is not str:
        pattern = to_text(pattern)
    if type(value) is not str:
        value = to_text(value)
    if "\x00" in pattern:
        pattern = _c_string(pattern)
    if "\x00" in value:
        value = _c_string(value)
    matcher = _like_matcher(pattern, escape)
    if matcher is None:
        return 0
    return 1 if matcher(value) is not None else 0


def _class_char(c: str) -> str:
    return "\\" + c if c in "\\]^-[" else c


@functools.lru_cache(maxsize=512)
def _glob_matcher(pattern: str):
    parts = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not parts or parts[-1] != ".*":
                parts.append(".*")
        elif c == "?":
            parts.append(".")
        elif c == "[":
            invert = False
            items = []
            if i < n and pattern[i] == "^":
                invert = True
                i += 1
            if i < n and pattern[i] == "]":
                items.append(_class_char("]"))
                i += 1
            prior = None
            while i < n and pattern[i] != "]":
                c2 = pattern[i]
                i += 1
                if c2 == "-" and prior is not None and i < n and pattern[i] != "]":
                    hi = pattern[i]
                    i += 1
                    if prior <= hi:
                        items.append(_class_char(prior) + "-" + _class_char(hi))
                    prior = None
                else:
                    items.append(_class_char(c2))
                    prior = c2
            if i >= n:
                return _NEVER                  # unterminated [...]: no match
            i += 1                             # the closing ]
            if items:
                parts.append(("[^" if invert else "[") + "".join(items) + "]")
            else:
                parts.append("." if invert else "[^\\s\\S]")
        else:
            parts.append(re.escape(c))
    return re.compile("".join(parts), re.DOTALL).fullmatch


def glob(value: Any, pattern: Any):
    """value GLOB pattern: 1, 0 or None. Case-sensitive; ``*``, ``?``, ``[abc]``, ``[a-z]``,
    ``[^...]`` as SQLite (an unterminated ``[`` matches nothing)."""
    if value is None or pattern is None:
        return None
    if type(pattern) is not str:
        pattern = to_text(pattern)
    if type(value) is not str:
        value = to_text(value)
    if "\x00" in pattern:
        pattern = _c_string(pattern)
    if "\x00" in value:
        value = _c_string(value)
    matcher = _glob_matcher(pattern)
    if matcher is None:
        return 0
    return 1 if matcher(value) is not None else 0
