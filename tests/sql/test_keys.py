"""The SQL keyspace (tabledb/sql/keys.py): order, round trip, self-delimiting keys, ranges, errors.

The model for order is plain Python comparison of the values, with NULL
smallest and a DESC column reversed (``model_cmp`` below); the encoded keys
must sort exactly like it under plain ``bytes`` comparison.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabledb.errors import CorruptionError, DataError
from tabledb.sql import keys
from tabledb.sql.keys import (
    INT64_MAX, INT64_MIN, KeyCodec, decode_key, decode_row_key, decode_uvarint, decode_value, encode_key,
    encode_uvarint, encode_value, index_key, index_prefix, index_range, prefix_end, prefix_range,
    row_key, rowid_key, split_key, table_prefix, table_range,
)

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])

# --- strategies ----------------------------------------------------------------

TRICKY_CHARS = st.sampled_from(["\x00", "\x01", "\xfe", "\xff", "a", "b", "é", "\u07ff", "\uffff", "\U0001f600"])
TRICKY_BYTES = st.sampled_from([0x00, 0x01, 0x02, 0x61, 0x62, 0xFE, 0xFF])

VALUES = {
    "INTEGER": st.integers(INT64_MIN, INT64_MAX)
    | st.sampled_from([INT64_MIN, INT64_MIN + 1, -256, -1, 0, 1, 255, 256, INT64_MAX - 1, INT64_MAX]),
    "REAL": st.floats(allow_nan=False)
    | st.sampled_from([-math.inf, -1.7976931348623157e308, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, math.inf]),
    "TEXT": st.text(TRICKY_CHARS, max_size=6) | st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    "BLOB": st.lists(TRICKY_BYTES, max_size=6).map(bytes) | st.binary(max_size=8),
    "BOOLEAN": st.booleans(),
    "DATE": st.dates() | st.sampled_from([dt.date(1, 1, 1), dt.date(1969, 12, 31), dt.date(1970, 1, 1),
                                         dt.date(9999, 12, 31)]),
    "TIMESTAMP": st.datetimes() | st.sampled_from([dt.datetime(1, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
                                                  dt.datetime(1970, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)]),
}
TYPES = sorted(VALUES)


def nullable(type_name):
    return st.none() | VALUES[type_name]


def sign(x):
    return (x > 0) - (x < 0)


def model_cmp_value(a, b, descending=False):
    """NULL is the smallest value; DESC reverses; otherwise Python's own comparison."""
    if a is None or b is None:
        result = (a is not None) - (b is not None)
    else:
        result = (a > b) - (a < b)
    return -result if descending else result


def model_cmp(a, b, desc):
    for x, y, d in zip(a, b, desc):
        result = model_cmp_value(x, y, d)
        if result:
            return result
    return 0


def byte_cmp(a: bytes, b: bytes) -> int:
    return (a > b) - (a < b)


# --- single values: order and round trip ----------------------------------------


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("descending", [False, True])
def test_value_order_matches_model(type_name, descending):
    @SETTINGS
    @given(st.lists(nullable(type_name), min_size=2, max_size=12))
    def check(values):
        encoded = [encode_value(v, type_name, descending) for v in values]
        for i in range(len(values) - 1):
            for j in range(i + 1, len(values)):
                assert byte_cmp(encoded[i], encoded[j]) == model_cmp_value(values[i], values[j], descending), \
                    (values[i], values[j])
    check()


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("descending", [False, True])
def test_value_round_trip(type_name, descending):
    @SETTINGS
    @given(nullable(type_name), st.binary(max_size=4))
    def check(value, prefix):
        data = encode_value(value, type_name, descending)
        decoded, pos = decode_value(prefix + data + b"\x00\x01\xff", len(prefix), type_name, descending)
        assert pos == len(prefix) + len(data)
        assert decoded == value and type(decoded) is type(value)
        if type_name == "REAL" and value is not None:
            assert decoded == 0.0 and math.copysign(1, decoded) == 1 if value == 0 else decoded == value
    check()


def test_null_sorts_first_ascending_and_last_descending():
    for type_name, example in [("INTEGER", INT64_MIN), ("REAL", -math.inf), ("TEXT", ""), ("BLOB", b""),
                               ("BOOLEAN", False), ("DATE", dt.date(1, 1, 1)), ("TIMESTAMP", dt.datetime(1, 1, 1))]:
        assert encode_value(None, type_name) < encode_value(example, type_name)
        assert encode_value(None, type_name, True) > encode_value(example, type_name, True)


