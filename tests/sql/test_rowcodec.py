"""The stored row format (tabledb/sql/rowcodec.py): round trips, the documented bytes, corruption."""

from __future__ import annotations

import datetime as dt
import math
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tabledb.errors import CorruptionError, DataError
from tabledb.sql import rowcodec as R
from tabledb.sql.rowcodec import decode_row, encode_row

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=250,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EDGE_INTS = [0, 1, -1, 127, 128, -128, -129, 32767, 32768, -32768, -32769, 2**31 - 1, 2**31, -2**31, -2**31 - 1,
             2**63 - 1, -2**63]
values = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from(EDGE_INTS), st.integers(-2**63, 2**63 - 1),
    st.floats(allow_nan=False), st.sampled_from([-0.0, math.inf, -math.inf]),
    st.text(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=3), st.binary(),
    st.dates(), st.datetimes(),
)


def identical(a: tuple, b: tuple) -> bool:
    """Equal with the same types, and -0.0 kept distinct from 0.0."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if type(x) is not type(y) or x != y:
            return False
        if type(x) is float and math.copysign(1, x) != math.copysign(1, y):
            return False
    return True


@SETTINGS
@given(st.lists(values, max_size=12))
@example([])
@example([None, True, False, 2**63 - 1, -2**63, -0.0, math.inf, "", "é€😀", b"", b"\x00",
          dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)])
def test_round_trip(row):
    data = encode_row(row)
    assert data[0] == R.FORMAT_VERSION
    assert identical(decode_row(data), tuple(row))
    assert identical(decode_row(bytearray(data)), tuple(row))


@settings(SETTINGS, max_examples=20)
@given(st.lists(values, min_size=250, max_size=320))
def test_round_trip_of_wide_rows(row):
    data = encode_row(row)
    if len(row) >= 255:
        assert data[1] == 0xFF and struct.unpack_from("<H", data, 2)[0] == len(row)
    assert identical(decode_row(data), tuple(row))


def test_three_hundred_columns_of_each_kind():
    for row in ([None] * 300, list(range(300)), ["x" * i for i in range(300)], [b"\x00" * 3] * 300):
        assert identical(decode_row(encode_row(row)), tuple(row))


def test_documented_example_bytes():
    data = encode_row((42, "ab", 1.5, None))
    assert data.hex(" ") == "01 04 03 0a 07 00 2a 02 00 00 00 00 00 00 00 00 00 f8 3f 61 62"


def test_integers_take_the_narrowest_tag():
    tags = {0: R.TAG_INT8, -128: R.TAG_INT8, 128: R.TAG_INT16, -32769: R.TAG_INT32, 2**31: R.TAG_INT64}
    for v, tag in tags.items():
        assert encode_row([v])[2] == tag
    assert len(encode_row([5])) == 4 and len(encode_row([2**40])) == 11


def test_fixed_layout_of_each_type():
    assert encode_row([None, True, False]) == bytes([1, 3, R.TAG_NULL, R.TAG_TRUE, R.TAG_FALSE])
    assert encode_row([dt.date(1970, 1, 2)]) == bytes([1, 1, R.TAG_DATE]) + struct.pack("<i", 1)
    ts = dt.datetime(1970, 1, 1, 0, 0, 1, 5)
    assert encode_row([ts]) == bytes([1, 1, R.TAG_TIMESTAMP]) + struct.pack("<q", 1_000_005)
    assert encode_row([b"xy"]) == bytes([1, 1, R.TAG_BLOB]) + struct.pack("<I", 2) + b"xy"
    assert encode_row([dt.datetime(1969, 12, 31, 23, 59, 59)])[3:] == struct.pack("<q", -1_000_000)


def test_other_byte_types_and_subclasses_are_stored_as_their_base_type():
    class Text(str):
        pass

    class Number(int):
        pass

    row = decode_row(encode_row([bytearray(b"ab"), memoryview(b"cd"), Text("t"), Number(7)]))
    assert row == (b"ab", b"cd", "t", 7) and [type(v) for v in row] == [bytes, bytes, str, int]


def test_aware_timestamps_are_stored_as_utc():
    aware = dt.datetime(2024, 1, 31, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert decode_row(encode_row([aware])) == (dt.datetime(2024, 1, 31, 12, 0),)


@pytest.mark.parametrize("row,message", [
    ([2**63], "out of the int64 range"),
    ([-2**63 - 1], "out of the int64 range"),
    (["a\ud800"], "not valid Unicode"),
    ([[1]], "cannot store a list"),
    ([object()], "cannot store a object"),
])
def test_encode_rejects_values_it_cannot_store(row, message):
    with pytest.raises(DataError, match=message):
        encode_row(row)


def test_decoders_are_generated_on_the_second_sighting_and_bounded(monkeypatch):
    monkeypatch.setattr(R, "_PLANS", {})
    monkeypatch.setattr(R, "_SEEN", {})
    monkeypatch.setattr(R, "_MAX_PLANS", 4)
    data = encode_row((1, "a"))
    assert decode_row(data) == (1, "a") and not R._PLANS
    assert decode_row(data) == (1, "a") and list(R._PLANS) == [data[:4]]
    rows = [tuple([None] * i + [i]) for i in range(10)]
    for row in rows * 3:
        assert decode_row(encode_row(row)) == row
    assert len(R._PLANS) == 4


# --- corruption -----------------------------------------------------------------

SAMPLE = (12345, "alice", 3.25, None, True, b"\x00\xff", dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 12), -7)


def corruption(data: bytes) -> CorruptionError:
    with pytest.raises(CorruptionError) as err:
        decode_row(data)
    assert err.value.file == "<row>"
    return err.value


def test_every_truncation_is_detected():
    data = encode_row(SAMPLE)
    for cut in range(len(data)):
        err = corruption(data[:cut])
        assert 0 <= err.offset <= cut


def test_trailing_bytes_are_detected():
    data = encode_row(SAMPLE)
    err = corruption(data + b"\x00")
    assert err.offset == len(data) and "trailing" in str(err)


def test_bad_version_is_detected():
    data = bytearray(encode_row(SAMPLE))
    data[0] = 2
    err = corruption(bytes(data))
    assert err.offset == 0 and "version 2" in str(err)


def test_unknown_tag_is_detected():
    data = bytearray(encode_row(SAMPLE))
    data[2 + 3] = 0x7F
    err = corruption(bytes(data))
    assert err.offset == 5 and "tag 0x7f in column 3" in str(err)


def test_bad_utf8_is_detected_at_its_offset():
    data = encode_row((1, "abc"))
    text_at = len(data) - 3
    bad = data[:text_at + 1] + b"\xff" + data[text_at + 2:]
    err = corruption(bad)
    assert err.offset == text_at + 1 and "UTF-8" in str(err)


def test_bad_text_length_is_detected():
    data = bytearray(encode_row(("abc",)))
    struct.pack_into("<I", data, 3, 4)
    err = corruption(bytes(data))
    assert "truncated TEXT in column 0" in str(err) and err.offset == 7


def test_dates_out_of_range_are_detected():
    data = bytearray(encode_row((dt.date(2024, 1, 1),)))
    struct.pack_into("<i", data, 3, 2**31 - 1)
    err = corruption(bytes(data))
    assert "DATE" in str(err) and err.offset == 3
    data = bytearray(encode_row((1, dt.datetime(2024, 1, 1))))
    struct.pack_into("<q", data, 5, 2**63 - 1)
    err = corruption(bytes(data))
    assert "TIMESTAMP" in str(err) and err.offset == 5


def test_damage_is_found_on_a_cached_header_too(monkeypatch):
    monkeypatch.setattr(R, "_PLANS", {})
    monkeypatch.setattr(R, "_SEEN", {})
    good = encode_row((1, "abc"))
    decode_row(good)
    decode_row(good)                                   # the header's decoder is now generated
    assert good[:4] in R._PLANS
    bad = good[:-1]
    corruption(bad)
    err = corruption(good[:-3] + b"\xff" + good[-2:])  # the text's first byte
    assert err.offset == len(good) - 3 and "UTF-8" in str(err)


@SETTINGS
@given(st.binary(max_size=40))
def test_random_bytes_never_escape_as_other_errors(data):
    try:
        row = decode_row(data)
    except CorruptionError:
        return
    assert encode_row(row) == data or data[1] == 0xFF     # a valid row re-encodes to itself


@SETTINGS
@given(st.lists(values, max_size=6), st.data())
def test_single_byte_damage_is_detected_or_decodes(row, data):
    encoded = bytearray(encode_row(row))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] ^= data.draw(st.integers(1, 255))
    try:
        decode_row(bytes(encoded))
    except CorruptionError as err:
        assert 0 <= err.offset <= len(encoded)
