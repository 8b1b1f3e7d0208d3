"""Built-in functions (tabledb/sql/functions.py), differential against SQLite 3.40.

Scalar functions are called with random runtime values and compared with
``SELECT f(?, ...)``; aggregates are fed random columns and compared with
``SELECT agg(v) FROM t``. Functions SQLite 3.40 lacks (concat, concat_ws,
string_agg, unhex, octet_length) have written-out expectations.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tabledb.errors import OperationalError
from tabledb.sql import functions as F
from tabledb.sql import values as V
from tabledb.sql.values import INT64_MAX, INT64_MIN

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=200,
                    suppress_health_check=[HealthCheck.too_slow])

DB = sqlite3.connect(":memory:")
DB.text_factory = lambda raw: raw.decode("utf-8", "replace")


def to_sqlite(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, dt.datetime):
        return V.to_text(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def sq(expr: str, *params):
    return DB.execute("SELECT " + expr, [to_sqlite(p) for p in params]).fetchone()[0]


def same(ours, theirs) -> bool:
    ours = to_sqlite(ours)
    if type(ours) is not type(theirs):
        return False
    if type(ours) is float:
        return ours == theirs and math.copysign(1, ours) == math.copysign(1, theirs)
    return ours == theirs


def outcome_ours(fn, *args):
    try:
        return "ok", fn(*args)
    except OperationalError as exc:
        return "error", str(exc)


def outcome_sqlite(expr, *args):
    try:
        return "ok", sq(expr, *args)
    except sqlite3.OperationalError as exc:
        return "error", str(exc)


def assert_same_outcome(fn, expr, *args):
    ours, theirs = outcome_ours(fn, *args), outcome_sqlite(expr, *args)
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "ok":
        assert same(ours[1], theirs[1]), (ours[1], theirs[1])
    else:
        assert ours[1] == theirs[1]


# --- strategies --------------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2, -2, 3, -3, 5, 10, 30, 31, -30, 2**31, -2**31, 2**32 + 2, INT64_MAX, INT64_MIN]
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-12, 12), st.integers(INT64_MIN, INT64_MAX))
reals = st.one_of(st.sampled_from([0.0, -0.0, 0.5, -0.5, 2.5, -2.5, 1.005, 2.675, 0.285, 1e20, 1 / 3, math.inf,
                                   -math.inf, 4503599627370496.5, 1e-300]),
                  st.floats(allow_nan=False), st.integers(-10**7, 10**7).map(lambda i: i / 1000))
numeric_text = st.one_of(
    st.sampled_from(["", " ", "abc", "12abc", "1.5x", "1e3", "  7", " -3 ", "0x10", "9223372036854775808",
                     "99999999999999999999", "-", ".5", "1e", "2.5", "-2.5", "3.", "0.0", "1e999", "12 ", " 1.5e2 "]),
    ints.map(str), reals.map(repr))
plain_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
small_text = st.text("abcAB xé'_%", max_size=6)
texts = st.one_of(numeric_text, plain_text, small_text)
utf8_blobs = st.one_of(small_text, numeric_text).map(lambda s: s.encode())
blobs = st.one_of(st.binary(max_size=6), utf8_blobs)
dates = st.dates(min_value=dt.date(1, 1, 1))
values = st.one_of(st.none(), ints, reals, st.booleans(), texts, blobs, dates)
text_values = st.one_of(st.none(), ints, reals, st.booleans(), texts, utf8_blobs, dates)


# --- scalar functions ---------------------------------------------------------------

ONE_ARG = ["abs", "length", "lower", "upper", "typeof", "hex", "quote", "unicode", "sign"]


@SETTINGS
@given(values)
@example(INT64_MIN)
@example(-0.0)
@example("-5")
@example("a\x00b")
@example(b"")
@example("")
def test_one_argument_functions_match_sqlite(x):
    for name in ONE_ARG:
        fn = F.SCALAR_FUNCTIONS[name][0]
        if name in ("lower", "upper", "length") and isinstance(x, bytes):
            x = x.decode("utf-8", "replace").encode()     # SQLite works on the bytes; we on decoded text
        assert_same_outcome(fn, f"{name}(?)", x)


def test_abs_of_the_smallest_integer_overflows():
    with pytest.raises(OperationalError, match="integer overflow"):
        F.f_abs(INT64_MIN)
    with pytest.raises(sqlite3.OperationalError, match="integer overflow"):
        sq("abs(?)", INT64_MIN)


@SETTINGS
@given(st.one_of(texts, utf8_blobs, st.binary(max_size=6), ints, reals, st.none(), dates),
       st.one_of(ints, reals, numeric_text, st.none(), st.booleans()),
       st.one_of(ints, reals, numeric_text, st.none()))
@example("abcdef", 0, 2)
@example("abcdef", -2, None)
@example("abcdef", -8, 4)
@example("abcdef", 3, -2)
@example("abcdef", 2**32 + 2, 1)
@example(b"\x01\x02\x03", -2, 5)
@example("a\x00bc", 1, 3)
def test_substr_matches_sqlite(x, start, length):
    for name in ("substr", "substring"):
        fn = F.SCALAR_FUNCTIONS[name][0]
        assert_same_outcome(fn, "substr(?, ?)", x, start)
        assert_same_outcome(fn, "substr(?, ?, ?)", x, start, length)


@SETTINGS
@given(st.one_of(reals, ints, numeric_text, st.none(), st.booleans()),
       st.one_of(st.integers(-3, 32), st.sampled_from([2**32 + 2, -2**40]), st.none(), st.sampled_from(["2", "1.9"])))
@example(2.5, 0)
@example(-2.5, 0)
@example(1.005, 2)
@example(2.675, 2)
@example(0.285, 2)
@example(-0.001, 2)
@example(756.0, 22)
def test_round_matches_sqlite(x, digits):
    assert_same_outcome(F.f_round, "round(?)", x)
    assert_same_outcome(F.f_round, "round(?, ?)", x, digits)


def test_round_documented_values():
    assert F.f_round(2.5) == 3.0 and F.f_round(-2.5) == -3.0
    assert F.f_round(1.005, 2) == 1.01
    assert type(F.f_round(5)) is float and F.f_round(None) is None and F.f_round(1.5, None) is None


@SETTINGS
@given(text_values, text_values, text_values)
@example("abc", "", None)
@example(5, "", "x")
@example("aaa", "a", "bb")
@example("xxaxx", "x", None)
@example("  a  ", None, None)
@example(b"\x01\x02", b"\x02", None)
def test_two_and_three_argument_functions_match_sqlite(a, b, c):
    fns = F.SCALAR_FUNCTIONS
    assert_same_outcome(fns["replace"][0], "replace(?, ?, ?)", a, b, c)
    for name in ("trim", "ltrim", "rtrim"):
        assert_same_outcome(fns[name][0], f"{name}(?)", a)
        assert_same_outcome(fns[name][0], f"{name}(?, ?)", a, b)
    assert_same_outcome(fns["instr"][0], "instr(?, ?)", a, b)
    assert_same_outcome(fns["ifnull"][0], "ifnull(?, ?)", a, b)
    assert_same_outcome(fns["nullif"][0], "nullif(?, ?)", a, b)
    assert_same_outcome(fns["coalesce"][0], "coalesce(?, ?, ?)", a, b, c)
    assert_same_outcome(fns["iif"][0], "iif(?, ?, ?)", a, b, c)
    assert_same_outcome(fns["min"][0], "min(?, ?)", a, b)
    assert_same_outcome(fns["max"][0], "max(?, ?, ?)", a, b, c)
    assert_same_outcome(fns["min"][0], "min(?, ?, ?)", a, b, c)


@SETTINGS
@given(st.one_of(blobs, small_text), st.one_of(blobs, small_text))
def test_instr_on_blobs_matches_sqlite(a, b):
    assert_same_outcome(F.f_instr, "instr(?, ?)", a, b)


def test_min_and_max_pick_like_sqlite_among_equals():
    assert same(F.f_min(1, 1.0), sq("min(1, 1.0)")) and type(F.f_min(1, 1.0)) is float
    assert same(F.f_max(1, 1.0), sq("max(1, 1.0)")) and type(F.f_max(1, 1.0)) is int
    assert F.f_min(1, None, 0) is None and F.f_max(None, 1) is None


@SETTINGS
@given(st.lists(st.one_of(st.integers(-5, 0x10FFFF + 5).filter(lambda c: not 0xD800 <= c <= 0xDFFF),
                          st.none(), numeric_text, reals), max_size=4))
def test_char_matches_sqlite(codes):
    marks = ", ".join("?" * len(codes))
    assert_same_outcome(F.f_char, f"char({marks})", *codes)


@SETTINGS
@given(st.one_of(small_text, ints, st.none()), st.one_of(small_text, st.none(), ints),
       st.sampled_from(["\\", "x", "%"]))
def test_like_and_glob_functions_take_the_pattern_first(pattern, value, escape):
    assert_same_outcome(F.f_like, "like(?, ?)", pattern, value)
    assert_same_outcome(F.f_like, "like(?, ?, ?)", pattern, value, escape)
    assert_same_outcome(F.f_glob, "glob(?, ?)", pattern, value)


@pytest.mark.parametrize("n", [-1, 0, 3])
def test_zeroblob_matches_sqlite(n):
    assert same(F.f_zeroblob(n), sq("zeroblob(?)", n))


def test_functions_sqlite_340_lacks():
    assert F.f_concat("a", None, 1, 2.5, b"x", dt.date(2024, 1, 2)) == "a12.5x2024-01-02"
    assert F.f_concat(None) == ""
    assert F.f_concat_ws(", ", "a", None, 3) == "a, 3" and F.f_concat_ws(None, "a") is None
    assert F.f_unhex("0aFF") == b"\x0a\xff" and F.f_unhex("0") is None and F.f_unhex("zz") is None
    assert F.f_unhex("0a-ff", "-") == b"\x0a\xff" and F.f_unhex(None) is None
    assert F.f_octet_length("é") == 2 and F.f_octet_length(b"ab") == 2 and F.f_octet_length(None) is None
    assert F.f_char(0xD800) == "\ufffd"     # SQLite would emit invalid UTF-8 here


@pytest.mark.parametrize("name,too_few,too_many", [
    ("abs", 0, 2), ("ifnull", 1, 3), ("nullif", 1, 3), ("iif", 2, 4), ("substr", 1, 4), ("replace", 2, 4),
    ("trim", 0, 3), ("round", 0, 3), ("instr", 1, 3), ("hex", 0, 2), ("quote", 0, 2), ("unicode", 0, 2),
    ("sign", 0, 2), ("like", 1, 4), ("glob", 1, 3), ("length", 0, 2), ("typeof", 0, 2),
])
def test_arity_matches_sqlite(name, too_few, too_many):
    _fn, lo, hi = F.SCALAR_FUNCTIONS[name]
    for count in (too_few, too_many):
        with pytest.raises(sqlite3.OperationalError):
            sq(f"{name}({', '.join(['1'] * count)})")
        assert count < lo or (hi is not None and count > hi)
    assert lo <= too_few + 1 and (hi is None or hi >= too_many - 1)


def test_variadic_functions():
    for name, lo in (("coalesce", 2), ("min", 2), ("max", 2), ("char", 0), ("concat", 1), ("concat_ws", 2)):
        assert F.SCALAR_FUNCTIONS[name][1:] == (lo, None)
    assert F.SCALAR_FUNCTIONS["string_agg"] if "string_agg" in F.SCALAR_FUNCTIONS else True


# --- aggregates ---------------------------------------------------------------------

DB.execute("CREATE TABLE agg_t(v, s)")


def run_sqlite_aggregate(expr: str, column, seps=None):
    DB.execute("DELETE FROM agg_t")
    seps = seps if seps is not None else [None] * len(column)
    DB.executemany("INSERT INTO agg_t VALUES (?, ?)", [(to_sqlite(v), to_sqlite(s)) for v, s in zip(column, seps)])
    try:
        return "ok", DB.execute(f"SELECT {expr} FROM agg_t").fetchone()[0]
    except sqlite3.OperationalError as exc:
        return "error", str(exc)


def run_ours(name: str, column, distinct=False, seps=None, star=False):
    acc = F.AGGREGATES[name](distinct)
    try:
        for i, v in enumerate(column):
            if star:
                acc.step()
            elif seps is not None:
                acc.step(v, seps[i])
            else:
                acc.step(v)
        first = acc.final()
        assert same(acc.final(), to_sqlite(first)) or first == acc.final()   # final() has no side effect
        return "ok", first
    except OperationalError as exc:
        return "error", str(exc)


def check_aggregate(name, expr, column, **kw):
    ours = run_ours(name, column, **kw)
    theirs = run_sqlite_aggregate(expr, column, kw.get("seps"))
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "ok":
        assert same(ours[1], theirs[1]), (expr, ours[1], theirs[1])
    else:
        assert ours[1] == theirs[1]


agg_values = st.one_of(st.none(), ints, reals, st.booleans(), numeric_text, small_text, utf8_blobs, dates)
agg_columns = st.one_of(st.lists(agg_values, max_size=8),
                        st.lists(st.one_of(st.none(), st.integers(-10, 10), st.sampled_from([1.0, 2.5, -0.0])),
                                 max_size=10),
                        st.lists(st.sampled_from([INT64_MAX, INT64_MIN, 1, -1, 2**62, 0.5]), max_size=6))


@SETTINGS
@given(agg_columns)
@example([INT64_MAX, 1])
@example([INT64_MAX, 1, -1])
@example([INT64_MAX, 1, 0.5])
@example(["12", "1.0", "abc", b"3"])
@example([1, 1.0, "1", None, 1])
@example(["", ""])
@example([])
def test_aggregates_match_sqlite(column):
    for name in ("count", "sum", "total", "avg", "min", "max", "group_concat"):
        check_aggregate(name, f"{name}(v)", column)
        check_aggregate(name, f"{name}(DISTINCT v)", column, distinct=True)
    check_aggregate("count", "count(*)", column, star=True)


@SETTINGS
@given(st.lists(st.tuples(agg_values, st.one_of(st.none(), st.sampled_from([",", "; ", ""]), ints)), max_size=6))
def test_group_concat_with_separator_matches_sqlite(pairs):
    column = [v for v, _ in pairs]
    seps = [s for _, s in pairs]
    check_aggregate("group_concat", "group_concat(v, s)", column, seps=seps)


def test_string_agg_is_group_concat_with_a_separator():
    acc = F.AGGREGATES["string_agg"](False)
    for v in ("a", None, 2, 1.5):
        acc.step(v, "-")
    assert acc.final() == "a-2-1.5"
    assert F.AGGREGATES["string_agg"](False).final() is None


def test_aggregate_names_and_factories():
    assert F.AGGREGATE_NAMES == frozenset(F.AGGREGATES)
    assert {"count", "sum", "total", "avg", "min", "max", "group_concat", "string_agg"} <= F.AGGREGATE_NAMES
    a, b = F.AGGREGATES["sum"](False), F.AGGREGATES["sum"](False)
    a.step(1)
    assert b.final() is None and a.final() == 1          # independent accumulators
    d = F.AGGREGATES["count"](True)
    for v in (1, 1.0, True, "1", None, dt.date(2024, 1, 1), "2024-01-01"):
        d.step(v)
    assert d.final() == 3                                # 1 = 1.0 = TRUE; '1'; the date = its text
