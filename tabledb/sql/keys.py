"""The SQL keyspace: how tables, rows and indexes become engine keys.

This module is the only place that knows the byte layout of SQL keys (see also
``docs/format.md``, "SQL keys"). Everything here is part of the on-disk format:
do not change a constant without a format version bump.

Key layout
==========
Every SQL data key starts with the keyspace byte ``'t'`` (0x74), then the table
id and an index id, each as an *ordered uvarint*, then encoded column values::

    row key          't' uvarint(table_id) uvarint(0)         enc(pk_1) ... enc(pk_n)
    index entry      't' uvarint(table_id) uvarint(index_id)  enc(col_1) ... enc(col_k) [enc(pk_1) ... enc(pk_n)]

* ``PRIMARY_INDEX_ID`` is 0: the rows of a table are its primary index.
  Secondary indexes have ids >= 1.
* A table without a primary key gets a hidden int64 row id: its row key is
  ``row_key(table_id, (rowid,), ROWID_TYPES)``, i.e. one INTEGER column.
* A non-unique index appends the primary key to the indexed columns so that
  every entry is a distinct key. A unique index stores just the indexed
  columns, except when one of them is NULL (NULLs never collide in SQL):
  then the primary key is appended too. ``index_key`` appends whatever
  ``pk_values`` it is given; the caller decides.
* ``table_range(t)`` covers every key of table ``t`` (rows and all indexes),
  so DROP TABLE / TRUNCATE are one ``delete_range``; ``index_range(t, i)``
  covers one index (``i = 0``: the rows); ``prefix_range(p)`` covers every key
  starting with ``p`` (a prefix of a composite key, for range scans).

Ordered uvarint (table and index ids, 0 .. 2**64-1): one length byte ``n``
(0..8), then the value in ``n`` big-endian bytes, minimal (no leading zero
byte)::

    0 -> 00      5 -> 01 05      300 -> 02 01 2c      2**32 -> 05 01 00 00 00 00

A longer encoding always means a larger number, so byte order is number order.

Value encoding
==============
Every value starts with a one-byte type tag; NULL's tag (0x01) is below every
other tag, so NULL sorts first in an ascending column. Within a column all
non-NULL values share one type, so tags of different types are never compared
in a meaningful key (they are distinct only to catch mix-ups when decoding)::

    NULL       01
    BOOLEAN    10 00 (false) | 10 01 (true)
    INTEGER    20 + 8 bytes: big-endian two's complement with the sign bit flipped
    DATE       21 + the INTEGER payload of days since 1970-01-01
    TIMESTAMP  22 + the INTEGER payload of microseconds since 1970-01-01T00:00:00 UTC
    REAL       30 + 8 bytes: IEEE 754 binary64 big-endian; positive -> flip the sign
               bit, negative -> flip every bit. -0.0 is stored as 0.0; NaN is
               rejected (DataError): it has no place in an order.
    TEXT       40 + UTF-8 with each 00 written as 00 ff, then the terminator 00 01
    BLOB       50 + the bytes with each 00 written as 00 ff, then the terminator 00 01

Examples (ascending)::

    None          01
    True          10 01
    -1            20 7f ff ff ff ff ff ff ff
    42            20 80 00 00 00 00 00 00 2a
    1.5           30 bf f8 00 00 00 00 00 00
    -1.5          30 40 07 ff ff ff ff ff ff
    ''            40 00 01
    'a'           40 61 00 01
    'a\\x00'       40 61 00 ff 00 01
    'ab'          40 61 62 00 01             so 'a' < 'a\\x00' < 'ab'
    date(1970,1,2)  21 80 00 00 00 00 00 00 01

Each encoding is self-delimiting and no encoding is a proper prefix of another
(fixed widths; 00 inside text is always followed by ff, the terminator is 00 01).
Hence comparing two concatenations is decided inside the first column whose
values differ, at a byte where they differ, and a composite key sorts like the
tuple of its values.

Descending columns: every byte of the column's ascending encoding is inverted
(``b ^ 0xff``), tag included. Because the ascending codes are prefix-free, two
different values always differ at some byte inside both encodings, and
inverting that byte reverses the comparison: a DESC column sorts in exactly the
reverse order, with NULL last (as SQLite's ``ORDER BY x DESC``: NULL is the
smallest value). The inverted terminator is ``ff fe`` and the inverted escape
``ff 00``; 'a' DESC is ``bf 9e ff fe``.

API: ``encode_value``/``decode_value`` (one value), ``encode_key``/``decode_key``
(a tuple of values; ``KeyCodec`` does the same for one fixed schema, faster),
``row_key``/``rowid_key``/``index_key``/``split_key``/``decode_row_key``
(layout), ``table_range``/``index_range``/``prefix_range``/``prefix_end``
(``[start, end)`` bounds for ``Engine.scan`` and ``delete_range``; end None =
unbounded).

Python types: INTEGER int (not bool; -2**63 .. 2**63-1), REAL float (an int is
accepted and converted), TEXT str (no lone surrogates), BLOB bytes/bytearray/
memoryview (decoded as bytes), BOOLEAN bool, DATE datetime.date (not
datetime), TIMESTAMP datetime.datetime (naive means UTC; an aware one is
converted to UTC; decoded as naive UTC). None is NULL in any column. Anything
else raises DataError naming the expected type. Malformed key bytes raise
CorruptionError (file ``"<key>"``, offset = position in the key).
"""