def test_examples_in_order():
    chains = {
        "INTEGER": [None, INT64_MIN, -(1 << 32), -1, 0, 1, 255, 256, 1 << 40, INT64_MAX],
        "REAL": [None, -math.inf, -1e308, -1.5, -1.0, -5e-324, 0.0, 5e-324, 1.0, 1.5, 1e308, math.inf],
        "TEXT": [None, "", "\x00", "\x00\x00", "\x01", "a", "a\x00", "a\x00\x00", "a\x00b", "a\x01", "ab",
                 "b", "\xff", "\xff\x00", "\u0100", "\uffff", "\U0001f600"],
        "BLOB": [None, b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\x01", b"a", b"a\x00", b"a\x00\xff",
                 b"a\x01", b"ab", b"\xfe", b"\xff", b"\xff\x00", b"\xff\xff"],
        "BOOLEAN": [None, False, True],
        "DATE": [None, dt.date(1, 1, 1), dt.date(1969, 12, 31), dt.date(1970, 1, 1), dt.date(2024, 2, 29)],
        "TIMESTAMP": [None, dt.datetime(1, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
                      dt.datetime(1970, 1, 1), dt.datetime(1970, 1, 1, 0, 0, 0, 1), dt.datetime(9999, 12, 31)],
    }
    for type_name, chain in chains.items():
        for descending in (False, True):
            encoded = [encode_value(v, type_name, descending) for v in chain]
            expected = sorted(encoded, reverse=descending)
            assert encoded == expected, (type_name, descending)
            assert len(set(encoded)) == len(encoded)


def test_docstring_examples():
    hexed = lambda v, t, d=False: encode_value(v, t, d).hex(" ")  # noqa: E731
    assert hexed(None, "INTEGER") == "01"
    assert hexed(True, "BOOLEAN") == "10 01"
    assert hexed(-1, "INTEGER") == "20 7f ff ff ff ff ff ff ff"
    assert hexed(42, "INTEGER") == "20 80 00 00 00 00 00 00 2a"
    assert hexed(1.5, "REAL") == "30 bf f8 00 00 00 00 00 00"
    assert hexed(-1.5, "REAL") == "30 40 07 ff ff ff ff ff ff"
    assert hexed("", "TEXT") == "40 00 01"
    assert hexed("a\x00", "TEXT") == "40 61 00 ff 00 01"
    assert hexed("a", "TEXT", True) == "bf 9e ff fe"
    assert hexed("ab", "TEXT", True) == "bf 9e 9d ff fe"
    assert hexed(None, "TEXT", True) == "fe"
    assert hexed(dt.date(1970, 1, 2), "DATE") == "21 80 00 00 00 00 00 00 01"
    assert [encode_uvarint(n).hex(" ") for n in (0, 5, 255, 256, 300)] == ["00", "01 05", "01 ff", "02 01 00", "02 01 2c"]
    assert encode_uvarint(1 << 32).hex(" ") == "05 01 00 00 00 00"


def test_worked_example_in_docs():
    """docs/format.md ("SQL keys")'s worked example, byte for byte."""
    key = row_key(7, (42, "héllo\x00", None), ("INTEGER", "TEXT", "REAL"), (False, True, False))
    assert key.hex(" ") == ("74 01 07 00 "
                            "20 80 00 00 00 00 00 00 2a "
                            "bf 97 3c 56 93 93 90 ff 00 ff fe "
                            "01")
    assert decode_row_key(key, ("INTEGER", "TEXT", "REAL"), (False, True, False)) == (7, (42, "héllo\x00", None))


def test_negative_zero_equals_zero():
    assert encode_value(-0.0, "REAL") == encode_value(0.0, "REAL")
    assert encode_value(-0.0, "REAL", True) == encode_value(0.0, "REAL", True)
    value, _ = decode_value(encode_value(-0.0, "REAL"), 0, "REAL")
    assert math.copysign(1.0, value) == 1.0


def test_real_accepts_int():
    assert encode_value(3, "REAL") == encode_value(3.0, "REAL")
    assert decode_value(encode_value(3, "REAL"), 0, "REAL") == (3.0, 9)


def test_timestamp_naive_is_utc_and_aware_is_converted():
    naive = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
    aware = dt.datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert encode_value(naive, "TIMESTAMP") == encode_value(aware, "TIMESTAMP")
    assert encode_value(dt.datetime(1970, 1, 1, 0, 0, 0, 1), "TIMESTAMP") == bytes.fromhex("22 80 00 00 00 00 00 00 01")
    assert decode_value(encode_value(aware, "TIMESTAMP"), 0, "TIMESTAMP")[0] == naive


# --- composite keys -------------------------------------------------------------


@st.composite
def key_schema_and_rows(draw):
    types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=4))
    desc = draw(st.lists(st.booleans(), min_size=len(types), max_size=len(types)))
    # Small pools per column so that ties (and so later columns) matter.
    pools = [draw(st.lists(nullable(t), min_size=1, max_size=3)) for t in types]
    rows = draw(st.lists(st.tuples(*[st.sampled_from(p) for p in pools]), min_size=2, max_size=15))
    return types, desc, rows


@SETTINGS
@given(key_schema_and_rows())
def test_composite_keys_sort_like_the_model(schema):
    types, desc, rows = schema
    by_bytes = sorted(rows, key=lambda row: encode_key(row, types, desc))
    by_model = sorted(rows, key=functools.cmp_to_key(lambda a, b: model_cmp(a, b, desc)))
    assert [encode_key(r, types, desc) for r in by_bytes] == [encode_key(r, types, desc) for r in by_model]
    for a in rows[:5]:
        for b in rows:
            assert byte_cmp(encode_key(a, types, desc), encode_key(b, types, desc)) == sign(model_cmp(a, b, desc))


def test_descending_text_prefixes_keep_their_order_before_a_following_column():
    # 'a' < 'a\x00' < 'ab' reversed under DESC, whatever the next column holds.
    types, desc = ("TEXT", "INTEGER"), (True, False)
    rows = [("ab", INT64_MIN), ("a\x00", 0), ("a\x00", INT64_MAX), ("a", INT64_MIN), ("a", 5), ("", 0), (None, 0)]
    encoded = [encode_key(r, types, desc) for r in rows]
    assert encoded == sorted(encoded)
    assert len(set(encoded)) == len(encoded)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(TYPES), st.booleans()).flatmap(
    lambda td: st.tuples(st.just(td[0]), st.just(td[1]), nullable(td[0]))), min_size=1, max_size=8),
    st.binary(max_size=6))
def test_decode_key_is_self_delimiting(columns, tail):
    types = [c[0] for c in columns]
    desc = [c[1] for c in columns]
    values = tuple(c[2] for c in columns)
    parts = [encode_value(v, t, d) for t, d, v in columns]
    buf = b"".join(parts) + tail
    assert encode_key(values, types, desc) == b"".join(parts)
    decoded, pos = decode_key(buf, types, desc)
    assert pos == len(buf) - len(tail)
    assert decoded == values
    codec = KeyCodec(types, desc)
    assert codec.encode(values) == b"".join(parts)
    assert codec.decode(b"\x07" + buf, 1) == (values, pos + 1)
    # Part by part: each decode stops exactly where the next part begins.
    pos = 0
    for part, t, d, v in zip(parts, types, desc, values):
        got, new_pos = decode_value(buf, pos, t, d)
        assert got == v and new_pos == pos + len(part)
        pos = new_pos
    # Split into two calls with pos carried over (an index entry then its primary key).
    cut = len(types) // 2
    first, pos = decode_key(buf, types[:cut], desc[:cut])
    second, pos = decode_key(buf, types[cut:], desc[cut:], pos)
    assert first + second == values and pos == len(buf) - len(tail)


def test_key_codec_errors_match_the_functions():
    codec = KeyCodec(("INTEGER", "TEXT"), (False, True))
    with pytest.raises(DataError, match="1 values for 2 columns"):
        codec.encode((1,))
    with pytest.raises(DataError, match="TEXT column expects"):
        codec.encode((1, 2))
    with pytest.raises(DataError, match="unknown column type"):
        KeyCodec(("INT",))
    with pytest.raises(DataError, match="DESC flags"):
        KeyCodec(("INTEGER",), (True, False))
    with pytest.raises(CorruptionError):
        codec.decode(encode_key((1, "x"), ("INTEGER", "TEXT")))  # TEXT written ascending
    with pytest.raises(CorruptionError):
        codec.decode(encode_value(1, "INTEGER"))  # second column missing


def test_decode_key_without_desc_flags():
    buf = encode_key((1, "x", None), ("INTEGER", "TEXT", "BLOB"))
    assert decode_key(buf, ("INTEGER", "TEXT", "BLOB")) == ((1, "x", None), len(buf))


# --- ids and key layout ---------------------------------------------------------