from __future__ import annotations

import datetime as _dt
import struct
from typing import Any, Sequence

from tabledb.errors import CorruptionError, DataError

# --- keyspace constants (part of the format, do not change) -----------------

KEYSPACE_TABLE = b"t"          # every SQL data key starts with this byte
PRIMARY_INDEX_ID = 0           # rows live in index 0 of their table
ROWID_TYPES = ("INTEGER",)     # the hidden row id of a table without a primary key

# --- type tags (part of the format, do not change) --------------------------

TAG_NULL = 0x01
TAG_BOOLEAN = 0x10
TAG_INTEGER = 0x20
TAG_DATE = 0x21
TAG_TIMESTAMP = 0x22
TAG_REAL = 0x30
TAG_TEXT = 0x40
TAG_BLOB = 0x50

TYPE_TAGS = {
    "BOOLEAN": TAG_BOOLEAN, "INTEGER": TAG_INTEGER, "DATE": TAG_DATE, "TIMESTAMP": TAG_TIMESTAMP,
    "REAL": TAG_REAL, "TEXT": TAG_TEXT, "BLOB": TAG_BLOB,
}
TYPE_NAMES = tuple(TYPE_TAGS)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_SIGN64 = 1 << 63
_MASK64 = (1 << 64) - 1

_TAG_U64 = struct.Struct(">BQ")   # tag + 8-byte payload
assert _TAG_U64.size == 9
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
assert _U64.size == _F64.size == 8

_INVERT = bytes(range(255, -1, -1))   # bytes.translate table: b -> b ^ 0xff
_ESC = b"\x00\xff"                    # an escaped 00 inside TEXT/BLOB
_TERM = b"\x00\x01"                   # end of a TEXT/BLOB value
_ESC_DESC = b"\xff\x00"
_TERM_DESC = b"\xff\xfe"

_EPOCH_DATE_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_EPOCH = _dt.datetime(1970, 1, 1)
_EPOCH_UTC = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_US = _dt.timedelta(microseconds=1)

NULL_ASC = bytes([TAG_NULL])
NULL_DESC = bytes([TAG_NULL ^ 0xFF])


def invert(data: bytes) -> bytes:
    """Every byte inverted (b ^ 0xff): the DESC form of an ascending encoding."""
    return data.translate(_INVERT)


# --- encoders: value -> ascending bytes -------------------------------------


def _type_error(type_name: str, value: Any, expected: str) -> DataError:
    return DataError(f"{type_name} column expects {expected}, got {type(value).__name__} {value!r:.60}")


def _enc_integer(value: Any) -> bytes:
    if type(value) is not int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error("INTEGER", value, "an int")
        value = int(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise DataError(f"INTEGER value {value} is out of the int64 range [{INT64_MIN}, {INT64_MAX}]")
    return _TAG_U64.pack(TAG_INTEGER, value + _SIGN64)


def _enc_real(value: Any) -> bytes:
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error("REAL", value, "a float")
        try:
            value = float(value)
        except OverflowError:
            raise DataError(f"REAL value {value} is too large for a float64") from None
    if value != value:
        raise DataError("REAL value NaN cannot be stored in a key")
    if value == 0.0:
        value = 0.0  # -0.0 == 0.0: one encoding
    bits = _U64.unpack(_F64.pack(value))[0]
    bits = bits ^ _MASK64 if bits & _SIGN64 else bits | _SIGN64
    return _TAG_U64.pack(TAG_REAL, bits)


def _enc_text(value: Any) -> bytes:
    if type(value) is not str:
        if not isinstance(value, str):
            raise _type_error("TEXT", value, "a str")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"TEXT value is not valid Unicode (lone surrogate at {exc.start})") from None
    return b"\x40" + data.replace(b"\x00", _ESC) + _TERM


def _enc_blob(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _type_error("BLOB", value, "bytes")
    return b"\x50" + bytes(value).replace(b"\x00", _ESC) + _TERM


def _enc_boolean(value: Any) -> bytes:
    if value is True:
        return b"\x10\x01"
    if value is False:
        return b"\x10\x00"
    raise _type_error("BOOLEAN", value, "a bool")


def _enc_date(value: Any) -> bytes:
    if not isinstance(value, _dt.date) or isinstance(value, _dt.datetime):
        raise _type_error("DATE", value, "a datetime.date")
    return _TAG_U64.pack(TAG_DATE, value.toordinal() - _EPOCH_DATE_ORDINAL + _SIGN64)


def _enc_timestamp(value: Any) -> bytes:
    if not isinstance(value, _dt.datetime):
        raise _type_error("TIMESTAMP", value, "a datetime.datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        micros = (value - _EPOCH) // _ONE_US
    else:
        micros = (value - _EPOCH_UTC) // _ONE_US
    if not INT64_MIN <= micros <= INT64_MAX:  # cannot happen for datetime's years 1..9999
        raise DataError(f"TIMESTAMP value {value} is out of range")
    return _TAG_U64.pack(TAG_TIMESTAMP, micros + _SIGN64)


_ENCODERS = {
    "INTEGER": _enc_integer, "REAL": _enc_real, "TEXT": _enc_text, "BLOB": _enc_blob,
    "BOOLEAN": _enc_boolean, "DATE": _enc_date, "TIMESTAMP": _enc_timestamp,
}


def _unknown_type(type_name: Any) -> DataError:
    return DataError(f"unknown column type {type_name!r}; expected one of {', '.join(TYPE_NAMES)}")


def encode_value(value: Any, type_name: str, descending: bool = False) -> bytes:
    """The order-preserving, self-delimiting encoding of one value of a column.

    ``None`` is NULL. Raises DataError for a value of the wrong Python type,
    an INTEGER outside int64, a NaN REAL, or an unknown ``type_name``.
    """
    if value is None:
        return NULL_DESC if descending else NULL_ASC
    try:
        encoder = _ENCODERS[type_name]
    except (KeyError, TypeError):
        raise _unknown_type(type_name) from None
    data = encoder(value)
    return data.translate(_INVERT) if descending else data


# --- decoders: ascending bytes -> value --------------------------------------


def _corrupt(message: str, pos: int) -> CorruptionError:
    return CorruptionError(f"malformed key: {message}", file="<key>", offset=pos)


def _read_u64(buf: bytes, pos: int, descending: bool) -> int:
    end = pos + 8
    if end > len(buf):
        raise _corrupt("value truncated", pos)
    raw = buf[pos:end]
    if descending:
        raw = raw.translate(_INVERT)
    return _U64.unpack(raw)[0]


def _dec_integer(buf: bytes, pos: int, descending: bool) -> tuple[Any, int]:
    return _read_u64(buf, pos, descending) - _SIGN64, pos + 8


def _dec_real(buf: bytes, pos: int, descending: bool) -> tuple[Any, int]:
    bits = _read_u64(buf, pos, descending)
    bits = bits ^ _SIGN64 if bits & _SIGN64 else bits ^ _MASK64
    return _F64.unpack(_U64.pack(bits))[0], pos + 8


def _dec_date(buf: bytes, pos: int, descending: bool) -> tuple[Any, int]:
    days = _read_u64(buf, pos, descending) - _SIGN64
    try:
        return _dt.date.fromordinal(days + _EPOCH_DATE_ORDINAL), pos + 8
    except (ValueError, OverflowError):
        raise _corrupt(f"DATE {days} days is out of range", pos) from None


def _dec_timestamp(buf: bytes, pos: int, descending: bool) -> tuple[Any, int]:
    micros = _read_u64(buf, pos, descending) - _SIGN64
    try:
        return _EPOCH + _dt.timedelta(microseconds=micros), pos + 8
    except (ValueError, OverflowError):
        raise _corrupt(f"TIMESTAMP {micros} us is out of range", pos) from None


def _dec_boolean(buf: bytes, pos: int, descending: bool) -> tuple[Any, int]:
    if pos >= len(buf):
        raise _corrupt("value truncated", pos)
    byte = buf[pos] ^ 0xFF if descending else buf[pos]
    if byte > 1:
        raise _corrupt(f"BOOLEAN byte {byte:#04x}", pos)
    return byte == 1, pos + 1


def _read_escaped(buf: bytes, pos: int, descending: bool) -> tuple[bytes, int]:
    """The unescaped payload of a TEXT/BLOB value starting at pos, and the position after it."""
    if descending:
        end = buf.find(_TERM_DESC, pos)
        if end < 0:
            raise _corrupt("unterminated TEXT/BLOB", pos)
        raw = buf[pos:end].translate(_INVERT)
    else:
        end = buf.find(_TERM, pos)
        if end < 0:
            raise _corrupt("unterminated TEXT/BLOB", pos)
        raw = buf[pos:end]
    if b"\x00" in raw:
        if raw.count(b"\x00") != raw.count(_ESC):
            raise _corrupt("bad escape in TEXT/BLOB", pos)
        raw = raw.replace(_ESC, b"\x00")
    return raw, end + 2


def _dec_text(buf: bytes, pos: int, descending: bool) -> tuple[Any, int]:
    raw, end = _read_escaped(buf, pos, descending)
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        raise _corrupt("TEXT is not valid UTF-8", pos) from None


def _dec_blob(buf: bytes, pos: int, descending: bool) -> tuple[Any, int]:
    raw, end = _read_escaped(buf, pos, descending)
    return bytes(raw), end


_DECODERS = {
    "INTEGER": _dec_integer, "REAL": _dec_real, "TEXT": _dec_text, "BLOB": _dec_blob,
    "BOOLEAN": _dec_boolean, "DATE": _dec_date, "TIMESTAMP": _dec_timestamp,
}


def decode_value(buf: bytes, pos: int, type_name: str, descending: bool = False) -> tuple[Any, int]:
    """Decode one value of type ``type_name`` at ``buf[pos:]``; returns (value, position after it).

    REQUIRES: ``buf`` is bytes or bytearray. NULL decodes as None. A tag that
    is neither NULL nor ``type_name``'s, or truncated/malformed bytes, raise
    CorruptionError; an unknown ``type_name`` raises DataError.
    """
    try:
        decoder = _DECODERS[type_name]
    except (KeyError, TypeError):
        raise _unknown_type(type_name) from None
    if pos >= len(buf):
        raise _corrupt(f"expected a {type_name} value, found the end of the key", pos)
    tag = buf[pos] ^ 0xFF if descending else buf[pos]
    if tag == TAG_NULL:
        return None, pos + 1
    if tag != TYPE_TAGS[type_name]:
        raise _corrupt(f"expected a {type_name} value (tag {TYPE_TAGS[type_name]:#04x}), found tag {tag:#04x}", pos)
    return decoder(buf, pos + 1, descending)


# --- composite keys -----------------------------------------------------------


def encode_key(values: Sequence[Any], types: Sequence[str], desc: Sequence[bool] | None = None) -> bytes:
    """The concatenated encodings of ``values`` (one per column of ``types``).

    ``desc[i]`` true makes column i descending. Byte order of two keys of the
    same ``types``/``desc`` equals the order of the value tuples (NULL smallest;
    a DESC column reversed). For many keys of one schema, ``KeyCodec`` is faster.
    """
    if len(values) != len(types):
        raise DataError(f"key has {len(values)} values for {len(types)} columns")
    if desc is None:
        return b"".join([encode_value(v, t) for v, t in zip(values, types)])
    if len(desc) != len(types):
        raise DataError(f"key has {len(desc)} DESC flags for {len(types)} columns")
    return b"".join([encode_value(v, t, d) for v, t, d in zip(values, types, desc)])


def decode_key(buf: bytes, types: Sequence[str], desc: Sequence[bool] | None = None,
               pos: int = 0) -> tuple[tuple[Any, ...], int]:
    """Decode ``len(types)`` values from ``buf[pos:]``; returns (values, position after them).

    The position lets a caller decode a key in parts (an index entry's columns,
    then the primary key appended to it).
    """
    if desc is None:
        desc = (False,) * len(types)
    elif len(desc) != len(types):
        raise DataError(f"key has {len(desc)} DESC flags for {len(types)} columns")
    out = []
    append = out.append
    for type_name, descending in zip(types, desc):
        value, pos = decode_value(buf, pos, type_name, descending)
        append(value)
    return tuple(out), pos


class KeyCodec:
    """encode_key / decode_key for one fixed schema, with the per-column lookups done once.

    ``KeyCodec(types, desc).encode(values) == encode_key(values, types, desc)``;
    ``decode(buf, pos)`` is ``decode_key(buf, types, desc, pos)``. Immutable, thread-safe.
    """

    __slots__ = ("types", "desc", "_encoders", "_decoders", "encode")

    def __init__(self, types: Sequence[str], desc: Sequence[bool] | None = None):
        types = tuple(types)
        desc = (False,) * len(types) if desc is None else tuple(bool(d) for d in desc)
        if len(desc) != len(types):
            raise DataError(f"key has {len(desc)} DESC flags for {len(types)} columns")
        for type_name in types:
            if type_name not in _ENCODERS:
                raise _unknown_type(type_name)
        self.types = types
        self.desc = desc
        self._encoders = tuple((_ENCODERS[t], NULL_DESC if d else NULL_ASC, d) for t, d in zip(types, desc))
        self._decoders = tuple((_DECODERS[t], TYPE_TAGS[t], d, t) for t, d in zip(types, desc))
        # ``encode`` is chosen per codec: the common primary key (one ascending INTEGER) is one C call
        self.encode = self._encode_one_integer if types == ("INTEGER",) and desc == (False,) else self._encode

    def _encode_one_integer(self, values: Sequence[Any]) -> bytes:
        if len(values) == 1:
            v = values[0]
            if type(v) is int and INT64_MIN <= v <= INT64_MAX:
                return _TAG_U64.pack(TAG_INTEGER, v + _SIGN64)
        return self._encode(values)

    def _encode(self, values: Sequence[Any]) -> bytes:
        """The key of ``values``: the same bytes as encode_key."""
        if len(values) != len(self._encoders):
            raise DataError(f"key has {len(values)} values for {len(self._encoders)} columns")
        parts = []
        append = parts.append
        for value, (encoder, null, descending) in zip(values, self._encoders):
            if value is None:
                append(null)
            elif descending:
                append(encoder(value).translate(_INVERT))
            else:
                append(encoder(value))
        return b"".join(parts)

    def decode(self, buf: bytes, pos: int = 0) -> tuple[tuple[Any, ...], int]:
        """(values, position after them): the same as decode_key."""
        out = []
        append = out.append
        end = len(buf)
        for decoder, tag, descending, type_name in self._decoders:
            if pos >= end:
                raise _corrupt(f"expected a {type_name} value, found the end of the key", pos)
            found = buf[pos] ^ 0xFF if descending else buf[pos]
            if found == TAG_NULL:
                append(None)
                pos += 1
                continue
            if found != tag:
                raise _corrupt(f"expected a {type_name} value (tag {tag:#04x}), found tag {found:#04x}", pos)
            value, pos = decoder(buf, pos + 1, descending)
            append(value)
        return tuple(out), pos


# --- ordered uvarint (table and index ids) ------------------------------------

_UVARINT_SMALL = [bytes([0])] + [bytes([1, i]) for i in range(1, 256)]


def encode_uvarint(n: int) -> bytes:
    """Order-preserving unsigned varint: a length byte (0..8), then n big-endian, minimal."""
    if type(n) is not int or n < 0 or n > _MASK64:
        if isinstance(n, bool) or not isinstance(n, int):
            raise DataError(f"an id must be an int, got {type(n).__name__}")
        raise DataError(f"id {n} is out of range [0, 2**64-1]")
    if n < 256:
        return _UVARINT_SMALL[n]
    length = (n.bit_length() + 7) >> 3
    return bytes([length]) + n.to_bytes(length, "big")


def decode_uvarint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """The inverse of encode_uvarint: (n, position after it)."""
    if pos >= len(buf):
        raise _corrupt("id truncated", pos)
    length = buf[pos]
    end = pos + 1 + length
    if length > 8 or end > len(buf):
        raise _corrupt(f"bad id length {length}", pos)
    if length and buf[pos + 1] == 0:
        raise _corrupt("id not minimally encoded", pos)
    return int.from_bytes(buf[pos + 1:end], "big"), end


# --- key layout ---------------------------------------------------------------


def table_prefix(table_id: int) -> bytes:
    """The prefix of every key of a table: 't' uvarint(table_id)."""
    return KEYSPACE_TABLE + encode_uvarint(table_id)


def index_prefix(table_id: int, index_id: int) -> bytes:
    """The prefix of every key of one index of a table (index 0: the rows)."""
    return KEYSPACE_TABLE + encode_uvarint(table_id) + encode_uvarint(index_id)


def row_key(table_id: int, pk_values: Sequence[Any], pk_types: Sequence[str],
            pk_desc: Sequence[bool] | None = None) -> bytes:
    """The key of a row: index_prefix(table_id, PRIMARY_INDEX_ID) + encode_key(pk)."""
    return index_prefix(table_id, PRIMARY_INDEX_ID) + encode_key(pk_values, pk_types, pk_desc)


def rowid_key(table_id: int, rowid: int) -> bytes:
    """The key of a row of a table without a primary key (hidden int64 row id)."""
    return index_prefix(table_id, PRIMARY_INDEX_ID) + _enc_integer(rowid)


def index_key(table_id: int, index_id: int, index_values: Sequence[Any], index_types: Sequence[str],
              index_desc: Sequence[bool] | None = None, pk_values: Sequence[Any] | None = None,
              pk_types: Sequence[str] | None = None, pk_desc: Sequence[bool] | None = None) -> bytes:
    """A secondary index entry's key: the index prefix, the indexed columns, then (if given) the primary key.

    REQUIRES: index_id >= 1. Pass ``pk_values`` for a non-unique index (always)
    and for a unique index when an indexed value is NULL.
    """
    if index_id == PRIMARY_INDEX_ID:
        raise DataError("index id 0 is the primary index; use row_key")
    key = index_prefix(table_id, index_id) + encode_key(index_values, index_types, index_desc)
    if pk_values is not None:
        if pk_types is None:
            raise DataError("index_key: pk_values given without pk_types")
        key += encode_key(pk_values, pk_types, pk_desc)
    return key


def split_key(key: bytes) -> tuple[int, int, int]:
    """(table_id, index_id, position of the first encoded column) of an SQL data key."""
    if key[:1] != KEYSPACE_TABLE:
        raise _corrupt("not a table key", 0)
    table_id, pos = decode_uvarint(key, 1)
    index_id, pos = decode_uvarint(key, pos)
    return table_id, index_id, pos


def decode_row_key(key: bytes, pk_types: Sequence[str],
                   pk_desc: Sequence[bool] | None = None) -> tuple[int, tuple[Any, ...]]:
    """(table_id, primary key values) of a row key; CorruptionError if it is not one."""
    table_id, index_id, pos = split_key(key)
    if index_id != PRIMARY_INDEX_ID:
        raise _corrupt(f"index {index_id} key where a row key was expected", 0)
    values, pos = decode_key(key, pk_types, pk_desc, pos)
    if pos != len(key):
        raise _corrupt("trailing bytes after the primary key", pos)
    return table_id, values


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``; None if there is none.

    Trailing ff bytes are dropped and the last remaining byte incremented:
    ``61 ff -> 62``; ``ff ff`` (or b"") -> None (unbounded, as the engine's scan end).
    """
    stripped = bytes(prefix).rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def prefix_range(prefix: bytes) -> tuple[bytes, bytes | None]:
    """[start, end) covering exactly the keys that start with ``prefix`` (end None = unbounded)."""
    prefix = bytes(prefix)
    return prefix, prefix_end(prefix)


def table_range(table_id: int) -> tuple[bytes, bytes]:
    """[start, end) covering every key of a table: its rows and all its index entries."""
    prefix = table_prefix(table_id)
    return prefix, prefix_end(prefix)  # never None: the prefix starts with 't'


def index_range(table_id: int, index_id: int) -> tuple[bytes, bytes]:
    """[start, end) covering every key of one index (index 0: the table's rows)."""
    prefix = index_prefix(table_id, index_id)
    return prefix, prefix_end(prefix)


def all_tables_range() -> tuple[bytes, bytes]:
    """[start, end) covering every SQL data key of every table."""
    return KEYSPACE_TABLE, prefix_end(KEYSPACE_TABLE)


__all__ = [
    "KEYSPACE_TABLE", "PRIMARY_INDEX_ID", "ROWID_TYPES", "TYPE_NAMES", "TYPE_TAGS", "INT64_MIN", "INT64_MAX",
    "encode_value", "decode_value", "encode_key", "decode_key", "KeyCodec", "invert",
    "encode_uvarint", "decode_uvarint", "table_prefix", "index_prefix", "row_key", "rowid_key", "index_key",
    "split_key", "decode_row_key", "prefix_end", "prefix_range", "table_range", "index_range",
    "all_tables_range",
]