@SETTINGS
@given(st.lists(st.integers(0, (1 << 64) - 1) | st.integers(0, 70000), min_size=2, max_size=20))
def test_uvarint_order_and_round_trip(ids):
    encoded = [encode_uvarint(n) for n in ids]
    assert sorted(encoded) == [encode_uvarint(n) for n in sorted(ids)]
    for n, data in zip(ids, encoded):
        assert decode_uvarint(data + b"\x00") == (n, len(data))


TABLE_IDS = st.sampled_from([0, 1, 2, 7, 254, 255, 256, 257, 65535, 65536, (1 << 64) - 1])
INDEX_IDS = st.sampled_from([0, 1, 2, 255, 256])


@st.composite
def keyspace_keys(draw):
    """(table_id, index_id, first value, key) for keys of several tables and indexes."""
    table_id, index_id = draw(TABLE_IDS), draw(INDEX_IDS)
    first = draw(st.none() | st.sampled_from(["", "a", "a\x00", "ab", "\xff"]))
    second = draw(st.none() | st.integers(-3, 3) | st.sampled_from([INT64_MIN, INT64_MAX]))
    desc = draw(st.booleans())
    if index_id == 0:
        key = row_key(table_id, (first, second), ("TEXT", "INTEGER"), (desc, False))
    else:
        key = index_key(table_id, index_id, (first,), ("TEXT",), (desc,), pk_values=(second,), pk_types=("INTEGER",))
    return table_id, index_id, (first, desc), key


def in_range(key, rng):
    start, end = rng
    return start <= key and (end is None or key < end)


@SETTINGS
@given(st.lists(keyspace_keys(), min_size=1, max_size=40), TABLE_IDS, INDEX_IDS)
def test_ranges_contain_exactly_their_keys(entries, table_id, index_id):
    for t, i, (first, desc), key in entries:
        assert split_key(key)[:2] == (t, i)
        assert in_range(key, table_range(table_id)) == (t == table_id)
        assert in_range(key, index_range(table_id, index_id)) == (t == table_id and i == index_id)
        assert in_range(key, prefix_range(table_prefix(table_id))) == (t == table_id)
        # A prefix of the composite key: every key whose first column equals 'a' (ascending).
        prefix = index_prefix(table_id, index_id) + encode_value("a", "TEXT")
        assert in_range(key, prefix_range(prefix)) == (t == table_id and i == index_id and first == "a" and not desc)
        prefix = index_prefix(table_id, index_id) + encode_value(None, "TEXT", True)
        assert in_range(key, prefix_range(prefix)) == (t == table_id and i == index_id and first is None and desc)


def test_ranges_of_neighbouring_ids_do_not_overlap():
    ids = [0, 1, 2, 254, 255, 256, 65535, 65536, (1 << 64) - 1]
    ranges = [table_range(t) for t in ids]
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:]):
        assert s1 < e1 <= s2 < e2
    index_ranges = [index_range(5, i) for i in ids]
    for (s1, e1), (s2, e2) in zip(index_ranges, index_ranges[1:]):
        assert s1 < e1 <= s2 < e2
    assert table_range(5)[0] <= index_ranges[0][0] and index_ranges[-1][1] <= table_range(5)[1]


def test_prefix_end():
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"a\x00") == b"a\x01"
    assert prefix_end(b"\xff\xff") is None
    assert prefix_end(b"") is None
    assert prefix_range(b"\xff") == (b"\xff", None)


def test_rowid_keys_sort_by_rowid_and_match_row_key():
    rowids = [INT64_MIN, -1, 0, 1, 1 << 40, INT64_MAX]
    encoded = [rowid_key(3, r) for r in rowids]
    assert encoded == sorted(encoded)
    assert encoded[2] == row_key(3, (0,), keys.ROWID_TYPES)
    assert decode_row_key(encoded[-1], keys.ROWID_TYPES) == (3, (INT64_MAX,))


def test_index_key_layout():
    key = index_key(9, 2, ("x", None), ("TEXT", "INTEGER"), pk_values=(5,), pk_types=("INTEGER",))
    table_id, index_id, pos = split_key(key)
    assert (table_id, index_id) == (9, 2)
    values, pos = decode_key(key, ("TEXT", "INTEGER"), pos=pos)
    assert values == ("x", None)
    assert decode_key(key, ("INTEGER",), pos=pos) == ((5,), len(key))
    unique = index_key(9, 2, ("x", 1), ("TEXT", "INTEGER"))
    assert unique == index_prefix(9, 2) + encode_key(("x", 1), ("TEXT", "INTEGER"))


# --- errors ---------------------------------------------------------------------

WRONG_TYPES = [
    ("INTEGER", True, "int"), ("INTEGER", 1.0, "int"), ("INTEGER", "1", "int"),
    ("REAL", "1.0", "float"), ("REAL", False, "float"), ("REAL", b"", "float"),
    ("TEXT", b"a", "str"), ("TEXT", 1, "str"),
    ("BLOB", "a", "bytes"), ("BLOB", 1, "bytes"),
    ("BOOLEAN", 1, "bool"), ("BOOLEAN", "true", "bool"),
    ("DATE", dt.datetime(2020, 1, 1), "datetime.date"), ("DATE", "2020-01-01", "datetime.date"),
    ("TIMESTAMP", dt.date(2020, 1, 1), "datetime.datetime"), ("TIMESTAMP", 0, "datetime.datetime"),
]


@pytest.mark.parametrize("type_name, value, expected", WRONG_TYPES)
def test_wrong_python_type_raises_data_error_naming_the_type(type_name, value, expected):
    with pytest.raises(DataError, match=f"{type_name} column expects .*{expected}"):
        encode_value(value, type_name)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 1 << 100])
def test_integer_out_of_range(value):
    with pytest.raises(DataError, match="out of the int64 range"):
        encode_value(value, "INTEGER")
    with pytest.raises(DataError):
        rowid_key(1, value)


def test_other_data_errors():
    with pytest.raises(DataError, match="NaN"):
        encode_value(math.nan, "REAL")
    with pytest.raises(DataError, match="too large"):
        encode_value(1 << 1100, "REAL")
    with pytest.raises(DataError, match="surrogate"):
        encode_value("a\ud800", "TEXT")
    with pytest.raises(DataError, match="unknown column type"):
        encode_value(1, "VARCHAR")
    with pytest.raises(DataError, match="unknown column type"):
        decode_value(b"\x01", 0, "integer")
    with pytest.raises(DataError, match="2 values for 3 columns"):
        encode_key((1, 2), ("INTEGER",) * 3)
    with pytest.raises(DataError, match="DESC flags"):
        encode_key((1, 2), ("INTEGER",) * 2, (True,))
    with pytest.raises(DataError):
        encode_uvarint(-1)
    with pytest.raises(DataError):
        encode_uvarint(1 << 64)
    with pytest.raises(DataError):
        table_range("1")
    with pytest.raises(DataError):
        index_key(1, 0, (1,), ("INTEGER",))


@pytest.mark.parametrize("buf, type_name, descending", [
    (b"", "INTEGER", False),                       # nothing there
    (b"\x20\x80\x00", "INTEGER", False),           # truncated
    (b"\x40abc", "TEXT", False),                   # unterminated
    (b"\x40a\x00b\x00\x01", "TEXT", False),        # 00 not followed by ff
    (b"\x40\xc3\x00\x01", "TEXT", False),          # not UTF-8
    (b"\x40a\x00\x01", "BLOB", False),             # tag of another type
    (b"\x10\x02", "BOOLEAN", False),               # bad boolean byte
    (b"\xbf\x9e", "TEXT", True),                   # unterminated, descending
    (b"\x21\xff\xff\xff\xff\xff\xff\xff\xff", "DATE", False),   # date out of range
])
def test_malformed_keys_raise_corruption(buf, type_name, descending):
    with pytest.raises(CorruptionError):
        decode_value(buf, 0, type_name, descending)


def test_malformed_layout_raises_corruption():
    with pytest.raises(CorruptionError):
        split_key(b"x\x00\x00")
    with pytest.raises(CorruptionError):
        decode_uvarint(b"\x09" + b"\x01" * 9)
    with pytest.raises(CorruptionError):
        decode_uvarint(b"\x02\x00\x05")  # not minimal
    with pytest.raises(CorruptionError):
        decode_row_key(index_key(1, 1, (1,), ("INTEGER",)), ("INTEGER",))
    with pytest.raises(CorruptionError):
        decode_row_key(row_key(1, (1,), ("INTEGER",)) + b"\x00", ("INTEGER",))


def test_float_encoding_is_the_ieee_trick():
    for value in (-math.inf, -2.5, -0.0, 0.0, 1e-300, 3.25, math.inf):
        bits = struct.unpack(">Q", struct.pack(">d", value + 0.0))[0]
        expected = bits ^ (1 << 64) - 1 if bits >> 63 else bits | 1 << 63
        assert encode_value(value, "REAL") == b"\x30" + expected.to_bytes(8, "big")
